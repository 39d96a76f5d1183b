//! Adding lines, idempotently and cheaply.
//!
//! Re-adding a line must replace it (the durable path re-delivers lines after
//! restarts). Deleting each line's name before adding it works but costs one
//! term lookup per line in every segment at every commit, which dominates
//! bulk loads. Instead, lines of one file that follow each other (each starts
//! at the previous one's `end_offset`) are buffered as a *run*, and the run
//! is written as ONE delete of `host AND log AND file_id AND offset in
//! [first, last]` (the 64 KiB offset blocks from the inverted index, the
//! exact range from the offset column) followed by its documents. Any line of that file starting inside the range is one of the
//! run's lines (the run covers every byte in between), so the range delete
//! removes exactly the older copies of the run's lines, plus stale pieces
//! that started inside it (a partial line re-read whole, a multiline event
//! re-joined differently). Lines that do not follow on start a new run; a
//! run of one line is a plain upsert.
//!
//! Most runs are new lines appended to a file, and their delete would find
//! nothing; yet tantivy applies every delete to every segment at commit (the
//! offset range scans each segment's whole offset column). So the writer
//! knows, per file, the highest offset a line of it starts at in the index
//! (looked up once per file, then kept up to date as runs are written) and
//! skips the delete of a run that starts above it: no line of that file can
//! start inside the run. With 400 followed files that was 400 deletes per
//! commit, two commits a second.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::ops::Bound;
use std::path::Path;

use rill_proto::{FileId, ParsedEvent};
use serde_json::{Map, Value};
use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, InvertedIndexRangeQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{IndexRecordOption, OwnedValue};
use tantivy::{
    Index, IndexReader, IndexWriter as TantivyWriter, Order, ReloadPolicy, TantivyDocument, Term,
};

use crate::schema::{self, Fields, OFFSET_BLOCK_BITS};
use crate::{IndexError, IndexedLine};

/// How much the writer may use.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Indexing threads.
    pub threads: usize,
    /// Memory budget over all threads, bytes.
    pub memory: usize,
}

impl Default for WriterOptions {
    /// Two threads, 128 MB: the collector runs several busy processes, but a
    /// parser catching up after an outage must keep up with many hosts.
    fn default() -> Self {
        WriterOptions {
            threads: 2,
            memory: 128_000_000,
        }
    }
}

/// A run is written once it holds this many lines (bounds memory between
/// commits during bulk loads).
const MAX_RUN: usize = 20_000;

/// Consecutive lines of one file, not handed to tantivy yet.
struct Run {
    host: String,
    log: String,
    file_id: FileId,
    /// `file_id` as stored, made once per run.
    file_id_text: String,
    first: u64,
    last: u64,
    /// Where the line after the run would start.
    next: u64,
    /// No line of the file at or after the run's first offset was indexed
    /// when it began: its documents need no delete before them and go to
    /// tantivy as they come (its indexing threads work meanwhile), not
    /// held in `docs` until the run ends.
    fresh: bool,
    /// The host's tenure when the run began (see [`IndexWriter::set_tenures`]).
    tenure: u64,
    docs: Vec<TantivyDocument>,
}

impl Run {
    fn is(&self, host: &str, log: &str, file_id: FileId) -> bool {
        self.file_id == file_id && self.host == host && self.log == log
    }

    /// Host, log and file: whose lines the run holds.
    fn file(&self) -> FileKey {
        (self.host.clone(), self.log.clone(), self.file_id)
    }

    /// Documents of the run's file whose line starts inside the run: at
    /// one of its lines' first bytes, or inside one (a piece of a line once
    /// sent partial, now read whole).
    fn same_lines(&self, f: &Fields) -> Box<dyn Query> {
        let end = self.next.saturating_sub(1).max(self.last);
        Box::new(BooleanQuery::new(vec![
            (
                Occur::Must,
                file_query(f, &self.host, &self.log, &self.file_id_text),
            ),
            (
                Occur::Must,
                Box::new(InvertedIndexRangeQuery::new(
                    Bound::Included(Term::from_field_u64(
                        f.offset_block,
                        self.first >> OFFSET_BLOCK_BITS,
                    )),
                    Bound::Included(Term::from_field_u64(
                        f.offset_block,
                        end >> OFFSET_BLOCK_BITS,
                    )),
                )),
            ),
            (
                Occur::Must,
                Box::new(RangeQuery::new(
                    Bound::Included(Term::from_field_u64(f.offset, self.first)),
                    Bound::Included(Term::from_field_u64(f.offset, end)),
                )),
            ),
        ]))
    }
}

/// (host, log, file_id).
type FileKey = (String, String, FileId);

/// Every document of one file of one log of one host.
pub(crate) fn file_query(f: &Fields, host: &str, log: &str, file_id_text: &str) -> Box<dyn Query> {
    let term = |field, v: &str| -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(field, v),
            IndexRecordOption::Basic,
        ))
    };
    Box::new(BooleanQuery::new(vec![
        (Occur::Must, term(f.host, host)),
        (Occur::Must, term(f.log, log)),
        (Occur::Must, term(f.file_id, file_id_text)),
    ]))
}

/// The parts of an event a document is made of.
struct EventRef<'a> {
    ts: chrono::DateTime<chrono::Utc>,
    host: &'a str,
    log: &'a str,
    path: &'a str,
    file_id: FileId,
    offset: u64,
    end_offset: u64,
    body: &'a str,
    fields: Map<String, Value>,
    parse_error: bool,
    collector: &'a str,
}

/// The only writer of an index (tantivy holds a lock file while it lives).
pub struct IndexWriter {
    writer: TantivyWriter,
    fields: Fields,
    /// Open runs by a hash of (host, log, file_id); a collision only ends a
    /// run early.
    runs: HashMap<u64, Run>,
    pending: usize,
    /// Per file: the highest offset a line of it starts at, in the index or
    /// added since (None: no line of it). Files not in here are looked up.
    highest: HashMap<FileKey, Option<u64>>,
    index: Index,
    /// Opened for lookups in [`IndexWriter::highest`], dropped at commit so
    /// that it does not keep merged-away segment files on disk.
    reader: Option<IndexReader>,
    /// Stored with every commit (tantivy's commit payload): what the
    /// caller needs to know of the last commit after a crash.
    payload: Option<String>,
    /// The opstamp of the last commit: what events added now carry in
    /// `commit` (see [`schema::Fields::commit`]).
    committed: u64,
    /// Per host: the tenure its events are indexed under (a cluster's).
    tenures: HashMap<String, u64>,
}

/// Forget the highest offsets (they are looked up again) beyond this many
/// files: rotation makes new files for as long as the parser runs.
const MAX_KNOWN_FILES: usize = 100_000;

fn run_hash(host: &str, log: &str, file_id: FileId) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (host, log, file_id).hash(&mut h);
    h.finish()
}

impl IndexWriter {
    /// Opens the index in `dir` with default options, creating the folder and
    /// the index if needed.
    pub fn open(dir: &Path) -> Result<Self, IndexError> {
        Self::open_with(dir, WriterOptions::default())
    }

    pub fn open_with(dir: &Path, opts: WriterOptions) -> Result<Self, IndexError> {
        let open_err = |source| IndexError::Open {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| open_err(tantivy::TantivyError::IoError(std::sync::Arc::new(e))))?;
        let directory = MmapDirectory::open(dir).map_err(|e| open_err(e.into()))?;
        let (schema, _) = schema::build();
        // An index made by an older rill opens with its own schema: the
        // fields added since (`commit`, `collector`, `tenure`) are optional,
        // the others must be there.
        let index = if Index::exists(&directory).map_err(|e| open_err(e.into()))? {
            Index::open(directory)
        } else {
            Index::create(directory, schema, tantivy::IndexSettings::default())
        }
        .map_err(open_err)?;
        let fields = schema::fields_of(&index.schema()).map_err(|field| IndexError::OldSchema {
            path: dir.to_owned(),
            field,
        })?;
        let writer = index
            .writer_with_num_threads(opts.threads, opts.memory)
            .map_err(open_err)?;
        let metas = index.load_metas().map_err(open_err)?;
        let (payload, committed) = (metas.payload, metas.opstamp);
        Ok(IndexWriter {
            writer,
            fields,
            runs: HashMap::new(),
            pending: 0,
            highest: HashMap::new(),
            index,
            reader: None,
            payload,
            committed,
            tenures: HashMap::new(),
        })
    }

    /// In a cluster: the tenure each host's events are indexed under from
    /// now on (0 for a host not named). Lines added before are written
    /// under the tenures they were added with.
    pub fn set_tenures(&mut self, tenures: HashMap<String, u64>) -> Result<(), IndexError> {
        self.write_runs()?;
        self.tenures = tenures;
        Ok(())
    }

    /// Whether the index records tenures (an index made before them does not).
    pub fn has_tenures(&self) -> bool {
        self.fields.tenure.is_some()
    }

    /// Deletes `host`'s events of file (`log`, `file_id` as stored) indexed
    /// under `tenure`, starting at offsets `from..=to`: copies a later
    /// tenure holds (a cluster's handover overlap). Visible after the
    /// next commit. Nothing without tenures.
    pub fn delete_tenure_range(
        &mut self,
        host: &str,
        log: &str,
        file_id: &str,
        tenure: u64,
        (from, to): (u64, u64),
    ) -> Result<(), IndexError> {
        let Some(t) = self.fields.tenure else {
            return Ok(());
        };
        self.write_runs()?;
        let f = &self.fields;
        let q: Box<dyn Query> = Box::new(BooleanQuery::new(vec![
            (Occur::Must, file_query(f, host, log, file_id)),
            (Occur::Must, crate::tenure::is(t, tenure)),
            (
                Occur::Must,
                Box::new(InvertedIndexRangeQuery::new(
                    Bound::Included(Term::from_field_u64(
                        f.offset_block,
                        from >> OFFSET_BLOCK_BITS,
                    )),
                    Bound::Included(Term::from_field_u64(
                        f.offset_block,
                        to >> OFFSET_BLOCK_BITS,
                    )),
                )),
            ),
            (
                Occur::Must,
                Box::new(RangeQuery::new(
                    Bound::Included(Term::from_field_u64(f.offset, from)),
                    Bound::Included(Term::from_field_u64(f.offset, to)),
                )),
            ),
        ]));
        self.writer.delete_query(q)?;
        Ok(())
    }

    /// The payload of the last commit (see [`IndexWriter::set_payload`]).
    pub fn payload(&self) -> Option<&str> {
        self.payload.as_deref()
    }

    /// What every commit from now on stores with it, until set again.
    pub fn set_payload(&mut self, payload: String) {
        self.payload = Some(payload);
    }

    /// Adds `line`, replacing any line with the same durable name. It is
    /// visible to searchers after the next [`IndexWriter::commit`].
    pub fn add(&mut self, line: &IndexedLine) -> Result<(), IndexError> {
        self.add_ref(EventRef {
            ts: line.ts,
            host: &line.host,
            log: &line.log,
            path: &line.path,
            file_id: line.file_id,
            offset: line.offset,
            end_offset: line.end_offset,
            body: &line.body,
            fields: line.fields.clone(),
            parse_error: line.parse_error,
            collector: &line.collector,
        })
    }

    /// Like [`IndexWriter::add`] for a parsed event, without copying it.
    pub fn add_event(&mut self, e: ParsedEvent) -> Result<(), IndexError> {
        self.add_ref(EventRef {
            ts: e.ts,
            host: &e.host,
            log: &e.log,
            path: &e.path,
            file_id: e.file_id,
            offset: e.offset,
            end_offset: e.end_offset,
            body: &e.body,
            fields: e.fields,
            parse_error: e.parse_error,
            collector: &e.collector,
        })
    }

    fn add_ref(&mut self, e: EventRef) -> Result<(), IndexError> {
        let h = run_hash(e.host, e.log, e.file_id);
        let follows = self.runs.get(&h).is_some_and(|r| {
            r.is(e.host, e.log, e.file_id)
                && r.next == e.offset
                && r.next != 0
                && r.docs.len() < MAX_RUN
        });
        if !follows {
            if let Some(run) = self.runs.remove(&h) {
                self.write_run(run)?;
            }
            let file_id_text = e.file_id.to_string();
            let key = (e.host.to_owned(), e.log.to_owned(), e.file_id);
            let fresh = self
                .highest(&key, &file_id_text)?
                .is_none_or(|h| h < e.offset);
            self.runs.insert(
                h,
                Run {
                    host: key.0,
                    log: key.1,
                    file_id: e.file_id,
                    file_id_text,
                    first: e.offset,
                    last: e.offset,
                    next: e.end_offset,
                    fresh,
                    tenure: self.tenures.get(e.host).copied().unwrap_or(0),
                    docs: Vec::new(),
                },
            );
        }
        let f = self.fields;
        let run = self.runs.get_mut(&h).expect("inserted above");
        run.last = e.offset;
        run.next = e.end_offset;
        let doc = document(&f, &run.file_id_text, (self.committed, run.tenure), e);
        if run.fresh {
            self.writer.add_document(doc)?;
        } else {
            run.docs.push(doc);
        }
        self.pending += 1;
        Ok(())
    }

    /// One range delete over the run's offsets, then its documents: a
    /// delete applies only to documents added before it. No delete when no
    /// line of the file starts at or after the run's first offset.
    fn write_run(&mut self, run: Run) -> Result<(), IndexError> {
        let key = run.file();
        let highest = self.highest(&key, &run.file_id_text)?;
        if highest.is_some_and(|h| h >= run.first) {
            self.writer.delete_query(run.same_lines(&self.fields))?;
        }
        self.highest
            .insert(key, Some(highest.map_or(run.last, |h| h.max(run.last))));
        for doc in run.docs {
            self.writer.add_document(doc)?;
        }
        Ok(())
    }

    /// The highest offset a line of `file` starts at: known, or looked up in
    /// the committed index (this process's own lines are always known, as
    /// the file is looked up before its first run is written).
    fn highest(&mut self, file: &FileKey, file_id_text: &str) -> Result<Option<u64>, IndexError> {
        if let Some(h) = self.highest.get(file) {
            return Ok(*h);
        }
        if self.reader.is_none() {
            self.reader = Some(
                self.index
                    .reader_builder()
                    .reload_policy(ReloadPolicy::Manual)
                    .try_into()?,
            );
        }
        let searcher = self.reader.as_ref().expect("opened above").searcher();
        let (host, log, _) = file;
        let top = searcher.search(
            &file_query(&self.fields, host, log, file_id_text),
            &TopDocs::with_limit(1).order_by_fast_field::<u64>("offset", Order::Desc),
        )?;
        let h = top.first().map(|(offset, _)| *offset);
        self.highest.insert(file.clone(), h);
        Ok(h)
    }

    fn write_runs(&mut self) -> Result<(), IndexError> {
        let runs: Vec<Run> = self.runs.drain().map(|(_, r)| r).collect();
        for run in runs {
            self.write_run(run)?;
        }
        Ok(())
    }

    /// Lines added since the last commit.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Makes every added line durable and visible to searchers opened (or
    /// reloaded) after this.
    pub fn commit(&mut self) -> Result<(), IndexError> {
        self.write_runs()?;
        let mut prepared = self.writer.prepare_commit()?;
        if let Some(p) = &self.payload {
            prepared.set_payload(p);
        }
        self.committed = prepared.commit()?;
        self.pending = 0;
        self.reader = None;
        // Only here: every line added is committed, so a lookup sees them.
        if self.highest.len() >= MAX_KNOWN_FILES {
            self.highest.clear();
        }
        Ok(())
    }

    /// Commits, then waits until background merges are done (for tools that
    /// measure the final index, like the benchmark).
    pub fn finish(mut self) -> Result<(), IndexError> {
        self.commit()?;
        self.writer.wait_merging_threads()?;
        Ok(())
    }

    /// Deletes every event older than `cutoff` (retention) and commits.
    pub fn delete_older_than(
        &mut self,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), IndexError> {
        self.write_runs()?;
        let t = Term::from_field_date(self.fields.ts, crate::tantivy_time(cutoff));
        let old: Box<dyn Query> = Box::new(RangeQuery::new(Bound::Unbounded, Bound::Excluded(t)));
        self.writer.delete_query(old)?;
        self.commit()
    }
}

fn document(
    f: &Fields,
    file_id_text: &str,
    (committed, tenure): (u64, u64),
    e: EventRef,
) -> TantivyDocument {
    let mut doc = TantivyDocument::default();
    if let Some(c) = f.commit {
        doc.add_u64(c, committed);
    }
    // Outside a cluster (tenure 0) no value: nothing to store or index.
    if let Some(t) = f.tenure.filter(|_| tenure != 0) {
        doc.add_u64(t, tenure);
    }
    doc.add_date(f.ts, crate::tantivy_time(e.ts));
    doc.add_text(f.host, e.host);
    doc.add_text(f.log, e.log);
    if !e.path.is_empty() {
        doc.add_text(f.path, e.path);
    }
    doc.add_text(f.file_id, file_id_text);
    doc.add_u64(f.offset, e.offset);
    doc.add_u64(f.offset_block, e.offset >> OFFSET_BLOCK_BITS);
    doc.add_u64(f.end_offset, e.end_offset);
    doc.add_text(f.body, e.body);
    if !e.fields.is_empty() {
        doc.add_object(
            f.fields,
            e.fields
                .into_iter()
                .map(|(k, v)| (k, OwnedValue::from(v)))
                .collect(),
        );
    }
    if e.parse_error {
        doc.add_bool(f.parse_error, true);
    }
    if let Some(c) = f.collector.filter(|_| !e.collector.is_empty()) {
        doc.add_text(c, e.collector);
    }
    doc
}

#[cfg(test)]
mod tests;
