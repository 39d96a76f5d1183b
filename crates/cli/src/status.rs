//! `rill status`: ask the supervisor. Its report as text, one line per
//! host, log, subscriber, refusals of the stream endpoint's guard,
//! upstream collector, the search API and child process; `--json` prints
//! it as it came.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use rill_config::Config;
use rill_proto::StatusReport;

use crate::emit;

/// How long to wait for the supervisor's answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// Show each host's connection and each log's progress and errors.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub config: PathBuf,
    #[arg(long)]
    pub json: bool,
}

pub fn fetch(cfg: &Config) -> anyhow::Result<StatusReport> {
    let ctx = zmq::Context::new();
    rill_bus::control::status(&ctx, &cfg.control_endpoint(), ANSWER_WITHIN).map_err(|e| {
        if e.contains("did not answer") {
            anyhow!(
                "{e}; is `supervisor --config {}` running?",
                cfg.file.display()
            )
        } else {
            anyhow!(e)
        }
    })
}

/// `rill status`: loads the config and prints the supervisor's report.
pub fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
    let cfg = Config::load_for_client(&args.config)?;
    let mut report = fetch(&cfg)?;
    if let Some(settings) = &cfg.cluster {
        from_members(settings, &mut report);
    }
    // The rules, from their store (the supervisor does not run them).
    let rules = if cfg.rules.is_empty() {
        Vec::new()
    } else {
        rill_rules::summary(&cfg)?
    };
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("rules".into(), rules.into());
        }
        emit(out, &serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    emit(out, &render(&report))?;
    for r in &rules {
        let f = &r["firings"];
        let mut line = format!(
            "rule {}: {}, {} lines matched, firings: {} pending, {} running, {} success, {} failure, {} timeout",
            r["rule"].as_str().unwrap_or_default(),
            r["kind"].as_str().unwrap_or_default(),
            r["matched"],
            f["pending"],
            f["running"],
            f["success"],
            f["failure"],
            f["timeout"],
        );
        if r["queue_full"] == true {
            line.push_str("; QUEUE FULL: its lines wait");
        }
        if let Some(e) = r["error"].as_str() {
            line.push_str(&format!("; NOT RUN: {e}"));
        }
        emit(out, &line)?;
    }
    Ok(())
}

/// How long another member has to answer for its hosts.
const MEMBER_WITHIN: Duration = Duration::from_secs(3);

/// In a cluster: each host another member follows gets that member's own
/// report of it (connection, each log's progress and lag), asked of its
/// search API (`GET /status`, with `RILL_SEARCH_TOKEN`), all members at
/// once. A member that cannot be asked is said in the host's `error`.
fn from_members(settings: &rill_config::cluster::ClusterSettings, report: &mut StatusReport) {
    let Some(me) = report.cluster.as_ref().map(|c| c.member.clone()) else {
        return;
    };
    let owners: std::collections::BTreeSet<String> = report
        .hosts
        .iter()
        .filter_map(|h| h.owner.clone())
        .filter(|o| *o != me)
        .collect();
    if owners.is_empty() {
        return;
    }
    let apis: std::collections::BTreeMap<String, Option<String>> =
        match rill_cluster::member::live_members(settings) {
            Ok(ms) => ms.into_iter().map(|m| (m.member, m.search)).collect(),
            Err(e) => {
                for h in report
                    .hosts
                    .iter_mut()
                    .filter(|h| h.owner.as_ref().is_some_and(|o| *o != me))
                {
                    h.error = Some(format!("its member's report not read: etcd: {e}"));
                }
                return;
            }
        };
    let token = std::env::var("RILL_SEARCH_TOKEN").ok();
    let reports: Vec<(String, Result<StatusReport, String>)> = std::thread::scope(|s| {
        let asks: Vec<_> = owners
            .iter()
            .map(|o| {
                let (known, api) = (apis.contains_key(o), apis.get(o).cloned().flatten());
                let token = token.as_deref();
                s.spawn(move || {
                    let r = match api {
                        None if !known => Err("not a live member".to_owned()),
                        None => Err("it advertises no search API".to_owned()),
                        Some(url) => {
                            rill_cluster::search::get(&url, "status", token, MEMBER_WITHIN)
                                .and_then(|v| {
                                    serde_json::from_value(v)
                                        .map_err(|e| format!("not a status report: {e}"))
                                })
                        }
                    };
                    (o.clone(), r)
                })
            })
            .collect();
        asks.into_iter().filter_map(|t| t.join().ok()).collect()
    });
    for (member, r) in reports {
        for h in report
            .hosts
            .iter_mut()
            .filter(|h| h.owner.as_deref() == Some(member.as_str()))
        {
            match &r {
                Ok(theirs) => {
                    if let Some(t) = theirs
                        .hosts
                        .iter()
                        .find(|t| t.host == h.host && t.owner.as_deref() == Some(member.as_str()))
                    {
                        *h = t.clone();
                    }
                }
                Err(e) => h.error = Some(format!("member {member}'s report not read: {e}")),
            }
        }
    }
}

pub fn render(r: &StatusReport) -> String {
    let mut s = String::new();
    if let Some(c) = &r.cluster {
        s.push_str(&format!(
            "cluster {} as {}: {} live members ({})",
            c.cluster,
            c.member,
            c.members.len(),
            c.members.join(", ")
        ));
        if let Some(t) = &c.trouble {
            s.push_str(&format!(", ETCD TROUBLE: {t}"));
        }
        s.push('\n');
    }
    for h in &r.hosts {
        if let Some(c) = &r.cluster {
            match &h.owner {
                Some(o) if *o == c.member => {}
                // Its member's report was read: shown as ours are.
                Some(_) if h.reported_at.is_some() => {}
                Some(o) => {
                    s.push_str(&format!("{}: followed by member {o}\n", h.host));
                    if let Some(e) = &h.error {
                        s.push_str(&format!("  {e}\n"));
                    }
                    continue;
                }
                None => {
                    s.push_str(&format!("{}: NO OWNER (being handed over)\n", h.host));
                    continue;
                }
            }
        }
        let state = if h.connected {
            "connected"
        } else {
            "NOT CONNECTED"
        };
        let ping = match &h.ping {
            Some(p) if p.up => format!(", reachable ({:.1} ms)", p.rtt_ms.unwrap_or_default()),
            Some(_) => ", UNREACHABLE".into(),
            None => String::new(),
        };
        let by = match (&r.cluster, &h.owner) {
            (Some(c), Some(o)) if *o != c.member => format!(" (followed by member {o})"),
            _ => String::new(),
        };
        s.push_str(&format!("{}{by}: {state}{ping}\n", h.host));
        if let Some(e) = &h.error {
            s.push_str(&format!("  error: {e}\n"));
        }
        if let Some(ss) = &h.sessions {
            s.push_str(&format!(
                "  sessions: {} open (max {}), {} ready (pool {}), at {}\n",
                ss.open, ss.max, ss.ready, ss.pool, ss.endpoint
            ));
        }
        for l in &h.logs {
            if let Some(n) = l.files {
                // A pattern's own row; its files have rows of their own.
                let files = if n == 1 { "file" } else { "files" };
                s.push_str(&format!("  {} {}: {n} {files} match", l.log, l.path));
                if let Some(e) = &l.error {
                    s.push_str(&format!(", {e}"));
                }
                s.push('\n');
                continue;
            }
            let offset = l.last_offset.map_or("-".into(), |o| o.to_string());
            s.push_str(&format!(
                "  {} {}: {} lines read, offset {offset}",
                l.log, l.path, l.lines_read
            ));
            if let Some(lag) = l.lag_bytes {
                s.push_str(&format!(", {lag} bytes not yet indexed"));
            }
            if let Some(e) = &l.error {
                s.push_str(&format!(", error: {e}"));
            }
            s.push('\n');
        }
    }
    for sub in &r.subscribers {
        let rep = &sub.report;
        s.push_str(&format!(
            "subscriber {} ({}): {} received, {} dropped\n",
            rep.id,
            rep.topics.join(" "),
            rep.received,
            rep.dropped
        ));
    }
    if let Some(g) = &r.streams_guard {
        s.push_str(&format!(
            "streams guard: {} subscriber handshakes refused",
            g.refused
        ));
        if let Some(why) = &g.last_refusal {
            s.push_str(&format!(", last: {why}"));
        }
        s.push('\n');
    }
    for u in &r.upstreams {
        let state = match (u.connected, &u.last_error) {
            (true, _) if u.hello_refused.is_some() => format!(
                "connected, but it refused our hello: {}",
                u.hello_refused.as_deref().unwrap_or_default()
            ),
            (true, _) => "connected".to_owned(),
            (false, Some(e)) => format!("NOT connected: {e}"),
            (false, None) => "NOT connected".to_owned(),
        };
        s.push_str(&format!(
            "upstream {} ({}): {state}, {} received, {} forwarded, {} duplicates, {} dropped\n",
            u.name, u.endpoint, u.received, u.forwarded, u.duplicates, u.dropped
        ));
    }
    for d in &r.downstreams {
        s.push_str(&format!(
            "downstream {} ({}): {} connections, {} sent, {} held back (came from it), {} dropped (fell behind), hello {}\n",
            d.collector,
            d.topics.join(" "),
            d.connections,
            d.sent,
            d.held_back,
            d.dropped,
            d.seen_at.format("%H:%M:%S")
        ));
    }
    if let Some(api) = &r.search_api {
        let verdict = match (&api.ok, &api.error) {
            (true, _) => "answers".to_owned(),
            (false, Some(e)) => format!("NOT answering: {e}"),
            (false, None) => "NOT answering".to_owned(),
        };
        s.push_str(&format!(
            "search api {}: {verdict} (checked {})\n",
            api.listen,
            api.checked_at.format("%H:%M:%S")
        ));
    }
    for c in &r.children {
        let pid = c.pid.map_or("not running".into(), |p| format!("pid {p}"));
        s.push_str(&format!(
            "process {}: {pid}, {} restarts",
            c.name, c.restarts
        ));
        if let Some(e) = &c.last_exit {
            s.push_str(&format!(", last exit: {e}"));
        }
        s.push('\n');
    }
    s.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_proto::{DownstreamStatus, GuardStatus, UpstreamStatus};

    #[test]
    fn the_guard_and_each_upstream_and_downstream_have_a_line() {
        let mut r = StatusReport {
            at: chrono::Utc::now(),
            hosts: vec![],
            children: vec![],
            subscribers: vec![],
            search_api: None,
            streams_guard: Some(GuardStatus {
                refused: 3,
                last_refusal: Some("address 10.0.0.9 is not in streams.allow".into()),
            }),
            upstreams: vec![
                UpstreamStatus {
                    name: "us-1".into(),
                    endpoint: "tcp://10.0.0.1:7600".into(),
                    connected: true,
                    received: 1200,
                    forwarded: 1190,
                    duplicates: 10,
                    dropped: 0,
                    // Stale once connected: not shown.
                    last_error: Some("not reachable yet (retrying)".into()),
                    hello_refused: None,
                },
                UpstreamStatus {
                    name: "ap-1".into(),
                    endpoint: "tcp://10.0.0.3:7601".into(),
                    connected: true,
                    hello_refused: Some("topic \"line/#/x\": bad pattern".into()),
                    ..UpstreamStatus::default()
                },
                UpstreamStatus {
                    name: "eu-2".into(),
                    endpoint: "tcp://10.0.0.2:7600".into(),
                    last_error: Some("refused: the upstream did not accept our login".into()),
                    ..UpstreamStatus::default()
                },
            ],
            cluster: None,
            downstreams: vec![DownstreamStatus {
                collector: "hub".into(),
                topics: vec!["line/#".into(), "parsed/+/nginx".into()],
                connections: 2,
                sent: 900,
                held_back: 300,
                dropped: 2,
                seen_at: "2026-12-03T10:00:05Z".parse().unwrap(),
            }],
        };
        assert_eq!(
            render(&r),
            "streams guard: 3 subscriber handshakes refused, last: address 10.0.0.9 is not in streams.allow\n\
             upstream us-1 (tcp://10.0.0.1:7600): connected, 1200 received, 1190 forwarded, 10 duplicates, 0 dropped\n\
             upstream ap-1 (tcp://10.0.0.3:7601): connected, but it refused our hello: topic \"line/#/x\": bad pattern, 0 received, 0 forwarded, 0 duplicates, 0 dropped\n\
             upstream eu-2 (tcp://10.0.0.2:7600): NOT connected: refused: the upstream did not accept our login, 0 received, 0 forwarded, 0 duplicates, 0 dropped\n\
             downstream hub (line/# parsed/+/nginx): 2 connections, 900 sent, 300 held back (came from it), 2 dropped (fell behind), hello 10:00:05"
        );
        r.streams_guard = Some(GuardStatus {
            refused: 0,
            last_refusal: None,
        });
        r.upstreams.clear();
        r.downstreams.clear();
        assert_eq!(render(&r), "streams guard: 0 subscriber handshakes refused");
    }
}
