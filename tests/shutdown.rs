//! Issue 2, done-when 4: after SIGTERM the supervisor's whole tree is gone
//! within 5 s, locally and on the server (checked through the test user's
//! processes under sshd). Also: a killed tap is restarted.

use std::time::{Duration, Instant};

use rill_e2e::*;

#[test]
fn sigterm_stops_every_local_and_remote_process() {
    let user = TestUser::get().unwrap();
    let sshd = Sshd::start(SshdOptions::default()).unwrap();
    let key = user.authorize_new_key().unwrap();
    let remote = user.scratch_dir().unwrap();
    let names = ["a", "b", "c"];
    let files: Vec<_> = names
        .iter()
        .map(|n| remote.file(&format!("{n}.log")))
        .collect();
    for n in names {
        remote.append(&format!("{n}.log"), b"").unwrap();
    }
    let logs: Vec<TestLog> = names
        .iter()
        .zip(&files)
        .map(|(n, f)| TestLog {
            name: n,
            path: f,
            hosts: &["web01"],
        })
        .collect();
    let mut rill = Rill::new(
        &[TestHost {
            name: "web01",
            port: sshd.port(),
            user: &user.name,
            auth: TestAuth::Key(&key.private),
            known_hosts: "strict",
        }],
        &logs,
        &[sshd.known_hosts_line()],
    );
    rill.start();
    assert!(
        rill.wait_following("web01", Duration::from_secs(20)),
        "{}",
        rill.log()
    );
    let config = rill.config.display().to_string();
    let scratch = remote.path.display().to_string();
    let sessions = remote_sessions(&user, &scratch);
    assert_eq!(
        sessions.len(),
        3,
        "one remote session per log: {:?}",
        user.processes()
    );
    let remote_followers = || remote_processes_in(&user, &sessions);
    assert!(
        remote_followers()
            .iter()
            .any(|p| p.cmdline.starts_with("tail ")),
        "{:?}",
        remote_followers()
    );
    let local = local_processes_mentioning(&config);
    for bin in [
        "supervisor",
        "masspinger",
        "parser",
        "robust_ssh_tap",
        "ssh_tap",
    ] {
        assert!(
            local.iter().any(|(_, c)| c.contains(&format!("/{bin} "))),
            "{bin} running: {local:?}"
        );
    }

    // Lines go to the log they were written to (and `--log` filters by it).
    for i in 0..5 {
        remote.append("b.log", format!("line {i} of b\n").as_bytes()).unwrap();
    }
    assert_eq!(wait_for(Duration::from_secs(15), || rill.count("*", &["--log", "b"]).filter(|&n| n == 5)), Some(5), "{}", rill.log());
    assert_eq!(rill.count("*", &["--log", "a"]), Some(0));
    let status = rill.host_status("web01").unwrap();
    let b = status["logs"].as_array().unwrap().iter().find(|l| l["log"] == "b").unwrap().clone();
    assert_eq!(b["lines_read"], 5, "{b}");
    assert_eq!(b["last_offset"].as_u64(), Some(5 * "line 0 of b\n".len() as u64), "{b}");

    let t = Instant::now();
    let status = rill.stop(Duration::from_secs(5));
    assert!(status.is_some(), "supervisor exited within 5 s");
    assert!(status.unwrap().success());
    assert!(
        wait_until(
            Duration::from_secs(5) - t.elapsed().min(Duration::from_secs(5)),
            || local_processes_mentioning(&config).is_empty()
        ),
        "local processes left: {:?}",
        local_processes_mentioning(&config)
    );
    assert!(
        wait_until(Duration::from_secs(5), || remote_followers().is_empty()),
        "remote processes left: {:?}",
        remote_followers()
    );
    eprintln!("whole tree stopped in {:?}", t.elapsed());
}

#[test]
fn a_killed_ssh_tap_is_restarted_and_keeps_streaming() {
    let user = TestUser::get().unwrap();
    let sshd = Sshd::start(SshdOptions::default()).unwrap();
    let key = user.authorize_new_key().unwrap();
    let remote = user.scratch_dir().unwrap();
    let file = remote.file("a.log");
    remote.append("a.log", b"").unwrap();
    let mut rill = Rill::new(
        &[TestHost {
            name: "web01",
            port: sshd.port(),
            user: &user.name,
            auth: TestAuth::Key(&key.private),
            known_hosts: "strict",
        }],
        &[TestLog {
            name: "a",
            path: &file,
            hosts: &["web01"],
        }],
        &[sshd.known_hosts_line()],
    );
    rill.start();
    assert!(
        rill.wait_following("web01", Duration::from_secs(20)),
        "{}",
        rill.log()
    );
    let config = rill.config.display().to_string();
    let scratch = remote.path.display().to_string();
    let old_sessions = remote_sessions(&user, &scratch);
    assert_eq!(old_sessions.len(), 1);
    let taps: Vec<u32> = local_processes_mentioning(&config)
        .into_iter()
        .filter(|(_, c)| c.contains("/ssh_tap "))
        .map(|(p, _)| p)
        .collect();
    assert_eq!(taps.len(), 1);
    // SAFETY: killing the tap we just found.
    unsafe { libc::kill(taps[0] as i32, libc::SIGKILL) };
    let restarted = wait_until(Duration::from_secs(15), || {
        local_processes_mentioning(&config)
            .iter()
            .any(|(p, c)| c.contains("/ssh_tap ") && *p != taps[0])
    });
    assert!(restarted, "a new ssh_tap started: {}", rill.log());
    // The remote side of the killed tap goes away when sshd notices.
    assert!(
        wait_until(Duration::from_secs(10), || remote_processes_in(
            &user,
            &old_sessions
        )
        .is_empty()),
        "the killed tap's remote processes ended: {:?}",
        remote_processes_in(&user, &old_sessions)
    );
    assert!(rill.wait_following("web01", Duration::from_secs(20)));
    let tails = || {
        user.processes()
            .into_iter()
            .filter(|p| p.cmdline.starts_with("tail ") && p.cmdline.contains(&scratch))
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(20), || tails() == 1),
        "exactly one remote tail after the restart: {:?}",
        user.processes()
    );
    remote.append("a.log", b"after restart\n").unwrap();
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
    let user = TestUser::get().unwrap();
    let sshd = Sshd::start(SshdOptions::default()).unwrap();
    let key = user.authorize_new_key().unwrap();
    let remote = user.scratch_dir().unwrap();
    let file = remote.file("a.log");
    remote.append("a.log", b"").unwrap();
    let mut rill = Rill::new(
        &[TestHost { name: "web01", port: sshd.port(), user: &user.name, auth: TestAuth::Key(&key.private), known_hosts: "strict" }],
        &[TestLog { name: "a", path: &file, hosts: &["web01"] }],
        &[sshd.known_hosts_line()],
    );
    rill.start();
    assert!(rill.wait_following("web01", Duration::from_secs(20)), "{}", rill.log());
    remote.append("a.log", b"before the crash\n").unwrap();
    assert_eq!(wait_for(Duration::from_secs(15), || rill.count("*", &[]).filter(|&n| n == 1)), Some(1));
    let config = rill.config.display().to_string();
    let parser = |p: &(u32, String)| p.1.contains("/parser ");
    let old: Vec<u32> = local_processes_mentioning(&config).iter().filter(|p| parser(p)).map(|p| p.0).collect();
    assert_eq!(old.len(), 1);
    // SAFETY: killing the parser we just found.
    unsafe { libc::kill(old[0] as i32, libc::SIGKILL) };
    let restarted = wait_until(Duration::from_secs(15), || local_processes_mentioning(&config).iter().any(|p| parser(p) && p.0 != old[0]));
    assert!(restarted, "{}", rill.log());
    let status = rill.status().unwrap();
    let child = status["children"].as_array().unwrap().iter().find(|c| c["name"] == "parser").unwrap().clone();
    assert_eq!(child["restarts"], 1, "{child}");
    assert_eq!(child["last_exit"], "killed by signal 9", "{child}");
    remote.append("a.log", b"after the crash\n").unwrap();
    assert_eq!(wait_for(Duration::from_secs(15), || rill.count("*", &[]).filter(|&n| n == 2)), Some(2), "{}", rill.log());
}
