//! One member of a cluster: registered under a lease, it works out which
//! hosts are its own and takes them in etcd.
//!
//! Keys, under `/rill/<cluster>/`:
//! - `members/<member>`: what the member advertises (JSON), bound to its
//!   lease: it vanishes within `lease_ttl` of the member dying or losing
//!   etcd. Created only if absent: a second collector with the same
//!   `cluster.member` is refused while the first is live.
//! - `owners/<host>`: the member that follows the host, bound to its
//!   lease and created only if absent, so a host has one owner at a time.
//!
//! Each [`Member::tick`] renews the lease when a third of its time to
//! live has passed (sooner when the margin leaves less), reads the live members, and compares the hosts
//! rendezvous hashing gives this member ([`crate::ring`]) with those it
//! owns: hosts to give up are returned to be stopped (and then
//! [`Member::release`]d), hosts to take are taken (a create transaction)
//! and returned to be started. A host whose previous owner has not let go
//! yet is tried again at the next tick.
//!
//! Two members never follow one host: a member gives up every host once
//! less than [`Member::margin`] is left of its lease (it could not renew:
//! etcd is unreachable), which is before etcd can let the lease expire and
//! another member take the hosts. The deadline is counted from when the
//! renewal was sent, so it is never later than etcd's. Every etcd call is
//! given at most a sixth of the lease across all URLs, the deadline is
//! looked at again between the calls of a round, and the margin leaves
//! [`STOP_TIME`] to stop the hosts' taps.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rill_config::cluster::ClusterSettings;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::etcd::{Etcd, EtcdError, LeaseId};
use crate::ring;

/// How long the supervisor may take to stop a host's tap when the lease
/// is running out (it kills what has not stopped by then).
pub const STOP_TIME: Duration = Duration::from_secs(2);
/// The shortest `lease_ttl` that leaves room for [`STOP_TIME`] and a
/// renewal.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(5);

/// What a member advertises (the value of `members/<member>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub member: String,
    /// Its stream endpoint, as others reach it.
    pub streams: String,
    /// Its search API, when it serves one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
}

/// Why joining failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error(
        "member {member} is already live in cluster {cluster} (another collector holds \
         {key} under its lease); give each collector its own cluster.member, or wait up to \
         {ttl:?} after stopping the other one"
    )]
    Duplicate {
        member: String,
        cluster: String,
        key: String,
        ttl: Duration,
    },
    #[error("{0}")]
    Io(String),
}

/// What changed at a tick.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Hosts taken: start following them.
    pub start: Vec<String>,
    /// Hosts to give up: stop following them, then [`Member::release`].
    pub stop: Vec<String>,
}

/// This collector as a member of its cluster.
pub struct Member {
    etcd: Etcd,
    settings: ClusterSettings,
    info: MemberInfo,
    hosts: Vec<String>,
    lease: LeaseId,
    /// Until when the lease is surely ours, and when to renew it.
    deadline: Instant,
    renew_at: Instant,
    owned: BTreeSet<String>,
    /// Per host owned: the revision at which it was taken (its tenure).
    tenures: BTreeMap<String, u64>,
    members: Vec<String>,
    /// Why the last tick could not do its work (etcd's error).
    trouble: Option<String>,
}

impl Member {
    /// Registers this member (`settings.member`) of a cluster whose config
    /// lists `hosts`. Fails when etcd cannot be reached or another live
    /// collector is registered under the same name: the name is tried
    /// again for `lease_ttl` and a second, so that a member restarted
    /// right after it died (its lease not expired yet) gets in.
    pub fn join(settings: &ClusterSettings, hosts: Vec<String>) -> Result<Member, JoinError> {
        let until = Instant::now() + settings.lease_ttl + Duration::from_secs(1);
        loop {
            match Member::join_once(settings, hosts.clone()) {
                Err(JoinError::Duplicate { .. }) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    fn join_once(settings: &ClusterSettings, hosts: Vec<String>) -> Result<Member, JoinError> {
        let etcd = Etcd::new(&settings.etcd, call_timeout(settings));
        let info = MemberInfo {
            member: settings.member.clone(),
            streams: settings.advertise.streams.clone(),
            search: settings.advertise.search.clone(),
        };
        let now = Instant::now();
        let mut m = Member {
            etcd,
            settings: settings.clone(),
            info,
            hosts,
            lease: 0,
            deadline: now,
            renew_at: now,
            owned: BTreeSet::new(),
            tenures: BTreeMap::new(),
            members: Vec::new(),
            trouble: None,
        };
        m.register()?;
        info!(member = %m.settings.member, cluster = %m.settings.name, "joined the cluster");
        Ok(m)
    }

    /// Grants a lease and creates `members/<member>` under it.
    fn register(&mut self) -> Result<(), JoinError> {
        let sent = Instant::now();
        let lease = self.etcd.grant(self.settings.lease_ttl)?;
        let key = self.member_key(&self.settings.member);
        let value = serde_json::to_vec(&self.info).expect("serializes");
        if !self.etcd.create(&key, &value, Some(lease))? {
            let _ = self.etcd.revoke(lease);
            return Err(JoinError::Duplicate {
                member: self.settings.member.clone(),
                cluster: self.settings.name.clone(),
                key,
                ttl: self.settings.lease_ttl,
            });
        }
        self.lease = lease;
        self.deadline = sent + self.settings.lease_ttl;
        self.renew_at = sent + self.renew_every();
        Ok(())
    }

    /// Hosts are given up once less than this is left of the lease: time
    /// to stop their taps, and for one more call to etcd.
    pub fn margin(&self) -> Duration {
        (self.settings.lease_ttl / 2).max(STOP_TIME + call_timeout(&self.settings) * 2)
    }

    /// How often the lease is renewed: a third of it, or sooner when the
    /// margin leaves less (a renewal must come before the hosts are given
    /// up, with room for one that fails).
    fn renew_every(&self) -> Duration {
        (self.settings.lease_ttl / 3).min(self.settings.lease_ttl.saturating_sub(self.margin()) / 2)
    }

    /// Whether the hosts must be given up now.
    fn running_out(&self) -> bool {
        Instant::now() + self.margin() >= self.deadline
    }

    /// One round: renew, read the members, give up and take hosts.
    pub fn tick(&mut self) -> Changes {
        let mut changes = Changes::default();
        let now = Instant::now();
        if now >= self.renew_at && self.renew(now, &mut changes) {
            // Registered again under a new lease: the hosts are taken at
            // the next round, once the old ones have stopped.
            return changes;
        }
        if self.running_out() {
            // Not renewed in time: nothing may be followed any more.
            if !self.owned.is_empty() {
                warn!(member = %self.settings.member, hosts = self.owned.len(), "lease about to expire (etcd unreachable?): giving up every host");
            }
            changes.stop.extend(std::mem::take(&mut self.owned));
            return changes;
        }
        if let Err(e) = self.balance(&mut changes) {
            self.trouble = Some(e.to_string());
        }
        changes
    }

    /// Renews the lease; true when it had expired and the member
    /// registered again.
    fn renew(&mut self, sent: Instant, changes: &mut Changes) -> bool {
        match self.etcd.keep_alive(self.lease) {
            Ok(Some(left)) => {
                self.deadline = sent + left.min(self.settings.lease_ttl);
                self.renew_at = sent + self.renew_every();
                self.trouble = None;
                false
            }
            Ok(None) => {
                // etcd let the lease go: every key under it is gone, and
                // others may own our hosts now.
                warn!(member = %self.settings.member, "lease expired in etcd: rejoining");
                changes.stop.extend(std::mem::take(&mut self.owned));
                self.deadline = sent;
                if let Err(e) = self.register() {
                    self.trouble = Some(e.to_string());
                    self.renew_at = Instant::now() + Duration::from_secs(1);
                }
                true
            }
            Err(e) => {
                // Try again soon; the deadline stands.
                self.trouble = Some(format!("could not renew the lease: {e}"));
                self.renew_at = Instant::now() + Duration::from_millis(500);
                false
            }
        }
    }

    /// Reads the members; gives up hosts now another's, takes our own.
    fn balance(&mut self, changes: &mut Changes) -> Result<(), EtcdError> {
        let prefix = self.member_key("");
        let members: Vec<String> = self
            .etcd
            .list(&prefix)?
            .into_iter()
            .filter_map(|kv| kv.key.strip_prefix(&prefix).map(str::to_owned))
            .collect();
        self.members = members;
        let mine: BTreeSet<String> = self
            .hosts
            .iter()
            .filter(|h| {
                ring::owner(h, self.members.iter().map(String::as_str))
                    == Some(self.settings.member.as_str())
            })
            .cloned()
            .collect();
        for h in self.owned.difference(&mine).cloned().collect::<Vec<_>>() {
            self.owned.remove(&h);
            changes.stop.push(h);
        }
        for h in mine.difference(&self.owned).cloned().collect::<Vec<_>>() {
            if self.running_out() {
                break;
            }
            let key = self.owner_key(&h);
            if let Some(rev) =
                self.etcd
                    .create_at(&key, self.settings.member.as_bytes(), Some(self.lease))?
            {
                info!(host = %h, member = %self.settings.member, tenure = rev, "took the host");
                self.owned.insert(h.clone());
                self.tenures
                    .insert(h.clone(), u64::try_from(rev).unwrap_or(0));
                changes.start.push(h);
            }
        }
        Ok(())
    }

    /// Gives `host` up at once (it could not be started): it is released,
    /// and taken again at a later round.
    pub fn abandon(&mut self, host: &str) {
        self.owned.remove(host);
        self.release(&[host.to_owned()]);
    }

    /// Lets go of `hosts` (after they stopped being followed): their
    /// owner keys are deleted if still bound to our lease. Hosts owned
    /// again meanwhile are kept; at the first unreachable etcd the rest go
    /// with the lease.
    pub fn release(&self, hosts: &[String]) {
        for h in hosts.iter().filter(|h| !self.owned.contains(*h)) {
            if let Err(e) = self.etcd.delete_if_bound(&self.owner_key(h), self.lease) {
                warn!(host = %h, error = %e, "could not release the host (it goes with the lease)");
                if matches!(e, EtcdError::Unreachable(_)) {
                    return;
                }
            }
        }
    }

    /// The revision at which this member took `host`, while it owns it:
    /// its tenure (docs/cluster.md).
    pub fn tenure(&self, host: &str) -> Option<u64> {
        self.tenures
            .get(host)
            .copied()
            .filter(|_| self.owned.contains(host))
    }

    /// This member's lease (keys bound to it go with it).
    pub fn lease(&self) -> LeaseId {
        self.lease
    }

    /// Its key in etcd: while it exists under [`Member::lease`], this
    /// member is live.
    pub fn key(&self) -> String {
        self.member_key(&self.settings.member)
    }

    /// Leaves the cluster (after every host stopped being followed): the
    /// lease is revoked, and the member and owner keys with it.
    pub fn leave(self) {
        if let Err(e) = self.etcd.revoke(self.lease) {
            warn!(error = %e, "could not leave the cluster (its lease expires by itself)");
        }
    }

    /// The hosts this member follows now.
    pub fn owned(&self) -> &BTreeSet<String> {
        &self.owned
    }

    /// The live members at the last tick.
    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// Why the last tick could not reach etcd, if it could not.
    pub fn trouble(&self) -> Option<&str> {
        self.trouble.as_deref()
    }

    /// Notes a failure of etcd seen outside the member's own calls.
    pub fn set_trouble(&mut self, why: String) {
        self.trouble = Some(why);
    }

    /// How long until the next tick is due.
    pub fn next_tick(&self) -> Duration {
        Duration::from_secs(1).min(self.renew_at.saturating_duration_since(Instant::now()))
    }

    fn member_key(&self, member: &str) -> String {
        format!("{}members/{member}", self.settings.prefix())
    }

    fn owner_key(&self, host: &str) -> String {
        format!("{}owners/{host}", self.settings.prefix())
    }
}

/// The time one etcd call may take at one URL: a sixth of the lease over
/// all the URLs (so a round of calls stays well inside the margin), from
/// 100 ms to 2 s.
pub fn call_timeout(settings: &ClusterSettings) -> Duration {
    (settings.lease_ttl / 6 / settings.etcd.len().max(1) as u32)
        .clamp(Duration::from_millis(100), Duration::from_secs(2))
}

/// The live members of the cluster `settings` names, as they advertise
/// themselves (for clients: `rill tail` subscribes to each, `rill search`
/// asks each). A client holds no lease, so each URL gets 2 s.
pub fn live_members(settings: &ClusterSettings) -> Result<Vec<MemberInfo>, EtcdError> {
    let etcd = Etcd::new(&settings.etcd, Duration::from_secs(2));
    let prefix = format!("{}members/", settings.prefix());
    Ok(etcd
        .list(&prefix)?
        .into_iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect())
}
