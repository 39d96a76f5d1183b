//! How far each file was published live, kept next to the checkpoints
//! (`state_dir/checkpoints/<host>.live`), so that a tap that restarts (a
//! crash, `kill -9`, any restart while the index was behind) does not
//! publish live again what it published before: it resumes from the
//! index's position, and the lines up to the mark go to the index only. A
//! subscriber sees a gap (a new `epoch`, its `seq` from 0), never a repeat.
//!
//! The mark is written before the lines go out, with one `pwrite` of a
//! fixed-size record (no fsync: a process that dies leaves its writes in
//! the page cache; a machine that crashes may repeat a few lines), so a
//! crash between the two loses those lines from the live stream rather
//! than sending them twice.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rill_proto::FileId;
use tracing::warn;

/// Files remembered per log (a log publishes live from its current file
/// and the old ones it finishes).
const FILES_PER_LOG: usize = 4;

/// Per log name: the files published live, and the offset after the last
/// line published of each (newest last).
type Marks = HashMap<String, VecDeque<(FileId, u64)>>;

pub struct LiveMarks {
    file: Option<File>,
    path: PathBuf,
    marks: Marks,
    buf: Vec<u8>,
    /// The file's length: every write covers all of it.
    len: usize,
}

impl LiveMarks {
    /// The marks saved at `path` (none if missing or unreadable), kept there
    /// from now on.
    pub fn open(path: &Path) -> LiveMarks {
        let marks = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Vec<(String, Vec<(FileId, u64)>)>>(&b).ok())
            .map(|v| {
                v.into_iter()
                    .map(|(log, files)| (log, files.into_iter().collect()))
                    .collect()
            })
            .unwrap_or_default();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .inspect_err(|e| warn!(path = %path.display(), error = %e, "cannot keep live marks; a restart may publish lines live again"))
            .ok();
        let len = std::fs::metadata(path).map_or(0, |m| m.len() as usize);
        LiveMarks {
            file,
            path: path.to_owned(),
            marks,
            buf: Vec::new(),
            len,
        }
    }

    /// Marks that keep nothing (tests).
    pub fn none() -> LiveMarks {
        LiveMarks {
            file: None,
            path: PathBuf::new(),
            marks: Marks::new(),
            buf: Vec::new(),
            len: 0,
        }
    }

    /// Whether the line of `log`'s file `file_id` at `offset` was published
    /// live already (by an earlier run).
    pub fn published(&self, log: &str, file_id: FileId, offset: u64) -> bool {
        self.marks
            .get(log)
            .and_then(|files| files.iter().find(|(f, _)| *f == file_id))
            .is_some_and(|&(_, end)| offset < end)
    }

    /// Records that `log`'s file `file_id` is published live up to `end`
    /// (call before publishing).
    pub fn mark(&mut self, log: &str, file_id: FileId, end: u64) {
        let files = self.marks.entry(log.to_owned()).or_default();
        match files.iter_mut().find(|(f, _)| *f == file_id) {
            Some(m) if m.1 >= end => return,
            Some(m) => m.1 = end,
            None => {
                files.push_back((file_id, end));
                if files.len() > FILES_PER_LOG {
                    files.pop_front();
                }
            }
        }
        self.write();
    }

    /// The marks, in one write at offset 0 padded with spaces to a whole
    /// number of 4 KiB blocks and to the file's length: no stale tail of a
    /// longer earlier write survives.
    fn write(&mut self) {
        let Some(file) = &self.file else { return };
        let list: Vec<(&String, Vec<(FileId, u64)>)> = self
            .marks
            .iter()
            .map(|(log, files)| (log, files.iter().copied().collect()))
            .collect();
        self.buf.clear();
        if serde_json::to_writer(&mut self.buf, &list).is_err() {
            return;
        }
        self.len = self.len.max(self.buf.len().div_ceil(4096).max(1) * 4096);
        self.buf.resize(self.len, b' ');
        if let Err(e) = file.write_all_at(&self.buf, 0) {
            warn!(path = %self.path.display(), error = %e, "could not write live marks");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ino: u64) -> FileId {
        FileId {
            dev: 1,
            ino,
            fingerprint: 2,
        }
    }

    #[test]
    fn marks_survive_a_restart_and_name_what_was_published() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web01.live");
        let mut m = LiveMarks::open(&path);
        assert!(!m.published("app", id(7), 0));
        m.mark("app", id(7), 100);
        m.mark("app", id(8), 30);
        m.mark("other", id(7), 5);
        drop(m);
        let m = LiveMarks::open(&path);
        assert!(m.published("app", id(7), 99));
        assert!(!m.published("app", id(7), 100), "the next line was not");
        assert!(m.published("app", id(8), 0));
        assert!(!m.published("app", id(9), 0), "another file");
        assert!(m.published("other", id(7), 4));
    }

    #[test]
    fn a_shorter_write_leaves_no_stale_tail_and_old_files_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web01.live");
        // An earlier run's marks, longer than a block.
        let mut m = LiveMarks::open(&path);
        m.mark(&"l".repeat(5000), id(1), 1);
        drop(m);
        std::fs::write(&path, vec![b'x'; 8192]).unwrap();
        // A run whose marks are short writes over all of it.
        let mut m = LiveMarks::open(&path);
        for ino in 10..10 + FILES_PER_LOG as u64 + 1 {
            m.mark("app", id(ino), 1);
        }
        drop(m);
        let m = LiveMarks::open(&path);
        assert!(!m.published("app", id(10), 0), "the oldest file forgotten");
        assert!(m.published("app", id(14), 0), "read back whole");
    }
}
