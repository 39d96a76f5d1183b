//! The Rill side of the end-to-end harness: write a config, start the real
//! `supervisor`, run the real `rill` CLI. Generic helpers (sshd, the test
//! user, waiting with a deadline) come from `rill-test-support`.
//!
//! The binaries are the ones cargo built next to the test executable
//! (`target/<profile>/`); the test command builds them first.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

pub mod session;

pub use rill_test_support::{
    free_port, raise_open_files, wait_for, wait_until, which, RemoteDir, RemoteProcess, Sshd,
    SshdOptions, TestKey, TestUser,
};

/// The SSH sessions (sids) of the test user whose processes mention `needle`
/// (e.g. a scratch dir): the remote side of one Rill run.
pub fn remote_sessions(user: &TestUser, needle: &str) -> std::collections::BTreeSet<u32> {
    user.processes()
        .into_iter()
        .filter(|p| p.cmdline.contains(needle))
        .map(|p| p.sid)
        .collect()
}

/// Every process of the test user still in one of `sessions`.
pub fn remote_processes_in(
    user: &TestUser,
    sessions: &std::collections::BTreeSet<u32>,
) -> Vec<RemoteProcess> {
    user.processes()
        .into_iter()
        .filter(|p| sessions.contains(&p.sid))
        .collect()
}

/// `target/<profile>/<name>`: where cargo put the binary. Test executables
/// live one level below (`target/<profile>/deps/`), benchmark binaries right
/// beside the others.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let here = exe.parent().unwrap();
    let profile_dir = if here.join(name).exists() {
        here
    } else {
        here.parent().unwrap()
    };
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// How a host in a test config authenticates.
pub enum TestAuth<'a> {
    Key(&'a Path),
    PasswordEnv(&'a str),
    Agent,
}

/// One host entry of a test config.
pub struct TestHost<'a> {
    pub name: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub auth: TestAuth<'a>,
    pub known_hosts: &'a str,
}

impl<'a> TestHost<'a> {
    /// `web01` on `sshd`, logging in as `user` with `key`, host key strict.
    pub fn web01(sshd: &Sshd, user: &'a TestUser, key: &'a TestKey) -> TestHost<'a> {
        TestHost {
            name: "web01",
            port: sshd.port(),
            user: &user.name,
            auth: TestAuth::Key(&key.private),
            known_hosts: "strict",
        }
    }
}

/// One log entry: name, absolute path, `all` or a list of hosts.
pub struct TestLog<'a> {
    pub name: &'a str,
    pub path: &'a Path,
    pub hosts: &'a [&'a str],
}

/// A Rill installation in a temp dir: its config, state and supervisor.
pub struct Rill {
    pub dir: TempDir,
    pub config: PathBuf,
    pub streams: String,
    supervisor: Option<Child>,
    log: PathBuf,
    env: Vec<(String, String)>,
}

impl Rill {
    /// Writes a config for `hosts` and `logs` (streams on a free loopback port,
    /// state in the temp dir). `known_hosts` lines are pre-seeded into
    /// `state_dir/known_hosts`.
    pub fn new(hosts: &[TestHost], logs: &[TestLog], known_hosts: &[String]) -> Rill {
        let dir = tempfile::Builder::new()
            .prefix("rill-e2e")
            .tempdir()
            .unwrap();
        let streams = format!("tcp://127.0.0.1:{}", free_port());
        let mut y = String::new();
        writeln!(
            y,
            "state_dir: ./state\nstreams:\n  endpoint: {streams}\nhosts:"
        )
        .unwrap();
        for h in hosts {
            writeln!(
                y,
                "  {}:\n    address: 127.0.0.1\n    port: {}\n    user: {}",
                h.name, h.port, h.user
            )
            .unwrap();
            match &h.auth {
                TestAuth::Key(p) => writeln!(y, "    auth:\n      key: {}", p.display()).unwrap(),
                TestAuth::PasswordEnv(v) => {
                    writeln!(y, "    auth:\n      password_env: {v}").unwrap()
                }
                TestAuth::Agent => writeln!(y, "    auth:\n      agent: true").unwrap(),
            }
            writeln!(y, "    known_hosts: {}", h.known_hosts).unwrap();
        }
        writeln!(y, "logs:").unwrap();
        for l in logs {
            writeln!(
                y,
                "  {}:\n    path: '{}'\n    hosts: [{}]",
                l.name,
                l.path.display().to_string().replace('\'', "''"),
                l.hosts.join(", ")
            )
            .unwrap();
        }
        let config = dir.path().join("rill.yaml");
        std::fs::write(&config, y).unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(
            state.join("known_hosts"),
            known_hosts
                .iter()
                .map(|l| format!("{l}\n"))
                .collect::<String>(),
        )
        .unwrap();
        let log = dir.path().join("supervisor.log");
        Rill {
            dir,
            config,
            streams,
            supervisor: None,
            log,
            env: Vec::new(),
        }
    }

    /// Appends top-level YAML (e.g. a `tap:` block) to the config.
    pub fn append_config(&self, yaml: &str) {
        let mut text = std::fs::read_to_string(&self.config).unwrap();
        text.push_str(yaml);
        std::fs::write(&self.config, text).unwrap();
    }

    /// Adds YAML keys to log `log`'s entry, e.g. `"parser: combined"` or a
    /// nested block; each line of `yaml` is indented under the log.
    pub fn set_log_options(&self, log: &str, yaml: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let entry = text
            .find(&format!("\n  {log}:\n"))
            .unwrap_or_else(|| panic!("no log {log} in config:\n{text}"));
        let hosts = entry + text[entry..].find("\n    hosts:").unwrap() + 1;
        let end = hosts + text[hosts..].find('\n').unwrap() + 1;
        let extra: String = yaml.lines().map(|l| format!("    {l}\n")).collect();
        let text = format!("{}{extra}{}", &text[..end], &text[end..]);
        std::fs::write(&self.config, text).unwrap();
    }

    /// Sets an environment variable for every process this Rill starts.
    pub fn env(&mut self, key: &str, value: &str) -> &mut Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Starts `supervisor --config ...` with its log in the temp dir (a
    /// restarted supervisor appends to it).
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(bin("supervisor"))
            .arg("--config")
            .arg(&self.config)
            .envs(self.env.iter().cloned())
            .env(
                "RUST_LOG",
                std::env::var("RILL_E2E_RUST_LOG").unwrap_or_else(|_| "info,tantivy=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.supervisor = Some(child);
    }

    pub fn supervisor_pid(&self) -> Option<u32> {
        self.supervisor.as_ref().map(Child::id)
    }

    /// SIGKILL to the supervisor (its children follow it: they die with
    /// their parent).
    pub fn kill_supervisor(&mut self) {
        if let Some(mut child) = self.supervisor.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM to the supervisor; waits up to `within` for it to exit.
    pub fn stop(&mut self, within: Duration) -> Option<ExitStatus> {
        let mut child = self.supervisor.take()?;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// The supervisor's log (its own and its children's stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `rill <args...> --config <config>`.
    pub fn rill(&self, args: &[&str]) -> Output {
        Command::new(bin("rill"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .envs(self.env.iter().cloned())
            .output()
            .unwrap()
    }

    /// Waits up to `within` until `rill search --count QUERY` (plus extra
    /// args) says `n`; the last count seen (None if none) otherwise.
    pub fn wait_count(&self, query: &str, extra: &[&str], n: u64, within: Duration) -> Option<u64> {
        let mut last = None;
        wait_for(within, || {
            last = self.count(query, extra);
            last.filter(|&c| c == n)
        })
        .or(last)
    }

    /// `rill search --count QUERY` (plus extra args), or None while the index
    /// does not exist yet.
    pub fn count(&self, query: &str, extra: &[&str]) -> Option<u64> {
        let mut args = vec!["search", "--count"];
        args.extend_from_slice(extra);
        args.push(query);
        let out = self.rill(&args);
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    /// `rill status --json`, or None if the supervisor did not answer.
    pub fn status(&self) -> Option<Value> {
        let out = self.rill(&["status", "--json"]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The status entry of `host`.
    pub fn host_status(&self, host: &str) -> Option<Value> {
        let s = self.status()?;
        s["hosts"]
            .as_array()?
            .iter()
            .find(|h| h["host"] == host)
            .cloned()
    }

    /// [`Rill::start`], then waits up to 20 s until every log of `host` is
    /// followed; panics with the supervisor's log if they never are.
    pub fn start_following(&mut self, host: &str) {
        self.start();
        assert!(
            self.wait_following(host, Duration::from_secs(20)),
            "{host} never followed; log:\n{}",
            self.log()
        );
    }

    /// Waits until every log of `host` is being followed (its file identity
    /// is known), i.e. lines written from now on will be read.
    pub fn wait_following(&self, host: &str, deadline: Duration) -> bool {
        wait_until(deadline, || {
            self.host_status(host).is_some_and(|h| {
                h["connected"] == true
                    && h["logs"]
                        .as_array()
                        .is_some_and(|l| !l.is_empty() && l.iter().all(|l| !l["file_id"].is_null()))
            })
        })
    }

    /// Starts `rill tail --json TOPICS...`; its lines arrive on the channel.
    pub fn tail(&self, topics: &[&str]) -> Tail {
        let mut child = Command::new(bin("rill"))
            .arg("tail")
            .arg("--json")
            .arg("--config")
            .arg(&self.config)
            .args(topics)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        Tail { child, rx }
    }
}

impl Drop for Rill {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(6));
    }
}

/// A running `rill tail --json`.
pub struct Tail {
    child: Child,
    pub rx: mpsc::Receiver<Value>,
}

impl Tail {
    /// Collects messages until `done` says so or `deadline` passes.
    pub fn collect_until(
        &self,
        deadline: Duration,
        mut done: impl FnMut(&[Value]) -> bool,
    ) -> Vec<Value> {
        let end = Instant::now() + deadline;
        let mut got = Vec::new();
        while Instant::now() < end && !done(&got) {
            if let Ok(v) = self.rx.recv_timeout(Duration::from_millis(50)) {
                got.push(v);
                while let Ok(v) = self.rx.try_recv() {
                    got.push(v);
                }
            }
        }
        got
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The common fixture: one host `web01` on its own real sshd (key auth,
/// `strict`, its host key known), following `logs` as files `<log>.log` in a
/// scratch dir of the test user.
pub struct OneHost {
    pub rill: Rill,
    pub remote: RemoteDir,
    pub key: TestKey,
    pub sshd: Sshd,
    pub user: TestUser,
}

impl OneHost {
    /// Writes the config; creates no file and starts nothing.
    pub fn new(logs: &[&str]) -> OneHost {
        OneHost::with_sshd(SshdOptions::default(), logs)
    }

    /// [`OneHost::new`] with a specially configured sshd.
    pub fn with_sshd(opts: SshdOptions, logs: &[&str]) -> OneHost {
        let user = TestUser::get().unwrap();
        let sshd = Sshd::start(opts).unwrap();
        let key = user.authorize_new_key().unwrap();
        let remote = user.scratch_dir().unwrap();
        let files: Vec<PathBuf> = logs
            .iter()
            .map(|l| remote.file(&format!("{l}.log")))
            .collect();
        let entries: Vec<TestLog> = logs
            .iter()
            .zip(&files)
            .map(|(name, path)| TestLog {
                name,
                path,
                hosts: &["web01"],
            })
            .collect();
        let host = TestHost {
            name: "web01",
            port: sshd.port(),
            user: &user.name,
            auth: TestAuth::Key(&key.private),
            known_hosts: "strict",
        };
        let rill = Rill::new(&[host], &entries, &[sshd.known_hosts_line()]);
        OneHost {
            rill,
            remote,
            key,
            sshd,
            user,
        }
    }

    /// [`OneHost::new`], with every log file created empty, the supervisor
    /// started, and every log followed.
    pub fn running(logs: &[&str]) -> OneHost {
        OneHost::start(OneHost::new(logs), logs)
    }

    /// Creates every log file empty, starts the supervisor, waits until every
    /// log is followed.
    pub fn start(mut h: OneHost, logs: &[&str]) -> OneHost {
        for l in logs {
            h.remote.append(&format!("{l}.log"), b"").unwrap();
        }
        h.rill.start_following("web01");
        h
    }

    /// Appends to `<log>.log` with one write.
    pub fn append(&self, log: &str, data: &[u8]) {
        self.remote.append(&format!("{log}.log"), data).unwrap();
    }

    /// The remote path of `<log>.log`.
    pub fn file(&self, log: &str) -> PathBuf {
        self.remote.file(&format!("{log}.log"))
    }
}

/// `GET path` (already percent-encoded) from 127.0.0.1:`port` over HTTP/1.0:
/// the status and the JSON body, or None if nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, Value)> {
    http_request(port, "GET", path)
}

/// Like [`http_get`] with any method.
pub fn http_request(port: u16, method: &str, path: &str) -> Option<(u16, Value)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((
        status,
        serde_json::from_str(body).unwrap_or(Value::String(body.into())),
    ))
}

/// Percent-encodes a query-string value.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `logrotate -f -s STATE CONF`: rotates now, whatever the conditions in
/// CONF say; panics with logrotate's stderr if it fails.
pub fn logrotate_now(state: &Path, conf: &Path) {
    let out = Command::new("logrotate")
        .arg("-f")
        .arg("-s")
        .arg(state)
        .arg(conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "logrotate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// PIDs of processes whose command line mentions `needle` (e.g. a config path).
pub fn local_processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) && pid != std::process::id() {
            found.push((pid, cmd));
        }
    }
    found
}

/// sshd options for a host whose shell and tools are BusyBox's and nothing
/// else: every command runs under BusyBox `sh` with a PATH that holds only
/// BusyBox applets (so `tail`, `ls`, `stat`, `head`... are the applets, and
/// there is no `cksum`, as on Debian's BusyBox). Keep the value alive while
/// the sshd runs.
pub struct BusyBoxHost {
    pub applets: TempDir,
    pub opts: SshdOptions,
}

impl BusyBoxHost {
    pub fn new() -> BusyBoxHost {
        let busybox = which("busybox");
        let applets = tempfile::Builder::new()
            .prefix("rill-busybox")
            .tempdir()
            .unwrap();
        let out = Command::new(&busybox).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&out.stdout).lines() {
            std::os::unix::fs::symlink(&busybox, applets.path().join(applet)).unwrap();
        }
        std::fs::set_permissions(
            applets.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let dir = applets.path().display();
        let opts = SshdOptions {
            extra_config: vec![
                format!("SetEnv PATH={dir}"),
                format!("ForceCommand exec {dir}/sh -c \"$SSH_ORIGINAL_COMMAND\""),
            ],
            ..Default::default()
        };
        BusyBoxHost { applets, opts }
    }
}

impl Default for BusyBoxHost {
    fn default() -> Self {
        BusyBoxHost::new()
    }
}

/// A process's resident memory in KiB, if it is still there.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Packets to and from a TCP port on loopback silently dropped (no reset),
/// as a partitioned network does, until dropped.
pub struct BlackHole {
    port: u16,
}

impl BlackHole {
    pub fn start(port: u16) -> BlackHole {
        let hole = BlackHole { port };
        for dir in ["--dport", "--sport"] {
            hole.iptables("-I", dir);
        }
        hole
    }

    fn iptables(&self, action: &str, dir: &str) {
        let out = Command::new("iptables")
            .args(["-w", action, "INPUT", "-p", "tcp", dir])
            .arg(self.port.to_string())
            .args(["-j", "DROP"])
            .output()
            .expect("iptables is not installed; run tests/install-deps.sh");
        assert!(
            out.status.success() || action == "-D",
            "iptables {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        for dir in ["--dport", "--sport"] {
            self.iptables("-D", dir);
        }
    }
}
