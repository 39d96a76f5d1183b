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

use std::collections::{BTreeSet, HashMap, HashSet};
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

/// How often ended tenures are looked at; one whose copies are not held
/// elsewhere (yet) is looked at again after twice the last wait, at most
/// [`MAX_WAIT`].
const PASS_EVERY: Duration = Duration::from_secs(5);
const MAX_WAIT: Duration = Duration::from_secs(300);
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
        // The members share the config: the token named `cluster`, else
        // the first (docs/cluster.md).
        let token = cfg
            .search
            .tokens_file
            .as_deref()
            .and_then(|f| rill_config::hub::Tokens::load(f).ok())
            .and_then(|t| t.named("cluster").or(t.first()).map(str::to_owned));
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
        // The files each ended tenure read last: they do not change.
        let mut tails: HashMap<(String, u64), Vec<StoredFile>> = HashMap::new();
        let mut searcher: Option<IndexSearcher> = None;
        // When each tenure not done is looked at next, and the wait after.
        let mut next_try: HashMap<(String, u64), (Instant, Duration)> = HashMap::new();
        let mut said = Said::default();
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
            tails.retain(|k, _| ended.contains(k));
            next_try.retain(|k, _| ended.contains(k));
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
                        said.trouble("etcd", format!("cannot read the members: {e}"));
                        continue;
                    }
                };
            let now = Instant::now();
            for (host, t) in ended {
                let key = (host.clone(), t);
                if next_try.get(&key).is_some_and(|(at, _)| now < *at) {
                    continue;
                }
                let files = match tails.entry(key.clone()) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        match s.tenure_tail(&host, t, TAIL) {
                            Ok(tail) => {
                                let files: BTreeSet<StoredFile> =
                                    tail.into_iter().map(|(f, _)| f).collect();
                                v.insert(files.into_iter().collect())
                            }
                            Err(e) => {
                                said.trouble("index", e.to_string());
                                continue;
                            }
                        }
                    }
                };
                let (purges, covered) = self.pass(s, &others, &host, t, files, &mut said);
                let found = !purges.is_empty();
                if found {
                    info!(%host, tenure = t, ranges = purges.len(), "overlap: deleting this member's copies of lines a later tenure holds");
                    if self.purges.send(purges).is_err() {
                        return;
                    }
                }
                if covered {
                    done.insert(key.clone());
                    next_try.remove(&key);
                    continue;
                }
                // Not read again yet, or never will be (this member took
                // the host back itself): asked again, less and less often.
                let wait = match (found, next_try.get(&key)) {
                    (false, Some((_, w))) => (*w * 2).min(MAX_WAIT),
                    _ => PASS_EVERY,
                };
                next_try.insert(key, (now + wait, wait));
            }
        }
    }

    /// The copies of `host`'s lines under ended tenure `t` that other
    /// members hold under a later tenure, as ranges to delete; and whether
    /// every file of `files` is held to this member's last line of it
    /// (nothing more will be found). A member that does not answer is
    /// taken to hold nothing.
    fn pass(
        &self,
        s: &IndexSearcher,
        others: &[(String, String)],
        host: &str,
        t: u64,
        files: &[StoredFile],
        said: &mut Said,
    ) -> (Vec<Purge>, bool) {
        let mut covered = true;
        let mut purges = Vec::new();
        for file in files {
            let last = match s.tenure_last(host, file, t) {
                Ok(Some(last)) => last,
                // Its copies are gone (deleted, retention).
                Ok(None) => continue,
                Err(e) => {
                    said.trouble("index", e.to_string());
                    return (purges, false);
                }
            };
            let mut held: BTreeSet<u64> = BTreeSet::new();
            for (member, url) in others {
                match self.held(url, host, file, t, last) {
                    Ok(o) => held.extend(o),
                    Err(e) => {
                        covered = false;
                        said.trouble(member, format!("did not say what it holds: {e}"));
                    }
                }
            }
            let Some(&from) = held.first() else {
                // Not read again (yet).
                covered = false;
                continue;
            };
            if last < from {
                // Every copy of this file left here is from before the
                // later tenure began to read it.
                continue;
            }
            let mine = match s.tenure_offsets(host, file, Tenure::Is(t), (from, last), MAX_PER_FILE)
            {
                Ok(m) => m,
                Err(e) => {
                    said.trouble("index", e.to_string());
                    return (purges, false);
                }
            };
            // Done once every copy from where the later tenure began is
            // held there (and deleted here).
            if mine.len() >= MAX_PER_FILE || mine.iter().any(|o| !held.contains(o)) {
                covered = false;
            }
            purges.extend(runs(&mine, &held).into_iter().map(|(from, to)| Purge {
                host: host.to_owned(),
                file: file.clone(),
                tenure: t,
                from,
                to,
            }));
        }
        (purges, covered)
    }

    /// The offsets of `host`'s `file` that the member at `url` holds under
    /// a tenure after `t`: every one up to `to`, and the first page's
    /// beyond it (enough to tell that its copies begin after `to`).
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
                "held?host={}&log={}&file_id={}&after={t}&from={from}&to={}",
                encode(host),
                encode(&file.log),
                encode(&file.file_id),
                u64::MAX
            );
            let v = rill_cluster::search::get(url, &path, self.token.as_deref(), ASK_WITHIN)?;
            let page: Vec<u64> = v["offsets"]
                .as_array()
                .ok_or("no offsets in the answer")?
                .iter()
                .filter_map(serde_json::Value::as_u64)
                .collect();
            let next = page.last().copied();
            out.extend(page);
            match next {
                Some(n) if v["more"] == true && out.len() < MAX_PER_FILE && n < to => {
                    from = n + 1;
                }
                _ => return Ok(out),
            }
        }
    }
}

/// Trouble said at most once per 10 minutes per source (etcd, a member,
/// the index), as a warning: overlap removal that keeps failing (a token
/// a member refuses, a member's API out of reach) must be seen.
#[derive(Default)]
struct Said(HashMap<String, Instant>);

impl Said {
    fn trouble(&mut self, source: &str, why: String) {
        let now = Instant::now();
        let due = self
            .0
            .get(source)
            .is_none_or(|t| now.duration_since(*t) >= Duration::from_secs(600));
        if due {
            self.0.insert(source.to_owned(), now);
            warn!(%source, error = %why, "overlap: handover copies not looked at (tried again every 5 s; said again in 10 min)");
        } else {
            debug!(%source, error = %why, "overlap: not looked at");
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
