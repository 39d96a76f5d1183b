//! `rill tail`: live lines from the streams endpoint (in a cluster, from
//! every live member's).
//!
//! The live path drops messages when a subscriber falls behind (every socket
//! has a finite queue); the index does not. `rill tail` counts its own
//! losses from the gaps in each topic's sequence numbers, says so on stderr,
//! and reports them to the supervisor every few seconds, so `rill status`
//! lists every subscriber with what it received and lost.
//!
//! It logs in to the endpoint as the collector's own tools do
//! ([`ClientAuth::for_own_streams`]: the server's CURVE key pair, or the
//! first user of the PLAIN credentials file; both readable by the
//! collector's user only), or as `--key` or `--user` say. A socket monitor
//! watches the handshakes, and `rill tail` ends with an error naming the
//! login it presented (exit status 2, as for every `rill` error) when
//!
//! - the endpoint refused the login, or does not take its mechanism: at
//!   once, since libzmq never tries such a connection again (it would
//!   wait in silence forever);
//! - connections closed during the handshake (a wrong server key) for
//!   [`GIVE_UP_AFTER`], none succeeding; libzmq tries again meanwhile.
//!
//! An endpoint that does not answer at all (no supervisor yet) is waited
//! for, as before.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use rill_bus::keys::{self, public_key_path};
use rill_bus::monitor::{event, Monitor};
use rill_bus::socket::{self, Role};
use rill_bus::{ClientAuth, CurveClient, Subscriber};
use rill_config::Config;
use rill_process::Shutdown;
use rill_proto::{ControlRequest, LineMeta, ParsedEvent, SubscriberReport};
use serde_json::{json, Value};

use crate::emit;

/// How often a subscriber tells the supervisor how it fares.
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// How long handshakes may keep ending unfinished (the connection closed),
/// none succeeding, before `rill tail` gives up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(5);
/// How often the socket monitor is read while messages stream.
const LOOK_AT_HANDSHAKES_EVERY: Duration = Duration::from_millis(100);

/// Print live lines. TOPIC accepts MQTT-style wildcards: line/+/nginx-access, line/web01/#.
///
/// Logs in with the collector's own CURVE key or PLAIN login by default
/// (when this user can read them), or with --key or --user. Exits with an
/// error when the endpoint refuses the login.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub config: PathBuf,
    /// One JSON object per line (topic, host, log, body, offset, ...).
    #[arg(long)]
    pub json: bool,
    /// Log in with this CURVE secret key file (written by `rill keygen
    /// --out FILE`; its public key must be in the server's
    /// streams.curve.authorized_keys_dir).
    #[arg(long, value_name = "FILE", conflicts_with = "user")]
    pub key: Option<PathBuf>,
    /// The server's public key file, for --key. Default: the config's
    /// streams.curve.secret_key_file with .pub added.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub server_key: Option<PathBuf>,
    /// Log in as this PLAIN user; the password comes from --password-env.
    #[arg(long, value_name = "USER", requires = "password_env")]
    pub user: Option<String>,
    /// The environment variable holding --user's password (never give a
    /// password on the command line).
    #[arg(long, value_name = "VAR", requires = "user")]
    pub password_env: Option<String>,
    /// Topics to follow, e.g. line/web01/# (default: line/#).
    #[arg(value_name = "TOPIC")]
    pub topics: Vec<String>,
}

/// How a subscriber logs in to the stream endpoint, and the words that
/// name it when the endpoint refuses it.
#[derive(Debug, Clone)]
pub struct Login {
    pub auth: ClientAuth,
}

impl Login {
    /// The collector's own login ([`ClientAuth::for_own_streams`]).
    pub fn own(cfg: &Config) -> anyhow::Result<Login> {
        let auth = ClientAuth::for_own_streams(cfg).map_err(|e| {
            anyhow!("{e} (the collector's own login to its streams; give --key or --user to log in as someone else)")
        })?;
        Ok(Login { auth })
    }

    /// The login `args` ask for, or the collector's own.
    pub fn from_args(args: &Args, cfg: &Config) -> anyhow::Result<Login> {
        if let Some(key) = &args.key {
            let server_key = match (&args.server_key, &cfg.streams_guard.curve) {
                (Some(k), _) => k.clone(),
                (None, Some(c)) => public_key_path(&c.secret_key_file),
                (None, None) => {
                    return Err(anyhow!(
                        "--key needs --server-key FILE (the server's public key): the config has no streams.curve"
                    ))
                }
            };
            let curve = CurveClient::load(key, &server_key)?;
            return Ok(Login {
                auth: ClientAuth {
                    plain: None,
                    curve: Some(curve),
                },
            });
        }
        if let (Some(user), Some(var)) = (&args.user, &args.password_env) {
            let password = std::env::var(var).map_err(|e| match e {
                std::env::VarError::NotPresent => anyhow!("--password-env {var}: it is not set"),
                std::env::VarError::NotUnicode(_) => {
                    anyhow!("--password-env {var}: expected UTF-8 text")
                }
            })?;
            return Ok(Login {
                auth: ClientAuth {
                    plain: Some((user.clone(), password)),
                    curve: None,
                },
            });
        }
        Login::own(cfg)
    }

    /// The login in words (never a password or a secret key).
    fn shown(&self) -> String {
        match (&self.auth.curve, &self.auth.plain) {
            (Some(c), _) => format!("CURVE key {}", keys::z85(&c.public)),
            (None, Some((user, _))) => format!("PLAIN user {user:?}"),
            (None, None) => "no login".to_owned(),
        }
    }

    /// What to say when the handshakes with `endpoint` failed.
    fn failed(&self, endpoint: &str, failure: Failure) -> String {
        let login = self.shown();
        let (curve, plain) = (self.auth.curve.is_some(), self.auth.plain.is_some());
        let not_allowed = "or this address not in streams.allow?";
        match failure {
            Failure::Refused => {
                let hint = match (curve, plain) {
                    (true, _) => "not in streams.curve.authorized_keys_dir,",
                    (false, true) => "wrong user or password,",
                    (false, false) => "does it want a login (--key or --user),",
                };
                format!("the stream endpoint {endpoint} refused our login ({login}: {hint} {not_allowed})")
            }
            Failure::Mismatch => format!(
                "the security handshake with {endpoint} failed ({login}: does the endpoint want another login? PLAIN, CURVE and none do not mix)"
            ),
            Failure::Unfinished => {
                let hint = if curve {
                    "a wrong --server-key?"
                } else {
                    "does the endpoint want CURVE (--key)?"
                };
                format!(
                    "the stream endpoint {endpoint} closed every connection during the security handshake for {} s ({login}: {hint})",
                    GIVE_UP_AFTER.as_secs()
                )
            }
        }
    }
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
    let login = Login::from_args(&args, &cfg)?;
    let mut topics = args.topics;
    if topics.is_empty() {
        topics.push("line/#".into());
    }
    let shutdown = Shutdown::on_signals()?;
    follow_as(&cfg, &login, &topics, args.json, out, &|| {
        shutdown.requested()
    })
}

/// Prints matching messages until the reader goes away or `stop` says so,
/// logged in as the collector's own tools are.
pub fn follow(
    cfg: &Config,
    patterns: &[String],
    as_json: bool,
    out: &mut impl Write,
    stop: &dyn Fn() -> bool,
) -> anyhow::Result<()> {
    follow_as(cfg, &Login::own(cfg)?, patterns, as_json, out, stop)
}

/// [`follow`] with `login`; an error when its handshakes keep failing.
pub fn follow_as(
    cfg: &Config,
    login: &Login,
    patterns: &[String],
    as_json: bool,
    out: &mut impl Write,
    stop: &dyn Fn() -> bool,
) -> anyhow::Result<()> {
    let ctx = zmq::Context::new();
    let pats: Vec<&str> = patterns.iter().map(String::as_str).collect();
    // A refused connection is never tried again, so its events must not
    // be missed: the monitor is on before the real connect. (Subscriber
    // connects as it is made; its first endpoint is one nobody binds.)
    let placeholder = format!("inproc://rill-tail-not-yet-{}", std::process::id());
    let sub = Subscriber::connect_with(&ctx, &placeholder, &pats, &login.auth)?;
    let monitor = Monitor::watch(&ctx, sub.socket())?;
    socket::connect(sub.socket(), &cfg.streams_endpoint)?;
    let mut members = cfg.cluster.as_ref().map(crate::cluster_tail::Members::new);
    let mut handshakes = Handshakes::default();
    let mut looked = Instant::now();
    let mut reporter = Reporter::connect(&ctx, cfg, patterns)?;
    let mut gaps = Gaps::default();
    let result = (|| {
        while !stop() {
            reporter.tick(&gaps, false);
            if let Some(m) = &mut members {
                m.follow(sub.socket());
            }
            if looked.elapsed() >= LOOK_AT_HANDSHAKES_EVERY {
                looked = Instant::now();
                for (event, _) in monitor.events() {
                    handshakes.see(event, looked);
                }
                if let Some(failure) = handshakes.hopeless(looked) {
                    return Err(anyhow!(login.failed(&cfg.streams_endpoint, failure)));
                }
            }
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

/// How a handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The endpoint's gate answered no (ZAP: address, user or key).
    /// Final: libzmq does not try a refused connection again.
    Refused,
    /// The two ends do not speak the same mechanism (PLAIN, CURVE,
    /// NULL). Final too.
    Mismatch,
    /// The connection closed before the handshake ended (the server could
    /// not read our CURVE hello: a wrong server key). libzmq tries again.
    Unfinished,
}

/// The handshakes the monitor saw: whether `rill tail` can still hope.
#[derive(Debug, Default)]
struct Handshakes {
    /// A connection is made and its handshake has not ended yet.
    pending: bool,
    /// A refusal or a mismatch.
    last: Option<Failure>,
    /// Unfinished handshakes since the last success: the first one's
    /// time and how many.
    unfinished: Option<(Instant, u32)>,
}

impl Handshakes {
    fn see(&mut self, event: u16, now: Instant) {
        let ended = matches!(
            event,
            event::HANDSHAKE_SUCCEEDED
                | event::HANDSHAKE_FAILED_AUTH
                | event::HANDSHAKE_FAILED_PROTOCOL
                | event::HANDSHAKE_FAILED_NO_DETAIL
        );
        match event {
            event::CONNECTED => self.pending = true,
            event::HANDSHAKE_SUCCEEDED => self.unfinished = None,
            event::HANDSHAKE_FAILED_AUTH => self.last = Some(Failure::Refused),
            event::HANDSHAKE_FAILED_PROTOCOL => self.last = Some(Failure::Mismatch),
            event::HANDSHAKE_FAILED_NO_DETAIL => self.unfinished(now),
            event::DISCONNECTED if self.pending => self.unfinished(now),
            _ => {}
        }
        if ended || event == event::DISCONNECTED {
            self.pending = false;
        }
    }

    fn unfinished(&mut self, now: Instant) {
        let (since, n) = self.unfinished.unwrap_or((now, 0));
        self.unfinished = Some((since, n + 1));
    }

    /// The failure to give up on: a refusal or a mismatch at once; an
    /// unfinished handshake when they kept failing for [`GIVE_UP_AFTER`]
    /// with none succeeding (more than one: a single connection closed
    /// mid-handshake, a supervisor restarting, is no verdict).
    fn hopeless(&self, now: Instant) -> Option<Failure> {
        if self.last.is_some() {
            return self.last;
        }
        let (since, n) = self.unfinished?;
        (n > 1 && now.duration_since(since) >= GIVE_UP_AFTER).then_some(Failure::Unfinished)
    }
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
    fn a_refusal_ends_at_once_and_unfinished_handshakes_after_a_while() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut h = Handshakes::default();
        h.see(event::CONNECTED, at(0));
        h.see(event::HANDSHAKE_SUCCEEDED, at(1));
        // A connection lost after its handshake is not a failure.
        h.see(event::DISCONNECTED, at(2));
        h.see(event::DISCONNECTED, at(3));
        assert_eq!(h.hopeless(at(60_000)), None);
        // Closed during the handshake: libzmq tries again; one alone (a
        // restart) is no verdict, several for 5 s are.
        h.see(event::CONNECTED, at(60_000));
        h.see(event::DISCONNECTED, at(60_001));
        assert_eq!(h.hopeless(at(90_000)), None);
        for ms in [90_000, 90_100, 90_300] {
            h.see(event::CONNECTED, at(ms));
            h.see(event::HANDSHAKE_FAILED_NO_DETAIL, at(ms + 1));
            h.see(event::DISCONNECTED, at(ms + 2));
        }
        assert_eq!(h.hopeless(at(90_400)), Some(Failure::Unfinished));
        let mut h = Handshakes::default();
        for ms in [0, 100, 300] {
            h.see(event::CONNECTED, at(ms));
            h.see(event::DISCONNECTED, at(ms + 1));
        }
        assert_eq!(h.hopeless(at(4_000)), None, "not yet");
        h.see(event::CONNECTED, at(4_500));
        h.see(event::HANDSHAKE_SUCCEEDED, at(4_501));
        assert_eq!(h.hopeless(at(20_000)), None, "a success forgives");
        // The gate's no, or mechanisms that do not mix: at once.
        h.see(event::CONNECTED, at(20_000));
        h.see(event::HANDSHAKE_FAILED_AUTH, at(20_001));
        h.see(event::DISCONNECTED, at(20_002));
        assert_eq!(h.hopeless(at(20_003)), Some(Failure::Refused));
        let mut h = Handshakes::default();
        h.see(event::HANDSHAKE_FAILED_PROTOCOL, at(0));
        assert_eq!(h.hopeless(at(0)), Some(Failure::Mismatch));
    }

    #[test]
    fn a_refusal_names_the_login_but_no_secret() {
        let curve = Login {
            auth: ClientAuth {
                plain: None,
                curve: Some(CurveClient {
                    server_public: [1; 32],
                    public: [2; 32],
                    secret: [3; 32],
                }),
            },
        };
        let e = curve.failed("tcp://10.0.0.1:7600", Failure::Refused);
        assert!(
            e.starts_with("the stream endpoint tcp://10.0.0.1:7600 refused our login (CURVE key ")
                && e.contains(&keys::z85(&[2; 32]))
                && !e.contains(&keys::z85(&[3; 32])),
            "{e}"
        );
        let plain = Login {
            auth: ClientAuth {
                plain: Some(("ops".into(), "s3cret".into())),
                curve: None,
            },
        };
        let e = plain.failed("tcp://h:1", Failure::Refused);
        assert!(
            e.contains("PLAIN user \"ops\": wrong user or password") && !e.contains("s3cret"),
            "{e}"
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
