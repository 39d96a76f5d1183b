//! Small value parsers the sections share: durations, sizes, numbers in a
//! range, endpoints, names, and paths relative to the config file. Each returns
//! the message of what was expected; the section that calls it adds the key.
//!
//! [`Environment`] says whether a section may look at this machine (key
//! files, secret files, environment variables) or only at the file.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// Whether to check what the config refers to on this machine (key files,
/// secret files, environment variables) or only the file itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Check,
    Skip,
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

/// `256MB`, `1GiB`, `512KiB`, `1048576` (bytes): a whole number of `B`, `KB`,
/// `MB`, `GB`, `TB` (powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB` (powers of
/// 1024), bytes without a unit. A size past `u64` is an error, never a panic.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let expected = || format!("expected a size like 256MB, 1GiB or 1048576 (bytes), got {text:?}");
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit: u64 = match unit.trim_start() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return Err(expected()),
    };
    if num.is_empty() {
        return Err(expected());
    }
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("{}, which is too large", expected()))
}

/// `n`, which must lie between `min` and `max` inclusive.
pub(crate) fn number_between(n: u64, min: u64, max: u64) -> Result<u64, String> {
    if (min..=max).contains(&n) {
        Ok(n)
    } else {
        Err(format!("expected between {min} and {max}, got {n}"))
    }
}

/// `tcp://HOST:PORT` or `ipc://PATH`, as the streams and sessions sockets take.
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

/// The name of a host or log (`what`), as it appears in stream topics.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), String> {
    if rill_proto::valid_name(name) {
        Ok(())
    } else {
        Err(format!(
            "expected a {what} name made of letters, digits, '.', '_' and '-'"
        ))
    }
}

/// `p` against the current folder, if relative: the config file's own path.
pub(crate) fn absolute(p: &Path) -> PathBuf {
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
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
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

    /// `retention: 99999999999999999999d` overflows `Duration::from_secs_f64`;
    /// check-config and the supervisor must report it, not panic.
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

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("256MB"), Ok(256_000_000));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2 GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        for bad in [
            "",
            "MB",
            "1.5GiB",
            "-1MB",
            "256mb",
            "256M",
            "1 GiB extra",
            "0x10",
        ] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.starts_with("expected a size like 256MB"), "{bad}: {e}");
        }
    }

    /// Overflow is checked: a size past `u64` says so instead of panicking
    /// or wrapping.
    #[test]
    fn absurd_sizes_are_errors_not_panics() {
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        for text in [
            "18446744073709551616",
            "18446744073709551615KB",
            "99999999999TiB",
        ] {
            let e = parse_size(text).unwrap_err();
            assert!(e.contains("too large"), "{text}: {e}");
        }
    }

    #[test]
    fn numbers_between_name_both_bounds() {
        assert_eq!(number_between(2, 2, 100_000), Ok(2));
        assert_eq!(
            number_between(1, 2, 100_000),
            Err("expected between 2 and 100000, got 1".into())
        );
    }

    #[test]
    fn endpoints_are_tcp_with_a_port_or_ipc_with_a_path() {
        for ok in ["tcp://127.0.0.1:7600", "tcp://*:1", "ipc:///run/x"] {
            assert_eq!(check_endpoint(ok), Ok(()), "{ok}");
        }
        for bad in ["tcp://:1", "tcp://h:port", "ipc://", "udp://h:1", "bogus"] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        assert_eq!(
            resolve(Path::new("/etc/rill"), "./keys/id"),
            PathBuf::from("/etc/rill/keys/id")
        );
        assert_eq!(
            resolve(Path::new("/etc/rill"), "/abs"),
            PathBuf::from("/abs")
        );
    }
}
