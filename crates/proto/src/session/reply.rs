//! What the server answers: a [`SessionReply`], `ok` or `failed`, with the
//! fields of the command it answers ([`SessionInfo`] for each open session).

use std::fmt;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::datetime::format_datetime;
use super::parse::Rejected;

/// `ok` or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyStatus {
    Ok,
    Failed,
}

impl fmt::Display for ReplyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplyStatus::Ok => "ok",
            ReplyStatus::Failed => "failed",
        })
    }
}

/// The server's answer to one request. Fields a command does not return are
/// left out of the JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionReply {
    /// The request's `unique_id`; `null` only if the request carried none
    /// usable (not JSON, missing or not a string).
    pub unique_id: Option<String>,
    /// The request's `client_id`; `null` as for `unique_id`.
    pub client_id: Option<String>,
    /// When the server sent the reply ([`DATETIME_FORMAT`](super::DATETIME_FORMAT)).
    pub datetime: String,
    pub status: ReplyStatus,
    /// Why it failed; present exactly when `status` is `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// `create_session`: the new session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// `create_session`: where to SUBSCRIBE for the session's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_zeromq_bind: Option<String>,
    /// `send_data_to_session`: what the SSH channel write accepted (also on
    /// a short write, which fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_written: Option<u64>,
    /// `get_session_info`: the open sessions (possibly none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<Vec<SessionInfo>>,
}

impl SessionReply {
    /// An `ok` reply to a request with these ids, sent now.
    pub fn ok(unique_id: Option<String>, client_id: Option<String>) -> Self {
        SessionReply {
            unique_id,
            client_id,
            datetime: format_datetime(Utc::now()),
            status: ReplyStatus::Ok,
            failure_reason: None,
            session_id: None,
            publish_zeromq_bind: None,
            bytes_written: None,
            sessions: None,
        }
    }

    /// A `failed` reply naming `reason`.
    pub fn failed(
        unique_id: Option<String>,
        client_id: Option<String>,
        reason: impl Into<String>,
    ) -> Self {
        SessionReply {
            status: ReplyStatus::Failed,
            failure_reason: Some(reason.into()),
            ..SessionReply::ok(unique_id, client_id)
        }
    }

    /// The reply to a request that was turned away before it was understood.
    pub fn rejected(r: Rejected) -> Self {
        SessionReply::failed(r.unique_id, r.client_id, r.reason)
    }
}

/// One open session, as `get_session_info` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub session_id: String,
    /// The `client_id` of the request that created it.
    pub client_id: String,
    /// When it was handed to its client ([`DATETIME_FORMAT`](super::DATETIME_FORMAT)).
    pub datetime: String,
    /// Bytes written into the session since then.
    pub bytes_written: u64,
    /// Bytes read from the session (and published) since then.
    pub bytes_read: u64,
    /// Whether anyone is subscribed to its publish socket now (an extension:
    /// a client can wait for its own subscription before sending).
    pub subscribed: bool,
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn replies_round_trip_and_leave_out_what_a_command_does_not_return() {
        let mut ok = SessionReply::ok(Some("u1".into()), Some("c1".into()));
        ok.datetime = "2002-12-25T00:00:00.001Z".into();
        ok.session_id = Some("s1".into());
        ok.publish_zeromq_bind = Some("ipc:///x".into());
        let json = serde_json::to_string(&ok).unwrap();
        assert_eq!(
            json,
            r#"{"unique_id":"u1","client_id":"c1","datetime":"2002-12-25T00:00:00.001Z","status":"ok","session_id":"s1","publish_zeromq_bind":"ipc:///x"}"#
        );
        assert_eq!(serde_json::from_str::<SessionReply>(&json).unwrap(), ok);

        let mut info = SessionReply::ok(Some("u2".into()), Some("c1".into()));
        info.sessions = Some(vec![SessionInfo {
            session_id: "s1".into(),
            client_id: "c1".into(),
            datetime: "2002-12-25T00:00:00.000Z".into(),
            bytes_written: 8,
            bytes_read: 30,
            subscribed: true,
        }]);
        let back: SessionReply =
            serde_json::from_str(&serde_json::to_string(&info).unwrap()).unwrap();
        assert_eq!(back, info);

        let failed = SessionReply::rejected(Rejected {
            unique_id: None,
            client_id: None,
            reason: "not JSON".into(),
        });
        let v: Value = serde_json::to_value(&failed).unwrap();
        assert_eq!(v["status"], "failed");
        assert_eq!(v["failure_reason"], "not JSON");
        assert!(v["unique_id"].is_null() && v.get("unique_id").is_some());
        assert!(v.get("session_id").is_none());
    }
}
