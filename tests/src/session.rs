//! A client of the session-control protocol as any program would write it:
//! plain JSON over a REQ or DEALER socket, a SUB socket for a session's
//! output, and the server's process table to check what really runs;
//! `host_with_sessions` and `served` set up web01 with a session server and
//! a client it serves.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{wait_until, OneHost, Rill, TestUser};

/// `2002-12-25T00:00:00.000Z` for now.
pub fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// A fresh random id (unique_id, client_id).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Rill {
    /// Adds YAML lines under `hosts.<host>` (e.g. a `sessions:` block).
    pub fn add_host_yaml(&self, host: &str, yaml: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let anchor = format!("\n  {host}:\n");
        let at = text.find(&anchor).expect("host in config") + anchor.len();
        let block: String = yaml.lines().map(|l| format!("    {l}\n")).collect();
        let text = format!("{}{block}{}", &text[..at], &text[at..]);
        std::fs::write(&self.config, text).unwrap();
    }

    /// The pids of this Rill's ssh_tap processes.
    pub fn ssh_tap_pids(&self) -> Vec<u32> {
        crate::local_processes_mentioning(&self.config.display().to_string())
            .into_iter()
            .filter(|(_, cmd)| cmd.contains("/ssh_tap "))
            .map(|(pid, _)| pid)
            .collect()
    }

    /// The default sessions endpoint of `host`.
    pub fn sessions_ipc(&self, host: &str) -> String {
        format!(
            "ipc://{}/state/run/{host}.sessions",
            self.dir.path().display()
        )
    }
}

/// The remote shells of sessions: session id -> pid, from the test user's
/// process table (the shell's command line names its session).
pub fn remote_shells(user: &TestUser) -> BTreeMap<String, u32> {
    user.processes()
        .into_iter()
        .filter_map(|p| {
            let rest = p.cmdline.split_once("rill-session ")?.1;
            Some((rest.trim().to_owned(), p.pid))
        })
        .collect()
}

impl OneHost {
    /// [`remote_shells`] under this host's own sshd only: tests run side by
    /// side as one server user, each with its own sshd.
    pub fn shells(&self) -> BTreeMap<String, u32> {
        let ours = self.sshd.connection_pids();
        remote_shells(&self.user)
            .into_iter()
            .filter(|(_, pid)| ours.contains(pid))
            .collect()
    }
}

/// web01 on a real sshd with `sessions_yaml` under it, supervisor running.
pub fn host_with_sessions(sessions_yaml: &str) -> OneHost {
    let h = OneHost::new(&["app"]);
    h.rill.add_host_yaml("web01", sessions_yaml);
    OneHost::start(h, &["app"])
}

/// A client of web01's sessions socket, once the server answers it.
pub fn served(h: &OneHost, kind: Kind) -> SessionClient {
    let mut client = SessionClient::connect(&h.rill.sessions_ipc("web01"), kind);
    assert!(
        client.wait_until_served(Duration::from_secs(20)),
        "{}",
        h.rill.log()
    );
    client
}

/// How the client talks to the ROUTER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Req,
    /// A DEALER that sends the empty delimiter frame itself, like REQ.
    Dealer,
}

/// One protocol client with its own `client_id`.
pub struct SessionClient {
    pub ctx: zmq::Context,
    pub socket: zmq::Socket,
    pub kind: Kind,
    pub client_id: String,
    endpoint: String,
    login: Option<(String, String)>,
}

impl SessionClient {
    pub fn connect(endpoint: &str, kind: Kind) -> SessionClient {
        SessionClient::connect_with(endpoint, kind, None)
    }

    /// Connects logging in with PLAIN `(user, password)`, if given.
    pub fn connect_with(endpoint: &str, kind: Kind, login: Option<(&str, &str)>) -> SessionClient {
        let ctx = zmq::Context::new();
        let socket = ctx
            .socket(match kind {
                Kind::Req => zmq::REQ,
                Kind::Dealer => zmq::DEALER,
            })
            .unwrap();
        socket.set_linger(0).unwrap();
        plain_login(&socket, login);
        socket.connect(endpoint).unwrap();
        SessionClient {
            ctx,
            socket,
            kind,
            client_id: new_id(),
            endpoint: endpoint.to_owned(),
            login: login.map(|(u, p)| (u.to_owned(), p.to_owned())),
        }
    }

    /// A request of `command` with `fields`, the mandatory ones filled in.
    pub fn build(&self, command: &str, fields: Value) -> Value {
        let mut req = json!({
            "unique_id": new_id(),
            "client_id": self.client_id,
            "datetime": now(),
            "command": command,
        });
        if let Value::Object(f) = fields {
            req.as_object_mut().unwrap().extend(f);
        }
        req
    }

    /// Sends one message body (raw bytes) and waits up to `within` for the
    /// reply. On a timeout the socket is replaced, so the client stays usable.
    pub fn exchange_raw(&mut self, frames: &[&[u8]], within: Duration) -> Option<Value> {
        let mut out: Vec<&[u8]> = Vec::new();
        if self.kind == Kind::Dealer {
            out.push(b"");
        }
        out.extend_from_slice(frames);
        self.socket.send_multipart(out, 0).unwrap();
        let ready = self
            .socket
            .poll(zmq::POLLIN, within.as_millis() as i64)
            .unwrap();
        if ready == 0 {
            // A late reply must not pass for the next one: start afresh.
            let login = self.login.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
            let fresh = SessionClient::connect_with(&self.endpoint, self.kind, login);
            self.socket = fresh.socket;
            self.ctx = fresh.ctx;
            return None;
        }
        let mut msg = self.socket.recv_multipart(0).unwrap();
        if self.kind == Kind::Dealer {
            assert_eq!(msg.first().map(Vec::len), Some(0), "delimiter first");
            msg.remove(0);
        }
        assert_eq!(msg.len(), 1, "one JSON object per reply");
        Some(serde_json::from_slice(&msg[0]).expect("replies are JSON"))
    }

    /// Sends `req` and returns the reply, checking what every reply carries.
    pub fn exchange(&mut self, req: &Value, within: Duration) -> Option<Value> {
        let body = serde_json::to_vec(req).unwrap();
        let reply = self.exchange_raw(&[&body], within)?;
        assert_eq!(reply["unique_id"], req["unique_id"], "{reply}");
        assert_eq!(reply["client_id"], req["client_id"], "{reply}");
        check_reply_shape(&reply);
        Some(reply)
    }

    /// `command` with `fields`; panics if no reply comes within 20 s.
    pub fn call(&mut self, command: &str, fields: Value) -> Value {
        let req = self.build(command, fields);
        self.exchange(&req, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("no reply to {req}"))
    }

    /// Waits until the server answers `get_session_info`.
    pub fn wait_until_served(&mut self, deadline: Duration) -> bool {
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            let req = self.build("get_session_info", json!({}));
            if let Some(r) = self.exchange(&req, Duration::from_millis(500)) {
                return r["status"] == "ok";
            }
        }
        false
    }

    /// Waits (up to 10 s) until the server says session `id`'s output has
    /// a subscriber, so that nothing it prints from now on is missed.
    pub fn wait_subscribed(&mut self, id: &str) -> bool {
        wait_until(Duration::from_secs(10), || {
            self.sessions()[id]["subscribed"] == true
        })
    }

    /// `get_session_info` for all sessions: id -> info.
    pub fn sessions(&mut self) -> BTreeMap<String, Value> {
        let r = self.call("get_session_info", json!({}));
        assert_eq!(r["status"], "ok", "{r}");
        r["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["session_id"].as_str().unwrap().to_owned(), s.clone()))
            .collect()
    }
}

fn plain_login(socket: &zmq::Socket, login: Option<(&str, &str)>) {
    if let Some((user, password)) = login {
        socket.set_plain_username(Some(user)).unwrap();
        socket.set_plain_password(Some(password)).unwrap();
    }
}

/// What every reply has: a protocol datetime, a status, a reason exactly
/// when failed.
pub fn check_reply_shape(reply: &Value) {
    let dt = reply["datetime"].as_str().expect("datetime");
    assert!(
        chrono::NaiveDateTime::parse_from_str(dt, "%Y-%m-%dT%H:%M:%S%.3fZ").is_ok()
            && dt.len() == 24
            && dt.ends_with('Z'),
        "reply datetime {dt:?}"
    );
    match reply["status"].as_str() {
        Some("ok") => assert!(reply.get("failure_reason").is_none(), "{reply}"),
        Some("failed") => assert!(
            reply["failure_reason"]
                .as_str()
                .is_some_and(|r| !r.is_empty()),
            "{reply}"
        ),
        _ => panic!("status is ok or failed: {reply}"),
    }
}

/// A SUB socket on a session's publish endpoint, collecting its bytes.
pub struct SessionOutput {
    pub ctx: zmq::Context,
    pub socket: zmq::Socket,
    pub topic: String,
    pub bytes: Vec<u8>,
}

impl SessionOutput {
    pub fn subscribe(endpoint: &str, session_id: &str) -> SessionOutput {
        SessionOutput::subscribe_with(endpoint, session_id, None)
    }

    /// Subscribes logging in with PLAIN `(user, password)`, if given.
    pub fn subscribe_with(
        endpoint: &str,
        session_id: &str,
        login: Option<(&str, &str)>,
    ) -> SessionOutput {
        let ctx = zmq::Context::new();
        let socket = ctx.socket(zmq::SUB).unwrap();
        socket.set_linger(0).unwrap();
        plain_login(&socket, login);
        let topic = format!("session/{session_id}");
        socket.set_subscribe(topic.as_bytes()).unwrap();
        socket.connect(endpoint).unwrap();
        SessionOutput {
            ctx,
            socket,
            topic,
            bytes: Vec::new(),
        }
    }

    /// Reads until the output contains `needle` or `deadline` passes.
    pub fn read_until(&mut self, needle: &[u8], deadline: Duration) -> bool {
        let end = Instant::now() + deadline;
        while !self.bytes.windows(needle.len()).any(|w| w == needle) {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.read_for(left.min(Duration::from_millis(100)));
        }
        true
    }

    /// Reads whatever arrives within `d`.
    pub fn read_for(&mut self, d: Duration) {
        if self.socket.poll(zmq::POLLIN, d.as_millis() as i64).unwrap() == 0 {
            return;
        }
        while let Ok(msg) = self.socket.recv_multipart(zmq::DONTWAIT) {
            assert_eq!(msg.len(), 2, "[topic, bytes]");
            assert_eq!(msg[0], self.topic.as_bytes());
            self.bytes.extend_from_slice(&msg[1]);
        }
    }
}
