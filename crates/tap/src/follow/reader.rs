//! One channel reading one file: the script's header, then its bytes cut
//! into lines and published, its control records applied to the reader's
//! [`Role`].

use std::time::{Duration, Instant};

use anyhow::anyhow;
use chrono::Utc;
use rill_config::{Log, TapSettings};
use tracing::{debug, info, warn};

use super::channel::Channel;
use super::io::Io;
use super::role::{End, Role};
use crate::checkpoint::{LogCheckpoint, Unfinished, Verify};
use crate::identity::{self, Expected, Opened};
use crate::lines::{LineSplitter, Lines};
use crate::publish::Source;
use crate::script::{Claim, Control, Header, Output, OutputError, Piece, Said, StderrLines};
use rill_proto::FileId;

/// How long an old file (finishing or catching up) whose inode left the
/// folder may be quiet before it counts as read to its end.
pub const QUIET: Duration = Duration::from_secs(3);

/// A read at least this long is a full SSH packet (OpenSSH sends at most
/// [`PACKET`] of channel data in one): the file is being read faster than
/// it grows, a backlog, not a live tail.
const BACKLOG_READ: usize = 16 * 1024;
/// The most channel data OpenSSH puts in one packet.
const PACKET: usize = 32 * 1024;
/// A backlog's lines go out in live messages of up to this much (plus the
/// rest of a line the previous read ended in) rather than one per packet:
/// every message wakes the tap's, the proxy's and each subscriber's
/// threads, and the live wire carries the most lines per second at 96–128
/// KiB a message (docs/BENCHMARKS.md, `rill-bench wire`). Reads are cut to
/// the room left, and the lines go out once another packet would not fit.
const BACKLOG_MESSAGE: usize = 128 * 1024;
/// How long one pump waits, in all, for a backlog's next packets. A live
/// tail's reads are short and never wait.
const BACKLOG_WAIT: Duration = Duration::from_millis(2);
/// Reads of one reader per pump at most, so one busy log cannot starve the
/// others.
const READS_PER_PUMP: usize = 64;

/// Whether a backlog's lines fill a live message: another packet would
/// not fit.
fn batch_full(lines: &Lines) -> bool {
    lines.bytes() + PACKET > BACKLOG_MESSAGE
}

/// The file a reader is reading, once its header arrived.
pub struct Following {
    pub file_id: FileId,
    pub verify: Verify,
    splitter: LineSplitter,
}

/// One channel reading one file.
pub struct Reader {
    channel: Box<dyn Channel>,
    /// The number of the connection the channel is on.
    pub conn: usize,
    settings: TapSettings,
    pub role: Role,
    output: Output,
    stderr: StderrLines,
    pub following: Option<Following>,
    /// The identity to keep when the server honours this resume point (or,
    /// for an old file, the identity of the file being read).
    pub expect: Option<LogCheckpoint>,
    /// An identity a new file must not get: the one it replaced.
    pub avoid: Option<FileId>,
    pub end: Option<End>,
    /// The file's size on the server, as last reported.
    pub remote_size: Option<u64>,
    pub last_data: Instant,
    /// The server process that holds the file open while the channel is
    /// (`RILL-PID`).
    pub holder: Option<u32>,
    /// What `sudo` said when it refused to run the script.
    pub refused: Option<String>,
}

/// What a pump of one reader saw.
#[derive(Default)]
pub struct Seen {
    /// The header arrived or the verification grew: checkpoint soon.
    pub identified: bool,
    /// A control record other than a size report or a tick arrived.
    pub controlled: bool,
    /// A resume point the server did not honour: that file is unfinished.
    pub replaced: Option<Unfinished>,
}

/// Which reader of which log a pump serves.
struct Ctx<'l> {
    log: &'l Log,
    /// The log's number in the tap.
    i: usize,
    /// The reader read the file the path names when the pump began. Fixed
    /// for the pump: lines read before a rotation in it still update the
    /// log's status as the current file's.
    current: bool,
}

impl Reader {
    pub fn new(
        (channel, conn): (Box<dyn Channel>, usize),
        settings: TapSettings,
        pass: Option<Claim>,
        role: Role,
    ) -> Self {
        Reader {
            channel,
            conn,
            settings,
            role,
            output: Output::new(pass),
            stderr: StderrLines::default(),
            following: None,
            expect: None,
            avoid: None,
            end: None,
            remote_size: None,
            last_data: Instant::now(),
            holder: None,
            refused: None,
        }
    }

    pub fn truncated(&self) -> bool {
        self.end == Some(End::Truncated)
    }

    /// Stopped where the bytes after its last line are not (or not yet
    /// known to be) this file's: no last line without newline goes out.
    pub fn cut(&self) -> bool {
        matches!(self.end, Some(End::Truncated | End::Claimed(_)))
    }

    pub fn ended(&self) -> bool {
        self.end.is_some()
    }

    /// Where the last complete line ended.
    pub fn position(&self) -> Option<LogCheckpoint> {
        self.following
            .as_ref()
            .map(|f| LogCheckpoint::new(f.file_id, f.splitter.next_offset(), f.verify))
            .or(self.expect)
    }

    /// Where the reader ends once closed: past its last line, and past a
    /// last line without newline too when that is `flushed` at the close.
    pub fn end_position(&self, flushed: bool) -> Option<LogCheckpoint> {
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

    /// Whether the channel holds bytes or an end of file that no read took
    /// yet. Reading one channel reads every packet waiting on the
    /// connection, so another channel's data can wait here while the socket
    /// has nothing: the loop must not sleep then.
    pub fn pending(&self) -> bool {
        !self.ended() && (self.channel.queued() || self.channel.eof())
    }

    /// Where this reader's lines go.
    fn source(&self) -> Source {
        if self.role.is_catch_up() {
            Source::CatchUp
        } else {
            Source::Live
        }
    }

    /// The next moment a timer of this reader fires, if still to come: the
    /// last line without newline goes out, a gone file is closed.
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        let partial = (!self.cut() && self.following.is_some())
            .then(|| self.last_data + self.settings.partial_line_after);
        let quiet = self
            .role
            .old()
            .is_some_and(|o| o.gone)
            .then(|| self.last_data + QUIET);
        partial.into_iter().chain(quiet).filter(|&t| t > now).min()
    }

    /// Whether a reader of an old file has read everything it will get.
    pub fn drained(&self) -> bool {
        if self.ended() {
            return true;
        }
        let Some(old) = self.role.old() else {
            return false;
        };
        let read = self
            .following
            .as_ref()
            .map(|f| f.splitter.next_offset() + f.splitter.pending() as u64);
        match (old.final_size, read) {
            (Some(n), Some(r)) if r >= n => true,
            _ => old.gone && self.last_data.elapsed() >= QUIET,
        }
    }

    /// Reads what the channel has (a bounded amount), publishes the lines,
    /// applies the control records.
    pub fn pump(&mut self, log: &Log, io: &mut Io, i: usize) -> anyhow::Result<Seen> {
        let ctx = Ctx {
            log,
            i,
            current: self.role.is_current(),
        };
        let mut seen = Seen::default();
        // The first channel of a connection read this turn reads its socket;
        // the others only read what that left queued for them.
        let conn = 1u32 << self.conn;
        // A live reader waits while the window holds it for a receipt.
        let live = !self.role.is_catch_up();
        let held = live && io.out.durable.holds(false);
        let read = !self.ended() && !held && (*io.drained & conn == 0 || self.pending());
        if read && live && io.out.durable.full() {
            io.out.durable.reading_on();
        }
        if read {
            *io.drained |= conn;
        }
        let mut waited = Duration::ZERO;
        let mut failed = None;
        for _ in 0..READS_PER_PUMP {
            if !read || self.ended() {
                break;
            }
            // A catch-up stops at a full window (overshooting by one
            // message), a live reader while it waits for a receipt.
            if io.out.durable.holds(!live) {
                break;
            }
            let room = BACKLOG_MESSAGE.saturating_sub(io.lines.bytes()).max(PACKET);
            let want = io.buf.len().min(room);
            match self.channel.read(&mut io.buf[..want]) {
                Ok(0) => break,
                Ok(n) => {
                    self.last_data = Instant::now();
                    *io.heard = self.last_data;
                    // The read buffer is lent out while `io` is in use (not
                    // copied: this is the tap's hot path).
                    let buf = std::mem::take(&mut io.buf);
                    let taken = self.take(&ctx, &buf[..n], io, &mut seen);
                    io.buf = buf;
                    taken?;
                    // The read took the socket until it would block: with
                    // nothing queued, another read would only hear EAGAIN;
                    // in a backlog, the next packet is a moment away.
                    if !self.channel.queued() && !self.backlog_continues(n, io, &mut waited) {
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
        self.publish(&ctx, io)?;
        if let Some(e) = failed {
            return Err(anyhow!(e).context(format!("reading {} failed", log.path)));
        }
        // A last line without its newline goes out, marked partial, once
        // the file has been quiet for a while.
        if !self.cut() && self.last_data.elapsed() >= self.settings.partial_line_after {
            if let Some(f) = &mut self.following {
                io.pieces.clear();
                self.output.flush(io.pieces);
                for p in io.pieces.drain(..) {
                    if let Piece::Data(d) = p {
                        f.splitter.feed(&d, io.lines);
                    }
                }
                f.splitter.flush(io.lines);
                self.publish(&ctx, io)?;
            }
        }
        if read && self.channel.queued() {
            self.read_stderr(&ctx, io, &mut seen);
        }
        if self.channel.eof() && self.end.is_none() {
            self.end = Some(End::Eof);
        }
        Ok(seen)
    }

    /// After a read of `n` bytes that left nothing queued: whether to read
    /// again, having waited (for at most what is left of [`BACKLOG_WAIT`])
    /// until the connection's socket has the next packet. Only in a backlog
    /// (`n` a full packet) whose lines do not yet fill a message.
    fn backlog_continues(&self, n: usize, io: &Io, waited: &mut Duration) -> bool {
        if self.role.is_catch_up()
            || n < BACKLOG_READ
            || batch_full(io.lines)
            || *waited >= BACKLOG_WAIT
        {
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

    /// Decodes one read: the header, file bytes and control records. Lines
    /// go out here when they fill a backlog's message, before a control
    /// record, and always for a catch-up or an ended reader; else at the
    /// end of [`Reader::pump`].
    fn take(&mut self, ctx: &Ctx, data: &[u8], io: &mut Io, seen: &mut Seen) -> anyhow::Result<()> {
        io.pieces.clear();
        match self.output.feed(data, io.pieces) {
            Ok(()) => {}
            Err(OutputError::Header(e)) => return Err(e.into()),
            Err(OutputError::Frame(e)) => {
                // Lines before the bad record stand; the rest is read again
                // by the next reader, from the last line's end.
                warn!(log = %ctx.log.name, error = %e, "follow script sent a bad record; reopening");
                self.end = Some(End::Eof);
            }
        }
        let said = |p: &Piece| !matches!(p, Piece::Data(_) | Piece::Header(_));
        // The lines so far go out under what was known when they were read,
        // before a control record changes it.
        if io.pieces.iter().any(said) {
            self.publish(ctx, io)?;
        }
        let mut pieces = std::mem::take(io.pieces);
        for piece in pieces.drain(..) {
            match piece {
                Piece::Header(h) => self.header(ctx, h, io, seen),
                Piece::Data(bytes) => {
                    if let Some(f) = &mut self.following {
                        f.splitter.feed(&bytes, io.lines);
                    }
                }
                Piece::Control(Control::Truncated) => {
                    // The bytes after this belong to the file as it is now:
                    // a new reader reads them from 0 under a new identity.
                    // The pending partial line is finished from the copy.
                    self.end = Some(End::Truncated);
                    seen.controlled = true;
                    break;
                }
                Piece::Claim(claim) => {
                    // A message of tail's, or a log line reading like one:
                    // the next reader tells (`Follow::pump_current`).
                    self.end = Some(End::Claimed(claim));
                    seen.controlled = true;
                    break;
                }
                Piece::Control(c) => self.control(ctx, c, io, seen),
            }
        }
        *io.pieces = pieces;
        // A backlog's lines gather into one message (see `pump`), a
        // catch-up's too (it stops at a full window, overshooting it by
        // one message at most).
        if batch_full(io.lines) || self.ended() {
            self.publish(ctx, io)?;
        }
        Ok(())
    }

    /// A control record, from the stream or from stderr.
    fn control(&mut self, ctx: &Ctx, c: Control, io: &mut Io, seen: &mut Seen) {
        match c {
            Control::Fingerprint(v) => {
                if let Some(f) = &mut self.following {
                    f.verify = v;
                    seen.identified = true;
                }
            }
            Control::Size(n) => {
                self.remote_size = Some(n);
                if ctx.current {
                    io.board.log(ctx.i).remote_size = Some(n);
                }
            }
            Control::Tick => {}
            Control::Pid(pid) => self.holder = Some(pid),
            c => {
                debug!(log = %ctx.log.name, control = ?c, "follow script reported");
                self.role.on_control(c);
                seen.controlled = true;
            }
        }
    }

    fn read_stderr(&mut self, ctx: &Ctx, io: &mut Io, seen: &mut Seen) {
        let Ok(n) = self.channel.read_stderr(io.buf) else {
            return;
        };
        if n == 0 {
            return;
        }
        *io.heard = Instant::now();
        for said in self.stderr.feed(&io.buf[..n]) {
            match said {
                Said::Control(c) => self.control(ctx, c, io, seen),
                Said::Complaint(line) => {
                    warn!(log = %ctx.log.name, stderr = %line, "remote follow script complained");
                    if self.following.is_none() && sudo_refused(&line) {
                        self.refused = Some(line.clone());
                    }
                    io.board.log(ctx.i).error = Some(line);
                }
            }
        }
    }

    /// The script's header: waiting for the file, the old file gone, or
    /// which file it reads from where.
    fn header(&mut self, ctx: &Ctx, header: Header, io: &mut Io, seen: &mut Seen) {
        let log = ctx.log;
        match header {
            Header::Waiting { dir_missing } => {
                info!(log = %log.name, path = %log.path, dir_missing, "waiting for the file to appear");
                io.board.log(ctx.i).error = Some(if dir_missing {
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
                self.end = Some(End::Eof);
            }
            Header::Following {
                dev,
                ino,
                verify,
                start,
                mode,
            } => {
                let named = identity::identify(
                    Opened {
                        dev,
                        ino,
                        verify,
                        start,
                    },
                    Expected {
                        at: self.expect,
                        avoid: self.avoid,
                        current: ctx.current,
                    },
                );
                seen.replaced = named.replaced;
                let file_id = named.file_id;
                info!(log = %log.name, %file_id, start, ?mode, role = ?self.role, "following file");
                if ctx.current {
                    let st = io.board.log(ctx.i);
                    st.error = None;
                    st.file_id = Some(file_id);
                    st.last_offset = Some(start);
                }
                self.following = Some(Following {
                    file_id,
                    verify: named.verify,
                    splitter: LineSplitter::new(start, self.settings.max_line_bytes),
                });
                seen.identified = true;
            }
        }
    }

    /// Publishes the complete lines the splitter cut.
    fn publish(&mut self, ctx: &Ctx, io: &mut Io) -> anyhow::Result<()> {
        let source = self.source();
        let Some(f) = &mut self.following else {
            return Ok(());
        };
        publish(ctx.log, f, io, ctx.i, ctx.current, source)
    }

    /// Closes the channel; with `flush`, first publishes a last line that
    /// never got its newline (the file is done).
    pub fn close(mut self, log: &Log, io: &mut Io, i: usize, flush: bool) -> anyhow::Result<()> {
        if flush {
            self.flush(log, io, i)?;
        }
        self.channel.close();
        Ok(())
    }

    /// Publishes a last line that never got its newline (the file is done).
    pub fn flush(&mut self, log: &Log, io: &mut Io, i: usize) -> anyhow::Result<()> {
        let source = self.source();
        if let Some(f) = &mut self.following {
            f.splitter.flush(io.lines);
            publish(log, f, io, i, false, source)?;
        }
        Ok(())
    }

    /// Reads what the channel says on stderr and nothing else: a reader
    /// kept only to hold its file open hears its ticks.
    pub fn hear(&mut self, log: &Log, io: &mut Io, i: usize) {
        let ctx = Ctx {
            log,
            i,
            current: false,
        };
        let mut seen = Seen::default();
        self.read_stderr(&ctx, io, &mut seen);
    }

    /// Closes the channel, publishing nothing more.
    pub fn abandon(mut self) {
        self.channel.close();
    }
}

/// Whether a line on stderr before any header is `sudo` refusing to run
/// the script (no rule, a password needed or wrong, a tty required).
fn sudo_refused(line: &str) -> bool {
    line.starts_with("sudo:")
        || line.starts_with("Sorry, try again")
        || line.contains("is not in the sudoers file")
        || line.contains("is not allowed to execute")
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
        st.bytes_read += io.lines.bytes() as u64;
    }
    io.lines.clear();
    if current {
        st.file_id = Some(f.file_id);
        st.last_offset = Some(f.splitter.next_offset());
    }
    Ok(())
}
