//! `rill session`: one request of the session-control protocol to a host's
//! sessions socket, the reply printed.
//!
//! The endpoint comes from the config (`hosts.<host>.sessions`). When that
//! block names a `credentials_file`, the client logs in with PLAIN as
//! `--user` with the password in `$RILL_SESSION_PASSWORD`, or, without
//! `--user`, as the file's first user (the operator's own machine). When it
//! has `curve`, the client connects with `--key` (a `rill keygen` secret
//! key file) or else the host's own server key pair.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use chrono::Utc;
use rill_bus::monitor::{event, Monitor};
use rill_bus::socket::{self, Role};
use rill_config::{Config, Credentials};
use rill_proto::session::{
    format_datetime, ReplyStatus, SessionCommand, SessionReply, SessionRequest,
};

use crate::emit;

/// How long to wait for a reply (a create may wait for a shell to come up).
const ANSWER_WITHIN: Duration = Duration::from_secs(20);
/// The environment variable holding the PLAIN password for `--user`.
pub const PASSWORD_ENV: &str = "RILL_SESSION_PASSWORD";

/// Drive a shell on a host through its session-control socket (docs/sessions.md).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub config: PathBuf,
    /// The host (its config needs a `sessions` block).
    #[arg(long)]
    pub host: String,
    /// Print the server's JSON reply.
    #[arg(long)]
    pub json: bool,
    /// PLAIN user when the socket needs a login; the password is read from
    /// $RILL_SESSION_PASSWORD (default: the credentials file's first user).
    #[arg(long)]
    pub user: Option<String>,
    /// CURVE: this client's secret key file (`rill keygen`), when the
    /// socket has `curve` (default: the host's own server key pair).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// CURVE: the server's public key file (default: the `.pub` beside
    /// `sessions.curve.secret_key_file`).
    #[arg(long, value_name = "FILE")]
    pub server_key: Option<PathBuf>,
    #[command(subcommand)]
    pub action: Action,
}

/// What to ask. Each variant's doc comment is its subcommand's help; the
/// `data` of `send` goes through [`unescape`] before it is sent.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Action {
    /// Open a session; prints its id and the endpoint publishing its output.
    Create,
    /// Write DATA to the session as given; escapes \n, \r, \t, \e, \\, \xHH are understood.
    Send {
        #[arg(value_name = "ID")]
        session_id: String,
        data: String,
    },
    /// List open sessions (or one).
    Info {
        #[arg(value_name = "ID")]
        session_id: Option<String>,
    },
    /// Close the session; its shell ends.
    Delete {
        #[arg(value_name = "ID")]
        session_id: String,
    },
}

/// `rill session`: loads the config, sends the one request and prints the
/// reply.
pub fn run(args: Args, out: &mut impl Write) -> anyhow::Result<()> {
    let Args {
        config,
        host,
        json: as_json,
        user,
        key,
        server_key,
        action,
    } = args;
    let cfg = Config::load_for_client(&config)?;
    let h = cfg
        .hosts
        .get(&host)
        .ok_or_else(|| anyhow!("host {host:?} is not in {}", cfg.file.display()))?;
    let settings = h.sessions.as_ref().ok_or_else(|| {
        anyhow!(
            "host {host} has no sessions block in {}, so it serves no sessions",
            cfg.file.display()
        )
    })?;
    let command = match action {
        Action::Create => SessionCommand::CreateSession,
        Action::Send { session_id, data } => SessionCommand::SendDataToSession {
            session_id,
            contents: unescape(&data)?,
        },
        Action::Info { session_id } => SessionCommand::GetSessionInfo { session_id },
        Action::Delete { session_id } => SessionCommand::DeleteSession { session_id },
    };
    let name = command.name();
    let request = SessionRequest {
        unique_id: uuid::Uuid::new_v4().to_string(),
        client_id: uuid::Uuid::new_v4().to_string(),
        datetime: format_datetime(Utc::now()),
        command,
    };

    let ctx = zmq::Context::new();
    let req = socket::open(&ctx, zmq::REQ, Role::Control)?;
    req.set_linger(0)?;
    if let Some(file) = &settings.credentials_file {
        let (user, password) = login(user.as_deref(), file)?;
        req.set_plain_username(Some(&user))?;
        req.set_plain_password(Some(&password))?;
    }
    if let Some(curve) = &settings.curve {
        let server_key =
            server_key.unwrap_or_else(|| rill_bus::keys::public_key_path(&curve.secret_key_file));
        let client = rill_bus::CurveClient::load(
            key.as_deref().unwrap_or(&curve.secret_key_file),
            &server_key,
        )
        .map_err(|e| anyhow!("{e}"))?;
        rill_bus::ClientAuth {
            plain: None,
            curve: Some(client),
        }
        .apply(&req)?;
    }
    let endpoint = connectable(&settings.endpoint);
    // A refused login shows at once as a failed handshake, not as silence.
    let monitor = Monitor::watch(&ctx, &req)?;
    socket::connect(&req, &endpoint)?;
    req.send(serde_json::to_vec(&request)?, 0)?;
    if !answered_or_refused(&req, &monitor, ANSWER_WITHIN)? {
        bail!(
            "no answer from {endpoint} within {}s; is ssh_tap for {host} running (supervisor \
             --config {}), and are this machine and user allowed in?",
            ANSWER_WITHIN.as_secs(),
            cfg.file.display()
        );
    }
    let body = req.recv_bytes(0)?;
    let reply: SessionReply =
        serde_json::from_slice(&body).context("the server's reply is not a session reply")?;
    if as_json {
        emit(out, &String::from_utf8_lossy(&body))?;
    }
    if reply.status == ReplyStatus::Failed {
        bail!(
            "{name} failed: {}",
            reply.failure_reason.as_deref().unwrap_or("no reason given")
        );
    }
    if !as_json {
        emit(out, &render(&reply))?;
    }
    Ok(())
}

/// Waits for `req`'s answer; an error as soon as the server refuses the
/// login (a failed handshake seen by `monitor`).
fn answered_or_refused(
    req: &zmq::Socket,
    monitor: &Monitor,
    within: Duration,
) -> anyhow::Result<bool> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut items = [
            req.as_poll_item(zmq::POLLIN),
            monitor.socket().as_poll_item(zmq::POLLIN),
        ];
        match zmq::poll(&mut items, left.as_millis().min(i64::MAX as u128) as i64) {
            Ok(_) | Err(zmq::Error::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        if items[0].is_readable() {
            return Ok(true);
        }
        if monitor
            .events()
            .iter()
            .any(|(e, _)| event::handshake_failed(*e))
        {
            bail!(
                "the sessions socket refused our login: this key or user is not \
                 authorized (or this address is not allowed)"
            );
        }
        if left.is_zero() {
            return Ok(false);
        }
    }
}

/// A successful reply as printed.
pub fn render(r: &SessionReply) -> String {
    if let (Some(id), Some(publish)) = (&r.session_id, &r.publish_zeromq_bind) {
        return format!("{id} {publish}");
    }
    if let Some(n) = r.bytes_written {
        return format!("{n} bytes written");
    }
    if let Some(list) = &r.sessions {
        return list
            .iter()
            .map(|s| {
                format!(
                    "{} client={} opened={} written={} read={} subscribed={}",
                    s.session_id,
                    s.client_id,
                    s.datetime,
                    s.bytes_written,
                    s.bytes_read,
                    s.subscribed
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
    }
    "ok".into()
}

/// The PLAIN login: `--user` with `$RILL_SESSION_PASSWORD`, else the first
/// user of the credentials file.
fn login(user: Option<&str>, file: &std::path::Path) -> anyhow::Result<(String, String)> {
    if let Some(user) = user {
        let password = std::env::var(PASSWORD_ENV)
            .map_err(|_| anyhow!("--user {user} needs the password in ${PASSWORD_ENV}"))?;
        return Ok((user.to_owned(), password));
    }
    let creds = Credentials::load(file).map_err(|e| {
        anyhow!("the sessions socket needs a login: pass --user and ${PASSWORD_ENV} ({e})")
    })?;
    let (u, p) = creds.first().expect("a loaded file has a user");
    Ok((u.to_owned(), p.to_owned()))
}

/// A wildcard bind address (`0.0.0.0`, `*`, `[::]`) is reached on loopback.
fn connectable(endpoint: &str) -> String {
    for wildcard in ["tcp://0.0.0.0:", "tcp://*:", "tcp://[::]:"] {
        if let Some(port) = endpoint.strip_prefix(wildcard) {
            return format!("tcp://127.0.0.1:{port}");
        }
    }
    endpoint.to_owned()
}

/// C-style escapes in DATA: `\n`, `\r`, `\t`, `\e` (ESC), `\\`, `\xHH`
/// (e.g. `\x03` is Ctrl-C). Other backslashes stay as written.
pub fn unescape(data: &str) -> anyhow::Result<String> {
    let mut out = String::with_capacity(data.len());
    let mut chars = data.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek().copied() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('e') => out.push('\x1b'),
            Some('\\') => out.push('\\'),
            Some('x') => {
                chars.next();
                let hex: String = chars.by_ref().take(2).collect();
                let byte = u8::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|b| b.is_ascii() && hex.len() == 2)
                    .ok_or_else(|| anyhow!("bad escape \\x{hex}: expected \\x00 to \\x7f"))?;
                out.push(byte as char);
                continue;
            }
            _ => {
                out.push('\\');
                continue;
            }
        }
        chars.next();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_escapes_become_control_characters() {
        assert_eq!(unescape("echo hi\\n").unwrap(), "echo hi\n");
        assert_eq!(unescape("a\\tb\\r\\\\c").unwrap(), "a\tb\r\\c");
        assert_eq!(unescape("\\x03\\e[A").unwrap(), "\x03\x1b[A");
        assert_eq!(unescape("keep \\q and \\").unwrap(), "keep \\q and \\");
        assert!(unescape("\\xZZ").is_err());
        assert!(unescape("\\x1").is_err());
        assert!(unescape("\\xff").is_err());
    }

    #[test]
    fn wildcard_binds_are_reached_on_loopback() {
        assert_eq!(connectable("tcp://0.0.0.0:7701"), "tcp://127.0.0.1:7701");
        assert_eq!(connectable("tcp://*:7701"), "tcp://127.0.0.1:7701");
        assert_eq!(
            connectable("ipc:///x/web01.sessions"),
            "ipc:///x/web01.sessions"
        );
        assert_eq!(connectable("tcp://10.0.0.1:7701"), "tcp://10.0.0.1:7701");
    }

    #[test]
    fn replies_render_one_line_per_fact() {
        let mut r = SessionReply::ok(Some("u".into()), Some("c".into()));
        r.session_id = Some("s1".into());
        r.publish_zeromq_bind = Some("ipc:///p".into());
        assert_eq!(render(&r), "s1 ipc:///p");
        let mut r = SessionReply::ok(None, None);
        r.bytes_written = Some(8);
        assert_eq!(render(&r), "8 bytes written");
        let mut r = SessionReply::ok(None, None);
        r.sessions = Some(vec![]);
        assert_eq!(render(&r), "");
        assert_eq!(render(&SessionReply::ok(None, None)), "ok");
    }
}
