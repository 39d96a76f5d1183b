//! Adding lines.

use std::path::Path;

use rill_proto::line_key;
use tantivy::directory::MmapDirectory;
use tantivy::{Index, IndexWriter as TantivyWriter, TantivyDocument, Term};

use crate::schema::{self, Fields};
use crate::{IndexError, IndexedLine};

/// Memory budget of the tantivy writer: enough for large segments, small
/// enough for a collector machine running many other processes.
const WRITER_MEMORY: usize = 64_000_000;
/// One indexing thread: the parser is one of several busy processes on the
/// collector, and commits every 500 ms keep segments small anyway.
const WRITER_THREADS: usize = 1;

/// The only writer of an index (tantivy holds a lock file while it lives).
pub struct IndexWriter {
    writer: TantivyWriter,
    fields: Fields,
    pending: usize,
}

impl IndexWriter {
    /// Opens the index in `dir`, creating the folder and the index if needed.
    pub fn open(dir: &Path) -> Result<Self, IndexError> {
        let open_err = |source| IndexError::Open {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| open_err(tantivy::TantivyError::IoError(std::sync::Arc::new(e))))?;
        let directory = MmapDirectory::open(dir).map_err(|e| open_err(e.into()))?;
        let (schema, _) = schema::build();
        let index = Index::open_or_create(directory, schema).map_err(open_err)?;
        let fields = schema::fields_of(&index.schema()).map_err(open_err)?;
        let writer = index
            .writer_with_num_threads(WRITER_THREADS, WRITER_MEMORY)
            .map_err(open_err)?;
        Ok(IndexWriter {
            writer,
            fields,
            pending: 0,
        })
    }

    /// Adds `line`, replacing any line with the same durable name.
    pub fn add(&mut self, line: &IndexedLine) -> Result<(), IndexError> {
        let f = &self.fields;
        let key = line_key(&line.host, &line.log, &line.file_id, line.offset);
        // A delete applies to documents added before it, so delete-then-add
        // is an upsert, within one commit and across commits.
        self.writer.delete_term(Term::from_field_text(f.key, &key));
        let mut doc = TantivyDocument::default();
        doc.add_date(
            f.ts,
            tantivy::DateTime::from_timestamp_micros(line.ts.timestamp_micros()),
        );
        doc.add_text(f.host, &line.host);
        doc.add_text(f.log, &line.log);
        doc.add_text(f.path, &line.path);
        doc.add_text(f.file_id, line.file_id.to_string());
        doc.add_u64(f.offset, line.offset);
        doc.add_text(f.body, &line.body);
        doc.add_text(f.key, &key);
        self.writer.add_document(doc)?;
        self.pending += 1;
        Ok(())
    }

    /// Lines added since the last commit.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Makes every added line durable and visible to searchers opened after this.
    pub fn commit(&mut self) -> Result<(), IndexError> {
        self.writer.commit()?;
        self.pending = 0;
        Ok(())
    }
}
