//! The sshd launcher against the system's OpenSSH client.

use std::time::Duration;

use rill_test_support::*;

#[test]
fn key_login_works_with_the_generated_host_key_and_survives_restart() {
    let user = TestUser::get().unwrap();
    let mut sshd = Sshd::start(SshdOptions::default()).unwrap();
    let key = user.authorize_new_key().unwrap();
    let out = sshd.client(&key, "echo ok; id -un").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok\nrilltest\n",
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    let line = sshd.known_hosts_line();
    sshd.restart().unwrap();
    assert_eq!(sshd.known_hosts_line(), line);
    assert!(sshd.client(&key, "true").status().unwrap().success());
}

#[test]
fn the_test_user_has_a_usable_password_and_its_processes_are_visible() {
    let user = TestUser::get().unwrap();
    let p1 = user.password().unwrap();
    assert_eq!(p1, user.password().unwrap());
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap();
    assert!(shadow.lines().any(|l| l.starts_with("rilltest:$")));

    let sshd = Sshd::start(SshdOptions::default()).unwrap();
    let key = user.authorize_new_key().unwrap();
    let mut client = sshd.client(&key, "sleep 37").spawn().unwrap();
    let seen = wait_until(Duration::from_secs(10), || {
        user.processes().iter().any(|p| p.cmdline == "sleep 37")
    });
    let _ = client.kill();
    let _ = client.wait();
    assert!(seen, "{:?}", user.processes());
    for p in user.processes() {
        if p.cmdline == "sleep 37" {
            // SAFETY: cleaning up the process this test started.
            unsafe { libc::kill(p.pid as i32, libc::SIGKILL) };
        }
    }
}

#[test]
fn stop_ends_the_server() {
    let mut sshd = Sshd::start(SshdOptions::default()).unwrap();
    let port = sshd.port();
    sshd.stop();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}
