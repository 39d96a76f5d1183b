//! The `streams:` block: the endpoint clients subscribe to and who may
//! (a CIDR allowlist, PLAIN users or CURVE keys, as for the session
//! socket); and the file checks the HTTP and upstream blocks share (TLS
//! files, CURVE key files, PLAIN logins).

use std::path::{Path, PathBuf};

use crate::error::Invalid;
use crate::hub::{CurveClientFiles, CurveServerFiles, PlainLogin, StreamsGuard, TlsFiles};
use crate::model::{Secret, DEFAULT_STREAMS_ENDPOINT};
use crate::raw::{RawCurveClient, RawCurveServer, RawPlainLogin, RawStreams, RawTls};
use crate::sessions::{is_local_endpoint, Cidr, Credentials};
use crate::validate::auth::env_secret;
use crate::values::{check_endpoint, resolve, Environment};

/// The `streams:` block, validated.
#[derive(Debug)]
pub struct Streams {
    pub endpoint: String,
    /// Where other collectors federate (`streams.federation`), if open.
    pub federation: Option<String>,
    pub guard: StreamsGuard,
}

/// `streams.endpoint` (default [`DEFAULT_STREAMS_ENDPOINT`]),
/// `streams.federation` (off by default) and their guard.
pub fn validate(
    base: &Path,
    raw: Option<RawStreams>,
    env: Environment,
) -> Result<Streams, Invalid> {
    let Some(raw) = raw else {
        return Ok(Streams {
            endpoint: DEFAULT_STREAMS_ENDPOINT.to_owned(),
            federation: None,
            guard: StreamsGuard::default(),
        });
    };
    let endpoint = raw
        .endpoint
        .unwrap_or_else(|| DEFAULT_STREAMS_ENDPOINT.to_owned());
    check_endpoint(&endpoint).map_err(|m| Invalid::at(".endpoint", m))?;
    if let Some(f) = &raw.federation {
        check_endpoint(f).map_err(|m| Invalid::at(".federation", m))?;
        if *f == endpoint {
            return Err(Invalid::at(
                ".federation",
                format!(
                    "{f} is streams.endpoint already: the federation endpoint needs one of its own"
                ),
            ));
        }
    }
    let allow = cidrs(raw.allow.unwrap_or_default())?;
    let (credentials_file, curve) = login(base, raw.credentials_file, raw.curve, env)?;
    let guard = StreamsGuard {
        allow,
        credentials_file,
        curve,
    };
    let open = [
        ("endpoint", Some(&endpoint)),
        ("federation", raw.federation.as_ref()),
    ]
    .into_iter()
    .find_map(|(key, e)| e.filter(|e| !is_local_endpoint(e)).map(|e| (key, e)));
    if let Some((key, open)) = open {
        let why = format!(
            "required because {key} {open} is reachable from other machines (not loopback or ipc)"
        );
        if guard.allow.is_empty() {
            return Err(Invalid::at(
                ".allow",
                format!("{why}: a CIDR allowlist, e.g. [10.0.0.0/8]"),
            ));
        }
        if guard.credentials_file.is_none() && guard.curve.is_none() {
            return Err(Invalid::at(
                ".credentials_file",
                format!(
                    "{why}: a file of PLAIN user:password lines, or curve: {{secret_key_file, authorized_keys_dir}}"
                ),
            ));
        }
    }
    Ok(Streams {
        endpoint,
        federation: raw.federation,
        guard,
    })
}

/// A server socket's login: a PLAIN `credentials_file` or `curve` keys
/// (one, or neither), each checked when checking the environment.
pub(crate) fn login(
    base: &Path,
    credentials_file: Option<String>,
    curve: Option<RawCurveServer>,
    env: Environment,
) -> Result<(Option<PathBuf>, Option<CurveServerFiles>), Invalid> {
    if credentials_file.is_some() && curve.is_some() {
        return Err(Invalid::at(
            ".curve",
            "expected either credentials_file (PLAIN) or curve, not both: a ZeroMQ socket \
             takes one login mechanism",
        ));
    }
    let credentials_file = credentials_file.map(|f| resolve(base, &f));
    if let (Environment::Check, Some(path)) = (env, &credentials_file) {
        Credentials::load(path).map_err(|m| Invalid::at(".credentials_file", m))?;
    }
    let curve = curve
        .map(|c| curve_server(base, c, env))
        .transpose()
        .map_err(|e| e.under(".curve"))?;
    Ok((credentials_file, curve))
}

/// A list of CIDRs, each error keyed by its position (`.allow[1]`).
pub(crate) fn cidrs(raw: Vec<String>) -> Result<Vec<Cidr>, Invalid> {
    raw.iter()
        .enumerate()
        .map(|(i, c)| {
            c.parse::<Cidr>()
                .map_err(|m| Invalid::at(format!(".allow[{i}]"), m))
        })
        .collect()
}

pub(crate) fn curve_server(
    base: &Path,
    raw: RawCurveServer,
    env: Environment,
) -> Result<CurveServerFiles, Invalid> {
    let secret_key_file = readable_file(base, &raw.secret_key_file, env)
        .map_err(|m| Invalid::at(".secret_key_file", m))?;
    let authorized_keys_dir = resolve(base, &raw.authorized_keys_dir);
    if env == Environment::Check && !authorized_keys_dir.is_dir() {
        return Err(Invalid::at(
            ".authorized_keys_dir",
            format!(
                "expected a folder of client public keys (rill keygen), {} is none",
                authorized_keys_dir.display()
            ),
        ));
    }
    Ok(CurveServerFiles {
        secret_key_file,
        authorized_keys_dir,
    })
}

/// An upstream's CURVE client keys.
pub(crate) fn curve_client(
    base: &Path,
    raw: RawCurveClient,
    env: Environment,
) -> Result<CurveClientFiles, Invalid> {
    Ok(CurveClientFiles {
        server_key_file: readable_file(base, &raw.server_key_file, env)
            .map_err(|m| Invalid::at(".server_key_file", m))?,
        secret_key_file: readable_file(base, &raw.secret_key_file, env)
            .map_err(|m| Invalid::at(".secret_key_file", m))?,
    })
}

/// A PLAIN login: a user and exactly one password source.
pub(crate) fn plain_login(
    base: &Path,
    raw: RawPlainLogin,
    env: Environment,
) -> Result<PlainLogin, Invalid> {
    if raw.user.is_empty() || raw.user.contains(':') {
        return Err(Invalid::at(
            ".user",
            "expected a user name without ':' (not empty)",
        ));
    }
    let password = match (raw.password_env, raw.password_file) {
        (Some(name), None) => env_secret(".password_env", name, env)?,
        (None, Some(f)) => Secret::File(
            readable_file(base, &f, env).map_err(|m| Invalid::at(".password_file", m))?,
        ),
        _ => {
            return Err(Invalid::at(
                "",
                "expected exactly one of password_env and password_file",
            ))
        }
    };
    Ok(PlainLogin {
        user: raw.user,
        password,
    })
}

/// `tls: {cert, key}`: PEM files (their contents are checked when the
/// listener starts, which has the TLS library).
pub(crate) fn tls(base: &Path, raw: RawTls, env: Environment) -> Result<TlsFiles, Invalid> {
    Ok(TlsFiles {
        cert: readable_file(base, &raw.cert, env).map_err(|m| Invalid::at(".cert", m))?,
        key: readable_file(base, &raw.key, env).map_err(|m| Invalid::at(".key", m))?,
    })
}

/// `f` resolved against the config's folder; when checking, a readable file.
fn readable_file(base: &Path, f: &str, env: Environment) -> Result<PathBuf, String> {
    let path = resolve(base, f);
    if env == Environment::Check {
        std::fs::File::open(&path)
            .map_err(|e| format!("expected a readable file, {}: {e}", path.display()))?;
    }
    Ok(path)
}
