//! Issue 20: root-only logs read through `sudo` on the server, against a
//! real sshd and the real sudo (rules from tests/install-deps.sh:
//! `rilltcsh` may without a password, `rillfish` with its own, `rilltest`
//! may not). The password never appears on a command line; a refusal is
//! the log's error in `rill status` while the host's other logs stream;
//! nothing started as root outlives the collector.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use rill_e2e::*;

const WITHIN: Duration = Duration::from_secs(30);

/// A file only root can read, in `dir`, holding nothing yet.
fn root_only(dir: &RemoteDir, name: &str) -> std::path::PathBuf {
    let path = dir.file(name);
    std::fs::write(&path, "").unwrap();
    // Owned by root (the test runs as root), mode 0600.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn append(path: &Path, word: &str, n: usize) {
    use std::io::Write;
    let mut f = std::fs::File::options().append(true).open(path).unwrap();
    for i in 0..n {
        writeln!(f, "{word} {i}").unwrap();
    }
}

/// Every process, of any user, in one of the SSH sessions `sids`:
/// (pid, real uid, command line).
fn in_sessions(sids: &BTreeSet<u32>) -> Vec<(u32, u32, String)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // "pid (comm) state ppid pgrp session ...".
        let sid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(3)?.parse::<u32>().ok());
        if !sid.is_some_and(|s| sids.contains(&s)) {
            continue;
        }
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or(u32::MAX);
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        // An empty command line is a process that has exited (a zombie
        // until something reaps it: pid 1 of a container may take its
        // time), as TestUser::processes counts it.
        if cmd.is_empty() {
            continue;
        }
        found.push((pid, uid, String::from_utf8_lossy(&cmd).replace('\0', " ")));
    }
    found
}

fn row(rill: &Rill, host: &str, log: &str) -> serde_json::Value {
    rill.host_status(host)
        .and_then(|h| {
            h["logs"]
                .as_array()?
                .iter()
                .find(|l| l["log"] == log)
                .cloned()
        })
        .unwrap_or_default()
}

#[test]
fn root_only_files_are_followed_through_sudo_with_and_without_a_password() {
    let sshd = Sshd::start(SshdOptions::default()).unwrap();
    let (tcsh, fish) = (
        TestUser::account("rilltcsh").unwrap(),
        TestUser::account("rillfish").unwrap(),
    );
    let (key_t, key_f) = (
        tcsh.authorize_new_key().unwrap(),
        fish.authorize_new_key().unwrap(),
    );
    let (dir_t, dir_f) = (tcsh.scratch_dir().unwrap(), fish.scratch_dir().unwrap());
    let (secure_t, secure_f) = (
        root_only(&dir_t, "secure.log"),
        root_only(&dir_f, "secure.log"),
    );
    let mut web02 = TestHost::web01(&sshd, &fish, &key_f);
    web02.name = "web02";
    let mut rill = Rill::new(
        &[TestHost::web01(&sshd, &tcsh, &key_t), web02],
        &[
            TestLog {
                name: "secure-nopasswd",
                path: &secure_t,
                hosts: &["web01"],
            },
            TestLog {
                name: "secure-passwd",
                path: &secure_f,
                hosts: &["web02"],
            },
        ],
        &[sshd.known_hosts_line()],
    );
    rill.set_log_options("secure-nopasswd", "sudo: true");
    rill.set_log_options("secure-passwd", "sudo: true");
    rill.set_host_options("web02", "sudo_password_env: RILL_TEST_SUDO_PW");
    let password = fish.password().unwrap();
    rill.env("RILL_TEST_SUDO_PW", &password);
    rill.start_following("web01");
    assert!(rill.wait_following("web02", WITHIN), "{}", rill.log());
    let sessions: BTreeSet<u32> = [&tcsh, &fish]
        .iter()
        .flat_map(|u| remote_sessions(u, "secure.log"))
        .collect();
    let running = in_sessions(&sessions);
    assert!(
        running.iter().any(|(_, uid, _)| *uid == 0),
        "the follow scripts run as root: {running:?}"
    );
    // The password is on no command line, of any process.
    for (pid, _, cmd) in local_processes_mentioning("")
        .into_iter()
        .map(|(p, c)| (p, 0, c))
        .chain(running.clone())
    {
        assert!(!cmd.contains(&password), "{pid}: {cmd}");
    }

    append(&secure_t, "tango", 7);
    append(&secure_f, "uniform", 5);
    for (word, n) in [("tango", 7), ("uniform", 5)] {
        assert_eq!(
            rill.wait_count(word, &[], n, WITHIN),
            Some(n),
            "{word}; log:\n{}",
            rill.log()
        );
    }
    // A rotation of a root-only file, read through sudo as well.
    std::fs::rename(&secure_t, dir_t.file("secure.log.1")).unwrap();
    append(&dir_t.file("secure.log.1"), "victor", 2);
    root_only(&dir_t, "secure.log");
    append(&secure_t, "whiskey", 3);
    for (word, n) in [("victor", 2), ("whiskey", 3)] {
        assert_eq!(rill.wait_count(word, &[], n, WITHIN), Some(n), "{word}");
    }
    assert!(row(&rill, "web01", "secure-nopasswd")["error"].is_null());
    assert!(row(&rill, "web02", "secure-passwd")["error"].is_null());
    assert!(
        !rill.log().contains(&password),
        "the password is never logged"
    );

    let status = rill.stop(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(
        wait_until(Duration::from_secs(5), || in_sessions(&sessions).is_empty()),
        "left on the server: {:?}",
        in_sessions(&sessions)
    );
    assert_eq!(rill.count("*", &[]), Some(7 + 5 + 2 + 3));
}

#[test]
fn a_sudo_refusal_is_the_logs_error_and_the_hosts_other_logs_stream() {
    // rilltest may not use sudo at all; rillfish may, but is given a wrong
    // password.
    let sshd = Sshd::start(SshdOptions::default()).unwrap();
    let (plain, fish) = (
        TestUser::get().unwrap(),
        TestUser::account("rillfish").unwrap(),
    );
    let (key_p, key_f) = (
        plain.authorize_new_key().unwrap(),
        fish.authorize_new_key().unwrap(),
    );
    let (dir_p, dir_f) = (plain.scratch_dir().unwrap(), fish.scratch_dir().unwrap());
    let secure_p = root_only(&dir_p, "secure.log");
    let secure_f = root_only(&dir_f, "secure.log");
    dir_p.append("app.log", b"").unwrap();
    let app = dir_p.file("app.log");
    let mut web02 = TestHost::web01(&sshd, &fish, &key_f);
    web02.name = "web02";
    let mut rill = Rill::new(
        &[TestHost::web01(&sshd, &plain, &key_p), web02],
        &[
            TestLog {
                name: "secure",
                path: &secure_p,
                hosts: &["web01"],
            },
            TestLog {
                name: "app",
                path: &app,
                hosts: &["web01"],
            },
            TestLog {
                name: "wrong",
                path: &secure_f,
                hosts: &["web02"],
            },
        ],
        &[sshd.known_hosts_line()],
    );
    rill.set_log_options("secure", "sudo: true");
    rill.set_log_options("wrong", "sudo: true");
    rill.set_host_options("web02", "sudo_password_env: RILL_TEST_SUDO_PW");
    rill.env("RILL_TEST_SUDO_PW", "not-the-password");
    rill.start();

    let said = |host: &str, log: &str| row(&rill, host, log)["error"].as_str().map(str::to_owned);
    assert!(
        wait_until(WITHIN, || said("web01", "secure")
            .is_some_and(|e| e.contains("sudo"))),
        "{:?}\n{}",
        said("web01", "secure"),
        rill.log()
    );
    assert!(
        wait_until(WITHIN, || said("web02", "wrong").is_some_and(|e| e
            .contains("incorrect password")
            || e.contains("Sorry, try again"))),
        "{:?}\n{}",
        said("web02", "wrong"),
        rill.log()
    );
    // The host's other log streams meanwhile.
    assert!(wait_until(WITHIN, || !row(&rill, "web01", "app")
        ["file_id"]
        .is_null()));
    append(&app, "xray", 4);
    assert_eq!(
        rill.wait_count("xray", &[], 4, WITHIN),
        Some(4),
        "{}",
        rill.log()
    );
    append(&secure_p, "yankee", 2);
    assert_eq!(rill.count("yankee", &[]), Some(0));
    // Asked again after a while, not in a loop: a few warnings, not one a
    // second.
    let refusals = rill
        .log()
        .matches("sudo refused to run the follow script")
        .count();
    assert!((1..=4).contains(&refusals), "{refusals}:\n{}", rill.log());
    let status = rill.stop(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
