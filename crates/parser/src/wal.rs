//! The parser's write-ahead log (`<index>/wal/`).
//!
//! A tap's lines are confirmed once they are here and synced to disk, not
//! once the index committed them: the tap's window empties at the speed of
//! a sequential write, and the index takes the log at its own pace, with a
//! commit every [`crate::COMMIT_EVERY`] whatever the taps do. After a crash
//! the index goes on from the position stored with its last commit (its
//! commit payload), so a line confirmed to a tap is indexed even if the
//! parser died before it was.
//!
//! The log is a sequence of segment files named by the position of their
//! first byte (`00000000000000000000.wal`), each a sequence of records:
//!
//! ```text
//! u32 LE  payload length
//! u32 LE  CRC-32 of the payload
//! payload: u64 LE seq | u32 LE meta length | meta (LineMeta JSON) | lines
//! ```
//!
//! A record cut short or failing its CRC ends what is read of its segment
//! (a write a crash interrupted: its tap was never told, and sends the
//! lines again). Segments wholly before the index's position are deleted.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tracing::warn;

/// A segment is closed and a new one begun past this size.
const SEGMENT_BYTES: u64 = 64 << 20;
/// A record's header: length and CRC.
const HEADER: u64 = 8;
/// No record is longer than this (a tap's message is at most 128 KiB of
/// lines plus one long line; `tap.max_line_bytes` is at most 64 MiB).
const MAX_RECORD: u32 = 80 << 20;
/// The most meta and lines one record may hold together.
pub const MAX_RECORD_DATA: usize = MAX_RECORD as usize - 12;

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Where it starts in the log, and where the next one starts.
    pub pos: u64,
    pub end: u64,
    /// The durable number of its first line in its tap run.
    pub seq: u64,
    pub meta: Vec<u8>,
    pub lines: Vec<u8>,
}

pub struct Wal {
    dir: PathBuf,
    /// Segment files by their first position.
    segments: BTreeMap<u64, PathBuf>,
    /// The segment written to, and where it starts.
    file: File,
    file_start: u64,
    /// Records not written to the file yet.
    buf: Vec<u8>,
    /// The position after the last record appended, and after the last
    /// synced.
    end: u64,
    synced: u64,
    /// The next record to read back, and the segment it is read from.
    read_pos: u64,
    reader: Option<(u64, BufReader<File>)>,
    /// Every record before this is in the index.
    applied: u64,
}

fn segment_name(start: u64) -> String {
    format!("{start:020}.wal")
}

impl Wal {
    /// Opens the log in `dir` (made if missing), to be read back from
    /// `applied`, the position stored with the index's last commit. A log
    /// whose records end before `applied` (it was removed, or is not this
    /// index's) starts again at `applied`.
    pub fn open(dir: &Path, applied: u64) -> io::Result<Wal> {
        std::fs::create_dir_all(dir)?;
        let mut segments = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(start) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".wal"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            segments.insert(start, entry.path());
        }
        // Where the last segment's valid records end.
        let mut end = applied;
        if let Some((&start, path)) = segments.iter().next_back() {
            let valid = valid_length(path)?;
            let f = OpenOptions::new().write(true).open(path)?;
            f.set_len(valid)?;
            end = start + valid;
        }
        if end < applied {
            if !segments.is_empty() {
                warn!(
                    wal = %dir.display(),
                    end, applied,
                    "the write-ahead log ends before the index's position; starting it again"
                );
            }
            for p in std::mem::take(&mut segments).into_values() {
                std::fs::remove_file(p)?;
            }
            end = applied;
        }
        let file_start = match segments.iter().next_back() {
            Some((&start, _)) => start,
            None => {
                let path = dir.join(segment_name(end));
                File::create(&path)?;
                segments.insert(end, path);
                end
            }
        };
        let mut file = OpenOptions::new()
            .append(true)
            .open(&segments[&file_start])?;
        file.seek(SeekFrom::End(0))?;
        sync_dir(dir)?;
        let mut wal = Wal {
            dir: dir.to_owned(),
            segments,
            file,
            file_start,
            buf: Vec::with_capacity(1 << 20),
            end,
            synced: end,
            read_pos: applied,
            reader: None,
            applied,
        };
        wal.set_applied(applied)?;
        Ok(wal)
    }

    /// Appends a record (written at the next [`Wal::sync`]); its position.
    pub fn append(&mut self, seq: u64, meta: &[u8], lines: &[u8]) -> io::Result<u64> {
        let len = 8 + 4 + meta.len() + lines.len();
        if len > MAX_RECORD as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a record of {len} bytes is over the log's limit"),
            ));
        }
        let pos = self.end;
        if pos - self.file_start + HEADER + len as u64 > SEGMENT_BYTES && pos > self.file_start {
            self.roll()?;
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; HEADER as usize]);
        self.buf.extend_from_slice(&seq.to_le_bytes());
        self.buf
            .extend_from_slice(&(meta.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(meta);
        self.buf.extend_from_slice(lines);
        let crc = crc32fast::hash(&self.buf[start + HEADER as usize..]);
        self.buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
        self.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        self.end += HEADER + len as u64;
        Ok(pos)
    }

    /// Writes what was appended and syncs it to disk.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.synced == self.end {
            return Ok(());
        }
        self.file.write_all(&self.buf)?;
        self.buf.clear();
        self.file.sync_data()?;
        self.synced = self.end;
        Ok(())
    }

    /// Closes the segment written to (synced) and begins the next.
    fn roll(&mut self) -> io::Result<()> {
        self.sync()?;
        let path = self.dir.join(segment_name(self.end));
        self.file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        self.file_start = self.end;
        self.segments.insert(self.end, path);
        sync_dir(&self.dir)
    }

    /// Whether records synced wait to be read back.
    pub fn unread(&self) -> bool {
        self.read_pos < self.synced
    }

    /// Bytes appended that the index does not hold yet.
    pub fn unapplied(&self) -> u64 {
        self.end - self.applied
    }

    /// The position of the next record to read back.
    pub fn read_pos(&self) -> u64 {
        self.read_pos
    }

    /// The next synced record, if any. A damaged record ends its segment
    /// (reading goes on with the next one).
    pub fn read_next(&mut self) -> io::Result<Option<Record>> {
        loop {
            if self.read_pos >= self.synced {
                return Ok(None);
            }
            // The segment holding read_pos.
            let Some((&start, path)) = self.segments.range(..=self.read_pos).next_back() else {
                // Before the first segment: nothing there.
                self.read_pos = self.segments.keys().next().copied().unwrap_or(self.synced);
                continue;
            };
            if self.reader.as_ref().map(|r| r.0) != Some(start) {
                let mut f = File::open(path)?;
                f.seek(SeekFrom::Start(self.read_pos - start))?;
                self.reader = Some((start, BufReader::with_capacity(1 << 20, f)));
            }
            let (_, r) = self.reader.as_mut().expect("opened above");
            match read_record(r)? {
                Some((seq, meta, lines, len)) => {
                    let pos = self.read_pos;
                    self.read_pos += len;
                    return Ok(Some(Record {
                        pos,
                        end: self.read_pos,
                        seq,
                        meta,
                        lines,
                    }));
                }
                None => {
                    // The end of this segment, or a damaged record: on to
                    // the next segment (or past what was synced).
                    self.reader = None;
                    let next = self.segments.range(start + 1..).next().map(|(&s, _)| s);
                    if self.segment_len(start) != Some(self.read_pos - start) {
                        warn!(
                            at = self.read_pos,
                            "a damaged record in the write-ahead log; skipping the rest of its segment"
                        );
                    }
                    self.read_pos = next.unwrap_or(self.synced);
                }
            }
        }
    }

    fn segment_len(&self, start: u64) -> Option<u64> {
        std::fs::metadata(self.segments.get(&start)?)
            .ok()
            .map(|m| m.len())
    }

    /// Every record before `pos` is in the index: segments wholly before
    /// it are deleted.
    pub fn set_applied(&mut self, pos: u64) -> io::Result<()> {
        self.applied = pos.max(self.applied).min(self.end);
        let starts: Vec<u64> = self.segments.keys().copied().collect();
        for w in starts.windows(2) {
            // A segment ends where the next begins.
            if w[1] <= self.applied && w[0] != self.file_start {
                if let Some(p) = self.segments.remove(&w[0]) {
                    std::fs::remove_file(p)?;
                }
                if self.reader.as_ref().is_some_and(|r| r.0 == w[0]) {
                    self.reader = None;
                }
            }
        }
        Ok(())
    }
}

/// A record as read: seq, meta, lines, and its length with its header.
type RawRecord = (u64, Vec<u8>, Vec<u8>, u64);

/// Reads one record, or None at the end or at a damaged record.
fn read_record(r: &mut impl Read) -> io::Result<Option<RawRecord>> {
    let mut head = [0u8; HEADER as usize];
    if !read_full(r, &mut head)? {
        return Ok(None);
    }
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
    if !(12..=MAX_RECORD).contains(&len) {
        return Ok(None);
    }
    let mut payload = vec![0u8; len as usize];
    if !read_full(r, &mut payload)? || crc32fast::hash(&payload) != crc {
        return Ok(None);
    }
    let seq = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
    let meta_len = u32::from_le_bytes(payload[8..12].try_into().expect("4 bytes")) as usize;
    if meta_len > payload.len() - 12 {
        return Ok(None);
    }
    let lines = payload.split_off(12 + meta_len);
    let meta = payload.split_off(12);
    Ok(Some((seq, meta, lines, HEADER + u64::from(len))))
}

/// Fills `buf`; false at the end of the data (even part-way).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// The length of a segment's valid records.
fn valid_length(path: &Path) -> io::Result<u64> {
    let mut r = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut valid = 0;
    while let Some((_, _, _, len)) = read_record(&mut r)? {
        valid += len;
    }
    Ok(valid)
}

/// Makes a file created or removed in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(w: &mut Wal) -> Vec<(u64, Vec<u8>)> {
        let mut v = Vec::new();
        while let Some(r) = w.read_next().unwrap() {
            v.push((r.seq, r.lines));
        }
        v
    }

    #[test]
    fn records_are_read_back_once_synced_and_again_after_a_reopen_from_the_index_position() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::open(dir.path(), 0).unwrap();
        let a = w.append(0, b"{}", b"one\ntwo").unwrap();
        let b = w.append(2, b"{}", b"three").unwrap();
        assert_eq!(a, 0);
        assert!(w.read_next().unwrap().is_none(), "not synced yet");
        w.sync().unwrap();
        assert_eq!(
            all(&mut w),
            vec![(0, b"one\ntwo".to_vec()), (2, b"three".to_vec())]
        );
        // The index took the first record only; a crash; the second is
        // read again.
        drop(w);
        let mut w = Wal::open(dir.path(), b).unwrap();
        assert_eq!(all(&mut w), vec![(2, b"three".to_vec())]);
        let c = w.append(3, b"{}", b"four").unwrap();
        assert!(c > b);
        w.sync().unwrap();
        assert_eq!(all(&mut w), vec![(3, b"four".to_vec())]);
    }

    #[test]
    fn a_torn_last_record_is_cut_off_and_the_log_goes_on_after_the_last_whole_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::open(dir.path(), 0).unwrap();
        w.append(0, b"{}", b"whole").unwrap();
        let torn = w.append(1, b"{}", b"torn by a crash").unwrap();
        w.sync().unwrap();
        drop(w);
        let seg = dir.path().join(segment_name(0));
        let len = std::fs::metadata(&seg).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let mut w = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(w.append(1, b"{}", b"sent again").unwrap(), torn);
        w.sync().unwrap();
        assert_eq!(
            all(&mut w),
            vec![(0, b"whole".to_vec()), (1, b"sent again".to_vec())]
        );
    }

    #[test]
    fn a_damaged_record_is_not_handed_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::open(dir.path(), 0).unwrap();
        w.append(0, b"{}", b"good").unwrap();
        w.append(1, b"{}", b"flipped").unwrap();
        w.sync().unwrap();
        drop(w);
        let seg = dir.path().join(segment_name(0));
        let mut bytes = std::fs::read(&seg).unwrap();
        let n = bytes.len();
        bytes[n - 2] ^= 0xff;
        std::fs::write(&seg, bytes).unwrap();
        let mut w = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(all(&mut w), vec![(0, b"good".to_vec())]);
    }

    #[test]
    fn segments_roll_and_are_deleted_once_applied() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::open(dir.path(), 0).unwrap();
        let big = vec![b'x'; 9 << 20];
        let mut positions = Vec::new();
        for seq in 0..16 {
            positions.push(w.append(seq, b"{}", &big).unwrap());
        }
        w.sync().unwrap();
        let segments = || std::fs::read_dir(dir.path()).unwrap().count();
        assert!(segments() >= 2, "144 MiB in 64 MiB segments");
        assert_eq!(all(&mut w).len(), 16);
        w.set_applied(positions[15]).unwrap();
        assert_eq!(segments(), 1, "only the segment written to is left");
        assert_eq!(w.unapplied(), w.end - positions[15]);
        drop(w);
        let mut w = Wal::open(dir.path(), positions[15]).unwrap();
        assert_eq!(all(&mut w).len(), 1);
    }

    #[test]
    fn a_log_that_ends_before_the_index_position_starts_again_there() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::open(dir.path(), 0).unwrap();
        w.append(0, b"{}", b"old").unwrap();
        w.sync().unwrap();
        drop(w);
        let mut w = Wal::open(dir.path(), 1_000).unwrap();
        assert!(all(&mut w).is_empty());
        assert_eq!(w.append(9, b"{}", b"new").unwrap(), 1_000);
        w.sync().unwrap();
        assert_eq!(all(&mut w), vec![(9, b"new".to_vec())]);
    }
}
