//! Issue 20: hosts reached through a jump host, against real sshds. The
//! target's port is closed by iptables to every process but the jump host's
//! session (an owner match on the jump account's uid), so the only way in
//! is a `direct-tcpip` channel of the jump connection. Two targets share
//! one connection to the jump host; when that connection is cut, both come
//! back through a new one, and every line is indexed once.

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use rill_e2e::*;

const WITHIN: Duration = Duration::from_secs(30);

/// The established TCP connections to 127.0.0.1:`port` that processes
/// named `name` hold (`ss -tnp`).
fn connections_of(name: &str, port: u16) -> usize {
    let out = Command::new("ss")
        .args(["-Htnp", "state", "established"])
        .arg(format!("( dport = :{port} )"))
        .output()
        .expect("ss (iproute2) is not installed; run tests/install-deps.sh");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("((\"{name}\"")))
        .count()
}

fn append(dir: &RemoteDir, name: &str, word: &str, n: usize) {
    let text: String = (0..n).map(|i| format!("{word} {i}\n")).collect();
    dir.append(name, text.as_bytes()).unwrap();
}

#[test]
fn targets_behind_a_jump_host_share_its_connection_and_survive_its_loss() {
    let jump = Sshd::start(SshdOptions::default()).unwrap();
    let target = Sshd::start(SshdOptions::default()).unwrap();
    let (a, b) = (
        TestUser::get().unwrap(),
        TestUser::account("rilltcsh").unwrap(),
    );
    let (key_a, key_b) = (
        a.authorize_new_key().unwrap(),
        b.authorize_new_key().unwrap(),
    );
    let (dir_a, dir_b) = (a.scratch_dir().unwrap(), b.scratch_dir().unwrap());
    dir_a.append("app.log", b"").unwrap();
    dir_b.append("app.log", b"").unwrap();
    // Only the jump account's processes (its sshd session) reach the target.
    let _only = only_from(target.port(), a.uid);
    assert!(
        TcpStream::connect(("127.0.0.1", target.port())).is_err(),
        "the target's port must be closed to this process"
    );

    let mut bastion = TestHost::web01(&jump, &a, &key_a);
    bastion.name = "bastion";
    let web01 = TestHost::web01(&target, &a, &key_a);
    let mut web02 = TestHost::web01(&target, &b, &key_b);
    web02.name = "web02";
    let (file_a, file_b) = (dir_a.file("app.log"), dir_b.file("app.log"));
    let mut rill = Rill::new(
        &[bastion, web01, web02],
        &[
            TestLog {
                name: "app",
                path: &file_a,
                hosts: &["web01"],
            },
            TestLog {
                name: "app2",
                path: &file_b,
                hosts: &["web02"],
            },
        ],
        &[jump.known_hosts_line(), target.known_hosts_line()],
    );
    rill.set_host_options("web01", "jump: bastion");
    rill.set_host_options("web02", "jump: bastion");
    // One tap process for all three, so the targets can share.
    rill.append_config("tap:\n  hosts_per_process: 3\n");
    rill.start_following("web01");
    assert!(rill.wait_following("web02", WITHIN), "{}", rill.log());

    append(&dir_a, "app.log", "alpha", 5);
    append(&dir_b, "app.log", "bravo", 5);
    for word in ["alpha", "bravo"] {
        assert_eq!(
            rill.wait_count(word, &[], 5, WITHIN),
            Some(5),
            "{}",
            rill.log()
        );
    }
    // The bastion's own tap and one shared tunnel connection: two, not
    // three; none to the target directly.
    assert_eq!(connections_of("ssh_tap", jump.port()), 2, "{}", rill.log());
    assert_eq!(connections_of("ssh_tap", target.port()), 0);

    // The jump host's sessions are cut: both targets come back through a
    // new connection, and nothing is lost or doubled.
    for pid in jump.connection_pids() {
        // SAFETY: killing a session process of the test's own sshd.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    append(&dir_a, "app.log", "charlie", 4);
    append(&dir_b, "app.log", "delta", 4);
    for word in ["charlie", "delta"] {
        assert_eq!(
            rill.wait_count(word, &[], 4, WITHIN),
            Some(4),
            "{}",
            rill.log()
        );
    }
    assert!(wait_until(WITHIN, || rill
        .wait_following("web01", Duration::from_secs(1))
        && rill.wait_following("web02", Duration::from_secs(1))));
    assert_eq!(rill.count("*", &[]), Some(5 + 5 + 4 + 4));
    let status = rill.stop(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[test]
fn a_chain_of_jump_hosts_reaches_its_target() {
    let (hop1, hop2, target) = (
        Sshd::start(SshdOptions::default()).unwrap(),
        Sshd::start(SshdOptions::default()).unwrap(),
        Sshd::start(SshdOptions::default()).unwrap(),
    );
    let user = TestUser::get().unwrap();
    let key = user.authorize_new_key().unwrap();
    let dir = user.scratch_dir().unwrap();
    dir.append("app.log", b"").unwrap();
    let mut h1 = TestHost::web01(&hop1, &user, &key);
    h1.name = "hop1";
    let mut h2 = TestHost::web01(&hop2, &user, &key);
    h2.name = "hop2";
    let file = dir.file("app.log");
    let mut rill = Rill::new(
        &[h1, h2, TestHost::web01(&target, &user, &key)],
        &[TestLog {
            name: "app",
            path: &file,
            hosts: &["web01"],
        }],
        &[
            hop1.known_hosts_line(),
            hop2.known_hosts_line(),
            target.known_hosts_line(),
        ],
    );
    rill.set_host_options("hop2", "jump: hop1");
    rill.set_host_options("web01", "jump: hop2");
    rill.append_config("tap:\n  hosts_per_process: 3\n");
    rill.start_following("web01");
    append(&dir, "app.log", "echo", 6);
    assert_eq!(
        rill.wait_count("echo", &[], 6, WITHIN),
        Some(6),
        "{}",
        rill.log()
    );
    // This machine talks to hop1 only (hop1's and hop2's own taps aside):
    // hop2's sshd sees web01's traffic come from hop1's session.
    assert_eq!(connections_of("ssh_tap", target.port()), 0);
    let status = rill.stop(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[test]
fn a_target_whose_host_key_is_unknown_is_refused_through_its_jump_host() {
    let (jump, target) = (
        Sshd::start(SshdOptions::default()).unwrap(),
        Sshd::start(SshdOptions::default()).unwrap(),
    );
    let user = TestUser::get().unwrap();
    let key = user.authorize_new_key().unwrap();
    let dir = user.scratch_dir().unwrap();
    dir.append("app.log", b"").unwrap();
    let mut bastion = TestHost::web01(&jump, &user, &key);
    bastion.name = "bastion";
    let file = dir.file("app.log");
    // Only the jump host's key is known (strict): the target's is not.
    let mut rill = Rill::new(
        &[bastion, TestHost::web01(&target, &user, &key)],
        &[TestLog {
            name: "app",
            path: &file,
            hosts: &["web01"],
        }],
        &[jump.known_hosts_line()],
    );
    rill.set_host_options("web01", "jump: bastion");
    rill.start();
    let error = || {
        rill.host_status("web01")
            .and_then(|h| h["error"].as_str().map(str::to_owned))
    };
    assert!(
        wait_until(WITHIN, || error().is_some_and(|e| e.contains("host key"))),
        "{:?}\n{}",
        error(),
        rill.log()
    );
    assert!(rill
        .host_status("bastion")
        .is_some_and(|h| h["connected"] == true));
    let status = rill.stop(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
