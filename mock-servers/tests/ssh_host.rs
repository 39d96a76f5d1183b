//! The embedded SSH host against the ssh2 (libssh2) client Rill uses.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rill_mock_servers::EmbeddedSshHost;

fn session(host: &EmbeddedSshHost, password: &str) -> Result<ssh2::Session, ssh2::Error> {
    let tcp = TcpStream::connect(host.addr()).unwrap();
    let mut s = ssh2::Session::new().unwrap();
    s.set_tcp_stream(tcp);
    s.set_timeout(10_000);
    s.handshake()?;
    s.userauth_password("demo", password)?;
    Ok(s)
}

fn run(s: &ssh2::Session, cmd: &str) -> (String, String, i32) {
    let mut ch = s.channel_session().unwrap();
    ch.exec(cmd).unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    ch.read_to_string(&mut out).unwrap();
    ch.stderr().read_to_string(&mut err).unwrap();
    ch.wait_close().unwrap();
    (out, err, ch.exit_status().unwrap())
}

fn wait_until(d: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

#[test]
fn exec_wires_stdout_stderr_and_exit_status() {
    let host = EmbeddedSshHost::start("127.0.0.1:0", "demo", "pw").unwrap();
    let s = session(&host, "pw").unwrap();
    assert_eq!(
        run(&s, "echo hello; echo err >&2; exit 3"),
        ("hello\n".into(), "err\n".into(), 3)
    );
    // The key the client saw is the one known_hosts_line() shows.
    let (key, _) = s.host_key().unwrap();
    let shown = host.known_hosts_line();
    let b64 = shown.split_whitespace().nth(2).unwrap();
    use base64::Engine;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
        key
    );
    assert!(shown.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", host.port())));
    assert!(host.fingerprint().starts_with("SHA256:"));
}

#[test]
fn a_wrong_password_is_refused() {
    let host = EmbeddedSshHost::start("127.0.0.1:0", "demo", "pw").unwrap();
    assert!(session(&host, "nope").is_err());
}

#[test]
fn channel_data_reaches_stdin_and_channels_run_concurrently() {
    let host = EmbeddedSshHost::start("127.0.0.1:0", "demo", "pw").unwrap();
    let s = session(&host, "pw").unwrap();
    let mut slow = s.channel_session().unwrap();
    slow.exec("sleep 1; echo a").unwrap();
    let mut echo = s.channel_session().unwrap();
    echo.exec("head -c 5").unwrap();
    echo.write_all(b"12345").unwrap();
    let mut got = String::new();
    echo.read_to_string(&mut got).unwrap();
    assert_eq!(got, "12345");
    let mut a = String::new();
    slow.read_to_string(&mut a).unwrap();
    assert_eq!(a, "a\n");
}

#[test]
fn closing_a_channel_ends_its_command() {
    let host = EmbeddedSshHost::start("127.0.0.1:0", "demo", "pw").unwrap();
    let s = session(&host, "pw").unwrap();
    let mut ch = s.channel_session().unwrap();
    ch.exec("sleep 1000").unwrap();
    assert!(wait_until(Duration::from_secs(5), || host.live_children() == 1));
    ch.close().unwrap();
    assert!(
        wait_until(Duration::from_secs(6), || host.live_children() == 0),
        "sleep outlived its channel"
    );
    // And a dropped connection ends its commands too.
    let mut ch = s.channel_session().unwrap();
    ch.exec("sleep 1000").unwrap();
    assert!(wait_until(Duration::from_secs(5), || host.live_children() == 1));
    drop(ch);
    drop(s);
    assert!(
        wait_until(Duration::from_secs(6), || host.live_children() == 0),
        "sleep outlived its connection"
    );
}
