//! The parser process.
//!
//! ```text
//! ingest ROUTER (from every ssh_tap's DEALER) -> [line, LineMeta, lines, Envelope]
//!   -> in order per tap run (ingest.rs: duplicates skipped, gaps asked for again)
//!   -> the write-ahead log (wal.rs), synced; then a receipt to the tap run
//!      (paced: ingest::Pacing): its lines are durable
//! the write-ahead log, read back in order
//!   -> events: per-log multiline rule and format (events.rs, formats/, multiline.rs)
//!   -> IndexWriter::add_event (idempotent on the event's durable name)
//!   -> PUB parsed/<host>/<log> (ParsedEvent JSON) to the bus
//! commit every COMMIT_EVERY while lines were indexed, with the log position
//!   the index holds everything before (the commit's payload); log segments
//!   before it are deleted
//! retention sweep (retention.rs); the HTTP search API, kept running (http.rs)
//! ```
//!
//! Taps are told their lines are stored once they are in the write-ahead
//! log, so a tap's window empties at the speed of a sequential write and
//! the index takes a backlog at its own pace, committing every
//! [`COMMIT_EVERY`] (which is what makes lines searchable) whatever the
//! taps do. The log holds at most [`WAL_MAX_BYTES`] the index has not
//! taken; beyond, the parser stops reading the taps' messages until the
//! index catches up, and their windows, then the files on the servers,
//! hold the rest. After a crash the index goes on from the position stored
//! with its last commit; lines it had indexed since are indexed again
//! (idempotent). Multiline events still open are completed after their
//! `flush_after` idle time; the position stored never passes the first
//! line of one still open.

pub mod events;
pub mod formats;
pub mod http;
pub mod ingest;
pub mod multiline;
pub mod retention;
pub mod wal;

use std::time::{Duration, Instant};

use anyhow::Context;
use rill_bus::socket;
use rill_bus::Publisher;
use rill_config::Config;
use rill_index::IndexWriter;
use rill_process::Shutdown;
use rill_proto::{LineMeta, ParsedEvent, Topic};
use tracing::{debug, info, warn};

use crate::events::EventBuilder;
use crate::retention::Retention;

/// The longest a received line waits before it is committed (searchable).
pub const COMMIT_EVERY: Duration = Duration::from_millis(500);
/// Lines indexed and not committed when the log has nothing more: a
/// backlog ended, and its last lines are committed now rather than up to
/// COMMIT_EVERY later (a live tail never has this many waiting).
const BACKLOG_END: usize = 10_000;
/// The write-ahead log holds at most this much the index has not taken.
pub const WAL_MAX_BYTES: u64 = 1 << 30;
/// Messages taken from the taps per turn of the loop, at most (then the
/// log is synced, receipts go out and the index takes its share).
const RECV_PER_TURN: usize = 512;
/// ... and between two records the index takes from the log.
const RECV_PER_RECORD: usize = 64;
/// The index takes lines from the log for at most this long per turn.
const INDEX_PER_TURN: Duration = Duration::from_millis(10);

/// The write-ahead log position stored with each commit.
#[derive(serde::Serialize, serde::Deserialize)]
struct Payload {
    wal: u64,
}

pub fn run(cfg: &Config, shutdown: &Shutdown) -> anyhow::Result<()> {
    // Before any thread starts (ZeroMQ's, tantivy's, the HTTP API's): they
    // all inherit it.
    rill_process::lower_priority(cfg.index.nice);
    let ctx = zmq::Context::new();
    let dir = cfg.index_dir();
    let index_was_there = dir.join("meta.json").exists();
    let mut index = IndexWriter::open(&dir)
        .with_context(|| format!("could not open index {}", dir.display()))?;
    let generation = ingest::generation(&dir, index_was_there)
        .with_context(|| format!("could not name the index in {}", dir.display()))?;
    let applied = index
        .payload()
        .and_then(|p| serde_json::from_str::<Payload>(p).ok())
        .map_or(0, |p| p.wal);
    let wal_dir = dir.join("wal");
    let mut wal = wal::Wal::open(&wal_dir, applied)
        .with_context(|| format!("could not open the write-ahead log {}", wal_dir.display()))?;
    let mut ingest = ingest::Ingest::bind(
        &ctx,
        &cfg.ingest_endpoint(),
        generation,
        ingest::Pacing::for_window(cfg.tap.max_unacked_lines, cfg.tap.max_unacked_bytes),
    )?;
    let mut live = Publisher::connect(&ctx, &cfg.bus_endpoint())?;
    info!(index = %dir.display(), wal_from = applied, "parser ready");
    let mut events = EventBuilder::new(cfg)?;
    let mut parsed: Vec<ParsedEvent> = Vec::new();
    let mut retention = Retention::new(cfg.index.retention);
    // A taken port must not stop indexing: warn loudly and go on without the
    // API, trying again now and then (and if its server ever stopped).
    let mut api = http::ApiKeeper::new(cfg.search.listen, &dir);

    let mut first_pending: Option<Instant> = None;
    let mut indexed: u64 = 0;
    while !shutdown.requested() {
        let wait = if wal.unread() {
            Duration::ZERO
        } else {
            first_pending.map_or(Duration::from_millis(100), |t| {
                COMMIT_EVERY.saturating_sub(t.elapsed())
            })
        };
        // Taps' messages into the log, unless it holds enough already.
        if wal.unapplied() < WAL_MAX_BYTES && socket::readable(ingest.socket(), wait)? {
            receive(&mut ingest, &mut wal, RECV_PER_TURN)?;
        } else if wait > Duration::ZERO {
            std::thread::sleep(wait.min(Duration::from_millis(100)));
        }
        wal.sync().context("could not write the write-ahead log")?;
        ingest.committed();
        live.hear();
        ingest.tell(false);
        // The log into the index, for a while, taking what the taps send
        // meanwhile (a tap's window empties only as fast as it is logged).
        let started = Instant::now();
        while started.elapsed() < INDEX_PER_TURN {
            if wal.unapplied() < WAL_MAX_BYTES {
                receive(&mut ingest, &mut wal, RECV_PER_RECORD)?;
            }
            let Some(rec) = wal.read_next()? else { break };
            index_record(&mut events, &rec, &mut parsed);
            for event in parsed.drain(..) {
                deliver(&mut index, &live, event)?;
                first_pending.get_or_insert_with(Instant::now);
                indexed += 1;
            }
        }
        events.flush_idle(Instant::now(), &mut parsed);
        for event in parsed.drain(..) {
            deliver(&mut index, &live, event)?;
            first_pending.get_or_insert_with(Instant::now);
            indexed += 1;
        }
        // Every COMMIT_EVERY, and at once when a backlog was all taken.
        let backlog_done = !wal.unread() && index.pending() >= BACKLOG_END;
        if first_pending.is_some_and(|t| t.elapsed() >= COMMIT_EVERY || backlog_done) {
            let n = index.pending();
            commit(&mut index, &mut wal, &events)?;
            debug!(lines = n, total = indexed, "committed");
            first_pending = None;
        }
        retention.tick(&mut index)?;
        api.tick();
    }
    // What the log holds goes into the index before the parser stops.
    while let Some(rec) = wal.read_next()? {
        index_record(&mut events, &rec, &mut parsed);
        for event in parsed.drain(..) {
            deliver(&mut index, &live, event)?;
        }
    }
    events.flush_all(&mut parsed);
    for event in parsed.drain(..) {
        deliver(&mut index, &live, event)?;
    }
    commit(&mut index, &mut wal, &events)?;
    ingest.tell(true);
    info!(total = indexed, "parser stopped");
    Ok(())
}

/// Up to `n` waiting messages of the taps into the log (not synced yet).
fn receive(ingest: &mut ingest::Ingest, wal: &mut wal::Wal, n: usize) -> anyhow::Result<()> {
    for _ in 0..n {
        let Some(m) = ingest.recv() else { break };
        wal.append(m.seq, &m.meta_json, &m.lines)
            .context("could not write the write-ahead log")?;
    }
    Ok(())
}

/// One record of the log through the events builder. Its lines carry the
/// record's log position as their `seq`, so an open multiline event names
/// the record to read again after a crash.
fn index_record(events: &mut EventBuilder, rec: &wal::Record, out: &mut Vec<ParsedEvent>) {
    let Ok(mut meta) = serde_json::from_slice::<LineMeta>(&rec.meta) else {
        warn!(
            at = rec.pos,
            "a record of the write-ahead log has a bad meta; skipped"
        );
        return;
    };
    meta.seq = rec.pos;
    for (line, bytes) in meta.split(&rec.lines) {
        events.push(line, bytes, out);
    }
}

/// Commits the index with the log position it holds everything before (the
/// record of the first line of a multiline event still open, else the next
/// record to read), then drops the log's segments before it.
fn commit(
    index: &mut IndexWriter,
    wal: &mut wal::Wal,
    events: &EventBuilder,
) -> anyhow::Result<()> {
    let applied = events
        .first_pending_seq_any()
        .map_or(wal.read_pos(), |s| s.min(wal.read_pos()));
    index.set_payload(serde_json::to_string(&Payload { wal: applied })?);
    index.commit()?;
    wal.set_applied(applied)
        .context("could not trim the write-ahead log")?;
    Ok(())
}

/// Publishes one event on `parsed/<host>/<log>` (when someone subscribed
/// to it) and indexes it.
fn deliver(index: &mut IndexWriter, live: &Publisher, event: ParsedEvent) -> anyhow::Result<()> {
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
    index.add_event(event)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_proto::LineMeta;

    #[test]
    fn raw_parser_keeps_the_line_and_its_name() {
        let meta: LineMeta = serde_json::from_str(
            r#"{"host":"h","log":"l","path":"/p","file_id":"1:2:00000003","offset":9,"seq":0,"epoch":"e","read_at":"2026-11-22T10:00:00.5Z"}"#,
        )
        .unwrap();
        let mut out = Vec::new();
        EventBuilder::with_rules(Default::default()).push(
            meta.clone(),
            b"caf\xc3\xa9 \xff",
            &mut out,
        );
        let e = &out[0];
        assert_eq!(e.body, "café \u{fffd}");
        assert_eq!((e.offset, e.end_offset), (9, 17));
        assert_eq!(e.ts, meta.read_at);
    }
}
