//! A firing: what a rule decided, and what became of each of its actions.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::action::Outcome;

/// At most this many events go into a firing's `matches`.
pub const MAX_MATCHES: usize = 10;
/// And at most this many bytes of them (at least one event is kept): a
/// firing is queued on disk, kept in memory and sent to every action.
pub const MAX_MATCHES_BYTES: usize = 256 << 10;

/// What a rule decided: the JSON a command reads on stdin, a webhook
/// receives and `alert/<rule>` carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Firing {
    /// Stable: the same lines (or window) give the same id, so a receiver
    /// can drop repeats.
    pub id: String,
    pub rule: String,
    pub kind: String,
    pub fired_at: DateTime<Utc>,
    /// The group's value (`""` without `group_by`).
    pub group: String,
    /// Matches that made it fire (frequency: in the window; flatline: in
    /// the quiet window; heartbeat: since the last beat; any: 1).
    pub count: u64,
    /// Up to [`MAX_MATCHES`] events, newest last, as `rill search --json`
    /// prints them.
    pub matches: Vec<serde_json::Value>,
}

/// A firing's id: the rule and what caused it (line identities or the
/// window), hashed; 32 hex digits.
pub fn id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

/// Where one action of a firing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Running,
    Success,
    Failure,
    Timeout,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Running => "running",
            State::Success => "success",
            State::Failure => "failure",
            State::Timeout => "timeout",
        }
    }

    pub fn finished(self) -> bool {
        matches!(self, State::Success | State::Failure | State::Timeout)
    }
}

/// One action of one firing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionState {
    /// `command /path` or `webhook URL`, for people reading the history.
    pub action: String,
    pub state: State,
    /// Attempts made (finished or running).
    pub attempts: u32,
    /// When the next attempt is due (after a failure with retries left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_at: Option<DateTime<Utc>>,
    /// The last attempt's outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Outcome>,
}

/// A firing with its actions' states, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub firing: Firing,
    pub actions: Vec<ActionState>,
    /// Its place in the queue (order of firing).
    pub seq: u64,
}

impl Record {
    /// The firing's state: running or pending while any action is; else
    /// failure, timeout or success, the worst of them.
    pub fn state(&self) -> State {
        let has = |s| self.actions.iter().any(|a| a.state == s);
        [
            State::Running,
            State::Pending,
            State::Failure,
            State::Timeout,
        ]
        .into_iter()
        .find(|s| has(*s))
        .unwrap_or(State::Success)
    }

    /// When its first attempt started and its last one finished.
    pub fn timings(&self) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let outcomes = self.actions.iter().filter_map(|a| a.last.as_ref());
        let started = outcomes.clone().map(|o| o.started_at).min();
        let finished = if self.state().finished() {
            outcomes.map(|o| o.finished_at).max()
        } else {
            None
        };
        (started, finished)
    }

    /// The record as `rill rules history --json` prints it.
    pub fn json(&self) -> serde_json::Value {
        let (started, finished) = self.timings();
        serde_json::json!({
            "id": self.firing.id,
            "rule": self.firing.rule,
            "kind": self.firing.kind,
            "fired_at": self.firing.fired_at,
            "group": self.firing.group,
            "count": self.firing.count,
            "status": self.state().name(),
            "started_at": started,
            "finished_at": finished,
            "actions": self.actions,
            "matches": self.firing.matches,
        })
    }
}

/// Deeper JSON in a match is kept as its text: a firing is stored inside
/// an entry of the rules' log, and must read back within serde_json's
/// nesting limit (128).
const MAX_DEPTH: usize = 64;

fn depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Keeps events for `matches` within [`MAX_MATCHES`] and
/// [`MAX_MATCHES_BYTES`], dropping the oldest; a match nested deeper than
/// [`MAX_DEPTH`] has its `fields` as JSON text.
pub fn bounded(mut matches: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    for m in &mut matches {
        if depth(m) > MAX_DEPTH {
            if let Some(f) = m.get_mut("fields") {
                *f = serde_json::Value::String(f.to_string());
            }
        }
    }
    if matches.len() > MAX_MATCHES {
        matches.drain(..matches.len() - MAX_MATCHES);
    }
    let size = |v: &serde_json::Value| serde_json::to_vec(v).map_or(0, |b| b.len());
    let mut total: usize = matches.iter().map(size).sum();
    while matches.len() > 1 && total > MAX_MATCHES_BYTES {
        total -= size(&matches[0]);
        matches.remove(0);
    }
    matches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_tell_parts_apart() {
        assert_eq!(id(&["r", "a"]), id(&["r", "a"]));
        assert_ne!(id(&["r", "a"]), id(&["ra", ""]));
        assert_eq!(id(&["r"]).len(), 32);
    }

    #[test]
    fn matches_keep_the_newest_within_bounds() {
        let v: Vec<_> = (0..15).map(|i| serde_json::json!({ "n": i })).collect();
        let kept = bounded(v);
        assert_eq!(kept.len(), MAX_MATCHES);
        assert_eq!(kept[0]["n"], 5);
        let big = "x".repeat(200 << 10);
        let v = vec![
            serde_json::json!({ "b": big }),
            serde_json::json!({ "b": big }),
        ];
        assert_eq!(bounded(v).len(), 1);
    }

    #[test]
    fn deep_fields_are_kept_as_text_and_read_back() {
        let mut deep = serde_json::json!(1);
        for _ in 0..120 {
            deep = serde_json::json!([deep]);
        }
        let kept = bounded(vec![
            serde_json::json!({ "body": "x", "fields": { "a": deep } }),
        ]);
        assert!(kept[0]["fields"].is_string());
        // Inside a stored entry it still reads back.
        let entry = serde_json::json!({ "fire": { "firing": { "matches": kept } } });
        let text = serde_json::to_string(&entry).unwrap();
        assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
    }
}
