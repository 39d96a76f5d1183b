//! What a client sends: a [`SessionRequest`] carrying one [`SessionCommand`].
//! Strict checking of an incoming request is [`SessionRequest::parse`], in
//! `parse.rs`.

use serde::{Deserialize, Serialize};

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRequest {
    /// Globally unique per message (e.g. a UUIDv4); echoed in the reply.
    pub unique_id: String,
    /// The client's identity, chosen by the client at startup; echoed.
    pub client_id: String,
    /// When the client sent it ([`DATETIME_FORMAT`](super::DATETIME_FORMAT));
    /// old requests are refused.
    pub datetime: String,
    #[serde(flatten)]
    pub command: SessionCommand,
}

/// What a request asks for, with the fields each command takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum SessionCommand {
    /// A new shell, at a prompt, on the host.
    CreateSession,
    /// Close the session now; its shell ends.
    DeleteSession { session_id: String },
    /// Write `contents` to the session's terminal as given (no newline added).
    SendDataToSession {
        session_id: String,
        contents: String,
    },
    /// The open sessions, or only `session_id`.
    GetSessionInfo {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<String>,
    },
}

impl SessionCommand {
    /// Every command name, as written in `command`.
    pub const NAMES: [&'static str; 4] = [
        "create_session",
        "delete_session",
        "send_data_to_session",
        "get_session_info",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            SessionCommand::CreateSession => Self::NAMES[0],
            SessionCommand::DeleteSession { .. } => Self::NAMES[1],
            SessionCommand::SendDataToSession { .. } => Self::NAMES[2],
            SessionCommand::GetSessionInfo { .. } => Self::NAMES[3],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_through_json() {
        let commands = [
            SessionCommand::CreateSession,
            SessionCommand::DeleteSession {
                session_id: "s1".into(),
            },
            SessionCommand::SendDataToSession {
                session_id: "s1".into(),
                contents: "echo hi\n".into(),
            },
            SessionCommand::GetSessionInfo { session_id: None },
            SessionCommand::GetSessionInfo {
                session_id: Some("s1".into()),
            },
        ];
        for command in commands {
            let req = SessionRequest {
                unique_id: "u1".into(),
                client_id: "c1".into(),
                datetime: "2002-12-25T00:00:00.000Z".into(),
                command,
            };
            let json = serde_json::to_vec(&req).unwrap();
            assert_eq!(SessionRequest::parse(&json).unwrap(), req);
            assert_eq!(
                serde_json::from_slice::<SessionRequest>(&json).unwrap(),
                req
            );
        }
        let create = SessionRequest {
            unique_id: "u1".into(),
            client_id: "c1".into(),
            datetime: "2002-12-25T00:00:00.000Z".into(),
            command: SessionCommand::CreateSession,
        };
        assert_eq!(
            serde_json::to_string(&create).unwrap(),
            r#"{"unique_id":"u1","client_id":"c1","datetime":"2002-12-25T00:00:00.000Z","command":"create_session"}"#
        );
    }
}
