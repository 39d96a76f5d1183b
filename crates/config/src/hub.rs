//! The validated blocks that open Rill beyond one machine: who may
//! subscribe to the streams (`streams:`), the HTTP services' TLS and
//! bearer tokens (`search:`, `ingest:`), events received over HTTP
//! (`ingest:`), and the collectors this one subscribes to (`collector`,
//! `upstreams:`). Checked in `validate/streams.rs`, `validate/search.rs`,
//! `validate/ingest.rs` and `validate/upstreams.rs`.
//!
//! Safe by default: a socket or listener other machines can reach is
//! refused unless it is guarded (an allowlist and a login: PLAIN users,
//! CURVE keys or bearer tokens; TLS for HTTP).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::model::Secret;
use crate::sessions::{is_local_endpoint, Cidr};

/// Who may subscribe to the stream endpoint (`streams:` besides its
/// endpoint). Empty: anyone who can reach it (loopback and ipc only).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamsGuard {
    /// Peers allowed to connect over tcp; empty means any.
    pub allow: Vec<Cidr>,
    /// PLAIN `user:password` lines; when set, every subscriber logs in.
    pub credentials_file: Option<PathBuf>,
    /// CURVE: encryption, and only the listed client keys admitted.
    pub curve: Option<CurveServerFiles>,
}

impl StreamsGuard {
    /// Whether any check applies.
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.credentials_file.is_none() && self.curve.is_none()
    }
}

/// A CURVE server's key files (`rill keygen` writes them).
#[derive(Debug, Clone, PartialEq)]
pub struct CurveServerFiles {
    /// The server's secret key (its public key beside it, `<file>.pub`).
    pub secret_key_file: PathBuf,
    /// One client public key per file (`<name>.pub` as `rill keygen`
    /// writes them); only these clients are admitted.
    pub authorized_keys_dir: PathBuf,
}

/// A CURVE client's key files.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveClientFiles {
    /// The server's public key (`<its secret key file>.pub`).
    pub server_key_file: PathBuf,
    /// This client's secret key (its public key beside it, `<file>.pub`).
    pub secret_key_file: PathBuf,
}

/// A PLAIN login to another collector's streams.
#[derive(Debug, Clone, PartialEq)]
pub struct PlainLogin {
    pub user: String,
    pub password: Secret,
}

/// TLS for an HTTP listener: a PEM certificate chain and its private key.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The `ingest:` block: events received over HTTP.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestSettings {
    pub listen: SocketAddr,
    /// Peers allowed to send; empty means any (loopback listen only).
    pub allow: Vec<Cidr>,
    /// `TOKEN SOURCE` lines: a request's bearer token names its source
    /// (the events' host). Required off loopback.
    pub tokens_file: Option<PathBuf>,
    /// The largest request body taken (default 16 MiB).
    pub max_body: u64,
    pub tls: Option<TlsFiles>,
}

impl IngestSettings {
    pub const DEFAULT_MAX_BODY: u64 = 16 << 20;
    /// The source of events sent without a token (loopback only).
    pub const LOCAL_SOURCE: &'static str = "local";
}

/// One of `upstreams:`: another collector whose streams this one takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    pub name: String,
    /// Its federation endpoint (that collector's `streams.federation`:
    /// `tcp://HOST:PORT` or `ipc://PATH`).
    pub endpoint: String,
    /// Topic patterns subscribed to (MQTT wildcards; default `line/#`).
    pub topics: Vec<String>,
    /// Whether lines that arrive are also indexed here (default false:
    /// rebroadcast only).
    pub index: bool,
    pub plain: Option<PlainLogin>,
    pub curve: Option<CurveClientFiles>,
}

impl Upstream {
    /// Whether only this machine can reach its endpoint.
    pub fn is_local(&self) -> bool {
        is_local_endpoint(&self.endpoint)
    }
}

/// Bearer tokens from a tokens file: `TOKEN NAME` lines (the name is an
/// ingest source, or who a search client is). `Debug` shows names only.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens(BTreeMap<String, String>);

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Tokens")
            .field(&self.0.values().collect::<Vec<_>>())
            .finish()
    }
}

/// A token shorter than this is refused (guessable).
pub const MIN_TOKEN_LEN: usize = 16;

impl Tokens {
    /// Reads `TOKEN NAME` lines; blank lines and `#` comments are skipped.
    /// Errors name the file and line, never a token.
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("expected a readable file, {}: {e}", path.display()))?;
        Tokens::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Tokens, String> {
        let mut tokens = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(token), Some(name), None) = (words.next(), words.next(), words.next()) else {
                return Err(format!("line {}: expected TOKEN NAME", i + 1));
            };
            if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "line {}: expected a token of at least {MIN_TOKEN_LEN} printable characters",
                    i + 1
                ));
            }
            if !rill_proto::valid_name(name) {
                return Err(format!(
                    "line {}: expected a name made of letters, digits, '.', '_' and '-', got {name:?}",
                    i + 1
                ));
            }
            if tokens.insert(token.to_owned(), name.to_owned()).is_some() {
                return Err(format!("line {}: the token appears twice", i + 1));
            }
        }
        if tokens.is_empty() {
            return Err("expected at least one TOKEN NAME line".into());
        }
        Ok(Tokens(tokens))
    }

    /// The name of `token`, if it is one (every token compared in
    /// constant time for its length).
    pub fn name(&self, token: &str) -> Option<&str> {
        let mut found = None;
        for (t, name) in &self.0 {
            let same = t.len() == token.len()
                && t.bytes()
                    .zip(token.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0;
            if same {
                found = Some(name.as_str());
            }
        }
        found
    }

    /// The first token (for a local client such as `rill search`).
    pub fn first(&self) -> Option<&str> {
        self.0.keys().next().map(String::as_str)
    }

    /// The token named `name`, if there is one.
    pub fn named(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(t, _)| t.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_check_and_never_show_a_token() {
        let t =
            Tokens::parse("# who\nabcdefghijklmnop web01\n\n0123456789abcdefXYZ web02\n").unwrap();
        assert_eq!(t.name("abcdefghijklmnop"), Some("web01"));
        assert_eq!(t.name("0123456789abcdefXYZ"), Some("web02"));
        assert_eq!(t.name("abcdefghijklmno"), None);
        assert_eq!(t.name(""), None);
        assert!(!format!("{t:?}").contains("abcdef"));
        for (text, want) in [
            ("short web01\n", "line 1: expected a token of at least 16"),
            ("abcdefghijklmnop\n", "line 1: expected TOKEN NAME"),
            ("abcdefghijklmnop a b\n", "line 1: expected TOKEN NAME"),
            ("abcdefghijklmnop $(x)\n", "line 1: expected a name"),
            (
                "abcdefghijklmnop a\nabcdefghijklmnop b\n",
                "line 2: the token appears twice",
            ),
            ("# nothing\n", "expected at least one"),
        ] {
            let e = Tokens::parse(text).unwrap_err();
            assert!(e.starts_with(want), "{text:?}: {e}");
            assert!(!e.contains("abcdefghijklmnop"), "{e}");
        }
    }
}
