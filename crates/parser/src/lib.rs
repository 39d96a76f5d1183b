//! The parser process.
//!
//! ```text
//! ingest ROUTER (from every ssh_tap's DEALER) -> [line, LineMeta, raw bytes, Envelope]
//!   -> in order per tap run (ingest.rs: duplicates skipped, gaps asked for again)
//!   -> events: per-log multiline rule and format (events.rs, formats/, multiline.rs)
//!   -> IndexWriter::add_event (idempotent on the event's durable name)
//!   -> PUB parsed/<host>/<log> (ParsedEvent JSON) to the bus
//! commit when lines are pending and COMMIT_EVERY has passed, or half a
//!   tap's window (`tap.max_unacked_lines`) arrived since the last commit,
//!   then a receipt to every tap run (paced: ingest::Pacing): all its lines
//!   before the first one still held in an open multiline event are in the
//!   index
//! retention sweep (retention.rs); the HTTP search API, kept running (http.rs)
//! ```
//!
//! Commits are what make lines searchable and what lets a tap move its
//! resume point on, so they happen at least every [`COMMIT_EVERY`] while
//! lines arrive, and once more on shutdown. A tap stops reading when its
//! window of unconfirmed lines is full, so a commit is also due as soon as
//! half a window has arrived: in a burst the tap's speed is then the
//! indexer's, not `max_unacked_lines` per `COMMIT_EVERY`. Multiline events still open are
//! completed after their `flush_after` idle time.

pub mod events;
pub mod formats;
pub mod http;
pub mod ingest;
pub mod multiline;
pub mod retention;

use std::time::{Duration, Instant};

use anyhow::Context;
use rill_bus::socket::{self, Role};
use rill_config::Config;
use rill_index::IndexWriter;
use rill_process::Shutdown;
use rill_proto::{ParsedEvent, Topic};
use tracing::{debug, info};

use crate::events::EventBuilder;
use crate::retention::Retention;

/// The longest a received line waits before it is committed (searchable).
pub const COMMIT_EVERY: Duration = Duration::from_millis(500);

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
    let mut ingest = ingest::Ingest::bind(
        &ctx,
        &cfg.ingest_endpoint(),
        generation,
        ingest::Pacing::for_window(cfg.tap.max_unacked_lines),
    )?;
    let live = socket::open(&ctx, zmq::PUB, Role::LiveBus)?;
    socket::connect(&live, &cfg.bus_endpoint())?;
    info!(index = %dir.display(), "parser ready");
    let mut events = EventBuilder::new(cfg)?;
    let mut parsed: Vec<ParsedEvent> = Vec::new();
    let mut retention = Retention::new(cfg.index.retention);
    // A taken port must not stop indexing: warn loudly and go on without the
    // API, trying again now and then (and if its server ever stopped).
    let mut api = http::ApiKeeper::new(cfg.search.listen, &dir);

    let mut first_pending: Option<Instant> = None;
    let mut indexed: u64 = 0;
    let commit_lines = (cfg.tap.max_unacked_lines / 2).max(1) as u64;
    let mut received: u64 = 0;
    let due = |first_pending: Option<Instant>, received: u64| {
        received >= commit_lines || first_pending.is_some_and(|t| t.elapsed() >= COMMIT_EVERY)
    };
    while !shutdown.requested() {
        let wait = first_pending.map_or(Duration::from_millis(100), |t| {
            COMMIT_EVERY.saturating_sub(t.elapsed())
        });
        if socket::readable(ingest.socket(), wait)? {
            // Drain what is queued without waiting again.
            while let Some(line) = ingest.recv() {
                received += 1;
                // Inside the parser a line's `seq` is its durable number (the
                // one receipts count), so open multiline events can hold
                // receipts back (EventBuilder::first_pending_seq).
                let mut meta = line.meta;
                meta.seq = line.seq;
                events.push(meta, &line.bytes, &mut parsed);
                for event in parsed.drain(..) {
                    deliver(&mut index, &live, event)?;
                    first_pending.get_or_insert_with(Instant::now);
                    indexed += 1;
                }
                if due(first_pending, received) {
                    break;
                }
            }
        }
        events.flush_idle(Instant::now(), &mut parsed);
        for event in parsed.drain(..) {
            deliver(&mut index, &live, event)?;
            first_pending.get_or_insert_with(Instant::now);
            indexed += 1;
        }
        if first_pending.is_some() && due(first_pending, received) {
            received = 0;
            let n = index.pending();
            index.commit()?;
            ingest.committed(|epoch| events.first_pending_seq(epoch));
            debug!(lines = n, total = indexed, "committed");
            first_pending = None;
        }
        ingest.tell(false);
        retention.tick(&mut index)?;
        api.tick();
    }
    events.flush_all(&mut parsed);
    for event in parsed.drain(..) {
        deliver(&mut index, &live, event)?;
    }
    if index.pending() > 0 {
        index.commit()?;
    }
    ingest.committed(|_| None);
    ingest.tell(true);
    info!(total = indexed, "parser stopped");
    Ok(())
}

/// Publishes one event on `parsed/<host>/<log>` and indexes it.
fn deliver(index: &mut IndexWriter, live: &zmq::Socket, event: ParsedEvent) -> anyhow::Result<()> {
    let topic = Topic::Parsed {
        host: &event.host,
        log: &event.log,
    }
    .to_string();
    if let Ok(json) = serde_json::to_vec(&event) {
        let _ = live.send_multipart([topic.as_bytes(), &json], zmq::DONTWAIT);
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
