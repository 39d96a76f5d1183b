//! Who may talk to the session sockets: a ZAP handler (ZeroMQ RFC 27) with
//! the CIDR allowlist and PLAIN credentials of the host's `sessions` block.
//!
//! libzmq asks the handler bound at `inproc://zeromq.zap.01` of the socket's
//! context about every new connection to a socket that has a ZAP domain;
//! a `PLAIN` server socket always asks. The vendored libzmq has no CURVE,
//! so PLAIN passwords travel in clear text: the allowlist and a trusted
//! network are the rest of the protection. Passwords are never logged.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;
use rill_config::{Cidr, Credentials, SessionSettings};
use tracing::{debug, warn};

/// The ZAP domain of every session socket.
pub const DOMAIN: &str = "rill-sessions";
const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";

/// Who may connect, decided per connection.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Allowed peer networks (tcp only); empty allows any.
    pub allow: Vec<Cidr>,
    /// When set, peers must log in with PLAIN.
    pub credentials: Option<Credentials>,
    /// Whether peers arrive over tcp (an ipc peer has no address).
    pub tcp: bool,
}

impl Policy {
    /// The policy of `settings`, reading the credentials file now.
    pub fn load(settings: &SessionSettings) -> anyhow::Result<Policy> {
        let credentials = settings
            .credentials_file
            .as_deref()
            .map(|p| {
                Credentials::load(p).map_err(|e| anyhow::anyhow!("sessions.credentials_file: {e}"))
            })
            .transpose()?;
        Ok(Policy {
            allow: settings.allow.clone(),
            credentials,
            tcp: settings.endpoint.starts_with("tcp://"),
        })
    }

    /// Whether anything needs checking at all.
    pub fn is_open(&self) -> bool {
        (self.allow.is_empty() || !self.tcp) && self.credentials.is_none()
    }

    /// Admits a peer (returning its user name, empty without login) or says
    /// why not.
    pub fn admit(
        &self,
        address: &str,
        mechanism: &str,
        creds: &[Vec<u8>],
    ) -> Result<String, String> {
        if self.tcp && !self.allow.is_empty() {
            let ip: Option<IpAddr> = address.parse().ok();
            if !ip.is_some_and(|ip| self.allow.iter().any(|c| c.contains(ip))) {
                return Err(format!("address {address} is not in sessions.allow"));
            }
        }
        let Some(users) = &self.credentials else {
            return Ok(String::new());
        };
        if mechanism != "PLAIN" || creds.len() != 2 {
            return Err(format!("expected a PLAIN login, got mechanism {mechanism}"));
        }
        let user = String::from_utf8_lossy(&creds[0]).into_owned();
        let password = String::from_utf8_lossy(&creds[1]);
        if users.check(&user, &password) {
            Ok(user)
        } else {
            Err(format!("wrong user or password (user {user:?})"))
        }
    }
}

/// The running ZAP handler; stopped on drop.
pub struct Gate {
    plain: bool,
    checked: bool,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Gate {
    /// Binds the ZAP handler in `ctx` (unless the policy lets everyone in).
    /// Must happen before any session socket binds.
    pub fn install(ctx: &zmq::Context, host: &str, policy: Policy) -> anyhow::Result<Gate> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut gate = Gate {
            plain: policy.credentials.is_some(),
            checked: !policy.is_open(),
            stop: Arc::clone(&stop),
            thread: None,
        };
        if !gate.checked {
            return Ok(gate);
        }
        let handler = ctx.socket(zmq::REP)?;
        handler.set_linger(0)?;
        handler
            .bind(ZAP_ENDPOINT)
            .context("could not bind the ZAP handler")?;
        let host = host.to_owned();
        gate.thread = Some(
            std::thread::Builder::new()
                .name("sessions-zap".into())
                .spawn(move || serve(&handler, &host, &policy, &stop))?,
        );
        Ok(gate)
    }

    /// Puts a socket under the gate (before it binds).
    pub fn guard(&self, s: &zmq::Socket) -> zmq::Result<()> {
        if self.checked {
            s.set_zap_domain(DOMAIN)?;
        }
        if self.plain {
            s.set_plain_server(true)?;
        }
        Ok(())
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

fn serve(handler: &zmq::Socket, host: &str, policy: &Policy, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match handler.poll(zmq::POLLIN, 100) {
            Ok(n) if n > 0 => {}
            _ => continue,
        }
        let Ok(frames) = handler.recv_multipart(zmq::DONTWAIT) else {
            continue;
        };
        // version, request id, domain, address, identity, mechanism, credentials...
        if frames.len() < 6 {
            continue;
        }
        let text = |i: usize| String::from_utf8_lossy(&frames[i]).into_owned();
        let (address, mechanism) = (text(3), text(5));
        let (code, status, user) = match policy.admit(&address, &mechanism, &frames[6..]) {
            Ok(user) => {
                debug!(host, address, user, "sessions client admitted");
                ("200", "OK".to_owned(), user)
            }
            Err(why) => {
                warn!(host, address, reason = %why, "sessions client refused");
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
        Policy {
            allow: allow.iter().map(|c| c.parse().unwrap()).collect(),
            credentials: users.map(|u| Credentials::parse(u).unwrap()),
            tcp: true,
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
        assert!(p.admit("", "PLAIN", &good).is_err(), "no address, no entry");
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
}
