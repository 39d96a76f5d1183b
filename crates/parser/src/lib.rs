//! The parser process.
//!
//! ```text
//! ingest ROUTER (from every ssh_tap's DEALER) -> [line, LineMeta, raw bytes, Envelope]
//!   -> in order per tap run (ingest.rs: duplicates skipped, gaps asked for again)
//!   -> parse (raw: body = line, ts = read_at)
//!   -> IndexWriter::add (idempotent on the line's durable name)
//!   -> PUB parsed/<host>/<log> (ParsedEvent JSON) to the bus
//! commit when lines are pending and COMMIT_EVERY has passed,
//!   then a receipt to every tap run that gained lines
//! ```
//!
//! Commits are what make lines searchable and what lets a tap move its
//! resume point on, so they happen at least every [`COMMIT_EVERY`] while
//! lines arrive, and once more on shutdown.

pub mod ingest;

use std::time::{Duration, Instant};

use anyhow::Context;
use rill_bus::socket::{self, Role};
use rill_config::Config;
use rill_index::{IndexWriter, IndexedLine};
use rill_process::Shutdown;
use rill_proto::{LineMeta, ParsedEvent, Topic};
use tracing::{debug, info};

/// The longest a received line waits before it is committed (searchable).
pub const COMMIT_EVERY: Duration = Duration::from_millis(500);

/// Turns one raw line into an event. `raw` for now: the body is the line
/// (invalid UTF-8 replaced), the timestamp is the time the tap read it.
pub fn parse_raw(meta: &LineMeta, bytes: &[u8]) -> ParsedEvent {
    ParsedEvent {
        ts: meta.read_at,
        host: meta.host.clone(),
        log: meta.log.clone(),
        body: String::from_utf8_lossy(bytes).into_owned(),
        fields: Default::default(),
        file_id: meta.file_id,
        offset: meta.offset,
    }
}

pub fn run(cfg: &Config, shutdown: &Shutdown) -> anyhow::Result<()> {
    let ctx = zmq::Context::new();
    let dir = cfg.index_dir();
    let index_was_there = dir.join("meta.json").exists();
    let mut index = IndexWriter::open(&dir)
        .with_context(|| format!("could not open index {}", dir.display()))?;
    let generation = ingest::generation(&dir, index_was_there)
        .with_context(|| format!("could not name the index in {}", dir.display()))?;
    let mut ingest = ingest::Ingest::bind(&ctx, &cfg.ingest_endpoint(), generation)?;
    let live = socket::open(&ctx, zmq::PUB, Role::Live)?;
    socket::connect(&live, &cfg.bus_endpoint())?;
    info!(index = %dir.display(), "parser ready");

    let mut first_pending: Option<Instant> = None;
    let mut indexed: u64 = 0;
    while !shutdown.requested() {
        let wait = first_pending.map_or(Duration::from_millis(100), |t| {
            COMMIT_EVERY.saturating_sub(t.elapsed())
        });
        if socket::readable(ingest.socket(), wait)? {
            // Drain what is queued without waiting again.
            while let Some(line) = ingest.recv() {
                let event = parse_raw(&line.meta, &line.bytes);
                index.add(&IndexedLine {
                    ts: event.ts,
                    host: event.host.clone(),
                    log: event.log.clone(),
                    path: line.meta.path.clone(),
                    file_id: event.file_id,
                    offset: event.offset,
                    body: event.body.clone(),
                })?;
                first_pending.get_or_insert_with(Instant::now);
                indexed += 1;
                let topic = Topic::Parsed {
                    host: &event.host,
                    log: &event.log,
                }
                .to_string();
                if let Ok(json) = serde_json::to_vec(&event) {
                    let _ = live.send_multipart([topic.as_bytes(), &json], zmq::DONTWAIT);
                }
                if first_pending.is_some_and(|t| t.elapsed() >= COMMIT_EVERY) {
                    break;
                }
            }
        }
        if first_pending.is_some_and(|t| t.elapsed() >= COMMIT_EVERY) {
            let n = index.pending();
            index.commit()?;
            ingest.committed();
            debug!(lines = n, total = indexed, "committed");
            first_pending = None;
        }
    }
    if index.pending() > 0 {
        index.commit()?;
    }
    ingest.committed();
    info!(total = indexed, "parser stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_parser_keeps_the_line_and_its_name() {
        let meta: LineMeta = serde_json::from_str(
            r#"{"host":"h","log":"l","path":"/p","file_id":"1:2:00000003","offset":9,"seq":0,"epoch":"e","read_at":"2026-11-22T10:00:00.5Z"}"#,
        )
        .unwrap();
        let e = parse_raw(&meta, b"caf\xc3\xa9 \xff");
        assert_eq!(e.body, "café \u{fffd}");
        assert_eq!(e.offset, 9);
        assert_eq!(e.ts, meta.read_at);
    }
}
