//! From [`RawConfig`] to [`Config`]: the checks serde cannot express.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rill_proto::valid_name;

use std::time::Duration;

use crate::model::{
    Auth, Config, Host, HostsPerProcess, IndexSettings, Log, Multiline, MultilineRule, ParserSpec,
    RegexTimestamp, SearchSettings, Secret, TapSettings,
};
use crate::raw::{
    HostSelection, ParserName, RawAuth, RawConfig, RawHostsPerProcess, RawMultiline, RawParser,
};
use crate::{ConfigError, DEFAULT_STREAMS_ENDPOINT};

/// Whether to check what the config refers to on this machine (key files,
/// secret files, environment variables) or only the file itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Check,
    Skip,
}

/// Unix socket paths are limited to 107 bytes; `run/control.sock` and friends
/// are added to `state_dir`, so keep room for them.
const MAX_STATE_DIR_LEN: usize = 80;

pub fn validate(file: &Path, raw: RawConfig, env: Environment) -> Result<Config, ConfigError> {
    let file = absolute(file);
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let err = |key: &str, message: String| ConfigError {
        file: file.clone(),
        key: key.to_owned(),
        message,
    };

    let state_dir = resolve(&base, raw.state_dir.as_deref().unwrap_or("./state"));
    if state_dir.as_os_str().len() > MAX_STATE_DIR_LEN {
        return Err(err(
            "state_dir",
            format!(
                "resolves to {} ({} bytes); expected at most {MAX_STATE_DIR_LEN} bytes so \
                 its unix sockets fit the system's path limit",
                state_dir.display(),
                state_dir.as_os_str().len()
            ),
        ));
    }

    let streams_endpoint = raw
        .streams
        .and_then(|s| s.endpoint)
        .unwrap_or_else(|| DEFAULT_STREAMS_ENDPOINT.to_owned());
    check_endpoint(&streams_endpoint).map_err(|m| err("streams.endpoint", m))?;

    let mut tap = TapSettings::default();
    if let Some(t) = raw.tap {
        if let Some(v) = t.poll_interval {
            tap.poll_interval =
                duration_between(&v, "100ms", "60s").map_err(|m| err("tap.poll_interval", m))?;
        }
        if let Some(v) = t.stream_poll {
            tap.stream_poll =
                duration_between(&v, "10ms", "5s").map_err(|m| err("tap.stream_poll", m))?;
        }
        if let Some(v) = t.max_line_bytes {
            if !(1024..=64 << 20).contains(&v) {
                return Err(err(
                    "tap.max_line_bytes",
                    format!("expected between 1024 and 67108864, got {v}"),
                ));
            }
            tap.max_line_bytes = v as usize;
        }
        if let Some(v) = t.partial_line_after {
            tap.partial_line_after = duration_between(&v, "100ms", "1h")
                .map_err(|m| err("tap.partial_line_after", m))?;
        }
        if let Some(v) = t.max_unacked_lines {
            if !(100..=1_000_000).contains(&v) {
                return Err(err(
                    "tap.max_unacked_lines",
                    format!("expected between 100 and 1000000, got {v}"),
                ));
            }
            tap.max_unacked_lines = v as usize;
        }
        if let Some(v) = t.hosts_per_process {
            tap.hosts_per_process = match v {
                RawHostsPerProcess::Number(n) if (1..=256).contains(&n) => {
                    HostsPerProcess::Fixed(n as usize)
                }
                RawHostsPerProcess::Word(w) if w == "auto" => HostsPerProcess::Auto,
                other => {
                    return Err(err(
                        "tap.hosts_per_process",
                        format!("expected between 1 and 256, or auto, got {other}"),
                    ))
                }
            };
        }
    }

    let mut index = IndexSettings::default();
    let raw_index = raw.index.unwrap_or_default();
    if let Some(v) = raw_index.nice {
        if !(0..=19).contains(&v) {
            return Err(err(
                "index.nice",
                format!("expected a niceness between 0 and 19, got {v}"),
            ));
        }
        index.nice = v as i32;
    }
    if let Some(v) = raw_index.retention {
        index.retention =
            Some(duration_between(&v, "1m", MAX_RETENTION).map_err(|m| err("index.retention", m))?);
    }

    let mut search = SearchSettings::default();
    if let Some(s) = raw.search {
        if let Some(v) = s.listen {
            search.listen = listen_address(&v, s.allow_remote.unwrap_or(false))
                .map_err(|m| err("search.listen", m))?;
        }
    }

    if raw.hosts.is_empty() {
        return Err(err("hosts", "expected at least one host".into()));
    }
    let mut hosts = BTreeMap::new();
    for (name, h) in raw.hosts {
        let key = |k: &str| format!("hosts.{name}{k}");
        if !valid_name(&name) {
            return Err(err(&key(""), name_expectation("host")));
        }
        if h.address.trim().is_empty() {
            return Err(err(
                &key(".address"),
                "expected a host name or IP address".into(),
            ));
        }
        if h.port == Some(0) {
            return Err(err(
                &key(".port"),
                "expected a port between 1 and 65535".into(),
            ));
        }
        if h.user.trim().is_empty() {
            return Err(err(&key(".user"), "expected a user name".into()));
        }
        let auth = auth(&base, h.auth, env).map_err(|(k, m)| err(&key(&format!(".auth{k}")), m))?;
        let run_dir = state_dir.join("run");
        let sessions = h
            .sessions
            .map(|s| crate::sessions::validate(&base, &run_dir, &name, s, env))
            .transpose()
            .map_err(|(k, m)| err(&key(&format!(".sessions{k}")), m))?;
        hosts.insert(
            name.clone(),
            Host {
                name,
                address: h.address,
                port: h.port.unwrap_or(22),
                user: h.user,
                auth,
                known_hosts: h.known_hosts.unwrap_or_default(),
                sessions,
            },
        );
    }
    crate::sessions::check_unique(&hosts, &streams_endpoint).map_err(|(k, m)| err(&k, m))?;

    if raw.logs.is_empty() {
        return Err(err("logs", "expected at least one log".into()));
    }
    let mut logs = BTreeMap::new();
    for (name, l) in raw.logs {
        let key = |k: &str| format!("logs.{name}{k}");
        if !valid_name(&name) {
            return Err(err(&key(""), name_expectation("log")));
        }
        if !l.path.starts_with('/') {
            return Err(err(
                &key(".path"),
                format!("expected an absolute path, got {:?}", l.path),
            ));
        }
        if l.path.contains('\0') || l.path.contains('\n') {
            return Err(err(
                &key(".path"),
                "expected a path without NUL or newline".into(),
            ));
        }
        let selected = match l.hosts {
            HostSelection::All => hosts.keys().cloned().collect(),
            HostSelection::Named(names) => {
                if names.is_empty() {
                    return Err(err(
                        &key(".hosts"),
                        "expected `all` or at least one host".into(),
                    ));
                }
                for (i, h) in names.iter().enumerate() {
                    if !hosts.contains_key(h) {
                        let known: Vec<&str> = hosts.keys().map(String::as_str).collect();
                        return Err(err(
                            &key(&format!(".hosts[{i}]")),
                            format!("unknown host {h:?}; expected one of: {}", known.join(", ")),
                        ));
                    }
                }
                names
            }
        };
        let parser = match l.parser {
            None => ParserSpec::Raw,
            Some(p) => parser(p).map_err(|(k, m)| err(&key(&format!(".parser{k}")), m))?,
        };
        let multiline = l
            .multiline
            .map(multiline)
            .transpose()
            .map_err(|(k, m)| err(&key(&format!(".multiline{k}")), m))?;
        logs.insert(
            name.clone(),
            Log {
                name,
                path: l.path,
                hosts: selected,
                parser,
                multiline,
            },
        );
    }

    Ok(Config {
        file,
        state_dir,
        streams_endpoint,
        tap,
        index,
        search,
        hosts,
        logs,
    })
}

/// `off`, or `ADDRESS:PORT` on loopback unless remote access was asked for.
fn listen_address(v: &str, allow_remote: bool) -> Result<Option<std::net::SocketAddr>, String> {
    if v == "off" {
        return Ok(None);
    }
    let addr: std::net::SocketAddr = v
        .parse()
        .map_err(|_| format!("expected ADDRESS:PORT (e.g. 127.0.0.1:7680) or `off`, got {v:?}"))?;
    if !addr.ip().is_loopback() && !allow_remote {
        return Err(format!(
            "expected a loopback address (127.0.0.1 or [::1]), got {v}: the search API has \
             no authentication; set search.allow_remote: true to serve other machines"
        ));
    }
    Ok(Some(addr))
}

fn timezone(v: Option<&str>) -> Result<chrono_tz::Tz, String> {
    match v {
        None => Ok(chrono_tz::UTC),
        Some(name) => name.parse().map_err(|_| {
            format!("expected an IANA time zone name like UTC or Europe/Berlin, got {name:?}")
        }),
    }
}

/// A chrono format string that chrono itself accepts.
fn check_time_format(f: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    if f.is_empty() || StrftimeItems::new(f).any(|i| matches!(i, Item::Error)) {
        return Err(format!(
            "expected a chrono format like \"%d/%b/%Y:%H:%M:%S %z\", got {f:?}"
        ));
    }
    Ok(())
}

/// Which options each parser takes; errors are `(key suffix, message)`.
fn parser(p: RawParser) -> Result<ParserSpec, (String, String)> {
    let o = p.options;
    let only = |key: &str, set: bool, types: &str| {
        if set {
            Err((format!(".{key}"), format!("only allowed with type {types}")))
        } else {
            Ok(())
        }
    };
    let kind = p.kind;
    if kind != ParserName::Json {
        only("timestamp_key", o.timestamp_key.is_some(), "json")?;
    }
    if !matches!(kind, ParserName::Json | ParserName::Syslog) {
        only(
            "timezone",
            o.timezone.is_some(),
            "syslog or json (regex: timestamp.timezone)",
        )?;
    }
    if kind != ParserName::Regex {
        only("pattern", o.pattern.is_some(), "regex")?;
        only("timestamp", o.timestamp.is_some(), "regex")?;
    }
    let tz = |v: Option<&str>, k: &str| timezone(v).map_err(|m| (k.to_owned(), m));
    Ok(match kind {
        ParserName::Raw => ParserSpec::Raw,
        ParserName::Combined => ParserSpec::Combined,
        ParserName::Syslog => ParserSpec::Syslog {
            timezone: tz(o.timezone.as_deref(), ".timezone")?,
        },
        ParserName::Json => {
            if o.timestamp_key.as_deref() == Some("") {
                return Err((".timestamp_key".into(), "expected a key name".into()));
            }
            ParserSpec::Json {
                timestamp_key: o.timestamp_key,
                timezone: tz(o.timezone.as_deref(), ".timezone")?,
            }
        }
        ParserName::Regex => {
            let pattern = o.pattern.ok_or_else(|| {
                (
                    String::new(),
                    "expected `pattern` (a regex with named captures) for type regex".into(),
                )
            })?;
            let re = regex::Regex::new(&pattern).map_err(|e| {
                (
                    ".pattern".to_owned(),
                    format!("expected a valid regex: {e}"),
                )
            })?;
            let names: Vec<&str> = re.capture_names().flatten().collect();
            if names.is_empty() {
                return Err((
                    ".pattern".into(),
                    "expected at least one named capture like (?P<level>\\w+)".into(),
                ));
            }
            let timestamp = match o.timestamp {
                None => None,
                Some(t) => {
                    if !names.contains(&t.capture.as_str()) {
                        return Err((
                            ".timestamp.capture".into(),
                            format!(
                                "unknown capture {:?}; expected one of: {}",
                                t.capture,
                                names.join(", ")
                            ),
                        ));
                    }
                    check_time_format(&t.format).map_err(|m| (".timestamp.format".into(), m))?;
                    Some(RegexTimestamp {
                        capture: t.capture,
                        format: t.format,
                        timezone: tz(t.timezone.as_deref(), ".timestamp.timezone")?,
                    })
                }
            };
            ParserSpec::Regex { pattern, timestamp }
        }
    })
}

fn multiline(m: RawMultiline) -> Result<Multiline, (String, String)> {
    let compile = |k: &str, p: String| {
        regex::Regex::new(&p)
            .map(|_| p)
            .map_err(|e| (k.to_owned(), format!("expected a valid regex: {e}")))
    };
    let rule = match (m.continues, m.starts) {
        (Some(c), None) => MultilineRule::Continues(compile(".continues", c)?),
        (None, Some(s)) => MultilineRule::Starts(compile(".starts", s)?),
        (c, _) => {
            return Err((
                String::new(),
                format!(
                    "expected exactly one of `continues` or `starts`, found {}",
                    if c.is_some() { "both" } else { "neither" }
                ),
            ))
        }
    };
    let flush_after = match m.flush_after {
        None => Duration::from_millis(500),
        Some(v) => {
            duration_between(&v, "10ms", "60s").map_err(|e| (".flush_after".to_owned(), e))?
        }
    };
    let max_lines = match m.max_lines {
        None => 1000,
        Some(n) if (2..=100_000).contains(&n) => n as usize,
        Some(n) => {
            return Err((
                ".max_lines".into(),
                format!("expected between 2 and 100000, got {n}"),
            ))
        }
    };
    Ok(Multiline {
        rule,
        flush_after,
        max_lines,
    })
}

fn name_expectation(what: &str) -> String {
    format!("expected a {what} name made of letters, digits, '.', '_' and '-'")
}

/// Exactly one method; secrets present now, so a missing one fails at load
/// time rather than at the first connection.
fn auth(base: &Path, a: RawAuth, env: Environment) -> Result<Auth, (String, String)> {
    let chosen = [
        a.key.is_some(),
        a.password_env.is_some(),
        a.password_file.is_some(),
        a.agent == Some(true),
    ];
    let methods = "one of `key`, `password_env`, `password_file`, `agent: true`";
    match chosen.iter().filter(|c| **c).count() {
        0 => return Err((String::new(), format!("expected {methods}"))),
        1 => {}
        _ => {
            return Err((
                String::new(),
                format!("expected exactly {methods}, found several"),
            ))
        }
    }
    if a.passphrase_env.is_some() && a.key.is_none() {
        return Err((
            ".passphrase_env".into(),
            "only allowed together with `key`".into(),
        ));
    }
    let env_secret = |k: &str, name: String| {
        if env == Environment::Check && std::env::var_os(&name).is_none() {
            return Err((
                k.to_owned(),
                format!("environment variable {name} is not set"),
            ));
        }
        Ok(Secret::Env(name))
    };
    if let Some(key) = a.key {
        let path = resolve(base, &key);
        if env == Environment::Check && !path.is_file() {
            return Err((
                ".key".into(),
                format!(
                    "expected a private key file, {} does not exist",
                    path.display()
                ),
            ));
        }
        let passphrase = a
            .passphrase_env
            .map(|n| env_secret(".passphrase_env", n))
            .transpose()?;
        return Ok(Auth::Key { path, passphrase });
    }
    if let Some(name) = a.password_env {
        return Ok(Auth::Password(env_secret(".password_env", name)?));
    }
    if let Some(file) = a.password_file {
        let path = resolve(base, &file);
        if let (Environment::Check, Err(e)) = (env, std::fs::File::open(&path)) {
            return Err((
                ".password_file".into(),
                format!("expected a readable file, {}: {e}", path.display()),
            ));
        }
        return Ok(Auth::Password(Secret::File(path)));
    }
    Ok(Auth::Agent)
}

pub(crate) fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let ok = match endpoint.split_once("://") {
        Some(("tcp", rest)) => rest
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()),
        Some(("ipc", rest)) => !rest.is_empty(),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected tcp://HOST:PORT or ipc://PATH, got {endpoint:?}"
        ))
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_owned())
    }
}

/// Resolves `p` against the config file's folder and drops `.` components.
pub(crate) fn resolve(base: &Path, p: &str) -> PathBuf {
    let joined = base.join(p);
    joined
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

/// The longest `index.retention`: 100 years (the index's times are kept
/// well inside what a timestamp holds).
const MAX_RETENTION: &str = "36500d";

/// [`parse_duration`] of `text`, which must lie between `min` and `max`
/// (both written as durations, e.g. `"100ms"`, and named in the error).
pub(crate) fn duration_between(text: &str, min: &str, max: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    let bound = |b: &str| parse_duration(b).expect("a valid bound");
    if d < bound(min) || d > bound(max) {
        return Err(format!("expected between {min} and {max}, got {text}"));
    }
    Ok(d)
}

/// `500ms`, `1s`, `2.5s`, `5m`, `1h`, `30d`. A number too large for a
/// duration (`99999999999999999999d`) is an error, never a panic.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("expected a duration like 500ms, 1s, 5m, 1h or 7d, got {text:?}"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        _ => {
            return Err(format!(
                "expected a duration like 500ms, 1s, 5m, 1h or 7d, got {text:?}"
            ))
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| {
        format!("expected a duration like 500ms, 1s, 5m, 1h or 7d, got {text:?}, which is too long")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86400)));
        assert!(parse_duration("5")
            .unwrap_err()
            .contains("expected a duration"));
        assert!(parse_duration("fast").is_err());
    }

    /// Regression: `retention: 99999999999999999999d` panicked check-config
    /// and the supervisor (`Duration::from_secs_f64` overflowed).
    #[test]
    fn absurd_durations_are_errors_not_panics() {
        for text in ["99999999999999999999d", &"9".repeat(400), "1e999s"] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
        let e = parse_duration("99999999999999999999d").unwrap_err();
        assert!(e.contains("too long"), "{e}");
        let e = duration_between("200000000000000d", "100ms", "1h").unwrap_err();
        assert_eq!(e, "expected between 100ms and 1h, got 200000000000000d");
    }
}
