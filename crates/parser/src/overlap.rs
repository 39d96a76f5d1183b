//! A cluster's handover overlap, removed (docs/cluster.md).
//!
//! When a host moves from one member to another, the new owner reads on
//! from the last checkpoint the old one copied to etcd; the lines the old
//! owner indexed after that copy are then in two members' indexes. Every
//! event is indexed under its host's *tenure* on this member (the etcd
//! revision at which it took the host, from the node thread's
//! `tenures.json`: [`TenureWatch`]). For each tenure of this member that
//! ended in the last hour, [`Overlap`]'s thread asks the other live
//! members which offsets of the files that tenure read last they hold
//! under a later tenure (`GET /held`), and has the index thread delete
//! this member's copies of exactly those lines ([`Purge`]).
//!
//! Nothing is lost: a copy is deleted only when another member answered
//! that it holds the line under a later tenure, and a member only ever
//! deletes a copy whose tenure is lower than the one it was shown, so of
//! any set of copies the one under the latest tenure stays.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rill_cluster::tenure::{self, Tenures};
use rill_config::cluster::ClusterSettings;
use rill_config::Config;
use rill_index::tenure::{StoredFile, Tenure};
use rill_index::IndexSearcher;
use tracing::{debug, info, warn};

/// How often ended tenures are looked at.
const PASS_EVERY: Duration = Duration::from_secs(5);
/// How long after it ended a tenure is looked at (then what is left of its
/// overlap, if anything, stays).
const LOOK_FOR: u64 = 3600;
/// Events of an ended tenure looked at: the last it indexed, where an
/// overlap is.
const TAIL: usize = 20_000;
/// Offsets asked of a member per request, and looked at per file.
pub const HELD_PAGE: usize = 50_000;
const MAX_PER_FILE: usize = 200_000;
/// How long a member has to answer.
const ASK_WITHIN: Duration = Duration::from_secs(10);

/// Copies of `host`'s lines of `file` under `tenure`, starting at offsets
/// `from..=to`, that a later tenure holds: the index thread deletes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purge {
    pub host: String,
    pub file: StoredFile,
    pub tenure: u64,
    pub from: u64,
    pub to: u64,
}

/// The node thread's `tenures.json`, looked at for changes.
pub struct TenureWatch {
    file: PathBuf,
    /// Inode and modification time last seen (the file is replaced by a
    /// rename, so each version has its own inode).
    seen: Option<(u64, i64, i64)>,
}

impl TenureWatch {
    pub fn new(file: PathBuf) -> TenureWatch {
        TenureWatch { file, seen: None }
    }

    /// Each host's latest tenure, when the file changed since last asked.
    /// One `stat` when it did not.
    pub fn changed(&mut self) -> Option<HashMap<String, u64>> {
        let now = std::fs::metadata(&self.file)
            .ok()
            .map(|m| (m.ino(), m.mtime(), m.mtime_nsec()));
        if now == self.seen {
            return None;
        }
        self.seen = now;
        Some(Tenures::load(&self.file).latest())
    }
}

/// The thread that finds this member's overlapping copies.
pub struct Overlap {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Overlap {
    /// Starts the thread in a cluster (`None` outside one). `purges` goes
    /// to the index thread.
    pub fn start(cfg: &Config, purges: SyncSender<Vec<Purge>>) -> Option<Overlap> {
        let settings = cfg.cluster.clone()?;
        let token = cfg
            .search
            .tokens_file
            .as_deref()
            .and_then(|f| rill_config::hub::Tokens::load(f).ok())
            .and_then(|t| t.first().map(str::to_owned));
        let job = Job {
            settings,
            index: cfg.index_dir(),
            tenures: tenure::path(&cfg.state_dir),
            token,
            purges,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("overlap".into())
                .spawn(move || job.run(&stop))
                .ok()?
        };
        Some(Overlap {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Overlap {
    /// Stops the thread without waiting for it: it may be waiting for a
    /// member's answer (up to 10 s), and holds nothing that must be let go
    /// (what it found and did not hand over is found again next time).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        drop(self.thread.take());
    }
}

struct Job {
    settings: ClusterSettings,
    index: PathBuf,
    tenures: PathBuf,
    token: Option<String>,
    purges: SyncSender<Vec<Purge>>,
}

impl Job {
    fn run(&self, stop: &AtomicBool) {
        // Tenures found overlap-free (or whose overlap is gone).
        let mut done: HashSet<(String, u64)> = HashSet::new();
        let mut searcher: Option<IndexSearcher> = None;
        while !stop.load(Ordering::Relaxed) {
            let until = Instant::now() + PASS_EVERY;
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let ended: Vec<(String, u64)> = Tenures::load(&self.tenures)
                .ended_since(tenure::now().saturating_sub(LOOK_FOR))
                .into_iter()
                .map(|(host, t, _)| (host, t))
                .filter(|k| !done.contains(k))
                .collect();
            if ended.is_empty() {
                continue;
            }
            if searcher.is_none() {
                searcher = IndexSearcher::open(&self.index).ok();
            }
            let Some(s) = searcher.as_ref().filter(|s| s.reload().is_ok()) else {
                continue;
            };
            if !s.has_tenures() {
                warn!(index = %self.index.display(), "the index was made before tenures: a handover overlap stays in it (docs/cluster.md)");
                return;
            }
            let others: Vec<(String, String)> =
                match rill_cluster::member::live_members(&self.settings) {
                    Ok(ms) => ms
                        .into_iter()
                        .filter(|m| m.member != self.settings.member)
                        .filter_map(|m| Some((m.member, m.search?)))
                        .collect(),
                    Err(e) => {
                        debug!(error = %e, "overlap: cannot read the members");
                        continue;
                    }
                };
            for (host, t) in ended {
                match self.pass(s, &others, &host, t) {
                    Ok((purges, covered)) => {
                        if !purges.is_empty() {
                            let lines = purges.len();
                            info!(%host, tenure = t, ranges = lines, "overlap: deleting this member's copies a later tenure holds");
                            if self.purges.send(purges).is_err() {
                                return;
                            }
                        }
                        if covered {
                            done.insert((host, t));
                        }
                    }
                    Err(e) => debug!(%host, tenure = t, error = %e, "overlap: not looked at"),
                }
            }
        }
    }

    /// The copies of `host`'s lines under ended tenure `t` that other
    /// members hold under a later one, as ranges to delete; and whether
    /// every file of the tenure's tail is held to its last line by a later
    /// tenure (nothing more will be found).
    fn pass(
        &self,
        s: &IndexSearcher,
        others: &[(String, String)],
        host: &str,
        t: u64,
    ) -> Result<(Vec<Purge>, bool), String> {
        let tail = s.tenure_tail(host, t, TAIL).map_err(|e| e.to_string())?;
        let mut files: BTreeMap<StoredFile, u64> = BTreeMap::new();
        for (file, offset) in tail {
            let last = files.entry(file).or_default();
            *last = (*last).max(offset);
        }
        let mut covered = true;
        let mut purges = Vec::new();
        for (file, last) in files {
            let mut held: BTreeSet<u64> = BTreeSet::new();
            for (member, url) in others {
                match self.held(url, host, &file, t, last) {
                    Ok(o) => held.extend(o),
                    Err(e) => {
                        debug!(%member, error = %e, "overlap: a member did not say what it holds");
                        covered = false;
                    }
                }
            }
            let Some(&from) = held.first() else {
                // Not read again (yet).
                covered = false;
                continue;
            };
            if !held.contains(&last) {
                covered = false;
            }
            let mine = s
                .tenure_offsets(host, &file, Tenure::Is(t), (from, last), MAX_PER_FILE)
                .map_err(|e| e.to_string())?;
            purges.extend(runs(&mine, &held).into_iter().map(|(from, to)| Purge {
                host: host.to_owned(),
                file: file.clone(),
                tenure: t,
                from,
                to,
            }));
        }
        Ok((purges, covered))
    }

    /// The offsets from 0 to `to` of `host`'s `file` that the member at
    /// `url` holds under a tenure after `t`.
    fn held(
        &self,
        url: &str,
        host: &str,
        file: &StoredFile,
        t: u64,
        to: u64,
    ) -> Result<Vec<u64>, String> {
        let mut out: Vec<u64> = Vec::new();
        let mut from = 0u64;
        loop {
            let path = format!(
                "held?host={}&log={}&file_id={}&after={t}&from={from}&to={to}",
                encode(host),
                encode(&file.log),
                encode(&file.file_id)
            );
            let v = rill_cluster::search::get(url, &path, self.token.as_deref(), ASK_WITHIN)?;
            let page: Vec<u64> = v["offsets"]
                .as_array()
                .ok_or("no offsets in the answer")?
                .iter()
                .filter_map(serde_json::Value::as_u64)
                .collect();
            let full = page.len() >= HELD_PAGE;
            let next = page.last().copied();
            out.extend(page);
            match next {
                Some(n) if full && out.len() < MAX_PER_FILE && n < to => from = n + 1,
                _ => return Ok(out),
            }
        }
    }
}

/// The runs of consecutive entries of `mine` (ascending) that are all in
/// `held`, as (first, last): a range delete removes exactly those copies.
fn runs(mine: &[u64], held: &BTreeSet<u64>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut open: Option<(u64, u64)> = None;
    for &o in mine {
        if held.contains(&o) {
            open = Some(open.map_or((o, o), |(a, _)| (a, o)));
        } else if let Some(r) = open.take() {
            out.push(r);
        }
    }
    out.extend(open);
    out
}

/// Percent-encoding of a query-string value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The index thread's side: applies purges (deletes visible at the next
/// commit).
pub fn apply(index: &mut rill_index::IndexWriter, purges: Vec<Purge>) -> anyhow::Result<()> {
    for p in purges {
        index.delete_tenure_range(
            &p.host,
            &p.file.log,
            &p.file.file_id,
            p.tenure,
            (p.from, p.to),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_runs_of_copies_another_holds_are_deleted() {
        let held: BTreeSet<u64> = [10, 20, 30, 50, 60].into();
        // 40 is only ours: it splits the runs; 70 is only ours.
        assert_eq!(
            runs(&[10, 20, 30, 40, 50, 60, 70], &held),
            [(10, 30), (50, 60)]
        );
        assert!(runs(&[40, 70], &held).is_empty());
        assert!(runs(&[], &held).is_empty());
    }

    #[test]
    fn the_tenure_file_is_read_again_only_when_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let file = tenure::path(dir.path());
        let mut watch = TenureWatch::new(file.clone());
        assert_eq!(watch.changed(), None, "no file yet");
        let mut t = Tenures::default();
        t.begin("h1", 7);
        t.save(&file).unwrap();
        assert_eq!(watch.changed(), Some([("h1".to_owned(), 7)].into()));
        assert_eq!(watch.changed(), None);
        t.begin("h1", 9);
        t.save(&file).unwrap();
        assert_eq!(watch.changed(), Some([("h1".to_owned(), 9)].into()));
    }
}
