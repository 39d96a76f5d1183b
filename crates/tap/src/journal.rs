//! Logs that are the systemd journal (`logs.<name>.journal`).
//!
//! A channel runs `journal.sh`: `journalctl --output=json --follow` with
//! the log's filters, one entry per line. An entry is named by its cursor:
//! the journal's sequence-number id (128 bits, the line's `file_id` as
//! device and inode) and sequence number (its `offset`), so the index keeps
//! each entry once whatever is read twice. The entries go out as records
//! ([`crate::lines::Lines::push_record`]): live on `line/<host>/<log>` as
//! journalctl printed them, and to the index, whose parser makes `MESSAGE`
//! the event's text and the other fields its fields.
//!
//! The cursor plays the byte offset's part in the checkpoint: the tap keeps
//! the entries the index has not confirmed, in the order read, and saves
//! the cursor of the last one with every entry before it confirmed; a
//! restarted tap asks for the entries after it (`--after-cursor`). A
//! journal cannot be read again by offset, so its reader reads only while
//! the durable window has room (the live stream of a journal log waits
//! with the index; files' live lines do not).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chrono::Utc;
use rill_config::{Log, ReadFrom, TapSettings};
use rill_proto::FileId;
use tracing::{info, warn};

use crate::checkpoint::Verify;
use crate::durable::Durable;
use crate::follow::channel::{Channel, Opener};
use crate::follow::Io;
use crate::lines::Lines;
use crate::publish::Source;
use crate::script::{RunAs, Script};
use crate::status::StatusBoard;

/// The longest entry taken (journalctl prints an entry on one line); a
/// longer one is skipped and reported.
pub const MAX_ENTRY: usize = 16 << 20;
/// How long to wait before starting journalctl again after it ended.
const REOPEN_AFTER: Duration = Duration::from_secs(1);
/// After a refusal (no journalctl, sudo refused): ask again this much later.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Bytes read per turn.
const READ_PER_TURN: usize = 1 << 20;

/// One journal log on one host.
pub struct JournalLog {
    pub log: Log,
    settings: TapSettings,
    pub run_as: RunAs,
    reader: Option<(Box<dyn Channel>, usize)>,
    /// An entry's start, waiting for its newline.
    partial: Vec<u8>,
    /// Inside an entry longer than [`MAX_ENTRY`]: dropped up to its end.
    skipping: bool,
    /// Its row in the status board (among the rows that are not files').
    row: usize,
    /// The number the durable path knows it by (counting down from the
    /// top, apart from the files' numbers).
    pub key: usize,
    /// Where the next journalctl starts: after this cursor, or (none yet)
    /// as `read_from` says.
    after: Option<String>,
    /// The log was read before (a checkpoint names it): with no cursor,
    /// start from the beginning of the journal, not its end.
    started: bool,
    /// The cursor `end` started after, to save until an entry is confirmed.
    pending_start: Option<String>,
    /// The last entry published (where a restarted journalctl goes on).
    last_published: Option<String>,
    /// Entries published and not yet confirmed, in the order read.
    unconfirmed: VecDeque<(FileId, u64, String)>,
    reopen_at: Option<Instant>,
}

/// An entry's name: (file id from the sequence-number id, sequence number).
pub fn identity(cursor: &str) -> Option<(FileId, u64)> {
    let mut s = None;
    let mut i = None;
    for part in cursor.split(';') {
        if let Some(v) = part.strip_prefix("s=") {
            s = Some(v);
        } else if let Some(v) = part.strip_prefix("i=") {
            i = Some(v);
        }
    }
    let (s, i) = (s?, i?);
    if s.len() != 32 || !s.is_ascii() {
        return None;
    }
    let dev = u64::from_str_radix(&s[..16], 16).ok()?;
    let ino = u64::from_str_radix(&s[16..], 16).ok()?;
    let seq = u64::from_str_radix(i, 16).ok()?;
    Some((
        FileId {
            dev,
            ino,
            fingerprint: 0,
        },
        seq,
    ))
}

/// The cursor of an entry as journalctl prints it.
fn cursor_of(entry: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(rename = "__CURSOR")]
        cursor: String,
    }
    serde_json::from_slice::<Entry>(entry)
        .ok()
        .map(|e| e.cursor)
}

impl JournalLog {
    /// The journal log `log`, resuming after `saved` (its checkpoint's
    /// cursor), if any.
    pub fn new(
        log: Log,
        (settings, run_as): (TapSettings, RunAs),
        saved: Option<String>,
        (row, key): (usize, usize),
    ) -> Self {
        JournalLog {
            row,
            key,
            log,
            settings,
            run_as,
            reader: None,
            partial: Vec::new(),
            skipping: false,
            started: saved.is_some(),
            after: saved,
            unconfirmed: VecDeque::new(),
            pending_start: None,
            last_published: None,
            reopen_at: Some(Instant::now()),
        }
    }

    /// journalctl's filter options for this log.
    fn options(&self) -> Vec<String> {
        let j = self.log.journal.as_ref().expect("a journal log");
        let mut o = Vec::new();
        o.extend(j.directory.iter().map(|d| format!("--directory={d}")));
        o.extend(j.units.iter().map(|u| format!("--unit={u}")));
        o.extend(j.identifiers.iter().map(|t| format!("--identifier={t}")));
        o.extend(j.priority.iter().map(|p| format!("--priority={p}")));
        if !j.matches.is_empty() {
            o.push("--".into());
            o.extend(j.matches.iter().cloned());
        }
        o
    }

    /// Starts journalctl when due.
    pub fn open_due(
        &mut self,
        conns: &mut dyn Opener,
        board: &mut StatusBoard,
    ) -> Result<(), rill_ssh::Error> {
        if self.reader.is_some() || self.reopen_at.is_none_or(|t| Instant::now() < t) {
            return Ok(());
        }
        let from = match (&self.after, self.started, self.log.read_from) {
            (Some(c), _, _) => format!("after:{c}"),
            (None, true, _) | (None, false, ReadFrom::Beginning) => "all".into(),
            (None, false, ReadFrom::End) => "end".into(),
        };
        let script = Script::Journal {
            from,
            options: self.options(),
            interval: self.settings.poll_interval,
        };
        match conns.open(&self.run_as.wrap(script)) {
            Ok(ch) => {
                self.reader = Some(ch);
                self.reopen_at = None;
                self.started = true;
                let st = board.pattern(self.row);
                st.error = None;
                // The journal's identity is known per entry; say it is
                // followed now.
                st.file_id.get_or_insert(FileId::default());
                Ok(())
            }
            Err(e) => {
                board.pattern(self.row).error = Some(e.to_string());
                self.reopen_at = Some(Instant::now() + REOPEN_AFTER * 5);
                Err(e)
            }
        }
    }

    /// Reads entries while the durable window has room; publishes them.
    pub fn pump(&mut self, io: &mut Io) -> anyhow::Result<()> {
        let i = self.key;
        let Some((ch, _)) = self.reader.as_mut() else {
            return Ok(());
        };
        let mut lines = Lines::default();
        let mut taken = 0;
        let mut failed = None;
        while taken < READ_PER_TURN && !io.out.durable.full() {
            let n = match ch.read(io.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            };
            *io.heard = Instant::now();
            taken += n;
            let mut rest = &io.buf[..n];
            while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
                let (piece, after) = rest.split_at(nl);
                rest = &after[1..];
                if self.skipping {
                    self.skipping = false;
                    self.partial.clear();
                    continue;
                }
                self.partial.extend_from_slice(piece);
                let entry = std::mem::take(&mut self.partial);
                match cursor_of(&entry).and_then(|c| identity(&c).map(|id| (id, c))) {
                    Some(((fid, seq), cursor)) => {
                        lines.push_record(seq, seq.saturating_add(1), &entry);
                        io.out.publish(
                            i,
                            &self.log,
                            (fid, Verify::NOTHING),
                            &lines,
                            Utc::now(),
                            Source::Records,
                        )?;
                        lines.clear();
                        self.last_published = Some(cursor.clone());
                        self.unconfirmed.push_back((fid, seq, cursor));
                        let st = io.board.pattern(self.row);
                        st.lines_read += 1;
                        st.bytes_read += entry.len() as u64;
                        st.file_id = Some(fid);
                        st.last_offset = Some(seq);
                    }
                    None => {
                        warn!(log = %self.log.name, line = %String::from_utf8_lossy(&entry[..entry.len().min(200)]), "journalctl printed a line without a cursor; skipped");
                    }
                }
            }
            if !self.skipping {
                self.partial.extend_from_slice(rest);
                if self.partial.len() > MAX_ENTRY {
                    warn!(log = %self.log.name, max = MAX_ENTRY, "a journal entry longer than the most taken; skipped");
                    self.partial.clear();
                    self.skipping = true;
                }
            }
        }
        // What journalctl or the script said on stderr.
        let mut refused = None;
        while let Ok(n) = ch.read_stderr(io.buf) {
            if n == 0 {
                break;
            }
            *io.heard = Instant::now();
            for line in String::from_utf8_lossy(&io.buf[..n]).lines() {
                if line == "RILL-TICK" || line.starts_with("RILL-PID ") {
                    continue;
                }
                if let Some(c) = line.strip_prefix("RILL-AFTER ") {
                    // Started at the end: go on from here after a restart.
                    if self.last_published.is_none() && identity(c).is_some() {
                        self.after = Some(c.to_owned());
                        self.pending_start = Some(c.to_owned());
                    }
                    continue;
                }
                let said = if line == "RILL-NOJOURNAL" {
                    "the server has no journalctl".to_owned()
                } else {
                    line.to_owned()
                };
                warn!(log = %self.log.name, stderr = %said, "journalctl complained");
                refused = Some(said.clone());
                io.board.pattern(self.row).error = Some(said);
            }
        }
        if failed.is_none() && ch.eof() && !ch.queued() {
            failed = Some("journalctl ended".into());
        }
        if let Some(why) = failed {
            let retry = if refused.is_some() && self.unconfirmed.is_empty() {
                RETRY_AFTER
            } else {
                REOPEN_AFTER
            };
            warn!(log = %self.log.name, error = %why, retry_in = ?retry, "starting journalctl again");
            if let Some((mut ch, _)) = self.reader.take() {
                ch.close();
            }
            // Whatever was half read is read again whole.
            self.partial.clear();
            self.skipping = false;
            self.resume_point();
            self.reopen_at = Some(Instant::now() + retry);
        }
        Ok(())
    }

    /// Where the next journalctl starts: after the last entry published
    /// (the entries not confirmed yet are in the durable window, which
    /// sends them again to a restarted parser).
    fn resume_point(&mut self) {
        if let Some(c) = &self.last_published {
            self.after = Some(c.clone());
        }
    }

    /// The cursor to save: the last entry the index confirmed with every
    /// entry before it.
    pub fn checkpoint(&mut self, durable: &Durable) -> Option<String> {
        let i = self.key;
        let mut last = None;
        while let Some((fid, seq, _)) = self.unconfirmed.front() {
            let done = durable
                .first_unconfirmed(i, *fid)
                .is_none_or(|first| first > *seq);
            if !done {
                break;
            }
            last = self.unconfirmed.pop_front().map(|(_, _, c)| c);
        }
        if let Some(c) = last {
            self.pending_start = None;
            return Some(c);
        }
        self.pending_start.take()
    }

    /// The index was replaced: read the journal again from its beginning.
    pub fn rewind_to_start(&mut self) {
        info!(log = %self.log.name, "reading the journal again from its beginning");
        if let Some((mut ch, _)) = self.reader.take() {
            ch.close();
        }
        self.after = None;
        self.last_published = None;
        self.started = true;
        self.unconfirmed.clear();
        self.partial.clear();
        self.reopen_at = Some(Instant::now());
    }

    pub fn has_channel(&self) -> bool {
        self.reader.is_some()
    }

    /// Whether the channel holds bytes no read took yet, and the window
    /// room to take them.
    pub fn pending(&self, durable: &Durable) -> bool {
        !durable.full()
            && self
                .reader
                .as_ref()
                .is_some_and(|(ch, _)| ch.queued() || ch.eof())
    }

    /// Bit N: the channel is on connection N (not while the window is
    /// full: it is not read then).
    pub fn connections(&self, durable: &Durable) -> u32 {
        if durable.full() {
            return 0;
        }
        self.reader.as_ref().map_or(0, |(_, conn)| 1 << conn)
    }

    pub fn next_due(&self) -> Option<Instant> {
        self.reopen_at
    }

    pub fn close(&mut self) {
        if let Some((mut ch, _)) = self.reader.take() {
            ch.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_names_its_entry_by_sequence_id_and_number() {
        let c = "s=386c55a7136f4363b656cc724b90d69c;i=1f;b=0123456789abcdef0123456789abcdef;m=3e8;t=661b76a7915c1;x=e041b61b034457b6";
        let (fid, seq) = identity(c).unwrap();
        assert_eq!(seq, 31);
        assert_eq!(fid.dev, 0x386c_55a7_136f_4363);
        assert_eq!(fid.ino, 0xb656_cc72_4b90_d69c);
        for bad in [
            "",
            "s=12;i=1",
            "i=1",
            "s=386c55a7136f4363b656cc724b90d69c",
            "s=386c55a7136f4363b656cc724b90d69c;i=zz",
            "s=386c55a7136f4363b656cc724b90d6é;i=1",
        ] {
            assert!(identity(bad).is_none(), "{bad}");
        }
        assert_eq!(
            cursor_of(br#"{"MESSAGE":"x","__CURSOR":"s=1;i=2"}"#).as_deref(),
            Some("s=1;i=2")
        );
        assert!(cursor_of(b"not json").is_none());
    }
}
