//! CURVE keys on disk: the one file format `rill keygen` writes and the
//! gate and clients read.
//!
//! A key pair is two files, both text, `#` comment lines and blank lines
//! ignored:
//!
//! ```text
//! PATH       (0600, only its owner reads it)
//! # rill CURVE secret key, written by `rill keygen`: keep this file private
//! secret-key <40 characters of Z85>
//! public-key <40 characters of Z85>
//!
//! PATH.pub   (0644)
//! # rill CURVE public key, written by `rill keygen`
//! <40 characters of Z85>
//! ```
//!
//! The secret key file holds the public key too (libzmq cannot derive one
//! from the other through the `zmq` crate), as CZMQ's `zcert` secret files
//! do. A public key file is one bare key, what a server's
//! `authorized_keys_dir` holds one of per file and what a client is given
//! as the server's key. The labels in the secret file make a mix-up an
//! error rather than a key used for the wrong thing: a secret key file put
//! in an authorized keys folder is refused, and so is a public key given
//! where a secret key is expected.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A CURVE key (public or secret) as libzmq takes it: 32 bytes.
pub type Key = [u8; 32];

/// Errors reading or writing key files; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    // `error`, not `source`: the message holds it already, and anyhow's
    // `{:#}` would print it twice.
    #[error("could not read {path}: {error}")]
    Read { path: PathBuf, error: io::Error },
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{path} already exists; a key is never overwritten (move it away to make a new one)")]
    Exists { path: PathBuf },
    #[error("could not write {path}: {error}")]
    Write { path: PathBuf, error: io::Error },
    #[error("could not generate a CURVE key pair: {0}")]
    Generate(zmq::Error),
}

/// A CURVE key pair. Its `Debug` does not show the secret key.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPair {
    pub public: Key,
    pub secret: Key,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &z85(&self.public))
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A new random key pair from libzmq.
    pub fn generate() -> Result<KeyPair, KeyError> {
        let pair = zmq::CurveKeyPair::new().map_err(KeyError::Generate)?;
        Ok(KeyPair {
            public: pair.public_key,
            secret: pair.secret_key,
        })
    }

    /// Reads a secret key file (see the module doc). A mode that lets
    /// others read it is the config's warning to give (`rill_config`'s
    /// `Config::warnings`, as for every secret file), not an error here.
    pub fn load(path: &Path) -> Result<KeyPair, KeyError> {
        KeyPair::parse(&read(path)?).map_err(|reason| format_error(path, reason))
    }

    /// The text of a secret key file.
    pub fn parse(text: &str) -> Result<KeyPair, String> {
        let (mut secret, mut public) = (None, None);
        for line in values(text) {
            let (slot, value) = match line.split_once(char::is_whitespace) {
                Some(("secret-key", v)) => (&mut secret, v),
                Some(("public-key", v)) => (&mut public, v),
                _ if line.len() == 40 => {
                    return Err("expected a secret key file (`secret-key` and `public-key` lines, as `rill keygen` writes), found a bare key: is this a public key file?".into())
                }
                // Not quoted: the line may hold part of a key.
                _ => return Err("expected only `secret-key KEY` and `public-key KEY` lines".into()),
            };
            if slot.is_some() {
                return Err(format!(
                    "{} appears twice",
                    line.split(' ').next().unwrap_or("")
                ));
            }
            *slot = Some(decode(value.trim())?);
        }
        match (secret, public) {
            (Some(secret), Some(public)) => Ok(KeyPair { public, secret }),
            (None, _) => Err("no `secret-key` line".into()),
            (_, None) => Err("no `public-key` line".into()),
        }
    }

    /// The text of this pair's secret key file.
    pub fn secret_file_text(&self) -> String {
        format!(
            "# rill CURVE secret key, written by `rill keygen`: keep this file private\n\
             secret-key {}\npublic-key {}\n",
            z85(&self.secret),
            z85(&self.public)
        )
    }

    /// The text of this pair's public key file.
    pub fn public_file_text(&self) -> String {
        format!(
            "# rill CURVE public key, written by `rill keygen`\n{}\n",
            z85(&self.public)
        )
    }

    /// Writes the secret key to `path` (0600) and the public key to
    /// `path.pub` (0644), refusing to replace either file. Returns the
    /// public key file's path.
    pub fn write(&self, path: &Path) -> Result<PathBuf, KeyError> {
        let public_path = public_key_path(path);
        for p in [path, &public_path] {
            if p.symlink_metadata().is_ok() {
                return Err(KeyError::Exists { path: p.to_owned() });
            }
        }
        create(path, 0o600, &self.secret_file_text())?;
        if let Err(e) = create(&public_path, 0o644, &self.public_file_text()) {
            // Not half a pair: the secret alone would block the next try.
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        Ok(public_path)
    }
}

/// Where the public key of the secret key file `secret` is: `secret.pub`.
pub fn public_key_path(secret: &Path) -> PathBuf {
    let mut name = secret.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Reads a public key file: one key in Z85.
pub fn load_public_key(path: &Path) -> Result<Key, KeyError> {
    parse_public_key(&read(path)?).map_err(|reason| format_error(path, reason))
}

/// The text of a public key file.
pub fn parse_public_key(text: &str) -> Result<Key, String> {
    let mut lines = values(text);
    let Some(line) = lines.next() else {
        return Err("expected a public key (40 characters of Z85), found none".into());
    };
    if line.starts_with("secret-key") || line.starts_with("public-key") {
        return Err(
            "this is a secret key file; give the public key file (`.pub`) instead, and keep the secret one private"
                .into(),
        );
    }
    if lines.next().is_some() {
        return Err("expected one public key, found more lines".into());
    }
    decode(line)
}

/// Every public key in the folder `dir`: each file in it holds one (see
/// [`load_public_key`]). Names starting with `.` and subfolders are
/// skipped; a file that is not a public key is an error naming it. An
/// empty folder is no keys.
pub fn load_authorized_keys(dir: &Path) -> Result<Vec<Key>, KeyError> {
    let entries = std::fs::read_dir(dir).map_err(|e| read_error(dir, e))?;
    let mut files = Vec::new();
    for e in entries {
        let e = e.map_err(|e| read_error(dir, e))?;
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = e.path();
        // Follows symlinks: a linked key counts, a linked folder does not.
        if std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        files.push(path);
    }
    files.sort();
    files.iter().map(|p| load_public_key(p)).collect()
}

/// A key as 40 characters of Z85 (ZeroMQ RFC 32).
pub fn z85(key: &Key) -> String {
    let mut out = String::with_capacity(40);
    for chunk in key.chunks(4) {
        let mut n = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        let mut digits = [0u8; 5];
        for d in digits.iter_mut().rev() {
            *d = Z85[(n % 85) as usize];
            n /= 85;
        }
        out.extend(digits.iter().map(|&b| b as char));
    }
    out
}

/// A key from 40 characters of Z85; the error says what is wrong.
pub fn decode(text: &str) -> Result<Key, String> {
    if text.len() != 40 {
        return Err(format!(
            "expected a key of 40 characters of Z85, found {} characters",
            text.chars().count()
        ));
    }
    let mut key = [0u8; 32];
    for (i, group) in text.as_bytes().chunks(5).enumerate() {
        let mut n: u64 = 0;
        for &c in group {
            let Some(d) = Z85.iter().position(|&z| z == c) else {
                return Err(format!(
                    "expected a key in Z85, found the character {:?}",
                    c as char
                ));
            };
            n = n * 85 + d as u64;
        }
        let n = u32::try_from(n)
            .map_err(|_| "expected a key in Z85, found a group out of range".to_string())?;
        key[i * 4..i * 4 + 4].copy_from_slice(&n.to_be_bytes());
    }
    Ok(key)
}

const Z85: &[u8; 85] =
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/// The lines that are not blank or comments, trimmed.
fn values(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|e| read_error(path, e))
}

fn read_error(path: &Path, error: io::Error) -> KeyError {
    KeyError::Read {
        path: path.to_owned(),
        error,
    }
}

fn format_error(path: &Path, reason: String) -> KeyError {
    KeyError::Format {
        path: path.to_owned(),
        reason,
    }
}

/// Creates `path` (never replacing a file) with exactly `mode`, whatever
/// the umask, and `text` in it.
fn create(path: &Path, mode: u32, text: &str) -> Result<(), KeyError> {
    let write_error = |error| KeyError::Write {
        path: path.to_owned(),
        error,
    };
    let mut f: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_owned(),
                }
            } else {
                write_error(e)
            }
        })?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| f.write_all(text.as_bytes()))
        .and_then(|()| f.sync_all())
        .map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn z85_matches_libzmq_and_the_rfc_example() {
        // ZeroMQ RFC 32's test vector, as a 4-byte prefix of a key.
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&[0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B]);
        assert!(z85(&key).starts_with("HelloWorld"));
        for seed in 0..50u8 {
            let key: Key = std::array::from_fn(|i| {
                (i as u8)
                    .wrapping_mul(37)
                    .wrapping_add(seed.wrapping_mul(101))
            });
            let text = z85(&key);
            assert_eq!(text, zmq::z85_encode(&key).unwrap());
            assert_eq!(decode(&text), Ok(key));
        }
        assert!(decode("short").unwrap_err().contains("40 characters"));
        let bad = format!("{}\"", "0".repeat(39));
        assert!(decode(&bad).unwrap_err().contains("'\"'"));
        assert!(decode(&"#".repeat(40))
            .unwrap_err()
            .contains("out of range"));
    }

    #[test]
    fn secret_and_public_files_read_back_and_are_not_mistaken_for_each_other() {
        let pair = KeyPair {
            public: [7; 32],
            secret: [9; 32],
        };
        assert_eq!(KeyPair::parse(&pair.secret_file_text()), Ok(pair.clone()));
        assert_eq!(parse_public_key(&pair.public_file_text()), Ok([7; 32]));
        let e = parse_public_key(&pair.secret_file_text()).unwrap_err();
        assert!(e.contains("secret key file"), "{e}");
        let e = KeyPair::parse(&pair.public_file_text()).unwrap_err();
        assert!(e.contains("public key file"), "{e}");
        assert!(!format!("{pair:?}").contains(&z85(&[9; 32])));
        let comments = format!("\n# a note\n\n  {}  \n", z85(&[7; 32]));
        assert_eq!(parse_public_key(&comments), Ok([7; 32]));
        assert!(parse_public_key("# nothing\n").is_err());
        let two = format!("{0}\n{0}\n", z85(&[7; 32]));
        assert!(parse_public_key(&two)
            .unwrap_err()
            .contains("one public key"));
    }
}
