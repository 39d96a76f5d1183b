//! Time bounds as engineers type them: `15m`, `2h`, `7d` ago, or RFC 3339.

use chrono::{DateTime, Duration, Utc};

/// `now - N<unit>` for `s`, `m`, `h`, `d`, `w`; or an RFC 3339 time
/// (`2026-11-22T10:00:00Z`, `2026-11-22T10:00:00.5+01:00`); or a date
/// (`2026-11-22`, midnight UTC).
pub fn parse_bound(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    if let Some(d) = parse_span(t) {
        return Ok(now - d);
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap().and_utc());
    }
    Err(format!(
        "expected a time like 15m, 2h, 7d (ago) or RFC 3339 like 2026-11-22T10:00:00Z, got {text:?}"
    ))
}

/// `90s`, `15m`, `2h`, `7d`, `1w`, `500ms`.
pub fn parse_span(t: &str) -> Option<Duration> {
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = t.split_at(split);
    let n: i64 = num.parse().ok()?;
    Some(match unit {
        "ms" => Duration::milliseconds(n),
        "s" => Duration::seconds(n),
        "m" => Duration::minutes(n),
        "h" => Duration::hours(n),
        "d" => Duration::days(n),
        "w" => Duration::weeks(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_absolute_and_wrong() {
        let now: DateTime<Utc> = "2026-11-22T12:00:00Z".parse().unwrap();
        assert_eq!(
            parse_bound("15m", now).unwrap(),
            now - Duration::minutes(15)
        );
        assert_eq!(parse_bound("7d", now).unwrap(), now - Duration::days(7));
        assert_eq!(
            parse_bound("2026-11-22T10:00:00.25+01:00", now).unwrap(),
            "2026-11-22T09:00:00.25Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            parse_bound("2026-11-21", now).unwrap(),
            "2026-11-21T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let e = parse_bound("yesterday", now).unwrap_err();
        assert!(e.contains("expected a time like 15m"), "{e}");
        assert!(parse_bound("15 minutes", now).is_err());
        assert_eq!(parse_span("500ms"), Some(Duration::milliseconds(500)));
        assert_eq!(parse_span("m"), None);
    }
}
