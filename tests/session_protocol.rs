//! Issue 4: the JSON session-control protocol, driven like any client would:
//! REQ and DEALER sockets on the host's sessions ROUTER, SUB sockets on each
//! session's publish endpoint, and the server's process table (the
//! `rilltest` user's processes under a real sshd) to check what really runs.
//!
//! This file holds a session's life: created, driven, counted and deleted,
//! its background jobs ended with it, shown by `rill status`, driven by
//! `rill session`, and gone with a killed tap. Requests that fail are in
//! `session_failures.rs`, an endpoint open to the network in
//! `session_access.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use rill_e2e::session::*;
use rill_e2e::*;
use serde_json::json;

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

/// A random number below 32768, to make a marker or a process name
/// this run's own.
fn rand_number() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32 % 32768
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
