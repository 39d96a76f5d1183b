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
