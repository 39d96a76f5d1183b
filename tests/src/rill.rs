//! `Rill`: one installation in a temp dir, its supervisor and the `rill`
//! CLI run against its config.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::config::write_config;
use crate::{bin, free_port, TestHost, TestLog};

/// A Rill installation in a temp dir: its config, state and supervisor.
pub struct Rill {
    pub dir: TempDir,
    pub config: PathBuf,
    pub streams: String,
    /// The search API's port (unless the test set `search:` itself).
    pub search_port: u16,
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
        let search_port = free_port();
        let config = write_config(
            dir.path(),
            (&streams, search_port),
            hosts,
            logs,
            known_hosts,
        );
        let log = dir.path().join("supervisor.log");
        Rill {
            dir,
            config,
            streams,
            search_port,
            supervisor: None,
            log,
            env: Vec::new(),
        }
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

    /// The pid of this Rill's one process of binary `bin` (`parser`,
    /// `ssh_tap`, ...).
    pub fn pid_of(&self, bin: &str) -> u32 {
        let pids = self.pids_of(bin);
        assert_eq!(pids.len(), 1, "one {bin}: {pids:?}");
        pids[0]
    }

    fn pids_of(&self, bin: &str) -> Vec<u32> {
        crate::local_processes_mentioning(&self.config.display().to_string())
            .into_iter()
            .filter(|(_, c)| c.contains(&format!("/{bin} ")))
            .map(|(p, _)| p)
            .collect()
    }

    /// SIGKILLs the running ssh_tap and waits until robust_ssh_tap started
    /// another.
    pub fn kill_tap(&self) {
        self.kill9("ssh_tap");
    }

    /// SIGKILLs the running `bin` (one of its processes) and waits until
    /// another was started (by the supervisor, or robust_ssh_tap).
    pub fn kill9(&self, bin: &str) {
        let old = self.pid_of(bin);
        // SAFETY: killing a process of the Rill under test.
        unsafe { libc::kill(old as i32, libc::SIGKILL) };
        assert!(
            crate::wait_until(Duration::from_secs(15), || self
                .pids_of(bin)
                .iter()
                .any(|p| *p != old)),
            "no new {bin}"
        );
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
}

impl Drop for Rill {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(6));
    }
}
