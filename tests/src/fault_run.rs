//! The fault run of `tests/faults.rs`: the files its writers append to, the
//! Rill following them, and a heal: waiting until every line written is
//! searchable, with a report of what the index holds when it never is.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::numbered_lines::{number, Writer};
use crate::{local_processes_mentioning, logrotate_now, wait_for, wait_until, Rill};

/// One followed file: which host and log it is, and its writer.
pub struct File {
    pub host: &'static str,
    pub log: &'static str,
    pub writer: Writer,
}

/// The Rill under faults, the files it follows, how to rotate them, and
/// how long each fault took to heal.
pub struct Run {
    pub rill: Rill,
    pub files: Vec<File>,
    pub logrotate_conf: PathBuf,
    pub logrotate_state: PathBuf,
    /// Each fault healed so far, with the time it took.
    pub heals: Vec<(String, Duration)>,
}

impl Run {
    fn count(&self, host: &str, log: &str) -> Option<u64> {
        self.rill.count("*", &["--host", host, "--log", log])
    }

    /// Waits until every line written so far is searchable; how long it took.
    pub fn heal(&mut self, fault: &str) -> Duration {
        let t = Instant::now();
        let want: Vec<(&str, &str, usize)> = self
            .files
            .iter()
            .map(|f| (f.host, f.log, f.writer.written()))
            .collect();
        for (host, log, n) in want {
            let got = wait_for(Duration::from_secs(180), || {
                self.count(host, log).filter(|&c| c as usize >= n)
            });
            // The findings go last: CI shows the end of a long message.
            assert!(
                got.is_some(),
                "log:\n{}\n{fault}: {host}/{log} never caught up to {n} lines (has {:?})\n{}\nstatus of the logs: {}",
                tail_of(&self.rill.log(), 60),
                self.count(host, log),
                self.what_the_index_has(),
                self.log_status()
            );
        }
        let took = t.elapsed();
        eprintln!(
            "fault healed: {fault}: every line written before it ended searchable {took:.1?} later"
        );
        self.heals.push((fault.to_owned(), took));
        took
    }

    /// Every hit of `host`/`log`: its body, file and offset; the search's
    /// error if it failed.
    pub fn hits(&self, host: &str, log: &str) -> Result<Vec<(String, String, u64)>, String> {
        let out = self.rill.rill(&[
            "search", "--json", "--host", host, "--log", log, "--limit", "1000000", "*",
        ]);
        if !out.status.success() {
            return Err(format!("rill search failed: {out:?}"));
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let hit: Value = serde_json::from_str(l).map_err(|e| format!("{e}: {l}"))?;
                let body = hit["body"].as_str().unwrap_or_default().to_owned();
                let file = hit["file_id"].as_str().unwrap_or("?").to_owned();
                Ok((body, file, hit["offset"].as_u64().unwrap_or(0)))
            })
            .collect()
    }

    /// For a failed heal: per file written, the numbers missing from the
    /// index (as ranges, with the hit before each) and those held twice.
    fn what_the_index_has(&self) -> String {
        let mut out = String::new();
        for f in &self.files {
            let hits = match self.hits(f.host, f.log) {
                Ok(hits) => hits,
                Err(e) => {
                    out.push_str(&format!("{}/{}: {e}\n", f.host, f.log));
                    continue;
                }
            };
            let mut at: BTreeMap<usize, Vec<(String, u64)>> = BTreeMap::new();
            let mut odd = Vec::new();
            for (body, file, offset) in hits {
                match number(&body) {
                    Some(k) => at.entry(k).or_default().push((file, offset)),
                    None => odd.push((body, file, offset)),
                }
            }
            let written = f.writer.written();
            let twice: Vec<_> = at.iter().filter(|(_, v)| v.len() > 1).take(5).collect();
            let missing: Vec<usize> = (0..written).filter(|k| !at.contains_key(k)).collect();
            let gaps: Vec<String> = missing
                .chunk_by(|a, b| b - a == 1)
                .map(|run| {
                    let (from, to) = (run[0], run[run.len() - 1] + 1);
                    let before = from
                        .checked_sub(1)
                        .and_then(|b| at.get(&b))
                        .map(|v| v[0].clone());
                    format!("{from}..{to} (after {before:?})")
                })
                .collect();
            out.push_str(&format!(
                "{}/{}: {written} written, {} distinct indexed; missing {} ranges: {:?}; twice (first 5): {twice:?}; not a whole line (first 5): {:?}\n",
                f.host,
                f.log,
                at.len(),
                gaps.len(),
                &gaps[..gaps.len().min(8)],
                &odd[..odd.len().min(5)]
            ));
        }
        out
    }

    /// Each log's entry in `rill status`, without the noise.
    fn log_status(&self) -> String {
        let Some(s) = self.rill.status() else {
            return "(no status)".into();
        };
        let mut out = String::new();
        for h in s["hosts"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "\n{}: connected {} unconfirmed_lines {}",
                h["host"], h["connected"], h["unconfirmed_lines"]
            ));
            for l in h["logs"].as_array().into_iter().flatten() {
                out.push_str(&format!("\n  {l}"));
            }
        }
        out
    }

    /// logrotate -f; the writers reopen by name a moment later.
    pub fn rotate(&self) {
        logrotate_now(&self.logrotate_state, &self.logrotate_conf);
        std::thread::sleep(Duration::from_millis(300));
        for f in &self.files {
            f.writer.reopen.store(true, Ordering::SeqCst);
        }
    }

    /// Local processes of this Rill running `bin` (and naming `extra`).
    pub fn pids(&self, bin: &str, extra: &str) -> Vec<u32> {
        local_processes_mentioning(&self.rill.config.display().to_string())
            .into_iter()
            .filter(|(_, c)| c.contains(&format!("/{bin} ")) && c.contains(extra))
            .map(|(p, _)| p)
            .collect()
    }

    /// Sends `sig` to the one process of this Rill running `bin` (and
    /// naming `extra`); its pid.
    pub fn signal(&self, bin: &str, extra: &str, sig: i32) -> u32 {
        let pids = self.pids(bin, extra);
        assert_eq!(pids.len(), 1, "one {bin} {extra}: {pids:?}");
        // SAFETY: signalling a process of the Rill under test.
        unsafe { libc::kill(pids[0] as i32, sig) };
        pids[0]
    }

    /// Waits up to 30 s until a `bin` (naming `extra`) other than `old` runs.
    pub fn wait_restarted(&self, bin: &str, extra: &str, old: u32) {
        assert!(
            wait_until(Duration::from_secs(30), || self
                .pids(bin, extra)
                .iter()
                .any(|p| *p != old)),
            "{bin} {extra} was not restarted"
        );
    }
}

/// The last `lines` lines of `text`.
fn tail_of(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
