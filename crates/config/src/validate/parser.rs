//! `logs.<name>.parser`: which parser, and the options its type takes.

use chrono::format::{Item, StrftimeItems};

use crate::error::Invalid;
use crate::model::{ParserSpec, RegexTimestamp};
use crate::raw::{ParserName, RawParser, RawParserOptions, RawRegexTimestamp};

/// The parser; an option its type does not take is refused, naming the
/// types that take it.
pub fn validate(p: RawParser) -> Result<ParserSpec, Invalid> {
    let o = p.options;
    options_fit(p.kind, &o)?;
    Ok(match p.kind {
        ParserName::Raw => ParserSpec::Raw,
        ParserName::Combined => ParserSpec::Combined,
        ParserName::Syslog => ParserSpec::Syslog {
            timezone: timezone(o.timezone.as_deref(), ".timezone")?,
        },
        ParserName::Json => {
            if o.timestamp_key.as_deref() == Some("") {
                return Err(Invalid::at(".timestamp_key", "expected a key name"));
            }
            ParserSpec::Json {
                timestamp_key: o.timestamp_key,
                timezone: timezone(o.timezone.as_deref(), ".timezone")?,
            }
        }
        ParserName::Regex => regex(o)?,
    })
}

/// Which options each parser type takes.
fn options_fit(kind: ParserName, o: &RawParserOptions) -> Result<(), Invalid> {
    let only = |key: &str, set: bool, types: &str| {
        if set {
            Err(Invalid::at(
                format!(".{key}"),
                format!("only allowed with type {types}"),
            ))
        } else {
            Ok(())
        }
    };
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
    Ok(())
}

/// A pattern that compiles with at least one named capture, and where the
/// time is, if given.
fn regex(o: RawParserOptions) -> Result<ParserSpec, Invalid> {
    let pattern = o.pattern.ok_or_else(|| {
        Invalid::at(
            "",
            "expected `pattern` (a regex with named captures) for type regex",
        )
    })?;
    let re = regex::Regex::new(&pattern)
        .map_err(|e| Invalid::at(".pattern", format!("expected a valid regex: {e}")))?;
    let names: Vec<&str> = re.capture_names().flatten().collect();
    if names.is_empty() {
        return Err(Invalid::at(
            ".pattern",
            "expected at least one named capture like (?P<level>\\w+)",
        ));
    }
    let timestamp = o
        .timestamp
        .map(|t| regex_timestamp(t, &names))
        .transpose()?;
    Ok(ParserSpec::Regex { pattern, timestamp })
}

/// `timestamp:` of a regex parser: a capture of the pattern (`names`), a
/// chrono format and a zone.
fn regex_timestamp(t: RawRegexTimestamp, names: &[&str]) -> Result<RegexTimestamp, Invalid> {
    if !names.contains(&t.capture.as_str()) {
        return Err(Invalid::at(
            ".timestamp.capture",
            format!(
                "unknown capture {:?}; expected one of: {}",
                t.capture,
                names.join(", ")
            ),
        ));
    }
    check_time_format(&t.format).map_err(|m| Invalid::at(".timestamp.format", m))?;
    Ok(RegexTimestamp {
        capture: t.capture,
        format: t.format,
        timezone: timezone(t.timezone.as_deref(), ".timestamp.timezone")?,
    })
}

/// An IANA zone name, default UTC; `key` is where the config names it.
fn timezone(v: Option<&str>, key: &str) -> Result<chrono_tz::Tz, Invalid> {
    match v {
        None => Ok(chrono_tz::UTC),
        Some(name) => name.parse().map_err(|_| {
            Invalid::at(
                key,
                format!("expected an IANA time zone name like UTC or Europe/Berlin, got {name:?}"),
            )
        }),
    }
}

/// A chrono format string that chrono itself accepts.
fn check_time_format(f: &str) -> Result<(), String> {
    if f.is_empty() || StrftimeItems::new(f).any(|i| matches!(i, Item::Error)) {
        return Err(format!(
            "expected a chrono format like \"%d/%b/%Y:%H:%M:%S %z\", got {f:?}"
        ));
    }
    Ok(())
}
