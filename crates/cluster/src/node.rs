//! This collector's [`Member`] on a thread of its own beside the
//! supervisor's loop, which it tells what to follow.
//!
//! Each round (at least every second) the thread ticks the member. Hosts
//! taken get their checkpoint from etcd first (`checkpoints/<host>`, the
//! previous owner's confirmed offsets), written to this collector's
//! checkpoint folder, and are then handed to the supervisor to start.
//! Hosts to give up are handed to the supervisor to stop; once it says
//! they stopped, their last checkpoints are copied to etcd and their
//! owner keys released. The checkpoints of the hosts this member follows
//! are copied to etcd when they changed, every [`MIRROR_EVERY`] (a host's
//! first one at once), in transactions of up to 128 hosts: the tap writes
//! a host's checkpoint after the index confirmed its lines, so etcd holds
//! what the index has (up to the last copy).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rill_config::cluster::ClusterSettings;
use tracing::warn;

use crate::etcd::Etcd;
use crate::member::{Changes, JoinError, Member};

/// How often changed checkpoints are copied to etcd.
pub const MIRROR_EVERY: Duration = Duration::from_secs(1);

/// What the cluster looks like from here, for `rill status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    pub cluster: String,
    pub member: String,
    /// Live members.
    pub members: Vec<String>,
    /// Each host's owner (hosts without one are missing).
    pub owners: BTreeMap<String, String>,
    /// Why etcd could not be used at the last round.
    pub trouble: Option<String>,
}

/// The member's thread; leaves the cluster when dropped (stop every tap
/// first).
pub struct Node {
    changes: Receiver<Changes>,
    stopped: Sender<Vec<String>>,
    view: Arc<Mutex<View>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Node {
    /// Joins (an error when etcd cannot be reached or the member name is
    /// taken) and starts the thread. `checkpoints` is the folder where
    /// taps keep `<host>.json`.
    pub fn join(
        settings: &ClusterSettings,
        hosts: Vec<String>,
        checkpoints: PathBuf,
    ) -> Result<Node, JoinError> {
        let member = Member::join(settings, hosts)?;
        let mirror = Mirror {
            etcd: Etcd::new(&settings.etcd, Duration::from_secs(2)),
            prefix: format!("{}checkpoints/", settings.prefix()),
            owners: format!("{}owners/", settings.prefix()),
            dir: checkpoints,
            copied: BTreeMap::new(),
            at: Instant::now(),
        };
        let (changes_tx, changes) = channel();
        let (stopped, stopped_rx) = channel();
        let view = Arc::new(Mutex::new(View {
            cluster: settings.name.clone(),
            member: settings.member.clone(),
            ..View::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (view, stop) = (Arc::clone(&view), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("cluster".into())
                .spawn(move || run(member, mirror, &changes_tx, &stopped_rx, &view, &stop))
                .expect("spawn the cluster thread")
        };
        Ok(Node {
            changes,
            stopped,
            view,
            stop,
            thread: Some(thread),
        })
    }

    /// The next change to apply, if any.
    pub fn changes(&self) -> Option<Changes> {
        self.changes.try_recv().ok()
    }

    /// Tells the member these hosts are no longer followed.
    pub fn stopped(&self, hosts: Vec<String>) {
        let _ = self.stopped.send(hosts);
    }

    /// What the cluster looks like.
    pub fn view(&self) -> View {
        self.view.lock().expect("not poisoned").clone()
    }

    /// A handle on what the cluster looks like, for whoever reports it.
    pub fn view_handle(&self) -> Arc<Mutex<View>> {
        Arc::clone(&self.view)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    mut member: Member,
    mut mirror: Mirror,
    changes: &Sender<Changes>,
    stopped: &Receiver<Vec<String>>,
    view: &Mutex<View>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let c = member.tick();
        for h in &c.start {
            mirror.import(h);
        }
        let gives_up = !c.stop.is_empty();
        if gives_up || !c.start.is_empty() {
            let wanted = c.stop.clone();
            if changes.send(c).is_err() {
                return;
            }
            if gives_up {
                // Released once stopped; what is not stopped in time stays
                // ours until the lease goes.
                let deadline = Instant::now() + member.margin();
                let mut done = Vec::new();
                while done.len() < wanted.len() && !stop.load(Ordering::Relaxed) {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match stopped.recv_timeout(left.min(Duration::from_millis(200))) {
                        Ok(hosts) => done.extend(hosts),
                        Err(_) if left.is_zero() => break,
                        Err(_) => {}
                    }
                }
                // Their last checkpoints go to etcd before they are let
                // go: the next owner resumes where this one stopped.
                mirror.copy(done.iter(), true);
                member.release(&done);
            }
        }
        let due = mirror.at.elapsed() >= MIRROR_EVERY;
        mirror.copy(member.owned().iter(), due);
        {
            let mut v = view.lock().expect("not poisoned");
            v.members = member.members().to_vec();
            v.trouble = member.trouble().map(str::to_owned);
            if let Some(owners) = mirror.owners() {
                v.owners = owners;
            }
        }
        let until = Instant::now() + member.next_tick();
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    member.leave();
}

/// Copies checkpoints between this collector's folder and etcd.
struct Mirror {
    etcd: Etcd,
    prefix: String,
    owners: String,
    dir: PathBuf,
    /// What was copied last, per host.
    copied: BTreeMap<String, Vec<u8>>,
    at: Instant,
}

impl Mirror {
    /// Writes the checkpoint etcd has for `host` to the local folder (the
    /// index generation dropped: it is this collector's index that
    /// confirms lines from now on).
    fn import(&mut self, host: &str) {
        let kv = match self.etcd.get(&format!("{}{host}", self.prefix)) {
            Ok(Some(kv)) => kv,
            Ok(None) => return,
            Err(e) => {
                warn!(%host, error = %e, "could not read the host's checkpoint from etcd; following it from this collector's own");
                return;
            }
        };
        let Ok(mut c) = serde_json::from_slice::<serde_json::Value>(&kv.value) else {
            warn!(%host, "the host's checkpoint in etcd is not JSON; ignored");
            return;
        };
        if let Some(m) = c.as_object_mut() {
            m.remove("generation");
        }
        let bytes = serde_json::to_vec(&c).expect("serializes");
        if let Err(e) = write_atomically(&self.dir.join(format!("{host}.json")), &bytes) {
            warn!(%host, error = %e, "could not write the host's checkpoint");
            return;
        }
        self.copied.insert(host.to_owned(), kv.value);
    }

    /// Copies the checkpoints of `hosts` that changed since their last
    /// copy: all of them when `all`, else only those never copied (a host
    /// just taken: its first checkpoint goes to etcd at once).
    fn copy<'a>(&mut self, hosts: impl Iterator<Item = &'a String>, all: bool) {
        if all {
            self.at = Instant::now();
        }
        let mut changed = Vec::new();
        for h in hosts.filter(|h| all || !self.copied.contains_key(*h)) {
            let Ok(bytes) = std::fs::read(self.dir.join(format!("{h}.json"))) else {
                continue;
            };
            if self.copied.get(h) != Some(&bytes) {
                changed.push((h.clone(), bytes));
            }
        }
        if changed.is_empty() {
            return;
        }
        let kvs: Vec<(String, Vec<u8>)> = changed
            .iter()
            .map(|(h, b)| (format!("{}{h}", self.prefix), b.clone()))
            .collect();
        match self.etcd.put_all(&kvs) {
            Ok(()) => self.copied.extend(changed),
            Err(e) => warn!(error = %e, "could not copy checkpoints to etcd"),
        }
    }

    /// Every host's owner, as etcd has it.
    fn owners(&self) -> Option<BTreeMap<String, String>> {
        let kvs = self.etcd.list(&self.owners).ok()?;
        Some(
            kvs.into_iter()
                .filter_map(|kv| {
                    let host = kv.key.strip_prefix(&self.owners)?.to_owned();
                    Some((host, String::from_utf8(kv.value).ok()?))
                })
                .collect(),
        )
    }
}

fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
