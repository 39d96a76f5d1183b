//! Time bounds as engineers type them: `15m`, `2h`, `7d` ago, or RFC 3339.

use chrono::{DateTime, Duration, Utc};

/// `now - N<unit>` for `s`, `m`, `h`, `d`, `w`; or an RFC 3339 time
/// (`2026-11-22T10:00:00Z`, `2026-11-22T10:00:00.5+01:00`); or a date
/// (`2026-11-22`, midnight UTC). A span reaching before the earliest time
/// chrono holds (about 262,000 years ago) is an error, not a panic.
pub fn parse_bound(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    if span_shaped(t).is_some() {
        return parse_span(t)
            .and_then(|d| now.checked_sub_signed(d))
            .ok_or_else(|| format!("{text:?} reaches further back than a time can be"));
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

/// `90s`, `15m`, `2h`, `7d`, `1w`, `500ms`; `None` for anything else, and
/// for a number too large for a span (`99999999999d`), never a panic.
pub fn parse_span(t: &str) -> Option<Duration> {
    let (num, unit) = span_shaped(t)?;
    let n: i64 = num.parse().ok()?;
    match unit {
        "ms" => Duration::try_milliseconds(n),
        "s" => Duration::try_seconds(n),
        "m" => Duration::try_minutes(n),
        "h" => Duration::try_hours(n),
        "d" => Duration::try_days(n),
        "w" => Duration::try_weeks(n),
        _ => None,
    }
}

/// Digits, then a unit: the number and the unit.
fn span_shaped(t: &str) -> Option<(&str, &str)> {
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = t.split_at(split);
    (!num.is_empty() && matches!(unit, "ms" | "s" | "m" | "h" | "d" | "w")).then_some((num, unit))
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

    /// Regression: `99999999d` panicked the search API (`now - d` overflowed)
    /// and larger numbers panicked in `Duration::days`.
    #[test]
    fn absurd_spans_are_refused_not_panics() {
        let now = Utc::now();
        for text in [
            "99999999d",
            "99999999999d",
            "9223372036854775807ms",
            "9223372036854775807w",
            "99999999999999999999999d",
            "106751991167w",
        ] {
            let e = parse_bound(text, now).unwrap_err();
            assert!(e.contains(text), "{text}: {e}");
        }
        assert_eq!(parse_span("9223372036854775807w"), None);
        assert!(parse_bound("100000d", now).is_ok());
    }
}
