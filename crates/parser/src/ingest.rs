//! The parser's side of the durable path (protocol: `rill_proto::ingest`).
//!
//! For every tap run it knows the next line it expects. A message that
//! starts with that line is handed out (to the write-ahead log); an older
//! one is a duplicate (sent again) and skipped, or cut to the lines not
//! seen yet; a newer one means messages were lost on the way, and the tap
//! is asked to send again from the missing line. Once what was handed out
//! is durable (synced in the write-ahead log), runs that gained lines get a
//! receipt, paced by [`Pacing`]: at once when a quarter of the tap's window
//! waits for one, else at most every 2 s.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rill_bus::socket::{self, Role};
use rill_proto::ingest::{self, Envelope, Hello, Receipt};
use rill_proto::LineMeta;
use tracing::{debug, info, warn};

/// A tap run not heard from for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Messages queued in the parser per connected tap (libzmq's receive
/// high-water mark is per connection): at most 4 MiB of lines (a message
/// holds up to 128 KiB), usually far less: a live tail's messages hold a
/// line or a few. [`Role::Ingest`]'s default let a saturated parser grow
/// past 1.7 GB in a 200-host benchmark.
const RCVHWM_PER_TAP: i32 = 32;
/// A message holds at most this many lines.
const MAX_LINES_PER_MESSAGE: u64 = 1 << 20;
/// How often [`Ingest::tell`] looks for receipts whose time came.
const LOOK_EVERY: Duration = Duration::from_millis(100);
/// A tap is asked to send again at most this often per run.
const ASK_EVERY: Duration = Duration::from_millis(500);

/// How often receipts go to a tap run.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// A run gets a receipt at most this often...
    pub every: Duration,
    /// ... unless this many of its lines were committed since its last one,
    pub lines: u64,
    /// ... or this many bytes (meta and line) handed out since then,
    pub bytes: u64,
    /// ... or once the run sent nothing for this long (a burst ended: its
    /// window empties now rather than up to `every` later).
    pub quiet: Duration,
}

impl Pacing {
    /// Every 2 s, or at once for a quarter of a tap's window
    /// (`tap.max_unacked_lines` or `tap.max_unacked_bytes`). A receipt per commit (two a second per tap) cost 200 taps
    /// 800 thread wakes a second for nothing a tap needed: its window only
    /// fills in a burst, and then receipts go at once; a checkpoint 2 s
    /// staler only means a few more lines read again after a crash, which
    /// the index keeps once.
    pub fn for_window(max_unacked_lines: usize, max_unacked_bytes: usize) -> Self {
        Pacing {
            every: Duration::from_secs(2),
            lines: (max_unacked_lines / 4).max(1) as u64,
            bytes: (max_unacked_bytes / 4).max(1) as u64,
            quiet: Duration::from_millis(250),
        }
    }

    /// A receipt after every commit.
    pub const EVERY_COMMIT: Pacing = Pacing {
        every: Duration::ZERO,
        lines: 1,
        bytes: 1,
        quiet: Duration::ZERO,
    };
}

/// The file in the index folder that names the index.
const GENERATION_FILE: &str = "rill-generation";

/// The index's generation: read from the index folder, or made anew when
/// the index was just created (or predates generations).
pub fn generation(index_dir: &Path, index_was_there: bool) -> std::io::Result<String> {
    let file = index_dir.join(GENERATION_FILE);
    if index_was_there {
        if let Ok(g) = std::fs::read_to_string(&file) {
            if !g.trim().is_empty() {
                return Ok(g.trim().to_owned());
            }
        }
    }
    let g = uuid::Uuid::new_v4().to_string();
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, &g)?;
    std::fs::rename(&tmp, &file)?;
    info!(generation = %g, "new index generation");
    Ok(g)
}

struct TapRun {
    route: Vec<u8>,
    host: String,
    /// The next message number expected.
    next: u64,
    /// Every message numbered below this is committed.
    committed: u64,
    asked: Option<Instant>,
    seen: Instant,
    /// `committed` as the last receipt said it, and when that was sent.
    told: u64,
    told_at: Option<Instant>,
    /// Bytes (meta and line) handed out since the last receipt.
    untold_bytes: u64,
    /// When its last lines arrived.
    last_lines: Instant,
}

/// Lines to index: `meta.lines` consecutive lines of one file (a tap's
/// message, or its part not seen before).
pub struct Incoming {
    pub meta: LineMeta,
    /// `meta` as JSON (as the tap sent it, unless it was cut).
    pub meta_json: Vec<u8>,
    /// The lines joined by their newlines.
    pub lines: Vec<u8>,
    /// The durable number of the first line in its tap run (`meta.epoch`).
    pub seq: u64,
}

pub struct Ingest {
    socket: zmq::Socket,
    generation: String,
    parser: String,
    runs: HashMap<String, TapRun>,
    pacing: Pacing,
    looked: Instant,
}

impl Ingest {
    pub fn bind(
        ctx: &zmq::Context,
        endpoint: &str,
        generation: String,
        pacing: Pacing,
    ) -> Result<Self, rill_bus::BusError> {
        let s = socket::open(ctx, zmq::ROUTER, Role::Ingest)?;
        // Per tap: the parser's memory must not grow with the number of
        // hosts. Each tap keeps its unconfirmed lines itself (its window);
        // a short queue here is all the parser needs to stay busy.
        s.set_rcvhwm(RCVHWM_PER_TAP)?;
        socket::bind(&s, endpoint)?;
        Ok(Ingest {
            socket: s,
            generation,
            parser: uuid::Uuid::new_v4().to_string(),
            runs: HashMap::new(),
            pacing,
            looked: Instant::now(),
        })
    }

    pub fn socket(&self) -> &zmq::Socket {
        &self.socket
    }

    /// The next lines to index, if a message is waiting. Hellos,
    /// duplicates and out-of-order messages are dealt with on the way.
    pub fn recv(&mut self) -> Option<Incoming> {
        loop {
            let frames = self.socket.recv_multipart(zmq::DONTWAIT).ok()?;
            match &frames[..] {
                [route, kind, meta, lines, env] if kind.as_slice() == ingest::LINE => {
                    let (Ok(parsed), Ok(env)) = (
                        serde_json::from_slice::<LineMeta>(meta),
                        serde_json::from_slice::<Envelope>(env),
                    ) else {
                        warn!("ignoring a malformed message from a tap");
                        continue;
                    };
                    let n = parsed.lines.max(1);
                    let newlines = memchr::memchr_iter(b'\n', lines).count() as u64;
                    let run = self.run(route, &parsed.host, &parsed.epoch, env.window_start);
                    if n > MAX_LINES_PER_MESSAGE || newlines != n - 1 {
                        warn!(host = %parsed.host, lines = n, newlines, "ignoring a message whose lines do not match its meta");
                        if env.seq == run.next {
                            run.next += n;
                        }
                        continue;
                    }
                    let end = env.seq + n;
                    if end <= run.next {
                        continue; // sent again; seen already
                    }
                    if env.seq > run.next {
                        let from = run.next;
                        let epoch = parsed.epoch.clone();
                        self.ask(&epoch, from);
                        continue;
                    }
                    let skip = run.next - env.seq;
                    run.next = end;
                    run.untold_bytes += (meta.len() + lines.len()) as u64;
                    run.last_lines = Instant::now();
                    if skip == 0 {
                        return Some(Incoming {
                            meta: parsed,
                            meta_json: meta.to_vec(),
                            lines: lines.to_vec(),
                            seq: env.seq,
                        });
                    }
                    return Some(cut(parsed, lines, env.seq, skip));
                }
                [route, kind, hello] if kind.as_slice() == ingest::HELLO => {
                    let Ok(h) = serde_json::from_slice::<Hello>(hello) else {
                        warn!("ignoring a malformed hello from a tap");
                        continue;
                    };
                    let run = self.run(route, &h.host, &h.epoch, h.window_start);
                    // Everything sent before the hello arrived before it (one
                    // pipe, in order): what is missing was lost.
                    let missing = (run.next < h.sent).then_some(run.next);
                    run.asked = missing.map(|_| Instant::now());
                    self.receipt(&h.epoch, missing);
                }
                _ => warn!(
                    frames = frames.len(),
                    "ignoring an unexpected message on the ingest socket"
                ),
            }
        }
    }

    /// The state of a tap run, made when it is first heard of: it starts at
    /// the oldest message the tap still holds.
    fn run(&mut self, route: &[u8], host: &str, epoch: &str, window_start: u64) -> &mut TapRun {
        let run = self.runs.entry(epoch.to_owned()).or_insert_with(|| {
            debug!(host, epoch, window_start, "new tap run");
            TapRun {
                route: Vec::new(),
                host: host.to_owned(),
                next: window_start,
                committed: window_start,
                asked: None,
                seen: Instant::now(),
                told: window_start,
                told_at: None,
                untold_bytes: 0,
                last_lines: Instant::now(),
            }
        });
        run.route = route.to_vec();
        run.seen = Instant::now();
        // The tap no longer holds anything older: nothing to wait for there.
        if window_start > run.next {
            run.next = window_start;
            run.committed = run.committed.max(window_start);
        }
        run
    }

    fn ask(&mut self, epoch: &str, from: u64) {
        let Some(run) = self.runs.get_mut(epoch) else {
            return;
        };
        if run.asked.is_some_and(|t| t.elapsed() < ASK_EVERY) {
            return;
        }
        run.asked = Some(Instant::now());
        debug!(host = %run.host, from, "lines missing from a tap; asking for them again");
        self.receipt(epoch, Some(from));
    }

    fn receipt(&mut self, epoch: &str, resend_from: Option<u64>) {
        let Some(run) = self.runs.get_mut(epoch) else {
            return;
        };
        run.told = run.committed;
        run.told_at = Some(Instant::now());
        run.untold_bytes = 0;
        let r = Receipt {
            generation: self.generation.clone(),
            parser: self.parser.clone(),
            tap_epoch: epoch.to_owned(),
            committed: run.committed,
            resend_from,
        };
        let Ok(json) = serde_json::to_vec(&r) else {
            return;
        };
        let _ = self
            .socket
            .send_multipart([run.route.as_slice(), &json], zmq::DONTWAIT);
    }

    /// Everything handed out so far is durable: tell the taps whose
    /// receipt is due.
    pub fn committed(&mut self) {
        for r in self.runs.values_mut() {
            r.committed = r.committed.max(r.next);
        }
        self.send_due(false);
        self.runs.retain(|_, r| r.seen.elapsed() < FORGET_AFTER);
    }

    /// Sends the receipts that are due (call often: a receipt held back by
    /// the pacing goes out once its time came; it looks every
    /// [`LOOK_EVERY`]), or every one still owed when `all`.
    pub fn tell(&mut self, all: bool) {
        if !all && self.looked.elapsed() < LOOK_EVERY {
            return;
        }
        self.looked = Instant::now();
        self.send_due(all);
    }

    fn send_due(&mut self, all: bool) {
        let p = self.pacing;
        let due: Vec<String> = self
            .runs
            .iter()
            .filter(|(_, r)| {
                r.committed > r.told
                    && (all
                        || r.committed - r.told >= p.lines
                        || r.untold_bytes >= p.bytes
                        || r.last_lines.elapsed() >= p.quiet
                        || r.told_at.is_none_or(|t| t.elapsed() >= p.every))
            })
            .map(|(e, _)| e.clone())
            .collect();
        for epoch in due {
            self.receipt(&epoch, None);
        }
    }
}

/// The lines of a message from its line `skip` on (the ones before were
/// handed out already).
fn cut(mut meta: LineMeta, lines: &[u8], seq: u64, skip: u64) -> Incoming {
    let from = memchr::memchr_iter(b'\n', lines)
        .nth(skip as usize - 1)
        .map_or(lines.len(), |i| i + 1);
    meta.offset += from as u64;
    meta.lines -= skip;
    let meta_json = serde_json::to_vec(&meta).expect("a line meta serialises");
    Incoming {
        meta,
        meta_json,
        lines: lines[from..].to_vec(),
        seq: seq + skip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(host: &str, epoch: &str) -> Vec<u8> {
        format!(
            r#"{{"host":"{host}","log":"l","path":"/p","file_id":"1:2:00000003","offset":0,"seq":0,"epoch":"{epoch}","read_at":"2026-11-22T10:00:00Z"}}"#
        )
        .into_bytes()
    }

    struct Tap {
        socket: zmq::Socket,
    }

    impl Tap {
        fn line(&self, seq: u64, window_start: u64) {
            self.lines(seq, window_start, 1, b"body");
        }

        /// A message of `n` lines, the first at offset `offset_of(seq)`.
        fn lines(&self, seq: u64, window_start: u64, n: u64, body: &[u8]) {
            let env = serde_json::to_vec(&Envelope { seq, window_start }).unwrap();
            let mut meta: LineMeta = serde_json::from_slice(&line("h", "e1")).unwrap();
            meta.lines = n;
            // Lines a, bb, ccc, d, eeee: where line `seq` starts.
            meta.offset = [0, 2, 5, 9, 11, 16, 21, 26, 31][seq as usize];
            let meta = serde_json::to_vec(&meta).unwrap();
            self.socket
                .send_multipart([ingest::LINE, &meta[..], body, &env], 0)
                .unwrap();
        }

        fn hello(&self, window_start: u64, sent: u64) {
            let h = Hello {
                host: "h".into(),
                epoch: "e1".into(),
                window_start,
                sent,
            };
            self.socket
                .send_multipart([ingest::HELLO, &serde_json::to_vec(&h).unwrap()[..]], 0)
                .unwrap();
        }

        fn receipt(&self) -> Receipt {
            assert!(socket::readable(&self.socket, Duration::from_secs(5)).unwrap());
            let f = self.socket.recv_multipart(0).unwrap();
            serde_json::from_slice(f.last().unwrap()).unwrap()
        }
    }

    fn setup() -> (Ingest, Tap) {
        setup_paced(Pacing::EVERY_COMMIT)
    }

    fn setup_paced(pacing: Pacing) -> (Ingest, Tap) {
        let ctx = zmq::Context::new();
        let dir = tempfile::tempdir().unwrap();
        let ep = format!("ipc://{}/ingest.sock", dir.path().display());
        let ingest = Ingest::bind(&ctx, &ep, "g1".into(), pacing).unwrap();
        let s = socket::open(&ctx, zmq::DEALER, Role::Ingest).unwrap();
        socket::connect(&s, &ep).unwrap();
        std::mem::forget(dir);
        (ingest, Tap { socket: s })
    }

    /// The next message handed out (within 5 s).
    fn ingest_one(ingest: &mut Ingest) -> Incoming {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < end, "nothing handed out");
            socket::readable(ingest.socket(), Duration::from_millis(50)).unwrap();
            if let Some(m) = ingest.recv() {
                return m;
            }
        }
    }

    /// Receives until `n` lines were handed out (or 5 s).
    fn take(ingest: &mut Ingest, n: usize) -> usize {
        let end = Instant::now() + Duration::from_secs(5);
        let mut got = 0;
        while got < n && Instant::now() < end {
            socket::readable(ingest.socket(), Duration::from_millis(50)).unwrap();
            while ingest.recv().is_some() {
                got += 1;
            }
        }
        got
    }

    #[test]
    fn lines_in_order_are_handed_out_once_and_confirmed_once_durable() {
        let (mut ingest, tap) = setup();
        // A run first heard of at message 5 (it still holds 5 on).
        for seq in [5, 6, 6, 7] {
            tap.line(seq, 5);
        }
        assert_eq!(take(&mut ingest, 3), 3, "the duplicate 6 is skipped");
        ingest.committed();
        let r = tap.receipt();
        assert_eq!((r.committed, r.resend_from), (8, None));
        assert_eq!(r.generation, "g1");
    }

    #[test]
    fn a_message_of_many_lines_counts_them_and_one_sent_again_in_part_is_cut() {
        let (mut ingest, tap) = setup();
        tap.lines(0, 0, 3, b"a\nbb\nccc");
        let m = ingest_one(&mut ingest);
        assert_eq!(
            (m.seq, m.meta.lines, &m.lines[..]),
            (0, 3, &b"a\nbb\nccc"[..])
        );
        // Lines 1..5 arrive (the tap's messages were cut differently):
        // only 3 and 4 are new.
        tap.lines(1, 0, 4, b"bb\nccc\nd\neeee");
        let m = ingest_one(&mut ingest);
        assert_eq!((m.seq, m.meta.lines, &m.lines[..]), (3, 2, &b"d\neeee"[..]));
        let meta: LineMeta = serde_json::from_slice(&m.meta_json).unwrap();
        assert_eq!(meta.offset, 9, "the cut meta starts at the first new line");
        // A meta that does not match its lines is refused, and skipped.
        tap.lines(5, 0, 3, b"only\ntwo");
        tap.lines(8, 0, 1, b"next");
        let m = ingest_one(&mut ingest);
        assert_eq!(m.seq, 8);
        ingest.committed();
        assert_eq!(tap.receipt().committed, 9);
    }

    #[test]
    fn receipts_are_paced_unless_a_quarter_window_waits() {
        let (mut ingest, tap) = setup_paced(Pacing {
            every: Duration::from_secs(600),
            lines: 3,
            bytes: u64::MAX,
            quiet: Duration::from_secs(600),
        });
        tap.line(0, 0);
        assert_eq!(take(&mut ingest, 1), 1);
        ingest.committed();
        assert_eq!(
            tap.receipt().committed,
            1,
            "a run's first receipt is not held"
        );
        // One more line: not worth a receipt before the time is up.
        tap.line(1, 0);
        assert_eq!(take(&mut ingest, 1), 1);
        ingest.committed();
        assert!(!socket::readable(&tap.socket, Duration::from_millis(300)).unwrap());
        // Three since the last receipt: at once.
        tap.line(2, 0);
        tap.line(3, 0);
        assert_eq!(take(&mut ingest, 2), 2);
        ingest.committed();
        assert_eq!(tap.receipt().committed, 4);
        // What is owed goes out when the parser stops.
        tap.line(4, 0);
        assert_eq!(take(&mut ingest, 1), 1);
        ingest.committed();
        ingest.tell(true);
        assert_eq!(tap.receipt().committed, 5);
    }

    #[test]
    fn a_tap_that_went_quiet_gets_what_is_owed_at_once() {
        let (mut ingest, tap) = setup_paced(Pacing {
            every: Duration::from_secs(600),
            lines: 1_000,
            bytes: u64::MAX,
            quiet: Duration::from_millis(200),
        });
        tap.line(0, 0);
        assert_eq!(take(&mut ingest, 1), 1);
        ingest.committed();
        assert_eq!(tap.receipt().committed, 1, "the first receipt");
        tap.line(1, 0);
        assert_eq!(take(&mut ingest, 1), 1);
        ingest.committed();
        assert!(
            !socket::readable(&tap.socket, Duration::from_millis(50)).unwrap(),
            "not quiet yet"
        );
        let sent = Instant::now();
        loop {
            ingest.tell(false);
            if socket::readable(&tap.socket, Duration::from_millis(20)).unwrap() {
                break;
            }
            assert!(
                sent.elapsed() < Duration::from_secs(5),
                "no receipt once quiet"
            );
        }
        assert_eq!(tap.receipt().committed, 2);
        assert!(sent.elapsed() >= Duration::from_millis(150));
    }

    #[test]
    fn a_quarter_window_of_bytes_gets_its_receipt_at_once() {
        let (mut ingest, tap) = setup_paced(Pacing {
            every: Duration::from_secs(600),
            lines: 1_000,
            bytes: 100,
            quiet: Duration::from_secs(600),
        });
        tap.line(0, 0);
        assert_eq!(take(&mut ingest, 1), 1);
        ingest.committed();
        assert_eq!(tap.receipt().committed, 1);
        // One line, but its meta alone is over 100 bytes.
        tap.line(1, 0);
        assert_eq!(take(&mut ingest, 1), 1);
        ingest.committed();
        assert_eq!(tap.receipt().committed, 2);
    }

    #[test]
    fn a_gap_asks_the_tap_to_send_again() {
        let (mut ingest, tap) = setup();
        tap.line(0, 0);
        tap.line(2, 0);
        assert_eq!(take(&mut ingest, 1), 1);
        let r = tap.receipt();
        assert_eq!(r.resend_from, Some(1));
        assert_eq!(r.committed, 0);
        // A hello that says more was sent than arrived: lost on the way.
        tap.hello(0, 3);
        assert!(socket::readable(ingest.socket(), Duration::from_secs(5)).unwrap());
        assert!(ingest.recv().is_none(), "a hello is not a line");
        let r = tap.receipt();
        assert_eq!(r.resend_from, Some(1));
    }

    #[test]
    fn the_generation_is_kept_with_the_index_and_made_anew_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = generation(dir.path(), false).unwrap();
        assert_eq!(generation(dir.path(), true).unwrap(), first);
        assert_ne!(generation(dir.path(), false).unwrap(), first);
    }
}
