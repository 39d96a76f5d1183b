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

use crate::etcd::{Etcd, EtcdError};
use crate::member::{call_timeout, Changes, JoinError, Member};
use crate::tenure::{self, Tenures};

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
    /// Readable when a change was sent (a byte per change).
    wake: std::os::unix::net::UnixStream,
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
        tenures: PathBuf,
    ) -> Result<Node, JoinError> {
        let member = Member::join(settings, hosts)?;
        // Whatever this collector followed before is over.
        let mut held = Tenures::load(&tenures);
        held.end_all(tenure::now());
        let tenures = TenureFile {
            path: tenures,
            held,
        };
        tenures.save();
        let mirror = Mirror {
            etcd: Etcd::new(&settings.etcd, call_timeout(settings)),
            prefix: format!("{}checkpoints/", settings.prefix()),
            owners: format!("{}owners/", settings.prefix()),
            dir: checkpoints,
            copied: BTreeMap::new(),
            at: Instant::now(),
        };
        let (changes_tx, changes) = channel();
        let (wake, waker) = std::os::unix::net::UnixStream::pair().map_err(|e| {
            JoinError::Io(format!("could not make the cluster thread's waker: {e}"))
        })?;
        wake.set_nonblocking(true)
            .and_then(|()| waker.set_nonblocking(true))
            .map_err(|e| {
                JoinError::Io(format!("could not make the cluster thread's waker: {e}"))
            })?;
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
                .spawn(move || {
                    let changes = (changes_tx, waker);
                    run(member, mirror, tenures, &changes, &stopped_rx, &view, &stop)
                })
                .expect("spawn the cluster thread")
        };
        Ok(Node {
            changes,
            wake,
            stopped,
            view,
            stop,
            thread: Some(thread),
        })
    }

    /// The next change to apply, if any; an error once the thread has
    /// ended (the member can no longer say what is its own: every host
    /// must be stopped).
    pub fn changes(&self) -> Result<Option<Changes>, String> {
        use std::io::Read;
        let mut drained = [0u8; 64];
        while matches!((&self.wake).read(&mut drained), Ok(n) if n > 0) {}
        match self.changes.try_recv() {
            Ok(c) => Ok(Some(c)),
            Err(std::sync::mpsc::TryRecvError::Empty) => Ok(None),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                Err("the cluster thread ended".to_owned())
            }
        }
    }

    /// Readable when [`Node::changes`] has something (or the thread ended).
    pub fn wake_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.wake)
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
    mut tenures: TenureFile,
    (changes, waker): &(Sender<Changes>, std::os::unix::net::UnixStream),
    stopped: &Receiver<Vec<String>>,
    view: &Mutex<View>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let mut c = member.tick();
        // A host whose checkpoint cannot be read is not started: the last
        // owner's lines since it would be lost. Taken again later.
        let mut failed = Vec::new();
        c.start.retain(|h| match mirror.import(h) {
            Ok(()) => true,
            Err(e) => {
                warn!(host = %h, error = %e, "could not read the host's checkpoint from etcd; giving it up until it can");
                failed.push(h.clone());
                false
            }
        });
        for h in &failed {
            member.abandon(h);
        }
        if !c.start.is_empty() {
            // Before a tap can send a line: the parser indexes the host's
            // lines under it.
            for h in &c.start {
                tenures.held.begin(h, member.tenure(h).unwrap_or(0));
            }
            tenures.save();
        }
        if !c.stop.is_empty() || !c.start.is_empty() {
            let mut wanted: std::collections::BTreeSet<String> = c.stop.iter().cloned().collect();
            // Acks of an earlier round that came late are not this one's.
            while stopped.try_recv().is_ok() {}
            if changes.send(c).is_err() {
                return;
            }
            // A full buffer is a wake-up already waiting.
            let _ = std::io::Write::write(&mut &*waker, &[1]);
            // The supervisor stops them (within its grace) and says so;
            // only then are their last checkpoints copied and the hosts
            // let go.
            let mut done = Vec::new();
            while !wanted.is_empty() && !stop.load(Ordering::Relaxed) {
                if let Ok(hosts) = stopped.recv_timeout(Duration::from_millis(200)) {
                    for h in hosts {
                        if wanted.remove(&h) {
                            done.push(h);
                        }
                    }
                }
            }
            if let Err(e) = mirror.copy(&member, done.iter(), true) {
                member.set_trouble(e.to_string());
            }
            member.release(&done);
            if !done.is_empty() {
                for h in &done {
                    tenures.held.end(h, tenure::now());
                }
                tenures.save();
            }
        }
        let due = mirror.at.elapsed() >= MIRROR_EVERY;
        if let Err(e) = mirror.copy(&member, member.owned().iter(), due) {
            member.set_trouble(e.to_string());
        }
        let owners = mirror.owners();
        {
            let mut v = view.lock().expect("not poisoned");
            v.members = member.members().to_vec();
            match owners {
                Ok(o) => {
                    v.owners = o;
                    v.trouble = member.trouble().map(str::to_owned);
                }
                Err(e) => v.trouble = Some(e.to_string()),
            }
        }
        let until = Instant::now() + member.next_tick();
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Every tap has stopped (the supervisor drops the node last): their
    // final checkpoints go to etcd before the lease, and the hosts, go.
    if let Err(e) = mirror.copy(&member, member.owned().iter(), true) {
        warn!(error = %e, "could not copy the last checkpoints to etcd");
    }
    member.leave();
    tenures.held.end_all(tenure::now());
    tenures.save();
}

/// This member's tenures and their file.
struct TenureFile {
    path: PathBuf,
    held: Tenures,
}

impl TenureFile {
    /// Writes the file; a failure is logged (lines are then indexed under
    /// an older tenure of this member's: of two copies of a line, another
    /// member's may be the one kept; none is lost).
    fn save(&self) {
        if let Err(e) = self.held.save(&self.path) {
            warn!(file = %self.path.display(), error = %e, "could not write this member's tenures");
        }
    }
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
    /// An error when etcd could not be asked, or the checkpoint not
    /// written (none in etcd: the host is new to the cluster, and this
    /// collector's own checkpoint, if any, stands).
    fn import(&mut self, host: &str) -> Result<(), String> {
        let kv = match self.etcd.get(&format!("{}{host}", self.prefix)) {
            Ok(Some(kv)) => kv,
            Ok(None) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        let Ok(mut c) = serde_json::from_slice::<serde_json::Value>(&kv.value) else {
            warn!(%host, "the host's checkpoint in etcd is not JSON; ignored");
            return Ok(());
        };
        if let Some(m) = c.as_object_mut() {
            m.remove("generation");
        }
        let bytes = serde_json::to_vec(&c).expect("serializes");
        rill_process::replace_file(&self.dir.join(format!("{host}.json")), &bytes)
            .map_err(|e| format!("could not write the host's checkpoint: {e}"))?;
        self.copied.insert(host.to_owned(), kv.value);
        Ok(())
    }

    /// Copies the checkpoints of `hosts` that changed since their last
    /// copy: all of them when `all`, else only those never copied (a host
    /// just taken: its first checkpoint goes to etcd at once). Written
    /// only while `member` is live (its key under its lease), so a member
    /// whose lease expired never overwrites the new owner's.
    fn copy<'a>(
        &mut self,
        member: &Member,
        hosts: impl Iterator<Item = &'a String>,
        all: bool,
    ) -> Result<(), EtcdError> {
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
            return Ok(());
        }
        let kvs: Vec<(String, Vec<u8>)> = changed
            .iter()
            .map(|(h, b)| (format!("{}{h}", self.prefix), b.clone()))
            .collect();
        if self
            .etcd
            .put_all_while(&kvs, &member.key(), member.lease())?
        {
            self.copied.extend(changed);
        } else {
            warn!("checkpoints not copied: this member's lease is gone");
        }
        Ok(())
    }

    /// Every host's owner, as etcd has it.
    fn owners(&self) -> Result<BTreeMap<String, String>, EtcdError> {
        let kvs = self.etcd.list(&self.owners)?;
        Ok(kvs
            .into_iter()
            .filter_map(|kv| {
                let host = kv.key.strip_prefix(&self.owners)?.to_owned();
                Some((host, String::from_utf8(kv.value).ok()?))
            })
            .collect())
    }
}
