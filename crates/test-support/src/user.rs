//! The unprivileged `rilltest` user: the "remote" account of every test.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{bail, Context};
use rand::distributions::{Alphanumeric, DistString};
use tempfile::TempDir;

const NAME: &str = "rilltest";

pub struct TestUser {
    pub name: String,
    pub home: PathBuf,
    pub uid: u32,
    pub gid: u32,
}

/// A private key whose public half is in rilltest's authorized_keys; removed
/// from there on drop.
pub struct TestKey {
    pub private: PathBuf,
    public_line: String,
    authorized: PathBuf,
    _dir: TempDir,
}

/// A process of the test user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteProcess {
    pub pid: u32,
    /// Session id: sshd starts every channel's command in a new session, and
    /// a child keeps it even when its parent is gone.
    pub sid: u32,
    pub cmdline: String,
}

/// A folder owned by rilltest where tests put the files Rill follows.
pub struct RemoteDir {
    pub path: PathBuf,
    uid: u32,
    gid: u32,
    _dir: TempDir,
}

/// Serialises edits of shared files across test threads and processes.
struct FileLock(#[allow(dead_code)] File);

impl FileLock {
    fn take(path: &Path) -> anyhow::Result<FileLock> {
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        // SAFETY: flock on an open file, released on close.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        Ok(FileLock(f))
    }
}

impl TestUser {
    /// The test user, created if missing (as root), with a password set:
    /// OpenSSH refuses every login, keys included, to an account whose
    /// password is locked.
    pub fn get() -> anyhow::Result<TestUser> {
        if lookup().is_none() {
            let ok = Command::new("useradd")
                .args(["-m", "-s", "/bin/sh", NAME])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                bail!("user {NAME} is missing and could not be created; run tests/install-deps.sh as root");
            }
        }
        let (uid, gid, home) = lookup().context("rilltest user")?;
        let user = TestUser {
            name: NAME.into(),
            home: home.into(),
            uid,
            gid,
        };
        user.password()?;
        Ok(user)
    }

    /// rilltest's password: generated once, kept in a root-only file so every
    /// test process agrees, and set with chpasswd.
    pub fn password(&self) -> anyhow::Result<String> {
        static CACHED: OnceLock<String> = OnceLock::new();
        if let Some(p) = CACHED.get() {
            return Ok(p.clone());
        }
        let file = std::env::temp_dir().join("rill-test-password");
        let _lock = FileLock::take(&std::env::temp_dir().join("rill-test-password.lock"))?;
        let password = match std::fs::read_to_string(&file) {
            Ok(p) if !p.trim().is_empty() => p.trim().to_owned(),
            _ => {
                let p = Alphanumeric.sample_string(&mut rand::thread_rng(), 20);
                let mut f = File::options()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .mode(0o600)
                    .open(&file)?;
                f.write_all(p.as_bytes())?;
                p
            }
        };
        if !shadow_has_password() || CACHED.get().is_none() {
            let mut child = Command::new("chpasswd")
                .stdin(Stdio::piped())
                .spawn()
                .context("could not run chpasswd")?;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(format!("{NAME}:{password}\n").as_bytes())?;
            anyhow::ensure!(child.wait()?.success(), "chpasswd failed");
        }
        Ok(CACHED.get_or_init(|| password).clone())
    }

    /// A new ed25519 key pair, authorized for rilltest.
    pub fn authorize_new_key(&self) -> anyhow::Result<TestKey> {
        let dir = tempfile::Builder::new().prefix("rill-key").tempdir()?;
        let private = dir.path().join("id_ed25519");
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "rill-test", "-f"])
            .arg(&private)
            .status()?;
        anyhow::ensure!(st.success(), "ssh-keygen failed");
        let public_line = std::fs::read_to_string(private.with_extension("pub"))?
            .trim()
            .to_owned();
        let ssh = self.home.join(".ssh");
        std::fs::create_dir_all(&ssh)?;
        chown(&ssh, self.uid, self.gid)?;
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700))?;
        let authorized = ssh.join("authorized_keys");
        {
            let _lock = FileLock::take(&std::env::temp_dir().join("rill-test-authorized.lock"))?;
            let mut f = File::options()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&authorized)?;
            writeln!(f, "{public_line}")?;
            chown(&authorized, self.uid, self.gid)?;
        }
        Ok(TestKey {
            private,
            public_line,
            authorized,
            _dir: dir,
        })
    }

    /// A fresh folder owned by rilltest, removed on drop.
    pub fn scratch_dir(&self) -> anyhow::Result<RemoteDir> {
        let dir = tempfile::Builder::new()
            .prefix("rill-remote")
            .tempdir_in("/tmp")?;
        chown(dir.path(), self.uid, self.gid)?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        Ok(RemoteDir {
            path: dir.path().to_owned(),
            uid: self.uid,
            gid: self.gid,
            _dir: dir,
        })
    }

    /// rilltest's processes other than sshd's own session processes: what
    /// Rill left running on the "server".
    pub fn processes(&self) -> Vec<RemoteProcess> {
        let mut found = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return found;
        };
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
                continue;
            };
            let uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next()?.parse::<u32>().ok());
            if uid != Some(self.uid) {
                continue;
            }
            let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd)
                .replace('\0', " ")
                .trim()
                .to_owned();
            if cmd.is_empty() || cmd.starts_with("sshd:") {
                continue;
            }
            // /proc/PID/stat: "pid (comm) state ppid pgrp session ...".
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let after = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest)
                .unwrap_or_default();
            let sid = after
                .split_whitespace()
                .nth(3)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            found.push(RemoteProcess {
                pid,
                sid,
                cmdline: cmd,
            });
        }
        found
    }
}

impl Drop for TestKey {
    fn drop(&mut self) {
        let Ok(_lock) = FileLock::take(&std::env::temp_dir().join("rill-test-authorized.lock"))
        else {
            return;
        };
        if let Ok(text) = std::fs::read_to_string(&self.authorized) {
            let kept: String = text
                .lines()
                .filter(|l| l.trim() != self.public_line)
                .map(|l| format!("{l}\n"))
                .collect();
            let _ = std::fs::write(&self.authorized, kept);
        }
    }
}

impl RemoteDir {
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Appends `data` to `name` with a single write(2), creating it (owned by
    /// rilltest) if needed.
    pub fn append(&self, name: &str, data: &[u8]) -> anyhow::Result<()> {
        let path = self.file(name);
        let existed = path.exists();
        let mut f = File::options()
            .create(true)
            .append(true)
            .mode(0o644)
            .open(&path)?;
        if !existed {
            chown(&path, self.uid, self.gid)?;
        }
        if !data.is_empty() {
            let n = f.write(data)?;
            anyhow::ensure!(n == data.len(), "short write to {}", path.display());
        }
        Ok(())
    }
}

fn lookup() -> Option<(u32, u32, String)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 6 || f[0] != NAME {
            return None;
        }
        Some((f[2].parse().ok()?, f[3].parse().ok()?, f[5].to_owned()))
    })
}

fn shadow_has_password() -> bool {
    std::fs::read_to_string("/etc/shadow").is_ok_and(|s| {
        s.lines().any(|l| {
            l.split(':').next() == Some(NAME)
                && l.split(':').nth(1).is_some_and(|h| h.starts_with('$'))
        })
    })
}

fn chown(path: &Path, uid: u32, gid: u32) -> anyhow::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("could not chown {}", path.display()))
}
