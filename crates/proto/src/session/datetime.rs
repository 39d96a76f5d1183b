//! Protocol datetimes: the one format requests and replies carry, and how
//! far a request's datetime may be from the server's clock.

use chrono::{DateTime, NaiveDateTime, Utc};

/// `2002-12-25T00:00:00.000Z`: UTC, exactly three millisecond digits, `Z`.
pub const DATETIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// The example shown in error messages.
const DATETIME_EXAMPLE: &str = "2002-12-25T00:00:00.000Z";

/// Formats `t` the way requests and replies carry datetimes.
pub fn format_datetime(t: DateTime<Utc>) -> String {
    t.format(DATETIME_FORMAT).to_string()
}

/// Parses a protocol datetime; anything but `YYYY-MM-DDTHH:MM:SS.mmmZ` is an
/// error that says what was expected.
pub fn parse_datetime(text: &str) -> Result<DateTime<Utc>, String> {
    let expected = || {
        format!(
            "bad datetime {text:?}: expected UTC ISO 8601 with exactly three millisecond \
             digits and Z, e.g. {DATETIME_EXAMPLE}"
        )
    };
    // chrono alone accepts a few more shapes than the protocol allows
    // (fewer fraction digits); check the shape byte by byte first.
    let shape = b"dddd-dd-ddTdd:dd:dd.dddZ";
    let b = text.as_bytes();
    if b.len() != shape.len()
        || !b.iter().zip(shape).all(|(c, s)| match s {
            b'd' => c.is_ascii_digit(),
            _ => c == s,
        })
    {
        return Err(expected());
    }
    // chrono takes second 60 (a leap second); the protocol does not.
    if &text[17..19] > "59" {
        return Err(format!(
            "bad datetime {text:?}: seconds go from 00 to 59, e.g. {DATETIME_EXAMPLE}"
        ));
    }
    NaiveDateTime::parse_from_str(text, DATETIME_FORMAT)
        .map(|t| t.and_utc())
        .map_err(|_| expected())
}

/// Whether a request sent at `sent` may still be served at `now`: neither
/// older nor further in the future than `max_age`.
pub fn check_age(
    sent: DateTime<Utc>,
    now: DateTime<Utc>,
    max_age: std::time::Duration,
) -> Result<(), String> {
    let max = chrono::TimeDelta::from_std(max_age).unwrap_or(chrono::TimeDelta::MAX);
    let age = now - sent;
    if age > max {
        return Err(format!(
            "stale request: its datetime {} is {:.3}s old, more than max_request_age {:.3}s",
            format_datetime(sent),
            age.as_seconds_f64(),
            max_age.as_secs_f64()
        ));
    }
    if -age > max {
        return Err(format!(
            "stale request: its datetime {} is {:.3}s in the future, more than \
             max_request_age {:.3}s (is the client's clock right?)",
            format_datetime(sent),
            (-age).as_seconds_f64(),
            max_age.as_secs_f64()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_need_exactly_three_millisecond_digits_and_z() {
        let t = parse_datetime("2002-12-25T00:00:00.123Z").unwrap();
        assert_eq!(format_datetime(t), "2002-12-25T00:00:00.123Z");
        assert_eq!(
            format_datetime(parse_datetime("2024-02-29T23:59:59.000Z").unwrap()),
            "2024-02-29T23:59:59.000Z"
        );
        for bad in [
            "2002-12-25T00:00:00Z",
            "2002-12-25T00:00:00.12Z",
            "2002-12-25T00:00:00.1234Z",
            "2002-12-25T00:00:00.123",
            "2002-12-25T00:00:00.123+00:00",
            "2002-12-25 00:00:00.123Z",
            "2002-13-25T00:00:00.123Z",
            "2023-02-29T00:00:00.000Z",
            "yesterday",
            "",
        ] {
            let e = parse_datetime(bad).unwrap_err();
            assert!(e.contains("exactly three millisecond digits"), "{bad}: {e}");
        }
        // Formatting always shows three digits, even for whole seconds.
        let whole = DateTime::from_timestamp(1_000_000_000, 0).unwrap();
        assert_eq!(format_datetime(whole), "2001-09-09T01:46:40.000Z");
    }

    #[test]
    fn requests_older_or_newer_than_the_max_age_are_stale() {
        let now = parse_datetime("2024-01-01T00:00:30.000Z").unwrap();
        let max = std::time::Duration::from_secs(30);
        assert!(check_age(
            parse_datetime("2024-01-01T00:00:00.000Z").unwrap(),
            now,
            max
        )
        .is_ok());
        let old = check_age(
            parse_datetime("2023-12-31T23:59:59.999Z").unwrap(),
            now,
            max,
        );
        assert!(old.unwrap_err().contains("stale request"));
        let future = check_age(
            parse_datetime("2024-01-01T00:01:00.001Z").unwrap(),
            now,
            max,
        );
        assert!(future.unwrap_err().contains("in the future"));
    }
}
