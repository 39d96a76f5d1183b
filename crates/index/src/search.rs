//! Searching: hits newest (or oldest) first, counts, histograms, the lines
//! around a hit, and where the query's terms are in a hit.
//!
//! Every search runs under the request's [`Deadline`] (see
//! [`crate::deadline`]): past it, it stops with [`IndexError::Stopped`].

use std::path::Path;

use chrono::{TimeZone, Utc};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::Query;
use tantivy::schema::Value;
use tantivy::{
    DocAddress, Index, IndexReader, ReloadPolicy, Searcher, SegmentReader, TantivyDocument,
};

use crate::deadline::Deadline;
use crate::highlight::Highlighter;
use crate::histogram::{self, Bucket, TsHistogram};
use crate::query::{self, SearchRequest};
use crate::schema::{self, Fields};
use crate::{IndexError, IndexedLine};

/// The most hits one search returns (tantivy allocates room for twice the
/// limit up front).
pub const MAX_HITS: usize = 1_000_000;

/// A read-only view of the index as of when it was opened or last reloaded.
pub struct IndexSearcher {
    index: Index,
    pub(crate) reader: IndexReader,
    pub(crate) fields: Fields,
}

impl IndexSearcher {
    pub fn open(dir: &Path) -> Result<Self, IndexError> {
        if !dir.join("meta.json").exists() {
            return Err(IndexError::Missing {
                path: dir.to_owned(),
            });
        }
        let open_err = |source| IndexError::Open {
            path: dir.to_owned(),
            source,
        };
        let index = Index::open_in_dir(dir).map_err(open_err)?;
        let fields = schema::fields_of(&index.schema()).map_err(|field| IndexError::OldSchema {
            path: dir.to_owned(),
            field,
        })?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(open_err)?;
        Ok(IndexSearcher {
            index,
            reader,
            fields,
        })
    }

    /// The opstamp of the index's last commit on disk: every event with a
    /// `commit` number below it is committed. Read before
    /// [`IndexSearcher::reload`], the reloaded view holds all of them.
    pub fn committed(&self) -> Result<u64, IndexError> {
        Ok(self.index.load_metas()?.opstamp)
    }

    /// Events in the index, as of the last reload.
    pub fn documents(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Sees what was committed since opening.
    pub fn reload(&self) -> Result<(), IndexError> {
        Ok(self.reader.reload()?)
    }

    /// The tantivy query for `req` (errors name a position).
    pub fn query(&self, req: &SearchRequest) -> Result<Box<dyn Query>, IndexError> {
        Ok(query::build(&self.index, &self.fields, req)?)
    }

    /// Matching events, newest first (oldest first if asked), at most `limit`.
    pub fn search(&self, req: &SearchRequest) -> Result<Vec<IndexedLine>, IndexError> {
        self.hits(req)?.collect()
    }

    /// Like [`IndexSearcher::search`], but each event is read from the index
    /// only when the iterator reaches it: a caller with a byte budget holds
    /// one event at a time, not all of them.
    pub fn hits<'a>(&'a self, req: &'a SearchRequest) -> Result<Hits<'a>, IndexError> {
        let query = self.query(req)?;
        let searcher = self.reader.searcher();
        let sign = if req.oldest_first { -1 } else { 1 };
        let collector = TopDocs::with_limit(req.limit.clamp(1, MAX_HITS)).custom_score(
            move |segment: &SegmentReader| {
                let ff = segment.fast_fields();
                let ts = ff.date("ts").ok();
                let offset = ff.u64("offset").ok();
                move |doc| {
                    let t = ts
                        .as_ref()
                        .and_then(|c| c.first(doc))
                        .map_or(i64::MIN / 2, |d| d.into_timestamp_micros());
                    let o = offset.as_ref().and_then(|c| c.first(doc)).unwrap_or(0) as i64;
                    (sign * t, sign * o)
                }
            },
        );
        let hits: Vec<((i64, i64), DocAddress)> =
            req.deadline.search(&searcher, &query, collector)?;
        Ok(Hits {
            searcher: self,
            reader: searcher,
            addrs: hits
                .into_iter()
                .map(|(_, a)| a)
                .collect::<Vec<_>>()
                .into_iter(),
            deadline: &req.deadline,
        })
    }

    /// Number of matching events.
    pub fn count(&self, req: &SearchRequest) -> Result<u64, IndexError> {
        let query = self.query(req)?;
        Ok(req
            .deadline
            .search(&self.reader.searcher(), &query, Count)? as u64)
    }

    /// Matching events per `bucket`, oldest bucket first, empty buckets
    /// included (from `since`/`until` when given).
    pub fn histogram(
        &self,
        req: &SearchRequest,
        bucket: chrono::Duration,
    ) -> Result<Vec<Bucket>, IndexError> {
        let width = bucket.num_microseconds().unwrap_or(0);
        if width <= 0 {
            return Err(IndexError::Query(query::QueryError {
                query: req.query.clone(),
                position: None,
                expected: "a bucket of at least 1ms".into(),
            }));
        }
        let query = self.query(req)?;
        let counts = req.deadline.search(
            &self.reader.searcher(),
            &query,
            TsHistogram {
                width_micros: width,
            },
        )?;
        histogram::fill(&counts, width, req.since, req.until).map_err(|expected| {
            IndexError::Query(query::QueryError {
                query: req.query.clone(),
                position: None,
                expected,
            })
        })
    }

    /// Marks the query's terms in bodies.
    pub fn highlighter(&self, req: &SearchRequest) -> Result<Highlighter, IndexError> {
        let query = self.query(req)?;
        let analyzer = self.index.tokenizer_for_field(self.fields.body)?;
        Ok(Highlighter::new(query.as_ref(), self.fields.body, analyzer))
    }

    /// The event stored in `doc`.
    pub(crate) fn line(&self, doc: &TantivyDocument) -> Result<IndexedLine, IndexError> {
        let f = &self.fields;
        let text = |field| {
            doc.get_first(field)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let u64_of = |field| doc.get_first(field).and_then(|v| v.as_u64()).unwrap_or(0);
        let micros = doc
            .get_first(f.ts)
            .and_then(|v| v.as_datetime())
            .map_or(0, |d| d.into_timestamp_micros());
        let fields = doc
            .get_first(f.fields)
            .map(|v| serde_json::to_value(tantivy::schema::OwnedValue::from(v)).unwrap_or_default())
            .and_then(|v| match v {
                serde_json::Value::Object(m) => Some(m),
                _ => None,
            })
            .unwrap_or_default();
        Ok(IndexedLine {
            ts: Utc.timestamp_micros(micros).single().unwrap_or_default(),
            host: text(f.host),
            log: text(f.log),
            path: text(f.path),
            file_id: text(f.file_id).parse().unwrap_or_default(),
            offset: u64_of(f.offset),
            end_offset: u64_of(f.end_offset),
            body: text(f.body),
            fields,
            parse_error: doc
                .get_first(f.parse_error)
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            collector: f.collector.map(text).unwrap_or_default(),
        })
    }
}

/// The hits of a search, newest (or oldest) first, read one by one.
pub struct Hits<'a> {
    searcher: &'a IndexSearcher,
    reader: Searcher,
    addrs: std::vec::IntoIter<DocAddress>,
    deadline: &'a Deadline,
}

impl Hits<'_> {
    /// How many hits are left to read.
    pub fn remaining(&self) -> usize {
        self.addrs.len()
    }
}

impl Iterator for Hits<'_> {
    type Item = Result<IndexedLine, IndexError>;

    fn next(&mut self) -> Option<Self::Item> {
        let addr = self.addrs.next()?;
        Some(
            self.deadline
                .check()
                .and_then(|()| self.searcher.line(&self.reader.doc(addr)?)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IndexWriter;
    use chrono::Duration;
    use rill_proto::FileId;

    fn line(host: &str, log: &str, offset: u64, secs: i64, body: &str) -> IndexedLine {
        IndexedLine {
            ts: Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap(),
            host: host.into(),
            log: log.into(),
            path: "/var/log/x".into(),
            file_id: FileId {
                dev: 1,
                ino: 2,
                fingerprint: 3,
            },
            offset,
            end_offset: 0,
            body: body.into(),
            fields: Default::default(),
            parse_error: false,
            collector: String::new(),
        }
    }

    fn req(q: &str) -> SearchRequest {
        SearchRequest {
            query: q.into(),
            limit: 100,
            ..Default::default()
        }
    }

    #[test]
    fn hits_come_newest_first_and_filters_apply() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = IndexWriter::open(dir.path()).unwrap();
        w.add(&line("web01", "nginx", 0, 1, "GET /a 200")).unwrap();
        w.add(&line("web01", "nginx", 10, 3, "GET /b 500")).unwrap();
        w.add(&line("web02", "app", 0, 2, "error: café timeout"))
            .unwrap();
        w.commit().unwrap();
        let s = IndexSearcher::open(dir.path()).unwrap();
        let all = s.search(&req("*")).unwrap();
        assert_eq!(
            all.iter().map(|l| l.body.as_str()).collect::<Vec<_>>(),
            ["GET /b 500", "error: café timeout", "GET /a 200"]
        );
        assert_eq!(s.count(&req("GET")).unwrap(), 2);
        assert_eq!(
            s.count(&SearchRequest {
                host: Some("web02".into()),
                ..req("*")
            })
            .unwrap(),
            1
        );
        assert_eq!(
            s.count(&SearchRequest {
                log: Some("nginx".into()),
                ..req("500")
            })
            .unwrap(),
            1
        );
        assert_eq!(s.search(&req("café")).unwrap()[0].host, "web02");
        let hit = &s.search(&req("\"GET /b\"")).unwrap()[0];
        assert_eq!(
            (hit.offset, hit.file_id, hit.ts),
            (
                10,
                FileId {
                    dev: 1,
                    ino: 2,
                    fingerprint: 3
                },
                Utc.timestamp_opt(1_700_000_003, 0).unwrap()
            )
        );
    }

    #[test]
    fn same_timestamp_orders_by_offset_and_microseconds_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = IndexWriter::open(dir.path()).unwrap();
        let mut a = line("h", "l", 5, 0, "first");
        a.ts += Duration::microseconds(7);
        let mut b = line("h", "l", 9, 0, "second");
        b.ts = a.ts;
        w.add(&a).unwrap();
        w.add(&b).unwrap();
        w.commit().unwrap();
        let hits = IndexSearcher::open(dir.path())
            .unwrap()
            .search(&req("*"))
            .unwrap();
        assert_eq!(hits[0].body, "second");
        assert_eq!(hits[1].ts, a.ts);
    }

    #[test]
    fn re_adding_a_line_keeps_one_copy_even_across_writers() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut w = IndexWriter::open(dir.path()).unwrap();
            w.add(&line("h", "l", 1, 0, "x")).unwrap();
            w.add(&line("h", "l", 1, 0, "x")).unwrap();
            w.commit().unwrap();
            w.add(&line("h", "l", 1, 0, "x")).unwrap();
            w.commit().unwrap();
        }
        let mut w = IndexWriter::open(dir.path()).unwrap();
        w.add(&line("h", "l", 1, 0, "x")).unwrap();
        let mut other_file = line("h", "l", 1, 0, "x");
        other_file.file_id.ino = 99;
        w.add(&other_file).unwrap();
        w.commit().unwrap();
        assert_eq!(
            IndexSearcher::open(dir.path())
                .unwrap()
                .count(&req("*"))
                .unwrap(),
            2
        );
    }

    #[test]
    fn a_searcher_sees_only_committed_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = IndexWriter::open(dir.path()).unwrap();
        w.commit().unwrap();
        w.add(&line("h", "l", 1, 0, "x")).unwrap();
        assert_eq!(w.pending(), 1);
        assert_eq!(
            IndexSearcher::open(dir.path())
                .unwrap()
                .count(&req("*"))
                .unwrap(),
            0
        );
        w.commit().unwrap();
        assert_eq!(w.pending(), 0);
        assert_eq!(
            IndexSearcher::open(dir.path())
                .unwrap()
                .count(&req("*"))
                .unwrap(),
            1
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = IndexSearcher::open(&missing).err().unwrap();
        assert!(matches!(e, IndexError::Missing { .. }), "{e}");
        IndexWriter::open(dir.path()).unwrap().commit().unwrap();
        let s = IndexSearcher::open(dir.path()).unwrap();
        let e = s.count(&req("body:(")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid query \"body:(\" at position 6: expected"),
            "{e}"
        );
    }
}

#[cfg(test)]
mod feature_tests {
    use super::*;
    use crate::IndexWriter;
    use rill_proto::FileId;
    use serde_json::json;

    fn index() -> (tempfile::TempDir, IndexSearcher) {
        let dir = tempfile::tempdir().unwrap();
        let mut w = IndexWriter::open(dir.path()).unwrap();
        for i in 0..10u64 {
            let status = if i % 3 == 0 { 500 } else { 200 };
            let mut fields = serde_json::Map::new();
            fields.insert("status".into(), json!(status));
            fields.insert(
                "method".into(),
                json!(if i % 2 == 0 { "GET" } else { "POST" }),
            );
            w.add(&IndexedLine {
                ts: Utc
                    .timestamp_opt(1_700_000_000 + 60 * i as i64, 250_000_000)
                    .unwrap(),
                host: "web01".into(),
                log: "nginx".into(),
                path: "/var/log/nginx/access.log".into(),
                file_id: FileId {
                    dev: 1,
                    ino: 2,
                    fingerprint: 3,
                },
                offset: i * 100,
                end_offset: i * 100 + 100,
                body: format!("line {i} status {status} Timeout upstream"),
                fields,
                parse_error: i == 9,
                collector: String::new(),
            })
            .unwrap();
        }
        w.commit().unwrap();
        let s = IndexSearcher::open(dir.path()).unwrap();
        (dir, s)
    }

    fn req(q: &str) -> SearchRequest {
        SearchRequest {
            query: q.into(),
            limit: 100,
            ..Default::default()
        }
    }

    #[test]
    fn field_filters_time_ranges_and_order() {
        let (_d, s) = index();
        assert_eq!(s.count(&req("fields.status:500")).unwrap(), 4);
        assert_eq!(
            s.count(&req("fields.method:post AND fields.status:500"))
                .unwrap(),
            2
        );
        assert_eq!(s.count(&req("parse_error:true")).unwrap(), 1);
        assert_eq!(s.count(&req("host:web01 AND log:nginx")).unwrap(), 10);
        assert_eq!(s.count(&req("timeout -fields.status:500")).unwrap(), 6);
        assert_eq!(
            s.count(&req("timeout AND NOT fields.status:500")).unwrap(),
            6
        );
        assert_eq!(s.count(&req("upstream AND NOT timeout")).unwrap(), 0);
        assert_eq!(s.count(&req("line AND NOT \"line 5\"")).unwrap(), 9);
        let since = Utc.timestamp_opt(1_700_000_000 + 120, 250_000_000).unwrap();
        let until = Utc.timestamp_opt(1_700_000_000 + 300, 250_000_000).unwrap();
        let r = SearchRequest {
            since: Some(since),
            until: Some(until),
            ..req("*")
        };
        assert_eq!(
            s.count(&r).unwrap(),
            3,
            "since inclusive, until exclusive, sub-second kept"
        );
        let oldest = s
            .search(&SearchRequest {
                oldest_first: true,
                limit: 2,
                ..req("*")
            })
            .unwrap();
        assert_eq!((oldest[0].offset, oldest[1].offset), (0, 100));
        let newest = s
            .search(&SearchRequest {
                limit: 1,
                ..req("*")
            })
            .unwrap();
        assert_eq!(newest[0].offset, 900);
        assert_eq!(newest[0].fields["status"], json!(500));
        assert!(newest[0].parse_error);
        assert_eq!(newest[0].end_offset, 1000);
    }

    #[test]
    fn context_histogram_and_highlights() {
        let (_d, s) = index();
        let hit = &s.search(&req("\"line 5\"")).unwrap()[0];
        let ctx = s
            .context(hit, 2, 3, usize::MAX, &Deadline::default())
            .unwrap();
        let offs = |v: &[IndexedLine]| v.iter().map(|l| l.offset).collect::<Vec<_>>();
        assert_eq!(offs(&ctx.before), [300, 400]);
        assert_eq!(offs(&ctx.after), [600, 700, 800]);
        let h = s
            .histogram(&req("fields.status:500"), chrono::Duration::minutes(2))
            .unwrap();
        // Buckets are aligned to the epoch, not to the first event.
        assert_eq!(
            h.iter().map(|b| b.count).collect::<Vec<_>>(),
            [1, 0, 1, 1, 0, 1]
        );
        assert_eq!(h[0].start.timestamp() % 120, 0);
        let mut hl = s.highlighter(&req("timeout AND status")).unwrap();
        let body = "line 1 status 200 Timeout upstream";
        let marked = crate::highlight::mark(body, &hl.ranges(body), "[", "]");
        assert_eq!(marked, "line 1 [status] 200 [Timeout] upstream");
    }

    #[test]
    fn query_errors_name_the_position_and_what_was_expected() {
        let (_d, s) = index();
        let err = |q: &str| match s.count(&req(q)).unwrap_err() {
            IndexError::Query(e) => e,
            other => panic!("{other}"),
        };
        let e = err("error AND (timeout");
        assert_eq!(e.position, Some(18));
        assert!(e.expected.contains("`)`"), "{e}");
        assert_eq!(
            e.pointer().unwrap(),
            "  error AND (timeout\n                    ^"
        );
        let e = err("\"unclosed phrase");
        assert!(e.expected.contains("closing `\"`"), "{e}");
        let e = err("stauts:500");
        assert_eq!(e.position, Some(0));
        assert!(
            e.expected.contains("a known field instead of `stauts`"),
            "{e}"
        );
        let e = err("x AND parse_error:maybe");
        assert_eq!(e.position, Some(18));
        let e = err("fields.status:[500 TO");
        assert!(e.position.is_some(), "{e}");
    }

    #[test]
    fn histograms_over_absurd_ranges_are_errors() {
        let (_d, s) = index();
        let since = Utc::now() - chrono::Duration::weeks(100_000);
        let r = SearchRequest {
            since: Some(since),
            ..req("*")
        };
        let e = s
            .histogram(&r, chrono::Duration::milliseconds(1))
            .unwrap_err();
        assert!(e.to_string().contains("buckets; expected at most"), "{e}");
        assert_eq!(s.count(&r).unwrap(), 10);
        let r = SearchRequest {
            since: Some(chrono::DateTime::<Utc>::MIN_UTC),
            until: Some(chrono::DateTime::<Utc>::MAX_UTC),
            ..req("*")
        };
        assert_eq!(s.count(&r).unwrap(), 10);
    }

    #[test]
    fn a_passed_deadline_stops_every_kind_of_search() {
        let (_d, s) = index();
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let stopped = Deadline::new(
            std::time::Instant::now() + std::time::Duration::from_secs(60),
            flag,
        );
        let r = SearchRequest {
            deadline: stopped.clone(),
            ..req("*")
        };
        assert!(matches!(s.search(&r), Err(IndexError::Stopped)));
        assert!(matches!(s.count(&r), Err(IndexError::Stopped)));
        assert!(matches!(
            s.histogram(&r, chrono::Duration::minutes(1)),
            Err(IndexError::Stopped)
        ));
        let hit = &s.search(&req("*")).unwrap()[0];
        assert!(matches!(
            s.context(hit, 1, 1, usize::MAX, &stopped),
            Err(IndexError::Stopped)
        ));
    }
}
