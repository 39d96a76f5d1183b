//! File-name patterns for `logs.<name>.path` and `exclude`.
//!
//! A path pattern is split at `/`; a component is a literal, a pattern with
//! `*` (any characters but `/`), `?` (one character) and `[...]` (one of a
//! set: ranges `a-z`, negated by a leading `!` or `^`), or exactly `**`
//! (any number of components, none included). A leading dot is matched like
//! any other character: `*.log` matches `.hidden.log`.
//!
//! The server lists the files under [`PathGlob::root`] (the literal folder
//! before the first pattern) down to [`PathGlob::depth`], and the collector
//! matches what it lists: a name is never expanded by a remote shell.

use std::fmt;

/// A checked path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathGlob {
    text: String,
    root: String,
    /// The components after the root.
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// `**`
    Any,
    Name(NameGlob),
}

/// A checked pattern for one path component (a file name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameGlob {
    text: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `?`
    One,
    /// `*`
    Many,
    /// `[...]`: ranges (inclusive), negated or not.
    Set(Vec<(char, char)>, bool),
}

/// Whether `s` holds a pattern character (`*`, `?` or `[`).
pub fn has_pattern(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

impl NameGlob {
    /// Parses one component's pattern; errors say what is wrong with it.
    pub fn parse(text: &str) -> Result<NameGlob, String> {
        if text.is_empty() {
            return Err("expected a file name pattern, got an empty one".into());
        }
        if text.contains('/') {
            return Err(format!(
                "expected a file name pattern without '/', got {text:?}"
            ));
        }
        let mut tokens = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' => {
                    // `**` inside a name means the same as `*`.
                    while chars.peek() == Some(&'*') {
                        chars.next();
                    }
                    Token::Many
                }
                '?' => Token::One,
                '[' => {
                    let negated = matches!(chars.peek(), Some('!' | '^'));
                    if negated {
                        chars.next();
                    }
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let Some(lo) = chars.next() else {
                            return Err(format!("unclosed '[' in {text:?}"));
                        };
                        // `]` right after `[` (or `[!`) is a member.
                        if lo == ']' && !first {
                            break;
                        }
                        first = false;
                        let mut hi = lo;
                        let mut ahead = chars.clone();
                        if ahead.next() == Some('-') && ahead.peek().is_some_and(|&c| c != ']') {
                            chars.next();
                            hi = chars.next().unwrap_or(lo);
                            if hi < lo {
                                return Err(format!("the range {lo}-{hi} in {text:?} is empty"));
                            }
                        }
                        ranges.push((lo, hi));
                    }
                    Token::Set(ranges, negated)
                }
                c => Token::Char(c),
            });
        }
        Ok(NameGlob {
            text: text.to_owned(),
            tokens,
        })
    }

    /// Whether `name` (one component) matches.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        // Iterative matching with one backtrack point for the last `*`:
        // linear in practice, never exponential.
        let (mut t, mut n) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            match self.tokens.get(t) {
                Some(Token::Many) => {
                    star = Some((t, n));
                    t += 1;
                    continue;
                }
                Some(tok) if tok.accepts(name[n]) => {
                    t += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
            match star {
                Some((st, sn)) => {
                    t = st + 1;
                    n = sn + 1;
                    star = Some((st, sn + 1));
                }
                None => return false,
            }
        }
        self.tokens[t..].iter().all(|tok| *tok == Token::Many)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Token {
    fn accepts(&self, c: char) -> bool {
        match self {
            Token::Char(x) => *x == c,
            Token::One => true,
            Token::Many => false,
            Token::Set(ranges, negated) => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

impl PathGlob {
    /// Parses an absolute path pattern with at least one pattern
    /// component; errors say what is wrong with it.
    pub fn parse(text: &str) -> Result<PathGlob, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("expected an absolute path pattern, got {text:?}"));
        };
        if text.ends_with('/') {
            return Err(format!(
                "expected a pattern of files, got {text:?}, which ends with '/'"
            ));
        }
        let comps: Vec<&str> = rest.split('/').collect();
        if comps.iter().any(|c| c.is_empty()) {
            return Err(format!("expected no empty component ('//') in {text:?}"));
        }
        let first = comps
            .iter()
            .position(|c| has_pattern(c))
            .ok_or_else(|| format!("{text:?} holds no '*', '?' or '['"))?;
        let mut parts = Vec::new();
        for c in &comps[first..] {
            if *c == "." || *c == ".." {
                return Err(format!(
                    "expected no '.' or '..' component after a pattern in {text:?}"
                ));
            }
            if *c == "**" {
                // `**/**` is `**`.
                if parts.last() != Some(&Part::Any) {
                    parts.push(Part::Any);
                }
                continue;
            }
            if c.contains("**") {
                return Err(format!(
                    "'**' must be a whole component (like /var/log/**/app.log), got {c:?}"
                ));
            }
            parts.push(Part::Name(NameGlob::parse(c)?));
        }
        if parts.last() == Some(&Part::Any) {
            return Err(format!(
                "expected a file name pattern after the last '**' in {text:?} (like **/*.log)"
            ));
        }
        Ok(PathGlob {
            text: text.to_owned(),
            root: format!("/{}", comps[..first].join("/")),
            parts,
        })
    }

    /// The literal folder before the first pattern component (`/` at least).
    pub fn root(&self) -> &str {
        &self.root
    }

    /// How deep below the root a match can be: `None` with `**`.
    pub fn depth(&self) -> Option<usize> {
        if self.parts.contains(&Part::Any) {
            None
        } else {
            Some(self.parts.len())
        }
    }

    /// The last component's pattern (a file name pattern: the last
    /// component is never `**`).
    pub fn file_name(&self) -> Option<&str> {
        match self.parts.last() {
            Some(Part::Name(n)) => Some(n.as_str()),
            _ => None,
        }
    }

    /// Whether the absolute `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        let rest = if self.root == "/" {
            path.strip_prefix('/')
        } else {
            path.strip_prefix(self.root.as_str())
                .and_then(|r| r.strip_prefix('/'))
        };
        let Some(rest) = rest else { return false };
        let comps: Vec<&str> = rest.split('/').collect();
        if comps.iter().any(|c| c.is_empty()) {
            return false;
        }
        match_parts(&self.parts, &comps)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// `parts` against `comps`, `**` taking none or more components.
fn match_parts(parts: &[Part], comps: &[&str]) -> bool {
    match parts.split_first() {
        None => comps.is_empty(),
        Some((Part::Any, rest)) => (0..=comps.len()).any(|k| match_parts(rest, &comps[k..])),
        Some((Part::Name(g), rest)) => {
            comps.first().is_some_and(|c| g.matches(c)) && match_parts(rest, &comps[1..])
        }
    }
}

impl fmt::Display for PathGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> PathGlob {
        PathGlob::parse(s).unwrap()
    }

    #[test]
    fn names_match_stars_question_marks_and_sets() {
        let n = |p: &str| NameGlob::parse(p).unwrap();
        assert!(n("*.log").matches("api.log"));
        assert!(n("*.log").matches(".log"));
        assert!(!n("*.log").matches("api.log.1"));
        assert!(n("*.log*").matches("api.log.1"));
        assert!(n("app-?.log").matches("app-1.log"));
        assert!(!n("app-?.log").matches("app-10.log"));
        assert!(n("app-[0-9].log").matches("app-7.log"));
        assert!(!n("app-[!0-9].log").matches("app-7.log"));
        assert!(n("app-[^0-9].log").matches("app-x.log"));
        assert!(n("[]x]").matches("]"));
        assert!(n("a*b*c").matches("aXXbYYc"));
        assert!(!n("a*b*c").matches("aXXbYY"));
        assert!(n("debug-*.log").matches("debug-.log"));
        assert!(n("caf\u{e9}*").matches("caf\u{e9} 😀.log"));
    }

    #[test]
    fn a_long_name_against_many_stars_is_quick() {
        let n = NameGlob::parse("*a*a*a*a*a*a*a*a*b").unwrap();
        let name = "a".repeat(10_000);
        assert!(!n.matches(&name));
    }

    #[test]
    fn paths_have_a_root_and_a_depth() {
        let p = g("/var/log/nginx/*.log");
        assert_eq!(p.root(), "/var/log/nginx");
        assert_eq!(p.depth(), Some(1));
        assert_eq!(p.file_name(), Some("*.log"));
        assert!(p.matches("/var/log/nginx/api.log"));
        assert!(!p.matches("/var/log/nginx/sub/api.log"));
        assert!(!p.matches("/var/log/nginxx/api.log"));
        let p = g("/var/log/*/access.log");
        assert_eq!(p.root(), "/var/log");
        assert_eq!(p.depth(), Some(2));
        assert!(p.matches("/var/log/a/access.log"));
        let p = g("/*.log");
        assert_eq!(p.root(), "/");
        assert!(p.matches("/x.log"));
    }

    #[test]
    fn double_star_spans_any_depth_including_none() {
        let p = g("/srv/**/*.log");
        assert_eq!(p.root(), "/srv");
        assert_eq!(p.depth(), None);
        assert!(p.matches("/srv/a.log"));
        assert!(p.matches("/srv/x/y/z/a.log"));
        assert!(!p.matches("/srv/x/a.txt"));
        assert!(g("/srv/**/**/app/*.log").matches("/srv/app/1.log"));
    }

    #[test]
    fn bad_patterns_are_refused_with_the_reason() {
        for (bad, says) in [
            ("var/*.log", "absolute"),
            ("", "absolute"),
            ("/var/log/", "ends with '/'"),
            ("/var//*.log", "empty component"),
            ("/var/log/app.log", "no '*'"),
            ("/var/**x/a.log", "whole component"),
            ("/var/log/**", "after the last '**'"),
            ("/var/*/../a.log", "'..'"),
            ("/var/log/[ab.log", "unclosed"),
            ("/var/log/[z-a].log", "empty"),
        ] {
            let e = PathGlob::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
