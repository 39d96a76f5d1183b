//! The unprivileged test accounts: the "remote" side of every test.
//! `rilltest` (login shell sh) is the default; `rilltcsh` and `rillfish`
//! prove the remote scripts run whatever the login shell is.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use anyhow::{bail, Context};
use rand::distributions::{Alphanumeric, DistString};
use tempfile::TempDir;

/// Every account the tests log in as, with its login shell (a program
/// looked up on PATH, or an absolute path). `tests/install-deps.sh` creates
/// the same list; sshd allows these users and no other.
pub const ACCOUNTS: [(&str, &str); 3] = [
    ("rilltest", "/bin/sh"),
    ("rilltcsh", "tcsh"),
    ("rillfish", "fish"),
];

pub struct TestUser {
    pub name: String,
    pub home: PathBuf,
    pub uid: u32,
    pub gid: u32,
}

/// A private key whose public half is in a test account's authorized_keys;
/// removed from there on drop.
pub struct TestKey {
    pub private: PathBuf,
    /// The account it logs in as.
    pub user: String,
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

/// A folder owned by a test account where tests put the files Rill follows.
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
    /// `rilltest`, the account of every test that does not ask for another.
    pub fn get() -> anyhow::Result<TestUser> {
        TestUser::account(ACCOUNTS[0].0)
    }

    /// The test account `name` (one of [`ACCOUNTS`]), created with its login
    /// shell if missing (as root), with a password set: OpenSSH refuses
    /// every login, keys included, to an account whose password is locked.
    pub fn account(name: &str) -> anyhow::Result<TestUser> {
        let Some(&(_, shell)) = ACCOUNTS.iter().find(|(n, _)| *n == name) else {
            bail!("{name} is not a test account (see ACCOUNTS)");
        };
        if lookup(name).is_none() {
            let ok = Command::new("useradd")
                .args(["-m", "-s"])
                .arg(crate::which(shell))
                .arg(name)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                bail!("user {name} is missing and could not be created; run tests/install-deps.sh as root");
            }
        }
        let (uid, gid, home) = lookup(name).with_context(|| format!("user {name}"))?;
        let user = TestUser {
            name: name.into(),
            home: home.into(),
            uid,
            gid,
        };
        user.password()?;
        Ok(user)
    }

    /// The password of every test account: generated once, kept in a
    /// root-only file so every test process agrees, and set with chpasswd
    /// the first time this process uses the account.
    pub fn password(&self) -> anyhow::Result<String> {
        static CACHED: OnceLock<String> = OnceLock::new();
        static SET_FOR: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
        let mut set_for = SET_FOR.lock().unwrap();
        if let Some(p) = CACHED.get().filter(|_| set_for.contains(&self.name)) {
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
        let mut child = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .context("could not run chpasswd")?;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{}:{password}\n", self.name).as_bytes())?;
        anyhow::ensure!(child.wait()?.success(), "chpasswd failed");
        set_for.insert(self.name.clone());
        Ok(CACHED.get_or_init(|| password).clone())
    }

    /// A new ed25519 key pair, authorized for this account.
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
            user: self.name.clone(),
            public_line,
            authorized,
            _dir: dir,
        })
    }

    /// A fresh folder owned by this account, removed on drop.
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

    /// This account's processes other than sshd's own session processes:
    /// what Rill left running on the "server".
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
    /// the account) if needed.
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

fn lookup(name: &str) -> Option<(u32, u32, String)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 6 || f[0] != name {
            return None;
        }
        Some((f[2].parse().ok()?, f[3].parse().ok()?, f[5].to_owned()))
    })
}

fn chown(path: &Path, uid: u32, gid: u32) -> anyhow::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("could not chown {}", path.display()))
}
