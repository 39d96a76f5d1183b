//! The stream endpoint behind its guard (`streams.allow`, PLAIN users or
//! CURVE keys): `rill tail` logs in (as the collector itself by default,
//! or with `--key` / `--user`), a refused login ends it with an error that
//! names the login, `rill status` counts the refusals with the last reason,
//! and a subscriber from an address not in the allowlist gets nothing. Also:
//! every `ipc://` socket under `state_dir/run` is its owner's alone.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rill_e2e::session::{self, host_with_sessions, served, Kind};
use rill_e2e::*;
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(30);

/// Adds `yaml` (keys of `streams:`, e.g. `allow: [...]`) under the
/// config's `streams:` block.
fn guard_streams(rill: &Rill, yaml: &str) {
    let text = std::fs::read_to_string(&rill.config).unwrap();
    let endpoint = format!("  endpoint: {}\n", rill.streams);
    assert!(text.contains(&endpoint), "{text}");
    let keys: String = yaml.lines().map(|l| format!("  {l}\n")).collect();
    let text = text.replacen(&endpoint, &format!("{endpoint}{keys}"), 1);
    std::fs::write(&rill.config, text).unwrap();
}

/// A file only its owner reads, as secrets should be.
fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// `rill tail --json` with extra flags and environment: its messages on a
/// channel, its stderr kept; killed when dropped.
struct TailAs {
    child: Child,
    rx: mpsc::Receiver<Value>,
    stderr: mpsc::Receiver<String>,
}

impl TailAs {
    /// Follows web01's `app` log and its `status/` messages (the tap
    /// sends one every second: the first one says the tail is in).
    fn start(rill: &Rill, flags: &[&str], env: &[(&str, &str)]) -> TailAs {
        let mut child = Command::new(bin("rill"))
            .args(["tail", "--json", "--config"])
            .arg(&rill.config)
            .args(flags)
            .args(["line/web01/app", "status/web01"])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(v) = serde_json::from_str::<Value>(&line.unwrap_or_default()) else {
                    break;
                };
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let (etx, stderr) = mpsc::channel();
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            let _ = etx.send(text);
        });
        TailAs { child, rx, stderr }
    }

    /// Whether it is in (a `status/` message came), then whether `line`,
    /// appended to the log, reaches it.
    fn receives(&self, h: &OneHost, line: &str) -> bool {
        let status = wait_for(WITHIN, || {
            self.rx
                .recv_timeout(Duration::from_millis(50))
                .ok()
                .filter(|v| v["topic"] == "status/web01")
        });
        if status.is_none() {
            return false;
        }
        h.append("app", format!("{line}\n").as_bytes());
        wait_for(WITHIN, || {
            self.rx
                .recv_timeout(Duration::from_millis(50))
                .ok()
                .filter(|v| v["body"] == line)
        })
        .is_some()
    }

    /// Its exit status (None: still running after `within`, then killed)
    /// and its stderr.
    fn ended(&mut self, within: Duration) -> (Option<ExitStatus>, String) {
        let status = wait_for(within, || {
            let s = self.child.try_wait().unwrap();
            if s.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            s
        });
        if status.is_none() {
            let _ = self.child.kill();
        }
        let stderr = self
            .stderr
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default();
        (status, stderr)
    }
}

impl Drop for TailAs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a tail that must be refused: it ends with an error (within
/// the 5 s it tries, and some), having printed nothing; returns its stderr.
fn refused(rill: &Rill, flags: &[&str], env: &[(&str, &str)]) -> String {
    let mut t = TailAs::start(rill, flags, env);
    let (status, stderr) = t.ended(Duration::from_secs(20));
    let status = status.unwrap_or_else(|| panic!("rill tail {flags:?} never gave up: {stderr}"));
    assert!(!status.success(), "{status}: {stderr}");
    let got: Vec<Value> = t.rx.try_iter().collect();
    assert!(got.is_empty(), "a refused tail received {got:?}");
    stderr
}

/// The stream guard's part of `rill status --json`, once its refusals
/// reach `at_least` (and the last one's reason holds `reason`).
fn refusals(rill: &Rill, at_least: u64, reason: &str) -> Value {
    let mut last = Value::Null;
    let seen = wait_until(WITHIN, || {
        last = rill
            .status()
            .map_or(Value::Null, |s| s["streams_guard"].clone());
        last["refused"].as_u64().is_some_and(|n| n >= at_least)
            && last["last_refusal"]
                .as_str()
                .is_some_and(|r| r.contains(reason))
    });
    assert!(seen, "streams_guard: {last}");
    last
}

/// CURVE: an authorized client key and the collector's own key get lines;
/// an unknown key (and a wrong server key) end `rill tail` with an error
/// naming the key, and the refusal is in `rill status`.
#[test]
fn curve_admits_authorized_keys_and_names_the_refused_one() {
    let h = OneHost::new(&["app"]);
    let dir = h.rill.dir.path();
    let keys = dir.join("keys");
    let clients = dir.join("clients");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::create_dir_all(&clients).unwrap();
    keygen(&dir.join("server.key"));
    keygen(&keys.join("alice.key"));
    std::fs::copy(keys.join("alice.key.pub"), clients.join("alice.pub")).unwrap();
    let mallory = keygen(&keys.join("mallory.key"));
    guard_streams(
        &h.rill,
        "curve:\n  secret_key_file: server.key\n  authorized_keys_dir: clients",
    );
    let h = OneHost::start(h, &["app"]);
    let key = |name: &str| keys.join(name).display().to_string();

    let alice = TailAs::start(&h.rill, &["--key", &key("alice.key")], &[]);
    assert!(alice.receives(&h, "for alice"), "{}", h.rill.log());
    // The collector's own subscribers (the tap's ping watch) got in: the
    // guard has refused no one yet.
    let guard = h
        .rill
        .status()
        .map(|s| s["streams_guard"].clone())
        .unwrap_or_default();
    assert_eq!(guard["refused"], 0, "{guard}");

    let stderr = refused(&h.rill, &["--key", &key("mallory.key")], &[]);
    assert!(
        stderr.contains(&format!(
            "refused our login (CURVE key {mallory}: not in streams.curve.authorized_keys_dir"
        )),
        "{stderr}"
    );
    let guard = refusals(&h.rill, 1, &mallory);
    assert!(
        guard["last_refusal"]
            .as_str()
            .unwrap()
            .ends_with("is not in streams.curve.authorized_keys_dir"),
        "{guard}"
    );
    let text = h.rill.rill(&["status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("subscriber handshakes refused, last: client key ")
            && text.contains(&mallory),
        "{text}"
    );

    // The collector's own key, read from the config: no flags needed.
    let own = TailAs::start(&h.rill, &[], &[]);
    assert!(own.receives(&h, "for the operator"), "{}", h.rill.log());

    // Alice's key with the wrong server key: the handshake cannot succeed.
    let stderr = refused(
        &h.rill,
        &[
            "--key",
            &key("alice.key"),
            "--server-key",
            &key("mallory.key.pub"),
        ],
        &[],
    );
    assert!(
        stderr.contains("closed every connection during the security handshake")
            && stderr.contains("a wrong --server-key?"),
        "{stderr}"
    );
    // A PLAIN login to a CURVE endpoint: the mechanisms do not mix.
    let stderr = refused(
        &h.rill,
        &["--user", "ops", "--password-env", "STREAMS_PW"],
        &[("STREAMS_PW", "whatever")],
    );
    assert!(
        stderr.contains("does the endpoint want another login?"),
        "{stderr}"
    );
}

/// PLAIN: the right user gets lines, a wrong password is refused and
/// counted (the password itself is in neither the error nor the status).
#[test]
fn plain_admits_the_right_password_only() {
    let h = OneHost::new(&["app"]);
    write_private(
        &h.rill.dir.path().join("streams.users"),
        "# stream readers\nops:first-s3cret\nreader:second-s3cret\n",
    );
    guard_streams(&h.rill, "credentials_file: streams.users");
    let h = OneHost::start(h, &["app"]);

    let reader = TailAs::start(
        &h.rill,
        &["--user", "reader", "--password-env", "STREAMS_PW"],
        &[("STREAMS_PW", "second-s3cret")],
    );
    assert!(reader.receives(&h, "for the reader"), "{}", h.rill.log());
    // The file's first user, for a tail without flags.
    let own = TailAs::start(&h.rill, &[], &[]);
    assert!(own.receives(&h, "for ops"), "{}", h.rill.log());

    let stderr = refused(
        &h.rill,
        &["--user", "reader", "--password-env", "STREAMS_PW"],
        &[("STREAMS_PW", "a-guess")],
    );
    assert!(
        stderr.contains("refused our login (PLAIN user \"reader\": wrong user or password")
            && !stderr.contains("a-guess"),
        "{stderr}"
    );
    let guard = refusals(&h.rill, 1, "wrong user or password (user \"reader\")");
    assert!(!guard.to_string().contains("a-guess"), "{guard}");
}

/// A SUB socket of `ctx` logged in as `login`, connected to `endpoint`
/// (libzmq's `tcp://SOURCE:0;HOST:PORT` sets the source address), and its
/// monitor.
fn subscriber(
    ctx: &zmq::Context,
    endpoint: &str,
    login: (&str, &str),
) -> (zmq::Socket, zmq::Socket) {
    let s = ctx.socket(zmq::SUB).unwrap();
    s.set_linger(0).unwrap();
    s.set_plain_username(Some(login.0)).unwrap();
    s.set_plain_password(Some(login.1)).unwrap();
    s.set_subscribe(b"").unwrap();
    let monitor = format!("inproc://monitor-{}", session::new_id());
    s.monitor(&monitor, zmq::SocketEvent::ALL as i32).unwrap();
    let m = ctx.socket(zmq::PAIR).unwrap();
    m.connect(&monitor).unwrap();
    s.connect(endpoint).unwrap();
    (s, m)
}

/// The next monitor event of `m` that is one of `wanted`, within `within`.
fn event(
    m: &zmq::Socket,
    wanted: &[zmq::SocketEvent],
    within: Duration,
) -> Option<zmq::SocketEvent> {
    wait_for(within, || {
        if m.poll(zmq::POLLIN, 50).ok()? == 0 {
            return None;
        }
        let msg = m.recv_multipart(0).ok()?;
        let raw = u16::from_le_bytes([msg[0][0], msg[0][1]]);
        wanted.iter().copied().find(|e| *e as u16 == raw)
    })
}

/// `allow: [127.0.0.1/32]`: a subscriber from 127.0.0.2 with the right
/// login is refused, counted with its address, and gets nothing, while
/// one from 127.0.0.1 gets the same line.
#[test]
fn an_address_not_in_the_allowlist_gets_nothing() {
    let h = OneHost::new(&["app"]);
    write_private(&h.rill.dir.path().join("streams.users"), "ops:s3cret\n");
    guard_streams(
        &h.rill,
        "allow: [127.0.0.1/32]\ncredentials_file: streams.users",
    );
    let h = OneHost::start(h, &["app"]);
    let port = h.rill.streams.rsplit(':').next().unwrap();
    let ctx = zmq::Context::new();
    let login = ("ops", "s3cret");

    let (stranger, stranger_events) =
        subscriber(&ctx, &format!("tcp://127.0.0.2:0;127.0.0.1:{port}"), login);
    let refused = event(
        &stranger_events,
        &[
            zmq::SocketEvent::HANDSHAKE_FAILED_AUTH,
            zmq::SocketEvent::HANDSHAKE_SUCCEEDED,
        ],
        WITHIN,
    );
    assert_eq!(refused, Some(zmq::SocketEvent::HANDSHAKE_FAILED_AUTH));
    let guard = refusals(&h.rill, 1, "");
    assert_eq!(
        guard["last_refusal"], "address 127.0.0.2 is not in streams.allow",
        "{guard}"
    );

    let (friend, friend_events) = subscriber(&ctx, &format!("tcp://127.0.0.1:{port}"), login);
    assert_eq!(
        event(
            &friend_events,
            &[
                zmq::SocketEvent::HANDSHAKE_FAILED_AUTH,
                zmq::SocketEvent::HANDSHAKE_SUCCEEDED,
            ],
            WITHIN,
        ),
        Some(zmq::SocketEvent::HANDSHAKE_SUCCEEDED)
    );
    // Written until the friend has it (its subscription travels first);
    // the stranger would have it by then too, were it in.
    let mut got = None;
    let end = Instant::now() + WITHIN;
    while got.is_none() && Instant::now() < end {
        h.append("app", b"for 127.0.0.1 only\n");
        got = wait_for(Duration::from_secs(1), || {
            let parts = friend.recv_multipart(zmq::DONTWAIT).ok()?;
            let topic = String::from_utf8_lossy(&parts[0]).into_owned();
            (topic == "line/web01/app").then_some(parts)
        });
    }
    let parts = got.expect("the allowed subscriber gets the line");
    assert!(String::from_utf8_lossy(&parts[2]).contains("for 127.0.0.1 only"));
    assert_eq!(
        stranger.recv_multipart(zmq::DONTWAIT).err(),
        Some(zmq::Error::EAGAIN),
        "the stranger got a message"
    );
}

/// The sockets and their folder, each with its mode.
fn modes(run: &Path) -> Vec<(PathBuf, u32)> {
    std::fs::read_dir(run)
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let meta = std::fs::symlink_metadata(e.path()).ok()?;
            meta.file_type()
                .is_socket()
                .then(|| (e.path(), meta.permissions().mode() & 0o7777))
        })
        .collect()
}

/// Every `ipc://` socket Rill binds (the bus, ingest, control, a sessions
/// socket and a session's publisher) is under `state_dir/run` (0700), and
/// no other user may connect to it.
#[test]
fn every_socket_under_run_is_its_owners_alone() {
    let h = host_with_sessions("sessions: {}");
    let mut client = served(&h, Kind::Req);
    let created = client.call("create_session", json!({}));
    assert_eq!(created["status"], "ok", "{created}");
    let run = h.rill.dir.path().join("state/run");
    let mode = std::fs::metadata(&run).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700, "{}", run.display());

    let mut sockets = Vec::new();
    let all_there = wait_until(WITHIN, || {
        sockets = modes(&run);
        let names: Vec<String> = sockets
            .iter()
            .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        ["bus.sock", "ingest.sock", "control.sock", "web01.sessions"]
            .iter()
            .all(|n| names.iter().any(|m| m == n))
            && names.iter().any(|m| m.starts_with("web01.sessions."))
    });
    assert!(all_there, "{sockets:?}");
    // Every socket is narrowed to 0600 after it is bound.
    for (path, mode) in &sockets {
        assert_eq!(*mode, 0o600, "{} is {mode:o}", path.display());
    }
}
