//! Issue 4: the JSON session-control protocol, driven like any client would:
//! REQ and DEALER sockets on the host's sessions ROUTER, SUB sockets on each
//! session's publish endpoint, and the server's process table (the
//! `rilltest` user's processes under a real sshd) to check what really runs.

use std::collections::BTreeMap;
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

/// A client of web01's sessions socket, once the server answers it.
fn served(h: &OneHost, kind: Kind) -> SessionClient {
    let mut client = SessionClient::connect(&h.rill.sessions_ipc("web01"), kind);
    assert!(
        client.wait_until_served(Duration::from_secs(20)),
        "{}",
        h.rill.log()
    );
    client
}

/// Done-when 1: create, subscribe, `echo hi-<random>`, see it, counters
/// agree with what was sent and received, delete, the shell is gone.
#[test]
fn a_session_runs_a_command_reports_its_counters_and_is_gone_after_delete() {
    let h = host_with_sessions("sessions: {max: 4, pool: 2}");
    let mut client = served(&h, Kind::Req);
    // The pool is warmed at start: two shells wait before anyone asks.
    assert!(
        wait_until(Duration::from_secs(20), || h.shells().len() == 2),
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
    let shells = h.shells();
    let pid = *shells
        .get(&id)
        .unwrap_or_else(|| panic!("session {id} has a shell on the server: {shells:?}"));

    let mut out = SessionOutput::subscribe(&publish, &id);
    // Wait for our subscription to reach the server (info says so).
    assert!(client.wait_subscribed(&id), "subscription seen");
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
            let s = h.shells();
            s.len() == 2 && !s.contains_key(&id)
        }),
        "{:?}",
        h.shells()
    );
}

/// A deleted session leaves nothing behind on the server: not even a
/// background job that ignores the hangup sshd sends when the terminal
/// goes away.
#[test]
fn deleting_a_session_ends_its_background_jobs_too() {
    let h = host_with_sessions("sessions: {max: 4, pool: 1}");
    let mut client = served(&h, Kind::Req);
    // Two `sleep N`s that ignore SIGHUP: one in the background, one in the
    // foreground of a backgrounded subshell that ignores it too.
    let n = 400_000 + rand_number();
    let sleeps = |h: &OneHost| -> Vec<String> {
        h.user
            .processes()
            .into_iter()
            .map(|p| p.cmdline)
            .filter(|c| c == &format!("sleep {n}") || c == &format!("sleep {}", n + 1))
            .collect()
    };
    // A new session running both; its id.
    let with_jobs = |client: &mut SessionClient| -> String {
        let created = client.call("create_session", json!({}));
        assert_eq!(created["status"], "ok", "{created}");
        let id = created["session_id"].as_str().unwrap().to_owned();
        let mut out =
            SessionOutput::subscribe(created["publish_zeromq_bind"].as_str().unwrap(), &id);
        assert!(client.wait_subscribed(&id), "subscription seen");
        let jobs = format!(
            "(trap '' HUP; exec sleep {n}) & (trap '' HUP; sleep {}) & echo started-$((1+1))\n",
            n + 1
        );
        let sent = client.call(
            "send_data_to_session",
            json!({"session_id": id, "contents": jobs}),
        );
        assert_eq!(sent["status"], "ok", "{sent}");
        assert!(
            out.read_until(b"started-2", Duration::from_secs(10)),
            "{:?}",
            String::from_utf8_lossy(&out.bytes)
        );
        assert!(
            wait_until(Duration::from_secs(10), || sleeps(&h).len() == 2),
            "both jobs run: {:?}",
            h.user.processes()
        );
        id
    };

    let id = with_jobs(&mut client);
    // The session and the pooled shell warmed up behind it.
    let pool = wait_for(Duration::from_secs(20), || {
        let s = h.shells();
        (s.len() == 2).then_some(s)
    })
    .unwrap_or_else(|| panic!("two shells: {:?}", h.shells()));
    let deleted = client.call("delete_session", json!({"session_id": id}));
    assert_eq!(deleted["status"], "ok", "{deleted}");
    assert!(
        wait_until(Duration::from_secs(5), || sleeps(&h).is_empty()),
        "the session's jobs outlived it: {:?}\n{}",
        sleeps(&h),
        h.rill.log()
    );
    // The pooled shell is untouched: the same shell, same pid.
    let pooled: BTreeMap<String, u32> = pool.into_iter().filter(|(s, _)| *s != id).collect();
    assert!(
        wait_until(Duration::from_secs(10), || h.shells() == pooled),
        "{:?} instead of {pooled:?}",
        h.shells()
    );

    // Sessions still open when Rill stops are ended the same way.
    with_jobs(&mut client);
    let mut h = h;
    assert!(h.rill.stop(Duration::from_secs(10)).is_some());
    assert!(
        wait_until(Duration::from_secs(5), || sleeps(&h).is_empty()
            && h.shells().is_empty()),
        "left on the server after stopping: {:?}",
        h.user.processes()
    );
}

/// `rill status` shows each host's session server: open sessions against
/// the cap, ready shells against the pool, and where to connect.
#[test]
fn rill_status_shows_open_and_ready_sessions() {
    let h = host_with_sessions("sessions: {max: 4, pool: 2}");
    let mut client = served(&h, Kind::Req);
    let endpoint = h.rill.sessions_ipc("web01");
    let status_shows = |want: &str| {
        wait_for(Duration::from_secs(20), || {
            let out = h.rill.rill(&["status"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.lines()
                .any(|l| l.trim() == format!("{want}, at {endpoint}"))
                .then_some(text)
        })
        .unwrap_or_else(|| {
            let out = h.rill.rill(&["status"]);
            panic!(
                "rill status never showed {want:?}:\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    };
    status_shows("sessions: 0 open (max 4), 2 ready (pool 2)");
    let created = client.call("create_session", json!({}));
    assert_eq!(created["status"], "ok", "{created}");
    let id = created["session_id"].as_str().unwrap().to_owned();
    // The pool is refilled behind the session handed out.
    status_shows("sessions: 1 open (max 4), 2 ready (pool 2)");
    let json = h.rill.host_status("web01").unwrap();
    assert_eq!(json["sessions"]["open"], 1, "{json}");
    assert_eq!(json["sessions"]["ready"], 2, "{json}");
    let deleted = client.call("delete_session", json!({"session_id": id}));
    assert_eq!(deleted["status"], "ok", "{deleted}");
    status_shows("sessions: 0 open (max 4), 2 ready (pool 2)");
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

/// A socket of `kind` that logs in with `login` (if any), connected to
/// `endpoint` with a monitor attached first; returns the socket and the
/// handshake failure it saw within 10 s, if any.
fn watched_connect(
    ctx: &zmq::Context,
    kind: zmq::SocketType,
    endpoint: &str,
    login: Option<(&str, &str)>,
) -> (zmq::Socket, Option<zmq::SocketEvent>) {
    let s = ctx.socket(kind).unwrap();
    s.set_linger(0).unwrap();
    if let Some((user, password)) = login {
        s.set_plain_username(Some(user)).unwrap();
        s.set_plain_password(Some(password)).unwrap();
    }
    if kind == zmq::SUB {
        s.set_subscribe(b"").unwrap();
    }
    let monitor = format!("inproc://monitor-{}", new_id());
    s.monitor(&monitor, zmq::SocketEvent::ALL as i32).unwrap();
    let mon = ctx.socket(zmq::PAIR).unwrap();
    mon.connect(&monitor).unwrap();
    s.connect(endpoint).unwrap();
    let event = wait_for(Duration::from_secs(10), || {
        let msg = mon.recv_multipart(zmq::DONTWAIT).ok()?;
        let event = zmq::SocketEvent::from_raw(u16::from_le_bytes([msg[0][0], msg[0][1]]));
        matches!(
            event,
            zmq::SocketEvent::HANDSHAKE_FAILED_AUTH
                | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL
                | zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL
        )
        .then_some(event)
    });
    (s, event)
}

/// Done-when 4: an endpoint open to the network takes only allowed
/// addresses with good PLAIN credentials, on its ROUTER and on each
/// session's publish socket; passwords never reach the log; and
/// check-config refuses an open endpoint without allowlist or credentials.
#[test]
fn an_open_endpoint_refuses_strangers_and_wrong_passwords() {
    let port = free_port();
    let password = new_id();
    let h = OneHost::new(&["app"]);
    std::fs::write(
        h.rill.dir.path().join("sessions.users"),
        format!("# who may drive shells\nops:{password}\n"),
    )
    .unwrap();
    h.rill.add_host_yaml(
        "web01",
        &format!(
            "sessions:\n  endpoint: tcp://0.0.0.0:{port}\n  max: 2\n  pool: 1\n  allow: [127.0.0.1/32]\n  credentials_file: sessions.users"
        ),
    );
    let h = OneHost::start(h, &["app"]);
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let good = Some(("ops", password.as_str()));

    let mut ok = SessionClient::connect_with(&endpoint, Kind::Req, good);
    assert!(
        ok.wait_until_served(Duration::from_secs(20)),
        "{}",
        h.rill.log()
    );
    let created = ok.call("create_session", json!({}));
    assert_eq!(created["status"], "ok", "{created}");
    let id = created["session_id"].as_str().unwrap().to_owned();
    let publish = created["publish_zeromq_bind"].as_str().unwrap().to_owned();
    // A wildcard bind is reached at the address the client used.
    let publish_port = publish.rsplit_once(':').unwrap().1;
    assert!(publish.starts_with("tcp://0.0.0.0:"), "{publish}");
    let publish = format!("tcp://127.0.0.1:{publish_port}");

    // Strangers: wrong password, right password from outside the
    // allowlist, no login at all. Each handshake fails; no reply comes.
    let stranger_source = format!("tcp://127.0.0.2:0;127.0.0.1:{port}");
    let ctx = zmq::Context::new();
    use zmq::SocketEvent::{HANDSHAKE_FAILED_AUTH, HANDSHAKE_FAILED_PROTOCOL};
    for (what, at, login, failure) in [
        (
            "wrong password",
            &endpoint,
            Some(("ops", "guessed-wrong")),
            HANDSHAKE_FAILED_AUTH,
        ),
        (
            "outside the allowlist",
            &stranger_source,
            good,
            HANDSHAKE_FAILED_AUTH,
        ),
        // A client without PLAIN speaks another security mechanism: the
        // server drops it (a protocol error, or no detail, by timing).
        ("no login", &endpoint, None, HANDSHAKE_FAILED_PROTOCOL),
    ] {
        let (s, event) = watched_connect(&ctx, zmq::DEALER, at, login);
        let seen = event.unwrap_or_else(|| panic!("{what}: the handshake fails"));
        if failure == HANDSHAKE_FAILED_AUTH {
            assert_eq!(seen, failure, "{what}: refused by the ZAP handler");
        }
        let req = json!({"unique_id": new_id(), "client_id": "x", "datetime": now(), "command": "get_session_info"});
        // After a refused handshake there may be no peer to queue for.
        let _ = s.send_multipart(
            [&b""[..], &serde_json::to_vec(&req).unwrap()],
            zmq::DONTWAIT,
        );
        assert_eq!(s.poll(zmq::POLLIN, 1000).unwrap(), 0, "{what}: no reply");
    }
    let (wrong_sub, event) = watched_connect(&ctx, zmq::SUB, &publish, Some(("ops", "nope")));
    assert_eq!(
        event,
        Some(HANDSHAKE_FAILED_AUTH),
        "the publish socket checks logins too"
    );

    // The allowed client with the right password is served throughout and
    // sees its session's output.
    let mut out = SessionOutput::subscribe_with(&publish, &id, good);
    assert!(ok.wait_subscribed(&id), "subscribed");
    let sent = ok.call(
        "send_data_to_session",
        json!({"session_id": id, "contents": "echo $((6*7))-open\n"}),
    );
    assert_eq!(sent["status"], "ok", "{sent}");
    assert!(out.read_until(b"\r\n42-open\r\n", Duration::from_secs(10)));
    assert_eq!(
        wrong_sub.poll(zmq::POLLIN, 200).unwrap(),
        0,
        "nothing for a wrong password"
    );
    assert_eq!(
        ok.call("delete_session", json!({"session_id": id}))["status"],
        "ok"
    );

    let log = h.rill.log();
    assert!(log.contains("sessions client refused"), "{log}");
    assert!(
        log.contains("127.0.0.2"),
        "the refused address is logged: {log}"
    );
    assert!(
        !log.contains(&password) && !log.contains("guessed-wrong"),
        "no password in the log"
    );

    // check-config refuses the same endpoint without allowlist or credentials.
    for (yaml, key) in [
        (
            format!("sessions: {{endpoint: 'tcp://0.0.0.0:{port}'}}"),
            "hosts.web01.sessions.allow",
        ),
        (
            format!("sessions: {{endpoint: 'tcp://0.0.0.0:{port}', allow: [127.0.0.1/32]}}"),
            "hosts.web01.sessions.credentials_file",
        ),
    ] {
        let cfg = h.rill.dir.path().join("open.yaml");
        std::fs::write(
            &cfg,
            format!("hosts:\n  web01:\n    address: 127.0.0.1\n    user: u\n    auth: {{agent: true}}\n    {yaml}\nlogs: {{app: {{path: /x, hosts: all}}}}\n"),
        )
        .unwrap();
        let out = std::process::Command::new(bin("rill"))
            .args(["check-config", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(key) && err.contains("reachable from other machines"),
            "{err}"
        );
    }
}

/// `rill session` drives the same cycle from the command line.
#[test]
fn the_rill_session_command_creates_sends_lists_and_deletes() {
    let h = host_with_sessions("sessions: {max: 2, pool: 1}");
    let mut probe = served(&h, Kind::Req);
    // As the issue writes it: rill session --config FILE --host H ACTION...
    let session = |args: &[&str]| {
        let out = std::process::Command::new(bin("rill"))
            .arg("session")
            .arg("--config")
            .arg(&h.rill.config)
            .args(["--host", "web01"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        )
    };
    let (code, created, err) = session(&["create"]);
    assert_eq!(code, Some(0), "{err}");
    let (id, publish) = created.split_once(' ').expect("ID ENDPOINT");
    assert!(publish.starts_with("ipc://"), "{created}");
    assert!(h.shells().contains_key(id));

    let mut out = SessionOutput::subscribe(publish, id);
    assert!(probe.wait_subscribed(id));
    let (code, sent, err) = session(&["send", id, "echo cli-$((40+2))\\n"]);
    assert_eq!(
        (code, sent.as_str()),
        (Some(0), "19 bytes written"),
        "{err}"
    );
    assert!(out.read_until(b"\r\ncli-42\r\n", Duration::from_secs(10)));

    let (code, info, _) = session(&["info"]);
    assert_eq!(code, Some(0));
    assert!(
        info.starts_with(id) && info.contains("written=19"),
        "{info}"
    );
    let (_, one, _) = session(&["--json", "info", id]);
    let reply: serde_json::Value = serde_json::from_str(&one).unwrap();
    check_reply_shape(&reply);
    assert_eq!(reply["sessions"][0]["session_id"], id);

    let (code, deleted, err) = session(&["delete", id]);
    assert_eq!((code, deleted.as_str()), (Some(0), "ok"), "{err}");
    let (code, _, err) = session(&["send", id, "echo late\\n"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("send_data_to_session failed") && err.contains("was deleted"),
        "{err}"
    );
    let (code, _, err) = session(&["delete", "no-such-session"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown session"), "{err}");
}

/// A tap that dies (here: killed) is restarted by robust_ssh_tap; the
/// sessions it held are gone on the server too, clients get `failed` for
/// them, and the new tap serves new sessions.
#[test]
fn sessions_of_a_killed_tap_are_gone_and_asking_about_them_fails() {
    let h = host_with_sessions("sessions: {max: 2, pool: 1}");
    let mut c = served(&h, Kind::Dealer);
    let created = c.call("create_session", json!({}));
    let id = created["session_id"].as_str().unwrap().to_owned();
    let old = h.rill.ssh_tap_pids();
    assert_eq!(old.len(), 1);
    let old_shells = wait_for(Duration::from_secs(20), || {
        Some(h.shells()).filter(|s| s.len() == 2)
    })
    .expect("the session and the refilled pool");
    assert_eq!(
        old_shells.len(),
        2,
        "the session and the pool: {old_shells:?}"
    );
    // SAFETY: killing the ssh_tap of the Rill under test.
    unsafe { libc::kill(old[0] as i32, libc::SIGKILL) };
    assert!(
        wait_until(Duration::from_secs(20), || h
            .rill
            .ssh_tap_pids()
            .iter()
            .any(|p| !old.contains(p))),
        "restarted: {}",
        h.rill.log()
    );
    // sshd ends the dead tap's shells when it notices the connection is gone.
    assert!(
        wait_until(Duration::from_secs(30), || {
            let now = h.shells();
            old_shells.keys().all(|id| !now.contains_key(id))
        }),
        "old shells gone: {:?}",
        h.shells()
    );
    let r = wait_for(Duration::from_secs(20), || {
        let req = c.build(
            "send_data_to_session",
            json!({"session_id": id, "contents": "x"}),
        );
        c.exchange(&req, Duration::from_secs(1))
    })
    .unwrap();
    assert_eq!(r["status"], "failed");
    assert!(
        r["failure_reason"]
            .as_str()
            .unwrap()
            .contains("unknown session"),
        "{r}"
    );
    let again = c.call("create_session", json!({}));
    assert_eq!(again["status"], "ok", "{again}");
    assert_ne!(again["session_id"], id);
}
