//! `rill tail` in a cluster: the other live members' stream endpoints,
//! from etcd (docs/cluster.md).

use std::time::{Duration, Instant};

use rill_bus::socket;

/// In a cluster, the stream endpoints of every live member, looked up in
/// etcd every [`Members::EVERY`]: each member publishes the hosts it
/// follows, so the tail subscribes to all of them and follows members
/// joining and leaving. This collector's own streams come from its own
/// endpoint, never also from the one it advertises.
pub(crate) struct Members {
    settings: rill_config::cluster::ClusterSettings,
    /// Other members' endpoints connected to.
    connected: std::collections::BTreeSet<String>,
    looked: Option<Instant>,
    warned: bool,
}

impl Members {
    const EVERY: Duration = Duration::from_secs(2);

    pub(crate) fn new(settings: &rill_config::cluster::ClusterSettings) -> Members {
        Members {
            settings: settings.clone(),
            connected: Default::default(),
            looked: None,
            warned: false,
        }
    }

    /// Connects to members that joined, disconnects from those gone.
    pub(crate) fn follow(&mut self, sub: &zmq::Socket) {
        if self.looked.is_some_and(|t| t.elapsed() < Self::EVERY) {
            return;
        }
        self.looked = Some(Instant::now());
        let live = match rill_cluster::member::live_members(&self.settings) {
            Ok(m) => m,
            Err(e) => {
                if !self.warned {
                    eprintln!("rill tail: cannot read the cluster's members ({e}); following the members known so far");
                    self.warned = true;
                }
                return;
            }
        };
        self.warned = false;
        let want: std::collections::BTreeSet<String> = live
            .into_iter()
            .filter(|m| m.member != self.settings.member)
            .map(|m| m.streams)
            .collect();
        for e in want.difference(&self.connected) {
            if let Err(err) = socket::connect(sub, e) {
                eprintln!("rill tail: {err}");
            }
        }
        for e in self.connected.difference(&want) {
            let _ = sub.disconnect(e);
        }
        self.connected = want;
    }
}
