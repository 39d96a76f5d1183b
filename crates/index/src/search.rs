//! Searching.

use std::path::Path;

use chrono::{TimeZone, Utc};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, QueryParser, TermQuery};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{DocAddress, Index, IndexReader, ReloadPolicy, SegmentReader, TantivyDocument, Term};

use crate::schema::{self, Fields};
use crate::{IndexError, IndexedLine};

/// What to look for.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    /// Tantivy query syntax over `body`; `*` or empty matches every line.
    pub query: String,
    /// Only lines of this host (exact).
    pub host: Option<String>,
    /// Only lines of this log (exact).
    pub log: Option<String>,
    /// At most this many hits (not used by `count`).
    pub limit: usize,
}

/// A read-only view of the index as of when it was opened.
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
        let fields = schema::fields_of(&index.schema()).map_err(open_err)?;
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

    /// Matching lines, newest first.
    pub fn search(&self, req: &SearchRequest) -> Result<Vec<IndexedLine>, IndexError> {
        let query = self.query(req)?;
        let searcher = self.reader.searcher();
        let collector =
            TopDocs::with_limit(req.limit.max(1)).custom_score(|segment: &SegmentReader| {
                let ff = segment.fast_fields();
                let ts = ff.date("ts").ok();
                let offset = ff.u64("offset").ok();
                move |doc| {
                    let t = ts
                        .as_ref()
                        .and_then(|c| c.first(doc))
                        .map_or(i64::MIN, |d| d.into_timestamp_micros());
                    let o = offset.as_ref().and_then(|c| c.first(doc)).unwrap_or(0);
                    (t, o)
                }
            });
        let hits: Vec<((i64, u64), DocAddress)> = searcher.search(&query, &collector)?;
        hits.into_iter()
            .map(|(_, addr)| self.line(&searcher.doc(addr)?))
            .collect()
    }

    /// Number of matching lines.
    pub fn count(&self, req: &SearchRequest) -> Result<u64, IndexError> {
        let query = self.query(req)?;
        Ok(self.reader.searcher().search(&query, &Count)? as u64)
    }

    fn query(&self, req: &SearchRequest) -> Result<Box<dyn Query>, IndexError> {
        let f = &self.fields;
        let text = req.query.trim();
        let main: Box<dyn Query> = if text.is_empty() || text == "*" {
            Box::new(AllQuery)
        } else {
            let parser = QueryParser::for_index(&self.index, vec![f.body]);
            parser.parse_query(text).map_err(|e| IndexError::Query {
                query: req.query.clone(),
                reason: e.to_string(),
            })?
        };
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, main)];
        for (field, value) in [(f.host, &req.host), (f.log, &req.log)] {
            if let Some(v) = value {
                clauses.push((
                    Occur::Must,
                    Box::new(TermQuery::new(
                        Term::from_field_text(field, v),
                        IndexRecordOption::Basic,
                    )),
                ));
            }
        }
        Ok(if clauses.len() == 1 {
            clauses.pop().unwrap().1
        } else {
            Box::new(BooleanQuery::new(clauses))
        })
    }

    fn line(&self, doc: &TantivyDocument) -> Result<IndexedLine, IndexError> {
        let f = &self.fields;
        let text = |field| {
            doc.get_first(field)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let micros = doc
            .get_first(f.ts)
            .and_then(|v| v.as_datetime())
            .map_or(0, |d| d.into_timestamp_micros());
        Ok(IndexedLine {
            ts: Utc.timestamp_micros(micros).single().unwrap_or_default(),
            host: text(f.host),
            log: text(f.log),
            path: text(f.path),
            file_id: text(f.file_id).parse().unwrap_or_default(),
            offset: doc
                .get_first(f.offset)
                .and_then(|v| v.as_u64())
                .unwrap_or(0),
            body: text(f.body),
        })
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
            body: body.into(),
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
        assert!(e.to_string().starts_with("invalid query \"body:(\""), "{e}");
    }
}
