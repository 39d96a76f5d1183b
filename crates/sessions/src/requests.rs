//! Answering requests: parse and check, then create, send, list or delete.

use std::collections::HashSet;
use std::time::Instant;

use chrono::Utc;
use rill_bus::socket::{self, Role};
use rill_proto::session::{
    check_age, format_datetime, parse_datetime, session_topic, SessionCommand, SessionInfo,
    SessionReply, SessionRequest,
};
use tracing::{debug, info, warn};

use super::server::{
    OpenSession, Pending, Server, MAX_REQUEST_BYTES, REMEMBER_ENDED, WRITE_WITHIN,
};
use super::shell::Shell;

impl Server {
    pub(super) fn serve_requests(&mut self) -> anyhow::Result<()> {
        for _ in 0..256 {
            let frames = match self.router.recv_multipart(zmq::DONTWAIT) {
                Ok(f) => f,
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => return Ok(()),
                Err(e) => return Err(anyhow::anyhow!(e).context("sessions socket failed")),
            };
            let (envelope, body) = split_envelope(frames);
            match body {
                Ok(body) if body.len() > MAX_REQUEST_BYTES => {
                    let reason = format!(
                        "request of {} bytes is over the {} MiB limit",
                        body.len(),
                        MAX_REQUEST_BYTES >> 20
                    );
                    let ids = Ids::of(&body);
                    self.reply(
                        envelope,
                        SessionReply::failed(ids.unique_id, ids.client_id, reason),
                    )
                }
                Ok(body) => self.handle(envelope, &body),
                Err(reason) => self.reply(envelope, SessionReply::failed(None, None, reason)),
            }
        }
        Ok(())
    }

    fn handle(&mut self, envelope: Vec<Vec<u8>>, body: &[u8]) {
        let req = match SessionRequest::parse(body) {
            Ok(r) => r,
            Err(rejected) => {
                debug!(reason = %rejected.reason, "malformed session request");
                return self.reply(envelope, SessionReply::rejected(rejected));
            }
        };
        let (uid, cid) = (Some(req.unique_id.clone()), Some(req.client_id.clone()));
        let sent = parse_datetime(&req.datetime).expect("checked by parse");
        if let Err(reason) = check_age(sent, Utc::now(), self.settings.max_request_age) {
            return self.reply(envelope, SessionReply::failed(uid, cid, reason));
        }
        if let Err(reason) = self.replays.check(&req.unique_id) {
            return self.reply(envelope, SessionReply::failed(uid, cid, reason));
        }
        let reply = match req.command {
            SessionCommand::CreateSession => {
                return self.create(envelope, req.unique_id, req.client_id)
            }
            SessionCommand::DeleteSession { session_id } => match self.open.remove(&session_id) {
                Some(s) => {
                    info!(session = %session_id, pid = s.shell.pid, "session deleted");
                    self.retire(s, "was deleted");
                    SessionReply::ok(uid, cid)
                }
                None => SessionReply::failed(uid, cid, self.unknown(&session_id)),
            },
            SessionCommand::SendDataToSession {
                session_id,
                contents,
            } => self.send(uid, cid, &session_id, contents.as_bytes()),
            SessionCommand::GetSessionInfo { session_id } => {
                let list: Vec<SessionInfo> = match &session_id {
                    None => self.open.iter().map(|(id, s)| info_of(id, s)).collect(),
                    Some(id) => match self.open.get(id) {
                        Some(s) => vec![info_of(id, s)],
                        None => {
                            let reason = self.unknown(id);
                            return self.reply(envelope, SessionReply::failed(uid, cid, reason));
                        }
                    },
                };
                let mut r = SessionReply::ok(uid, cid);
                r.sessions = Some(list);
                r
            }
        };
        self.reply(envelope, reply);
    }

    fn create(&mut self, envelope: Vec<Vec<u8>>, unique_id: String, client_id: String) {
        let (open, waiting, max) = (self.open.len(), self.pending.len(), self.settings.max);
        if open + waiting >= max {
            let reason = format!(
                "cap reached: {open} sessions open and {waiting} being created on {}, max is {max}",
                self.host
            );
            return self.reply(
                envelope,
                SessionReply::failed(Some(unique_id), Some(client_id), reason),
            );
        }
        let pending = Pending {
            envelope,
            unique_id,
            client_id,
            since: Instant::now(),
        };
        match self.ready.pop_front() {
            Some(shell) => self.hand_over(shell, pending),
            None => {
                debug!("no shell ready; create waits for one");
                self.pending.push_back(pending);
            }
        }
    }

    /// Gives `shell` to the client of `p`, with a publish socket of its own.
    pub(super) fn hand_over(&mut self, shell: Shell, p: Pending) {
        let (uid, cid) = (Some(p.unique_id), Some(p.client_id.clone()));
        let (publisher, endpoint) = match self.publisher() {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %format!("{e:#}"), "could not bind a session publisher");
                self.ready.push_front(shell);
                let reason = format!("could not bind the session's publish socket: {e:#}");
                return self.reply(p.envelope, SessionReply::failed(uid, cid, reason));
            }
        };
        let id = shell.id.clone();
        info!(session = %id, pid = shell.pid, client = %p.client_id, publish = %endpoint, "session created");
        let topic = session_topic(&id);
        self.open.insert(
            id.clone(),
            OpenSession {
                shell,
                client_id: p.client_id,
                opened: Utc::now(),
                bytes_written: 0,
                bytes_read: 0,
                publisher,
                topic,
                subscriptions: HashSet::new(),
            },
        );
        let mut r = SessionReply::ok(uid, cid);
        r.session_id = Some(id);
        r.publish_zeromq_bind = Some(endpoint);
        self.reply(p.envelope, r);
    }

    /// A new XPUB socket next to the router: `ipc://<path>.<12 hex>` or the
    /// router's tcp address on a free port.
    fn publisher(&self) -> anyhow::Result<(zmq::Socket, String)> {
        let s = socket::open(&self.ctx, zmq::XPUB, Role::Live)?;
        self.gate.guard(&s)?;
        if let Some(path) = self.bound.strip_prefix("ipc://") {
            let endpoint = loop {
                let suffix = &uuid::Uuid::new_v4().simple().to_string()[..12];
                let candidate = format!("{path}.{suffix}");
                if !std::path::Path::new(&candidate).exists() {
                    break format!("ipc://{candidate}");
                }
            };
            socket::bind(&s, &endpoint)?;
            super::owner_only(&endpoint);
            Ok((s, endpoint))
        } else {
            let base = self.bound.rsplit_once(':').map_or(&*self.bound, |(h, _)| h);
            socket::bind(&s, &format!("{base}:*"))?;
            let endpoint = s
                .get_last_endpoint()?
                .map_err(|_| anyhow::anyhow!("endpoint is not UTF-8"))?;
            Ok((s, endpoint))
        }
    }

    fn send(
        &mut self,
        uid: Option<String>,
        cid: Option<String>,
        id: &str,
        data: &[u8],
    ) -> SessionReply {
        let Some(s) = self.open.get_mut(id) else {
            let reason = self.unknown(id);
            return SessionReply::failed(uid, cid, reason);
        };
        let link = &self.links.links[s.shell.link];
        let (n, short) = s.shell.write(data, link, WRITE_WITHIN);
        s.bytes_written += n as u64;
        let mut r = match short {
            None => SessionReply::ok(uid, cid),
            Some(why) => SessionReply::failed(
                uid,
                cid,
                format!("wrote {n} of {} bytes: {why}", data.len()),
            ),
        };
        r.bytes_written = Some(n as u64);
        r
    }

    /// Why `id` is not an open session.
    fn unknown(&self, id: &str) -> String {
        match self.ended.get(id) {
            Some(why) => format!("session {id} {why}"),
            None => format!(
                "unknown session {id:?}: not open on {} (sessions do not outlive a restart of ssh_tap)",
                self.host
            ),
        }
    }

    /// Closes an open session's shell for good and remembers why.
    pub(super) fn retire(&mut self, s: OpenSession, why: &str) {
        self.closer.push(s.shell.channel, s.shell.link);
        self.reap.push(s.shell.pid);
        self.ended.insert(s.shell.id.clone(), why.to_owned());
        self.ended_order.push_back(s.shell.id);
        if self.ended_order.len() > REMEMBER_ENDED {
            if let Some(old) = self.ended_order.pop_front() {
                self.ended.remove(&old);
            }
        }
    }
}

fn info_of(id: &str, s: &OpenSession) -> SessionInfo {
    SessionInfo {
        session_id: id.to_owned(),
        client_id: s.client_id.clone(),
        datetime: format_datetime(s.opened),
        bytes_written: s.bytes_written,
        bytes_read: s.bytes_read,
        subscribed: !s.subscriptions.is_empty(),
    }
}

/// Splits a ROUTER message into the envelope to send back (identity, and
/// the empty delimiter a REQ or DEALER client sends) and the one JSON body.
pub fn split_envelope(mut frames: Vec<Vec<u8>>) -> (Vec<Vec<u8>>, Result<Vec<u8>, String>) {
    let cut = frames
        .iter()
        .skip(1)
        .position(Vec::is_empty)
        .map_or(1, |i| i + 2)
        .min(frames.len());
    let body = frames.split_off(cut);
    let result = match body.len() {
        1 => Ok(body.into_iter().next().expect("one frame")),
        0 => Err("empty message: expected one JSON object".to_owned()),
        n => Err(format!(
            "expected one JSON object per message, got {n} frames"
        )),
    };
    (frames, result)
}

/// The ids of a request too big to be served, to echo them anyway.
#[derive(Default, serde::Deserialize)]
struct Ids {
    #[serde(default, deserialize_with = "string_or_none")]
    unique_id: Option<String>,
    #[serde(default, deserialize_with = "string_or_none")]
    client_id: Option<String>,
}

impl Ids {
    fn of(body: &[u8]) -> Ids {
        serde_json::from_slice(body).unwrap_or_default()
    }
}

fn string_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = <serde_json::Value as serde::Deserialize>::deserialize(d)?;
    Ok(v.as_str().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(parts: &[&str]) -> Vec<Vec<u8>> {
        parts.iter().map(|p| p.as_bytes().to_vec()).collect()
    }

    #[test]
    fn ids_of_an_oversized_request_are_found_when_they_are_strings() {
        let ids = Ids::of(br#"{"unique_id":"u1","client_id":7,"contents":"xyz"}"#);
        assert_eq!(
            (ids.unique_id.as_deref(), ids.client_id),
            (Some("u1"), None)
        );
        let ids = Ids::of(b"not json");
        assert_eq!((ids.unique_id, ids.client_id), (None, None));
    }

    #[test]
    fn envelopes_of_req_and_dealer_clients_are_sent_back_whole() {
        // REQ, or DEALER with the empty delimiter.
        let (env, body) = split_envelope(f(&["id", "", "{}"]));
        assert_eq!((env, body), (f(&["id", ""]), Ok(b"{}".to_vec())));
        // DEALER without the delimiter.
        let (env, body) = split_envelope(f(&["id", "{}"]));
        assert_eq!((env, body), (f(&["id"]), Ok(b"{}".to_vec())));
        // Several bodies or none: refused, but the envelope still answers.
        let (env, body) = split_envelope(f(&["id", "", "{}", "{}"]));
        assert_eq!(env, f(&["id", ""]));
        assert!(body.unwrap_err().contains("got 2 frames"));
        let (env, body) = split_envelope(f(&["id", ""]));
        assert_eq!(env, f(&["id", ""]));
        assert!(body.unwrap_err().contains("empty message"));
        let (env, body) = split_envelope(f(&["id"]));
        assert_eq!(env, f(&["id"]));
        assert!(body.is_err());
    }
}
