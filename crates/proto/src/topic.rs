//! Topic names and MQTT-style patterns.
//!
//! ZeroMQ filters subscriptions by byte prefix only. A [`TopicPattern`] such as
//! `line/+/nginx-access` is therefore subscribed as its longest literal prefix
//! (`line/`) and every received topic is matched locally with [`TopicPattern::matches`].

use std::fmt;

/// True when `name` may be used as a host or log name: `[A-Za-z0-9._-]+`.
/// Such names never need escaping inside a `/`-separated topic.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// A concrete topic a publisher sends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic<'a> {
    /// A raw line read from a remote file.
    Line { host: &'a str, log: &'a str },
    /// A line after parsing.
    Parsed { host: &'a str, log: &'a str },
    /// A reachability probe result.
    Ping { host: &'a str },
    /// A tap's periodic report of its connection and logs.
    Status { host: &'a str },
    /// A rule's firing (its JSON).
    Alert { rule: &'a str },
}

impl fmt::Display for Topic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Line { host, log } => write!(f, "line/{host}/{log}"),
            Topic::Parsed { host, log } => write!(f, "parsed/{host}/{log}"),
            Topic::Ping { host } => write!(f, "ping/{host}"),
            Topic::Status { host } => write!(f, "status/{host}"),
            Topic::Alert { rule } => write!(f, "alert/{rule}"),
        }
    }
}

/// Why a topic pattern was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("empty topic pattern")]
    Empty,
    #[error("'#' must be the last level of a topic pattern: {0}")]
    HashNotLast(String),
    #[error("wildcards must fill a whole level ('+' or '#' between slashes): {0}")]
    PartialWildcard(String),
}

/// An MQTT-style topic pattern: `+` matches exactly one level, a final `#`
/// matches zero or more remaining levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    levels: Vec<String>,
}

impl TopicPattern {
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        if pattern.is_empty() {
            return Err(PatternError::Empty);
        }
        let levels: Vec<String> = pattern.split('/').map(str::to_owned).collect();
        for (i, level) in levels.iter().enumerate() {
            if level == "#" && i + 1 != levels.len() {
                return Err(PatternError::HashNotLast(pattern.to_owned()));
            }
            if level.len() > 1 && (level.contains('+') || level.contains('#')) {
                return Err(PatternError::PartialWildcard(pattern.to_owned()));
            }
        }
        Ok(Self { levels })
    }

    /// The longest literal prefix, to hand to ZeroMQ's `SUBSCRIBE`.
    /// `line/web01/#` gives `line/web01/`; `line/+/x` gives `line/`; a pattern
    /// without wildcards gives itself (ZeroMQ then also delivers longer topics,
    /// which [`matches`](Self::matches) rejects).
    pub fn subscription_prefix(&self) -> String {
        let mut prefix = String::new();
        for level in &self.levels {
            if level == "+" || level == "#" {
                return prefix;
            }
            prefix.push_str(level);
            prefix.push('/');
        }
        prefix.pop();
        prefix
    }

    pub fn matches(&self, topic: &str) -> bool {
        let mut parts = topic.split('/');
        for level in &self.levels {
            if level == "#" {
                return true;
            }
            match parts.next() {
                Some(part) if level == "+" || level == part => {}
                _ => return false,
            }
        }
        parts.next().is_none()
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.levels.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_restricted_to_topic_safe_bytes() {
        assert!(valid_name("web-01.prod_a"));
        assert!(!valid_name(""));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("a b"));
        assert!(!valid_name("+"));
    }

    #[test]
    fn topics_render_as_documented() {
        let t = Topic::Line {
            host: "web01",
            log: "nginx-access",
        };
        assert_eq!(t.to_string(), "line/web01/nginx-access");
        assert_eq!(Topic::Ping { host: "h" }.to_string(), "ping/h");
    }

    #[test]
    fn plus_matches_exactly_one_level() {
        let p = TopicPattern::parse("line/+/nginx-access").unwrap();
        assert!(p.matches("line/web01/nginx-access"));
        assert!(!p.matches("line/web01/syslog"));
        assert!(!p.matches("line/nginx-access"));
        assert!(!p.matches("parsed/web01/nginx-access"));
        assert_eq!(p.subscription_prefix(), "line/");
    }

    #[test]
    fn hash_matches_the_rest() {
        let p = TopicPattern::parse("line/web01/#").unwrap();
        assert!(p.matches("line/web01/a"));
        assert!(p.matches("line/web01"));
        assert!(!p.matches("line/web011/a"));
        assert_eq!(p.subscription_prefix(), "line/web01/");
        assert!(TopicPattern::parse("#").unwrap().matches("ping/x"));
    }

    #[test]
    fn literal_pattern_does_not_match_longer_names() {
        let p = TopicPattern::parse("line/web01/app").unwrap();
        assert_eq!(p.subscription_prefix(), "line/web01/app");
        assert!(p.matches("line/web01/app"));
        assert!(!p.matches("line/web01/app2"));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        assert_eq!(TopicPattern::parse(""), Err(PatternError::Empty));
        assert!(matches!(
            TopicPattern::parse("line/#/x"),
            Err(PatternError::HashNotLast(_))
        ));
        assert!(matches!(
            TopicPattern::parse("line/web+"),
            Err(PatternError::PartialWildcard(_))
        ));
    }
}
