//! Rill attacked as a hostile or careless user would (issue 17): paths that
//! hold shell syntax and placeholders, queries and durations that explode,
//! floods of connections and requests, broken configs. Each gets a clear
//! refusal within a bound on time and memory, nothing runs that should not,
//! and the services keep answering.

use std::time::{Duration, Instant};

use rill_e2e::*;
use serde_json::Value;

#[test]
fn a_path_full_of_shell_syntax_is_just_a_path() {
    let marker = format!("rill-pwned-{}", std::process::id());
    // Quotes, command substitution, backticks, `;`, `&&`, `|`, `$VAR`, spaces.
    let name = format!(
        "it's a \"log\"; touch {marker}1 && $(touch {marker}2) `touch {marker}3` | $HOME.log"
    );
    let user = TestUser::get().unwrap();
    let sshd = Sshd::start(SshdOptions::default()).unwrap();
    let key = user.authorize_new_key().unwrap();
    let remote = user.scratch_dir().unwrap();
    let file = remote.file(&name);
    remote.append(&name, b"").unwrap();
    let mut rill = Rill::new(
        &[TestHost::web01(&sshd, &user, &key)],
        &[TestLog {
            name: "odd",
            path: &file,
            hosts: &["web01"],
        }],
        &[sshd.known_hosts_line()],
    );
    rill.start_following("web01");
    remote
        .append(&name, b"literal line one\nliteral line two\n")
        .unwrap();
    assert_eq!(
        rill.wait_count("literal", &[], 2, Duration::from_secs(15)),
        Some(2),
        "{}",
        rill.log()
    );
    let status = rill.host_status("web01").unwrap();
    assert_eq!(status["logs"][0]["path"], file.display().to_string());
    for i in 1..=3 {
        for dir in [&user.home, &remote.path, &std::path::PathBuf::from("/tmp")] {
            let m = dir.join(format!("{marker}{i}"));
            assert!(
                !m.exists(),
                "{} was created: the path ran as code",
                m.display()
            );
        }
    }
}

/// A folder whose name holds every placeholder the follow scripts ever
/// used, shell syntax and a newline-free mix of quotes; `PWN` is the file
/// its commands would create.
fn hostile_dir() -> String {
    let pwn = pwn();
    format!("d @DIR@ @BASE@;touch {pwn};# $(touch {pwn}) 'q' \"w\" \\ !")
}

/// The name of the file an injected command would create: this test
/// run's own, so a file left by an older run (or another test) is not it.
fn pwn() -> String {
    format!("RILLPWN-{}", std::process::id())
}

/// Regression (issue 17, item 1): `@BASE@` in a path closed the remote
/// script's quotes, so `x@BASE@;touch RILLPWN;#` created `~/RILLPWN` at
/// every connect; `t@IV@.log` was followed as `t1.log`.
#[test]
fn placeholders_in_folder_and_file_names_are_followed_literally() {
    let pwn = pwn();
    let hostile_dir = hostile_dir();
    let injected = format!("x@BASE@;touch {pwn};#");
    let names = [
        injected.as_str(),
        "t@IV@.log",
        "@PATH@@DIR@@FPB@@CHUNK@@START@@MODE@@NONCE@@STREAM_POLL@",
        "caf\u{e9} \u{1f600} it's.log",
    ];
    let user = TestUser::get().unwrap();
    let sshd = Sshd::start(SshdOptions::default()).unwrap();
    let key = user.authorize_new_key().unwrap();
    let remote = user.scratch_dir().unwrap();
    std::fs::create_dir(remote.file(&hostile_dir)).unwrap();
    // What the old substitution turned the names into.
    for decoy in ["t1.log", "x", "RILLPWN.log"] {
        remote
            .append(&format!("{hostile_dir}/{decoy}"), b"decoy line\n")
            .unwrap();
    }
    let files: Vec<_> = names
        .iter()
        .map(|n| remote.file(&format!("{hostile_dir}/{n}")))
        .collect();
    let log_names: Vec<String> = (0..names.len()).map(|i| format!("l{i}")).collect();
    let logs: Vec<TestLog> = files
        .iter()
        .zip(&log_names)
        .map(|(path, name)| TestLog {
            name,
            path,
            hosts: &["web01"],
        })
        .collect();
    for n in names {
        remote.append(&format!("{hostile_dir}/{n}"), b"").unwrap();
    }
    let mut rill = Rill::new(
        &[TestHost::web01(&sshd, &user, &key)],
        &logs,
        &[sshd.known_hosts_line()],
    );
    rill.start_following("web01");
    for (i, n) in names.iter().enumerate() {
        remote
            .append(
                &format!("{hostile_dir}/{n}"),
                format!("written to l{i}\n").as_bytes(),
            )
            .unwrap();
    }
    for (i, log) in log_names.iter().enumerate() {
        assert_eq!(
            rill.wait_count("written", &["--log", log], 1, Duration::from_secs(15)),
            Some(1),
            "{log} ({:?}) never got its line; log:\n{}",
            names[i],
            rill.log()
        );
        let out = rill.rill(&["search", "--json", "--log", log, "*"]);
        let hits: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(hits.len(), 1, "{log}: {hits:?}");
        assert_eq!(hits[0]["body"], format!("written to l{i}"));
        assert_eq!(hits[0]["path"], files[i].display().to_string());
    }
    assert_eq!(
        rill.count("decoy", &[]),
        Some(0),
        "a decoy file was followed"
    );
    // A restart reconnects (the injection ran at every connect).
    rill.stop(Duration::from_secs(10));
    rill.start_following("web01");
    for dir in [
        &user.home,
        &remote.path,
        &remote.file(&hostile_dir),
        &std::path::PathBuf::from("/tmp"),
    ] {
        assert!(
            !dir.join(&pwn).exists(),
            "{}/{pwn} was created: a path ran as a command",
            dir.display()
        );
    }
}

/// Regression (issue 17, item 8): a rotated file was found again by parsing
/// `ls -ai` with `read -r i n`, so a file renamed to a name with a newline
/// or a leading blank while the tap was down lost its last lines.
#[test]
fn lines_left_in_a_file_renamed_oddly_while_the_tap_was_down_are_indexed() {
    for rotated in ["app.log.1\nx", " app.log.1"] {
        let mut h = OneHost::running(&["app"]);
        h.append("app", b"before 1\nbefore 2\n");
        assert_eq!(
            h.rill.wait_count("before", &[], 2, Duration::from_secs(15)),
            Some(2),
            "{}",
            h.rill.log()
        );
        h.rill.stop(Duration::from_secs(10));
        h.append("app", b"while down 1\nwhile down 2\n");
        std::fs::rename(h.file("app"), h.remote.file(rotated)).unwrap();
        h.append("app", b"new file 1\n");
        h.rill.start();
        assert_eq!(
            h.rill
                .wait_count("down OR new", &[], 3, Duration::from_secs(20)),
            Some(3),
            "renamed to {rotated:?}; log:\n{}",
            h.rill.log()
        );
        assert_eq!(h.rill.count("*", &[]), Some(5));
    }
}

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

/// Issue 17, item 9: broken configs get exit 2 from every binary and an
/// error naming the file, the key and what was expected; no panic, no
/// secret echoed.
#[test]
fn every_binary_refuses_a_broken_config_with_exit_2_and_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let host = "web01: {address: 127.0.0.1, user: u, auth: {agent: true}}";
    let cases = [
        (
            format!("hosts:\n  {host}\n  db01: {{address: b, user: u, auth: {{agent: true}}}}\n  {host}\nlogs: {{x: {{path: /x, hosts: all}}}}\n"),
            "hosts: `web01` is written twice (lines 2 and 4)",
        ),
        (
            format!("hosts: {{{host}}}\nlogs:\n  x: {{path: /x, hosts: all}}\n  x: {{path: /y, hosts: all}}\n"),
            "logs: `x` is written twice (lines 3 and 4)",
        ),
        (
            format!("hosts: {{{host}}}\nlogs: {{x: {{path: /x, hosts: all}}}}\nindex: {{retention: 99999999999999999999d}}\n"),
            "index.retention: expected a duration like 500ms, 1s, 5m, 1h or 7d, got \"99999999999999999999d\", which is too long",
        ),
        (
            format!("hosts: {{{host}}}\nlogs: {{x: {{path: /x, hosts: all}}}}\ntap: {{partial_line_after: 200000000000000d}}\n"),
            "tap.partial_line_after: expected between 100ms and 1h, got 200000000000000d",
        ),
        (
            "hosts: {web01: {address: a, user: u, auth: \"Hunter2\"}}\nlogs: {x: {path: /x, hosts: all}}\n".to_owned(),
            "hosts.web01.auth: invalid type: a value (not shown: it may be a secret)",
        ),
    ];
    for (i, (yaml, want)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        let runs: [(&str, &[&str]); 6] = [
            ("rill", &["check-config"]),
            ("supervisor", &[]),
            ("parser", &[]),
            ("masspinger", &[]),
            ("ssh_tap", &["--host", "web01"]),
            ("robust_ssh_tap", &["--host", "web01"]),
        ];
        for (bin_name, extra) in runs {
            let out = std::process::Command::new(bin(bin_name))
                .args(extra)
                .arg("--config")
                .arg(&path)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{bin_name} on case {i}: {err}");
            assert!(
                err.contains(&format!("{}: {want}", path.display())),
                "{bin_name} on case {i}: {err}"
            );
            assert!(
                !err.contains("panicked") && !err.contains("Hunter2"),
                "{bin_name}: {err}"
            );
        }
    }
}

/// Issue 17, item 10: the state dir and what is in it are the operator's
/// alone; a private key others can read is warned about.
#[test]
fn state_is_private_and_readable_keys_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let mut h = OneHost::new(&["app"]);
    let state = h.rill.dir.path().join("state");
    // A state dir left open by an older rill is closed at start.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&h.key.private, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = h.rill.rill(&["check-config"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!(
            "warning: hosts.web01.auth.key: {} (mode 0644) is readable by other users; chmod 600 it",
            h.key.private.display()
        )),
        "{text}"
    );
    h = OneHost::start(h, &["app"]);
    h.append("app", b"a line\n");
    assert_eq!(
        h.rill.wait_count("line", &[], 1, Duration::from_secs(15)),
        Some(1)
    );
    assert!(h
        .rill
        .log()
        .contains("is readable by other users; chmod 600 it"));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    let mut files = 0;
    let mut stack = vec![state.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                assert_eq!(mode(&p), 0o700, "{}", p.display());
                stack.push(p);
            } else if ft.is_file() && p.file_name().unwrap() != "known_hosts" {
                // known_hosts was written by this test before the start.
                assert_eq!(mode(&p), 0o600, "{}", p.display());
                files += 1;
            }
        }
    }
    assert!(files > 5, "only {files} files in the state dir");
}
