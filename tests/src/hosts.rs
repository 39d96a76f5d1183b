//! The hosts a test runs against: `OneHost`, one `web01` on its own sshd
//! with a Rill following it, and `BusyBoxHost`, sshd options for a host
//! whose shell and tools are BusyBox's.

use std::path::PathBuf;
use std::process::Command;

use tempfile::TempDir;

use crate::{
    which, RemoteDir, Rill, Sshd, SshdOptions, TestAuth, TestHost, TestKey, TestLog, TestUser,
};

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

    /// Appends bursts of 10,000 lines of 1 KB (`burst R I xxx...`) to
    /// `log`, at most 6, until a Live stream of the page reports dropped
    /// lines on `/metrics` (`rill_live_dropped_total{subscriber="page-live-.."}`
    /// above 0) within 8 s of a burst: the lines written, and whether any
    /// were dropped.
    pub fn burst_until_live_drops(&self, log: &str) -> (u64, bool) {
        let port = self.rill.search_port;
        let dropped_in_metrics = || {
            let Some((200, serde_json::Value::String(text))) = crate::http_get(port, "/metrics")
            else {
                return false;
            };
            text.lines().any(|l| {
                l.starts_with("rill_live_dropped_total{subscriber=\"page-live-")
                    && !l.ends_with(" 0")
            })
        };
        let pad = "x".repeat(1000);
        let mut written = 0u64;
        for round in 0..6 {
            let text: String = (0..10_000)
                .map(|i| format!("burst {round} {i} {pad}\n"))
                .collect();
            self.append(log, text.as_bytes());
            written += 10_000;
            if crate::wait_until(std::time::Duration::from_secs(8), dropped_in_metrics) {
                return (written, true);
            }
        }
        (written, false)
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

/// Several hosts, each on its own real sshd (key auth, `strict`, host keys
/// known) with one log named after it: `<name>.log` in a scratch dir of
/// the test user, created empty.
pub struct ManyHosts {
    pub names: Vec<String>,
    pub sshds: Vec<Sshd>,
    pub remote: RemoteDir,
    pub key: TestKey,
    pub user: TestUser,
}

impl ManyHosts {
    pub fn start(names: &[&str]) -> ManyHosts {
        let user = TestUser::get().unwrap();
        let key = user.authorize_new_key().unwrap();
        let remote = user.scratch_dir().unwrap();
        let sshds: Vec<Sshd> = names
            .iter()
            .map(|_| Sshd::start(SshdOptions::default()).unwrap())
            .collect();
        for h in names {
            remote.append(&format!("{h}.log"), b"").unwrap();
        }
        ManyHosts {
            names: names.iter().map(|h| h.to_string()).collect(),
            sshds,
            remote,
            key,
            user,
        }
    }

    /// A Rill following every host's log (config written, not started).
    pub fn rill(&self) -> Rill {
        let hosts: Vec<TestHost> = self
            .names
            .iter()
            .zip(&self.sshds)
            .map(|(name, sshd)| TestHost {
                name,
                port: sshd.port(),
                user: &self.user.name,
                auth: TestAuth::Key(&self.key.private),
                known_hosts: "strict",
            })
            .collect();
        let files: Vec<PathBuf> = self.names.iter().map(|h| self.file(h)).collect();
        let host_lists: Vec<[&str; 1]> = self.names.iter().map(|h| [h.as_str()]).collect();
        let logs: Vec<TestLog> = self
            .names
            .iter()
            .zip(&files)
            .zip(&host_lists)
            .map(|((name, path), hosts)| TestLog { name, path, hosts })
            .collect();
        let known: Vec<String> = self.sshds.iter().map(Sshd::known_hosts_line).collect();
        Rill::new(&hosts, &logs, &known)
    }

    /// Appends to `<host>.log` with one write.
    pub fn append(&self, host: &str, text: &str) {
        self.remote
            .append(&format!("{host}.log"), text.as_bytes())
            .unwrap();
    }

    /// The remote path of `<host>.log`.
    pub fn file(&self, host: &str) -> PathBuf {
        self.remote.file(&format!("{host}.log"))
    }
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
