//! The `rules:` block: what each rule counts, when it fires and what a
//! firing runs. It comes after `queries`, `hosts` and `logs`: a rule may
//! name a saved query, and narrow itself to some hosts and logs.
//!
//! A rule's query text is not parsed here (this crate has no query parser;
//! `rill check-config` parses it, as it does saved queries).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::check_query_text;
use crate::error::Invalid;
use crate::model::{Host, Log};
use crate::raw::{HostSelection, RawAction, RawRule, RawSize};
use crate::rules::{Action, CommandAction, GroupBy, Rule, RuleKind, RuleQuery, WebhookAction};
use crate::values::{check_name, duration_between, number_between, parse_size, Environment};

/// The longest webhook URL, in bytes.
const MAX_URL_BYTES: usize = 2048;

/// What a rule may refer to: the sections validated before it.
pub struct Known<'a> {
    pub queries: &'a BTreeMap<String, String>,
    pub hosts: &'a BTreeMap<String, Host>,
    pub logs: &'a BTreeMap<String, Log>,
}

/// Every rule, keyed by name. Programs, users and secrets named by actions
/// are looked at only with [`Environment::Check`].
pub fn validate(
    raw: BTreeMap<String, RawRule>,
    known: &Known,
    env: Environment,
) -> Result<BTreeMap<String, Rule>, Invalid> {
    let mut rules = BTreeMap::new();
    for (name, r) in raw {
        check_name("rule", &name).map_err(|m| Invalid::at(format!(".{name}"), m))?;
        let rule = rule(r, known, env).map_err(|e| e.under(&format!(".{name}")))?;
        rules.insert(name, rule);
    }
    Ok(rules)
}

/// One rule; errors are keyed below `rules.<name>`.
fn rule(r: RawRule, known: &Known, env: Environment) -> Result<Rule, Invalid> {
    let kind = kind(&r)?;
    let query = query(r.query, &kind, known.queries)?;
    let logs = r.logs.map(|l| logs(l, known.logs)).transpose()?;
    let hosts = match r.hosts {
        None | Some(HostSelection::All) => None,
        Some(HostSelection::Named(names)) => Some(hosts(names, known.hosts)?),
    };
    let group_by = r
        .group_by
        .map(|g| group_by(&g, &kind))
        .transpose()
        .map_err(|m| Invalid::at(".group_by", m))?;
    let realert = r
        .realert
        .map(|t| duration_between(&t, "0s", "30d"))
        .transpose()
        .map_err(|m| Invalid::at(".realert", m))?;
    let actions = r
        .actions
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, a)| action(a, env).map_err(|e| e.under(&format!(".actions[{i}]"))))
        .collect::<Result<_, _>>()?;
    Ok(Rule {
        query,
        logs,
        hosts,
        kind,
        group_by,
        realert,
        actions,
    })
}

/// `kind` with the keys it takes: `count` and `within` for frequency and
/// flatline, `every` for heartbeat, none of them for any.
fn kind(r: &RawRule) -> Result<RuleKind, Invalid> {
    let kind = r.kind.as_str();
    if !["any", "frequency", "flatline", "heartbeat"].contains(&kind) {
        return Err(Invalid::at(
            ".kind",
            format!("expected one of any, frequency, flatline, heartbeat, got {kind:?}"),
        ));
    }
    let windowed = kind == "frequency" || kind == "flatline";
    let windows = "frequency and flatline rules";
    for (key, set, taken, takers) in [
        (".count", r.count.is_some(), windowed, windows),
        (".within", r.within.is_some(), windowed, windows),
        (
            ".every",
            r.every.is_some(),
            kind == "heartbeat",
            "heartbeat rules",
        ),
        // A heartbeat fires once per period, whatever the lines: it has
        // no groups and nothing to repeat.
        (
            ".group_by",
            r.group_by.is_some(),
            kind != "heartbeat",
            "any, frequency and flatline rules",
        ),
        (
            ".realert",
            r.realert.is_some(),
            kind != "heartbeat",
            "any, frequency and flatline rules",
        ),
    ] {
        if set && !taken {
            return Err(Invalid::at(
                key,
                format!("not for a rule of kind {kind}; only {takers} take it"),
            ));
        }
    }
    let count = r
        .count
        .map(|n| number_between(n, 1, 100_000))
        .transpose()
        .map_err(|m| Invalid::at(".count", m))?;
    let within = r
        .within
        .as_deref()
        .map(|t| duration_between(t, "1s", "30d"))
        .transpose()
        .map_err(|m| Invalid::at(".within", m))?;
    Ok(match kind {
        "any" => RuleKind::Any,
        "frequency" => match (count, within) {
            (Some(count), Some(within)) => RuleKind::Frequency { count, within },
            (c, _) => {
                return Err(Invalid::at(
                    if c.is_none() { ".count" } else { ".within" },
                    "missing: a frequency rule needs count and within",
                ))
            }
        },
        "flatline" => RuleKind::Flatline {
            count: count.unwrap_or(1),
            within: within
                .ok_or_else(|| Invalid::at(".within", "missing: a flatline rule needs within"))?,
        },
        _ => {
            let every = r
                .every
                .as_deref()
                .ok_or_else(|| Invalid::at(".every", "missing: a heartbeat rule needs every"))?;
            RuleKind::Heartbeat {
                every: duration_between(every, "1s", "30d")
                    .map_err(|m| Invalid::at(".every", m))?,
            }
        }
    })
}

/// The name of a saved query (resolved to its text), or a query's text
/// (its syntax is checked by `rill check-config`). A dashed name that is
/// no saved query is refused (quoted, it is text).
fn query(
    raw: Option<String>,
    kind: &RuleKind,
    queries: &BTreeMap<String, String>,
) -> Result<RuleQuery, Invalid> {
    let text = match raw {
        Some(text) => text,
        None if matches!(kind, RuleKind::Heartbeat { .. }) => {
            return Ok(RuleQuery {
                text: "*".to_owned(),
                saved: None,
            })
        }
        None => {
            return Err(Invalid::at(
                ".query",
                "missing: expected a query, or the name of one of `queries:`",
            ))
        }
    };
    if let Some(saved) = queries.get(&text) {
        return Ok(RuleQuery {
            text: saved.clone(),
            saved: Some(text),
        });
    }
    // A name with a dash (`server-errorz`) that is no saved query is most
    // likely a misspelt one: refused, with the way to mean the text.
    if text.contains('-') && !text.starts_with('-') && rill_proto::valid_name(&text) {
        let known: Vec<&str> = queries.keys().map(String::as_str).collect();
        return Err(Invalid::at(
            ".query",
            format!(
                "no saved query {text:?} (saved queries: {}); to search for the text itself, quote it: '\"{text}\"'",
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            ),
        ));
    }
    check_query_text(&text).map_err(|m| Invalid::at(".query", m))?;
    Ok(RuleQuery { text, saved: None })
}

/// `logs: [..]`, each one of `logs:`.
fn logs(names: Vec<String>, logs: &BTreeMap<String, Log>) -> Result<Vec<String>, Invalid> {
    if names.is_empty() {
        return Err(Invalid::at(
            ".logs",
            "expected at least one log (leave `logs` out for every log)",
        ));
    }
    if let Some((i, n)) = names
        .iter()
        .enumerate()
        .find(|(_, n)| !logs.contains_key(*n))
    {
        return Err(Invalid::at(
            format!(".logs[{i}]"),
            format!("expected a log of `logs:`, got {n:?}"),
        ));
    }
    Ok(names)
}

/// `hosts: [..]`, each one of `hosts:`.
fn hosts(names: Vec<String>, hosts: &BTreeMap<String, Host>) -> Result<Vec<String>, Invalid> {
    if names.is_empty() {
        return Err(Invalid::at(".hosts", "expected `all` or at least one host"));
    }
    if let Some((i, n)) = names
        .iter()
        .enumerate()
        .find(|(_, n)| !hosts.contains_key(*n))
    {
        return Err(Invalid::at(
            format!(".hosts[{i}]"),
            format!("expected a host of `hosts:`, got {n:?}"),
        ));
    }
    Ok(names)
}

/// `host`, `log`, `path` or `fields.<name>`; a flatline only groups by
/// host or log, as a quiet path or field value has no line to name it.
fn group_by(text: &str, kind: &RuleKind) -> Result<GroupBy, String> {
    let g = match text {
        "host" => GroupBy::Host,
        "log" => GroupBy::Log,
        "path" => GroupBy::Path,
        _ => match text.strip_prefix("fields.") {
            Some(field) if rill_proto::valid_name(field) => GroupBy::Field(field.to_owned()),
            _ => {
                return Err(format!(
                    "expected host, log, path or fields.<name>, got {text:?}"
                ))
            }
        },
    };
    if matches!(kind, RuleKind::Flatline { .. }) && !matches!(g, GroupBy::Host | GroupBy::Log) {
        return Err(format!(
            "expected host or log for a flatline rule (a quiet path or field value has no \
             line to name it), got {text:?}"
        ));
    }
    Ok(g)
}

/// One item of `actions`: a command or a webhook, with the options that go
/// with it.
fn action(mut a: RawAction, env: Environment) -> Result<Action, Invalid> {
    match (a.command.take(), a.webhook.take()) {
        (Some(_), Some(_)) => Err(Invalid::at(
            "",
            "expected one of `command` and `webhook`, not both",
        )),
        (None, None) => Err(Invalid::at(
            "",
            "expected `command` (a program and its arguments) or `webhook` (a URL)",
        )),
        (Some(argv), None) => command(argv, a, env).map(Action::Command),
        (None, Some(url)) => webhook(url, a, env).map(Action::Webhook),
    }
}

/// `command: [PATH, ARGS..]` with `timeout`, `run_as`, `memory`, `retries`.
fn command(argv: Vec<String>, a: RawAction, env: Environment) -> Result<CommandAction, Invalid> {
    if a.secret_env.is_some() {
        return Err(Invalid::at(
            ".secret_env",
            "only for a `webhook` action, not a `command`",
        ));
    }
    check_argv(&argv, env)?;
    let run_as = a
        .run_as
        .map(|u| check_user(&u, env).map(|()| u))
        .transpose()
        .map_err(|m| Invalid::at(".run_as", m))?;
    let memory = a
        .memory
        .map(|RawSize(text)| memory(&text))
        .transpose()
        .map_err(|m| Invalid::at(".memory", m))?;
    Ok(CommandAction {
        argv,
        timeout: timeout(a.timeout, "12s", "1h")?,
        run_as,
        memory,
        retries: retries(a.retries, 0)?,
    })
}

/// `webhook: URL` with `secret_env`, `timeout`, `retries`.
fn webhook(url: String, a: RawAction, env: Environment) -> Result<WebhookAction, Invalid> {
    for (key, set) in [
        (".run_as", a.run_as.is_some()),
        (".memory", a.memory.is_some()),
    ] {
        if set {
            return Err(Invalid::at(
                key,
                "only for a `command` action, not a `webhook`",
            ));
        }
    }
    check_url(&url).map_err(|m| Invalid::at(".webhook", m))?;
    let secret_env = a
        .secret_env
        .map(|name| check_secret_env(&name, env).map(|()| name))
        .transpose()
        .map_err(|m| Invalid::at(".secret_env", m))?;
    Ok(WebhookAction {
        url,
        secret_env,
        timeout: timeout(a.timeout, "5s", "10m")?,
        retries: retries(a.retries, 3)?,
    })
}

/// `timeout`, 100ms up to `max`, else `default`.
fn timeout(raw: Option<String>, default: &str, max: &str) -> Result<Duration, Invalid> {
    duration_between(raw.as_deref().unwrap_or(default), "100ms", max)
        .map_err(|m| Invalid::at(".timeout", m))
}

/// `retries`, 0..100, else `default`.
fn retries(raw: Option<u64>, default: u32) -> Result<u32, Invalid> {
    match raw {
        None => Ok(default),
        Some(n) => number_between(n, 0, 100)
            .map(|n| n as u32)
            .map_err(|m| Invalid::at(".retries", m)),
    }
}

/// A program's absolute path and its arguments, run without a shell; with
/// [`Environment::Check`] the program must be an executable file here.
fn check_argv(argv: &[String], env: Environment) -> Result<(), Invalid> {
    let Some(program) = argv.first() else {
        return Err(Invalid::at(
            ".command",
            "expected the program's absolute path and its arguments, got an empty list",
        ));
    };
    if let Some(i) = argv.iter().position(|arg| arg.contains('\0')) {
        return Err(Invalid::at(
            format!(".command[{i}]"),
            "expected an argument without NUL",
        ));
    }
    if !program.starts_with('/') {
        return Err(Invalid::at(
            ".command",
            format!(
                "expected an absolute path to the program (it runs without a shell or \
                 PATH), got {program:?}"
            ),
        ));
    }
    if env == Environment::Check {
        check_executable(Path::new(program)).map_err(|m| Invalid::at(".command", m))?;
    }
    Ok(())
}

/// A regular file some execute bit is set on (following symlinks).
fn check_executable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("expected an executable file, {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "expected an executable file, {} is not a regular file",
            path.display()
        ));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!(
            "expected an executable file, {} is not executable",
            path.display()
        ));
    }
    Ok(())
}

/// A user name; with [`Environment::Check`], one of `/etc/passwd` (this
/// crate does not link libc for `getpwnam`, so users only a directory
/// service knows are not found).
fn check_user(name: &str, env: Environment) -> Result<(), String> {
    if name.is_empty() || name.contains(['\0', '\n', ':']) {
        return Err(format!(
            "expected a user name, without NUL, newline or ':', got {name:?}"
        ));
    }
    if env == Environment::Skip {
        return Ok(());
    }
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| format!("could not read /etc/passwd to look up user {name:?}: {e}"))?;
    if passwd.lines().any(|l| l.split(':').next() == Some(name)) {
        Ok(())
    } else {
        Err(format!(
            "expected a user of this machine, {name:?} is not in /etc/passwd"
        ))
    }
}

/// `memory`: a size between 16 MiB and 1 TiB.
fn memory(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text)?;
    if (16 << 20..=1 << 40).contains(&bytes) {
        Ok(bytes)
    } else {
        Err(format!("expected between 16MiB and 1TiB, got {text}"))
    }
}

/// An `http://` or `https://` URL with a host, of printable characters.
fn check_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_URL_BYTES {
        return Err(format!(
            "expected a URL of at most {MAX_URL_BYTES} bytes, got {}",
            url.len()
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "expected a URL without spaces or control characters, got {url:?}"
        ));
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let authority = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or_default());
    // After any `user:password@`; an IPv6 address is in brackets.
    let host_port = authority.map(|a| a.rsplit_once('@').map_or(a, |(_, hp)| hp));
    let ok = host_port.is_some_and(|hp| {
        let (host, port) = match hp.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((h, p)) if p.is_empty() || p.starts_with(':') => (h, p.strip_prefix(':')),
                _ => return false,
            },
            None => match hp.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hp, None),
            },
        };
        !host.is_empty() && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p != 0))
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected an http:// or https:// URL with a host, got {url:?}"
        ))
    }
}

/// The name of the environment variable holding a webhook's key; with
/// [`Environment::Check`] it must be set, and not empty (an empty HMAC key
/// signs nothing).
fn check_secret_env(name: &str, env: Environment) -> Result<(), String> {
    let valid = name
        .bytes()
        .enumerate()
        .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
    if name.is_empty() || !valid {
        return Err(format!(
            "expected an environment variable name (letters, digits and '_', not starting \
             with a digit), got {name:?}"
        ));
    }
    if env == Environment::Check && std::env::var_os(name).is_none_or(|v| v.is_empty()) {
        return Err(format!(
            "expected the environment variable {name} to be set, and not empty"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    const HEAD: &str = "hosts: {web01: {address: a, user: u, auth: {agent: true}}, db01: {address: b, user: u, auth: {agent: true}}}\nlogs: {nginx: {path: /n, hosts: all}, syslog: {path: /s, hosts: all}}\nqueries: {server-errors: 'fields.status:[500 TO 599]'}\n";

    /// The rules of `HEAD` + `rules`, or the error's key and message;
    /// nothing on this machine is looked at.
    fn load(rules: &str) -> Result<BTreeMap<String, Rule>, (String, String)> {
        let text = format!("{HEAD}rules:\n{rules}");
        Config::from_yaml_unchecked(Path::new("/etc/rill/rill.yaml"), &text)
            .map(|c| c.rules)
            .map_err(|e| (e.key, e.message))
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_full_rule_loads_with_its_saved_query_resolved_and_defaults_filled() {
        let rules = load(
            "  api-500s:
    query: server-errors
    logs: [nginx]
    hosts: [web01]
    kind: frequency
    count: 50
    within: 5m
    group_by: host
    realert: 10m
    actions:
      - command: [/bin/true, --severity, high]
        run_as: nobody
        memory: 256MB
      - webhook: https://hooks.example/rill
        secret_env: RILL_HOOK_SECRET
        retries: 5
",
        )
        .unwrap();
        let expected = Rule {
            query: RuleQuery {
                text: "fields.status:[500 TO 599]".into(),
                saved: Some("server-errors".into()),
            },
            logs: Some(vec!["nginx".into()]),
            hosts: Some(vec!["web01".into()]),
            kind: RuleKind::Frequency {
                count: 50,
                within: secs(300),
            },
            group_by: Some(GroupBy::Host),
            realert: Some(secs(600)),
            actions: vec![
                Action::Command(CommandAction {
                    argv: vec!["/bin/true".into(), "--severity".into(), "high".into()],
                    timeout: secs(12),
                    run_as: Some("nobody".into()),
                    memory: Some(256_000_000),
                    retries: 0,
                }),
                Action::Webhook(WebhookAction {
                    url: "https://hooks.example/rill".into(),
                    secret_env: Some("RILL_HOOK_SECRET".into()),
                    timeout: secs(5),
                    retries: 5,
                }),
            ],
        };
        assert_eq!(rules["api-500s"], expected);
    }

    #[test]
    fn a_short_rule_takes_every_default() {
        let rules = load(
            "  oom: {query: '\"Out of memory\"', kind: any, hosts: all}
  alive: {kind: heartbeat, every: 1h}
  quiet: {query: '*', kind: flatline, within: 10m, group_by: log}
  by-field: {query: error, kind: frequency, count: 3, within: 1m, group_by: fields.user_id}
",
        )
        .unwrap();
        let oom = &rules["oom"];
        assert_eq!(oom.query.text, "\"Out of memory\"");
        assert_eq!(oom.query.saved, None);
        assert_eq!((&oom.logs, &oom.hosts), (&None, &None));
        assert_eq!((oom.group_by.as_ref(), oom.realert), (None, None));
        assert!(oom.actions.is_empty());
        assert_eq!(rules["alive"].query.text, "*");
        assert_eq!(
            rules["alive"].kind,
            RuleKind::Heartbeat { every: secs(3600) }
        );
        assert_eq!(
            rules["quiet"].kind,
            RuleKind::Flatline {
                count: 1,
                within: secs(600)
            }
        );
        assert_eq!(rules["quiet"].realert, None, "the engine applies within");
        assert_eq!(
            rules["by-field"].group_by,
            Some(GroupBy::Field("user_id".into()))
        );
    }

    /// A dashed name that is no saved query is refused, naming the saved
    /// ones; quoted, or a plain word, it is a query of its own.
    #[test]
    fn an_unknown_saved_query_is_refused_and_quoted_text_is_not() {
        let (key, message) = load("  r: {query: server-errorz, kind: any}\n").unwrap_err();
        assert_eq!(key, "rules.r.query");
        assert!(
            message.contains("no saved query \"server-errorz\""),
            "{message}"
        );
        let rules = load("  r: {query: '\"server-errorz\"', kind: any}\n").unwrap();
        assert_eq!(rules["r"].query.text, "\"server-errorz\"");
        let rules = load("  r: {query: timeout, kind: any}\n").unwrap();
        assert_eq!(rules["r"].query.text, "timeout");
    }

    #[test]
    fn keys_a_kind_does_not_take_are_refused() {
        let err = |rules: &str| load(rules).unwrap_err();
        assert_eq!(
            err("  r: {query: x, kind: any, within: 5m}\n"),
            (
                "rules.r.within".into(),
                "not for a rule of kind any; only frequency and flatline rules take it".into()
            )
        );
        assert_eq!(
            err("  r: {kind: heartbeat, every: 1h, count: 2}\n").0,
            "rules.r.count"
        );
        assert_eq!(
            err("  r: {query: x, kind: flatline, within: 5m, every: 1h}\n").0,
            "rules.r.every"
        );
        assert_eq!(
            err("  r: {query: x, kind: frequency, count: 5}\n"),
            (
                "rules.r.within".into(),
                "missing: a frequency rule needs count and within".into()
            )
        );
        assert_eq!(err("  r: {query: x, kind: flatline}\n").0, "rules.r.within");
        assert_eq!(err("  r: {kind: heartbeat}\n").0, "rules.r.every");
        assert_eq!(
            err("  r: {kind: heartbeat, every: 1h, group_by: host}\n").0,
            "rules.r.group_by"
        );
        assert_eq!(
            err("  r: {kind: heartbeat, every: 1h, realert: 1h}\n").0,
            "rules.r.realert"
        );
        assert_eq!(err("  r: {kind: any}\n").0, "rules.r.query");
        assert_eq!(
            err("  r: {query: x, kind: frequency, count: 0, within: 5m}\n").1,
            "expected between 1 and 100000, got 0"
        );
        assert_eq!(
            err("  r: {query: x, kind: any, group_by: 'fields.'}\n").0,
            "rules.r.group_by"
        );
        assert_eq!(
            err("  r: {query: x, kind: any, realert: 31d}\n").1,
            "expected between 0s and 30d, got 31d"
        );
        assert_eq!(
            err("  r: {query: x, kind: any, logs: []}\n").0,
            "rules.r.logs"
        );
        assert_eq!(
            err("  r: {query: x, kind: any, hosts: [web01, web02]}\n"),
            (
                "rules.r.hosts[1]".into(),
                "expected a host of `hosts:`, got \"web02\"".into()
            )
        );
        assert_eq!(err("  'bad name': {kind: any}\n").0, "rules.bad name");
    }

    #[test]
    fn actions_take_their_own_options_only() {
        let err = |action: &str| {
            load(&format!(
                "  r:\n    kind: any\n    query: x\n    actions: [{action}]\n"
            ))
            .unwrap_err()
        };
        assert_eq!(
            err("{}"),
            (
                "rules.r.actions[0]".into(),
                "expected `command` (a program and its arguments) or `webhook` (a URL)".into()
            )
        );
        let (key, message) = err("{command: [/bin/true], shell: true}");
        assert_eq!(key, "rules.r.actions[0]");
        assert!(message.starts_with("unknown key `shell`"), "{message}");
        assert_eq!(
            err("{webhook: 'http://h', run_as: nobody}").0,
            "rules.r.actions[0].run_as"
        );
        assert_eq!(
            err("{command: [/bin/true], secret_env: K}").0,
            "rules.r.actions[0].secret_env"
        );
        assert_eq!(err("{command: []}").0, "rules.r.actions[0].command");
        assert_eq!(
            err("{command: [/bin/true, \"a\\0b\"]}").0,
            "rules.r.actions[0].command[1]"
        );
        assert_eq!(
            err("{command: [/bin/true], run_as: 'a:b'}").0,
            "rules.r.actions[0].run_as"
        );
        assert_eq!(
            err("{command: [/bin/true], memory: 1048576}").1,
            "expected between 16MiB and 1TiB, got 1048576"
        );
        assert_eq!(
            err("{command: [/bin/true], memory: 2TiB}").1,
            "expected between 16MiB and 1TiB, got 2TiB"
        );
        assert_eq!(
            err("{command: [/bin/true], timeout: 2h}").1,
            "expected between 100ms and 1h, got 2h"
        );
        assert_eq!(
            err("{command: [/bin/true], retries: 101}").1,
            "expected between 0 and 100, got 101"
        );
        assert_eq!(
            err("{webhook: 'http://h', timeout: 11m}").1,
            "expected between 100ms and 10m, got 11m"
        );
        assert_eq!(
            err("{webhook: 'http://h', secret_env: 1KEY}").0,
            "rules.r.actions[0].secret_env"
        );
    }

    /// The one test here that looks at this machine: the program, the user
    /// and the secret are checked only when the environment is.
    #[test]
    fn programs_and_users_are_looked_up_only_when_checking() {
        let text = |program: &str, user: &str| {
            format!("{HEAD}rules:\n  r: {{query: x, kind: any, actions: [{{command: [{program}], run_as: {user}}}]}}\n")
        };
        let file = Path::new("/etc/rill/rill.yaml");
        let checked = Config::from_yaml(file, &text("/bin/true", "nobody")).unwrap();
        assert!(
            matches!(&checked.rules["r"].actions[0], Action::Command(c) if c.argv == ["/bin/true"])
        );
        let e = Config::from_yaml(file, &text("/etc/passwd", "nobody")).unwrap_err();
        assert_eq!(e.key, "rules.r.actions[0].command");
        assert_eq!(
            e.message,
            "expected an executable file, /etc/passwd is not executable"
        );
        let e =
            Config::from_yaml(file, &text("/bin/true", "rill-surely-no-such-user")).unwrap_err();
        assert_eq!(e.key, "rules.r.actions[0].run_as");
        let unchecked = text("/surely/not/here", "rill-surely-no-such-user");
        assert!(Config::from_yaml_unchecked(file, &unchecked).is_ok());
    }

    #[test]
    fn webhook_urls_are_http_with_a_host() {
        for ok in [
            "http://h",
            "https://hooks.example/rill?x=1",
            "http://10.0.0.1:8080/x",
            "http://[::1]:9/x",
            "https://user:pw@h/",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        let long = format!("https://h/{}", "a".repeat(MAX_URL_BYTES));
        for bad in [
            "ftp://h/x",
            "hooks.example/rill",
            "https://",
            "https:///x",
            "http://h:port/",
            "http://h:0/",
            "http://[::1/",
            "http://h/a b",
            "http://h/\u{7}",
            long.as_str(),
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secret_env_names_are_checked_before_the_environment() {
        assert_eq!(
            check_secret_env("RILL_HOOK_SECRET", Environment::Skip),
            Ok(())
        );
        assert_eq!(check_secret_env("_x1", Environment::Skip), Ok(()));
        for bad in ["", "1A", "A-B", "A B", "A=B"] {
            assert!(check_secret_env(bad, Environment::Skip).is_err(), "{bad}");
        }
        assert_eq!(
            check_secret_env("RILL_TEST_SURELY_UNSET_HOOK_SECRET", Environment::Check),
            Err(
                "expected the environment variable RILL_TEST_SURELY_UNSET_HOOK_SECRET to be \
                 set, and not empty"
                    .into()
            )
        );
    }
}
