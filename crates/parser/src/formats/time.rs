//! Timestamps as logs write them.

use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::FormatError;

/// A local time in `tz` as UTC. In a DST gap the time does not exist and is
/// an error; in a DST fold the earlier instant is taken.
pub fn local_to_utc(naive: NaiveDateTime, tz: Tz) -> Result<DateTime<Utc>, FormatError> {
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| FormatError::new(format!("{naive} does not exist in {tz}")))
}

/// RFC 3339 (`2026-11-22T10:00:00.123+01:00`), or the same without a zone
/// (`T` or a space between date and time), read in `tz`.
pub fn iso(text: &str, tz: Tz) -> Result<DateTime<Utc>, FormatError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(text, f) {
            return local_to_utc(n, tz);
        }
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f %z"] {
        if let Ok(t) = DateTime::parse_from_str(text, f) {
            return Ok(t.with_timezone(&Utc));
        }
    }
    Err(FormatError::new(format!(
        "expected an RFC 3339 timestamp, got {text:?}"
    )))
}

/// Seconds, milliseconds, microseconds or nanoseconds since the epoch, told
/// apart by magnitude (seconds up to the year 5138).
pub fn epoch(n: f64) -> Result<DateTime<Utc>, FormatError> {
    let micros = if n.abs() < 1e11 {
        n * 1e6
    } else if n.abs() < 1e14 {
        n * 1e3
    } else if n.abs() < 1e17 {
        n
    } else {
        n / 1e3
    };
    Utc.timestamp_micros(micros.round() as i64)
        .single()
        .ok_or_else(|| FormatError::new(format!("epoch {n} is out of range")))
}

/// A chrono `format` that may or may not include an offset, a year or a
/// date; what is missing comes from `tz` and `now` (the time the line was
/// read). A stamp without a year that would lie more than a day after `now`
/// is taken from the year before (a December line read in January).
pub fn with_format(
    text: &str,
    format: &str,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, FormatError> {
    if let Ok(t) = DateTime::parse_from_str(text, format) {
        return Ok(t.with_timezone(&Utc));
    }
    match NaiveDateTime::parse_from_str(text, format) {
        Ok(n) => return local_to_utc(n, tz),
        Err(e) if e.kind() != chrono::format::ParseErrorKind::NotEnough => {
            return Err(FormatError::new(format!(
                "expected a time like {format:?}, got {text:?}: {e}"
            )))
        }
        Err(_) => {}
    }
    // No year (syslog style): try this year, else last year.
    let year = now.with_timezone(&tz).year();
    let with_year = |y: i32| {
        NaiveDateTime::parse_from_str(&format!("{y} {text}"), &format!("%Y {format}"))
            .map_err(|e| {
                FormatError::new(format!(
                    "expected a time like {format:?}, got {text:?}: {e}"
                ))
            })
            .and_then(|n| local_to_utc(n, tz))
    };
    let t = with_year(year)?;
    if t > now + chrono::Duration::days(1) {
        with_year(year - 1)
    } else {
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn zone_less_stamps_are_read_in_the_configured_zone() {
        let berlin = chrono_tz::Europe::Berlin;
        assert_eq!(
            iso("2026-07-01 12:00:00.250", berlin).unwrap(),
            utc("2026-07-01T10:00:00.250Z")
        );
        assert_eq!(
            iso("2026-07-01T12:00:00.250123+02:00", berlin).unwrap(),
            utc("2026-07-01T10:00:00.250123Z")
        );
        assert_eq!(
            iso("2026-01-01T12:00:00", chrono_tz::UTC).unwrap(),
            utc("2026-01-01T12:00:00Z")
        );
        // 02:30 on the spring-forward night does not exist in Berlin.
        assert!(iso("2026-03-29 02:30:00", berlin).is_err());
        assert!(iso("yesterday", berlin).is_err());
    }

    #[test]
    fn epochs_of_every_magnitude() {
        let t = utc("2026-11-22T10:00:00.5Z");
        assert_eq!(epoch(1_795_341_600.5).unwrap(), t);
        assert_eq!(epoch(1_795_341_600_500.0).unwrap(), t);
        assert_eq!(epoch(1_795_341_600_500_000.0).unwrap(), t);
        assert_eq!(epoch(1_795_341_600_500_000_000.0).unwrap(), t);
    }

    #[test]
    fn formats_without_year_take_it_from_the_read_time() {
        let now = utc("2026-01-02T00:00:00Z");
        assert_eq!(
            with_format("Dec 31 23:59:58", "%b %d %H:%M:%S", chrono_tz::UTC, now).unwrap(),
            utc("2025-12-31T23:59:58Z")
        );
        assert_eq!(
            with_format("Jan  1 10:00:00", "%b %e %H:%M:%S", chrono_tz::UTC, now).unwrap(),
            utc("2026-01-01T10:00:00Z")
        );
        assert_eq!(
            with_format(
                "22/Nov/2026:10:00:00 +0100",
                "%d/%b/%Y:%H:%M:%S %z",
                chrono_tz::UTC,
                now
            )
            .unwrap(),
            utc("2026-11-22T09:00:00Z")
        );
        let e = with_format("22/Nov/2026", "%d/%m/%Y", chrono_tz::UTC, now).unwrap_err();
        assert!(e.0.contains("expected a time like"), "{e}");
    }
}
