//! One followed log: the channel reading the file now at its path, plus any
//! channels still draining files that were rotated away.
//!
//! ```text
//! current reader ── RILL-ROTATED ──> draining reader ── RILL-FINAL n, read n ──> closed
//!       │                                      └──── RILL-GONE, 3 s quiet ────> closed
//!       └── a new current reader on the path from offset 0 (opened at once)
//! ```
//!
//! A restarted tap finishes what its checkpoint says was draining (found by
//! inode in the directory) and, if the path's inode changed while it was
//! down, finishes the old file from the checkpoint's offset before the new
//! one is read from 0.

use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use chrono::Utc;
use rill_config::{Log, TapSettings};
use rill_process::Shutdown;
use rill_proto::FileId;
use ssh2::Channel;
use tracing::{debug, info, warn};

use crate::checkpoint::LogCheckpoint;
use crate::connections::Connections;
use crate::lines::{Line, LineSplitter};
use crate::remote::{self, Control, Header, OldFile, StartAt};
use crate::status::StatusBoard;
use crate::tap::Outputs;

/// How long to wait before reopening a log whose follow script ended.
const REOPEN_AFTER: Duration = Duration::from_secs(1);
/// A draining file whose inode left the directory is closed after this long
/// without data.
const QUIET: Duration = Duration::from_secs(3);

/// What the loop hands every pump.
pub struct Io<'a> {
    pub buf: &'a mut [u8],
    pub lines: &'a mut Vec<Line>,
    pub out: &'a mut Outputs,
    pub board: &'a mut StatusBoard,
    pub shutdown: &'a Shutdown,
}

/// One channel reading one file instance.
struct Reader {
    channel: Channel,
    settings: TapSettings,
    head: Vec<u8>,
    following: Option<(FileId, LineSplitter)>,
    stderr: Vec<u8>,
    /// The identity to keep when the server honours this resume point.
    expect: Option<LogCheckpoint>,
    /// Draining a rotated file: done once this many bytes were read.
    final_size: Option<u64>,
    /// Draining and the old inode left the directory.
    gone: bool,
    draining: bool,
    last_data: Instant,
    eof: bool,
}

/// What a pump of one reader saw.
#[derive(Default)]
struct Seen {
    progressed: bool,
    /// The header arrived: the file's identity is now known.
    identified: bool,
    controls: Vec<Control>,
    /// A resume point the server did not honour: the file was replaced.
    replaced: Option<LogCheckpoint>,
}

impl Reader {
    fn new(
        channel: Channel,
        settings: TapSettings,
        expect: Option<LogCheckpoint>,
        draining: bool,
    ) -> Self {
        Reader {
            channel,
            settings,
            head: Vec::new(),
            following: None,
            stderr: Vec::new(),
            expect,
            final_size: None,
            gone: false,
            draining,
            last_data: Instant::now(),
            eof: false,
        }
    }

    fn position(&self) -> Option<LogCheckpoint> {
        self.following
            .as_ref()
            .map(|(file_id, s)| LogCheckpoint {
                file_id: *file_id,
                offset: s.next_offset(),
            })
            .or(self.expect)
    }

    /// Whether a draining reader has read everything it will get.
    fn drained(&self) -> bool {
        if self.eof {
            return true;
        }
        let read = self
            .following
            .as_ref()
            .map(|(_, s)| s.next_offset() + s.pending() as u64);
        match (self.final_size, read) {
            (Some(n), Some(r)) if r >= n => true,
            _ => self.gone && self.last_data.elapsed() >= QUIET,
        }
    }

    fn pump(&mut self, log: &Log, io: &mut Io, i: usize, current: bool) -> anyhow::Result<Seen> {
        let mut seen = Seen::default();
        // Bounded per turn so one busy log cannot starve the others.
        for _ in 0..64 {
            match self.channel.read(io.buf) {
                Ok(0) => break,
                Ok(n) => {
                    seen.progressed = true;
                    self.last_data = Instant::now();
                    let read_at = Utc::now();
                    let data = io.buf[..n].to_vec();
                    let data = if self.following.is_none() {
                        self.take_header(log, &data, io, i, current, &mut seen)?
                    } else {
                        &data[..]
                    };
                    let Some((file_id, splitter)) = &mut self.following else {
                        continue;
                    };
                    splitter.feed(data, io.lines);
                    let st = io.board.log(i);
                    for line in io.lines.drain(..) {
                        io.out.publish(log, *file_id, &line, read_at, io.shutdown)?;
                        st.lines_read += 1;
                    }
                    if current {
                        st.file_id = Some(*file_id);
                        st.last_offset = Some(splitter.next_offset());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(anyhow!(e).context(format!("reading {} failed", log.path))),
            }
        }
        // A last line without its newline goes out, marked partial, once
        // the file has been quiet for a while.
        if self.last_data.elapsed() >= self.settings.partial_line_after {
            if let Some((file_id, splitter)) = &mut self.following {
                if let Some(line) = splitter.flush() {
                    io.out
                        .publish(log, *file_id, &line, Utc::now(), io.shutdown)?;
                    io.board.log(i).lines_read += 1;
                    seen.progressed = true;
                }
            }
        }
        if let Ok(n) = self.channel.stderr().read(io.buf) {
            if n > 0 {
                seen.progressed = true;
                self.stderr.extend_from_slice(&io.buf[..n]);
                while let Some(nl) = self.stderr.iter().position(|&b| b == b'\n') {
                    let line = String::from_utf8_lossy(&self.stderr[..nl])
                        .trim()
                        .to_owned();
                    self.stderr.drain(..=nl);
                    match remote::parse_control(&line) {
                        Some(c) => {
                            debug!(log = %log.name, control = ?c, "follow script reported");
                            seen.controls.push(c);
                        }
                        None if line.contains("file truncated") => {}
                        None => {
                            warn!(log = %log.name, stderr = %line, "remote follow script complained");
                            io.board.log(i).error = Some(line);
                        }
                    }
                }
            }
        }
        if self.channel.eof() {
            self.eof = true;
            seen.progressed = true;
        }
        Ok(seen)
    }

    /// Consumes header lines; returns the file bytes that followed them.
    fn take_header<'d>(
        &mut self,
        log: &Log,
        data: &'d [u8],
        io: &mut Io,
        i: usize,
        current: bool,
        seen: &mut Seen,
    ) -> anyhow::Result<&'d [u8]> {
        let mut data = data;
        while self.following.is_none() {
            let Some(nl) = data.iter().position(|&b| b == b'\n') else {
                self.head.extend_from_slice(data);
                return Ok(&[]);
            };
            self.head.extend_from_slice(&data[..nl]);
            data = &data[nl + 1..];
            match remote::parse_header(&self.head)? {
                Header::Waiting => {
                    info!(log = %log.name, path = %log.path, "waiting for the file to appear");
                    io.board.log(i).error =
                        Some(format!("{} does not exist yet; waiting for it", log.path));
                }
                Header::Gone => {
                    info!(log = %log.name, "rotated file to finish is gone");
                    self.eof = true;
                    return Ok(&[]);
                }
                Header::Following { mut file_id, start } => {
                    match self.expect {
                        // The server honoured our resume point, or this is a
                        // finish: same file, keep its identity (its
                        // fingerprint may have been taken when it was shorter).
                        Some(prev)
                            if self.draining
                                || (prev.file_id.ino == file_id.ino && prev.offset == start) =>
                        {
                            file_id = prev.file_id;
                        }
                        Some(prev)
                            if current && prev.offset > 0 && prev.file_id.ino != file_id.ino =>
                        {
                            seen.replaced = Some(prev)
                        }
                        _ => {}
                    }
                    info!(log = %log.name, %file_id, start, draining = self.draining, "following file");
                    if current {
                        let st = io.board.log(i);
                        st.error = None;
                        st.file_id = Some(file_id);
                        st.last_offset = Some(start);
                    }
                    self.following = Some((
                        file_id,
                        LineSplitter::new(start, self.settings.max_line_bytes),
                    ));
                    seen.identified = true;
                }
            }
            self.head.clear();
        }
        Ok(data)
    }

    /// Publishes a last line that never got its newline, then closes.
    fn finish(mut self, log: &Log, io: &mut Io) -> anyhow::Result<()> {
        if let Some((file_id, splitter)) = &mut self.following {
            if let Some(line) = splitter.flush() {
                io.out
                    .publish(log, *file_id, &line, Utc::now(), io.shutdown)?;
            }
        }
        let _ = self.channel.close();
        Ok(())
    }
}

/// One followed log.
pub struct Follow {
    pub log: Log,
    settings: TapSettings,
    current: Option<Reader>,
    draining: Vec<Reader>,
    reopen_at: Option<Instant>,
    /// Where the next current reader starts.
    next: StartAt,
    /// The current file's position, for the next resume.
    resume: Option<LogCheckpoint>,
    /// Rotated files still to finish (from a checkpoint, or replaced while down).
    finishes: Vec<LogCheckpoint>,
    /// A file's identity was established or a rotation seen since the last
    /// checkpoint: save now, not at the next periodic save, so a restart
    /// never names the same file differently.
    pub identity_changed: bool,
}

impl Follow {
    pub fn new(
        log: Log,
        settings: TapSettings,
        saved: Option<LogCheckpoint>,
        draining: Vec<LogCheckpoint>,
    ) -> Self {
        let next = match saved {
            Some(c) => StartAt::Resume {
                ino: c.file_id.ino,
                offset: c.offset,
                fingerprint: c.file_id.fingerprint,
            },
            None => StartAt::End,
        };
        Follow {
            log,
            settings,
            current: None,
            draining: Vec::new(),
            reopen_at: Some(Instant::now()),
            next,
            resume: saved,
            finishes: draining,
            identity_changed: false,
        }
    }

    /// The current position and every draining one, for the checkpoint.
    pub fn positions(&self) -> (Option<LogCheckpoint>, Vec<LogCheckpoint>) {
        let current = self
            .current
            .as_ref()
            .and_then(Reader::position)
            .or(self.resume);
        let mut draining: Vec<LogCheckpoint> =
            self.draining.iter().filter_map(Reader::position).collect();
        draining.extend(self.finishes.iter().copied());
        (current, draining)
    }

    /// Opens the channels that are due.
    pub fn open_due(
        &mut self,
        conns: &mut Connections,
        board: &mut StatusBoard,
        i: usize,
    ) -> anyhow::Result<()> {
        for c in std::mem::take(&mut self.finishes) {
            let old = OldFile::Inode(c.file_id.ino);
            let cmd =
                remote::finish_command(&self.log.path, old, c.offset, self.settings.poll_interval);
            match conns.exec(&cmd) {
                Ok(ch) => {
                    info!(log = %self.log.name, file_id = %c.file_id, offset = c.offset, "finishing rotated file");
                    self.draining
                        .push(Reader::new(ch, self.settings, Some(c), true));
                }
                Err(e) => {
                    self.finishes.push(c);
                    return Err(e);
                }
            }
        }
        if self.current.is_none() && self.reopen_at.is_some_and(|t| Instant::now() >= t) {
            match conns.exec(&remote::follow_command(
                &self.log.path,
                self.next,
                self.settings.poll_interval,
            )) {
                Ok(ch) => {
                    debug!(log = %self.log.name, path = %self.log.path, start = ?self.next, "following");
                    self.current = Some(Reader::new(ch, self.settings, self.resume, false));
                    self.reopen_at = None;
                    board.log(i).error = None;
                }
                Err(e) => {
                    board.log(i).error = Some(format!("{e:#}"));
                    self.reopen_at = Some(Instant::now() + REOPEN_AFTER * 5);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Reads every channel of this log; returns whether anything happened.
    pub fn pump(&mut self, io: &mut Io, i: usize) -> anyhow::Result<bool> {
        let mut progressed = false;
        if let Some(mut r) = self.current.take() {
            let seen = r.pump(&self.log, io, i, true)?;
            progressed |= seen.progressed;
            self.identity_changed |= seen.identified || !seen.controls.is_empty();
            if let Some(old) = seen.replaced {
                info!(log = %self.log.name, file_id = %old.file_id, "the file was replaced while we were away; finishing the old one");
                self.finishes.push(old);
            }
            self.resume = r.position();
            if seen.controls.contains(&Control::Rotated) {
                info!(log = %self.log.name, "file rotated; draining the old one and following the new");
                r.draining = true;
                apply(&mut r, &seen.controls);
                self.draining.push(r);
                self.next = StartAt::Beginning;
                self.resume = None;
                self.reopen_at = Some(Instant::now());
            } else if r.eof {
                let truncated = seen.controls.contains(&Control::Truncated);
                warn!(log = %self.log.name, truncated, "remote follow script ended; reopening");
                self.next = match (truncated, self.resume) {
                    (false, Some(c)) => StartAt::Resume {
                        ino: c.file_id.ino,
                        offset: c.offset,
                        fingerprint: c.file_id.fingerprint,
                    },
                    _ => StartAt::Beginning,
                };
                if truncated {
                    self.resume = None;
                }
                r.finish(&self.log, io)?;
                self.reopen_at = Some(Instant::now() + REOPEN_AFTER);
            } else {
                self.current = Some(r);
            }
        }
        let mut still = Vec::with_capacity(self.draining.len());
        for mut r in std::mem::take(&mut self.draining) {
            let seen = r.pump(&self.log, io, i, false)?;
            progressed |= seen.progressed;
            apply(&mut r, &seen.controls);
            if r.drained() {
                info!(log = %self.log.name, "rotated file drained");
                r.finish(&self.log, io)?;
            } else {
                still.push(r);
            }
        }
        self.draining = still;
        Ok(progressed)
    }

    /// Closes every channel (at shutdown).
    pub fn close(&mut self) {
        for mut r in self
            .current
            .take()
            .into_iter()
            .chain(self.draining.drain(..))
        {
            let _ = r.channel.close();
        }
    }
}

/// What the script said about a draining file.
fn apply(r: &mut Reader, controls: &[Control]) {
    for c in controls {
        match c {
            Control::Final(n) => r.final_size = Some(*n),
            Control::Gone => r.gone = true,
            Control::Rotated | Control::Truncated => {}
        }
    }
}
