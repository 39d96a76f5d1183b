//! `rill tail`: live lines from the streams endpoint.
//!
//! The live path drops messages when a subscriber falls behind (every socket
//! has a finite queue); the index does not. `rill tail` counts its own
//! losses from the gaps in each topic's sequence numbers, says so on stderr,
//! and reports them to the supervisor every few seconds, so `rill status`
//! lists every subscriber with what it received and lost.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rill_bus::socket::{self, Role};
use rill_bus::Subscriber;
use rill_config::Config;
use rill_process::Shutdown;
use rill_proto::{ControlRequest, LineMeta, ParsedEvent, SubscriberReport};
use serde_json::{json, Value};

use crate::emit;

/// How often a subscriber tells the supervisor how it fares.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// Print live lines. TOPIC accepts MQTT-style wildcards: line/+/nginx-access, line/web01/#.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub config: PathBuf,
    /// One JSON object per line (topic, host, log, body, offset, ...).
    #[arg(long)]
    pub json: bool,
    /// Topics to follow, e.g. line/web01/# (default: line/#).
    #[arg(value_name = "TOPIC")]
    pub topics: Vec<String>,
}

/// A subscriber's count of what it received and lost, from the gaps in each
/// topic's sequence numbers (one count per tap run: a restarted tap starts
/// again at 0).
#[derive(Debug, Default)]
pub struct Gaps {
    next: HashMap<(String, String), u64>,
    pub received: u64,
    pub dropped: u64,
}

impl Gaps {
    /// A message of `lines` lines, the first numbered `seq`.
    pub fn see(&mut self, topic: &str, epoch: &str, seq: u64, lines: u64) {
        self.received += lines;
        let key = (topic.to_owned(), epoch.to_owned());
        if let Some(&want) = self.next.get(&key) {
            if seq > want {
                self.dropped += seq - want;
            }
        }
        self.next.insert(key, seq + lines);
    }
}

/// Follows `args.topics` (every line when none is given) until SIGTERM or
/// SIGINT, or until the reader goes away.
pub fn run(args: Args, out: &mut impl Write) -> anyhow::Result<()> {
    let cfg = Config::load_for_client(&args.config)?;
    let mut topics = args.topics;
    if topics.is_empty() {
        topics.push("line/#".into());
    }
    let shutdown = Shutdown::on_signals()?;
    follow(&cfg, &topics, args.json, out, &|| shutdown.requested())
}

/// Prints matching messages until the reader goes away or `stop` says so.
pub fn follow(
    cfg: &Config,
    patterns: &[String],
    as_json: bool,
    out: &mut impl Write,
    stop: &dyn Fn() -> bool,
) -> anyhow::Result<()> {
    let ctx = zmq::Context::new();
    let pats: Vec<&str> = patterns.iter().map(String::as_str).collect();
    let sub = Subscriber::connect(&ctx, &cfg.streams_endpoint, &pats)?;
    let mut reporter = Reporter::connect(&ctx, cfg, patterns)?;
    let mut gaps = Gaps::default();
    let result = (|| {
        while !stop() {
            reporter.tick(&gaps, false);
            let Some(msg) = sub.recv(Duration::from_millis(200))? else {
                out.flush().ok();
                continue;
            };
            if msg.topic.starts_with("line/") {
                if let Some(m) = msg
                    .frames
                    .first()
                    .and_then(|f| serde_json::from_slice::<LineMeta>(f).ok())
                {
                    gaps.see(&msg.topic, &m.epoch, m.seq, m.lines);
                }
            }
            let text = render(&msg.topic, &msg.frames, as_json);
            if !emit(out, &text)? {
                return Ok(());
            }
        }
        Ok(())
    })();
    reporter.tick(&gaps, true);
    if gaps.dropped > 0 {
        eprintln!(
            "rill tail: {} of {} lines were dropped because this subscriber fell behind (the index has every line)",
            gaps.dropped,
            gaps.received + gaps.dropped
        );
    }
    result
}

/// Tells the supervisor (if one answers) and stderr how a subscriber fares.
struct Reporter {
    socket: zmq::Socket,
    report: SubscriberReport,
    last: Option<Instant>,
    dropped_said: u64,
}

impl Reporter {
    fn connect(ctx: &zmq::Context, cfg: &Config, topics: &[String]) -> anyhow::Result<Self> {
        let s = socket::open(ctx, zmq::DEALER, Role::Control)?;
        s.set_linger(0)?;
        socket::connect(&s, &cfg.control_endpoint())?;
        Ok(Reporter {
            socket: s,
            report: SubscriberReport {
                id: format!("rill-tail-{}", std::process::id()),
                topics: topics.to_vec(),
                received: 0,
                dropped: 0,
            },
            last: None,
            dropped_said: 0,
        })
    }

    fn tick(&mut self, gaps: &Gaps, now: bool) {
        // Replies are not needed; drain them.
        while self.socket.recv_bytes(zmq::DONTWAIT).is_ok() {}
        if !now && self.last.is_some_and(|t| t.elapsed() < REPORT_EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        self.report.received = gaps.received;
        self.report.dropped = gaps.dropped;
        if let Ok(json) = serde_json::to_vec(&ControlRequest::SubscriberReport(self.report.clone()))
        {
            // The empty frame is what a REQ socket would send first.
            let _ = self
                .socket
                .send_multipart([&b""[..], &json[..]], zmq::DONTWAIT);
        }
        if !now && gaps.dropped > self.dropped_said {
            eprintln!(
                "rill tail: {} lines dropped so far (this subscriber fell behind; the index has every line)",
                gaps.dropped
            );
            self.dropped_said = gaps.dropped;
        }
    }
}

/// One message as printed: `host log: line` or a JSON object, one per
/// line (a `line/` message may hold several).
pub fn render(topic: &str, frames: &[Vec<u8>], as_json: bool) -> String {
    let kind = topic.split('/').next().unwrap_or("");
    match (kind, frames) {
        ("line", [meta, body, ..]) => match serde_json::from_slice::<LineMeta>(meta) {
            Ok(m) => {
                let lines: Vec<String> = m
                    .split(body)
                    .map(|(m, body)| {
                        let body = String::from_utf8_lossy(body);
                        if as_json {
                            json!({
                                "topic": topic, "host": m.host, "log": m.log, "body": body,
                                "offset": m.offset, "file_id": m.file_id, "path": m.path,
                                "seq": m.seq, "epoch": m.epoch, "read_at": m.read_at, "partial": m.partial,
                            })
                            .to_string()
                        } else {
                            format!("{} {}: {body}", m.host, m.log)
                        }
                    })
                    .collect();
                lines.join("\n")
            }
            Err(_) => fallback(topic, frames, as_json),
        },
        ("parsed", [event, ..]) => match serde_json::from_slice::<ParsedEvent>(event) {
            Ok(e) if as_json => {
                let mut v = serde_json::to_value(&e).unwrap_or(Value::Null);
                v["topic"] = Value::from(topic);
                v.to_string()
            }
            Ok(e) => format!("{} {}: {}", e.host, e.log, e.body),
            Err(_) => fallback(topic, frames, as_json),
        },
        _ => fallback(topic, frames, as_json),
    }
}

/// ping/, status/ and anything unknown: the topic and the JSON as it came.
fn fallback(topic: &str, frames: &[Vec<u8>], as_json: bool) -> String {
    let payload = frames
        .first()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .unwrap_or_default();
    if as_json {
        let value = serde_json::from_str::<Value>(&payload).unwrap_or(Value::String(payload));
        json!({ "topic": topic, "message": value }).to_string()
    } else {
        format!("{topic}: {payload}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: &str = r#"{"host":"web01","log":"nginx","path":"/p","file_id":"1:2:00000003","offset":42,"seq":1,"epoch":"e","read_at":"2026-11-22T10:00:00Z"}"#;

    #[test]
    fn plain_lines_read_host_log_colon_line() {
        let s = render(
            "line/web01/nginx",
            &[META.into(), b"GET / 200".to_vec()],
            false,
        );
        assert_eq!(s, "web01 nginx: GET / 200");
    }

    #[test]
    fn json_lines_carry_the_documented_fields() {
        let s = render("line/web01/nginx", &[META.into(), b"GET /".to_vec()], true);
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["topic"], "line/web01/nginx");
        assert_eq!(v["host"], "web01");
        assert_eq!(v["log"], "nginx");
        assert_eq!(v["body"], "GET /");
        assert_eq!(v["offset"], 42);
    }

    #[test]
    fn gaps_in_a_topics_numbers_are_counted_per_tap_run() {
        let mut g = Gaps::default();
        for seq in [0, 1, 5, 6] {
            g.see("line/a/x", "run1", seq, 1);
        }
        // Another topic, and a restarted tap starting at 0 again: no gap.
        g.see("line/a/y", "run1", 3, 1);
        g.see("line/a/x", "run2", 0, 1);
        assert_eq!((g.received, g.dropped), (6, 3));
        // Messages of several lines: 7..=9, then 10 and 11 lost.
        g.see("line/a/x", "run1", 7, 3);
        g.see("line/a/x", "run1", 12, 2);
        assert_eq!((g.received, g.dropped), (11, 5));
    }

    #[test]
    fn a_message_of_several_lines_prints_each_line() {
        let meta = META.replace(r#""seq":1"#, r#""seq":1,"lines":2"#);
        let s = render(
            "line/web01/nginx",
            &[meta.clone().into(), b"GET /a\nGET /b".to_vec()],
            false,
        );
        assert_eq!(s, "web01 nginx: GET /a\nweb01 nginx: GET /b");
        let s = render(
            "line/web01/nginx",
            &[meta.into(), b"GET /a\nGET /b".to_vec()],
            true,
        );
        let v: Vec<Value> = s
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            (
                v[1]["body"].as_str(),
                v[1]["offset"].as_u64(),
                v[1]["seq"].as_u64()
            ),
            (Some("GET /b"), Some(49), Some(2))
        );
    }

    #[test]
    fn unknown_topics_are_shown_not_dropped() {
        assert_eq!(
            render("ping/h", &[br#"{"up":true}"#.to_vec()], false),
            r#"ping/h: {"up":true}"#
        );
    }
}
