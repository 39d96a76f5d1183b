//! The session-control protocol: JSON requests and replies on a host's
//! sessions ROUTER socket (see `docs/sessions.md` for the reference).
//!
//! One JSON object per message. A client sends a [`SessionRequest`]; the
//! server checks it strictly with [`SessionRequest::parse`] (every problem
//! becomes a [`Rejected`] with a reason a person can read) and answers with a
//! [`SessionReply`]. A session's output is published raw on its own socket as
//! `[session/<session_id>, bytes]` ([`session_topic`]).
//!
//! One idea a file:
//!
//! - `request.rs`: [`SessionRequest`] and its [`SessionCommand`].
//! - `parse.rs`: [`SessionRequest::parse`], the strict check of an incoming
//!   request, and [`Rejected`] for one that fails it.
//! - `reply.rs`: [`SessionReply`], [`ReplyStatus`] and [`SessionInfo`].
//! - `datetime.rs`: the datetime format both directions carry
//!   ([`format_datetime`], [`parse_datetime`]) and the server's age limit
//!   ([`check_age`]).
//!
//! Every item is re-exported here, so callers write
//! `rill_proto::session::SessionRequest` whichever file holds it.

mod datetime;
mod parse;
mod reply;
mod request;

pub use datetime::{check_age, format_datetime, parse_datetime, DATETIME_FORMAT};
pub use parse::{Rejected, MAX_ID_BYTES};
pub use reply::{ReplyStatus, SessionInfo, SessionReply};
pub use request::{SessionCommand, SessionRequest};

/// The topic of every message on a session's publish socket.
pub fn session_topic(session_id: &str) -> String {
    format!("session/{session_id}")
}
