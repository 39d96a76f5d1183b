//! Issue 2, done-when 4: after SIGTERM the supervisor's whole tree is gone
//! within 5 s, locally and on the server (checked through the test user's
//! processes under sshd). Also: killed children are restarted.

use std::time::{Duration, Instant};

use rill_e2e::*;

/// Local processes of this Rill (their command line names its config).
fn ours(h: &OneHost) -> Vec<(u32, String)> {
    local_processes_mentioning(&h.rill.config.display().to_string())
}

fn pids_of(h: &OneHost, bin: &str) -> Vec<u32> {
    ours(h)
        .into_iter()
        .filter(|(_, c)| c.contains(&format!("/{bin} ")))
        .map(|(p, _)| p)
        .collect()
}

fn kill9(pid: u32) {
    // SAFETY: killing a process of the Rill under test.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

#[test]
fn sigterm_stops_every_local_and_remote_process() {
    let mut h = OneHost::running(&["a", "b", "c"]);
    let scratch = h.remote.path.display().to_string();
    let sessions = remote_sessions(&h.user, &scratch);
    assert_eq!(
        sessions.len(),
        3,
        "one remote session per log: {:?}",
        h.user.processes()
    );
    assert!(remote_processes_in(&h.user, &sessions)
        .iter()
        .any(|p| p.cmdline.starts_with("tail ")));
    for bin in [
        "supervisor",
        "masspinger",
        "parser",
        "robust_ssh_tap",
        "ssh_tap",
    ] {
        assert_eq!(
            pids_of(&h, bin).len(),
            1,
            "{bin} running once: {:?}",
            ours(&h)
        );
    }

    // Lines go to the log they were written to (and `--log` filters by it).
    for i in 0..5 {
        h.append("b", format!("line {i} of b\n").as_bytes());
    }
    let rill = &h.rill;
    assert_eq!(
        wait_for(Duration::from_secs(15), || rill
            .count("*", &["--log", "b"])
            .filter(|&n| n == 5)),
        Some(5),
        "{}",
        rill.log()
    );
    assert_eq!(rill.count("*", &["--log", "a"]), Some(0));
    // Counters in the status are written once a second.
    let status_of_b = || {
        rill.host_status("web01").unwrap()["logs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["log"] == "b")
            .unwrap()
            .clone()
    };
    wait_until(Duration::from_secs(5), || status_of_b()["lines_read"] == 5);
    let b = status_of_b();
    assert_eq!(b["lines_read"], 5, "{b}");
    assert_eq!(
        b["last_offset"].as_u64(),
        Some(5 * "line 0 of b\n".len() as u64),
        "{b}"
    );

    let t = Instant::now();
    let status = h.rill.stop(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "supervisor exited 0 within 5 s: {status:?}"
    );
    let left = Duration::from_secs(5).saturating_sub(t.elapsed());
    assert!(
        wait_until(left, || ours(&h).is_empty()),
        "local processes left: {:?}",
        ours(&h)
    );
    assert!(
        wait_until(Duration::from_secs(5), || remote_processes_in(
            &h.user, &sessions
        )
        .is_empty()),
        "remote processes left: {:?}",
        remote_processes_in(&h.user, &sessions)
    );
    eprintln!("whole tree stopped in {:?}", t.elapsed());
}

#[test]
fn a_killed_ssh_tap_is_restarted_and_keeps_streaming() {
    let h = OneHost::running(&["a"]);
    let scratch = h.remote.path.display().to_string();
    let old_sessions = remote_sessions(&h.user, &scratch);
    assert_eq!(old_sessions.len(), 1);
    let taps = pids_of(&h, "ssh_tap");
    assert_eq!(taps.len(), 1);
    kill9(taps[0]);
    let restarted = wait_until(Duration::from_secs(15), || {
        pids_of(&h, "ssh_tap").iter().any(|p| *p != taps[0])
    });
    assert!(restarted, "a new ssh_tap started: {}", h.rill.log());
    // The remote side of the killed tap goes away once sshd sees the
    // connection close: within 5 s.
    assert!(
        wait_until(Duration::from_secs(5), || remote_processes_in(
            &h.user,
            &old_sessions
        )
        .is_empty()),
        "the killed tap's remote processes ended: {:?}",
        remote_processes_in(&h.user, &old_sessions)
    );
    // tail reads /dev/fd/4 (the file the script opened), so it is found by
    // the SSH session whose script names the file.
    let tails = || {
        remote_processes_in(&h.user, &remote_sessions(&h.user, &scratch))
            .iter()
            .filter(|p| p.cmdline.starts_with("tail "))
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(20), || tails() == 1),
        "exactly one remote tail after the restart: {:?}",
        h.user.processes()
    );
    h.append("a", b"after restart\n");
    let rill = &h.rill;
    assert_eq!(
        wait_for(Duration::from_secs(15), || rill
            .count("restart", &[])
            .filter(|&n| n == 1)),
        Some(1),
        "{}",
        rill.log()
    );
}

#[test]
fn the_supervisor_restarts_a_killed_parser() {
    let h = OneHost::running(&["a"]);
    let rill = &h.rill;
    h.append("a", b"before the crash\n");
    assert_eq!(
        wait_for(Duration::from_secs(15), || rill
            .count("*", &[])
            .filter(|&n| n == 1)),
        Some(1)
    );
    let old = pids_of(&h, "parser");
    assert_eq!(old.len(), 1);
    kill9(old[0]);
    let restarted = wait_until(Duration::from_secs(15), || {
        pids_of(&h, "parser").iter().any(|p| *p != old[0])
    });
    assert!(restarted, "{}", rill.log());
    let status = rill.status().unwrap();
    let child = status["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "parser")
        .unwrap()
        .clone();
    assert_eq!(child["restarts"], 1, "{child}");
    assert_eq!(child["last_exit"], "killed by signal 9", "{child}");
    h.append("a", b"after the crash\n");
    assert_eq!(
        wait_for(Duration::from_secs(15), || rill
            .count("*", &[])
            .filter(|&n| n == 2)),
        Some(2),
        "{}",
        rill.log()
    );
}
