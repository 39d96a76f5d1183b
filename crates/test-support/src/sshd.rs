//! A real OpenSSH sshd on loopback.

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use tempfile::TempDir;

use crate::user::ACCOUNTS;
use crate::{free_port, wait_until};

#[derive(Debug, Clone, Default)]
pub struct SshdOptions {
    /// `PasswordAuthentication yes` (otherwise keys only).
    pub password_auth: bool,
    /// `MaxSessions` (OpenSSH's default is 10).
    pub max_sessions: Option<u32>,
    /// Extra `sshd_config` lines. They come first, because sshd keeps the
    /// first value it reads for a keyword, so they override the defaults.
    pub extra_config: Vec<String>,
}

/// An sshd listening on 127.0.0.1:`port`, stopped on drop.
pub struct Sshd {
    dir: TempDir,
    port: u16,
    opts: SshdOptions,
    child: Option<Child>,
}

impl Sshd {
    pub fn start(opts: SshdOptions) -> anyhow::Result<Sshd> {
        anyhow::ensure!(
            std::path::Path::new("/usr/sbin/sshd").exists(),
            "/usr/sbin/sshd is missing; run tests/install-deps.sh"
        );
        let dir = tempfile::Builder::new().prefix("rill-sshd").tempdir()?;
        let key = dir.path().join("host_ed25519_key");
        let st = Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "rill-test-host",
                "-f",
            ])
            .arg(&key)
            .status()
            .context("could not run ssh-keygen")?;
        anyhow::ensure!(st.success(), "ssh-keygen failed");
        let mut sshd = Sshd {
            dir,
            port: free_port(),
            opts,
            child: None,
        };
        sshd.launch()?;
        Ok(sshd)
    }

    fn config(&self) -> String {
        let d = self.dir.path().display();
        let yes = |b: bool| if b { "yes" } else { "no" };
        let mut c: String = self
            .opts
            .extra_config
            .iter()
            .map(|line| format!("{line}\n"))
            .collect();
        c += &format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519_key\nPidFile {d}/sshd.pid\n\
             UsePAM no\nPasswordAuthentication {pw}\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             AuthorizedKeysFile .ssh/authorized_keys\nStrictModes no\nPermitRootLogin no\nAllowUsers {users}\n\
             LogLevel VERBOSE\nClientAliveInterval 5\nClientAliveCountMax 3\nMaxStartups 100:30:200\n",
            port = self.port,
            pw = yes(self.opts.password_auth),
            users = ACCOUNTS.map(|(name, _)| name).join(" "),
        );
        if let Some(n) = self.opts.max_sessions {
            c.push_str(&format!("MaxSessions {n}\n"));
        }
        c
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        std::fs::create_dir_all("/run/sshd")?;
        let config = self.dir.path().join("sshd_config");
        std::fs::write(&config, self.config())?;
        let log = self.dir.path().join("sshd.log");
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-f")
            .arg(&config)
            .arg("-E")
            .arg(&log)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .context("could not start /usr/sbin/sshd")?;
        self.child = Some(child);
        let port = self.port;
        let ready = wait_until(Duration::from_secs(10), || {
            if let Some(c) = &mut self.child {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    return true;
                }
            }
            banner(port)
        });
        if let Some(c) = &mut self.child {
            if let Ok(Some(status)) = c.try_wait() {
                bail!("sshd exited at start ({status}):\n{}", self.log());
            }
        }
        if !ready {
            bail!(
                "sshd did not accept connections on port {port} within 10 s:\n{}",
                self.log()
            );
        }
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The listening sshd's pid (each connection is served by its children).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The processes serving this sshd's connections (its descendants).
    pub fn connection_pids(&self) -> Vec<u32> {
        let Some(root) = self.pid() else {
            return Vec::new();
        };
        let parent_of = |pid: u32| -> Option<u32> {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) state ppid ...": comm may hold spaces, so split after ')'.
            stat.rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        };
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let mut p = pid;
            while let Some(pp) = parent_of(p) {
                if pp == root {
                    found.push(pid);
                    break;
                }
                if pp <= 1 {
                    break;
                }
                p = pp;
            }
        }
        found
    }

    /// `[127.0.0.1]:PORT ssh-ed25519 AAAA...`
    pub fn known_hosts_line(&self) -> String {
        let public = std::fs::read_to_string(self.dir.path().join("host_ed25519_key.pub")).unwrap();
        let mut words = public.split_whitespace();
        let (kind, key) = (words.next().unwrap(), words.next().unwrap());
        format!("[127.0.0.1]:{} {kind} {key}", self.port)
    }

    /// The system's OpenSSH client, logging in with `key` as the account it
    /// is authorized for, checking this server's host key strictly, to run
    /// `remote_cmd`.
    pub fn client(&self, key: &crate::TestKey, remote_cmd: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
        ])
        .arg(format!(
            "UserKnownHostsFile={}",
            self.known_hosts_file().display()
        ))
        .arg("-i")
        .arg(&key.private)
        .args([
            "-p",
            &self.port().to_string(),
            &format!("{}@127.0.0.1", key.user),
            remote_cmd,
        ]);
        c
    }

    /// A file holding [`Sshd::known_hosts_line`].
    pub fn known_hosts_file(&self) -> PathBuf {
        let path = self.dir.path().join("known_hosts");
        std::fs::write(&path, format!("{}\n", self.known_hosts_line())).unwrap();
        path
    }

    /// Stops the listening server. Connections it already serves go on (their
    /// processes start sessions of their own, outside its process group):
    /// kill [`Sshd::connection_pids`] first for a server that is gone.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id() as i32;
            // SAFETY: signalling the process group we created for sshd.
            unsafe { libc::kill(-pid, libc::SIGTERM) };
            if !wait_until(Duration::from_secs(2), || {
                matches!(c.try_wait(), Ok(Some(_)))
            }) {
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                let _ = c.wait();
            }
        }
    }

    /// Restarts on the same port with the same host key.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.launch()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// True once something on `port` greets with an SSH banner.
fn banner(port: u16) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 8];
    s.read_exact(&mut buf).is_ok() && &buf == b"SSH-2.0-"
}
