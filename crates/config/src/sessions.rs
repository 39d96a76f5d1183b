//! The validated `hosts.<name>.sessions` block: the session-control
//! protocol's socket, its caps, and who may connect (CIDR allowlist, PLAIN
//! credentials). The block is checked in `validate/sessions.rs`.
//!
//! Safe by default: without the block there is no socket; the default
//! endpoint is an `ipc://` socket under `state_dir/run`; a `tcp://` endpoint
//! that is not on loopback is refused unless both `allow` and
//! `credentials_file` are set.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Each session's publish socket is the sessions socket's path plus
/// `.` and 12 hex digits.
pub const PUBLISH_SUFFIX_LEN: usize = 13;

/// A validated `sessions` block.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSettings {
    /// Where the ROUTER socket listens (`tcp://HOST:PORT` or `ipc://PATH`).
    /// Default `ipc://<state_dir>/run/<host>.sessions`.
    pub endpoint: String,
    /// Open sessions at most; `create_session` beyond it fails (default 8).
    pub max: usize,
    /// Shells kept warm at a prompt, ready to hand out (default 5, at most `max`).
    pub pool: usize,
    /// Requests whose datetime is further from now than this are refused as
    /// stale (default 30 s).
    pub max_request_age: Duration,
    /// Peers allowed to connect over tcp; empty means any (only allowed on
    /// loopback and ipc endpoints).
    pub allow: Vec<Cidr>,
    /// PLAIN `user:password` lines; when set, every peer must log in.
    pub credentials_file: Option<PathBuf>,
    /// CURVE keys: encryption, and only the listed client keys admitted.
    pub curve: Option<crate::hub::CurveServerFiles>,
}

impl SessionSettings {
    pub const DEFAULT_MAX: usize = 8;
    pub const DEFAULT_POOL: usize = 5;
    pub const DEFAULT_MAX_REQUEST_AGE: Duration = Duration::from_secs(30);
    /// Sessions per host at most, whatever the config says.
    pub const MAX_MAX: usize = 1000;

    /// Whether the endpoint is `tcp://` on loopback or `ipc://` (reachable
    /// from this machine only).
    pub fn is_local(&self) -> bool {
        is_local_endpoint(&self.endpoint)
    }
}

/// Whether `endpoint` can only be reached from this machine.
pub fn is_local_endpoint(endpoint: &str) -> bool {
    match endpoint.split_once("://") {
        Some(("ipc", _)) => true,
        Some(("tcp", rest)) => {
            let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        _ => false,
    }
}

/// An IPv4 or IPv6 network, `10.0.0.0/8`; a bare address is a single host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: IpAddr,
    pub prefix_len: u8,
}

impl Cidr {
    /// Whether `ip` is inside (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected a CIDR like 10.0.0.0/8, 127.0.0.1/32 or ::1/128, got {s:?}");
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let network: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len {
            None => max,
            Some(l) => l
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(bad)?,
        };
        Ok(Cidr {
            network,
            prefix_len,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// PLAIN users and passwords from a credentials file. `Debug` shows the
/// user names only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials(BTreeMap<String, String>);

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Credentials")
            .field(&self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Credentials {
    /// Reads `user:password` lines; blank lines and `#` comments are
    /// skipped; the password is everything after the first `:`. Errors
    /// name the line, never its content.
    pub fn load(path: &Path) -> Result<Credentials, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("expected a readable file, {}: {e}", path.display()))?;
        Credentials::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Credentials, String> {
        let mut users = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            match line.split_once(':') {
                Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                    if users.insert(user.to_owned(), password.to_owned()).is_some() {
                        return Err(format!("line {}: user {user:?} appears twice", i + 1));
                    }
                }
                _ => {
                    return Err(format!(
                        "line {}: expected user:password (both non-empty)",
                        i + 1
                    ))
                }
            }
        }
        if users.is_empty() {
            return Err("expected at least one user:password line".into());
        }
        Ok(Credentials(users))
    }

    /// Whether `user` exists with exactly `password` (compared in constant
    /// time for equal lengths).
    pub fn check(&self, user: &str, password: &str) -> bool {
        let Some(want) = self.0.get(user) else {
            return false;
        };
        want.len() == password.len()
            && want
                .bytes()
                .zip(password.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// The first user and password (for a local client such as `rill session`).
    pub fn first(&self) -> Option<(&str, &str)> {
        self.0.iter().next().map(|(u, p)| (u.as_str(), p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_match() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(
            net.contains("::ffff:10.1.0.9".parse().unwrap()),
            "v4-mapped v6"
        );
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let any: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains("192.0.2.1".parse().unwrap()));
        assert!(!any.contains("::1".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "10.0.0/8", "ten", "::1/129", "10.0.0.0/", ""] {
            assert!(
                bad.parse::<Cidr>().unwrap_err().contains("expected a CIDR"),
                "{bad}"
            );
        }
    }

    #[test]
    fn only_loopback_and_ipc_endpoints_are_local() {
        for local in [
            "ipc:///run/x",
            "tcp://127.0.0.1:7701",
            "tcp://127.3.2.1:7701",
            "tcp://[::1]:7701",
        ] {
            assert!(is_local_endpoint(local), "{local}");
        }
        for open in [
            "tcp://0.0.0.0:7701",
            "tcp://*:7701",
            "tcp://10.0.0.1:7701",
            "tcp://eth0:7701",
            "tcp://web01.example:7701",
            "tcp://localhost:7701",
            "tcp://[::]:7701",
        ] {
            assert!(!is_local_endpoint(open), "{open}");
        }
    }

    #[test]
    fn credentials_parse_check_and_never_show_passwords() {
        let c = Credentials::parse("# users\nalice:s3cret\n\nbob:pa:ss:word\r\n").unwrap();
        assert!(c.check("alice", "s3cret"));
        assert!(!c.check("alice", "s3cre"));
        assert!(!c.check("alice", "s3cret!"));
        assert!(c.check("bob", "pa:ss:word"));
        assert!(!c.check("carol", "s3cret"));
        assert_eq!(c.first(), Some(("alice", "s3cret")));
        let shown = format!("{c:?}");
        assert!(
            shown.contains("alice") && !shown.contains("s3cret"),
            "{shown}"
        );

        let e = Credentials::parse("alice:s3cret\nbob-without-password\n").unwrap_err();
        assert_eq!(e, "line 2: expected user:password (both non-empty)");
        assert!(!e.contains("bob"));
        assert!(Credentials::parse("# nothing\n")
            .unwrap_err()
            .contains("at least one"));
        assert!(Credentials::parse(":pw\n").is_err());
        assert!(Credentials::parse("a:1\na:2\n")
            .unwrap_err()
            .contains("twice"));
    }
}
