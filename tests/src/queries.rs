//! What a test asks a running Rill: how many lines a search finds, its
//! status, and whether a host's logs are followed yet.

use std::time::Duration;

use serde_json::Value;

use crate::{wait_for, wait_until, Rill};

impl Rill {
    /// Waits up to `within` until `rill search --count QUERY` (plus extra
    /// args) says `n`; the last count seen (None if none) otherwise.
    pub fn wait_count(&self, query: &str, extra: &[&str], n: u64, within: Duration) -> Option<u64> {
        let mut last = None;
        wait_for(within, || {
            last = self.count(query, extra);
            last.filter(|&c| c == n)
        })
        .or(last)
    }

    /// `rill search --count QUERY` (plus extra args), or None while the index
    /// does not exist yet.
    pub fn count(&self, query: &str, extra: &[&str]) -> Option<u64> {
        let mut args = vec!["search", "--count"];
        args.extend_from_slice(extra);
        args.push(query);
        let out = self.rill(&args);
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    /// `rill status --json`, or None if the supervisor did not answer.
    pub fn status(&self) -> Option<Value> {
        let out = self.rill(&["status", "--json"]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The status entry of `host`.
    pub fn host_status(&self, host: &str) -> Option<Value> {
        let s = self.status()?;
        s["hosts"]
            .as_array()?
            .iter()
            .find(|h| h["host"] == host)
            .cloned()
    }

    /// [`Rill::start`], then waits up to 20 s until every log of `host` is
    /// followed; panics with the supervisor's log if they never are.
    pub fn start_following(&mut self, host: &str) {
        self.start();
        assert!(
            self.wait_following(host, Duration::from_secs(20)),
            "{host} never followed; log:\n{}",
            self.log()
        );
    }

    /// Waits until every log of `host` is being followed (its file identity
    /// is known), i.e. lines written from now on will be read.
    pub fn wait_following(&self, host: &str, deadline: Duration) -> bool {
        wait_until(deadline, || {
            self.host_status(host).is_some_and(|h| {
                h["connected"] == true
                    && h["logs"]
                        .as_array()
                        .is_some_and(|l| !l.is_empty() && l.iter().all(|l| !l["file_id"].is_null()))
            })
        })
    }
}
