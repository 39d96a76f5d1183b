//! The supervisor's control socket (ROUTER, JSON): what `rill status` asks and hears.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::message::{LogStatus, Ping, SessionsStatus};

/// A request to the supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum ControlRequest {
    /// The state of every host and log.
    Status,
    /// A stream client telling how it fares (sent every few seconds by
    /// `rill tail`; any client may). No reply is needed, one is sent.
    SubscriberReport(SubscriberReport),
}

/// What a live-stream subscriber received and lost, by its own count (the
/// gaps in each topic's sequence numbers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberReport {
    /// Unique per subscriber run.
    pub id: String,
    /// The patterns it subscribed to.
    pub topics: Vec<String>,
    pub received: u64,
    pub dropped: u64,
}

/// The supervisor's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ControlReply {
    /// `report` answers `status`; other requests get a bare `ok`.
    Ok {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report: Option<Box<StatusReport>>,
    },
    Failed {
        failure_reason: String,
    },
}

/// Everything `rill status` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub at: DateTime<Utc>,
    pub hosts: Vec<HostReport>,
    pub children: Vec<ChildReport>,
    /// Stream subscribers that reported within the last 30 s.
    #[serde(default)]
    pub subscribers: Vec<SubscriberStatus>,
    /// The search API's last health probe (none when `search.listen` is
    /// off, or before the first probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_api: Option<ApiStatus>,
    /// Subscribers the stream endpoint's guard refused (when it has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams_guard: Option<GuardStatus>,
    /// The collectors this one subscribes to (`upstreams:`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<UpstreamStatus>,
    /// The collectors subscribed to this one's federation endpoint
    /// (`streams.federation`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub downstreams: Vec<DownstreamStatus>,
    /// The cluster this collector is a member of (`cluster:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStatus>,
}

/// A cluster as one of its members sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ClusterStatus {
    pub cluster: String,
    /// This member.
    pub member: String,
    /// The live members.
    pub members: Vec<String>,
    /// Each host's owner (a host missing has none now: it is being
    /// handed over).
    pub owners: std::collections::BTreeMap<String, String>,
    /// Why etcd could not be used at the last round, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trouble: Option<String>,
}

/// A collector subscribed to this one's federation endpoint, as the
/// endpoint sees it: all its connections (a collector with `index: true`
/// has two), those gone included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DownstreamStatus {
    /// The collector it says it is.
    pub collector: String,
    /// The topic patterns its connections asked for.
    pub topics: Vec<String>,
    /// Its connections now (0: none, its counts are kept).
    #[serde(default)]
    pub connections: u32,
    /// Lines sent to it.
    pub sent: u64,
    /// Lines held back because they came from it: its own, or lines it
    /// passed on (the origin or a collector on their way).
    pub held_back: u64,
    /// Lines dropped because it fell behind (its queue was full).
    pub dropped: u64,
    /// When it last said hello.
    pub seen_at: DateTime<Utc>,
}

/// What a socket's guard refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardStatus {
    /// Handshakes refused since the supervisor started.
    pub refused: u64,
    /// Why the last one was (an address, a user, a CURVE key; never a
    /// password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refusal: Option<String>,
}

/// One upstream collector, as its subscriber sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UpstreamStatus {
    pub name: String,
    pub endpoint: String,
    /// Whether its last handshake succeeded and it has not disconnected since.
    pub connected: bool,
    /// Lines (and parsed events) received from it.
    pub received: u64,
    /// Passed on (rebroadcast, or indexed).
    pub forwarded: u64,
    /// Not passed on: this collector's own lines come back (a loop), or
    /// seen already by another way.
    pub duplicates: u64,
    /// Lost on the way (gaps in the origin's sequence numbers).
    pub dropped: u64,
    /// The last failure: refused (authentication), disconnected, a bad
    /// message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Why the upstream refused our hello (sends us nothing), if it did
    /// since the last line it sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hello_refused: Option<String>,
}

/// Whether the search API answered the supervisor's last `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiStatus {
    pub listen: String,
    pub ok: bool,
    /// What went wrong, when not ok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub checked_at: DateTime<Utc>,
}

/// A subscriber's last report, as `rill status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberStatus {
    #[serde(flatten)]
    pub report: SubscriberReport,
    pub reported_at: DateTime<Utc>,
}

/// One configured host as the supervisor sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    pub host: String,
    /// Whether its tap holds an SSH connection now.
    pub connected: bool,
    /// The last connection error, if any.
    pub error: Option<String>,
    /// The last probe from masspinger, if any arrived.
    pub ping: Option<Ping>,
    /// When the tap last reported; `None` if it never did.
    pub reported_at: Option<DateTime<Utc>>,
    pub logs: Vec<LogStatus>,
    /// Its session server, if the host has one and its tap is running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<SessionsStatus>,
    /// Lines its tap holds for the index, not confirmed yet (at most
    /// `tap.max_unacked_lines` and one read).
    #[serde(default)]
    pub unconfirmed_lines: u64,
    /// In a cluster: the member that follows it (this one's report has
    /// its progress only when that is this member).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// One process the supervisor keeps alive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildReport {
    pub name: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    /// How the previous instance ended, if it did.
    pub last_exit: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_are_tagged_json() {
        let req = serde_json::to_string(&ControlRequest::Status).unwrap();
        assert_eq!(req, r#"{"command":"status"}"#);
        let failed = ControlReply::Failed {
            failure_reason: "unknown command".into(),
        };
        let json = serde_json::to_string(&failed).unwrap();
        assert_eq!(
            json,
            r#"{"status":"failed","failure_reason":"unknown command"}"#
        );
        let report = StatusReport {
            at: Utc::now(),
            hosts: vec![],
            children: vec![],
            subscribers: vec![SubscriberStatus {
                report: SubscriberReport {
                    id: "s".into(),
                    topics: vec!["line/#".into()],
                    received: 5,
                    dropped: 2,
                },
                reported_at: Utc::now(),
            }],
            search_api: Some(ApiStatus {
                listen: "127.0.0.1:7680".into(),
                ok: false,
                error: Some("could not connect".into()),
                checked_at: Utc::now(),
            }),
            streams_guard: None,
            upstreams: vec![],
            downstreams: vec![],
            cluster: None,
        };
        let ok = ControlReply::Ok {
            report: Some(Box::new(report)),
        };
        assert_eq!(
            serde_json::to_string(&ControlReply::Ok { report: None }).unwrap(),
            r#"{"status":"ok"}"#
        );
        let back: ControlReply =
            serde_json::from_str(&serde_json::to_string(&ok).unwrap()).unwrap();
        assert_eq!(back, ok);
        let r: ControlRequest = serde_json::from_str(
            r#"{"command":"subscriber_report","id":"x","topics":["line/#"],"received":3,"dropped":1}"#,
        )
        .unwrap();
        assert!(matches!(r, ControlRequest::SubscriberReport(s) if s.dropped == 1));
    }
}
