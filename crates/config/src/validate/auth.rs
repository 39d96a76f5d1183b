//! `hosts.<name>.auth`: exactly one way to log in, with its secrets present
//! now, so a missing one fails at load time rather than at the first
//! connection.

use std::path::Path;

use crate::error::Invalid;
use crate::model::{Auth, Secret};
use crate::raw::RawAuth;
use crate::values::{resolve, Environment};

/// The method chosen; key and secret files resolve against `base`, the
/// config file's folder, and are looked at only with [`Environment::Check`].
pub fn validate(base: &Path, a: RawAuth, env: Environment) -> Result<Auth, Invalid> {
    exactly_one_method(&a)?;
    if a.passphrase_env.is_some() && a.key.is_none() {
        return Err(Invalid::at(
            ".passphrase_env",
            "only allowed together with `key`",
        ));
    }
    if let Some(key) = a.key {
        let path = resolve(base, &key);
        if env == Environment::Check && !path.is_file() {
            return Err(Invalid::at(
                ".key",
                format!(
                    "expected a private key file, {} does not exist",
                    path.display()
                ),
            ));
        }
        let passphrase = a
            .passphrase_env
            .map(|n| env_secret(".passphrase_env", n, env))
            .transpose()?;
        return Ok(Auth::Key { path, passphrase });
    }
    if let Some(name) = a.password_env {
        return Ok(Auth::Password(env_secret(".password_env", name, env)?));
    }
    if let Some(file) = a.password_file {
        let path = resolve(base, &file);
        if let (Environment::Check, Err(e)) = (env, std::fs::File::open(&path)) {
            return Err(Invalid::at(
                ".password_file",
                format!("expected a readable file, {}: {e}", path.display()),
            ));
        }
        return Ok(Auth::Password(Secret::File(path)));
    }
    Ok(Auth::Agent)
}

/// One of `key`, `password_env`, `password_file` and `agent: true`.
fn exactly_one_method(a: &RawAuth) -> Result<(), Invalid> {
    let chosen = [
        a.key.is_some(),
        a.password_env.is_some(),
        a.password_file.is_some(),
        a.agent == Some(true),
    ];
    let methods = "one of `key`, `password_env`, `password_file`, `agent: true`";
    match chosen.iter().filter(|c| **c).count() {
        0 => Err(Invalid::at("", format!("expected {methods}"))),
        1 => Ok(()),
        _ => Err(Invalid::at(
            "",
            format!("expected exactly {methods}, found several"),
        )),
    }
}

/// A secret in the environment variable `name`, which must be set when the
/// environment is checked; `key` is where the config names it.
pub(crate) fn env_secret(key: &str, name: String, env: Environment) -> Result<Secret, Invalid> {
    if env == Environment::Check && std::env::var_os(&name).is_none() {
        return Err(Invalid::at(
            key,
            format!("environment variable {name} is not set"),
        ));
    }
    Ok(Secret::Env(name))
}
