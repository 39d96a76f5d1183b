//! Issue 6, done-when 1: every parser on real-world lines and every query
//! feature, end to end: lines written to files on a real sshd, followed by
//! the real supervisor, parsed and indexed by the real parser, queried
//! through `rill search` AND the HTTP API.

use std::time::Duration;

use rill_e2e::*;
use serde_json::Value;

const ACCESS: &str = r#"10.0.0.1 - - [22/Nov/2025:10:00:00 +0000] "GET /api/users HTTP/1.1" 200 512 "-" "curl/8.5.0"
10.0.0.2 - - [22/Nov/2025:10:00:30 +0000] "POST /api/orders HTTP/1.1" 500 87 "-" "Mozilla/5.0"
10.0.0.3 - alice [22/Nov/2025:10:01:10 +0000] "GET /api/orders/7 HTTP/1.1" 404 0 "-" "curl/8.5.0"
10.0.0.4 - - [22/Nov/2025:10:03:05 +0000] "POST /api/orders HTTP/1.1" 500 90 "-" "Mozilla/5.0"
10.0.0.5 - - [22/Nov/2025:10:03:59 +0100] "GET /health HTTP/1.1" 200 2 "-" "kube-probe/1.29"
this is not an access log line
"#;

/// log4j with a Java stack trace; zone-less stamps in Europe/Berlin (UTC+1).
/// The last event stays open until the multiline idle time completes it.
const APP: &str = "2025-11-22 11:00:00,250 INFO order service started
2025-11-22 11:00:05,125 ERROR order 42 failed: java.lang.IllegalStateException: order 42 in state SHIPPED
\tat com.example.OrderService.cancel(OrderService.java:88)
\tat com.example.Api.handle(Api.java:12)
Caused by: java.sql.SQLTransientConnectionException: pool exhausted
\t... 12 more
2025-11-22 11:00:06,000 WARN retrying order 42
\tat com.example.Retry.run(Retry.java:5)
";

const SYS: &str = r#"<38>Nov 22 10:15:00 web01 sshd[812]: Accepted publickey for deploy from 10.0.0.9 port 52144 ssh2
<165>1 2025-11-22T10:16:00.123456Z web01 billing 77 ID47 [meta@1 request_id="abc-123"] user login failed
Nov 22 10:17:00 web01 CRON[99]: (root) CMD (run-parts /etc/cron.hourly)
"#;

const EVENTS: &str = r#"{"time":"2025-11-22T10:20:00.5Z","level":"error","msg":"payment declined","amount":12.5,"user":{"id":7}}
{"time":1763806800.25,"level":"info","msg":"payment ok","user":{"id":8}}
{"level":"warn","msg":"cut off
"#;

const LOGS: [&str; 5] = ["access", "app", "sys", "events", "plain"];

fn plain() -> String {
    (1..=9)
        .map(|i| format!("step {i:02} of the deploy\n"))
        .collect()
}

fn lines(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn json_lines(out: &std::process::Output) -> Vec<Value> {
    lines(out)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Everything running, every sample written and indexed.
fn indexed() -> (OneHost, u16) {
    let h = OneHost::new(&LOGS);
    let port = free_port();
    h.rill.set_log_options("access", "parser: combined");
    h.rill.set_log_options(
        "app",
        r#"parser:
  type: regex
  pattern: '^(?P<ts>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}) (?P<level>[A-Z]+) (?P<message>.*)'
  timestamp: {capture: ts, format: '%Y-%m-%d %H:%M:%S,%3f', timezone: Europe/Berlin}
multiline:
  continues: '^(\s|Caused by)'
  flush_after: 300ms"#,
    );
    h.rill
        .set_log_options("sys", "parser: {type: syslog, timezone: UTC}");
    h.rill
        .set_log_options("events", "parser: {type: json, timestamp_key: time}");
    h.rill
        .append_config(&format!("search:\n  listen: 127.0.0.1:{port}\n"));
    let h = OneHost::start(h, &LOGS);
    h.append("access", ACCESS.as_bytes());
    h.append("app", APP.as_bytes());
    h.append("sys", SYS.as_bytes());
    h.append("events", EVENTS.as_bytes());
    h.append("plain", plain().as_bytes());
    // 6 access + 3 app events + 3 syslog + 3 json + 9 raw.
    let n = wait_for(Duration::from_secs(20), || {
        h.rill.count("*", &[]).filter(|&n| n >= 24)
    });
    assert_eq!(n, Some(24), "log:\n{}", h.rill.log());
    (h, port)
}

#[test]
fn parsers_and_every_query_feature_through_rill_search_and_http() {
    let (h, port) = indexed();
    let rill = &h.rill;
    let search = |args: &[&str]| {
        let mut a = vec!["search"];
        a.extend_from_slice(args);
        let out = rill.rill(&a);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let count = |q: &str, extra: &[&str]| rill.count(q, extra).unwrap();

    // combined: fields, numbers, a broken line kept raw and flagged.
    assert_eq!(count("fields.status:500", &[]), 2);
    assert_eq!(count("fields.method:GET AND log:access", &[]), 3);
    assert_eq!(count("fields.user:alice", &[]), 1);
    assert_eq!(count("parse_error:true AND log:access", &[]), 1);
    let broken = json_lines(&search(&["--json", "parse_error:true AND log:access"]));
    assert_eq!(broken[0]["body"], "this is not an access log line");
    assert!(broken[0]["fields"]["parse_error"]
        .as_str()
        .unwrap()
        .contains("expected"));
    let probe = json_lines(&search(&["--json", "kube"]));
    assert_eq!(
        probe[0]["ts"], "2025-11-22T09:03:59Z",
        "the +0100 offset applied"
    );
    assert_eq!(probe[0]["fields"]["user_agent"], "kube-probe/1.29");

    // regex + multiline: the stack trace is ONE event, named by its first
    // line, ending where the next record starts; the zone-less stamp was in
    // Berlin; the last event was completed by the idle time.
    let trace = json_lines(&search(&["--json", "SQLTransientConnectionException"]));
    assert_eq!(trace.len(), 1);
    let body = trace[0]["body"].as_str().unwrap();
    assert_eq!(body.lines().count(), 5, "{body}");
    assert!(body.starts_with("2025-11-22 11:00:05,125 ERROR") && body.ends_with("\t... 12 more"));
    assert_eq!(trace[0]["ts"], "2025-11-22T10:00:05.125Z");
    assert_eq!(trace[0]["fields"]["level"], "ERROR");
    assert!(
        trace[0]["path"].as_str().unwrap().ends_with("/app.log"),
        "{}",
        trace[0]
    );
    assert_eq!(
        trace[0]["offset"].as_u64(),
        APP.find("2025-11-22 11:00:05").map(|o| o as u64)
    );
    assert_eq!(
        trace[0]["end_offset"].as_u64(),
        APP.find("2025-11-22 11:00:06").map(|o| o as u64)
    );
    let last = json_lines(&search(&["--json", "Retry.java"]));
    assert_eq!(last[0]["body"].as_str().unwrap().lines().count(), 2);
    assert_eq!(last[0]["end_offset"].as_u64(), Some(APP.len() as u64));
    assert_eq!(count("log:app", &[]), 3);

    // syslog 3164 and 5424 (microseconds kept, structured data as fields).
    assert_eq!(count("fields.app:sshd AND fields.pid:812", &[]), 1);
    assert_eq!(
        count("fields.facility:cron", &[]),
        0,
        "CRON line has no PRI"
    );
    let sd = json_lines(&search(&[
        "--json",
        "fields.sd.meta@1.request_id:\"abc-123\"",
    ]));
    assert_eq!(sd.len(), 1, "structured data searchable");
    assert_eq!(sd[0]["ts"], "2025-11-22T10:16:00.123456Z");
    assert_eq!(sd[0]["fields"]["severity"], "notice");

    // json: nested fields, epoch timestamps, a cut-off line flagged.
    assert_eq!(
        count(
            "log:events AND fields.level:error AND fields.user.id:7",
            &[]
        ),
        1
    );
    let ok = json_lines(&search(&["--json", "\"payment ok\""]));
    assert_eq!(ok[0]["ts"], "2025-11-22T10:20:00.250Z");
    assert_eq!(count("log:events AND parse_error:true", &[]), 1);

    // Full text, phrases, boolean operators, host/log filters.
    assert_eq!(count("order AND 42", &[]), 2);
    assert_eq!(count("\"order 42 failed\"", &[]), 1);
    assert_eq!(count("payment AND NOT declined", &[]), 1);
    assert_eq!(count("declined OR publickey", &[]), 2);
    assert_eq!(count("orders -fields.status:500", &[]), 1);
    assert_eq!(count("*", &["--host", "web01", "--log", "plain"]), 9);
    assert_eq!(count("host:web01 AND log:sys", &[]), 3);
    assert_eq!(count("*", &["--host", "web02"]), 0);

    // --since/--until: relative and RFC 3339; raw lines carry the time read.
    assert_eq!(count("log:plain", &["--since", "15m"]), 9);
    assert_eq!(count("log:plain", &["--until", "1h"]), 0);
    let window = [
        "--since",
        "2025-11-22T10:00:30Z",
        "--until",
        "2025-11-22T10:03:05Z",
    ];
    assert_eq!(
        count("log:access", &window),
        2,
        "since inclusive, until exclusive"
    );
    assert_eq!(
        count(
            "log:app",
            &[
                "--since",
                "2025-11-22T10:00:05.125Z",
                "--until",
                "2025-11-22T10:00:05.126Z"
            ]
        ),
        1,
        "milliseconds count"
    );

    // Newest first by default, --oldest-first, --limit.
    let by_ts = |args: &[&str]| -> Vec<String> {
        json_lines(&search(args))
            .iter()
            .map(|v| v["ts"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        by_ts(&["--json", "--limit", "2", "log:access AND -parse_error:true"]),
        ["2025-11-22T10:03:05Z", "2025-11-22T10:01:10Z"]
    );
    assert_eq!(
        by_ts(&[
            "--json",
            "--oldest-first",
            "--limit",
            "2",
            "log:access AND -parse_error:true"
        ]),
        ["2025-11-22T09:03:59Z", "2025-11-22T10:00:00Z"]
    );

    // -C/-B/-A: the neighbours in the same file, grep-style separators.
    let ctx = lines(&search(&["-C", "2", "\"step 05\""]));
    let bodies: Vec<&str> = ctx.iter().map(|l| l.split_once(' ').unwrap().1).collect();
    assert_eq!(
        bodies,
        [
            "web01 plain- step 03 of the deploy",
            "web01 plain- step 04 of the deploy",
            "web01 plain: step 05 of the deploy",
            "web01 plain- step 06 of the deploy",
            "web01 plain- step 07 of the deploy",
        ]
    );
    let two = lines(&search(&[
        "-B",
        "1",
        "-A",
        "0",
        "\"step 02\" OR \"step 09\"",
    ]));
    assert_eq!(two.len(), 5, "{two:?}");
    assert_eq!(two[2], "--");
    assert!(
        two[0].ends_with("plain- step 08 of the deploy")
            && two[1].ends_with("plain: step 09 of the deploy")
    );
    let ctx_json = json_lines(&search(&["--json", "-A", "1", "\"step 09\""]));
    assert_eq!(
        ctx_json[0]["after"].as_array().unwrap().len(),
        0,
        "last line of the file"
    );
    assert_eq!(ctx_json[0]["before"].as_array().unwrap().len(), 0);

    // --count and --json count.
    assert_eq!(
        lines(&search(&["--count", "--json", "fields.status:500"])),
        [r#"{"count":2}"#]
    );

    // --histogram: a bar chart, and JSON.
    let hist = [
        "--log",
        "access",
        "--since",
        "2025-11-22T10:00:00Z",
        "--until",
        "2025-11-22T10:04:00Z",
        "--histogram",
        "1m",
        "*",
    ];
    let chart = lines(&search(&hist));
    assert_eq!(chart.len(), 4, "{chart:#?}");
    assert!(
        chart[0].starts_with("2025-11-22T10:00:00Z  ██") && chart[0].ends_with(" 2"),
        "{chart:#?}"
    );
    assert!(
        chart[2].starts_with("2025-11-22T10:02:00Z  ") && chart[2].ends_with(" 0"),
        "{chart:#?}"
    );
    let mut hist_json = vec!["--json"];
    hist_json.extend_from_slice(&hist);
    let h_json = json_lines(&search(&hist_json));
    let counts: Vec<u64> = h_json[0]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [2, 1, 0, 1]);
    assert_eq!(h_json[0]["total"], 4);

    // Highlighting in the terminal output.
    let colored = lines(&search(&["--color", "always", "declined"]));
    assert!(
        colored[0].contains("payment \x1b[1;31mdeclined\x1b[0m"),
        "{colored:?}"
    );
    let plain_out = lines(&search(&["--color", "never", "declined"]));
    assert!(!plain_out[0].contains('\x1b'));
    let hl = json_lines(&search(&["--json", "declined"]));
    let body = hl[0]["body"].as_str().unwrap();
    let r = &hl[0]["highlights"][0];
    assert_eq!(
        &body[r[0].as_u64().unwrap() as usize..r[1].as_u64().unwrap() as usize],
        "declined"
    );

    // Query errors: position and what was expected, exit 2.
    let bad = rill.rill(&["search", "error AND (timeout"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("at position 18: expected `)` to close the group"),
        "{err}"
    );
    assert!(
        err.contains("  error AND (timeout\n                    ^"),
        "{err}"
    );
    let bad = rill.rill(&["search", "stauts:500"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("at position 0: expected a known field instead of `stauts`"),
        "{err}"
    );
    let bad = rill.rill(&["search", "--since", "yesterday", "*"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--since: expected a time like 15m"));

    // The same through the HTTP API.
    let get = |path: &str| http_get(port, path).unwrap_or_else(|| panic!("no answer for {path}"));
    let (status, v) = get(&format!(
        "/search?q={}&limit=1",
        url_encode("fields.status:500")
    ));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["count"], 2);
    assert_eq!(v["hits"].as_array().unwrap().len(), 1);
    assert_eq!(v["hits"][0]["ts"], "2025-11-22T10:03:05Z", "newest first");
    assert_eq!(v["hits"][0]["fields"]["status"], 500);
    let (_, v) = get("/search?q=*&log=access&order=oldest&limit=1");
    assert_eq!(v["hits"][0]["ts"], "2025-11-22T09:03:59Z");
    let (_, v) = get("/search?q=*&host=web01&log=plain&since=15m");
    assert_eq!(v["count"], 9);
    let (_, v) = get("/search?q=*&log=plain&until=1h");
    assert_eq!(v["count"], 0);
    let (_, v) = get(&format!(
        "/search?q={}&context=1",
        url_encode("\"step 05\"")
    ));
    assert_eq!(v["hits"][0]["before"][0]["body"], "step 04 of the deploy");
    assert_eq!(v["hits"][0]["after"][0]["body"], "step 06 of the deploy");
    let (_, v) = get("/search?q=declined");
    assert_eq!(
        v["hits"][0]["highlights"][0][0].as_u64(),
        body.find("declined").map(|o| o as u64)
    );
    let (_, v) = get(&format!("/count?q={}", url_encode("order AND 42")));
    assert_eq!(v["count"], 2);
    let (status, v) = get(
        "/histogram?log=access&since=2025-11-22T10:00:00Z&until=2025-11-22T10:04:00Z&bucket=1m",
    );
    assert_eq!(status, 200, "{v}");
    let counts: Vec<u64> = v["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [2, 1, 0, 1]);
    assert_eq!(v["buckets"][0]["start"], "2025-11-22T10:00:00Z");

    // Bad requests: a JSON error with a 4xx status, and the server lives on.
    let (status, v) = get(&format!("/search?q={}", url_encode("error AND (timeout")));
    assert_eq!(status, 400);
    assert_eq!(v["position"], 18);
    assert!(v["expected"].as_str().unwrap().contains("`)`"), "{v}");
    let (status, v) = get("/search?q=x&limit=many");
    assert_eq!(status, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("limit: expected a number"),
        "{v}"
    );
    let (status, v) = get("/search?qq=x");
    assert_eq!(status, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("unknown parameter \"qq\""),
        "{v}"
    );
    assert_eq!(get("/search?since=last%20week").0, 400);
    assert_eq!(get("/histogram?bucket=often").0, 400);
    assert_eq!(get("/search?q=%zz").0, 400);
    assert_eq!(get("/nothing").0, 404);
    assert_eq!(http_request(port, "POST", "/search?q=x").unwrap().0, 405);
    assert_eq!(get("/health"), (200, serde_json::json!({"status": "ok"})));
}

#[test]
fn parsed_events_are_published_as_json() {
    let h = OneHost::new(&["access"]);
    h.rill.set_log_options("access", "parser: combined");
    h.rill.append_config("search:\n  listen: 'off'\n");
    let h = OneHost::start(h, &["access"]);
    let tail = h.rill.tail(&["parsed/web01/access", "status/web01"]);
    let ready = tail.collect_until(Duration::from_secs(15), |got| {
        got.iter().any(|v| v["topic"] == "status/web01")
    });
    assert!(
        ready.iter().any(|v| v["topic"] == "status/web01"),
        "tail never connected"
    );
    h.append("access", ACCESS.as_bytes());
    let got = tail.collect_until(Duration::from_secs(15), |got| {
        got.iter()
            .filter(|v| v["topic"] == "parsed/web01/access")
            .count()
            >= 6
    });
    let events: Vec<&Value> = got
        .iter()
        .filter(|v| v["topic"] == "parsed/web01/access")
        .collect();
    assert_eq!(events.len(), 6);
    assert_eq!(events[1]["fields"]["method"], "POST");
    assert_eq!(events[1]["fields"]["status"], 500);
    assert_eq!(events[1]["ts"], "2025-11-22T10:00:30Z");
    let first_len = ACCESS.lines().next().unwrap().len() as u64 + 1;
    assert_eq!(events[1]["offset"].as_u64(), Some(first_len));
    assert!(events[1]["end_offset"].as_u64() > Some(first_len));
    assert_eq!(events[5]["parse_error"], true);
    assert!(events[0].get("parse_error").is_none(), "false is left out");
}

#[test]
fn retention_deletes_old_events_while_running() {
    let h = OneHost::new(&["events"]);
    h.rill.set_log_options("events", "parser: json");
    // Two minutes: the sweep runs every two seconds.
    h.rill
        .append_config("index:\n  retention: 2m\nsearch:\n  listen: 'off'\n");
    let h = OneHost::start(h, &["events"]);
    let mut text = String::new();
    for i in 0..5 {
        text.push_str(&format!(
            "{{\"ts\":\"2025-11-22T10:00:0{i}Z\",\"age\":\"old\",\"n\":{i}}}\n"
        ));
    }
    for i in 0..3 {
        // No timestamp: the time read, i.e. now.
        text.push_str(&format!("{{\"age\":\"new\",\"n\":{i}}}\n"));
    }
    h.append("events", text.as_bytes());
    let rill = &h.rill;
    let settled = wait_until(Duration::from_secs(20), || {
        rill.count("fields.age:new", &[]) == Some(3) && rill.count("fields.age:old", &[]) == Some(0)
    });
    assert!(settled, "new kept, old gone; log:\n{}", rill.log());
    assert_eq!(rill.count("*", &[]), Some(3));
}
