//! The tap's side of the durable path (protocol: `rill_proto::ingest`).
//!
//! Every line taken is numbered and kept in a window until the parser's
//! receipt says it is committed to the index; the window is sent in order
//! and sent again from wherever the parser says lines went missing. The
//! window is bounded. While it is full the live readers wait for a receipt
//! to make room, for at most [`RECEIPT_WAIT`]: a parser that confirms (a
//! backlog) keeps them at its pace, every line read once. When none comes
//! in that time they go on publishing live, and the lines they read
//! meanwhile are left in the server's file, a *gap* behind the file's
//! *frontier* (the offset of the next line the index needs from it), for a
//! catch-up reader to read again at the index's pace. A stopped parser
//! makes the remote file the buffer instead of the tap's memory, and holds
//! up live subscribers once, by RECEIPT_WAIT.
//! Checkpoints are taken from the window and the frontiers: a file's resume
//! point is its oldest line not yet committed.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rill_bus::socket::{self, Role};
use rill_proto::ingest::{self, Envelope, Hello, Receipt};
use rill_proto::FileId;
use tracing::{debug, info, warn};

use crate::checkpoint::Verify;
use crate::lines::{Line, Lines};

/// A hello goes out this often while lines wait for their receipt...
const HELLO_BUSY: Duration = Duration::from_secs(1);
/// ... and this often otherwise.
const HELLO_IDLE: Duration = Duration::from_secs(5);

/// How long the live readers wait, in a full window, for a receipt to make
/// room before they read on past it (leaving a gap). The parser confirms
/// every write-ahead log sync, milliseconds apart.
pub const RECEIPT_WAIT: Duration = Duration::from_millis(250);

/// Messages queued in ZeroMQ towards the parser, at most.
const SNDHWM: i32 = 16;
/// A durable message holds at most this many bytes of lines (more only
/// for one line longer than that).
const MAX_MESSAGE_BYTES: usize = 128 << 10;

/// One message the parser has not confirmed yet: consecutive complete
/// lines of one file (or one partial line), as a live message holds them.
struct Pending {
    /// The durable number of its first line; line k is `seq + k`.
    seq: u64,
    lines: u64,
    /// Which of the tap's logs (index into its list) and file it is from.
    log: usize,
    file_id: FileId,
    /// Where its first line starts in the file.
    offset: u64,
    meta: Vec<u8>,
    bytes: Vec<u8>,
}

impl Pending {
    /// The durable number after its last line.
    fn end(&self) -> u64 {
        self.seq + self.lines
    }
}

/// Where the durable path stands in one file.
#[derive(Debug, Clone, Copy)]
struct Frontier {
    /// The offset of the next line the index needs from this file.
    next: u64,
    /// Past the last line any reader read of it (live or catch-up).
    read_to: u64,
    /// How the file is recognised, for a catch-up reader.
    verify: Verify,
}

/// Something a receipt told the tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// The index's generation, as the parser reports it.
    Generation(String),
}

pub struct Durable {
    socket: zmq::Socket,
    host: String,
    epoch: String,
    next_seq: u64,
    /// Unconfirmed messages, oldest first.
    window: VecDeque<Pending>,
    /// Lines and bytes (meta and lines) in the window.
    lines: usize,
    bytes: usize,
    max_lines: usize,
    max_bytes: usize,
    /// Since when the window is full, and how long the live readers wait
    /// then.
    full_since: Option<Instant>,
    receipt_wait: Duration,
    /// The live readers were told to read on in this full stretch.
    read_on: bool,
    /// The next line to hand to the socket.
    send_from: u64,
    last_hello: Option<Instant>,
    parser: Option<String>,
    generation: Option<String>,
    /// Lines confirmed since the tap started.
    pub confirmed: u64,
    /// Per (log, file): the next line the index needs, and how far the file
    /// was read.
    frontiers: HashMap<(usize, FileId), Frontier>,
}

/// A file the live readers read past what the durable path took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub file_id: FileId,
    /// Where to read it again from: the next line the index needs.
    pub from: u64,
    pub verify: Verify,
}

impl Durable {
    pub fn connect(
        ctx: &zmq::Context,
        endpoint: &str,
        host: &str,
        (max_lines, max_bytes): (usize, usize),
    ) -> anyhow::Result<Self> {
        let s = socket::open(ctx, zmq::DEALER, Role::Ingest)?;
        // The window holds every message until its receipt; ZeroMQ's queue
        // would hold a second copy of it: a short queue (up to 2 MiB) keeps
        // the pipe full, and the rest goes as it drains (`pump`).
        s.set_sndhwm(SNDHWM)?;
        socket::connect(&s, endpoint)?;
        Ok(Durable {
            socket: s,
            host: host.to_owned(),
            epoch: uuid::Uuid::new_v4().to_string(),
            next_seq: 0,
            window: VecDeque::new(),
            lines: 0,
            bytes: 0,
            max_lines: max_lines.max(1),
            max_bytes: max_bytes.max(1),
            full_since: None,
            receipt_wait: RECEIPT_WAIT,
            read_on: false,
            send_from: 0,
            last_hello: None,
            parser: None,
            generation: None,
            confirmed: 0,
            frontiers: HashMap::new(),
        })
    }

    pub fn socket(&self) -> &zmq::Socket {
        &self.socket
    }

    /// Names this run of the tap: the `epoch` of every line it sends, live
    /// and durable.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// No room for more lines: stop reading until receipts arrive.
    pub fn full(&self) -> bool {
        self.lines >= self.max_lines || self.bytes >= self.max_bytes
    }

    /// The window is full and a receipt may still come to make room: the
    /// live readers wait.
    pub fn holding(&self) -> bool {
        self.holding_until().is_some()
    }

    /// Until when the live readers wait for a receipt, if they do.
    pub fn holding_until(&self) -> Option<Instant> {
        self.full_since
            .map(|t| t + self.receipt_wait)
            .filter(|&t| t > Instant::now())
    }

    /// Whether a reader (a `catchup` one, else a live one) waits now: a
    /// catch-up while the window is full, a live reader while it is held
    /// for a receipt.
    pub fn holds(&self, catchup: bool) -> bool {
        if catchup {
            self.full()
        } else {
            self.holding()
        }
    }

    /// Sets how long the live readers wait in a full window (tests).
    #[cfg(test)]
    pub fn set_receipt_wait(&mut self, wait: Duration) {
        self.receipt_wait = wait;
    }

    /// Notes when the window filled (or that it has room again).
    fn note_full(&mut self) {
        if self.full() {
            self.full_since.get_or_insert_with(Instant::now);
        } else {
            self.full_since = None;
            self.read_on = false;
        }
    }

    /// A live reader reads on past the full window (once per full stretch
    /// in the log).
    pub fn reading_on(&mut self) {
        if !self.read_on {
            self.read_on = true;
            info!(
                unconfirmed_lines = self.lines,
                unconfirmed_bytes = self.bytes,
                "no receipt from the parser for {} ms with the window full; live lines are read on, and read again for the index later",
                self.receipt_wait.as_millis()
            );
        }
    }

    /// Lines the socket did not take yet (its high-water mark was reached).
    pub fn unsent(&self) -> bool {
        self.send_from < self.next_seq
    }

    /// Lines waiting for their receipt.
    pub fn unconfirmed(&self) -> usize {
        self.lines
    }

    fn window_start(&self) -> u64 {
        self.window.front().map_or(self.next_seq, |p| p.seq)
    }

    /// Offers lines read in one go from `file_id` of log `log`. A line is
    /// taken when it is the next one the index needs from that file (or
    /// overlaps it: a line sent partial, read again whole) and the window
    /// had room when the read was offered, or it is a `catchup` reader's:
    /// readers read only while it has room (a live one also after
    /// [`RECEIPT_WAIT`]), so the window overshoots by one read at most,
    /// and a read is never cut in two by it. A line the window does not
    /// take leaves a gap in the file from its frontier on. Lines taken go as
    /// messages of consecutive complete lines (up to [`MAX_MESSAGE_BYTES`];
    /// a partial line alone), each with the meta `meta(first line, lines)`.
    /// Returns how many lines were taken. The file's frontier is looked up
    /// once for all of them.
    pub fn offer(
        &mut self,
        (log, file_id, verify): (usize, FileId, Verify),
        lines: &Lines,
        catchup: bool,
        meta: impl Fn(&Line, u64) -> Vec<u8>,
    ) -> usize {
        if lines.is_empty() {
            return 0;
        }
        let first = lines.get(0);
        let key = (log, file_id);
        let mut f = self.frontiers.get(&key).copied().unwrap_or(Frontier {
            next: first.offset,
            read_to: first.offset,
            verify,
        });
        if verify.len > f.verify.len {
            f.verify = verify;
        }
        let take = catchup || !self.full();
        let mut taken = 0;
        let mut k = 0;
        while k < lines.len() {
            let line = lines.get(k);
            f.read_to = f.read_to.max(line.end());
            // Records (journal entries) are named by sequence numbers with
            // holes where a filter left entries out: any not taken yet is
            // wanted.
            let wanted = if line.is_record() {
                line.end() > f.next
            } else {
                line.offset <= f.next && line.end() > f.next
            };
            if !wanted || !take {
                k += 1;
                continue;
            }
            // The lines after it that follow it in the file, while the
            // message has room.
            let (mut n, mut size) = (1, line.bytes.len() + 1);
            while k + n < lines.len() && lines.follows(k + n) {
                let next = lines.get(k + n);
                if size + next.bytes.len() > MAX_MESSAGE_BYTES {
                    break;
                }
                size += next.bytes.len() + 1;
                f.read_to = f.read_to.max(next.end());
                n += 1;
            }
            let last = lines.get(k + n - 1);
            f.next = last.end();
            self.push(
                (log, file_id),
                (line.offset, n as u64),
                meta(&line, n as u64),
                lines.joined(k..k + n),
            );
            taken += n;
            k += n;
        }
        self.frontiers.insert(key, f);
        taken
    }

    /// The file has lines that were read but not taken: where to read it
    /// again from.
    pub fn gap(&self, log: usize, file_id: FileId) -> Option<Gap> {
        let f = self.frontiers.get(&(log, file_id))?;
        (f.read_to > f.next).then_some(Gap {
            file_id,
            from: f.next,
            verify: f.verify,
        })
    }

    /// Every file of log `log` with a gap.
    pub fn gaps(&self, log: usize) -> impl Iterator<Item = Gap> + '_ {
        self.frontiers
            .keys()
            .filter(move |(l, _)| *l == log)
            .filter_map(|&(l, id)| self.gap(l, id))
    }

    /// Forgets a file's frontier: it is done with (no gap), or its gap can
    /// no longer be read (the file is gone from the server).
    pub fn forget(&mut self, log: usize, file_id: FileId) {
        self.frontiers.remove(&(log, file_id));
    }

    /// Takes a message of `lines` lines for the index, the first at
    /// `offset`.
    fn push(
        &mut self,
        (log, file_id): (usize, FileId),
        (offset, lines): (u64, u64),
        meta: Vec<u8>,
        bytes: &[u8],
    ) {
        self.bytes += meta.len() + bytes.len();
        self.lines += lines as usize;
        self.window.push_back(Pending {
            seq: self.next_seq,
            lines,
            log,
            file_id,
            offset,
            meta,
            bytes: bytes.to_vec(),
        });
        self.next_seq += lines;
        self.note_full();
        self.send();
    }

    /// Hands unsent messages to the socket until it is full.
    fn send(&mut self) {
        let start = self.window_start();
        // The first message not sent: `send_from` is the first line of a
        // message (a receipt's `resend_from` is rounded down to one).
        let mut i = self.window.partition_point(|p| p.end() <= self.send_from);
        while let Some(p) = self.window.get(i) {
            let env = Envelope {
                seq: p.seq,
                window_start: start,
            };
            let env = serde_json::to_vec(&env).expect("an envelope serialises");
            let frames: [&[u8]; 4] = [ingest::LINE, &p.meta, &p.bytes, &env];
            match self.socket.send_multipart(frames, zmq::DONTWAIT) {
                Ok(()) => {
                    self.send_from = p.end();
                    i += 1;
                }
                Err(zmq::Error::EAGAIN) => break,
                Err(e) => {
                    warn!(error = %e, "could not hand lines to the parser");
                    break;
                }
            }
        }
    }

    /// Reads receipts, sends what is due, says hello when it is time.
    pub fn pump(&mut self) -> anyhow::Result<Vec<Heard>> {
        let mut heard = Vec::new();
        while let Ok(frames) = self.socket.recv_multipart(zmq::DONTWAIT) {
            let Some(body) = frames.last() else { continue };
            match serde_json::from_slice::<Receipt>(body) {
                Ok(r) => self.take(r, &mut heard),
                Err(e) => warn!(error = %e, "ignoring a malformed receipt from the parser"),
            }
        }
        self.send();
        let every = if self.window.is_empty() {
            HELLO_IDLE
        } else {
            HELLO_BUSY
        };
        if self.last_hello.is_none_or(|t| t.elapsed() >= every) {
            let hello = Hello {
                host: self.host.clone(),
                epoch: self.epoch.clone(),
                window_start: self.window_start(),
                sent: self.send_from,
            };
            let json = serde_json::to_vec(&hello)?;
            if self
                .socket
                .send_multipart([ingest::HELLO, &json[..]], zmq::DONTWAIT)
                .is_ok()
            {
                self.last_hello = Some(Instant::now());
            }
        }
        Ok(heard)
    }

    fn take(&mut self, r: Receipt, heard: &mut Vec<Heard>) {
        if r.tap_epoch != self.epoch {
            return;
        }
        if self.parser.as_deref() != Some(&r.parser) {
            info!(parser = %r.parser, "parser (re)started; it tells what it has");
            self.parser = Some(r.parser.clone());
        }
        if self.generation.as_deref() != Some(&r.generation) {
            self.generation = Some(r.generation.clone());
            heard.push(Heard::Generation(r.generation.clone()));
        }
        // A message goes once all its lines are confirmed.
        while self.window.front().is_some_and(|p| p.end() <= r.committed) {
            let p = self.window.pop_front().expect("checked");
            self.bytes -= p.meta.len() + p.bytes.len();
            self.lines -= p.lines as usize;
            self.confirmed += p.lines;
        }
        self.note_full();
        if self.send_from < self.window_start() {
            self.send_from = self.window_start();
        }
        if let Some(from) = r.resend_from {
            let from = from.clamp(self.window_start(), self.next_seq);
            // From the start of the message that holds it.
            let i = self.window.partition_point(|p| p.end() <= from);
            let from = self.window.get(i).map_or(self.next_seq, |p| p.seq);
            if from < self.send_from {
                debug!(
                    from,
                    to = self.send_from,
                    "parser is missing lines; sending them again"
                );
                self.send_from = from;
            }
        }
    }

    /// The offset of the oldest line of `file_id` in log `log` the index
    /// has not confirmed: in the window, or else the start of its gap.
    pub fn first_unconfirmed(&self, log: usize, file_id: FileId) -> Option<u64> {
        self.window
            .iter()
            .find(|p| p.log == log && p.file_id == file_id)
            .map(|p| p.offset)
            .or_else(|| self.gap(log, file_id).map(|g| g.from))
    }

    /// Forgets every unconfirmed line and starts a new run (after the index
    /// was replaced the files are read again anyway).
    pub fn restart(&mut self) {
        self.window.clear();
        self.frontiers.clear();
        self.bytes = 0;
        self.lines = 0;
        self.note_full();
        self.epoch = uuid::Uuid::new_v4().to_string();
        self.next_seq = 0;
        self.send_from = 0;
        self.last_hello = None;
    }
}

#[cfg(test)]
mod tests;
