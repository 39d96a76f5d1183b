//! This member's tenures of its hosts, in `state_dir/cluster/tenures.json`.
//!
//! A tenure is the etcd revision at which the member took a host (owner
//! keys are created once, so two takes never share a revision, and a later
//! take has a higher one). The node thread writes the file before a host
//! is started and when it has stopped; the parser reads it: every event is
//! indexed under its host's latest tenure here, and the copies an ended
//! tenure holds of lines a later tenure (another member's) also holds are
//! deleted (the handover overlap, docs/cluster.md).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Tenures kept per host, newest last.
pub const KEEP: usize = 32;

/// Each host's tenures on this member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenures {
    #[serde(default)]
    pub hosts: BTreeMap<String, Vec<Held>>,
}

/// One tenure of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub tenure: u64,
    /// When it ended (Unix seconds); `None` while the host is followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<u64>,
}

/// Where the file is.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("cluster").join("tenures.json")
}

/// Now, in Unix seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Tenures {
    /// The file's tenures; none if it is missing or unreadable.
    pub fn load(file: &Path) -> Tenures {
        std::fs::read(file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Writes the file (temp file, sync, rename: a reader sees the old or
    /// the new one, under a new inode).
    pub fn save(&self, file: &Path) -> std::io::Result<()> {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        rill_process::replace_file(file, &serde_json::to_vec(self)?)
    }

    /// `host` is followed under `tenure` from now on (a tenure still open
    /// ends now).
    pub fn begin(&mut self, host: &str, tenure: u64) {
        self.end(host, now());
        let held = self.hosts.entry(host.to_owned()).or_default();
        held.push(Held {
            tenure,
            ended: None,
        });
        let extra = held.len().saturating_sub(KEEP);
        held.drain(..extra);
    }

    /// `host` is no longer followed: its open tenure ended at `at`.
    pub fn end(&mut self, host: &str, at: u64) {
        for h in self.hosts.get_mut(host).into_iter().flatten() {
            h.ended.get_or_insert(at);
        }
    }

    /// Every open tenure ended at `at` (a member starting: whatever it
    /// followed before is another tenure's now).
    pub fn end_all(&mut self, at: u64) {
        for held in self.hosts.values_mut() {
            for h in held {
                h.ended.get_or_insert(at);
            }
        }
    }

    /// Per host, its latest tenure (open or ended): what its events are
    /// indexed under.
    pub fn latest(&self) -> HashMap<String, u64> {
        self.hosts
            .iter()
            .filter_map(|(host, held)| Some((host.clone(), held.last()?.tenure)))
            .collect()
    }

    /// The tenures that ended at or after `since`: (host, tenure, ended).
    pub fn ended_since(&self, since: u64) -> Vec<(String, u64, u64)> {
        self.hosts
            .iter()
            .flat_map(|(host, held)| {
                held.iter().filter_map(move |h| match h.ended {
                    Some(at) if at >= since => Some((host.clone(), h.tenure, at)),
                    _ => None,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenures_begin_end_and_are_kept_across_a_save() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path());
        let mut t = Tenures::load(&file);
        assert_eq!(t, Tenures::default(), "no file: no tenures");
        t.begin("h1", 10);
        t.begin("h2", 11);
        t.end("h1", 100);
        assert_eq!(t.ended_since(0), [("h1".to_owned(), 10, 100)]);
        // Taken again: the new tenure is h1's latest.
        t.begin("h1", 20);
        assert_eq!(t.latest(), [("h1".into(), 20), ("h2".into(), 11)].into());
        // A restart ends every open one.
        t.end_all(200);
        assert_eq!(
            t.ended_since(150),
            [("h1".to_owned(), 20, 200), ("h2".to_owned(), 11, 200)]
        );
        t.save(&file).unwrap();
        assert_eq!(Tenures::load(&file), t);
        for n in 0..40 {
            t.begin("h2", 100 + n);
        }
        assert_eq!(t.hosts["h2"].len(), KEEP);
        assert_eq!(t.hosts["h2"][KEEP - 1].tenure, 139);
    }
}
