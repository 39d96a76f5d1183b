//! Rill attacked as a hostile or careless user would (issue 17), through its
//! services: queries and durations that explode, answers too big, floods of
//! connections, a hung search API, and session requests with huge ids.
//! Each gets a clear refusal within a bound on time and memory, and the
//! services keep answering. Attacks through paths and configs are in
//! `hostile.rs`.

use std::time::{Duration, Instant};

use rill_e2e::*;
use serde_json::Value;

/// The parser's pid, from `rill status`.
fn parser_pid(rill: &Rill) -> u32 {
    let status = rill.status().expect("status");
    status["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "parser")
        .and_then(|c| c["pid"].as_u64())
        .expect("parser running") as u32
}

/// `/health` answers 200 within a second.
fn healthy(port: u16) -> bool {
    wait_until(Duration::from_secs(1), || {
        http_get(port, "/health").is_some_and(|(s, _)| s == 200)
    })
}

/// Issue 17, items 2-6: each attack gets a clear refusal within a bound on
/// time and memory, and `/health` answers after every one.
#[test]
fn the_search_api_answers_after_every_attack() {
    let h = OneHost::new(&["big"]);
    let port = free_port();
    h.rill
        .append_config(&format!("search:\n  listen: 127.0.0.1:{port}\n"));
    let h = OneHost::start(h, &["big"]);
    // 50 events of 1,000,000 bytes and 1,000 small ones.
    for i in 0..50 {
        let mut line = format!("huge {i} ");
        line.push_str(&"x".repeat(1_000_000 - line.len() - 1));
        line.push('\n');
        h.append("big", line.as_bytes());
    }
    let small: String = (0..1000).map(|i| format!("small line {i}\n")).collect();
    h.append("big", small.as_bytes());
    assert_eq!(
        h.rill.wait_count("*", &[], 1050, Duration::from_secs(60)),
        Some(1050),
        "{}",
        h.rill.log()
    );
    assert!(healthy(port), "{}", h.rill.log());
    let pid = parser_pid(&h.rill);
    let get = |path: &str| http_get(port, path);

    // Nesting tantivy's grammar takes exponential time for: refused at once.
    let deep = format!("{}error{}", "(".repeat(100), ")".repeat(100));
    let t = Instant::now();
    let (status, v) = get(&format!("/search?q={}", url_encode(&deep))).unwrap();
    eprintln!("100 nested groups refused in {:?}", t.elapsed());
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        v["expected"],
        "at most 32 groups: every `(` counts, also in a phrase"
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(healthy(port));
    let long = "word ".repeat(1000);
    let (status, v) = get(&format!("/count?q={}", url_encode(&long))).unwrap();
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("at most 4096 bytes"),
        "{v}"
    );

    // Absurd durations: 400s, never a panic.
    for (path, want) in [
        (
            "/count?since=99999999d",
            "reaches further back than a time can be",
        ),
        ("/count?until=99999999999999999999d", "reaches further back"),
        (
            "/histogram?bucket=1ms&since=100000w",
            "buckets; expected at most 10000",
        ),
        (
            "/histogram?bucket=99999999999w",
            "bucket: expected a duration",
        ),
        (
            "/search?limit=99999999999999999999",
            "limit: expected a number from 0 to 10000",
        ),
        (
            "/search?context=18446744073709551616",
            "context: expected a number",
        ),
    ] {
        let (status, v) = get(path).unwrap();
        assert_eq!(status, 400, "{path}: {v}");
        assert!(v["error"].as_str().unwrap().contains(want), "{path}: {v}");
        assert!(healthy(port), "after {path}");
    }
    let out = h.rill.rill(&["search", "--since", "99999999d", "*"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--since: \"99999999d\" reaches further back"),
        "{err}"
    );
    let out = h.rill.rill(&["search", "--limit", "99999999999", "*"]);
    assert_eq!(out.status.code(), Some(2));

    // An 8 MB query string: refused by its size, memory untouched.
    let (status, _) =
        get(&format!("/search?q={}", "a".repeat(8 << 20))).unwrap_or((0, Value::Null));
    assert!(matches!(status, 0 | 414 | 431), "{status}");
    assert!(healthy(port));
    let (status, v) = get(&format!("/count?q={}", "a".repeat(12_000))).unwrap();
    assert_eq!(status, 414, "{v}");

    // Everything with all its context: cut at the answer's budget, said so.
    let t = Instant::now();
    let (status, v) = get("/search?q=*&limit=10000&context=100").unwrap();
    assert_eq!(status, 200);
    let body = v.to_string();
    assert!(body.len() <= 16 << 20, "{} bytes", body.len());
    assert!(
        v["truncated"]["reason"]
            .as_str()
            .unwrap()
            .contains("limit of 16777216 bytes"),
        "{}",
        &body[..200]
    );
    assert!(v["truncated"]["hits"].as_u64().unwrap() < 1050);
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    let rss = rss_kib(pid).unwrap();
    eprintln!(
        "big answer: {} bytes, {} of 1050 hits, {:?}; parser RSS {rss} KiB",
        body.len(),
        v["truncated"]["hits"],
        t.elapsed()
    );
    assert!(
        rss < 1024 * 1024,
        "parser RSS {rss} KiB after the big answer"
    );
    assert!(healthy(port));

    // Odd requests.
    let (status, v) = http_request(port, "POST", "/search").unwrap();
    assert_eq!(status, 405, "{v}");
    let (status, _) = get("/nowhere").unwrap();
    assert_eq!(status, 404);
    let (status, _) = get("/search?q=%zz").unwrap();
    assert_eq!(status, 400);
    let (status, v) = get(&format!("/search?{}=1", "k".repeat(4000))).unwrap();
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().len() < 300, "{v}");
    assert!(healthy(port));

    // A flood of connections that send nothing: beyond the cap they are
    // refused; when they go, the API answers again, and indexing went on.
    raise_open_files(20_000);
    let flood: Vec<std::net::TcpStream> = (0..10_000)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert!(flood.len() > 5_000, "only {} connections", flood.len());
    h.append("big", b"written during the flood\n");
    assert_eq!(
        h.rill.wait_count("flood", &[], 1, Duration::from_secs(20)),
        Some(1)
    );
    drop(flood);
    assert!(
        wait_until(Duration::from_secs(20), || http_get(port, "/health")
            .is_some_and(|(s, _)| s == 200)),
        "the API never answered again after the flood; log:\n{}",
        h.rill.log()
    );
    assert_eq!(
        parser_pid(&h.rill),
        pid,
        "the parser was restarted; log:\n{}",
        h.rill.log()
    );
    let rss = rss_kib(pid).unwrap();
    eprintln!("after the flood: parser RSS {rss} KiB");
    assert!(rss < 1024 * 1024, "parser RSS {rss} KiB after the flood");
}

/// Issue 17, item 6: a search API that hangs (here: its parser stopped
/// with SIGSTOP) is shown in `rill status`, and its parser is restarted.
#[test]
fn a_hung_search_api_is_reported_and_its_parser_restarted() {
    let h = OneHost::new(&["app"]);
    let port = free_port();
    h.rill
        .append_config(&format!("search:\n  listen: 127.0.0.1:{port}\n"));
    let h = OneHost::start(h, &["app"]);
    assert!(healthy(port));
    let api = |rill: &Rill| rill.status().map(|s| s["search_api"].clone());
    assert!(wait_until(Duration::from_secs(15), || api(&h.rill)
        .is_some_and(|a| a["ok"] == true)));
    let out = h.rill.rill(&["status"]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("search api 127.0.0.1:{port}: answers")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let pid = parser_pid(&h.rill);
    // SAFETY: signalling a process of this test's own tree.
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    assert!(
        wait_until(Duration::from_secs(20), || api(&h.rill).is_some_and(|a| a
            ["ok"]
            == false
            && a["error"].as_str().is_some_and(|e| e.contains("no answer")))),
        "{:?}",
        api(&h.rill)
    );
    // Within 30 s of hanging (plus a probe and the kill's grace).
    assert!(
        wait_until(Duration::from_secs(60), || h.rill.status().is_some_and(
            |s| {
                s["children"].as_array().unwrap().iter().any(|c| {
                    c["name"] == "parser"
                        && c["pid"].as_u64().is_some_and(|p| p as u32 != pid)
                        && c["last_exit"]
                            .as_str()
                            .is_some_and(|e| e.contains("restarted: its search api"))
                })
            }
        )),
        "the parser was never restarted; log:\n{}",
        h.rill.log()
    );
    assert!(wait_until(Duration::from_secs(20), || http_get(
        port, "/health"
    )
    .is_some_and(|(s, _)| s == 200)));
    h.append("app", b"after the restart\n");
    assert_eq!(
        h.rill
            .wait_count("restart", &[], 1, Duration::from_secs(20)),
        Some(1)
    );
}

/// Issue 17, items 7 and 11: the session protocol refuses oversized ids,
/// repeated fields and second 60, and a loop of 4 MB ids leaves ssh_tap's
/// memory where it was (it grew from 12 to 604 MB).
#[test]
fn session_requests_with_huge_ids_repeated_fields_or_second_60_are_refused() {
    use rill_e2e::session::{now, Kind, SessionClient};
    let h = OneHost::new(&["app"]);
    h.rill.add_host_yaml("web01", "sessions: {max: 2, pool: 0}");
    let h = OneHost::start(h, &["app"]);
    let mut c = SessionClient::connect(&h.rill.sessions_ipc("web01"), Kind::Req);
    assert!(
        c.wait_until_served(Duration::from_secs(20)),
        "{}",
        h.rill.log()
    );
    let tap = h.rill.ssh_tap_pids()[0];
    let before = rss_kib(tap).unwrap();
    let huge = "u".repeat(4_000_000);
    for _ in 0..100 {
        let req = serde_json::json!({
            "unique_id": huge, "client_id": "c", "datetime": now(), "command": "get_session_info"
        });
        let body = serde_json::to_vec(&req).unwrap();
        let r = c
            .exchange_raw(&[&body], Duration::from_secs(10))
            .expect("a reply");
        assert_eq!(r["status"], "failed");
        assert_eq!(r["unique_id"], Value::Null, "an id that long is not echoed");
        assert!(
            r["failure_reason"]
                .as_str()
                .unwrap()
                .contains("is 4000000 bytes long; expected at most 128"),
            "{r}"
        );
    }
    let after = rss_kib(tap).unwrap();
    eprintln!("100 requests with 4 MB ids: ssh_tap RSS {before} -> {after} KiB");
    assert!(
        after < before + 64 * 1024,
        "ssh_tap grew from {before} to {after} KiB"
    );
    let dt = now();
    let repeated = format!(
        r#"{{"unique_id":"a","client_id":"c","datetime":"{dt}","command":"get_session_info","unique_id":"b"}}"#
    );
    let r = c
        .exchange_raw(&[repeated.as_bytes()], Duration::from_secs(10))
        .unwrap();
    assert!(
        r["failure_reason"]
            .as_str()
            .unwrap()
            .contains("field `unique_id` appears twice"),
        "{r}"
    );
    let leap = format!("{}60{}", &dt[..17], &dt[19..]);
    let r = c.call("get_session_info", serde_json::json!({ "datetime": leap }));
    assert!(
        r["failure_reason"]
            .as_str()
            .unwrap()
            .contains("seconds go from 00 to 59"),
        "{r}"
    );
    // The server still serves well-formed requests.
    let r = c.call("get_session_info", serde_json::json!({}));
    assert_eq!(r["status"], "ok", "{r}");
}
