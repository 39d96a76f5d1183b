//! The YAML as written, before validation.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use crate::duplicates;
use crate::error::ConfigError;
use crate::model::KnownHostsPolicy;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub state_dir: Option<String>,
    pub streams: Option<RawStreams>,
    pub tap: Option<RawTap>,
    pub index: Option<RawIndex>,
    pub search: Option<RawSearch>,
    pub hosts: BTreeMap<String, RawHost>,
    pub logs: BTreeMap<String, RawLog>,
    pub queries: Option<BTreeMap<String, String>>,
    pub rules: Option<BTreeMap<String, RawRule>>,
    pub collector: Option<String>,
    pub ingest: Option<RawIngest>,
    pub upstreams: Option<BTreeMap<String, RawUpstream>>,
    pub cluster: Option<RawCluster>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub etcd: Option<Vec<String>>,
    pub name: Option<String>,
    pub member: Option<String>,
    pub advertise: Option<RawAdvertise>,
    pub lease_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdvertise {
    pub streams: Option<String>,
    pub search: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStreams {
    pub endpoint: Option<String>,
    pub federation: Option<String>,
    pub allow: Option<Vec<String>>,
    pub credentials_file: Option<String>,
    pub curve: Option<RawCurveServer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCurveServer {
    pub secret_key_file: String,
    pub authorized_keys_dir: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCurveClient {
    pub server_key_file: String,
    pub secret_key_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlainLogin {
    pub user: String,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIngest {
    pub listen: String,
    pub allow: Option<Vec<String>>,
    pub tokens_file: Option<String>,
    pub max_body: Option<RawSize>,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub endpoint: String,
    pub topics: Option<Vec<String>>,
    pub index: Option<bool>,
    pub plain: Option<RawPlainLogin>,
    pub curve: Option<RawCurveClient>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTap {
    pub poll_interval: Option<String>,
    pub stream_poll: Option<String>,
    pub max_line_bytes: Option<u64>,
    pub partial_line_after: Option<String>,
    pub max_unacked_lines: Option<u64>,
    pub max_unacked_bytes: Option<u64>,
    pub hosts_per_process: Option<RawHostsPerProcess>,
}

/// `tap.hosts_per_process`: a number or `auto`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawHostsPerProcess {
    Number(i64),
    Word(String),
}

impl std::fmt::Display for RawHostsPerProcess {
    /// As an error message quotes it: a number bare, a word in quotes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawHostsPerProcess::Number(n) => write!(f, "{n}"),
            RawHostsPerProcess::Word(w) => write!(f, "{w:?}"),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIndex {
    pub retention: Option<String>,
    pub nice: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSearch {
    pub listen: Option<String>,
    pub allow_remote: Option<bool>,
    pub tls: Option<RawTls>,
    pub tokens_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    pub address: String,
    pub port: Option<u16>,
    pub user: String,
    #[serde(deserialize_with = "auth")]
    pub auth: RawAuth,
    pub known_hosts: Option<KnownHostsPolicy>,
    pub sessions: Option<RawSessions>,
    pub sudo_password_env: Option<String>,
    pub sudo_password_file: Option<String>,
    pub jump: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub key: Option<String>,
    pub passphrase_env: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    pub agent: Option<bool>,
}

/// `auth:` as a mapping. Anything else is refused without repeating it: an
/// operator who wrote `auth: "Hunter2"` wrote a password there.
pub fn auth<'de, D: Deserializer<'de>>(d: D) -> Result<RawAuth, D::Error> {
    struct V;
    const HIDDEN: &str = "a value (not shown: it may be a secret)";
    impl<'de> Visitor<'de> for V {
        type Value = RawAuth;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(
                "a mapping with one of `key`, `password_env`, `password_file`, `agent: true`",
            )
        }
        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RawAuth, A::Error> {
            RawAuth::deserialize(de::value::MapAccessDeserializer::new(map))
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<RawAuth, E> {
            self.hidden()
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawAuth, E> {
            self.hidden()
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawAuth, E> {
            self.hidden()
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawAuth, E> {
            self.hidden()
        }
    }
    impl V {
        /// The type is wrong; the value is not repeated.
        fn hidden<E: de::Error>(&self) -> Result<RawAuth, E> {
            Err(E::invalid_type(de::Unexpected::Other(HIDDEN), self))
        }
    }
    d.deserialize_any(V)
}

/// `hosts.<name>.sessions`: the session-control socket and who may use it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSessions {
    pub endpoint: Option<String>,
    pub max: Option<u64>,
    pub pool: Option<u64>,
    pub max_request_age: Option<String>,
    pub allow: Option<Vec<String>>,
    pub credentials_file: Option<String>,
    pub curve: Option<RawCurveServer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub path: Option<String>,
    pub journal: Option<RawJournal>,
    pub exclude: Option<Vec<String>>,
    pub max_files: Option<u64>,
    pub read_from: Option<RawReadFrom>,
    pub history: Option<u64>,
    pub sudo: Option<bool>,
    pub hosts: HostSelection,
    pub parser: Option<RawParser>,
    pub multiline: Option<RawMultiline>,
}

/// `journal: {units, identifiers, priority, matches, directory}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJournal {
    pub units: Option<Vec<String>>,
    pub identifiers: Option<Vec<String>>,
    pub priority: Option<RawPriority>,
    pub matches: Option<Vec<String>>,
    pub directory: Option<String>,
}

/// A syslog priority: a number 0..7 or its name.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawPriority {
    Number(u64),
    Name(String),
}

/// `read_from: end | beginning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawReadFrom {
    End,
    Beginning,
}

/// The parser names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParserName {
    Raw,
    Syslog,
    Json,
    Combined,
    Regex,
}

/// `parser: json` or `parser: {type: json, timestamp_key: time}`.
#[derive(Debug)]
pub struct RawParser {
    pub kind: ParserName,
    pub options: RawParserOptions,
}

/// The options of the mapping form; which apply depends on `type` (checked
/// in validation, so the error can say which type takes which option).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawParserOptions {
    pub timestamp_key: Option<String>,
    pub timezone: Option<String>,
    pub pattern: Option<String>,
    pub timestamp: Option<RawRegexTimestamp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegexTimestamp {
    pub capture: String,
    pub format: String,
    pub timezone: Option<String>,
}

impl<'de> Deserialize<'de> for RawParser {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawParser;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a parser name (raw, syslog, json, combined, regex) or a mapping with `type`",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawParser, E> {
                let kind = ParserName::deserialize(de::value::StrDeserializer::<E>::new(v))?;
                Ok(RawParser {
                    kind,
                    options: RawParserOptions::default(),
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RawParser, A::Error> {
                let m = RawParserWithType::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawParser {
                    kind: m.kind,
                    options: RawParserOptions {
                        timestamp_key: m.timestamp_key,
                        timezone: m.timezone,
                        pattern: m.pattern,
                        timestamp: m.timestamp,
                    },
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParserWithType {
    #[serde(rename = "type")]
    kind: ParserName,
    timestamp_key: Option<String>,
    timezone: Option<String>,
    pattern: Option<String>,
    timestamp: Option<RawRegexTimestamp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMultiline {
    pub continues: Option<String>,
    pub starts: Option<String>,
    pub flush_after: Option<String>,
    pub max_lines: Option<u64>,
}

/// `rules.<name>`. Which keys a `kind` takes, and what the strings mean, is
/// checked in validation, so the error can name the kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub query: Option<String>,
    pub logs: Option<Vec<String>>,
    pub hosts: Option<HostSelection>,
    pub kind: String,
    pub count: Option<u64>,
    pub within: Option<String>,
    pub group_by: Option<String>,
    pub every: Option<String>,
    pub realert: Option<String>,
    pub actions: Option<Vec<RawAction>>,
}

/// One item of `rules.<name>.actions`: `command` or `webhook` with their
/// options, all in one mapping. Which options go with which is checked in
/// validation; an unknown key is refused here, keyed at the item (serde's
/// `deny_unknown_fields` would key it at the unknown key, and name only the
/// keys of one struct).
#[derive(Debug, Default)]
pub struct RawAction {
    pub command: Option<Vec<String>>,
    pub webhook: Option<String>,
    pub secret_env: Option<String>,
    pub timeout: Option<String>,
    pub run_as: Option<String>,
    /// `256MB` or a plain number of bytes, as text.
    pub memory: Option<RawSize>,
    pub retries: Option<u64>,
}

impl<'de> Deserialize<'de> for RawAction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAction;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping with `command` or `webhook`")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<RawAction, A::Error> {
                let mut a = RawAction::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "command" => a.command = Some(map.next_value()?),
                        "webhook" => a.webhook = Some(map.next_value()?),
                        "secret_env" => a.secret_env = Some(map.next_value()?),
                        "timeout" => a.timeout = Some(map.next_value()?),
                        "run_as" => a.run_as = Some(map.next_value()?),
                        "memory" => a.memory = Some(map.next_value()?),
                        "retries" => a.retries = Some(map.next_value()?),
                        other => {
                            return Err(de::Error::custom(format!(
                                "unknown key `{other}`; a command takes `command`, `timeout`, \
                                 `run_as`, `memory`, `retries`; a webhook takes `webhook`, \
                                 `secret_env`, `timeout`, `retries`"
                            )))
                        }
                    }
                }
                Ok(a)
            }
        }
        d.deserialize_map(V)
    }
}

/// A size as written: `256MB`, or a YAML number of bytes (kept as its text
/// for `values::parse_size`).
#[derive(Debug)]
pub struct RawSize(pub String);

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size like 256MB, 1GiB or 1048576 (bytes)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSize, E> {
                Ok(RawSize(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawSize, E> {
                Ok(RawSize(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawSize, E> {
                Ok(RawSize(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawSize, E> {
                Ok(RawSize(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `hosts: all` or `hosts: [web01, web02]`.
#[derive(Debug)]
pub enum HostSelection {
    All,
    Named(Vec<String>),
}

impl<'de> Deserialize<'de> for HostSelection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HostSelection;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`all` or a list of host names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HostSelection, E> {
                if v == "all" {
                    Ok(HostSelection::All)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HostSelection, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(HostSelection::Named(names))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses YAML into [`RawConfig`], turning serde's error into one that names
/// the key path.
pub fn parse(file: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    let de = serde_yaml::Deserializer::from_str(text);
    let raw = serde_path_to_error::deserialize(de).map_err(|err| {
        let key = err.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let mut message = err.into_inner().to_string();
        // serde_yaml repeats the (shorter) path at the start of its message.
        if let Some((prefix, rest)) = message.split_once(": ") {
            if !prefix.contains(' ') && key.starts_with(prefix) {
                message = rest.to_owned();
            }
        }
        ConfigError {
            file: file.to_owned(),
            key,
            message,
        }
    })?;
    // After serde: its recursion limit has bounded the nesting this walk
    // follows (yaml-rust2 recurses once per level of block nesting).
    if let Some((key, message)) = duplicates::find(text) {
        return Err(ConfigError {
            file: file.to_owned(),
            key,
            message,
        });
    }
    Ok(raw)
}
