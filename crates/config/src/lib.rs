//! Rill's one YAML file.
//!
//! Loading goes in two steps, as in quickwit's config crate:
//! 1. `raw.rs`: serde structs that mirror the YAML exactly, with
//!    `deny_unknown_fields`, parsed through `serde_path_to_error` so every
//!    error knows the key path (`hosts.web01.auth`); `duplicates.rs` refuses
//!    a key written twice, which serde would keep silently.
//! 2. `validate/`: the checks serde cannot express (names, exactly one auth
//!    method, secrets present, logs naming known hosts), one module per
//!    section, each reporting keys below itself; relative paths resolve
//!    against the config file's folder. The result is the [`Config`] of
//!    `model.rs` (with `sessions.rs` for the session-control block) that
//!    the rest of Rill uses.
//!
//! `values.rs` holds the small parsers the sections share (durations,
//! numbers in a range, endpoints, names, paths); `permissions.rs` warns
//! about secret files others can read. Every error is a [`ConfigError`]
//! (`error.rs`): file, key path, and what was expected.
//!
//! Imports go one way: `validate/` reads `raw.rs` and builds `model.rs`,
//! `model.rs` holds `sessions.rs`' types, `raw.rs` calls `duplicates.rs`;
//! `error.rs`, `values.rs`, `sessions.rs`, `duplicates.rs` and `glob.rs`
//! (path patterns) import no other module, and no module imports `lib.rs`.

pub mod cluster;
mod duplicates;
mod error;
pub mod glob;
pub mod hub;
mod model;
mod permissions;
mod raw;
pub mod rules;
mod sessions;
mod validate;
mod values;

pub use error::ConfigError;
pub use model::{
    Auth, Config, Host, HostsPerProcess, IndexSettings, KnownHostsPolicy, Log, Multiline,
    MultilineRule, ParserSpec, ReadFrom, RegexTimestamp, SearchSettings, Secret, SecretError,
    TapSettings, AUTO_PROCESSES, DEFAULT_MAX_FILES, DEFAULT_STREAMS_ENDPOINT,
};
pub use sessions::{is_local_endpoint, Cidr, Credentials, SessionSettings, PUBLISH_SUFFIX_LEN};
pub use values::parse_duration;

use std::path::Path;

use values::Environment;

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
        validate::validate(path, raw, Environment::Check)
    }

    /// Like [`Config::from_yaml`] but without looking at this machine: key
    /// files, secret files and environment variables are not checked. For
    /// validating a config meant for another machine.
    pub fn from_yaml_unchecked(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw = raw::parse(path, text)?;
        validate::validate(path, raw, Environment::Skip)
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
