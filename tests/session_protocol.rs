//! Issue 4: the JSON session-control protocol, driven like any client would:
//! REQ and DEALER sockets on the host's sessions ROUTER, SUB sockets on each
//! session's publish endpoint, and the server's process table (the
//! `rilltest` user's processes under a real sshd) to check what really runs.

use std::time::Duration;

use rill_e2e::session::*;
use rill_e2e::*;
use serde_json::json;

/// web01 on a real sshd with `sessions_yaml` under it, supervisor running.
fn host_with_sessions(sessions_yaml: &str) -> OneHost {
    let h = OneHost::new(&["app"]);
    h.rill.add_host_yaml("web01", sessions_yaml);
    OneHost::start(h, &["app"])
}

/// Done-when 1: create, subscribe, `echo hi-<random>`, see it, counters
/// agree with what was sent and received, delete, the shell is gone.
#[test]
fn a_session_runs_a_command_reports_its_counters_and_is_gone_after_delete() {
    let h = host_with_sessions("sessions: {max: 4, pool: 2}");
    let mut client = SessionClient::connect(&h.rill.sessions_ipc("web01"), Kind::Req);
    assert!(
        client.wait_until_served(Duration::from_secs(20)),
        "{}",
        h.rill.log()
    );
    // The pool is warmed at start: two shells wait before anyone asks.
    assert!(
        wait_until(Duration::from_secs(20), || remote_shells(&h.user).len()
            == 2),
        "two pooled shells: {:?}\n{}",
        h.user.processes(),
        h.rill.log()
    );
    assert!(
        client.sessions().is_empty(),
        "pooled shells are not sessions"
    );

    let created = client.call("create_session", json!({}));
    assert_eq!(created["status"], "ok", "{created}");
    let id = created["session_id"].as_str().unwrap().to_owned();
    let publish = created["publish_zeromq_bind"].as_str().unwrap().to_owned();
    let shells = remote_shells(&h.user);
    let pid = *shells
        .get(&id)
        .unwrap_or_else(|| panic!("session {id} has a shell on the server: {shells:?}"));

    let mut out = SessionOutput::subscribe(&publish, &id);
    // Wait for our subscription to reach the server (info says so).
    assert!(
        wait_until(Duration::from_secs(10), || client.sessions()[&id]
            ["subscribed"]
            == true),
        "subscription seen"
    );
    let marker = format!("hi-{}", rand_number());
    let command = format!("echo {marker}\n");
    let sent = client.call(
        "send_data_to_session",
        json!({"session_id": id, "contents": command}),
    );
    assert_eq!(sent["status"], "ok", "{sent}");
    assert_eq!(sent["bytes_written"], command.len());
    // The shell's output line (not the terminal's echo of the command),
    // then the prompt again.
    let output_line = format!("\r\n{marker}\r\nrill$ ");
    assert!(
        out.read_until(output_line.as_bytes(), Duration::from_secs(10)),
        "saw the output: {:?}",
        String::from_utf8_lossy(&out.bytes)
    );

    eprintln!("session output: {:?}", String::from_utf8_lossy(&out.bytes));
    let info = wait_for(Duration::from_secs(10), || {
        out.read_for(Duration::from_millis(50));
        let s = client.sessions().remove(&id)?;
        (s["bytes_read"] == out.bytes.len()).then_some(s)
    })
    .unwrap_or_else(|| panic!("bytes_read matches {} bytes received", out.bytes.len()));
    assert_eq!(info["bytes_written"], command.len());
    assert_eq!(info["client_id"], client.client_id.as_str());
    let opened = info["datetime"].as_str().unwrap();
    assert!(opened.len() == 24 && opened.ends_with('Z'), "{opened}");
    let one = client.call("get_session_info", json!({"session_id": id}));
    assert_eq!(one["sessions"].as_array().unwrap().len(), 1, "{one}");

    let deleted = client.call("delete_session", json!({"session_id": id}));
    assert_eq!(deleted["status"], "ok", "{deleted}");
    assert!(
        wait_until(Duration::from_secs(10), || !h
            .user
            .processes()
            .iter()
            .any(|p| p.pid == pid)),
        "the shell (pid {pid}) is gone: {:?}",
        h.user.processes()
    );
    assert!(client.sessions().is_empty());
    let again = client.call(
        "send_data_to_session",
        json!({"session_id": id, "contents": "echo again\n"}),
    );
    assert_eq!(again["status"], "failed");
    assert!(
        again["failure_reason"]
            .as_str()
            .unwrap()
            .contains("was deleted"),
        "{again}"
    );
    // Never reused: the pool is refilled with new shells, not the deleted one.
    assert!(
        wait_until(Duration::from_secs(20), || {
            let s = remote_shells(&h.user);
            s.len() == 2 && !s.contains_key(&id)
        }),
        "{:?}",
        remote_shells(&h.user)
    );
}

fn rand_number() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32 % 32768
}

/// Done-when 2: every malformed input gets `failed` with a reason naming
/// the problem, and the socket serves the next good request, for REQ
/// clients and DEALER clients alike.
#[test]
fn every_malformed_request_fails_with_its_reason_and_the_next_one_is_served() {
    let h = host_with_sessions("sessions: {max: 2, pool: 1, max_request_age: 5s}");
    let endpoint = h.rill.sessions_ipc("web01");
    let tap = h.rill.ssh_tap_pids();
    assert_eq!(tap.len(), 1);
    for kind in [Kind::Req, Kind::Dealer] {
        let mut c = SessionClient::connect(&endpoint, kind);
        assert!(
            c.wait_until_served(Duration::from_secs(20)),
            "{}",
            h.rill.log()
        );
        let stale = (chrono::Utc::now() - chrono::TimeDelta::seconds(60))
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        let future = (chrono::Utc::now() + chrono::TimeDelta::seconds(60))
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        let dup = c.build("get_session_info", json!({}));
        let base = |c: &SessionClient, command: &str, fields: serde_json::Value| {
            serde_json::to_vec(&c.build(command, fields)).unwrap()
        };
        let without = |c: &SessionClient, key: &str| {
            let mut v = c.build("get_session_info", json!({}));
            v.as_object_mut().unwrap().remove(key);
            serde_json::to_vec(&v).unwrap()
        };
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("not JSON", b"create_session please".to_vec(), "not JSON"),
            ("not UTF-8", vec![0xff, 0xfe, 0x00], "not JSON"),
            ("empty body", Vec::new(), "not JSON"),
            (
                "not an object",
                b"[1,2,3]".to_vec(),
                "expected one JSON object, got an array",
            ),
            (
                "missing unique_id",
                without(&c, "unique_id"),
                "missing field `unique_id`",
            ),
            (
                "missing client_id",
                without(&c, "client_id"),
                "missing field `client_id`",
            ),
            (
                "missing datetime",
                without(&c, "datetime"),
                "missing field `datetime`",
            ),
            (
                "missing command",
                without(&c, "command"),
                "missing field `command`",
            ),
            (
                "mistyped unique_id",
                base(&c, "create_session", json!({"unique_id": 42})),
                "field `unique_id` must be a string, got a number",
            ),
            (
                "mistyped session_id",
                base(&c, "delete_session", json!({"session_id": {"id": 1}})),
                "field `session_id` must be a string, got an object",
            ),
            (
                "missing contents",
                base(&c, "send_data_to_session", json!({"session_id": "x"})),
                "missing field `contents`",
            ),
            (
                "unknown field",
                base(&c, "create_session", json!({"shell": "bash"})),
                "unknown field `shell` for create_session",
            ),
            (
                "no milliseconds",
                base(
                    &c,
                    "get_session_info",
                    json!({"datetime": "2024-01-01T00:00:00Z"}),
                ),
                "bad datetime",
            ),
            (
                "six fraction digits",
                base(
                    &c,
                    "get_session_info",
                    json!({"datetime": "2024-01-01T00:00:00.000000Z"}),
                ),
                "exactly three millisecond digits",
            ),
            (
                "no Z",
                base(
                    &c,
                    "get_session_info",
                    json!({"datetime": "2024-01-01T00:00:00.000"}),
                ),
                "bad datetime",
            ),
            (
                "stale datetime",
                base(&c, "get_session_info", json!({"datetime": stale})),
                "stale request",
            ),
            (
                "datetime in the future",
                base(&c, "get_session_info", json!({"datetime": future})),
                "in the future",
            ),
            (
                "unknown command",
                base(&c, "reboot_server", json!({})),
                "unknown command \"reboot_server\"",
            ),
            (
                "unknown session (send)",
                base(
                    &c,
                    "send_data_to_session",
                    json!({"session_id": "no-such", "contents": "x"}),
                ),
                "unknown session \"no-such\"",
            ),
            (
                "unknown session (delete)",
                base(&c, "delete_session", json!({"session_id": "no-such"})),
                "unknown session",
            ),
            (
                "unknown session (info)",
                base(&c, "get_session_info", json!({"session_id": "no-such"})),
                "unknown session",
            ),
            (
                "first use of a unique_id",
                serde_json::to_vec(&dup).unwrap(),
                "",
            ),
            (
                "replayed unique_id",
                serde_json::to_vec(&dup).unwrap(),
                "duplicate unique_id",
            ),
        ];
        for (what, body, want) in cases {
            let reply = c
                .exchange_raw(&[&body], Duration::from_secs(10))
                .unwrap_or_else(|| panic!("{kind:?} {what}: no reply\n{}", h.rill.log()));
            check_reply_shape(&reply);
            if want.is_empty() {
                assert_eq!(reply["status"], "ok", "{kind:?} {what}: {reply}");
            } else {
                assert_eq!(reply["status"], "failed", "{kind:?} {what}: {reply}");
                let reason = reply["failure_reason"].as_str().unwrap();
                assert!(reason.contains(want), "{kind:?} {what}: {reason}");
            }
            // The ids are echoed whenever the request carried them as strings.
            if let Ok(sent) = serde_json::from_slice::<serde_json::Value>(&body) {
                if sent["unique_id"].is_string() {
                    assert_eq!(reply["unique_id"], sent["unique_id"], "{what}");
                }
            }
            let next = c.call("get_session_info", json!({}));
            assert_eq!(next["status"], "ok", "{kind:?} after {what}: {next}");
        }
        // Two JSON objects in one message.
        let one = serde_json::to_vec(&c.build("get_session_info", json!({}))).unwrap();
        let reply = c
            .exchange_raw(&[&one, &one], Duration::from_secs(10))
            .unwrap();
        assert_eq!(reply["status"], "failed");
        assert!(
            reply["failure_reason"]
                .as_str()
                .unwrap()
                .contains("got 2 frames"),
            "{reply}"
        );
        assert_eq!(c.call("get_session_info", json!({}))["status"], "ok");

        // The cap: max 2, so the third create fails; deleting makes room.
        let a = c.call("create_session", json!({}));
        let b = c.call("create_session", json!({}));
        assert_eq!(
            (a["status"].as_str(), b["status"].as_str()),
            (Some("ok"), Some("ok")),
            "{a} {b}"
        );
        let third = c.call("create_session", json!({}));
        assert_eq!(third["status"], "failed", "{third}");
        assert!(
            third["failure_reason"]
                .as_str()
                .unwrap()
                .contains("cap reached"),
            "{third}"
        );
        assert_eq!(c.sessions().len(), 2);
        // A shell that exits ends its session; asking about it says so.
        let a_id = a["session_id"].as_str().unwrap();
        let exit = c.call(
            "send_data_to_session",
            json!({"session_id": a_id, "contents": "exit\n"}),
        );
        assert_eq!(exit["status"], "ok", "{exit}");
        let ended = wait_for(Duration::from_secs(10), || {
            let r = c.call("get_session_info", json!({"session_id": a_id}));
            (r["status"] == "failed").then_some(r)
        })
        .expect("the exited session goes away");
        assert!(
            ended["failure_reason"]
                .as_str()
                .unwrap()
                .contains("has ended: its shell exited"),
            "{ended}"
        );
        assert!(!remote_shells(&h.user).contains_key(a_id));
        let b_id = b["session_id"].as_str().unwrap();
        assert_eq!(
            c.call("delete_session", json!({"session_id": b_id}))["status"],
            "ok"
        );
        let deleted_again = c.call("delete_session", json!({"session_id": b_id}));
        assert!(
            deleted_again["failure_reason"]
                .as_str()
                .unwrap()
                .contains("was deleted"),
            "{deleted_again}"
        );
        assert!(c.sessions().is_empty());
    }
    // Nothing crashed: the ssh_tap serving all this is the one that started.
    assert_eq!(h.rill.ssh_tap_pids(), tap, "{}", h.rill.log());
}
