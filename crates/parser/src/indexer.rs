//! The index thread: records of the write-ahead log, handed over by the
//! parser's main thread once synced, become events, go into the index and
//! out on `parsed/` topics; a commit every [`COMMIT_EVERY`] stores the log
//! position the index holds everything before.
//!
//! The main thread receives, logs and confirms the taps' lines while this
//! thread indexes what came before: a backlog is received and indexed at
//! once, not by turns of one loop. What it committed it reports back
//! ([`Indexer::applied`]); the main thread then trims the log.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use rill_bus::Publisher;
use rill_index::IndexWriter;
use rill_proto::{LineMeta, ParsedEvent, Topic};
use tracing::{debug, info, warn};

use crate::events::EventBuilder;
use crate::overlap::{Purge, TenureWatch};
use crate::retention::Retention;
use crate::wal::Record;

/// The longest a received line waits before it is committed (searchable).
pub const COMMIT_EVERY: Duration = Duration::from_millis(500);
/// Lines indexed and not committed when no record waits: a backlog ended,
/// and its last lines are committed now rather than up to COMMIT_EVERY
/// later (a live tail never has this many waiting).
const BACKLOG_END: usize = 10_000;
/// Records handed over and not indexed yet, at most (a record is at most a
/// tap's message: 128 KiB of lines and one long line).
pub const HANDED_OVER: usize = 64;
/// The index thread takes records for at most this long before it looks
/// at its idle multiline events and its commit.
const TAKE_PER_TURN: Duration = Duration::from_millis(50);

/// The write-ahead log position stored with each commit.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Payload {
    pub wal: u64,
}

/// What the index thread needs, made on the main thread (where opening
/// them can fail with a clear error before anything is received).
pub struct Parts {
    pub index: IndexWriter,
    pub events: EventBuilder,
    pub retention: Retention,
    pub live: Publisher,
    /// The log position the index's last commit stored.
    pub applied: u64,
    /// This collector's id: the `collector` of lines that name none.
    pub collector: String,
    /// In a cluster: the hosts' tenures to index lines under, and the
    /// copies a later tenure holds, to delete (overlap.rs).
    pub tenures: Option<TenureWatch>,
    pub purges: Option<Receiver<Vec<Purge>>>,
}

/// What the two threads share.
#[derive(Default)]
struct Shared {
    /// Every record before this position is in the committed index.
    applied: AtomicU64,
    /// The main thread has synced records it has not handed over yet.
    more: AtomicBool,
}

/// The main thread's end of the index thread.
pub struct Indexer {
    records: Option<SyncSender<Record>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Indexer {
    pub fn start(parts: Parts) -> anyhow::Result<Indexer> {
        let (tx, rx) = std::sync::mpsc::sync_channel(HANDED_OVER);
        let shared = Arc::new(Shared::default());
        shared.applied.store(parts.applied, Ordering::Release);
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("index".into())
            .spawn(move || index(parts, &rx, &theirs))
            .context("could not start the index thread")?;
        Ok(Indexer {
            records: Some(tx),
            shared,
            thread: Some(thread),
        })
    }

    /// Hands a synced record over; gives it back when HANDED_OVER records
    /// wait already.
    pub fn offer(&self, rec: Record) -> Result<(), Record> {
        let Some(tx) = &self.records else {
            return Ok(());
        };
        match tx.try_send(rec) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(rec)) => Err(rec),
            // The thread ended (an error): `check` reports it.
            Err(TrySendError::Disconnected(_)) => Ok(()),
        }
    }

    /// Hands a record over, waiting for room (at shutdown).
    pub fn give(&self, rec: Record) {
        if let Some(tx) = &self.records {
            let _ = tx.send(rec);
        }
    }

    /// Says whether synced records wait to be handed over (a backlog goes
    /// on: its last lines are not committed early).
    pub fn set_more(&self, more: bool) {
        self.shared.more.store(more, Ordering::Release);
    }

    /// Every record before this position is in the committed index.
    pub fn applied(&self) -> u64 {
        self.shared.applied.load(Ordering::Acquire)
    }

    /// The thread's error, if it ended.
    pub fn check(&mut self) -> anyhow::Result<()> {
        if !self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
            return Ok(());
        }
        self.join()?;
        Err(anyhow!("the index thread ended"))
    }

    /// Lets the thread index what it was handed, commit and end.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        self.records = None;
        self.join()
    }

    fn join(&mut self) -> anyhow::Result<()> {
        match self.thread.take().map(JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(_)) => Err(anyhow!("the index thread panicked")),
        }
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        self.records = None;
        let _ = self.join();
    }
}

/// The index thread: until the main thread lets go of its end.
fn index(mut p: Parts, records: &Receiver<Record>, shared: &Shared) -> anyhow::Result<()> {
    let mut parsed: Vec<ParsedEvent> = Vec::new();
    let mut done = Done::default();
    // The position after the last record taken.
    let mut next = p.applied;
    let mut open = true;
    while open {
        let wait = done.first_pending.map_or(Duration::from_millis(100), |t| {
            COMMIT_EVERY.saturating_sub(t.elapsed())
        });
        // Records waiting after this turn's share.
        let mut more = false;
        match records.recv_timeout(wait) {
            Ok(rec) => {
                next = take(&mut p, &rec, &mut parsed, &mut done)?;
                // What else waits, for a while (then the idle flush and
                // the commit get their turn).
                let started = Instant::now();
                loop {
                    if started.elapsed() >= TAKE_PER_TURN {
                        more = true;
                        break;
                    }
                    match records.try_recv() {
                        Ok(rec) => next = take(&mut p, &rec, &mut parsed, &mut done)?,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open = false,
        }
        if open {
            p.events.flush_idle(Instant::now(), &mut parsed);
        } else {
            p.events.flush_all(&mut parsed);
        }
        deliver_all(&mut p, &mut parsed, &mut done)?;
        // Every COMMIT_EVERY, at once when a backlog was all taken, and
        // before the thread ends.
        let backlog_done =
            !more && !shared.more.load(Ordering::Acquire) && p.index.pending() >= BACKLOG_END;
        let due = done
            .first_pending
            .is_some_and(|t| t.elapsed() >= COMMIT_EVERY || backlog_done);
        if due || !open {
            let n = p.index.pending();
            let at = commit(&mut p.index, &p.events, next)?;
            shared.applied.store(at, Ordering::Release);
            debug!(lines = n, total = done.indexed, "committed");
            done.first_pending = None;
        }
        p.retention.tick(&mut p.index)?;
        if let Some(purges) = &p.purges {
            while let Ok(batch) = purges.try_recv() {
                crate::overlap::apply(&mut p.index, batch)?;
                // Committed with the next lines, or on their own.
                done.first_pending.get_or_insert_with(Instant::now);
            }
        }
        p.live.hear();
    }
    info!(total = done.indexed, "index thread stopped");
    Ok(())
}

/// One record's events (its lines through the events builder), indexed
/// as each line is taken (each event's strings are freed before the next
/// are made: a record's worth alive at once cost the thread a third of its
/// time in malloc and free); the position after the record. Its lines
/// carry the record's log position as their `seq`, so an open multiline
/// event names the record to read again after a crash.
fn take(
    p: &mut Parts,
    rec: &Record,
    parsed: &mut Vec<ParsedEvent>,
    done: &mut Done,
) -> anyhow::Result<u64> {
    let Ok(mut meta) = serde_json::from_slice::<LineMeta>(&rec.meta) else {
        warn!(
            at = rec.pos,
            "a record of the write-ahead log has a bad meta; skipped"
        );
        return Ok(rec.end);
    };
    meta.seq = rec.pos;
    // The node thread writes a host's tenure before its tap starts, so a
    // line of the tap's finds it here.
    if let Some(map) = p.tenures.as_mut().and_then(TenureWatch::changed) {
        p.index.set_tenures(map)?;
    }
    // Another collector's file is named apart from this one's files: the
    // index's identity is (collector, host, log, file, offset).
    if meta.collector.is_empty() {
        meta.collector.clone_from(&p.collector);
    } else if meta.collector != p.collector {
        meta.file_id = meta.file_id.of_collector(&meta.collector);
    }
    for (line, bytes) in meta.split(&rec.lines) {
        p.events.push(line, bytes, parsed);
        deliver_all(p, parsed, done)?;
    }
    Ok(rec.end)
}

fn deliver_all(
    p: &mut Parts,
    parsed: &mut Vec<ParsedEvent>,
    done: &mut Done,
) -> anyhow::Result<()> {
    for event in parsed.drain(..) {
        deliver(&mut p.index, &p.live, event)?;
        done.first_pending.get_or_insert_with(Instant::now);
        done.indexed += 1;
    }
    Ok(())
}

/// What the index thread did.
#[derive(Default)]
struct Done {
    /// Events indexed.
    indexed: u64,
    /// When the first event not committed yet was indexed.
    first_pending: Option<Instant>,
}

/// Commits the index with the log position it holds everything before
/// (the record of the first line of a multiline event still open, else
/// `next`, the record after the last one taken); returns that position.
fn commit(index: &mut IndexWriter, events: &EventBuilder, next: u64) -> anyhow::Result<u64> {
    let applied = events.first_pending_seq_any().map_or(next, |s| s.min(next));
    index.set_payload(serde_json::to_string(&Payload { wal: applied })?);
    let started = Instant::now();
    index.commit()?;
    crate::metrics::timings()
        .commit
        .observe(started.elapsed().as_secs_f64());
    Ok(applied)
}

/// Publishes one event on `parsed/<host>/<log>` (when someone subscribed
/// to it) and indexes it.
fn deliver(index: &mut IndexWriter, live: &Publisher, event: ParsedEvent) -> anyhow::Result<()> {
    if live.any_wanted() {
        let topic = Topic::Parsed {
            host: &event.host,
            log: &event.log,
        }
        .to_string();
        if live.wanted(topic.as_bytes()) {
            if let Ok(json) = serde_json::to_vec(&event) {
                live.send(&[topic.as_bytes(), &json]);
            }
        }
    }
    index.add_event(event)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::Wal;
    use rill_index::{IndexSearcher, SearchRequest};

    /// The meta of `n` lines from `offset` (lines `line N`, 7 bytes with
    /// their newline).
    fn meta(n: usize, offset: usize) -> Vec<u8> {
        format!(r#"{{"host":"h","log":"l","path":"/p","file_id":"1:2:00000003","offset":{offset},"seq":0,"epoch":"e","read_at":"2026-11-22T10:00:00.5Z","lines":{n}}}"#).into_bytes()
    }

    fn count(dir: &std::path::Path) -> u64 {
        let s = IndexSearcher::open(dir).unwrap();
        s.count(&SearchRequest {
            query: "*".into(),
            ..Default::default()
        })
        .unwrap()
    }

    /// Records handed over are indexed and committed by the thread, which
    /// reports the log position its commit holds; at the end it commits
    /// what it was handed last.
    #[test]
    fn handed_records_are_committed_with_the_position_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let index_dir = dir.path().join("index");
        let mut wal = Wal::open(&dir.path().join("wal"), 0).unwrap();
        let ctx = zmq::Context::new();
        let mut indexer = Indexer::start(Parts {
            index: IndexWriter::open(&index_dir).unwrap(),
            events: EventBuilder::with_rules(Default::default()),
            retention: Retention::new(None),
            live: Publisher::connect(&ctx, "inproc://bus").unwrap(),
            applied: 0,
            collector: "here".into(),
            tenures: None,
            purges: None,
        })
        .unwrap();
        let lines = |from: usize, n: usize| {
            (from..from + n)
                .map(|i| format!("line {i}"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        wal.append(0, &meta(3, 0), lines(0, 3).as_bytes()).unwrap();
        wal.append(3, &meta(2, 21), lines(3, 2).as_bytes()).unwrap();
        wal.sync().unwrap();
        let mut end = 0;
        while let Some(rec) = wal.read_next().unwrap() {
            end = rec.end;
            indexer.offer(rec).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while indexer.applied() < end && Instant::now() < deadline {
            indexer.check().unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(indexer.applied(), end, "committed within COMMIT_EVERY");
        assert_eq!(count(&index_dir), 5);
        wal.append(5, &meta(1, 35), b"line 5").unwrap();
        wal.sync().unwrap();
        let last = wal.read_next().unwrap().unwrap();
        let end = last.end;
        indexer.give(last);
        indexer.finish().unwrap();
        assert_eq!(indexer.applied(), end);
        assert_eq!(count(&index_dir), 6);
        let payload = IndexWriter::open(&index_dir)
            .unwrap()
            .payload()
            .map(str::to_owned);
        assert_eq!(payload, Some(format!(r#"{{"wal":{end}}}"#)));
    }
}
