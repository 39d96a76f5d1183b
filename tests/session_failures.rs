//! Issue 4: every way a session request fails, driven like any client
//! would over REQ and DEALER sockets: malformed input, the cap, a session
//! whose shell exited, a short write, a session deleted twice. Each reply
//! says why, and the socket serves the next request.

use std::time::Duration;

use rill_e2e::session::*;
use rill_e2e::*;
use serde_json::json;

/// Done-when 2: every malformed input gets `failed` with a reason naming
/// the problem, and the socket serves the next good request, for REQ
/// clients and DEALER clients alike.
#[test]
fn every_malformed_request_fails_with_its_reason_and_the_next_one_is_served() {
    let h = host_with_sessions("sessions: {max: 2, pool: 1, max_request_age: 5s}");
    let tap = h.rill.ssh_tap_pids();
    assert_eq!(tap.len(), 1);
    for kind in [Kind::Req, Kind::Dealer] {
        let mut c = served(&h, kind);
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
                "over 4 MiB",
                base(
                    &c,
                    "send_data_to_session",
                    json!({"session_id": "x", "contents": "y".repeat(5 << 20)}),
                ),
                "over the 4 MiB limit",
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
        assert!(!h.shells().contains_key(a_id));
        let b_id = b["session_id"].as_str().unwrap();
        // A short write fails and says how much went in: with the terminal
        // in non-canonical mode (nothing is dropped) and the shell asleep,
        // no input is read, so the SSH window (2 MiB) fills up.
        let publish = b["publish_zeromq_bind"].as_str().unwrap();
        let mut out = SessionOutput::subscribe(publish, b_id);
        assert!(c.wait_subscribed(b_id));
        let busy = c.call(
            "send_data_to_session",
            json!({"session_id": b_id, "contents": "stty -icanon -echo && echo now-''asleep && sleep 10\n"}),
        );
        assert_eq!(busy["status"], "ok", "{busy}");
        assert!(out.read_until(b"now-asleep", Duration::from_secs(10)));
        let flood = "x".repeat(3 << 20);
        let short = c.call(
            "send_data_to_session",
            json!({"session_id": b_id, "contents": flood}),
        );
        assert_eq!(short["status"], "failed", "{}", short["failure_reason"]);
        let written = short["bytes_written"].as_u64().unwrap();
        eprintln!("{kind:?}: short write: {}", short["failure_reason"]);
        assert!(written > 0 && written < 3 << 20, "{written}");
        assert!(
            short["failure_reason"]
                .as_str()
                .unwrap()
                .contains(&format!("wrote {written} of {} bytes", 3 << 20)),
            "{}",
            short["failure_reason"]
        );
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
