//! Rill's one YAML file.
//!
//! Loading goes in two steps, as in quickwit's config crate:
//! 1. [`raw`]: serde structs that mirror the YAML exactly, with
//!    `deny_unknown_fields`, parsed through `serde_path_to_error` so every
//!    error knows the key path (`hosts.web01.auth`).
//! 2. [`validate`]: checks that serde cannot express (names, exactly one auth
//!    method, secrets present, logs naming known hosts) and resolves relative
//!    paths against the config file's folder, giving the [`Config`] the rest of
//!    Rill uses. [`sessions`] validates the optional `hosts.<name>.sessions`
//!    block (the session-control protocol's socket and who may use it).
//!
//! Every error is a [`ConfigError`]: file, key path, and what was expected.

mod duplicates;
mod model;
mod permissions;
mod raw;
mod sessions;
mod validate;

pub use model::{
    Auth, Config, Host, HostsPerProcess, IndexSettings, KnownHostsPolicy, Log, Multiline,
    MultilineRule, ParserSpec, RegexTimestamp, SearchSettings, Secret, SecretError, TapSettings,
    AUTO_PROCESSES,
};
pub use sessions::{is_local_endpoint, Cidr, Credentials, SessionSettings, PUBLISH_SUFFIX_LEN};
pub use validate::parse_duration;

use std::fmt;
use std::path::{Path, PathBuf};

/// The default endpoint clients subscribe to.
pub const DEFAULT_STREAMS_ENDPOINT: &str = "tcp://127.0.0.1:7600";

/// A config that could not be loaded: which file, which key, what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted key path, e.g. `hosts.web01.auth.key`; empty for the whole file.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads, parses and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::from_yaml(path, &read(path)?)
    }

    /// Like [`Config::load`] but without checking secrets, key files and
    /// environment variables: for clients (`rill tail`, `search`, `status`)
    /// that read the config to find endpoints and never log in to a host.
    pub fn load_for_client(path: &Path) -> Result<Config, ConfigError> {
        Config::from_yaml_unchecked(path, &read(path)?)
    }

    /// Parses and validates `text` as if it were the file at `path` (relative
    /// paths resolve against `path`'s folder).
    pub fn from_yaml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw = raw::parse(path, text)?;
        validate::validate(path, raw, validate::Environment::Check)
    }

    /// Like [`Config::from_yaml`] but without looking at this machine: key
    /// files, secret files and environment variables are not checked. For
    /// validating a config meant for another machine.
    pub fn from_yaml_unchecked(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw = raw::parse(path, text)?;
        validate::validate(path, raw, validate::Environment::Skip)
    }
}

/// The largest config file read: a fleet of thousands of hosts fits in a
/// few MiB.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

fn read(path: &Path) -> Result<String, ConfigError> {
    let fail = |message: String| ConfigError {
        file: path.to_owned(),
        key: String::new(),
        message,
    };
    let file =
        std::fs::File::open(path).map_err(|e| fail(format!("could not read config file: {e}")))?;
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(file, MAX_CONFIG_BYTES + 1),
        &mut text,
    )
    .map_err(|e| fail(format!("could not read config file: {e}")))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(fail(format!(
            "the file is larger than {} MiB; expected a config file",
            MAX_CONFIG_BYTES >> 20
        )));
    }
    Ok(text)
}
