//! Where a reader's lines go: live on `line/<host>/<log>` (PUB, never
//! blocking), and to the index through the durable window.

use std::collections::HashMap;

use chrono::Utc;
use rill_bus::socket::{self, Role};
use rill_config::{Config, Log};
use rill_proto::{FileId, LineMeta, Topic};

use crate::checkpoint::Verify;
use crate::durable::Durable;
use crate::lines::{Line, Lines};
use crate::live_marks::LiveMarks;

/// The tap's two outputs: the live stream and the durable path to the parser.
pub struct Outputs {
    host: String,
    pub live: zmq::Socket,
    /// The durable window; its run id is the `epoch` of every line.
    pub durable: Durable,
    /// Per log: the next live sequence number of its topic.
    seq: HashMap<usize, u64>,
    /// How far each file was published live, by this run or an earlier one.
    pub marks: LiveMarks,
    /// This collector's id, the `collector` of every line.
    pub collector: String,
}

impl Outputs {
    pub fn connect(ctx: &zmq::Context, cfg: &Config, host: &str) -> anyhow::Result<Self> {
        let live = socket::open(ctx, zmq::PUB, Role::LiveBus)?;
        socket::connect(&live, &cfg.bus_endpoint())?;
        let window = (cfg.tap.max_unacked_lines, cfg.tap.max_unacked_bytes);
        let durable = Durable::connect(ctx, &cfg.ingest_endpoint(), host, window)?;
        let mut out = Outputs::new(host, live, durable);
        out.collector = cfg.collector.clone();
        out.marks = LiveMarks::open(&cfg.checkpoints_dir().join(format!("{host}.live")));
        Ok(out)
    }

    /// Outputs on sockets already open: `live` a PUB, `durable` connected
    /// to the parser.
    pub fn new(host: &str, live: zmq::Socket, durable: Durable) -> Self {
        Outputs {
            host: host.to_owned(),
            live,
            durable,
            seq: HashMap::new(),
            marks: LiveMarks::none(),
            collector: String::new(),
        }
    }

    /// Publishes lines of log number `i`, read in one go (one read, or a
    /// backlog's several) from one file: a
    /// live reader's on their live topic (never blocks; a full subscriber
    /// queue drops), one message for each run of consecutive complete lines
    /// (a line sent partial goes alone); and offers every line to the
    /// durable path (in messages of consecutive lines too). A catch-up reader's lines go to the
    /// latter only.
    pub fn publish(
        &mut self,
        i: usize,
        log: &Log,
        (file_id, verify): (FileId, Verify),
        lines: &Lines,
        read_at: chrono::DateTime<Utc>,
        source: Source,
    ) -> anyhow::Result<()> {
        let (host, epoch) = (&self.host, self.durable.epoch().to_owned());
        let collector = &self.collector;
        let meta = |line: &Line, seq: u64, lines: u64| LineMeta {
            host: host.clone(),
            log: log.name.clone(),
            path: log.path.clone(),
            file_id,
            offset: line.offset,
            seq,
            lines,
            epoch: epoch.clone(),
            read_at,
            partial: line.partial,
            collector: collector.clone(),
            ndjson: false,
            via: Vec::new(),
        };
        if source != Source::CatchUp {
            let topic = Topic::Line {
                host: &self.host,
                log: &log.name,
            }
            .to_string();
            let seq = self.seq.entry(i).or_insert(0);
            let mut k = 0;
            while k < lines.len() {
                // Published by an earlier run of the tap: the index only.
                if self
                    .marks
                    .published(&log.name, file_id, lines.get(k).offset)
                {
                    k += 1;
                    continue;
                }
                let n = run_length(lines, k);
                let json = serde_json::to_vec(&meta(&lines.get(k), *seq, n as u64))?;
                let body = lines.joined(k..k + n);
                self.marks
                    .mark(&log.name, file_id, lines.get(k + n - 1).end());
                let _ = self
                    .live
                    .send_multipart([topic.as_bytes(), &json[..], body], zmq::DONTWAIT);
                *seq += n as u64;
                k += n;
            }
        }
        let json = |line: &Line, n: u64| {
            serde_json::to_vec(&meta(line, 0, n)).expect("line meta serialises")
        };
        // A catch-up's lines and records are taken whatever the window:
        // their readers read only while it has room.
        self.durable
            .offer((i, file_id, verify), lines, source != Source::Live, json);
        Ok(())
    }
}

/// How many lines from line `from` of `lines` go in one live message:
/// complete lines, each starting right after the previous one's newline; a
/// partial line alone.
fn run_length(lines: &Lines, from: usize) -> usize {
    let mut n = 1;
    while from + n < lines.len() && lines.follows(from + n) {
        n += 1;
    }
    n
}

/// Which kind of reader read a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A reader following a file as it is written (or finishing an old one):
    /// its lines go live, and to the index when the window has room.
    Live,
    /// A reader going back over a gap for the index alone.
    CatchUp,
    /// A reader of records that cannot be read again by offset (journal
    /// entries): published live, and always taken by the durable path, as
    /// it reads only while the window has room (no gap is ever left).
    Records,
}
