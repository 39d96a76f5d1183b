//! What a cluster's members need to find a handover overlap (docs/cluster.md):
//! the events a tenure indexed last, and the offsets of a file held under a
//! tenure or under any later one.

use std::ops::Bound;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{Order, TantivyDocument, Term};

use crate::search::IndexSearcher;
use crate::writer::file_query;
use crate::IndexError;

/// Which tenures [`IndexSearcher::tenure_offsets`] looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tenure {
    /// Exactly this one.
    Is(u64),
    /// Any later than this one.
    After(u64),
}

/// A file of a host's log, as stored (`file_id` in its text form).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoredFile {
    pub log: String,
    pub file_id: String,
}

impl IndexSearcher {
    /// Whether the index records tenures (one made before them does not).
    pub fn has_tenures(&self) -> bool {
        self.fields.tenure.is_some()
    }

    /// The files (and the offsets in them) of the `n` events of `host` that
    /// tenure `tenure` indexed last (by commit): where an overlap with the
    /// next tenure is, if anywhere.
    pub fn tenure_tail(
        &self,
        host: &str,
        tenure: u64,
        n: usize,
    ) -> Result<Vec<(StoredFile, u64)>, IndexError> {
        let (Some(t), Some(_)) = (self.fields.tenure, self.fields.commit) else {
            return Ok(Vec::new());
        };
        let f = &self.fields;
        let q: Box<dyn Query> = Box::new(BooleanQuery::new(vec![
            (Occur::Must, term_query(Term::from_field_text(f.host, host))),
            (Occur::Must, is(t, tenure)),
        ]));
        let searcher = self.reader.searcher();
        let top = searcher.search(
            &q,
            &TopDocs::with_limit(n.max(1)).order_by_fast_field::<u64>("commit", Order::Desc),
        )?;
        let mut out = Vec::with_capacity(top.len());
        for (_, addr) in top {
            let doc: TantivyDocument = searcher.doc(addr)?;
            let text = |field| {
                doc.get_first(field)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let offset = doc
                .get_first(f.offset)
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            out.push((
                StoredFile {
                    log: text(f.log),
                    file_id: text(f.file_id),
                },
                offset,
            ));
        }
        Ok(out)
    }

    /// The highest offset at which an event of `host`'s `file` starts
    /// under `tenure`.
    pub fn tenure_last(
        &self,
        host: &str,
        file: &StoredFile,
        tenure: u64,
    ) -> Result<Option<u64>, IndexError> {
        let Some(t) = self.fields.tenure else {
            return Ok(None);
        };
        let q: Box<dyn Query> = Box::new(BooleanQuery::new(vec![
            (
                Occur::Must,
                file_query(&self.fields, host, &file.log, &file.file_id),
            ),
            (Occur::Must, is(t, tenure)),
        ]));
        let top = self.reader.searcher().search(
            &q,
            &TopDocs::with_limit(1).order_by_fast_field::<u64>("offset", Order::Desc),
        )?;
        Ok(top.first().map(|(o, _)| *o))
    }

    /// The offsets, ascending, at which events of `host`'s `file` start
    /// within `from..=to` under `tenure`; at most `max` (the first ones).
    pub fn tenure_offsets(
        &self,
        host: &str,
        file: &StoredFile,
        tenure: Tenure,
        (from, to): (u64, u64),
        max: usize,
    ) -> Result<Vec<u64>, IndexError> {
        let Some(t) = self.fields.tenure else {
            return Ok(Vec::new());
        };
        let f = &self.fields;
        let by_tenure: Box<dyn Query> = match tenure {
            Tenure::Is(n) => is(t, n),
            Tenure::After(n) => Box::new(RangeQuery::new(
                Bound::Excluded(Term::from_field_u64(t, n)),
                Bound::Unbounded,
            )),
        };
        let q: Box<dyn Query> = Box::new(BooleanQuery::new(vec![
            (Occur::Must, file_query(f, host, &file.log, &file.file_id)),
            (Occur::Must, by_tenure),
            (
                Occur::Must,
                Box::new(RangeQuery::new(
                    Bound::Included(Term::from_field_u64(f.offset, from)),
                    Bound::Included(Term::from_field_u64(f.offset, to)),
                )),
            ),
        ]));
        let top = self.reader.searcher().search(
            &q,
            &TopDocs::with_limit(max.max(1)).order_by_fast_field::<u64>("offset", Order::Asc),
        )?;
        Ok(top.into_iter().map(|(o, _)| o).collect())
    }
}

fn term_query(t: Term) -> Box<dyn Query> {
    Box::new(TermQuery::new(t, IndexRecordOption::Basic))
}

/// Events under exactly `tenure` (the field is fast only: a range).
pub(crate) fn is(field: tantivy::schema::Field, tenure: u64) -> Box<dyn Query> {
    let at = Term::from_field_u64(field, tenure);
    Box::new(RangeQuery::new(
        Bound::Included(at.clone()),
        Bound::Included(at),
    ))
}
