//! Process tables and memory: the test user's processes on the server side,
//! this machine's processes of one Rill, and how much memory they hold.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{RemoteProcess, TestUser};

/// The SSH sessions (sids) of the test user whose processes mention `needle`
/// (e.g. a scratch dir): the remote side of one Rill run.
pub fn remote_sessions(user: &TestUser, needle: &str) -> BTreeSet<u32> {
    user.processes()
        .into_iter()
        .filter(|p| p.cmdline.contains(needle))
        .map(|p| p.sid)
        .collect()
}

/// Every process of the test user still in one of `sessions`.
pub fn remote_processes_in(user: &TestUser, sessions: &BTreeSet<u32>) -> Vec<RemoteProcess> {
    user.processes()
        .into_iter()
        .filter(|p| sessions.contains(&p.sid))
        .collect()
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

/// A process's resident memory in KiB, if it is still there.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The highest RSS seen per component (a binary's name) among the
/// processes mentioning one config, sampled every half second until `stop`
/// is set.
pub struct RssWatch {
    /// Component name -> highest RSS in KiB.
    pub max: Arc<Mutex<BTreeMap<String, u64>>>,
    pub stop: Arc<AtomicBool>,
}

impl RssWatch {
    /// Samples the processes mentioning `config` whose command line runs one
    /// of `components` (`/<name> `).
    pub fn start(config: String, components: &[&str]) -> RssWatch {
        let components: Vec<String> = components.iter().map(|&n| n.to_owned()).collect();
        let max: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let stop: Arc<AtomicBool> = Arc::default();
        let (m, s) = (Arc::clone(&max), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                for (pid, cmd) in local_processes_mentioning(&config) {
                    let Some(name) = components.iter().find(|n| cmd.contains(&format!("/{n} ")))
                    else {
                        continue;
                    };
                    if let Some(kib) = rss_kib(pid) {
                        let mut m = m.lock().unwrap();
                        let e = m.entry(name.to_owned()).or_insert(0);
                        *e = (*e).max(kib);
                    }
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        RssWatch { max, stop }
    }
}
