//! The session-control protocol: JSON requests and replies on a host's
//! sessions ROUTER socket (see `docs/sessions.md` for the reference).
//!
//! One JSON object per message. A client sends a [`SessionRequest`]; the
//! server checks it strictly with [`SessionRequest::parse`] (every problem
//! becomes a [`Rejected`] with a reason a person can read) and answers with a
//! [`SessionReply`]. A session's output is published raw on its own socket as
//! `[session/<session_id>, bytes]` ([`session_topic`]).

use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `2002-12-25T00:00:00.000Z`: UTC, exactly three millisecond digits, `Z`.
pub const DATETIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// The example shown in error messages.
const DATETIME_EXAMPLE: &str = "2002-12-25T00:00:00.000Z";

/// Formats `t` the way requests and replies carry datetimes.
pub fn format_datetime(t: DateTime<Utc>) -> String {
    t.format(DATETIME_FORMAT).to_string()
}

/// Parses a protocol datetime; anything but `YYYY-MM-DDTHH:MM:SS.mmmZ` is an
/// error that says what was expected.
pub fn parse_datetime(text: &str) -> Result<DateTime<Utc>, String> {
    let expected = || {
        format!(
            "bad datetime {text:?}: expected UTC ISO 8601 with exactly three millisecond \
             digits and Z, e.g. {DATETIME_EXAMPLE}"
        )
    };
    // chrono alone accepts a few more shapes than the protocol allows
    // (fewer fraction digits); check the shape byte by byte first.
    let shape = b"dddd-dd-ddTdd:dd:dd.dddZ";
    let b = text.as_bytes();
    if b.len() != shape.len()
        || !b.iter().zip(shape).all(|(c, s)| match s {
            b'd' => c.is_ascii_digit(),
            _ => c == s,
        })
    {
        return Err(expected());
    }
    // chrono takes second 60 (a leap second); the protocol does not.
    if &text[17..19] > "59" {
        return Err(format!(
            "bad datetime {text:?}: seconds go from 00 to 59, e.g. {DATETIME_EXAMPLE}"
        ));
    }
    NaiveDateTime::parse_from_str(text, DATETIME_FORMAT)
        .map(|t| t.and_utc())
        .map_err(|_| expected())
}

/// The longest `unique_id` and `client_id`, in bytes (a UUID is 36).
pub const MAX_ID_BYTES: usize = 128;

/// A JSON object read with every key checked for a second occurrence (a
/// plain `serde_json::Value` keeps the last one silently).
struct UniqueKeys;

impl<'de> serde::de::Visitor<'de> for UniqueKeys {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!(
                    "field `{}` appears twice; each field must appear once",
                    key.chars().take(64).collect::<String>()
                )));
            }
            map.next_value::<serde::de::IgnoredAny>()?;
        }
        Ok(())
    }
}

/// Err with the repeated key's message if a top-level key of the object in
/// `body` appears twice.
fn check_unique_keys(body: &[u8]) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde::Deserializer::deserialize_map(&mut de, UniqueKeys).map_err(|e| {
        let m = e.to_string();
        // serde_json adds " at line L column C"; keep the reason.
        m.split(" at line ").next().unwrap_or(&m).to_owned()
    })
}

/// The topic of every message on a session's publish socket.
pub fn session_topic(session_id: &str) -> String {
    format!("session/{session_id}")
}

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRequest {
    /// Globally unique per message (e.g. a UUIDv4); echoed in the reply.
    pub unique_id: String,
    /// The client's identity, chosen by the client at startup; echoed.
    pub client_id: String,
    /// When the client sent it ([`DATETIME_FORMAT`]); old requests are refused.
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

/// A request that could not be accepted, with whatever ids it carried so the
/// reply can still echo them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub unique_id: Option<String>,
    pub client_id: Option<String>,
    pub reason: String,
}

impl SessionRequest {
    /// Checks a request strictly: JSON, an object, the mandatory fields as
    /// strings, a well-formed datetime, a known command, exactly the fields
    /// that command takes. Whether the datetime is too old is the server's
    /// call ([`check_age`]).
    pub fn parse(body: &[u8]) -> Result<SessionRequest, Rejected> {
        let value: Value = serde_json::from_slice(body).map_err(|e| Rejected {
            unique_id: None,
            client_id: None,
            reason: format!("not JSON: {e}"),
        })?;
        let Value::Object(obj) = value else {
            return Err(Rejected {
                unique_id: None,
                client_id: None,
                reason: format!("expected one JSON object, got {}", kind(&value)),
            });
        };
        // Ids are echoed only if they are within bounds.
        let echo = |k: &str| {
            obj.get(k)
                .and_then(Value::as_str)
                .filter(|v| v.len() <= MAX_ID_BYTES)
                .map(str::to_owned)
        };
        let mut rejected = Rejected {
            unique_id: echo("unique_id"),
            client_id: echo("client_id"),
            reason: String::new(),
        };
        let fail = |mut r: Rejected, reason: String| {
            r.reason = reason;
            Err(r)
        };
        if let Err(reason) = check_unique_keys(body) {
            return fail(rejected, reason);
        }
        for key in ["unique_id", "client_id", "session_id"] {
            if let Some(v) = obj.get(key).and_then(Value::as_str) {
                if v.len() > MAX_ID_BYTES {
                    return fail(
                        rejected,
                        format!(
                            "field `{key}` is {} bytes long; expected at most {MAX_ID_BYTES}",
                            v.len()
                        ),
                    );
                }
            }
        }
        let unique_id = match required_string(&obj, "unique_id") {
            Ok(v) => v,
            Err(reason) => return fail(rejected, reason),
        };
        let client_id = match required_string(&obj, "client_id") {
            Ok(v) => v,
            Err(reason) => return fail(rejected, reason),
        };
        let datetime = match required_string(&obj, "datetime") {
            Ok(v) => v,
            Err(reason) => return fail(rejected, reason),
        };
        if let Err(reason) = parse_datetime(&datetime) {
            return fail(rejected, reason);
        }
        let name = match required_string(&obj, "command") {
            Ok(v) => v,
            Err(reason) => return fail(rejected, reason),
        };
        let fields: &[&str] = match name.as_str() {
            "create_session" => &[],
            "delete_session" => &["session_id"],
            "send_data_to_session" => &["session_id", "contents"],
            "get_session_info" => &["session_id"],
            other => {
                return fail(
                    rejected,
                    format!(
                        "unknown command {other:?}; expected one of {}",
                        SessionCommand::NAMES.join(", ")
                    ),
                )
            }
        };
        const COMMON: [&str; 4] = ["unique_id", "client_id", "datetime", "command"];
        if let Some(extra) = obj
            .keys()
            .find(|k| !COMMON.contains(&k.as_str()) && !fields.contains(&k.as_str()))
        {
            let takes = if fields.is_empty() {
                "no fields besides unique_id, client_id, datetime and command".to_owned()
            } else {
                format!("only {}", fields.join(" and "))
            };
            return fail(
                rejected,
                format!("unknown field `{extra}` for {name}, which takes {takes}"),
            );
        }
        let command = match name.as_str() {
            "create_session" => Ok(SessionCommand::CreateSession),
            "delete_session" => required_string(&obj, "session_id")
                .map(|session_id| SessionCommand::DeleteSession { session_id }),
            "send_data_to_session" => required_string(&obj, "session_id").and_then(|session_id| {
                Ok(SessionCommand::SendDataToSession {
                    session_id,
                    contents: string_field(&obj, "contents", true)?.unwrap_or_default(),
                })
            }),
            _ => match obj.get("session_id") {
                None | Some(Value::Null) => Ok(SessionCommand::GetSessionInfo { session_id: None }),
                Some(_) => {
                    required_string(&obj, "session_id").map(|id| SessionCommand::GetSessionInfo {
                        session_id: Some(id),
                    })
                }
            },
        };
        match command {
            Ok(command) => Ok(SessionRequest {
                unique_id,
                client_id,
                datetime,
                command,
            }),
            Err(reason) => {
                rejected.reason = reason;
                Err(rejected)
            }
        }
    }
}

/// A non-empty string field.
fn required_string(obj: &Map<String, Value>, key: &str) -> Result<String, String> {
    let v = string_field(obj, key, false)?.ok_or_else(|| format!("missing field `{key}`"))?;
    if v.is_empty() {
        return Err(format!("field `{key}` must not be empty"));
    }
    Ok(v)
}

/// A string field (empty allowed); `Ok(None)` when absent unless `must_exist`.
fn string_field(
    obj: &Map<String, Value>,
    key: &str,
    must_exist: bool,
) -> Result<Option<String>, String> {
    match obj.get(key) {
        None if must_exist => Err(format!("missing field `{key}`")),
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!(
            "field `{key}` must be a string, got {}",
            kind(other)
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether a request sent at `sent` may still be served at `now`: neither
/// older nor further in the future than `max_age`.
pub fn check_age(
    sent: DateTime<Utc>,
    now: DateTime<Utc>,
    max_age: std::time::Duration,
) -> Result<(), String> {
    let max = chrono::TimeDelta::from_std(max_age).unwrap_or(chrono::TimeDelta::MAX);
    let age = now - sent;
    if age > max {
        return Err(format!(
            "stale request: its datetime {} is {:.3}s old, more than max_request_age {:.3}s",
            format_datetime(sent),
            age.as_seconds_f64(),
            max_age.as_secs_f64()
        ));
    }
    if -age > max {
        return Err(format!(
            "stale request: its datetime {} is {:.3}s in the future, more than \
             max_request_age {:.3}s (is the client's clock right?)",
            format_datetime(sent),
            (-age).as_seconds_f64(),
            max_age.as_secs_f64()
        ));
    }
    Ok(())
}

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
    /// When the server sent the reply ([`DATETIME_FORMAT`]).
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
    /// When it was handed to its client ([`DATETIME_FORMAT`]).
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
    use super::*;

    fn parse(json: &str) -> Result<SessionRequest, Rejected> {
        SessionRequest::parse(json.as_bytes())
    }

    const HEAD: &str = r#""unique_id":"u1","client_id":"c1","datetime":"2002-12-25T00:00:00.000Z""#;

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
            format!(r#"{{{HEAD},"command":"create_session"}}"#)
        );
    }

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

    #[test]
    fn datetimes_need_exactly_three_millisecond_digits_and_z() {
        let t = parse_datetime("2002-12-25T00:00:00.123Z").unwrap();
        assert_eq!(format_datetime(t), "2002-12-25T00:00:00.123Z");
        assert_eq!(
            format_datetime(parse_datetime("2024-02-29T23:59:59.000Z").unwrap()),
            "2024-02-29T23:59:59.000Z"
        );
        for bad in [
            "2002-12-25T00:00:00Z",
            "2002-12-25T00:00:00.12Z",
            "2002-12-25T00:00:00.1234Z",
            "2002-12-25T00:00:00.123",
            "2002-12-25T00:00:00.123+00:00",
            "2002-12-25 00:00:00.123Z",
            "2002-13-25T00:00:00.123Z",
            "2023-02-29T00:00:00.000Z",
            "yesterday",
            "",
        ] {
            let e = parse_datetime(bad).unwrap_err();
            assert!(e.contains("exactly three millisecond digits"), "{bad}: {e}");
        }
        // Formatting always shows three digits, even for whole seconds.
        let whole = DateTime::from_timestamp(1_000_000_000, 0).unwrap();
        assert_eq!(format_datetime(whole), "2001-09-09T01:46:40.000Z");
    }

    #[test]
    fn every_malformed_request_names_its_problem_and_keeps_the_ids_it_had() {
        let cases = [
            ("{", "not JSON"),
            ("[1,2]", "expected one JSON object, got an array"),
            ("\"hi\"", "expected one JSON object, got a string"),
            (r#"{"client_id":"c1"}"#, "missing field `unique_id`"),
            (
                r#"{"unique_id":7,"client_id":"c1"}"#,
                "field `unique_id` must be a string, got a number",
            ),
            (
                r#"{"unique_id":"","client_id":"c1"}"#,
                "field `unique_id` must not be empty",
            ),
            (r#"{"unique_id":"u1"}"#, "missing field `client_id`"),
            (
                r#"{"unique_id":"u1","client_id":"c1","command":"create_session"}"#,
                "missing field `datetime`",
            ),
            (
                r#"{"unique_id":"u1","client_id":"c1","datetime":"2002-12-25T00:00:00Z","command":"create_session"}"#,
                "bad datetime",
            ),
            (
                r#"{"unique_id":"u1","client_id":"c1","datetime":17,"command":"create_session"}"#,
                "field `datetime` must be a string",
            ),
        ];
        for (json, want) in cases {
            let r = parse(json).unwrap_err();
            assert!(r.reason.contains(want), "{json}: {}", r.reason);
        }
        let r = parse(r#"{"unique_id":7,"client_id":"c1"}"#).unwrap_err();
        assert_eq!((r.unique_id, r.client_id), (None, Some("c1".into())));

        // Regression (issue 17, item 11): a repeated field took the last
        // value; second 60 was taken as a leap second.
        let ok = r#""unique_id":"u1","client_id":"c1","datetime":"2002-12-25T00:00:00.000Z","command":"create_session""#;
        for (json, want) in [
            (
                format!(r#"{{{ok},"unique_id":"u2"}}"#),
                "field `unique_id` appears twice",
            ),
            (
                format!(r#"{{{ok},"command":"delete_session"}}"#),
                "field `command` appears twice",
            ),
            (
                ok.replace(":00.000Z", ":60.000Z")
                    .replace("\"unique", "{\"unique")
                    + "}",
                "seconds go from 00 to 59",
            ),
            (
                ok.replace("u1", &"u".repeat(MAX_ID_BYTES + 1))
                    .replace("\"unique", "{\"unique")
                    + "}",
                "field `unique_id` is 129 bytes long; expected at most 128",
            ),
        ] {
            let r = parse(&json).unwrap_err();
            assert!(r.reason.contains(want), "{json}: {}", r.reason);
        }
        let long = parse(&format!(
            r#"{{"unique_id":"{}","client_id":"c1"}}"#,
            "u".repeat(4 << 20)
        ))
        .unwrap_err();
        assert_eq!(
            (long.unique_id, long.client_id.as_deref()),
            (None, Some("c1"))
        );
        assert!(parse(&format!("{{{ok}}}")).is_ok());

        let with_head = [
            ("", "missing field `command`"),
            (
                r#","command":5"#,
                "field `command` must be a string, got a number",
            ),
            (
                r#","command":"reboot""#,
                "unknown command \"reboot\"; expected one of create_session",
            ),
            (
                r#","command":"delete_session""#,
                "missing field `session_id`",
            ),
            (
                r#","command":"delete_session","session_id":["s"]"#,
                "field `session_id` must be a string, got an array",
            ),
            (
                r#","command":"send_data_to_session","session_id":"s1""#,
                "missing field `contents`",
            ),
            (
                r#","command":"send_data_to_session","session_id":"s1","contents":null"#,
                "field `contents` must be a string, got null",
            ),
            (
                r#","command":"create_session","session_id":"s1""#,
                "unknown field `session_id` for create_session",
            ),
            (
                r#","command":"get_session_info","sesion_id":"s1""#,
                "unknown field `sesion_id` for get_session_info, which takes only session_id",
            ),
            (
                r#","command":"get_session_info","session_id":3"#,
                "field `session_id` must be a string",
            ),
        ];
        for (rest, want) in with_head {
            let json = format!("{{{HEAD}{rest}}}");
            let r = parse(&json).unwrap_err();
            assert!(r.reason.contains(want), "{json}: {}", r.reason);
            assert_eq!(r.unique_id.as_deref(), Some("u1"));
            assert_eq!(r.client_id.as_deref(), Some("c1"));
        }
        // Empty contents are fine; a null session_id means "all sessions".
        assert!(parse(&format!(
            r#"{{{HEAD},"command":"send_data_to_session","session_id":"s1","contents":""}}"#
        ))
        .is_ok());
        assert_eq!(
            parse(&format!(
                r#"{{{HEAD},"command":"get_session_info","session_id":null}}"#
            ))
            .unwrap()
            .command,
            SessionCommand::GetSessionInfo { session_id: None }
        );
    }

    #[test]
    fn requests_older_or_newer_than_the_max_age_are_stale() {
        let now = parse_datetime("2024-01-01T00:00:30.000Z").unwrap();
        let max = std::time::Duration::from_secs(30);
        assert!(check_age(
            parse_datetime("2024-01-01T00:00:00.000Z").unwrap(),
            now,
            max
        )
        .is_ok());
        let old = check_age(
            parse_datetime("2023-12-31T23:59:59.999Z").unwrap(),
            now,
            max,
        );
        assert!(old.unwrap_err().contains("stale request"));
        let future = check_age(
            parse_datetime("2024-01-01T00:01:00.001Z").unwrap(),
            now,
            max,
        );
        assert!(future.unwrap_err().contains("in the future"));
    }
}
