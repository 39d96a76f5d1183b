//! The supervisor's control socket (ROUTER, JSON): what `rill status` asks and hears.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::message::{LogStatus, Ping};

/// A request to the supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum ControlRequest {
    /// The state of every host and log.
    Status,
}

/// The supervisor's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ControlReply {
    Ok { report: StatusReport },
    Failed { failure_reason: String },
}

/// Everything `rill status` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub at: DateTime<Utc>,
    pub hosts: Vec<HostReport>,
    pub children: Vec<ChildReport>,
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
        };
        let ok = ControlReply::Ok { report };
        let back: ControlReply =
            serde_json::from_str(&serde_json::to_string(&ok).unwrap()).unwrap();
        assert_eq!(back, ok);
    }
}
