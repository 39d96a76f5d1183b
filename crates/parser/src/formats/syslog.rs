//! Syslog: RFC 5424 (`<165>1 2003-10-11T22:14:15.003Z host app 42 ID47 [sd@1 a="b"] msg`)
//! and RFC 3164 / BSD (`<34>Oct 11 22:14:15 host su[42]: msg`, also without
//! `<PRI>` as in /var/log/syslog, and with an RFC 3339 stamp as rsyslog
//! writes it). Fields: `facility`, `severity`, `hostname`, `app`, `pid`,
//! `msgid`, `sd` (structured data: `{id: {param: value}}`), `message`.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};

use super::{time, FormatError, Parsed};

const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];
const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

#[derive(Debug, Clone)]
pub struct Syslog {
    /// For RFC 3164 stamps, which carry no zone.
    pub timezone: Tz,
}

impl Syslog {
    pub fn parse(&self, line: &str, read_at: DateTime<Utc>) -> Result<Parsed, FormatError> {
        let mut fields = Map::new();
        let rest = match pri(line)? {
            Some((pri, rest)) => {
                fields.insert("facility".into(), FACILITIES[(pri >> 3) as usize].into());
                fields.insert("severity".into(), SEVERITIES[(pri & 7) as usize].into());
                rest
            }
            None => line,
        };
        if let Some(rest) = rest.strip_prefix("1 ") {
            rfc5424(rest, &mut fields).map(|ts| Parsed {
                ts,
                fields,
                body: None,
            })
        } else {
            self.rfc3164(rest, read_at, &mut fields).map(|ts| Parsed {
                ts: Some(ts),
                fields,
                body: None,
            })
        }
    }

    fn rfc3164(
        &self,
        line: &str,
        read_at: DateTime<Utc>,
        fields: &mut Map<String, Value>,
    ) -> Result<DateTime<Utc>, FormatError> {
        let (ts, rest) = if line.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            // rsyslog's RFC 3339 stamp in place of the BSD one.
            let (stamp, rest) = word(line);
            (time::iso(stamp, self.timezone)?, rest)
        } else {
            let stamp = line.get(..15).ok_or_else(|| {
                FormatError::new("expected a syslog timestamp like `Nov 22 10:00:00`")
            })?;
            let ts = time::with_format(stamp, "%b %e %H:%M:%S", self.timezone, read_at).map_err(
                |_| {
                    FormatError::new(format!(
                        "expected a syslog timestamp like `Nov 22 10:00:00`, got {stamp:?}"
                    ))
                },
            )?;
            (ts, line[15..].trim_start_matches(' '))
        };
        let (hostname, rest) = word(rest);
        if hostname.is_empty() {
            return Err(FormatError::new("expected a host name after the timestamp"));
        }
        fields.insert("hostname".into(), hostname.into());
        // TAG[PID]: MSG, TAG: MSG, or just MSG.
        let tag_end = rest.find([':', '[', ' ']);
        let message = match tag_end.map(|i| (i, rest.as_bytes()[i])) {
            Some((i, b'[')) => match rest[i..].find("]:") {
                Some(close) => {
                    fields.insert("app".into(), rest[..i].into());
                    fields.insert("pid".into(), rest[i + 1..i + close].into());
                    &rest[i + close + 2..]
                }
                None => rest,
            },
            Some((i, b':')) if i > 0 => {
                fields.insert("app".into(), rest[..i].into());
                &rest[i + 1..]
            }
            _ => rest,
        };
        fields.insert("message".into(), message.trim_start().into());
        Ok(ts)
    }
}

/// `<PRI>` at the start, 0..=191.
fn pri(line: &str) -> Result<Option<(u8, &str)>, FormatError> {
    let Some(rest) = line.strip_prefix('<') else {
        return Ok(None);
    };
    let close = rest
        .find('>')
        .filter(|&i| (1..=3).contains(&i))
        .ok_or_else(|| FormatError::new("expected `<PRI>` with a number of 0 to 191"))?;
    let pri: u8 = rest[..close]
        .parse()
        .ok()
        .filter(|p| *p <= 191)
        .ok_or_else(|| FormatError::new("expected `<PRI>` with a number of 0 to 191"))?;
    Ok(Some((pri, &rest[close + 1..])))
}

fn word(s: &str) -> (&str, &str) {
    match s.find(' ') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    }
}

/// After `<PRI>1 `: TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [MSG].
fn rfc5424(
    line: &str,
    fields: &mut Map<String, Value>,
) -> Result<Option<DateTime<Utc>>, FormatError> {
    let (stamp, rest) = word(line);
    let ts = match stamp {
        "-" => None,
        s => Some(DateTime::parse_from_rfc3339(s).map_err(|_| {
            FormatError::new(format!("expected an RFC 3339 timestamp or `-`, got {s:?}"))
        })?),
    };
    let mut rest = rest;
    for name in ["hostname", "app", "pid", "msgid"] {
        let (v, r) = word(rest);
        if v.is_empty() {
            return Err(FormatError::new(format!("expected {name} (or `-`)")));
        }
        if v != "-" {
            fields.insert(name.into(), v.into());
        }
        rest = r;
    }
    let rest = if let Some(r) = rest.strip_prefix('-') {
        r
    } else if rest.starts_with('[') {
        let (sd, r) = structured_data(rest)?;
        fields.insert("sd".into(), Value::Object(sd));
        r
    } else {
        return Err(FormatError::new("expected structured data `[...]` or `-`"));
    };
    let message = rest.strip_prefix(' ').unwrap_or(rest);
    let message = message.strip_prefix('\u{feff}').unwrap_or(message);
    fields.insert("message".into(), message.into());
    Ok(ts.map(|t| t.with_timezone(&Utc)))
}

/// `[id k="v" k2="v\"2"][id2]...` -> `{id: {k: v, k2: v"2}, id2: {}}`.
fn structured_data(s: &str) -> Result<(Map<String, Value>, &str), FormatError> {
    let err = || FormatError::new("expected structured data like [id key=\"value\"]");
    let mut out = Map::new();
    let mut rest = s;
    while let Some(r) = rest.strip_prefix('[') {
        let id_end = r.find([' ', ']']).ok_or_else(err)?;
        let id = &r[..id_end];
        let mut params = Map::new();
        let mut r = &r[id_end..];
        loop {
            if let Some(after) = r.strip_prefix(']') {
                r = after;
                break;
            }
            r = r.strip_prefix(' ').ok_or_else(err)?;
            let eq = r.find("=\"").ok_or_else(err)?;
            let name = &r[..eq];
            let mut value = String::new();
            let mut chars = r[eq + 2..].char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            if !matches!(n, '"' | '\\' | ']') {
                                value.push('\\');
                            }
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = Some(eq + 2 + i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end.ok_or_else(err)?;
            params.insert(name.into(), value.into());
            r = &r[end..];
        }
        out.insert(id.into(), Value::Object(params));
        rest = r;
    }
    Ok((out, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn parse(tz: Tz, line: &str) -> Result<Parsed, FormatError> {
        Syslog { timezone: tz }.parse(line, utc("2026-11-22T12:00:00Z"))
    }

    #[test]
    fn rfc5424_with_structured_data_and_fractional_seconds() {
        let p = parse(
            chrono_tz::UTC,
            r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high \"x\""] An application event log entry..."#,
        )
        .unwrap();
        assert_eq!(p.ts, Some(utc("2003-10-11T22:14:15.003Z")));
        assert_eq!(p.fields["facility"], "local4");
        assert_eq!(p.fields["severity"], "notice");
        assert_eq!(p.fields["hostname"], "mymachine.example.com");
        assert_eq!(p.fields["app"], "evntslog");
        assert!(p.fields.get("pid").is_none(), "nil `-` is left out");
        assert_eq!(p.fields["msgid"], "ID47");
        assert_eq!(p.fields["sd"]["exampleSDID@32473"]["eventID"], "1011");
        assert_eq!(
            p.fields["sd"]["examplePriority@32473"]["class"],
            "high \"x\""
        );
        assert_eq!(p.fields["message"], "An application event log entry...");
    }

    #[test]
    fn rfc5424_with_offset_bom_and_no_structured_data() {
        let p = parse(
            chrono_tz::UTC,
            "<34>1 2026-11-22T10:00:00.123456+01:00 web01 sshd 812 - - \u{feff}Accepted publickey for deploy",
        )
        .unwrap();
        assert_eq!(p.ts, Some(utc("2026-11-22T09:00:00.123456Z")));
        assert_eq!(p.fields["pid"], "812");
        assert_eq!(p.fields["severity"], "crit");
        assert_eq!(p.fields["message"], "Accepted publickey for deploy");
    }

    #[test]
    fn rfc3164_from_the_wire_and_from_var_log_syslog() {
        let p = parse(
            chrono_tz::UTC,
            "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
        )
        .unwrap();
        assert_eq!(p.ts, Some(utc("2026-10-11T22:14:15Z")));
        assert_eq!(p.fields["app"], "su");
        assert_eq!(p.fields["facility"], "auth");
        assert_eq!(
            p.fields["message"],
            "'su root' failed for lonvick on /dev/pts/8"
        );

        // No PRI, single-digit day padded with a space, zone-less stamp read
        // in the configured zone.
        let p = parse(
            chrono_tz::Europe::Berlin,
            "Nov  2 07:05:01 web01 CRON[12345]: (root) CMD (command -v debian-sa1 > /dev/null)",
        )
        .unwrap();
        assert_eq!(p.ts, Some(utc("2026-11-02T06:05:01Z")));
        assert_eq!(p.fields["hostname"], "web01");
        assert_eq!(p.fields["app"], "CRON");
        assert_eq!(p.fields["pid"], "12345");
        assert_eq!(
            p.fields["message"],
            "(root) CMD (command -v debian-sa1 > /dev/null)"
        );
        assert!(p.fields.get("severity").is_none());
    }

    #[test]
    fn rfc3164_in_december_read_in_january_is_last_year() {
        let p = Syslog {
            timezone: chrono_tz::UTC,
        }
        .parse(
            "Dec 31 23:59:59 h kernel: [ 0.000000] Linux version 6.1",
            utc("2027-01-01T00:00:02Z"),
        )
        .unwrap();
        assert_eq!(p.ts, Some(utc("2026-12-31T23:59:59Z")));
        assert_eq!(p.fields["message"], "[ 0.000000] Linux version 6.1");
    }

    #[test]
    fn rsyslog_rfc3339_stamp_and_a_message_without_tag() {
        let p = parse(
            chrono_tz::UTC,
            "2026-11-22T10:15:00.5+00:00 db01 just a message without tag",
        )
        .unwrap();
        assert_eq!(p.ts, Some(utc("2026-11-22T10:15:00.5Z")));
        assert!(p.fields.get("app").is_none());
        assert_eq!(p.fields["message"], "just a message without tag");
    }

    #[test]
    fn broken_lines_say_what_was_expected() {
        for (line, expected) in [
            ("<999>Oct 11 22:14:15 h x: y", "expected `<PRI>`"),
            ("<34 Oct 11", "expected `<PRI>`"),
            ("Octember 11 22:14:15 h x: y", "expected a syslog timestamp"),
            ("Oct 11", "expected a syslog timestamp"),
            (
                "<34>1 yesterday h a p m - x",
                "expected an RFC 3339 timestamp",
            ),
            (
                "<34>1 2026-11-22T10:00:00Z h a p m [broken",
                "expected structured data",
            ),
            ("", "expected a syslog timestamp"),
        ] {
            let e = parse(chrono_tz::UTC, line).unwrap_err();
            assert!(e.0.contains(expected), "{line:?}: {e}");
        }
        let _ = json!(null);
    }
}
