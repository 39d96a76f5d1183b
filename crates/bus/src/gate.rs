//! Who may talk to a listening socket: a ZAP handler (ZeroMQ RFC 27) with a
//! CIDR allowlist and either PLAIN credentials or CURVE keys, one config
//! block's worth (`sessions`, `streams`: [`Policy::what`] names it in every
//! refusal).
//!
//! libzmq asks the handler bound at `inproc://zeromq.zap.01` of the
//! socket's context about every new connection to a socket that has a ZAP
//! domain; PLAIN and CURVE server sockets always ask. So:
//!
//! - One gate per zmq context: the endpoint is per context and a second
//!   bind fails ([`GateError::Bind`]). A process with two policies gives
//!   each its own context.
//! - The gate is installed before a guarded socket binds. A CURVE server
//!   whose context has no handler admits every client key (libzmq's
//!   "Stonehouse" fallback): encrypted, but not authenticated.
//! - The handler answers only its own domain ([`Gate::domain`]); another
//!   socket of the context asking under another domain is refused.
//!
//! PLAIN passwords travel in clear text (the allowlist and a trusted
//! network are the rest of the protection); CURVE encrypts the connection
//! and authenticates both ends. libzmq takes one mechanism per socket, so a
//! policy has one or the other ([`Policy::new`]). Passwords and secret
//! keys are never logged; public keys are (in Z85), as they are not secret.
//!
//! Refusals are counted, with the last reason, for `rill status`
//! ([`Gate::refusals`]).

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rill_config::{Cidr, Credentials};
use tracing::{debug, warn};

use crate::keys::{self, Key, KeyError, KeyPair};

/// Where libzmq looks for a context's ZAP handler (RFC 27).
pub const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("{what}: PLAIN credentials and CURVE keys cannot both guard one socket (libzmq takes one mechanism per socket); choose one")]
    PlainAndCurve { what: String },
    #[error("could not bind the ZAP handler at {ZAP_ENDPOINT} (one per zmq context; is another gate installed in it?): {0}")]
    Bind(zmq::Error),
    #[error("could not start the ZAP handler thread: {0}")]
    Thread(std::io::Error),
    #[error("zeromq: {0}")]
    Zmq(#[from] zmq::Error),
}

/// A CURVE server's keys: its own pair and the client keys it admits.
/// Its `Debug` does not show the secret key.
#[derive(Clone, PartialEq, Eq)]
pub struct CurveServer {
    pub secret_key: Key,
    /// What clients are given as the server's key (`rill keygen`'s `.pub`).
    pub public_key: Key,
    /// Client public keys admitted; any other is refused. Loaded, it
    /// holds the server's own public key too (see [`CurveServer::load`]).
    pub authorized: Vec<Key>,
}

impl std::fmt::Debug for CurveServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurveServer")
            .field("public_key", &keys::z85(&self.public_key))
            .field(
                "authorized",
                &self.authorized.iter().map(keys::z85).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl CurveServer {
    /// The server's key pair from `secret_key_file` (written by `rill
    /// keygen`, 0600) and the client keys in `authorized_keys_dir` (one
    /// public key per file, see [`keys::load_authorized_keys`]; it may be
    /// empty).
    ///
    /// The server's own public key is admitted as well: local tools (`rill
    /// tail`, the page's Live tab) connect with the server's key pair,
    /// which only the collector's user can read.
    pub fn load(
        secret_key_file: &Path,
        authorized_keys_dir: &Path,
    ) -> Result<CurveServer, KeyError> {
        let pair = KeyPair::load(secret_key_file)?;
        let mut authorized = keys::load_authorized_keys(authorized_keys_dir)?;
        if !authorized.contains(&pair.public) {
            authorized.push(pair.public);
        }
        Ok(CurveServer {
            secret_key: pair.secret,
            public_key: pair.public,
            authorized,
        })
    }
}

/// Who may connect, decided per connection.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Allowed peer networks (tcp only); empty allows any.
    pub allow: Vec<Cidr>,
    /// When set, peers must log in with PLAIN.
    pub credentials: Option<Credentials>,
    /// When set, peers must connect with CURVE and an authorized key.
    pub curve: Option<CurveServer>,
    /// Whether peers arrive over tcp (an ipc peer has no address).
    pub tcp: bool,
    /// The config block this guards (`sessions`, `streams`), named in
    /// refusals: "address 10.1.2.3 is not in streams.allow".
    pub what: String,
}

impl Policy {
    /// A policy; PLAIN credentials and CURVE together are an error.
    pub fn new(
        what: &str,
        allow: Vec<Cidr>,
        credentials: Option<Credentials>,
        curve: Option<CurveServer>,
        tcp: bool,
    ) -> Result<Policy, GateError> {
        let policy = Policy {
            allow,
            credentials,
            curve,
            tcp,
            what: what.to_owned(),
        };
        policy.check()?;
        Ok(policy)
    }

    fn check(&self) -> Result<(), GateError> {
        if self.credentials.is_some() && self.curve.is_some() {
            return Err(GateError::PlainAndCurve {
                what: self.what.clone(),
            });
        }
        Ok(())
    }

    /// Whether anything needs checking at all.
    pub fn is_open(&self) -> bool {
        (self.allow.is_empty() || !self.tcp) && self.credentials.is_none() && self.curve.is_none()
    }

    /// Admits a peer (returning its user id: the PLAIN user name, the CURVE
    /// key in Z85, empty otherwise) or says why not.
    pub fn admit(
        &self,
        address: &str,
        mechanism: &str,
        creds: &[Vec<u8>],
    ) -> Result<String, String> {
        let what = &self.what;
        // A unix-socket peer (its address empty, or ":uid:gid:pid") is on
        // this machine and passed the socket file's permissions.
        let unix_peer = address.is_empty() || address.starts_with(':');
        if self.tcp && !self.allow.is_empty() && !unix_peer {
            let ip: Option<IpAddr> = address.parse().ok();
            if !ip.is_some_and(|ip| self.allow.iter().any(|c| c.contains(ip))) {
                return Err(format!("address {address} is not in {what}.allow"));
            }
        }
        let from = if address.is_empty() {
            String::new()
        } else {
            format!(" from {address}")
        };
        if let Some(curve) = &self.curve {
            let key: Option<Key> = match creds {
                [key] => key.as_slice().try_into().ok(),
                _ => None,
            };
            let (true, Some(key)) = (mechanism == "CURVE", key) else {
                return Err(format!(
                    "expected a CURVE client, got mechanism {mechanism}{from}"
                ));
            };
            let z85 = keys::z85(&key);
            return if curve.authorized.contains(&key) {
                Ok(z85)
            } else {
                Err(format!(
                    "client key {z85}{from} is not in {what}.curve.authorized_keys_dir"
                ))
            };
        }
        let Some(users) = &self.credentials else {
            return Ok(String::new());
        };
        if mechanism != "PLAIN" || creds.len() != 2 {
            return Err(format!(
                "expected a PLAIN login, got mechanism {mechanism}{from}"
            ));
        }
        let user = String::from_utf8_lossy(&creds[0]).into_owned();
        let password = String::from_utf8_lossy(&creds[1]);
        if users.check(&user, &password) {
            Ok(user)
        } else {
            Err(format!("wrong user or password (user {user:?}){from}"))
        }
    }
}

/// Connections a gate refused: how many, and the reason of the last one.
/// A clonable handle, for a thread that reports status. Every refused
/// handshake counts. libzmq itself does not retry a refused login, but a
/// client that connects again does (an upstream feed, 1 s doubling to
/// 30 s), so one misconfigured client keeps adding.
#[derive(Debug, Clone, Default)]
pub struct Refusals(Arc<Mutex<(u64, Option<String>)>>);

impl Refusals {
    /// The count of refusals so far and the last one's reason.
    pub fn get(&self) -> (u64, Option<String>) {
        self.0.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn record(&self, why: &str) {
        if let Ok(mut r) = self.0.lock() {
            r.0 += 1;
            r.1 = Some(why.to_owned());
        }
    }
}

/// The running ZAP handler of one context; stopped on drop.
pub struct Gate {
    domain: String,
    plain: bool,
    curve_secret: Option<Key>,
    checked: bool,
    refusals: Refusals,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Gate {
    /// Binds the ZAP handler in `ctx` (unless the policy lets everyone in).
    /// Must happen before any socket it guards binds. Its log lines are in
    /// the caller's span (a session server's has the host).
    pub fn install(ctx: &zmq::Context, policy: Policy) -> Result<Gate, GateError> {
        policy.check()?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut gate = Gate {
            domain: format!("rill-{}", policy.what),
            plain: policy.credentials.is_some(),
            curve_secret: policy.curve.as_ref().map(|c| c.secret_key),
            checked: !policy.is_open(),
            refusals: Refusals::default(),
            stop: Arc::clone(&stop),
            thread: None,
        };
        if !gate.checked {
            return Ok(gate);
        }
        let handler = ctx.socket(zmq::REP)?;
        handler.set_linger(0)?;
        handler.bind(ZAP_ENDPOINT).map_err(GateError::Bind)?;
        let (domain, refusals) = (gate.domain.clone(), gate.refusals.clone());
        let span = tracing::Span::current();
        gate.thread = Some(
            std::thread::Builder::new()
                .name(format!("{}-zap", policy.what))
                .spawn(move || {
                    let _span = span.entered();
                    serve(&handler, &domain, &policy, &refusals, &stop)
                })
                .map_err(GateError::Thread)?,
        );
        Ok(gate)
    }

    /// Puts a socket under the gate (before it binds): its ZAP domain, and
    /// the PLAIN or CURVE server role.
    pub fn guard(&self, s: &zmq::Socket) -> zmq::Result<()> {
        if self.checked {
            s.set_zap_domain(&self.domain)?;
        }
        if self.plain {
            s.set_plain_server(true)?;
        }
        if let Some(secret) = &self.curve_secret {
            s.set_curve_server(true)?;
            s.set_curve_secretkey(secret)?;
        }
        Ok(())
    }

    /// The ZAP domain of the sockets this gate guards (`rill-<what>`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Connections refused so far and the reason of the last one.
    pub fn refusals(&self) -> (u64, Option<String>) {
        self.refusals.get()
    }

    /// A handle on the refusals that outlives a borrow of the gate.
    pub fn refusal_log(&self) -> Refusals {
        self.refusals.clone()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    handler: &zmq::Socket,
    domain: &str,
    policy: &Policy,
    refusals: &Refusals,
    stop: &AtomicBool,
) {
    let what = policy.what.as_str();
    while !stop.load(Ordering::Relaxed) {
        match handler.poll(zmq::POLLIN, 100) {
            Ok(n) if n > 0 => {}
            // The context is ending: close the handler so it can.
            Err(zmq::Error::ETERM) => return,
            _ => continue,
        }
        let frames = match handler.recv_multipart(zmq::DONTWAIT) {
            Ok(frames) => frames,
            Err(zmq::Error::ETERM) => return,
            Err(_) => continue,
        };
        // version, request id, domain, address, identity, mechanism, credentials...
        if frames.len() < 6 {
            continue;
        }
        let text = |i: usize| String::from_utf8_lossy(&frames[i]).into_owned();
        let (address, mechanism) = (text(3), text(5));
        let verdict = if frames[2] == domain.as_bytes() {
            policy.admit(&address, &mechanism, &frames[6..])
        } else {
            Err(format!(
                "ZAP domain {:?} is not this gate's ({domain}): one gate per zmq context",
                text(2)
            ))
        };
        let (code, status, user) = match verdict {
            Ok(user) => {
                debug!(address, user, "{what} client admitted");
                ("200", "OK".to_owned(), user)
            }
            Err(why) => {
                // "sessions client refused": tests/session_access.rs looks for it.
                warn!(address, reason = %why, "{what} client refused");
                refusals.record(&why);
                ("400", why, String::new())
            }
        };
        let reply: [&[u8]; 6] = [
            b"1.0",
            &frames[1],
            code.as_bytes(),
            status.as_bytes(),
            user.as_bytes(),
            b"",
        ];
        let _ = handler.send_multipart(reply, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], users: Option<&str>) -> Policy {
        let allow = allow.iter().map(|c| c.parse().unwrap()).collect();
        let users = users.map(|u| Credentials::parse(u).unwrap());
        Policy::new("sessions", allow, users, None, true).unwrap()
    }

    fn curve(authorized: &[Key]) -> CurveServer {
        CurveServer {
            secret_key: [1; 32],
            public_key: [2; 32],
            authorized: authorized.to_vec(),
        }
    }

    #[test]
    fn the_allowlist_and_credentials_both_have_to_pass() {
        let p = policy(&["127.0.0.1/32"], Some("ops:s3cret\n"));
        let good = [b"ops".to_vec(), b"s3cret".to_vec()];
        assert_eq!(p.admit("127.0.0.1", "PLAIN", &good), Ok("ops".into()));
        let e = p.admit("127.0.0.2", "PLAIN", &good).unwrap_err();
        assert!(e.contains("not in sessions.allow"), "{e}");
        let wrong = [b"ops".to_vec(), b"guess".to_vec()];
        let e = p.admit("127.0.0.1", "PLAIN", &wrong).unwrap_err();
        assert!(
            e.contains("wrong user or password") && !e.contains("guess"),
            "{e}"
        );
        assert!(p.admit("127.0.0.1", "NULL", &[]).is_err());
        // A unix-socket peer (no address, or libzmq's ":uid:gid:pid") is on
        // this machine: no allowlist applies, the login still does.
        assert_eq!(p.admit("", "PLAIN", &good), Ok("ops".into()));
        assert_eq!(p.admit(":1000:1000:42", "PLAIN", &good), Ok("ops".into()));
        assert!(p.admit("", "PLAIN", &wrong).is_err());
        assert!(p.admit("", "NULL", &[]).is_err());
        assert!(!p.is_open());
    }

    #[test]
    fn without_rules_everyone_is_in_and_ipc_ignores_the_allowlist() {
        assert!(policy(&[], None).is_open());
        let mut ipc = policy(&["10.0.0.0/8"], None);
        ipc.tcp = false;
        assert!(ipc.is_open());
        assert_eq!(ipc.admit("", "NULL", &[]), Ok(String::new()));
        let only_allow = policy(&["10.0.0.0/8"], None);
        assert!(!only_allow.is_open());
        assert!(only_allow.admit("10.1.2.3", "NULL", &[]).is_ok());
    }

    #[test]
    fn refusals_name_the_config_block_they_come_from() {
        let mut p = policy(&["10.0.0.0/8"], None);
        p.what = "streams".into();
        assert_eq!(
            p.admit("192.168.1.1", "NULL", &[]),
            Err("address 192.168.1.1 is not in streams.allow".into())
        );
    }

    #[test]
    fn curve_admits_authorized_keys_only_and_names_the_refused_key() {
        let p = Policy::new("streams", vec![], None, Some(curve(&[[5; 32]])), true).unwrap();
        assert!(
            !p.is_open(),
            "curve keys are checked even without an allowlist"
        );
        assert_eq!(
            p.admit("10.0.0.1", "CURVE", &[vec![5; 32]]),
            Ok(keys::z85(&[5; 32]))
        );
        let e = p.admit("10.0.0.1", "CURVE", &[vec![6; 32]]).unwrap_err();
        assert_eq!(
            e,
            format!(
                "client key {} from 10.0.0.1 is not in streams.curve.authorized_keys_dir",
                keys::z85(&[6; 32])
            )
        );
        assert!(p.admit("10.0.0.1", "NULL", &[]).is_err());
        assert!(p.admit("10.0.0.1", "CURVE", &[vec![5; 31]]).is_err());
        let e = p.admit("", "CURVE", &[vec![6; 32]]).unwrap_err();
        assert!(e.contains("key ") && !e.contains("from"), "{e}");
    }

    #[test]
    fn plain_and_curve_together_are_refused_at_load() {
        let users = Credentials::parse("ops:pw\n").unwrap();
        let e = Policy::new("streams", vec![], Some(users), Some(curve(&[])), true).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("streams: PLAIN credentials and CURVE"),
            "{e}"
        );
    }

    #[test]
    fn debug_output_shows_no_secret_key() {
        let shown = format!("{:?}", curve(&[[5; 32]]));
        assert!(!shown.contains(&keys::z85(&[1; 32])), "{shown}");
        assert!(shown.contains(&keys::z85(&[2; 32])), "{shown}");
    }
}
