//! Model tests of the follow engine, in the style of Vector's file source:
//! a simulated server ([`super::model`]) takes writes, rename rotations,
//! copytruncates, truncations, deletions and restarts of the tap, while a
//! real durable path (ZeroMQ to a fake parser) carries the lines. Every
//! line written must reach the index once, at its byte offset, under one
//! identity per file.
//!
//! The index here is what the real one is: a map from (file identity,
//! offset) to the line, so a line read again after a restart is kept once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use rill_bus::socket::{self, Role};
use rill_config::Config;
use rill_process::Shutdown;
use rill_proto::ingest::{self, Envelope, Receipt};
use rill_proto::{FileId, LineMeta};

use super::model::Server;
use super::{Follow, Io};
use crate::checkpoint::{self, Checkpoints, LogCheckpoint};
use crate::durable::Durable;
use crate::lines::Lines;
use crate::publish::Outputs;
use crate::saver::CheckpointSaver;
use crate::script::Reading;
use crate::status::StatusBoard;

const PATH: &str = "/logs/app.log";

/// A line written, and where.
struct Written {
    /// Without its newline, as lines are published.
    text: String,
    /// Which file it went into (a truncation starts a new one) and where.
    file: (u64, u64),
    offset: u64,
}

/// The fake parser: takes every line, confirms it at once (unless paused),
/// indexes it by identity.
struct Parser {
    socket: zmq::Socket,
    index: HashMap<(FileId, u64), String>,
    paused: bool,
    /// The last line taken and not yet confirmed: (route, tap run, seq).
    unconfirmed: Option<(Vec<u8>, String, u64)>,
}

impl Parser {
    fn take(&mut self) {
        while socket::readable(&self.socket, Duration::ZERO).unwrap() {
            let f = self.socket.recv_multipart(0).unwrap();
            if f[1] != ingest::LINE {
                continue;
            }
            let meta: LineMeta = serde_json::from_slice(&f[2]).unwrap();
            let env: Envelope = serde_json::from_slice(&f[4]).unwrap();
            // A message of meta.lines consecutive lines.
            for (line, body) in meta.split(&f[3]) {
                let text = String::from_utf8(body.to_vec()).unwrap();
                if let Some(old) = self.index.insert((line.file_id, line.offset), text.clone()) {
                    assert_eq!(old, text, "two lines under one identity and offset");
                }
            }
            self.unconfirmed = Some((f[0].clone(), meta.epoch, env.seq + meta.lines - 1));
        }
        if self.paused {
            return;
        }
        if let Some((route, epoch, seq)) = self.unconfirmed.take() {
            let r = Receipt {
                generation: "g1".into(),
                parser: "p1".into(),
                tap_epoch: epoch,
                committed: seq + 1,
                resend_from: None,
            };
            let body = serde_json::to_vec(&r).unwrap();
            self.socket.send_multipart([route, body], 0).unwrap();
        }
    }
}

/// One log of one host, followed by the engine against the model server.
struct Harness {
    _dir: tempfile::TempDir,
    cfg: Config,
    ctx: zmq::Context,
    endpoint: String,
    server: Server,
    follow: Follow,
    out: Outputs,
    board: StatusBoard,
    parser: Parser,
    written: Vec<Written>,
    /// The checkpoints as last saved (by the tap's own saver, to the state
    /// directory).
    saved: Checkpoints,
    /// Per path: the file it names and its generation (bumped by a
    /// truncation, which makes the same inode a new file).
    generation: BTreeMap<u64, u64>,
    next: usize,
}

impl Harness {
    fn new(window: usize) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::from_yaml(
            &dir.path().join("rill.yaml"),
            &format!(
                "hosts: {{h: {{address: a, user: u, auth: {{agent: true}}}}}}\n\
                 logs: {{app: {{path: {PATH}, hosts: all}}}}\n\
                 tap: {{max_unacked_lines: {window}}}\n"
            ),
        )
        .unwrap();
        let ctx = zmq::Context::new();
        let endpoint = format!("ipc://{}/ingest.sock", dir.path().display());
        let router = socket::open(&ctx, zmq::ROUTER, Role::Ingest).unwrap();
        socket::bind(&router, &endpoint).unwrap();
        let log = cfg.logs_for("h").next().unwrap().clone();
        let board = StatusBoard::new(&cfg, "h", std::slice::from_ref(&log));
        let follow =
            Follow::new(log, cfg.tap, None, Vec::new(), Vec::new()).reading(Reading::Chunks);
        let out = outputs(&ctx, &endpoint, window);
        Harness {
            _dir: dir,
            cfg,
            ctx,
            endpoint,
            server: Server::default(),
            follow,
            out,
            board,
            parser: Parser {
                socket: router,
                index: HashMap::new(),
                paused: false,
                unconfirmed: None,
            },
            written: Vec::new(),
            saved: Checkpoints::default(),
            generation: BTreeMap::new(),
            next: 0,
        }
    }

    /// Writes `n` numbered lines to `path`.
    fn write(&mut self, path: &str, n: usize) {
        for _ in 0..n {
            let text = format!("line {} of the model test", self.next);
            self.next += 1;
            let (ino, offset) = self.server.write(path, &format!("{text}\n"));
            let gen = *self.generation.get(&ino).unwrap_or(&0);
            self.written.push(Written {
                text,
                file: (ino, gen),
                offset,
            });
        }
    }

    fn truncated(&mut self, path: &str) {
        let ino = self.server.ino(path);
        *self.generation.entry(ino).or_insert(0) += 1;
    }

    /// A poll interval on the server, then one turn of the tap's loop for
    /// this log.
    fn turn(&mut self) {
        self.try_turn().unwrap();
    }

    /// [`Harness::turn`], returning what ends the real loop (a channel
    /// that could not be opened is retried, as the loop does).
    fn try_turn(&mut self) -> anyhow::Result<()> {
        self.server.poll();
        self.out.durable.pump().unwrap();
        let (mut buf, mut lines, mut pieces) = (vec![0u8; 64 * 1024], Lines::default(), Vec::new());
        let (mut heard, mut drained, shutdown) = (Instant::now(), 0u32, Shutdown::manual());
        let mut io = Io {
            heard: &mut heard,
            buf: &mut buf,
            lines: &mut lines,
            pieces: &mut pieces,
            out: &mut self.out,
            board: &mut self.board,
            shutdown: &shutdown,
            drained: &mut drained,
            sockets: &[],
        };
        let _ = self
            .follow
            .open_due(&mut self.server, io.board, &io.out.durable, 0);
        let pumped = self.follow.pump(&mut io, 0);
        self.parser.take();
        if self.follow.identity_changed {
            self.save();
        }
        pumped
    }

    /// Saves the checkpoints as the tap does.
    fn save(&mut self) {
        let mut saver = CheckpointSaver::new(&self.cfg, "h", self.saved.clone());
        saver.save(
            std::slice::from_mut(&mut self.follow),
            &[],
            &mut [],
            &self.out.durable,
        );
        self.saved = saver.saved;
    }

    /// Turns until every line written is indexed and the window is empty
    /// (polled, 10 s at most).
    fn settle(&mut self) {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            for _ in 0..4 {
                self.turn();
            }
            let indexed = self.parser.index.len() >= self.written.len();
            if indexed && self.out.durable.unconfirmed() == 0 && !self.follow.catchup_open() {
                return;
            }
            assert!(
                Instant::now() < end,
                "gave up: {} of {} lines indexed, {} unconfirmed; missing: {:?}",
                self.parser.index.len(),
                self.written.len(),
                self.out.durable.unconfirmed(),
                self.missing()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn missing(&self) -> Vec<&str> {
        let have: Vec<&String> = self.parser.index.values().collect();
        self.written
            .iter()
            .map(|w| w.text.as_str())
            .filter(|t| !have.iter().any(|h| h.as_str() == *t))
            .take(5)
            .collect()
    }

    /// The tap stops (its checkpoint saved as the real one saves it) and a
    /// new one starts from that checkpoint, with a new connection and a new
    /// durable window. `meanwhile` runs while it is down.
    fn restart(&mut self, meanwhile: impl FnOnce(&mut Harness)) {
        self.turn();
        self.start_again(meanwhile);
    }

    /// The tap ended (an error, or asked to stop): a new one starts from
    /// the checkpoint the old one saved.
    fn start_again(&mut self, meanwhile: impl FnOnce(&mut Harness)) {
        self.save();
        self.follow.close();
        assert_eq!(
            self.server.open_channels(),
            0,
            "the old tap closed every channel"
        );
        meanwhile(self);
        let saved = checkpoint::load(&self.cfg, "h");
        let log = self.follow.log.clone();
        let name = log.name.clone();
        self.follow = Follow::new(
            log,
            self.cfg.tap,
            saved.logs.get(&name).copied(),
            saved.draining.get(&name).cloned().unwrap_or_default(),
            saved.history.get(&name).cloned().unwrap_or_default(),
        )
        .reading(Reading::Chunks);
        self.out = outputs(&self.ctx, &self.endpoint, self.cfg.tap.max_unacked_lines);
    }

    /// Every line written is in the index once, at its offset, and the
    /// lines of one file carry one identity, different from every other
    /// file's.
    fn check(&self) {
        let mut by_text: BTreeMap<&str, Vec<(FileId, u64)>> = BTreeMap::new();
        for ((id, off), text) in &self.parser.index {
            by_text.entry(text).or_default().push((*id, *off));
        }
        let mut ids: BTreeMap<(u64, u64), FileId> = BTreeMap::new();
        for w in &self.written {
            let at = by_text
                .get(w.text.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default();
            assert_eq!(
                at.len(),
                1,
                "{:?} indexed {} times: {at:?}",
                w.text,
                at.len()
            );
            let (id, off) = at[0];
            assert_eq!(off, w.offset, "{:?} at the wrong offset", w.text);
            let known = *ids.entry(w.file).or_insert(id);
            assert_eq!(known, id, "{:?}: one file, two identities", w.text);
        }
        let distinct: HashSet<FileId> = ids.values().copied().collect();
        assert_eq!(distinct.len(), ids.len(), "two files share an identity");
        assert_eq!(
            self.parser.index.len(),
            self.written.len(),
            "lines nobody wrote"
        );
    }
}

fn outputs(ctx: &zmq::Context, endpoint: &str, window: usize) -> Outputs {
    let live = socket::open(ctx, zmq::PUB, Role::LiveBus).unwrap();
    let mut durable = Durable::connect(ctx, endpoint, "h", (window, 16 << 20)).unwrap();
    durable.set_receipt_wait(RECEIPT_WAIT);
    Outputs::new("h", live, durable)
}

/// How long the model's live readers wait for a receipt in a full window.
const RECEIPT_WAIT: Duration = Duration::from_millis(50);

/// A following tap starts at the end of an existing file: its first lines
/// are the ones written after that.
fn started(window: usize) -> Harness {
    let mut h = Harness::new(window);
    h.server.write(PATH, "written before the tap came\n");
    h.turn();
    h
}

#[test]
fn lines_written_to_a_followed_file_are_indexed_once_at_their_offsets() {
    let mut h = started(1000);
    for _ in 0..5 {
        h.write(PATH, 7);
        h.turn();
    }
    h.settle();
    h.check();
}

#[test]
fn a_rename_rotation_finishes_the_old_file_and_follows_the_new_one() {
    for rotated in ["/logs/app.log.1", "/logs/app.log-20261202"] {
        let mut h = started(1000);
        h.write(PATH, 10);
        h.turn();
        h.write(PATH, 5);
        h.server.rename(PATH, rotated);
        h.turn();
        // A writer that still has the old file open goes on writing there
        // after the tap saw the rotation.
        h.write(rotated, 3);
        h.turn();
        h.write(PATH, 10);
        h.settle();
        h.check();
        assert_eq!(h.server.open_channels(), 1, "the old file's reader closed");
    }
}

#[test]
fn a_rotated_file_compressed_after_it_was_finished_loses_nothing() {
    let mut h = started(1000);
    h.write(PATH, 10);
    h.server.rename(PATH, "/logs/app.log.1");
    h.write(PATH, 4);
    h.settle();
    // delaycompress's next round: the finished file goes, a .gz comes.
    h.server.remove("/logs/app.log.1");
    h.server
        .write("/logs/app.log.1.gz", "\u{1f}\u{8b} compressed bytes\n");
    h.write(PATH, 6);
    h.settle();
    h.check();
}

#[test]
fn a_rotated_file_compressed_at_once_is_read_through_the_descriptor_held_open() {
    let mut h = started(1000);
    h.write(PATH, 10);
    h.turn();
    h.write(PATH, 5);
    // `compress` without `delaycompress`: renamed, then gone at once.
    h.server.rename(PATH, "/logs/app.log.1");
    h.server.remove("/logs/app.log.1");
    h.write(PATH, 6);
    h.settle();
    h.check();
}

#[test]
fn a_copytruncate_reads_the_rest_from_the_copy_and_the_file_again_from_zero() {
    let mut h = started(1000);
    h.write(PATH, 10);
    h.turn();
    // Lines the reader has not seen yet when the copy is made.
    h.write(PATH, 5);
    h.server.copytruncate(PATH, "/logs/app.log.1");
    h.truncated(PATH);
    h.write(PATH, 10);
    h.settle();
    h.check();
}

#[test]
fn a_truncation_without_a_copy_reads_the_file_again_from_zero() {
    let mut h = started(1000);
    h.write(PATH, 10);
    h.settle();
    h.server.truncate(PATH);
    h.truncated(PATH);
    h.write(PATH, 8);
    h.settle();
    h.check();
}

#[test]
fn a_deleted_file_is_finished_and_its_successor_read_from_its_start() {
    let mut h = started(1000);
    h.write(PATH, 10);
    h.settle();
    h.server.remove(PATH);
    h.turn();
    h.write(PATH, 10);
    h.settle();
    h.check();
}

#[test]
fn a_restarted_tap_resumes_where_the_index_stood() {
    let mut h = started(1000);
    h.write(PATH, 10);
    h.settle();
    h.write(PATH, 5);
    h.restart(|h| h.write(PATH, 5));
    h.write(PATH, 5);
    h.settle();
    h.check();
}

#[test]
fn a_tap_down_across_a_rotation_finishes_the_old_file_by_inode() {
    let mut h = started(1000);
    h.write(PATH, 10);
    h.settle();
    h.restart(|h| {
        h.write(PATH, 5);
        h.server.rename(PATH, "/logs/app.log.1");
        h.write(PATH, 5);
    });
    h.settle();
    h.check();
}

#[test]
fn a_tap_down_across_a_copytruncate_finishes_the_old_content_from_the_copy() {
    let mut h = started(1000);
    h.write(PATH, 10);
    h.settle();
    h.restart(|h| {
        h.write(PATH, 5);
        h.server.copytruncate(PATH, "/logs/app.log.1");
        h.truncated(PATH);
        h.write(PATH, 5);
    });
    h.settle();
    h.check();
}

/// A parser that stops confirming: the window fills, the live reader
/// waits for a receipt for RECEIPT_WAIT and then reads on, leaving a gap,
/// which a catch-up reads once the parser is back.
fn stalled_parser(rotate: impl FnOnce(&mut Harness)) {
    let mut h = started(100);
    h.write(PATH, 3);
    h.settle();
    h.parser.paused = true;
    h.write(PATH, 100);
    h.turn();
    assert!(h.out.durable.full(), "the window filled");
    h.write(PATH, 50);
    let end = Instant::now() + Duration::from_secs(10);
    while h.out.durable.gaps(0).next().is_none() {
        assert!(Instant::now() < end, "the live reader never read on");
        h.turn();
        assert!(
            !h.out.durable.holding() || h.out.durable.gaps(0).next().is_none(),
            "a gap while the reader waits for a receipt"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(h.out.durable.full());
    rotate(&mut h);
    h.write(PATH, 50);
    for _ in 0..10 {
        h.turn();
    }
    h.parser.paused = false;
    h.settle();
    h.check();
}

/// A backlog larger than the window, with a parser that confirms late:
/// the live reader waits for its receipts rather than read past the
/// window, so no line is left for a catch-up to read again.
#[test]
fn a_full_window_holds_the_live_reader_until_a_receipt_makes_room() {
    let mut h = started(100);
    // Long enough that the wait cannot end during the test.
    h.out.durable.set_receipt_wait(Duration::from_secs(600));
    h.parser.paused = true;
    h.write(PATH, 100);
    h.turn();
    assert!(h.out.durable.full(), "the window filled");
    for _ in 0..3 {
        h.write(PATH, 100);
        h.turn();
    }
    assert!(
        h.out.durable.gaps(0).next().is_none(),
        "the live reader read past a full window"
    );
    h.parser.paused = false;
    let end = Instant::now() + Duration::from_secs(10);
    while h.parser.index.len() < h.written.len() {
        assert!(Instant::now() < end, "{} lines missing", h.missing().len());
        h.turn();
        assert!(h.out.durable.gaps(0).next().is_none(), "a gap");
        std::thread::sleep(Duration::from_millis(1));
    }
    h.settle();
    h.check();
}

#[test]
fn a_stalled_parser_leaves_a_gap_read_again_once() {
    stalled_parser(|_| {});
}

#[test]
fn a_stalled_parser_across_a_rename_leaves_a_gap_read_again_once() {
    stalled_parser(|h| h.server.rename(PATH, "/logs/app.log.1"));
}

#[test]
fn a_stalled_parser_across_a_copytruncate_leaves_a_gap_read_again_from_the_copy() {
    stalled_parser(|h| {
        h.server.copytruncate(PATH, "/logs/app.log.1");
        h.truncated(PATH);
    });
}

#[test]
fn a_checkpoint_names_the_oldest_line_the_index_has_not_confirmed() {
    let mut h = started(1000);
    h.write(PATH, 4);
    h.settle();
    let (at, _, _) = h.follow.checkpoint(0, &h.out.durable);
    let end = h.written.last().map(|w| w.offset + w.text.len() as u64 + 1);
    assert_eq!(at.map(|c: LogCheckpoint| c.offset), end);
    h.parser.paused = true;
    h.write(PATH, 2);
    for _ in 0..5 {
        h.turn();
    }
    let (at, _, _) = h.follow.checkpoint(0, &h.out.durable);
    assert_eq!(
        at.map(|c| c.offset),
        end,
        "the unconfirmed lines are read again"
    );
}

#[test]
fn a_connection_lost_while_finishing_a_rotated_file_finishes_it_after_the_restart() {
    let mut h = started(1000);
    h.write(PATH, 10);
    h.turn();
    // The rotation is seen, but no channel for the new file opens.
    *h.server.refuse.borrow_mut() = true;
    h.server.rename(PATH, "/logs/app.log.1");
    h.turn();
    // A writer still has the old file open: it is being finished.
    h.write("/logs/app.log.1", 3);
    h.turn();
    h.write("/logs/app.log.1", 2);
    h.server.sever();
    assert!(h.try_turn().is_err(), "the lost connection ends the tap");
    *h.server.refuse.borrow_mut() = false;
    h.start_again(|h| h.write(PATH, 5));
    h.settle();
    h.check();
}
