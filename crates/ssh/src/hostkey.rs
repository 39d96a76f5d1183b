//! Host key checking: `strict` and `accept-new`, never silently ignored.

use std::path::{Path, PathBuf};

use base64::Engine;
use rill_config::KnownHostsPolicy;
use ssh2::{CheckResult, HashType, KnownHostFileKind, Session};

/// What was decided about a server's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Found in a known_hosts file.
    Known,
    /// Unknown and recorded in `file` (accept-new).
    Recorded { file: PathBuf },
}

#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    #[error("host key of {host} is not known ({fingerprint}); add it to {file} or set known_hosts: accept-new")]
    Unknown {
        host: String,
        fingerprint: String,
        file: String,
    },
    #[error("host key of {host} has CHANGED: the server offers {fingerprint}, which does not match {file}; refusing to connect (remove the old line only if the change is expected)")]
    Changed {
        host: String,
        fingerprint: String,
        file: String,
    },
    #[error("the server did not offer a host key")]
    NoKey,
    #[error("could not read or write known hosts {file}: {source}")]
    File { file: String, source: ssh2::Error },
}

/// `address` for port 22, `[address]:port` otherwise: OpenSSH's spelling.
pub fn known_hosts_name(address: &str, port: u16) -> String {
    if port == 22 {
        address.to_owned()
    } else {
        format!("[{address}]:{port}")
    }
}

/// `ssh-ed25519 SHA256:...` as OpenSSH prints it.
pub fn fingerprint(session: &Session) -> String {
    let kind = match session.host_key() {
        Some((_, t)) => format!("{t:?}"),
        None => "unknown".into(),
    };
    let hash = session
        .host_key_hash(HashType::Sha256)
        .map(|h| base64::engine::general_purpose::STANDARD_NO_PAD.encode(h))
        .unwrap_or_default();
    format!("{kind} SHA256:{hash}")
}

/// Checks the session's host key against `state_file` and, if present,
/// `user_file` (~/.ssh/known_hosts), applying `policy`.
pub fn verify(
    session: &Session,
    address: &str,
    port: u16,
    policy: KnownHostsPolicy,
    state_file: &Path,
    user_file: Option<&Path>,
) -> Result<Verdict, HostKeyError> {
    let (key, key_type) = session.host_key().ok_or(HostKeyError::NoKey)?;
    let host = known_hosts_name(address, port);
    let shown = state_file.display().to_string();
    let file_err = |file: &Path, source| HostKeyError::File {
        file: file.display().to_string(),
        source,
    };

    let mut known = session.known_hosts().map_err(|e| file_err(state_file, e))?;
    for file in std::iter::once(state_file).chain(user_file) {
        if file.exists() {
            known
                .read_file(file, KnownHostFileKind::OpenSSH)
                .map_err(|e| file_err(file, e))?;
        }
    }
    match known.check_port(address, port, key) {
        CheckResult::Match => Ok(Verdict::Known),
        CheckResult::Mismatch => Err(HostKeyError::Changed {
            host,
            fingerprint: fingerprint(session),
            file: shown,
        }),
        CheckResult::NotFound | CheckResult::Failure => match policy {
            KnownHostsPolicy::Strict => Err(HostKeyError::Unknown {
                host,
                fingerprint: fingerprint(session),
                file: shown,
            }),
            KnownHostsPolicy::AcceptNew => {
                record(session, &host, key, key_type, state_file)
                    .map_err(|e| file_err(state_file, e))?;
                Ok(Verdict::Recorded {
                    file: state_file.to_owned(),
                })
            }
        },
    }
}

/// Appends the key to `file` under an exclusive lock, re-reading it first so
/// concurrent taps for other hosts do not overwrite each other's lines.
fn record(
    session: &Session,
    host: &str,
    key: &[u8],
    key_type: ssh2::HostKeyType,
    file: &Path,
) -> Result<(), ssh2::Error> {
    if let Some(dir) = file.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file.with_extension("lock"));
    // SAFETY: flock on a file we own; released when `lock` is dropped.
    if let Ok(l) = &lock {
        use std::os::unix::io::AsRawFd;
        unsafe { libc::flock(l.as_raw_fd(), libc::LOCK_EX) };
    }
    let mut known = session.known_hosts()?;
    if file.exists() {
        known.read_file(file, KnownHostFileKind::OpenSSH)?;
    }
    known.add(host, key, "added by rill (accept-new)", key_type.into())?;
    let tmp = file.with_extension("tmp");
    known.write_file(&tmp, KnownHostFileKind::OpenSSH)?;
    std::fs::rename(&tmp, file).map_err(|_| ssh2::Error::eof())?;
    drop(lock);
    Ok(())
}
