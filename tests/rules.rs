//! Issue 21: rules against a real sshd, the real parser (which runs them)
//! and real commands and a real HTTP receiver: `any` fires each matching
//! line once even across a `kill -9` of the parser; `frequency` per host
//! with `realert`; `flatline` fires for the log that went quiet and not for
//! the busy one; `heartbeat` beats on `alert/<rule>`; a webhook is signed
//! and retried after a 500; a command past its timeout is recorded
//! `timeout` with its process group gone; `run_as` and `memory` apply;
//! `rill rules test` prints what a rule added later would fire over the
//! lines indexed before it, with the ids it fires with, and fires nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use rill_e2e::*;
use serde_json::Value;

const WITHIN: Duration = Duration::from_secs(60);

/// A folder any user may write in (commands run as `nobody`).
fn shared_dir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("rill-rules")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    d
}

fn json_lines(out: &std::process::Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "rill failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `rill rules history --json RULE`: the rule's firings, newest first.
fn history(rill: &Rill, rule: &str) -> Vec<Value> {
    json_lines(&rill.rill(&["rules", "history", "--json", "--limit", "100000", rule]))
}

/// `rill rules --json`, by rule.
fn rules(rill: &Rill) -> BTreeMap<String, Value> {
    let out = rill.rill(&["rules", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    v.into_iter()
        .map(|r| (r["rule"].as_str().unwrap().to_owned(), r))
        .collect()
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn any_fires_each_matching_line_once_across_a_killed_parser() {
    let out = shared_dir();
    let ids = out.path().join("ids");
    let who = out.path().join("who");
    let h = OneHost::new(&["app"]);
    h.rill.append_config(&format!(
        r#"
rules:
  errors:
    query: ERROR
    logs: [app]
    kind: any
    actions:
      - command: [/bin/sh, -c, 'cat >/dev/null; echo "$RILL_FIRING_ID" >> {ids}']
  whoami:
    query: WHOAMI
    kind: any
    actions:
      - command: [/bin/sh, -c, 'id -un > {who}; ulimit -v >> {who}']
        memory: 64MiB
"#,
        ids = ids.display(),
        who = who.display()
    ));
    let h = OneHost::start(h, &["app"]);

    // A steady stream, one line in ten matching, the parser killed in the
    // middle of it.
    let (total, every) = (3000, 10);
    for batch in 0..(total / 30) {
        let text: String = (batch * 30..batch * 30 + 30)
            .map(|i| {
                if i % every == 0 {
                    format!("ERROR {i} something broke\n")
                } else {
                    format!("ok {i}\n")
                }
            })
            .collect();
        h.append("app", text.as_bytes());
        if batch == total / 30 / 2 {
            h.rill.kill9("parser");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let expected: BTreeSet<String> = (0..total)
        .filter(|i| i % every == 0)
        .map(|i| format!("ERROR {i} something broke"))
        .collect();

    let done = wait_until(Duration::from_secs(90), || {
        let fired = history(&h.rill, "errors");
        fired.len() >= expected.len() && fired.iter().all(|f| f["status"] == "success")
    });
    let fired = history(&h.rill, "errors");
    assert!(
        done,
        "{} of {} firings, states {:?}\n{}",
        fired.len(),
        expected.len(),
        fired
            .iter()
            .map(|f| f["status"].to_string())
            .collect::<BTreeSet<_>>(),
        h.rill.log()
    );
    // Each matching line fired once, and only they did.
    let bodies: Vec<String> = fired
        .iter()
        .map(|f| f["matches"][0]["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(bodies.len(), expected.len(), "firings: one per line");
    assert_eq!(bodies.iter().cloned().collect::<BTreeSet<_>>(), expected);
    for f in &fired {
        assert_eq!(f["kind"], "any");
        assert_eq!(f["count"], 1);
    }
    // The command saw each id; twice only for one that was running when the
    // parser was killed (at most MAX_RUNNING of them).
    assert!(wait_until(WITHIN, || lines_of(&ids).len() >= expected.len()));
    let seen = lines_of(&ids);
    let unique: BTreeSet<&String> = seen.iter().collect();
    let ids_fired: BTreeSet<&str> = fired.iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(unique.len(), expected.len(), "each firing's command ran");
    assert!(unique.iter().all(|i| ids_fired.contains(i.as_str())));
    assert!(seen.len() <= expected.len() + 4, "{} runs", seen.len());

    // run_as: nobody by default (the collector runs as root); memory.
    h.append("app", b"WHOAMI please\n");
    assert!(
        wait_until(WITHIN, || lines_of(&who).len() == 2),
        "{}",
        h.rill.log()
    );
    assert_eq!(lines_of(&who), ["nobody", "65536"]);
    // (The file is written before the command ends and its success is
    // recorded.)
    assert!(wait_until(WITHIN, || rules(&h.rill)["whoami"]["firings"]
        ["success"]
        == 1));
    let listed = rules(&h.rill);
    assert_eq!(listed["errors"]["firings"]["success"], expected.len());
    // `rill status` shows them too.
    let status = h.rill.rill(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    // (Matched counts lines read again after the kill once more.)
    assert!(text.contains("rule errors: any, "), "{text}");
    assert!(
        text.contains(&format!("{} success", expected.len())),
        "{text}"
    );
}

/// Two hosts on one sshd (the same account), `a.log` read on web01 and
/// `b.log` on web02.
fn two_hosts() -> (Rill, RemoteDir, Sshd, TestKey, TestUser) {
    let user = TestUser::get().unwrap();
    let sshd = Sshd::start(SshdOptions::default()).unwrap();
    let key = user.authorize_new_key().unwrap();
    let remote = user.scratch_dir().unwrap();
    let (a, b) = (remote.file("a.log"), remote.file("b.log"));
    let host = |name| TestHost {
        name,
        port: sshd.port(),
        user: &user.name,
        auth: TestAuth::Key(&key.private),
        known_hosts: "strict",
    };
    let logs = [
        TestLog {
            name: "a",
            path: &a,
            hosts: &["web01"],
        },
        TestLog {
            name: "b",
            path: &b,
            hosts: &["web02"],
        },
    ];
    let rill = Rill::new(
        &[host("web01"), host("web02")],
        &logs,
        &[sshd.known_hosts_line()],
    );
    remote.append("a.log", b"").unwrap();
    remote.append("b.log", b"").unwrap();
    (rill, remote, sshd, key, user)
}

#[test]
fn frequency_fires_per_host_and_realert_holds_repeats() {
    let (mut rill, remote, _sshd, _key, _user) = two_hosts();
    rill.append_config(
        r#"
rules:
  bursts:
    query: fail
    logs: [a, b]
    kind: frequency
    count: 3
    within: 1m
    group_by: host
    realert: 1h
"#,
    );
    rill.start_following("web01");
    assert!(rill.wait_following("web02", WITHIN));
    let fails = |n| "login fail\n".repeat(n);

    remote.append("a.log", fails(3).as_bytes()).unwrap();
    assert!(
        wait_until(WITHIN, || history(&rill, "bursts").len() == 1),
        "{}",
        rill.log()
    );
    let first = &history(&rill, "bursts")[0];
    assert_eq!(
        (first["group"].as_str(), first["count"].as_u64()),
        (Some("web01"), Some(3))
    );
    assert_eq!(first["matches"].as_array().unwrap().len(), 3);

    // Three more on web01 within realert, two on web02: nothing fires.
    remote.append("a.log", fails(3).as_bytes()).unwrap();
    remote.append("b.log", fails(2).as_bytes()).unwrap();
    assert!(wait_until(WITHIN, || rules(&rill)["bursts"]["matched"] == 8));
    assert_eq!(history(&rill, "bursts").len(), 1);

    // web02's third within the minute fires for web02.
    remote.append("b.log", fails(1).as_bytes()).unwrap();
    assert!(wait_until(WITHIN, || history(&rill, "bursts").len() == 2));
    let groups: Vec<(String, u64)> = history(&rill, "bursts")
        .iter()
        .map(|f| {
            (
                f["group"].as_str().unwrap().to_owned(),
                f["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(groups, [("web02".to_owned(), 3), ("web01".to_owned(), 3)]);

    // The same through the search API; `test` runs the rule over the
    // index and fires nothing.
    let port = rill.search_port;
    let (status, v) = http_get(port, "/rules").unwrap();
    assert_eq!((status, &v["rules"][0]["matched"]), (200, &Value::from(9)));
    let (_, v) = http_get(port, "/rules/history?rule=bursts&limit=1").unwrap();
    assert_eq!(v["firings"].as_array().unwrap().len(), 1);
    assert_eq!(v["firings"][0]["group"], "web02");
    let (status, v) = http_get(port, "/rules/test?rule=bursts&since=1h").unwrap();
    assert_eq!((status, v["matched"].as_u64()), (200, Some(9)), "{v}");
    assert_eq!(v["firings"].as_array().unwrap().len(), 2);
    assert_eq!(history(&rill, "bursts").len(), 2, "a test fires nothing");
    let (status, v) = http_get(port, "/rules/test?rule=nope").unwrap();
    assert_eq!(status, 404);
    assert!(
        v["error"].as_str().unwrap().contains("rules: bursts"),
        "{v}"
    );
    let (status, _) = http_get(port, "/rules/history?limit=99999999999999999999").unwrap();
    assert_eq!(status, 400);
    // And in the metrics.
    let (_, metrics) = http_get(port, "/metrics").unwrap();
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("rill_rule_firings_total{rule=\"bursts\",status=\"success\"} 2"),
        "{metrics}"
    );
}

#[test]
fn flatline_fires_for_the_quiet_log_and_heartbeat_beats_on_its_topic() {
    let h = OneHost::new(&["quiet", "busy"]);
    h.rill.append_config(
        r#"
rules:
  stalled:
    query: '*'
    logs: [quiet, busy]
    kind: flatline
    within: 3s
    group_by: log
  beat:
    kind: heartbeat
    every: 2s
"#,
    );
    let h = OneHost::start(h, &["quiet", "busy"]);
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB).unwrap();
    sub.connect(&h.rill.streams).unwrap();
    sub.set_subscribe(b"alert/beat").unwrap();
    sub.set_rcvtimeo(500).unwrap();

    h.append("quiet", b"one line, then nothing\n");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        let path = h.file("busy");
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .unwrap();
                writeln!(f, "busy {i}").unwrap();
                i += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    // Two beats on alert/beat, each its own id.
    let mut beats = BTreeSet::new();
    assert!(wait_until(Duration::from_secs(20), || {
        if let Ok(m) = sub.recv_multipart(0) {
            assert_eq!(m[0], b"alert/beat");
            let f: Value = serde_json::from_slice(&m[1]).unwrap();
            assert_eq!(f["kind"], "heartbeat");
            beats.insert(f["id"].as_str().unwrap().to_owned());
        }
        beats.len() >= 2
    }));

    let quiet_fired = wait_until(WITHIN, || {
        history(&h.rill, "stalled")
            .iter()
            .any(|f| f["group"] == "quiet")
    });
    // The busy log keeps writing a while longer.
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert!(quiet_fired, "{}", h.rill.log());
    let fired = history(&h.rill, "stalled");
    assert!(
        fired
            .iter()
            .all(|f| f["group"] == "quiet" && f["count"] == 0),
        "only the quiet log: {fired:?}"
    );
    assert!(history(&h.rill, "beat").len() >= 2);
}

/// A tiny HTTP receiver: answers 500 to the first request and 200 after;
/// keeps (firing id, body, signature header) of each.
/// What the receiver got: (firing id header, body, signature header).
type Received = Arc<Mutex<Vec<(String, Vec<u8>, String)>>>;

fn receiver() -> (u16, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let theirs = Arc::clone(&got);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let mut r = BufReader::new(conn);
            let mut headers = BTreeMap::new();
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            loop {
                line.clear();
                r.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    headers.insert(k.to_ascii_lowercase(), v.trim().to_owned());
                }
            }
            let len: usize = headers["content-length"].parse().unwrap();
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let mut got = theirs.lock().unwrap();
            got.push((
                headers.get("x-rill-firing-id").cloned().unwrap_or_default(),
                body,
                headers.get("x-rill-signature").cloned().unwrap_or_default(),
            ));
            let status = if got.len() == 1 { "500 Oops" } else { "200 OK" };
            let _ = r.get_mut().write_all(
                format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                    .as_bytes(),
            );
        }
    });
    (port, got)
}

#[test]
fn a_webhook_is_signed_and_retried_and_a_slow_command_times_out() {
    let (port, got) = receiver();
    let secret = "s3cret-for-the-test";
    let mut h = OneHost::new(&["app"]);
    h.rill.env("RILL_HOOK_SECRET", secret);
    h.rill.append_config(&format!(
        r#"
rules:
  hook:
    query: PAGE
    kind: any
    actions:
      - webhook: http://127.0.0.1:{port}/hook
        secret_env: RILL_HOOK_SECRET
        timeout: 2s
        retries: 3
  slow:
    query: SLOW
    kind: any
    actions:
      - command: [/bin/sh, -c, 'sleep 30.4242']
        timeout: 1s
"#
    ));
    let h = OneHost::start(h, &["app"]);
    h.append("app", b"PAGE the on-call\nSLOW thing\n");

    assert!(
        wait_until(WITHIN, || got.lock().unwrap().len() >= 2),
        "{}",
        h.rill.log()
    );
    let got = got.lock().unwrap().clone();
    for (id, body, sig) in &got {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        assert_eq!(
            *sig,
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
        let f: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            (f["rule"].as_str(), f["id"].as_str()),
            (Some("hook"), Some(id.as_str()))
        );
        assert_eq!(f["matches"][0]["body"], "PAGE the on-call");
    }
    assert_eq!(got[0].0, got[1].0, "the retry is the same firing");
    assert!(wait_until(WITHIN, || history(&h.rill, "hook")
        .first()
        .is_some_and(|f| f["status"] == "success")));
    let hook = &history(&h.rill, "hook")[0];
    assert_eq!(hook["actions"][0]["attempts"], 2);
    assert_eq!(hook["actions"][0]["last"]["http_status"], 200);

    // The slow command: timeout, within its timeout and a second, and no
    // process of its group left.
    assert!(wait_until(WITHIN, || history(&h.rill, "slow")
        .first()
        .is_some_and(|f| f["status"] == "timeout")));
    let slow = &history(&h.rill, "slow")[0];
    let t = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(slow["actions"][0]["last"][k].as_str().unwrap())
            .unwrap()
    };
    let took = (t("finished_at") - t("started_at")).to_std().unwrap();
    assert!(
        took >= Duration::from_secs(1) && took <= Duration::from_secs(2),
        "{took:?}"
    );
    assert!(local_processes_mentioning("sleep 30.4242").is_empty());
}

#[test]
fn an_action_running_when_the_collector_stops_runs_again_after_its_restart() {
    let out = shared_dir();
    let ids = out.path().join("ids");
    let h = OneHost::new(&["app"]);
    h.rill.append_config(&format!(
        r#"
rules:
  slowpage:
    query: PAGE
    kind: any
    actions:
      - command: [/bin/sh, -c, 'sleep 3; echo "$RILL_FIRING_ID" >> {ids}']
"#,
        ids = ids.display()
    ));
    let mut h = OneHost::start(h, &["app"]);
    h.append("app", b"PAGE me\n");
    assert!(
        wait_until(WITHIN, || history(&h.rill, "slowpage")
            .first()
            .is_some_and(|f| f["status"] == "running")),
        "{}",
        h.rill.log()
    );
    assert!(h
        .rill
        .stop(Duration::from_secs(20))
        .is_some_and(|s| s.success()));
    assert!(
        lines_of(&ids).is_empty(),
        "the command was stopped before it wrote"
    );
    // Not a failure of the action: pending, its attempt not counted.
    let f = &history(&h.rill, "slowpage")[0];
    assert_eq!(
        (&f["status"], &f["actions"][0]["attempts"]),
        (&Value::from("pending"), &Value::from(0))
    );

    h.rill.start();
    assert!(
        wait_until(WITHIN, || history(&h.rill, "slowpage")
            .first()
            .is_some_and(|f| f["status"] == "success")),
        "{}",
        h.rill.log()
    );
    let f = &history(&h.rill, "slowpage")[0];
    assert_eq!(lines_of(&ids), [f["id"].as_str().unwrap()]);
    assert_eq!(history(&h.rill, "slowpage").len(), 1);
}

/// `rill rules test RULE --json`: the firings it prints.
fn would_fire(rill: &Rill, rule: &str) -> Vec<Value> {
    json_lines(&rill.rill(&["rules", "test", "--json", rule]))
}

/// The first match's body of each firing, sorted.
fn bodies(firings: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = firings
        .iter()
        .map(|f| f["matches"][0]["body"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn rules_test_shows_what_a_rule_added_later_would_fire_over_indexed_lines_and_fires_nothing() {
    let out = shared_dir();
    let ids = out.path().join("ids");
    let mut h = OneHost::running(&["app", "other"]);
    h.append("app", b"PAGE one\nok two\nPAGE three\n");
    h.append("other", b"PAGE elsewhere\n");
    assert_eq!(h.rill.wait_count("PAGE", &[], 3, WITHIN), Some(3));

    // The rule is added as a config change is made: collector stopped.
    assert!(h
        .rill
        .stop(Duration::from_secs(20))
        .is_some_and(|s| s.success()));
    h.rill.append_config(&format!(
        r#"
rules:
  pages:
    query: PAGE
    logs: [app]
    kind: any
    actions:
      - command: [/bin/sh, -c, 'cat >/dev/null; echo "$RILL_FIRING_ID" >> {ids}']
"#,
        ids = ids.display()
    ));
    let shown = h.rill.rill(&["rules", "test", "pages"]);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let text = String::from_utf8_lossy(&shown.stdout).into_owned();
    let firings = would_fire(&h.rill, "pages");
    // Its log's two PAGE lines, not the other log's.
    assert_eq!(bodies(&firings), ["PAGE one", "PAGE three"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "rule pages (any) over the lines since 1h: 2 matched, 2 would fire (nothing fired)"
    );
    assert_eq!(lines.len(), 3, "{text}");
    for f in &firings {
        let (id, body) = (f["id"].as_str().unwrap(), &f["matches"][0]["body"]);
        assert!(
            lines.iter().any(|l| l.starts_with("  would fire: ")
                && l.contains(&format!(" id={id} "))
                && l.ends_with(&format!("first match: {}", body.as_str().unwrap()))),
            "{id} {body} not in:\n{text}"
        );
    }
    // Nothing fired: no firing recorded, the command never ran.
    assert!(history(&h.rill, "pages").is_empty());
    assert_eq!(
        rules(&h.rill)["pages"]["firings"],
        serde_json::json!({"pending": 0, "running": 0, "success": 0, "failure": 0, "timeout": 0})
    );
    assert!(!ids.exists());

    // Running, the rule starts with the lines indexed after it: a new one
    // fires, with the id `test` gives it; the lines before stay unfired.
    h.rill.start_following("web01");
    h.append("app", b"PAGE four\n");
    assert!(
        wait_until(WITHIN, || history(&h.rill, "pages")
            .first()
            .is_some_and(|f| f["status"] == "success")),
        "{}",
        h.rill.log()
    );
    let fired = history(&h.rill, "pages");
    assert_eq!(bodies(&fired), ["PAGE four"]);
    assert_eq!(lines_of(&ids), [fired[0]["id"].as_str().unwrap()]);
    let firings = would_fire(&h.rill, "pages");
    assert_eq!(bodies(&firings), ["PAGE four", "PAGE one", "PAGE three"]);
    assert!(firings.iter().any(|f| f["id"] == fired[0]["id"]));
    // And testing again fired nothing more.
    assert_eq!(history(&h.rill, "pages").len(), 1);
    assert_eq!(lines_of(&ids).len(), 1);
}
