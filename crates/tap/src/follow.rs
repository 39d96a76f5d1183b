//! One followed log: the channel reading the file now at its path, plus any
//! channels still finishing files it replaced.
//!
//! ```text
//! current ── rotated (path names another inode) ──> draining ── final size read ──> closed
//!    │         └── a new current reader of the path from 0, opened at once
//!    └── truncated (copytruncate) ──> closed; the old bytes from the copy (a finish),
//!              a new current reader of the path from 0 under a new identity
//! ```
//!
//! A restarted tap finishes what its checkpoint says was unfinished and, if
//! the path's file changed while it was down (renamed away: found by inode;
//! truncated: its copy found by its first bytes), finishes the old file from
//! the checkpoint's offset before the new one is read from 0.
//!
//! Identity: a file keeps the identity its checkpoint gave it whenever the
//! server honours a resume. A new file is named by device, inode and the
//! fingerprint of its first 64 bytes, or, while it is shorter than that, by
//! a random tag (verified by the bytes it had); never by the identity of the
//! file it replaced.

use std::io::Read;
use std::os::unix::io::RawFd;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use chrono::Utc;
use rill_config::{Log, TapSettings};
use rill_process::Shutdown;
use rill_proto::FileId;
use ssh2::Channel;
use tracing::{debug, info, warn};

use crate::checkpoint::{self, LogCheckpoint, Unfinished, Verify};
use crate::connections::Connections;
use crate::durable::{Durable, Gap};
use crate::frames::{ChunkDecoder, Piece, StreamFilter};
use crate::lines::{LineSplitter, Lines};
use crate::remote::{self, Control, Header, Mode, Nonce, OldFile, Reading, StartAt};
use crate::status::StatusBoard;
use crate::tap::{Outputs, Source};

/// How long to wait before reopening a log whose follow script ended.
const REOPEN_AFTER: Duration = Duration::from_secs(1);
/// A draining file whose inode left the directory is closed after this long
/// without data.
const QUIET: Duration = Duration::from_secs(3);
/// A gap is read again once the live reader had no bytes for this long...
const LIVE_FIRST_QUIET: Duration = Duration::from_millis(100);
/// ...or once it waited this long, however busy the live reader is.
const LIVE_FIRST_MAX: Duration = Duration::from_secs(5);

/// What the loop hands every pump.
pub struct Io<'a> {
    /// When anything (file bytes or a control line) last came from any
    /// channel: the tap's measure of a live connection.
    pub heard: &'a mut Instant,
    pub buf: &'a mut [u8],
    pub lines: &'a mut Lines,
    pub pieces: &'a mut Vec<Piece>,
    pub out: &'a mut Outputs,
    pub board: &'a mut StatusBoard,
    pub shutdown: &'a Shutdown,
    /// Bit N: connection N's socket was read this turn, until it would
    /// block. Reading any channel reads every packet waiting on its
    /// connection; after that only channels with queued data need a read.
    pub drained: &'a mut u32,
    /// Connection N's socket, to wait on for a backlog's next packet.
    pub sockets: &'a [RawFd],
}

/// A read at least this long is a full SSH packet (OpenSSH sends at most
/// [`PACKET`] of channel data in one): the file is being read faster than
/// it grows, a backlog, not a live tail.
const BACKLOG_READ: usize = 16 * 1024;
/// The most channel data OpenSSH puts in one packet.
const PACKET: usize = 32 * 1024;
/// A backlog's lines go out in live messages of up to this much (plus
/// the rest of a line the previous read ended in) rather than one per
/// packet: every message wakes the tap's, the proxy's and each
/// subscriber's threads, and at 32 KiB the live wire alone carries a third
/// fewer lines per second than at 96–128 KiB (`rill-bench wire`; no gain
/// beyond). Reads are cut to the room left, and the lines go out once
/// another packet would not fit: a message holds 96–128 KiB.
const BACKLOG_MESSAGE: usize = 128 * 1024;
/// How long one pump waits, in all, for a backlog's next packets. A live
/// tail's reads are short and never wait.
const BACKLOG_WAIT: Duration = Duration::from_millis(2);

/// Whether a backlog's lines fill a live message: another packet would
/// not fit.
fn batch_full(lines: &Lines) -> bool {
    lines.bytes() + PACKET > BACKLOG_MESSAGE
}

/// The file a reader is reading, once its header arrived.
struct Following {
    file_id: FileId,
    verify: Verify,
    splitter: LineSplitter,
    decoder: Decoder,
}

enum Decoder {
    Stream(Box<StreamFilter>),
    Chunks(ChunkDecoder),
}

/// One channel reading one file.
struct Reader {
    channel: Channel,
    /// The number of the connection the channel is on.
    conn: usize,
    settings: TapSettings,
    nonce: Nonce,
    head: Vec<u8>,
    following: Option<Following>,
    stderr: Vec<u8>,
    /// The identity to keep when the server honours this resume point (or,
    /// for a finish, the identity of the file being finished).
    expect: Option<LogCheckpoint>,
    /// An identity a new file must not get: the one it replaced.
    avoid: Option<FileId>,
    /// Reading a file the path no longer names; `copy`: through its copy.
    draining: bool,
    /// Going back over a gap of the durable path: its lines go to the index
    /// only, and it is read only while the durable window has room.
    catchup: bool,
    copy: bool,
    /// Draining: done once this many bytes were read.
    final_size: Option<u64>,
    /// Draining and the old inode left the directory.
    gone: bool,
    /// The file was truncated: nothing after that point belongs to it.
    truncated: bool,
    /// The file's size on the server, as last reported.
    remote_size: Option<u64>,
    last_data: Instant,
    eof: bool,
}

/// What a pump of one reader saw.
#[derive(Default)]
struct Seen {
    /// The header arrived or the verification grew: checkpoint soon.
    identified: bool,
    controls: Vec<Control>,
    /// A resume point the server did not honour: that file is unfinished.
    replaced: Option<Unfinished>,
}

impl Reader {
    fn new((channel, conn): (Channel, usize), settings: TapSettings, nonce: Nonce) -> Self {
        Reader {
            channel,
            conn,
            settings,
            nonce,
            head: Vec::new(),
            following: None,
            stderr: Vec::new(),
            expect: None,
            avoid: None,
            draining: false,
            catchup: false,
            copy: false,
            final_size: None,
            gone: false,
            truncated: false,
            remote_size: None,
            last_data: Instant::now(),
            eof: false,
        }
    }

    /// Where the last complete line ended.
    fn position(&self) -> Option<LogCheckpoint> {
        self.following
            .as_ref()
            .map(|f| LogCheckpoint::new(f.file_id, f.splitter.next_offset(), f.verify))
            .or(self.expect)
    }

    /// Where the reader ends once closed: past its last line, and past a
    /// last line without newline too when that is `flushed` at the close.
    fn end_position(&self, flushed: bool) -> Option<LogCheckpoint> {
        let f = self.following.as_ref()?;
        let pending = if flushed {
            f.splitter.pending() as u64
        } else {
            0
        };
        Some(LogCheckpoint::new(
            f.file_id,
            f.splitter.next_offset() + pending,
            f.verify,
        ))
    }

    /// Whether libssh2 holds bytes or an end of file for this channel that no
    /// read took yet. Reading one channel reads every packet waiting on the
    /// connection, so another channel's data can wait here while the socket
    /// has nothing: the loop must not sleep then.
    fn pending(&self) -> bool {
        !self.eof && !self.truncated && (self.queued() || self.channel.eof())
    }

    /// Where this reader's lines go.
    fn source(&self) -> Source {
        if self.catchup {
            Source::CatchUp
        } else {
            Source::Live
        }
    }

    /// Whether libssh2 holds bytes of this channel (stdout or stderr).
    fn queued(&self) -> bool {
        self.channel.read_window().available > 0
    }

    /// The next moment a timer of this reader fires, if still to come: the
    /// last line without newline goes out, a gone file is closed.
    fn next_due(&self, now: Instant) -> Option<Instant> {
        let partial = (!self.truncated && self.following.is_some())
            .then(|| self.last_data + self.settings.partial_line_after);
        let quiet = (self.draining && self.gone).then(|| self.last_data + QUIET);
        partial.into_iter().chain(quiet).filter(|&t| t > now).min()
    }

    /// Whether a draining reader has read everything it will get.
    fn drained(&self) -> bool {
        if self.eof || self.truncated {
            return true;
        }
        let read = self
            .following
            .as_ref()
            .map(|f| f.splitter.next_offset() + f.splitter.pending() as u64);
        match (self.final_size, read) {
            (Some(n), Some(r)) if r >= n => true,
            _ => self.gone && self.last_data.elapsed() >= QUIET,
        }
    }

    fn pump(&mut self, log: &Log, io: &mut Io, i: usize, current: bool) -> anyhow::Result<Seen> {
        let mut seen = Seen::default();
        // The first channel of a connection read this turn reads its socket;
        // the others only read what that left queued for them.
        let conn = 1u32 << self.conn;
        let read = !self.eof && !self.truncated && (*io.drained & conn == 0 || self.pending());
        if read {
            *io.drained |= conn;
        }
        let mut waited = Duration::ZERO;
        let mut failed = None;
        // Bounded per turn so one busy log cannot starve the others.
        for _ in 0..64 {
            if !read || self.eof || self.truncated {
                break;
            }
            // A catch-up stops at a full window (overshooting by one read).
            if self.catchup && io.out.durable.full() {
                break;
            }
            let room = BACKLOG_MESSAGE.saturating_sub(io.lines.bytes()).max(PACKET);
            let want = io.buf.len().min(room);
            match self.channel.read(&mut io.buf[..want]) {
                Ok(0) => break,
                Ok(n) => {
                    self.last_data = Instant::now();
                    *io.heard = self.last_data;
                    // The read buffer is lent out while `io` is in use
                    // (not copied: this is the tap's hot path).
                    let buf = std::mem::take(&mut io.buf);
                    let taken = self.take(log, &buf[..n], io, i, current, &mut seen);
                    io.buf = buf;
                    taken?;
                    // The read took the socket until it would block: with
                    // nothing queued, another read would only hear EAGAIN;
                    // in a backlog, the next packet is a moment away.
                    if !self.queued() && !self.backlog_continues(n, io, &mut waited) {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        // What the reads gathered goes out, even before a failed read's
        // error.
        let source = self.source();
        if let Some(f) = &mut self.following {
            publish(log, f, io, i, current, source)?;
        }
        if let Some(e) = failed {
            return Err(anyhow!(e).context(format!("reading {} failed", log.path)));
        }
        // A last line without its newline goes out, marked partial, once
        // the file has been quiet for a while.
        if !self.truncated && self.last_data.elapsed() >= self.settings.partial_line_after {
            if let Some(f) = &mut self.following {
                if let Decoder::Stream(filter) = &mut f.decoder {
                    io.pieces.clear();
                    filter.flush(io.pieces);
                    for p in io.pieces.drain(..) {
                        if let Piece::Data(d) = p {
                            f.splitter.feed(&d, io.lines);
                        }
                    }
                }
                f.splitter.flush(io.lines);
                publish(log, f, io, i, current, source)?;
            }
        }
        if read && self.queued() {
            self.read_stderr(log, io, i, current, &mut seen);
        }
        if self.channel.eof() {
            self.eof = true;
        }
        Ok(seen)
    }

    /// After a read of `n` bytes that left nothing queued: whether to read
    /// again, having waited (for at most what is left of
    /// [`BACKLOG_WAIT`]) until the connection's socket has the next packet.
    /// Only in a backlog (`n` a full packet) whose lines do not yet fill a
    /// message.
    fn backlog_continues(&self, n: usize, io: &Io, waited: &mut Duration) -> bool {
        if self.catchup || n < BACKLOG_READ || batch_full(io.lines) || *waited >= BACKLOG_WAIT {
            return false;
        }
        let Some(&fd) = io.sockets.get(self.conn) else {
            return false;
        };
        let start = Instant::now();
        let ready = rill_process::wait_readable(fd, BACKLOG_WAIT - *waited);
        *waited += start.elapsed();
        ready
    }

    /// What one read brought: the header, if it is still due, then file
    /// bytes and control records.
    fn take(
        &mut self,
        log: &Log,
        data: &[u8],
        io: &mut Io,
        i: usize,
        current: bool,
        seen: &mut Seen,
    ) -> anyhow::Result<()> {
        let rest = if self.following.is_none() {
            self.take_header(log, data, io, i, current, seen)?
        } else {
            data
        };
        if !rest.is_empty() {
            self.decode(log, rest, io, i, current, seen)?;
        }
        Ok(())
    }

    /// Decodes file bytes and control records into lines. They go out
    /// here when they fill a backlog's message, before a control record,
    /// and always for a catch-up or an ended reader; else at the end of
    /// [`Reader::pump`].
    fn decode(
        &mut self,
        log: &Log,
        data: &[u8],
        io: &mut Io,
        i: usize,
        current: bool,
        seen: &mut Seen,
    ) -> anyhow::Result<()> {
        let source = self.source();
        let Some(f) = &mut self.following else {
            return Ok(());
        };
        io.pieces.clear();
        let decoder_said = |pieces: &[Piece]| pieces.iter().any(|p| !matches!(p, Piece::Data(_)));
        match &mut f.decoder {
            Decoder::Stream(filter) => filter.feed(data, io.pieces),
            Decoder::Chunks(d) => {
                if let Err(e) = d.feed(data, io.pieces) {
                    // Lines before the bad record stand; the rest is read
                    // again by the next reader, from the last line's end.
                    warn!(log = %log.name, error = %e, "follow script sent a bad record; reopening");
                    self.eof = true;
                }
            }
        }
        // The lines so far go out under what was known when they were
        // read, before a control record changes it.
        if decoder_said(io.pieces) {
            publish(log, f, io, i, current, source)?;
        }
        for piece in io.pieces.drain(..) {
            match piece {
                Piece::Data(bytes) => f.splitter.feed(&bytes, io.lines),
                Piece::Control(Control::Truncated) => {
                    // The bytes after this belong to the file as it is now:
                    // a new reader reads them from 0 under a new identity.
                    // The pending partial line is finished from the copy.
                    self.truncated = true;
                    seen.controls.push(Control::Truncated);
                    break;
                }
                Piece::Control(Control::Fingerprint(v)) => {
                    f.verify = v;
                    seen.identified = true;
                }
                Piece::Control(Control::Size(n)) => {
                    self.remote_size = Some(n);
                    if current {
                        io.board.log(i).remote_size = Some(n);
                    }
                }
                Piece::Control(c) => {
                    apply(&mut self.final_size, &mut self.gone, c);
                    seen.controls.push(c);
                }
                Piece::TailSaid(text) => {
                    warn!(log = %log.name, message = %text, "tail reported a problem");
                    io.board.log(i).error = Some(text);
                }
            }
        }
        // A backlog's live lines gather into one message (see `pump`); a
        // catch-up's go at once, as it stops at a full window.
        if batch_full(io.lines) || self.catchup || self.truncated || self.eof {
            publish(log, f, io, i, current, source)?;
        }
        Ok(())
    }

    fn read_stderr(&mut self, log: &Log, io: &mut Io, i: usize, current: bool, seen: &mut Seen) {
        let Ok(n) = self.channel.stderr().read(io.buf) else {
            return;
        };
        if n == 0 {
            return;
        }
        *io.heard = Instant::now();
        self.stderr.extend_from_slice(&io.buf[..n]);
        while let Some(nl) = self.stderr.iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&self.stderr[..nl])
                .trim()
                .to_owned();
            self.stderr.drain(..=nl);
            match remote::parse_control(&line) {
                Some(Control::Fingerprint(v)) => {
                    if let Some(f) = &mut self.following {
                        f.verify = v;
                        seen.identified = true;
                    }
                }
                Some(Control::Size(n)) => {
                    self.remote_size = Some(n);
                    if current {
                        io.board.log(i).remote_size = Some(n);
                    }
                }
                Some(Control::Tick) => {}
                Some(c) => {
                    debug!(log = %log.name, control = ?c, "follow script reported");
                    apply(&mut self.final_size, &mut self.gone, c);
                    seen.controls.push(c);
                }
                None => {
                    warn!(log = %log.name, stderr = %line, "remote follow script complained");
                    io.board.log(i).error = Some(line);
                }
            }
        }
    }

    /// Consumes header lines; returns the bytes that followed them.
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
            let header = remote::parse_header(&self.head)?;
            self.head.clear();
            match header {
                Header::Waiting { dir_missing } => {
                    info!(log = %log.name, path = %log.path, dir_missing, "waiting for the file to appear");
                    io.board.log(i).error = Some(if dir_missing {
                        format!(
                            "{} does not exist yet, nor its folder; waiting for it",
                            log.path
                        )
                    } else {
                        format!("{} does not exist yet; waiting for it", log.path)
                    });
                }
                Header::Gone => {
                    info!(log = %log.name, "file to finish is gone");
                    self.eof = true;
                    return Ok(&[]);
                }
                Header::Following {
                    dev,
                    ino,
                    verify,
                    start,
                    mode,
                } => {
                    let (file_id, verify) = self.identify(dev, ino, verify, start, current, seen);
                    info!(log = %log.name, %file_id, start, ?mode, draining = self.draining, "following file");
                    if current {
                        let st = io.board.log(i);
                        st.error = None;
                        st.file_id = Some(file_id);
                        st.last_offset = Some(start);
                    }
                    self.following = Some(Following {
                        file_id,
                        verify,
                        splitter: LineSplitter::new(start, self.settings.max_line_bytes),
                        decoder: match mode {
                            Mode::Stream => {
                                Decoder::Stream(Box::new(StreamFilter::new(&self.nonce)))
                            }
                            Mode::Chunks => Decoder::Chunks(ChunkDecoder::new(start)),
                        },
                    });
                    seen.identified = true;
                }
            }
        }
        Ok(data)
    }

    /// The identity and verification of the file the header names.
    fn identify(
        &mut self,
        dev: u64,
        ino: u64,
        verify: Verify,
        start: u64,
        current: bool,
        seen: &mut Seen,
    ) -> (FileId, Verify) {
        match self.expect {
            // A finish: the file being finished keeps its name.
            Some(prev) if self.draining => return (prev.file_id, prev.verify()),
            // The server honoured our resume point: the same file, now
            // perhaps verified by more of its bytes.
            Some(prev) if prev.file_id.ino == ino && prev.offset == start => {
                let v = if verify.len >= prev.verify().len {
                    verify
                } else {
                    prev.verify()
                };
                return (prev.file_id, v);
            }
            // It did not: the file we were reading was renamed away (found
            // again by inode) or truncated (its copy found by its bytes).
            // Even at offset 0 it may hold lines the index never confirmed.
            Some(prev) if current => {
                seen.replaced = Some(Unfinished {
                    at: prev,
                    copy: prev.file_id.ino == ino,
                });
            }
            _ => {}
        }
        let avoid = self.avoid.or(self.expect.map(|p| p.file_id));
        (new_identity(dev, ino, verify, avoid), verify)
    }

    /// Closes the channel; with `flush`, first publishes a last line that
    /// never got its newline (the file is done).
    fn close(mut self, log: &Log, io: &mut Io, i: usize, flush: bool) -> anyhow::Result<()> {
        let source = self.source();
        if let (true, Some(f)) = (flush, &mut self.following) {
            f.splitter.flush(io.lines);
            publish(log, f, io, i, false, source)?;
        }
        let _ = self.channel.close();
        Ok(())
    }
}

/// A new file's identity: device, inode and the fingerprint of its first 64
/// bytes; a random tag while it is shorter, or when that would repeat the
/// identity of the file it replaced.
fn new_identity(dev: u64, ino: u64, verify: Verify, avoid: Option<FileId>) -> FileId {
    let tag = || uuid::Uuid::new_v4().as_u128() as u32;
    let mut id = FileId {
        dev,
        ino,
        fingerprint: if verify.len == remote::FINGERPRINT_BYTES {
            verify.fp
        } else {
            tag()
        },
    };
    while Some(id) == avoid {
        id.fingerprint = tag();
    }
    id
}

/// Publishes the complete lines the splitter cut.
fn publish(
    log: &Log,
    f: &mut Following,
    io: &mut Io,
    i: usize,
    current: bool,
    source: Source,
) -> anyhow::Result<()> {
    if io.lines.is_empty() {
        return Ok(());
    }
    let read_at = Utc::now();
    let st = io.board.log(i);
    io.out
        .publish(i, log, (f.file_id, f.verify), io.lines, read_at, source)?;
    if source == Source::Live {
        st.lines_read += io.lines.len() as u64;
    }
    io.lines.clear();
    if current {
        st.file_id = Some(f.file_id);
        st.last_offset = Some(f.splitter.next_offset());
    }
    Ok(())
}

/// One followed log.
pub struct Follow {
    pub log: Log,
    settings: TapSettings,
    reading: Reading,
    current: Option<Reader>,
    draining: Vec<Reader>,
    reopen_at: Option<Instant>,
    /// Not before this (a channel for a file to finish could not be opened).
    finish_after: Option<Instant>,
    /// Where the next current reader starts.
    next: StartAt,
    /// The current file's position, for the next resume.
    resume: Option<LogCheckpoint>,
    /// An identity the next new file must not get.
    avoid: Option<FileId>,
    /// Files still to finish (from a checkpoint, or replaced while down).
    finishes: Vec<Unfinished>,
    /// Files read to their end whose last lines the index may not have
    /// confirmed yet: kept in checkpoints until it has.
    closed: Vec<Unfinished>,
    /// The last few files read to their end (newest last).
    history: Vec<Unfinished>,
    /// The channel going back over a gap the live readers left for the
    /// index (at most one per log at a time).
    catchup: Option<Reader>,
    /// Not before this (the last catch-up ended short of its gap).
    catchup_after: Option<Instant>,
    /// Since when a gap waits for the live reader's burst to pass.
    catchup_held: Option<Instant>,
    /// This file's gap is read from its copytruncate copy: the file at its
    /// inode no longer has those bytes.
    catchup_copy: Option<FileId>,
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
        unfinished: Vec<Unfinished>,
        history: Vec<Unfinished>,
    ) -> Self {
        let next = match saved {
            Some(c) => resume_at(c),
            None => StartAt::End,
        };
        Follow {
            log,
            settings,
            reading: Reading::Auto,
            current: None,
            draining: Vec::new(),
            reopen_at: Some(Instant::now()),
            finish_after: None,
            next,
            resume: saved,
            avoid: None,
            finishes: unfinished,
            closed: Vec::new(),
            history,
            catchup: None,
            catchup_after: None,
            catchup_held: None,
            catchup_copy: None,
            identity_changed: false,
        }
    }

    /// What to save for this log (log number `i` of the tap): the current
    /// file and every unfinished one, each at its oldest line the index has
    /// not confirmed, and the files finished lately.
    pub fn checkpoint(
        &mut self,
        i: usize,
        durable: &Durable,
    ) -> (Option<LogCheckpoint>, Vec<Unfinished>, Vec<Unfinished>) {
        let confirmed = |at: LogCheckpoint| match durable.first_unconfirmed(i, at.file_id) {
            Some(off) if off < at.offset => LogCheckpoint { offset: off, ..at },
            _ => at,
        };
        self.closed
            .retain(|u| durable.first_unconfirmed(i, u.at.file_id).is_some());
        let current = self
            .current
            .as_ref()
            .and_then(Reader::position)
            .or(self.resume)
            .map(confirmed);
        let unfinished = self
            .draining
            .iter()
            .filter_map(|r| {
                r.position().map(|at| Unfinished {
                    at: confirmed(at),
                    copy: r.copy,
                })
            })
            .chain(
                self.finishes
                    .iter()
                    .chain(&self.closed)
                    .map(|u| Unfinished {
                        at: confirmed(u.at),
                        copy: u.copy,
                    }),
            )
            .collect();
        (current, unfinished, self.history.clone())
    }

    /// The offset the index has confirmed in the current file, and the bytes
    /// on the server not in the index yet (the current file's rest, plus
    /// what is left of files being finished whose final size is known).
    pub fn lag(&self, i: usize, durable: &Durable) -> (Option<u64>, Option<u64>) {
        let confirmed = |at: LogCheckpoint| {
            durable
                .first_unconfirmed(i, at.file_id)
                .map_or(at.offset, |off| off.min(at.offset))
        };
        let Some(r) = &self.current else {
            return (self.resume.map(confirmed), None);
        };
        let Some(at) = r.position() else {
            return (None, None);
        };
        let indexed = confirmed(at);
        let lag = r.remote_size.map(|size| {
            let older: u64 = self
                .draining
                .iter()
                .filter_map(|d| {
                    let (size, at) = (d.final_size?, d.position()?);
                    Some(size.saturating_sub(confirmed(at)))
                })
                .sum();
            size.saturating_sub(indexed) + older
        });
        (Some(indexed), lag)
    }

    /// The index was lost or replaced: read every file this log still knows
    /// again from its start (the current one, unfinished ones, and the ones
    /// finished lately), as far as they are still on the server.
    pub fn rewind_to_start(&mut self) {
        let start = |at: LogCheckpoint| LogCheckpoint { offset: 0, ..at };
        let mut again: Vec<Unfinished> = Vec::new();
        let current = self
            .current
            .as_ref()
            .and_then(Reader::position)
            .or(self.resume);
        for r in self.draining.drain(..) {
            if let Some(at) = r.position() {
                again.push(Unfinished {
                    at: start(at),
                    copy: r.copy,
                });
            }
            let mut ch = r.channel;
            let _ = ch.close();
        }
        for r in self.current.take().into_iter().chain(self.catchup.take()) {
            let mut ch = r.channel;
            let _ = ch.close();
        }
        self.catchup_copy = None;
        for u in self
            .finishes
            .drain(..)
            .chain(self.closed.drain(..))
            .chain(self.history.iter().copied())
        {
            if !again.iter().any(|a| a.at.file_id == u.at.file_id)
                && current.is_none_or(|c| c.file_id != u.at.file_id)
            {
                again.push(Unfinished {
                    at: start(u.at),
                    copy: u.copy,
                });
            }
        }
        info!(log = %self.log.name, files = again.len() + usize::from(current.is_some()), "reading the log's files again from the start");
        self.finishes = again;
        if let Some(c) = current {
            self.resume = Some(start(c));
            self.next = resume_at(start(c));
        }
        self.reopen_at = Some(Instant::now());
        self.identity_changed = true;
    }

    /// Opens the channels that are due.
    pub fn open_due(
        &mut self,
        conns: &mut Connections,
        board: &mut StatusBoard,
        durable: &Durable,
        i: usize,
    ) -> anyhow::Result<()> {
        let iv = self.settings.poll_interval;
        let now = Instant::now();
        // The hold's clock runs only while the gap could otherwise be read:
        // not while the window is full or a failed catch-up waits.
        let could_read =
            self.gap_waiting(durable, i) && self.catchup_after.is_none_or(|t| now >= t);
        if could_read && self.live_busy(now) {
            self.catchup_held.get_or_insert(now);
        } else {
            self.catchup_held = None;
        }
        if let Some(mut gap) = self.due_gap(durable, i, now) {
            if let Some(v) = self.known_verify(gap.file_id) {
                if v.len > gap.verify.len {
                    gap.verify = v;
                }
            }
            let copy = self.catchup_copy == Some(gap.file_id);
            let old = if copy {
                OldFile::Copy
            } else {
                OldFile::Inode(gap.file_id.ino)
            };
            let cmd = remote::finish_command(&self.log.path, old, gap.verify, gap.from, iv);
            let ch = conns.exec(&cmd).inspect_err(|_| {
                self.catchup_after = Some(Instant::now() + REOPEN_AFTER);
            })?;
            debug!(log = %self.log.name, file_id = %gap.file_id, from = gap.from, copy, "reading a gap again for the index");
            let mut r = Reader::new(ch, self.settings, Nonce::random());
            r.expect = Some(LogCheckpoint::new(gap.file_id, gap.from, gap.verify));
            r.draining = true;
            r.catchup = true;
            r.copy = copy;
            self.catchup = Some(r);
            self.catchup_after = None;
            self.catchup_held = None;
        }
        if self.finish_after.is_some_and(|t| Instant::now() >= t) {
            self.finish_after = None;
        }
        while let Some(u) = self
            .finishes
            .first()
            .copied()
            .filter(|_| self.finish_after.is_none())
        {
            let old = if u.copy {
                OldFile::Copy
            } else {
                OldFile::Inode(u.at.file_id.ino)
            };
            let cmd = remote::finish_command(&self.log.path, old, u.at.verify(), u.at.offset, iv);
            let ch = conns.exec(&cmd).inspect_err(|_| {
                self.finish_after = Some(Instant::now() + REOPEN_AFTER);
            })?;
            info!(log = %self.log.name, file_id = %u.at.file_id, offset = u.at.offset, copy = u.copy, "finishing an old file");
            let mut r = Reader::new(ch, self.settings, Nonce::random());
            r.expect = Some(u.at);
            r.draining = true;
            r.copy = u.copy;
            self.draining.push(r);
            self.finishes.remove(0);
        }
        if self.current.is_none() && self.reopen_at.is_some_and(|t| Instant::now() >= t) {
            let nonce = Nonce::random();
            let polls = (iv, self.settings.stream_poll);
            let cmd =
                remote::follow_command(&self.log.path, self.next, polls, self.reading, &nonce);
            match conns.exec(&cmd) {
                Ok(ch) => {
                    debug!(log = %self.log.name, path = %self.log.path, start = ?self.next, "following");
                    let mut r = Reader::new(ch, self.settings, nonce);
                    r.expect = self.resume;
                    r.avoid = self.avoid;
                    self.current = Some(r);
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

    /// Reads every channel of this log.
    pub fn pump(&mut self, io: &mut Io, i: usize) -> anyhow::Result<()> {
        if let Some(mut r) = self.current.take() {
            let seen = r.pump(&self.log, io, i, true)?;
            self.identity_changed |= seen.identified || !seen.controls.is_empty();
            if let Some(old) = seen.replaced {
                info!(log = %self.log.name, file_id = %old.at.file_id, copy = old.copy, "the file was replaced while we were away; finishing the old one");
                self.finishes.push(old);
            }
            self.resume = r.position();
            if r.truncated {
                // copytruncate (or any truncation): the old bytes we had not
                // read yet are in the copy, if there is one.
                let at = r.position().expect("a truncated reader has a file");
                info!(log = %self.log.name, file_id = %at.file_id, offset = at.offset, "file truncated; finishing the old content from its copy, reading the file again from 0");
                self.finishes.push(Unfinished { at, copy: true });
                // A gap of the old content is read from the copy too.
                self.catchup_copy = Some(at.file_id);
                self.avoid = Some(at.file_id);
                self.next = StartAt::Beginning;
                self.resume = None;
                self.reopen_at = Some(Instant::now());
                r.close(&self.log, io, i, false)?;
            } else if seen.controls.contains(&Control::Rotated) {
                info!(log = %self.log.name, "file rotated; draining the old one and following the new");
                r.draining = true;
                self.avoid = self.resume.map(|c| c.file_id);
                self.draining.push(r);
                self.next = StartAt::Beginning;
                self.resume = None;
                self.reopen_at = Some(Instant::now());
            } else if r.eof {
                warn!(log = %self.log.name, "remote follow script ended; reopening");
                // Resume at the start of a line still waiting for its
                // newline: it is read again whole.
                self.next = self.resume.map_or(StartAt::Beginning, resume_at);
                r.close(&self.log, io, i, false)?;
                self.reopen_at = Some(Instant::now() + REOPEN_AFTER);
            } else {
                self.current = Some(r);
            }
        }
        let mut still = Vec::with_capacity(self.draining.len());
        for mut r in std::mem::take(&mut self.draining) {
            let seen = r.pump(&self.log, io, i, false)?;
            self.identity_changed |= seen.identified;
            if r.drained() {
                info!(log = %self.log.name, "old file finished");
                let flush = !r.truncated;
                let copy = r.copy;
                let end = r.end_position(flush);
                r.close(&self.log, io, i, flush)?;
                if let Some(at) = end {
                    if io.out.durable.gap(i, at.file_id).is_none() {
                        io.out.durable.forget(i, at.file_id);
                    }
                    let u = Unfinished { at, copy };
                    self.closed.push(u);
                    self.history.retain(|h| h.at.file_id != at.file_id);
                    self.history.push(u);
                    if self.history.len() > checkpoint::HISTORY {
                        self.history.remove(0);
                    }
                }
                self.identity_changed = true;
            } else {
                still.push(r);
            }
        }
        self.draining = still;
        self.pump_catchup(io, i)
    }

    /// The gap a catch-up reader should go over now, if any: none while one
    /// is open, while the window is full, or before [`Follow::catchup_at`].
    fn due_gap(&self, durable: &Durable, i: usize, now: Instant) -> Option<Gap> {
        if !self.gap_waiting(durable, i) || self.catchup_at(now) > now {
            return None;
        }
        durable.gaps(i).min_by_key(|g| (g.file_id.ino, g.from))
    }

    /// Whether a gap waits for a catch-up that could be opened, timing
    /// aside: none is open and the window has room.
    fn gap_waiting(&self, durable: &Durable, i: usize) -> bool {
        self.catchup.is_none() && !durable.full() && durable.gaps(i).next().is_some()
    }

    /// Whether the live reader is in a burst: it read bytes within
    /// [`LIVE_FIRST_QUIET`].
    fn live_busy(&self, now: Instant) -> bool {
        self.current
            .as_ref()
            .is_some_and(|r| now < r.last_data + LIVE_FIRST_QUIET)
    }

    /// When a gap may be read again: after `catchup_after` (a catch-up that
    /// ended short), and not while the live reader is in a burst, for at
    /// most [`LIVE_FIRST_MAX`]: the live stream has the tap's CPU and the
    /// connection first, the index reads the burst's gap right after.
    fn catchup_at(&self, now: Instant) -> Instant {
        let after = self.catchup_after.unwrap_or(now);
        let burst = match (self.catchup_held, &self.current) {
            (Some(held), Some(r)) => (r.last_data + LIVE_FIRST_QUIET).min(held + LIVE_FIRST_MAX),
            _ => now,
        };
        after.max(burst)
    }

    /// Reads the catch-up channel while the window has room; closes it once
    /// its gap is closed, or when it ended short of it (then the gap is
    /// read again, from its copy if the file is gone, or given up when
    /// neither is there).
    fn pump_catchup(&mut self, io: &mut Io, i: usize) -> anyhow::Result<()> {
        let Some(mut r) = self.catchup.take() else {
            return Ok(());
        };
        let file_id = r.expect.expect("a catch-up knows its file").file_id;
        if io.out.durable.full() {
            // Waiting for room is not quiet: no partial line goes out for it.
            r.last_data = Instant::now();
            self.catchup = Some(r);
            return Ok(());
        }
        r.pump(&self.log, io, i, false)?;
        if io.out.durable.gap(i, file_id).is_none() {
            debug!(log = %self.log.name, %file_id, "gap read again");
            r.close(&self.log, io, i, false)?;
            if !self.followed().any(|f| f.file_id == file_id) {
                io.out.durable.forget(i, file_id);
            }
            return Ok(());
        }
        if !r.drained() {
            self.catchup = Some(r);
            return Ok(());
        }
        // Nothing there to read: the file is not where its inode was, or no
        // longer fits, or holds no byte of the gap (truncated).
        let from = io.out.durable.gap(i, file_id).map_or(0, |g| g.from);
        let short = r.following.is_none() || r.truncated || r.final_size.is_some_and(|n| n <= from);
        if short {
            if r.copy {
                warn!(log = %self.log.name, %file_id, "the rest of a file the index had not taken is gone from the server");
                io.board.log(i).error = Some(format!(
                    "lines of {} {file_id} were gone from the server before the index took them",
                    self.log.path
                ));
                io.out.durable.forget(i, file_id);
            } else {
                self.catchup_copy = Some(file_id);
            }
        }
        // Ended short (a last line without newline still waiting, the file
        // truncated): what it read goes in, the rest is read again.
        let flush = !r.truncated;
        r.close(&self.log, io, i, flush)?;
        self.catchup_after = Some(Instant::now() + REOPEN_AFTER);
        Ok(())
    }

    /// The longest verification this log knows for `file_id` (its readers'
    /// are upgraded as the file grows past 64 bytes).
    fn known_verify(&self, file_id: FileId) -> Option<Verify> {
        let readers = self
            .followed()
            .filter(|f| f.file_id == file_id)
            .map(|f| f.verify);
        let lists = self
            .finishes
            .iter()
            .chain(&self.closed)
            .filter(|u| u.at.file_id == file_id)
            .map(|u| u.at.verify());
        readers.chain(lists).max_by_key(|v| v.len)
    }

    /// The files the current and draining readers are reading.
    fn followed(&self) -> impl Iterator<Item = &Following> {
        self.current
            .iter()
            .chain(&self.draining)
            .filter_map(|r| r.following.as_ref())
    }

    /// Every channel of this log that is read now: the current file's, the
    /// draining ones, and the catch-up while the window has room.
    fn readers(&self, full: bool) -> impl Iterator<Item = &Reader> {
        let catchup = self.catchup.iter().filter(move |_| !full);
        self.current.iter().chain(&self.draining).chain(catchup)
    }

    /// Bit N: a channel of this log read now is on connection N.
    pub fn connections(&self, full: bool) -> u32 {
        self.readers(full).fold(0, |m, r| m | 1 << r.conn)
    }

    /// Whether a channel of this log read now has data waiting in libssh2
    /// (read it before sleeping).
    pub fn pending(&self, full: bool) -> bool {
        self.readers(full).any(Reader::pending)
    }

    /// When this log next needs a turn of the loop without any new bytes:
    /// now for a file to finish, a gap to read or a channel to open that is
    /// due, else the first timer of its readers still to come.
    pub fn next_due(&self, now: Instant, durable: &Durable, i: usize) -> Option<Instant> {
        let full = durable.full();
        let finish = (!self.finishes.is_empty()).then(|| self.finish_after.unwrap_or(now));
        let reopen = self.current.is_none().then_some(self.reopen_at).flatten();
        let gap = self.gap_waiting(durable, i).then(|| self.catchup_at(now));
        self.readers(full)
            .filter_map(|r| r.next_due(now))
            .chain(reopen)
            .chain(finish)
            .chain(gap)
            .min()
    }

    pub fn poll_interval(&self) -> Duration {
        self.settings.poll_interval
    }

    /// Whether any channel of this log is open (and so should be heard from).
    pub fn has_channels(&self) -> bool {
        self.current.is_some() || !self.draining.is_empty()
    }

    /// Closes every channel (at shutdown).
    pub fn close(&mut self) {
        for r in self
            .current
            .take()
            .into_iter()
            .chain(self.draining.drain(..))
            .chain(self.catchup.take())
        {
            let mut ch = r.channel;
            let _ = ch.close();
        }
    }
}

fn resume_at(c: LogCheckpoint) -> StartAt {
    StartAt::Resume {
        ino: c.file_id.ino,
        offset: c.offset,
        verify: c.verify(),
    }
}

/// What the script said about a draining file.
fn apply(final_size: &mut Option<u64>, gone: &mut bool, c: Control) {
    match c {
        Control::Final(n) => *final_size = Some(n),
        Control::Gone => *gone = true,
        Control::Rotated
        | Control::Truncated
        | Control::Fingerprint(_)
        | Control::Size(_)
        | Control::Tick => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_files_and_replacements_never_share_a_name() {
        let full = Verify { len: 64, fp: 42 };
        let short = Verify { len: 10, fp: 42 };
        // A full fingerprint names the file by its content...
        assert_eq!(new_identity(1, 2, full, None).fingerprint, 42);
        // ... unless the file it replaced had that very name.
        let old = FileId {
            dev: 1,
            ino: 2,
            fingerprint: 42,
        };
        assert_ne!(new_identity(1, 2, full, Some(old)), old);
        // Short files get a tag each time: two short files of one inode
        // (copytruncate, inode reuse) never collide.
        let a = new_identity(1, 2, short, None);
        let b = new_identity(1, 2, short, None);
        assert_ne!(a, b);
        assert_eq!((a.dev, a.ino), (1, 2));
    }
}
