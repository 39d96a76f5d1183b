//! One SSH connection to one host: TCP with a deadline, handshake, host key
//! policy, authentication.

use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::time::Duration;

use rill_config::{Auth, Config, Host, SecretError};
use ssh2::{KeyboardInteractivePrompt, Prompt, Session};
use tracing::{debug, info};

use crate::hostkey::{self, HostKeyError, Verdict};

/// How long a TCP connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long data we sent may go unacknowledged before the kernel gives up
/// on the connection (`TCP_USER_TIMEOUT`): with a keepalive sent every 2 s, a
/// black-holed network (packets dropped, no reset) is noticed this long
/// after it started, whether or not we are reading.
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(8);
/// Keepalives (no reply asked), this many seconds apart.
pub const KEEPALIVE_SECS: u32 = 2;
/// How long any blocking SSH operation (handshake, auth, channel open) may take.
pub const SSH_TIMEOUT_MS: u32 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("could not resolve {address}: {source}")]
    Resolve {
        address: String,
        source: std::io::Error,
    },
    #[error("could not connect to {address}:{port}: {source}")]
    Tcp {
        address: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("ssh handshake with {address}:{port} failed: {source}")]
    Handshake {
        address: String,
        port: u16,
        source: ssh2::Error,
    },
    #[error(transparent)]
    HostKey(#[from] HostKeyError),
    #[error("authentication as {user} on {address}:{port} failed ({method}): {reason}")]
    Auth {
        user: String,
        address: String,
        port: u16,
        method: &'static str,
        reason: String,
    },
    #[error("could not read the secret for {user}@{address}: {0}", user = .1, address = .2)]
    Secret(SecretError, String, String),
    #[error("ssh: {0}")]
    Ssh(#[from] ssh2::Error),
    #[error("through jump host {jump} to {target}: {reason}")]
    Jump {
        jump: String,
        target: String,
        reason: String,
    },
}

/// Opens an authenticated session to `host`, in blocking mode with
/// [`SSH_TIMEOUT_MS`] as the per-operation timeout.
pub fn connect(cfg: &Config, host: &Host) -> Result<Session, ConnectError> {
    let (address, port) = (host.address.clone(), host.port);
    let mut session = Session::new()?;
    if host.jump.is_some() {
        session.set_tcp_stream(crate::jump::tunnel(cfg, host)?);
    } else {
        session.set_tcp_stream(tcp(&address, port)?);
    }
    session.set_timeout(SSH_TIMEOUT_MS);
    session
        .handshake()
        .map_err(|source| ConnectError::Handshake {
            address: address.clone(),
            port,
            source,
        })?;

    let user_file = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ssh/known_hosts"));
    match hostkey::verify(
        &session,
        &address,
        port,
        host.known_hosts,
        &cfg.known_hosts_file(),
        user_file.as_deref(),
    )? {
        Verdict::Known => debug!(host = %host.name, "host key known"),
        Verdict::Recorded { file } => {
            info!(host = %host.name, fingerprint = %hostkey::fingerprint(&session), file = %file.display(), "recorded new host key (accept-new)")
        }
    }

    authenticate(&session, host)?;
    // Keepalives without a reply: libssh2 never takes the replies off its
    // packet list (they would pile up for the life of the connection). They
    // still keep TCP_USER_TIMEOUT armed; liveness comes from the scripts'
    // ticks. `keepalive_send` is called from the tap loop.
    session.set_keepalive(false, KEEPALIVE_SECS);
    Ok(session)
}

/// A TCP connection to `address:port` (the first address that answers),
/// with `TCP_USER_TIMEOUT` set.
fn tcp(address: &str, port: u16) -> Result<TcpStream, ConnectError> {
    let addrs: Vec<_> = (address, port)
        .to_socket_addrs()
        .map_err(|source| ConnectError::Resolve {
            address: address.to_owned(),
            source,
        })?
        .collect();
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                set_user_timeout(s.as_raw_fd(), TCP_USER_TIMEOUT);
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(ConnectError::Tcp {
        address: address.to_owned(),
        port,
        source: last.unwrap_or_else(|| std::io::Error::other("no address")),
    })
}

fn set_user_timeout(fd: RawFd, d: Duration) {
    let ms = d.as_millis() as libc::c_uint;
    // SAFETY: setsockopt on our own socket with a correctly sized value.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            (&ms as *const libc::c_uint).cast(),
            std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
        );
    }
}

fn authenticate(session: &Session, host: &Host) -> Result<(), ConnectError> {
    let user = host.user.as_str();
    let fail = |method, reason: String| ConnectError::Auth {
        user: user.to_owned(),
        address: host.address.clone(),
        port: host.port,
        method,
        reason,
    };
    let secret_err = |e| ConnectError::Secret(e, user.to_owned(), host.address.clone());
    match &host.auth {
        Auth::Key { path, passphrase } => {
            let pass = passphrase
                .as_ref()
                .map(|s| s.read())
                .transpose()
                .map_err(secret_err)?;
            session
                .userauth_pubkey_file(user, None, path, pass.as_deref())
                .map_err(|e| fail("public key", e.message().to_owned()))?;
        }
        Auth::Password(secret) => {
            let password = secret.read().map_err(secret_err)?;
            let methods = session.auth_methods(user).unwrap_or("").to_owned();
            let mut result = Err(fail("password", format!("server offers only: {methods}")));
            if methods.contains("password") {
                result = session
                    .userauth_password(user, &password)
                    .map_err(|e| fail("password", e.message().to_owned()));
            }
            if result.is_err()
                && methods.contains("keyboard-interactive")
                && !session.authenticated()
            {
                let mut answer = AnswerEveryPrompt(password);
                result = session
                    .userauth_keyboard_interactive(user, &mut answer)
                    .map_err(|e| fail("keyboard-interactive", e.message().to_owned()));
            }
            result?;
        }
        Auth::Agent => {
            // ssh2's `userauth_agent` offers only the agent's first identity;
            // like OpenSSH, offer each until the server takes one.
            let agent_err = |e: ssh2::Error| fail("ssh-agent", e.message().to_owned());
            let mut agent = session.agent().map_err(agent_err)?;
            agent.connect().map_err(agent_err)?;
            agent.list_identities().map_err(agent_err)?;
            let identities = agent.identities().map_err(agent_err)?;
            if identities.is_empty() {
                return Err(fail("ssh-agent", "the agent holds no identities".into()));
            }
            let mut last = None;
            for identity in &identities {
                match agent.userauth(user, identity) {
                    Ok(()) => break,
                    Err(e) => last = Some(e),
                }
            }
            let _ = agent.disconnect();
            if !session.authenticated() {
                let why = last.map_or_else(String::new, |e| e.message().to_owned());
                return Err(fail(
                    "ssh-agent",
                    format!(
                        "none of its {} identities was accepted: {why}",
                        identities.len()
                    ),
                ));
            }
        }
    }
    if session.authenticated() {
        Ok(())
    } else {
        Err(fail(
            "any",
            "the server did not accept the credentials".into(),
        ))
    }
}

/// Keyboard-interactive for servers that route passwords through PAM: the
/// password answers every prompt.
struct AnswerEveryPrompt(String);

impl KeyboardInteractivePrompt for AnswerEveryPrompt {
    fn prompt<'a>(
        &mut self,
        _user: &str,
        _instructions: &str,
        prompts: &[Prompt<'a>],
    ) -> Vec<String> {
        prompts.iter().map(|_| self.0.clone()).collect()
    }
}
