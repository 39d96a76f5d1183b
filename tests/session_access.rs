//! Issue 4: a sessions endpoint open to the network: the ROUTER and each
//! session's publish socket take only allowed addresses with good PLAIN
//! credentials, passwords stay out of the log, and check-config refuses an
//! open endpoint without an allowlist or credentials.

use std::time::Duration;

use rill_e2e::session::*;
use rill_e2e::*;
use serde_json::json;

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

/// Issue 23: a sessions endpoint open to the network with CURVE: `rill
/// session --key` with an authorized key drives a shell; an unknown key
/// gets no answer and is named in the log as refused; the operator's own
/// default (the server's pair) works too.
#[test]
fn a_curve_endpoint_takes_authorized_keys_only() {
    let port = free_port();
    let h = OneHost::new(&["app"]);
    let dir = h.rill.dir.path().to_owned();
    let server = dir.join("server.key");
    keygen(&server);
    let clients = dir.join("clients");
    std::fs::create_dir(&clients).unwrap();
    let friend = dir.join("friend.key");
    keygen(&friend);
    std::fs::copy(
        format!("{}.pub", friend.display()),
        clients.join("friend.pub"),
    )
    .unwrap();
    let stranger = dir.join("stranger.key");
    let public = keygen(&stranger);
    h.rill.add_host_yaml(
        "web01",
        &format!(
            "sessions:\n  endpoint: tcp://0.0.0.0:{port}\n  max: 2\n  pool: 1\n  allow: [127.0.0.1/32]\n  curve:\n    secret_key_file: {}\n    authorized_keys_dir: {}",
            server.display(),
            clients.display()
        ),
    );
    let h = OneHost::start(h, &["app"]);
    let session = |extra: &[&str]| {
        std::process::Command::new(bin("rill"))
            .arg("session")
            .arg("--config")
            .arg(&h.rill.config)
            .args(["--host", "web01"])
            .args(extra)
            .arg("info")
            .output()
            .unwrap()
    };
    let friend_arg = friend.display().to_string();
    let answered = wait_until(Duration::from_secs(30), || {
        session(&["--key", &friend_arg]).status.success()
    });
    assert!(answered, "an authorized key is served:\n{}", h.rill.log());
    assert!(
        session(&[]).status.success(),
        "the server's own pair is served"
    );
    let stranger_arg = stranger.display().to_string();
    let refused = session(&["--key", &stranger_arg]);
    assert!(!refused.status.success(), "an unknown key is not served");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("refused our login"), "{said}");
    assert!(
        wait_until(Duration::from_secs(10), || h.rill.log().contains(&public)),
        "the refusal names the key {public} in the log"
    );
}
