//! Searching: hits newest (or oldest) first, counts, histograms, the lines
//! around a hit, and where the query's terms are in a hit.
//!
//! Every search runs under the request's [`Deadline`] (see
//! [`crate::deadline`]): past it, it stops with [`IndexError::Stopped`].

use std::path::Path;

use chrono::{TimeZone, Utc};
use tantivy::collector::{Collector, Count, SegmentCollector, TopDocs};
use tantivy::columnar::Column;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{
    DocAddress, DocId, Index, IndexReader, ReloadPolicy, Score, Searcher, SegmentOrdinal,
    SegmentReader, TantivyDocument, Term,
};

use crate::deadline::{is_stop, Bounded, Deadline};
use crate::highlight::Highlighter;
use crate::histogram::{self, Bucket, TsHistogram};
use crate::query::{self, SearchRequest};
use crate::schema::{self, Fields, OFFSET_BLOCK_BITS};
use crate::{IndexError, IndexedLine};

/// The lines around a hit in the same file (same host, log and file).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// Oldest first (file order).
    pub before: Vec<IndexedLine>,
    pub after: Vec<IndexedLine>,
    /// Fewer lines than asked for were given because their bodies would
    /// have passed the byte budget.
    pub truncated: bool,
}

/// How far from the nearest line found (or the hit) a context search looks
/// before it gives up: 64 blocks of 64 KiB, 4 MiB of the file not indexed.
const CONTEXT_GAP_BLOCKS: u64 = 64;

/// The most hits one search returns (tantivy allocates room for twice the
/// limit up front).
pub const MAX_HITS: usize = 1_000_000;

/// Which side of a hit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Before,
    After,
}

/// A read-only view of the index as of when it was opened or last reloaded.
pub struct IndexSearcher {
    index: Index,
    reader: IndexReader,
    fields: Fields,
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
            bounded(&searcher, &query, collector, &req.deadline)?;
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
        Ok(bounded(&self.reader.searcher(), &query, Count, &req.deadline)? as u64)
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
        let counts = bounded(
            &self.reader.searcher(),
            &query,
            TsHistogram {
                width_micros: width,
            },
            &req.deadline,
        )?;
        histogram::fill(&counts, width, req.since, req.until).map_err(|expected| {
            IndexError::Query(query::QueryError {
                query: req.query.clone(),
                position: None,
                expected,
            })
        })
    }

    /// Up to `before` and `after` events of the same file around `hit`, by
    /// offset, at most `max_bytes` of them as JSON in all (`truncated` says
    /// when that stopped it). The cost grows with the lines asked for, not
    /// with the file: it reads the offsets of the hit's 64 KiB block of the
    /// file, then of blocks further away, and stops at the lines it needs
    /// or at 4 MiB of the file with no line indexed (a gap).
    pub fn context(
        &self,
        hit: &IndexedLine,
        before: usize,
        after: usize,
        max_bytes: usize,
        deadline: &Deadline,
    ) -> Result<Context, IndexError> {
        let searcher = self.reader.searcher();
        let mut ctx = Context::default();
        let mut bytes = 0usize;
        for (side, want) in [(Side::Before, before), (Side::After, after)] {
            let addrs = self.neighbours(&searcher, hit, side, want, deadline)?;
            let mut lines = Vec::with_capacity(addrs.len());
            for addr in addrs {
                check(deadline)?;
                let line = self.line(&searcher.doc(addr)?)?;
                // As the answer will hold it (escapes, fields and all).
                let size = serde_json::to_vec(&line).map_or(usize::MAX, |v| v.len());
                bytes = bytes.saturating_add(size);
                if bytes > max_bytes {
                    ctx.truncated = true;
                    break;
                }
                lines.push(line);
            }
            match side {
                Side::Before => {
                    lines.reverse();
                    ctx.before = lines;
                }
                Side::After => ctx.after = lines,
            }
            if ctx.truncated {
                break;
            }
        }
        Ok(ctx)
    }

    /// The `want` events of `hit`'s file nearest to it on `side`, nearest
    /// first: scans windows of offset blocks moving away from the hit's
    /// block, one block wide after a window that found lines, twice as wide
    /// (up to 64 blocks) after one that found none.
    fn neighbours(
        &self,
        searcher: &Searcher,
        hit: &IndexedLine,
        side: Side,
        want: usize,
        deadline: &Deadline,
    ) -> Result<Vec<DocAddress>, IndexError> {
        let f = &self.fields;
        let home = hit.offset >> OFFSET_BLOCK_BITS;
        let term = |field, v: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, v),
                IndexRecordOption::Basic,
            ))
        };
        let file_id = hit.file_id.to_string();
        let mut found: Vec<(u64, DocAddress)> = Vec::new();
        // The window is [lo, hi] in blocks; `near` is the block of the
        // nearest line found so far beyond which nothing was found.
        let (mut lo, mut hi, mut width) = (home, home, 1u64);
        let mut near = home;
        while found.len() < want {
            // The window's blocks as a union of terms: a range query would
            // build a bitset over every document of the segment first.
            let blocks: Box<dyn Query> = Box::new(BooleanQuery::new(
                (lo..=hi)
                    .map(|b| -> (Occur, Box<dyn Query>) {
                        (
                            Occur::Should,
                            Box::new(TermQuery::new(
                                Term::from_field_u64(f.offset_block, b),
                                IndexRecordOption::Basic,
                            )),
                        )
                    })
                    .collect(),
            ));
            let window: Box<dyn Query> = Box::new(BooleanQuery::new(vec![
                (Occur::Must, blocks),
                (Occur::Must, term(f.file_id, &file_id)),
                (Occur::Must, term(f.host, &hit.host)),
                (Occur::Must, term(f.log, &hit.log)),
            ]));
            let mut got: Vec<(u64, DocAddress)> = bounded(searcher, &window, Offsets, deadline)?
                .into_iter()
                .filter(|(o, _)| match side {
                    Side::Before => *o < hit.offset,
                    Side::After => *o > hit.offset,
                })
                .collect();
            match side {
                Side::Before => got.sort_unstable_by_key(|a| std::cmp::Reverse(a.0)),
                Side::After => got.sort_unstable_by_key(|a| a.0),
            }
            // Windows widen only across stretches with nothing indexed, and
            // never past the gap limit: a dense stretch after sparse lines
            // is read a block at a time.
            if let Some(last) = got.last() {
                near = last.0 >> OFFSET_BLOCK_BITS;
                width = 1;
            } else {
                width = width.saturating_mul(2).min(CONTEXT_GAP_BLOCKS);
            }
            found.extend(got);
            // The next window, further away; none past the file's start or
            // a gap of CONTEXT_GAP_BLOCKS.
            match side {
                Side::Before => {
                    if lo == 0 || near.saturating_sub(lo) > CONTEXT_GAP_BLOCKS {
                        break;
                    }
                    hi = lo - 1;
                    lo = lo.saturating_sub(width);
                }
                Side::After => {
                    if hi.saturating_sub(near) > CONTEXT_GAP_BLOCKS || hi == u64::MAX {
                        break;
                    }
                    lo = hi + 1;
                    hi = hi.saturating_add(width);
                }
            }
        }
        found.truncate(want);
        Ok(found.into_iter().map(|(_, a)| a).collect())
    }

    /// Marks the query's terms in bodies.
    pub fn highlighter(&self, req: &SearchRequest) -> Result<Highlighter, IndexError> {
        let query = self.query(req)?;
        let analyzer = self.index.tokenizer_for_field(self.fields.body)?;
        Ok(Highlighter::new(query.as_ref(), self.fields.body, analyzer))
    }

    fn line(&self, doc: &TantivyDocument) -> Result<IndexedLine, IndexError> {
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
        Some(check(self.deadline).and_then(|()| self.searcher.line(&self.reader.doc(addr)?)))
    }
}

/// `searcher.search` under `deadline`.
fn bounded<C: Collector>(
    searcher: &Searcher,
    query: &dyn Query,
    inner: C,
    deadline: &Deadline,
) -> Result<C::Fruit, IndexError> {
    searcher
        .search(query, &Bounded { inner, deadline })
        .map_err(|e| {
            if is_stop(&e) {
                IndexError::Stopped
            } else {
                IndexError::Tantivy(e)
            }
        })
}

fn check(deadline: &Deadline) -> Result<(), IndexError> {
    if deadline.passed() {
        Err(IndexError::Stopped)
    } else {
        Ok(())
    }
}

/// Every matching document with its `offset` (fast field).
struct Offsets;

struct SegmentOffsets {
    ord: SegmentOrdinal,
    offsets: Option<Column<u64>>,
    found: Vec<(u64, DocAddress)>,
}

impl Collector for Offsets {
    type Fruit = Vec<(u64, DocAddress)>;
    type Child = SegmentOffsets;

    fn for_segment(
        &self,
        ord: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<SegmentOffsets> {
        Ok(SegmentOffsets {
            ord,
            offsets: segment.fast_fields().u64("offset").ok(),
            found: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Self::Fruit>) -> tantivy::Result<Self::Fruit> {
        Ok(fruits.into_iter().flatten().collect())
    }
}

impl SegmentCollector for SegmentOffsets {
    type Fruit = Vec<(u64, DocAddress)>;

    fn collect(&mut self, doc: DocId, _: Score) {
        if let Some(o) = self.offsets.as_ref().and_then(|c| c.first(doc)) {
            self.found.push((o, DocAddress::new(self.ord, doc)));
        }
    }

    fn harvest(self) -> Self::Fruit {
        self.found
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

    fn file_line(file: u64, offset: u64, len: u64) -> IndexedLine {
        IndexedLine {
            ts: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
            host: "web01".into(),
            log: "app".into(),
            path: "/var/log/app.log".into(),
            file_id: FileId {
                dev: 1,
                ino: file,
                fingerprint: 7,
            },
            offset,
            end_offset: offset + len,
            body: format!("file {file} at {offset}"),
            fields: Default::default(),
            parse_error: false,
        }
    }

    /// Regression: context ran a range query over every event of the hit's
    /// file, per hit (153 s for 50 hits on a 64 M-line file). It now walks
    /// the offset blocks around the hit; this checks it finds the same
    /// lines across blocks and gaps, and never another file's.
    #[test]
    fn context_walks_blocks_across_gaps_and_stays_in_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = IndexWriter::open(dir.path()).unwrap();
        // 1000-byte lines: 65 per 64 KiB block; lines 200..300 missing (a
        // 100 KB gap); a second file interleaved at the same offsets.
        let len = 1000;
        for i in (0..500u64).filter(|i| !(200..300).contains(i)) {
            w.add(&file_line(1, i * len, len)).unwrap();
            w.add(&file_line(2, i * len + 1, len)).unwrap();
        }
        // A line 10 MiB further: beyond the gap context looks across.
        w.add(&file_line(1, 10 << 20, len)).unwrap();
        w.commit().unwrap();
        let s = IndexSearcher::open(dir.path()).unwrap();
        let offs = |v: &[IndexedLine]| v.iter().map(|l| l.offset / len).collect::<Vec<_>>();
        let none = Deadline::default();
        let ctx = |i: u64, b, a| {
            s.context(&file_line(1, i * len, len), b, a, usize::MAX, &none)
                .unwrap()
        };
        let c = ctx(130, 100, 100);
        assert_eq!(offs(&c.before), (30..130).collect::<Vec<_>>());
        assert_eq!(
            offs(&c.after),
            (131..200).chain(300..331).collect::<Vec<_>>(),
            "across the 100 KB gap"
        );
        assert!(c.before.iter().chain(&c.after).all(|l| l.file_id.ino == 1));
        let c = ctx(0, 5, 2);
        assert_eq!((offs(&c.before), offs(&c.after)), (vec![], vec![1, 2]));
        // The last line before the far one: nothing after within 4 MiB.
        let c = ctx(499, 1, 3);
        assert_eq!((offs(&c.before), c.after.len()), (vec![498], 0));
        // The far line finds nothing before it within 4 MiB either.
        let far = s
            .context(&file_line(1, 10 << 20, len), 3, 3, usize::MAX, &none)
            .unwrap();
        assert!(far.before.is_empty() && far.after.is_empty());
        // A byte budget stops it and says so.
        let c = s
            .context(&file_line(1, 130 * len, len), 100, 100, 100, &none)
            .unwrap();
        assert!(c.truncated);
        assert!(c.before.is_empty(), "one line as JSON is over 100 bytes");
        let c = s
            .context(&file_line(1, 130 * len, len), 100, 100, 1000, &none)
            .unwrap();
        assert!(c.truncated);
        let json: usize = c
            .before
            .iter()
            .map(|l| serde_json::to_vec(l).unwrap().len())
            .sum();
        assert!(json <= 1000 && !c.before.is_empty(), "{json}");
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

    /// Regression: an event whose time was outside 1677..2262 (a log line
    /// saying year 9999) overflowed tantivy's nanoseconds.
    #[test]
    fn events_from_the_far_past_and_future_are_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = IndexWriter::open(dir.path()).unwrap();
        for (i, ts) in [
            chrono::DateTime::<Utc>::MAX_UTC,
            chrono::DateTime::<Utc>::MIN_UTC,
        ]
        .into_iter()
        .enumerate()
        {
            let mut l = file_line(9, i as u64 * 100, 100);
            l.body = "far away".into();
            l.ts = ts;
            w.add(&l).unwrap();
        }
        w.commit().unwrap();
        let s = IndexSearcher::open(dir.path()).unwrap();
        let hits = s.search(&req("far")).unwrap();
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].ts.format("%Y").to_string(), "2262");
        assert_eq!(hits[1].ts.format("%Y").to_string(), "1677");
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
