//! Issue 2, done-when 2: key and password auth against real sshd; a wrong
//! password, an unknown host key under `strict`, a changed host key and an
//! unreachable port each give a clear error in `rill status` and the
//! supervisor log, while the other hosts keep streaming.

use std::time::Duration;

use rill_e2e::*;

#[test]
fn good_hosts_stream_while_bad_ones_report_why() {
    let user = TestUser::get().unwrap();
    let password = user.password().unwrap();
    let sshd = Sshd::start(SshdOptions {
        password_auth: true,
        ..Default::default()
    })
    .unwrap();
    let stranger = Sshd::start(SshdOptions::default()).unwrap();
    let moved = Sshd::start(SshdOptions::default()).unwrap();
    let key = user.authorize_new_key().unwrap();
    let remote = user.scratch_dir().unwrap();
    let file = remote.file("shared.log");
    remote.append("shared.log", b"").unwrap();
    let closed_port = free_port();

    // `moved` is listed with another server's key: a changed host key.
    let wrong_key_line = sshd.known_hosts_line().replacen(
        &format!("]:{} ", sshd.port()),
        &format!("]:{} ", moved.port()),
        1,
    );
    assert!(wrong_key_line.starts_with(&format!("[127.0.0.1]:{} ", moved.port())));
    let hosts = [
        TestHost {
            name: "by-key",
            port: sshd.port(),
            user: &user.name,
            auth: TestAuth::Key(&key.private),
            known_hosts: "strict",
        },
        TestHost {
            name: "by-password",
            port: sshd.port(),
            user: &user.name,
            auth: TestAuth::PasswordEnv("RILL_E2E_PASSWORD"),
            known_hosts: "strict",
        },
        TestHost {
            name: "wrong-password",
            port: sshd.port(),
            user: &user.name,
            auth: TestAuth::PasswordEnv("RILL_E2E_WRONG_PASSWORD"),
            known_hosts: "strict",
        },
        TestHost {
            name: "unknown-key",
            port: stranger.port(),
            user: &user.name,
            auth: TestAuth::Key(&key.private),
            known_hosts: "strict",
        },
        TestHost {
            name: "changed-key",
            port: moved.port(),
            user: &user.name,
            auth: TestAuth::Key(&key.private),
            known_hosts: "accept-new",
        },
        TestHost {
            name: "changed-key-strict",
            port: moved.port(),
            user: &user.name,
            auth: TestAuth::Key(&key.private),
            known_hosts: "strict",
        },
        TestHost {
            name: "closed-port",
            port: closed_port,
            user: &user.name,
            auth: TestAuth::Key(&key.private),
            known_hosts: "strict",
        },
    ];
    let all: Vec<&str> = hosts.iter().map(|h| h.name).collect();
    let mut rill = Rill::new(
        &hosts,
        &[TestLog {
            name: "shared",
            path: &file,
            hosts: &all,
        }],
        &[sshd.known_hosts_line(), wrong_key_line],
    );
    rill.env("RILL_E2E_PASSWORD", &password)
        .env("RILL_E2E_WRONG_PASSWORD", "not-the-password");
    rill.start();

    for good in ["by-key", "by-password"] {
        assert!(
            rill.wait_following(good, Duration::from_secs(20)),
            "{good} never followed; log:\n{}",
            rill.log()
        );
    }
    let expectations = [
        (
            "wrong-password",
            vec!["authentication as rilltest", "failed"],
        ),
        (
            "unknown-key",
            vec!["host key of [127.0.0.1]:", "is not known", "SHA256:"],
        ),
        (
            "changed-key",
            vec![
                "[127.0.0.1]:",
                "has CHANGED",
                "SHA256:",
                "refusing to connect",
            ],
        ),
        (
            "changed-key-strict",
            vec![
                "[127.0.0.1]:",
                "has CHANGED",
                "SHA256:",
                "refusing to connect",
            ],
        ),
        (
            "closed-port",
            vec!["could not connect to 127.0.0.1:", "refused"],
        ),
    ];
    for (host, needles) in &expectations {
        let shown = wait_for(Duration::from_secs(20), || {
            let h = rill.host_status(host)?;
            let e = h["error"].as_str()?.to_owned();
            (h["connected"] == false && needles.iter().all(|n| e.contains(n))).then_some(e)
        });
        assert!(
            shown.is_some(),
            "{host}: status lacks {needles:?}: {:?}",
            rill.host_status(host)
        );
        let log = rill.log();
        assert!(
            log.lines().any(|l| l.contains(&format!("{{host={host}}}"))
                && needles.iter().all(|n| l.contains(n))),
            "{host}: supervisor log lacks {needles:?}:\n{log}"
        );
    }
    // A changed key is never overwritten by accept-new.
    let known = std::fs::read_to_string(rill.dir.path().join("state/known_hosts")).unwrap();
    assert_eq!(
        known
            .lines()
            .filter(|l| l.starts_with(&format!("[127.0.0.1]:{} ", moved.port())))
            .count(),
        1
    );

    for i in 0..50 {
        remote
            .append("shared.log", format!("shared line {i}\n").as_bytes())
            .unwrap();
    }
    for good in ["by-key", "by-password"] {
        let n = wait_for(Duration::from_secs(15), || {
            rill.count("*", &["--host", good]).filter(|&n| n >= 50)
        });
        assert_eq!(n, Some(50), "{good} streams; log:\n{}", rill.log());
    }
    for bad in [
        "wrong-password",
        "unknown-key",
        "changed-key",
        "changed-key-strict",
        "closed-port",
    ] {
        assert_eq!(rill.count("*", &["--host", bad]), Some(0));
    }
    let text = rill.rill(&["status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("by-key: connected"), "{text}");
    assert!(text.contains("closed-port: NOT CONNECTED"), "{text}");
}

#[test]
fn accept_new_records_a_first_seen_key_and_then_trusts_it() {
    let user = TestUser::get().unwrap();
    let sshd = Sshd::start(SshdOptions::default()).unwrap();
    let key = user.authorize_new_key().unwrap();
    let remote = user.scratch_dir().unwrap();
    let file = remote.file("a.log");
    remote.append("a.log", b"").unwrap();
    let mut rill = Rill::new(
        &[TestHost {
            name: "fresh",
            port: sshd.port(),
            user: &user.name,
            auth: TestAuth::Key(&key.private),
            known_hosts: "accept-new",
        }],
        &[TestLog {
            name: "a",
            path: &file,
            hosts: &["fresh"],
        }],
        &[],
    );
    rill.start();
    assert!(
        rill.wait_following("fresh", Duration::from_secs(20)),
        "{}",
        rill.log()
    );
    let known = std::fs::read_to_string(rill.dir.path().join("state/known_hosts")).unwrap();
    let key_part = sshd
        .known_hosts_line()
        .split_once(' ')
        .unwrap()
        .1
        .to_owned();
    assert!(
        known.contains(&key_part),
        "recorded key {known:?} is the server's {key_part:?}"
    );
}

/// Servers that route passwords through PAM offer only keyboard-interactive;
/// and keys can live in an ssh-agent instead of a file.
#[test]
fn keyboard_interactive_and_ssh_agent_work() {
    let user = TestUser::get().unwrap();
    let password = user.password().unwrap();
    let pam = Sshd::start(SshdOptions {
        extra_config: vec![
            "UsePAM yes".into(),
            "KbdInteractiveAuthentication yes".into(),
        ],
        ..Default::default()
    })
    .unwrap();
    let keyed = Sshd::start(SshdOptions::default()).unwrap();
    let key = user.authorize_new_key().unwrap();
    let remote = user.scratch_dir().unwrap();
    let file = remote.file("a.log");
    remote.append("a.log", b"").unwrap();

    // A private ssh-agent holding an unrelated key first, then the key the
    // server accepts: every identity is offered, not just the first.
    let stranger = tempfile::tempdir().unwrap();
    let stranger_key = stranger.path().join("id_stranger");
    assert!(std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger_key)
        .status()
        .unwrap()
        .success());
    let agent_dir = tempfile::tempdir().unwrap();
    let sock = agent_dir.path().join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || sock.exists()));
    for k in [&stranger_key, &key.private] {
        let added = std::process::Command::new("ssh-add")
            .arg(k)
            .env("SSH_AUTH_SOCK", &sock)
            .output()
            .unwrap();
        assert!(
            added.status.success(),
            "{}",
            String::from_utf8_lossy(&added.stderr)
        );
    }
    let listed = std::process::Command::new("ssh-add")
        .arg("-L")
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    let first = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let stranger_pub = std::fs::read_to_string(stranger_key.with_extension("pub")).unwrap();
    assert!(
        stranger_pub.starts_with(
            first
                .split(' ')
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
                .as_str()
        ),
        "the agent offers the unrelated key first: {first}"
    );

    let hosts = [
        TestHost {
            name: "by-kbd",
            port: pam.port(),
            user: &user.name,
            auth: TestAuth::PasswordEnv("RILL_E2E_PASSWORD"),
            known_hosts: "strict",
        },
        TestHost {
            name: "by-agent",
            port: keyed.port(),
            user: &user.name,
            auth: TestAuth::Agent,
            known_hosts: "strict",
        },
    ];
    let mut rill = Rill::new(
        &hosts,
        &[TestLog {
            name: "a",
            path: &file,
            hosts: &["by-kbd", "by-agent"],
        }],
        &[pam.known_hosts_line(), keyed.known_hosts_line()],
    );
    rill.env("RILL_E2E_PASSWORD", &password)
        .env("SSH_AUTH_SOCK", sock.to_str().unwrap());
    rill.start();
    for host in ["by-kbd", "by-agent"] {
        assert!(
            rill.wait_following(host, Duration::from_secs(20)),
            "{host}: {:?}\n{}",
            rill.host_status(host),
            rill.log()
        );
    }
    assert!(
        pam.log()
            .contains("Accepted keyboard-interactive/pam for rilltest"),
        "{}",
        pam.log()
    );
    remote.append("a.log", b"one line\n").unwrap();
    for host in ["by-kbd", "by-agent"] {
        assert_eq!(
            wait_for(Duration::from_secs(15), || rill
                .count("*", &["--host", host])
                .filter(|&n| n == 1)),
            Some(1),
            "{host}"
        );
    }
    drop(rill);
    let _ = agent.kill();
    let _ = agent.wait();
}
