//! The parser process.
//!
//! ```text
//! ingest ROUTER (from every ssh_tap's DEALER) -> [line, LineMeta, lines, Envelope]
//!   -> in order per tap run (ingest.rs: duplicates skipped, gaps asked for again)
//!   -> the write-ahead log (wal.rs), synced; then a receipt to the tap run
//!      (paced: ingest::Pacing): its lines are durable
//! the write-ahead log, read back in order and handed to the index thread
//!   (indexer.rs; at most indexer::HANDED_OVER records waiting)
//!   -> events: per-log multiline rule and format (events.rs, formats/, multiline.rs)
//!   -> IndexWriter::add_event (idempotent on the event's durable name)
//!   -> PUB parsed/<host>/<log> (ParsedEvent JSON) to the bus
//!   commit every COMMIT_EVERY while lines were indexed, with the log
//!   position the index holds everything before (the commit's payload);
//!   the main thread then deletes the log's segments before it
//! retention sweep (retention.rs, index thread); the HTTP search API, kept
//! running (http.rs, main thread); the rules, on what the index committed
//! (rill-rules, its own thread)
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
pub mod indexer;
pub mod ingest;
pub mod live;
pub mod metrics;
pub mod multiline;
pub mod overlap;
pub mod receive;
pub mod retention;
pub mod wal;

use std::time::Duration;

use anyhow::Context;
use rill_bus::socket;
use rill_bus::Publisher;
use rill_config::Config;
use rill_index::IndexWriter;
use rill_process::Shutdown;
use tracing::info;

use crate::events::EventBuilder;
pub use crate::indexer::COMMIT_EVERY;
use crate::indexer::{Indexer, Parts, Payload};
use crate::retention::Retention;

/// The write-ahead log holds at most this much the index has not taken.
pub const WAL_MAX_BYTES: u64 = 1 << 30;
/// Messages taken from the taps per turn of the loop, at most (then the
/// log is synced and receipts go out).
const RECV_PER_TURN: usize = 512;
/// How long the main thread waits for the taps when the index thread has
/// no room for the next record (it looks again for room then).
const ROOM_WAIT: Duration = Duration::from_millis(2);

pub fn run(cfg: &Config, shutdown: &Shutdown) -> anyhow::Result<()> {
    // Before any thread starts (ZeroMQ's, tantivy's, the HTTP API's): they
    // all inherit it.
    rill_process::lower_priority(cfg.index.nice);
    let ctx = zmq::Context::new();
    let dir = cfg.index_dir();
    let index_was_there = dir.join("meta.json").exists();
    let index = IndexWriter::open(&dir)
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
    // In a cluster: lines indexed under their host's tenure, and copies a
    // later tenure holds deleted (overlap.rs).
    let (purges_tx, purges) = std::sync::mpsc::sync_channel(16);
    let overlap = overlap::Overlap::start(cfg, purges_tx);
    let mut indexer = Indexer::start(Parts {
        index,
        events: EventBuilder::new(cfg)?,
        retention: Retention::new(cfg.index.retention),
        live: Publisher::connect(&ctx, &cfg.bus_endpoint())?,
        applied,
        collector: cfg.collector.clone(),
        tenures: cfg
            .cluster
            .as_ref()
            .map(|_| overlap::TenureWatch::new(rill_cluster::tenure::path(&cfg.state_dir))),
        purges: overlap.as_ref().map(|_| purges),
    })?;
    // Rules read what the index commits, beside it (rill-rules).
    let rules = rill_rules::Rules::start(cfg, &ctx)?;
    info!(index = %dir.display(), wal_from = applied, "parser ready");
    // A taken port must not stop indexing: warn loudly and go on without the
    // API, trying again now and then (and if its server ever stopped).
    let mut api = http::ApiKeeper::new(
        cfg.search.listen,
        &dir,
        std::sync::Arc::new(cfg.queries.clone()),
        Some(std::sync::Arc::new(cfg.clone())),
    );
    // Events received over HTTP (and lines of indexed upstreams), appended
    // to the log by this thread; requests wait for the sync after it.
    let (received_tx, received) = std::sync::mpsc::sync_channel(receive::QUEUE);
    let mut receiver = cfg
        .ingest
        .as_ref()
        .map(|i| receive::Keeper::new(cfg, i, &ctx, received_tx.clone()))
        .transpose()?;
    let upstreams = receive::index_upstreams(cfg, &ctx, &received_tx)?;
    let mut synced: Vec<std::sync::mpsc::SyncSender<()>> = Vec::new();
    // Received events wait at most this for the loop.
    let idle = if cfg.ingest.is_some() || cfg.upstreams.values().any(|u| u.index) {
        Duration::from_millis(10)
    } else {
        Duration::from_millis(100)
    };

    // A synced record the index thread had no room for.
    let mut held: Option<wal::Record> = None;
    while !shutdown.requested() {
        let wait = if held.is_some() || wal.unread() {
            ROOM_WAIT
        } else {
            idle
        };
        // Taps' messages into the log, unless it holds enough already.
        if wal.unapplied() < WAL_MAX_BYTES && socket::readable(ingest.socket(), wait)? {
            receive(&mut ingest, &mut wal, RECV_PER_TURN)?;
        } else if wal.unapplied() >= WAL_MAX_BYTES {
            std::thread::sleep(wait);
        }
        if wal.unapplied() < WAL_MAX_BYTES {
            receive::append(&received, &mut wal, &mut synced, receive::QUEUE)
                .context("could not write the write-ahead log")?;
        }
        wal.sync().context("could not write the write-ahead log")?;
        for done in synced.drain(..) {
            let _ = done.send(());
        }
        ingest.committed();
        ingest.tell(false);
        // The log to the index thread, as far as it has room.
        while let Some(rec) = held
            .take()
            .map_or_else(|| wal.read_next(), |r| Ok(Some(r)))?
        {
            if let Err(rec) = indexer.offer(rec) {
                held = Some(rec);
                break;
            }
        }
        indexer.set_more(held.is_some() || wal.unread());
        wal.set_applied(indexer.applied())
            .context("could not trim the write-ahead log")?;
        indexer.check()?;
        api.tick();
        if let Some(r) = &mut receiver {
            r.tick();
        }
    }
    // Senders blocked on a full queue see it gone, then their threads end.
    drop(received);
    drop(receiver);
    drop(upstreams);
    drop(overlap);
    // What the log holds goes into the index before the parser stops.
    wal.sync().context("could not write the write-ahead log")?;
    ingest.committed();
    indexer.set_more(true);
    if let Some(rec) = held.take() {
        indexer.give(rec);
    }
    while let Some(rec) = wal.read_next()? {
        indexer.give(rec);
    }
    indexer.finish()?;
    wal.set_applied(indexer.applied())
        .context("could not trim the write-ahead log")?;
    ingest.tell(true);
    drop(rules);
    info!("parser stopped");
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

#[cfg(test)]
mod tests {
    use rill_proto::LineMeta;

    #[test]
    fn raw_parser_keeps_the_line_and_its_name() {
        let meta: LineMeta = serde_json::from_str(
            r#"{"host":"h","log":"l","path":"/p","file_id":"1:2:00000003","offset":9,"seq":0,"epoch":"e","read_at":"2026-11-22T10:00:00.5Z"}"#,
        )
        .unwrap();
        let mut out = Vec::new();
        crate::events::EventBuilder::with_rules(Default::default()).push(
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
