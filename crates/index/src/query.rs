//! The query language and its errors.
//!
//! A query is tantivy's syntax over `body`: words, `"phrases"`, `AND`, `OR`,
//! `NOT`/`-`, `+`, parentheses, and field filters: `host:web01`, `log:nginx`,
//! `path:"/var/log/nginx/api.log"`, `fields.status:500`,
//! `fields.method:POST`, `parse_error:true`. `*` (or
//! nothing) matches every event. `host`, `log`, `since` and `until` of a
//! [`SearchRequest`] are ANDed to it.
//!
//! A query that does not parse gives a [`QueryError`] with the byte position
//! and what was expected there.

use std::ops::Bound;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tantivy::query::{
    AllQuery, BooleanQuery, Occur, Query, QueryParser, QueryParserError, RangeQuery, TermQuery,
};
use tantivy::query_grammar::{Occur as GrammarOccur, UserInputAst};
use tantivy::schema::IndexRecordOption;
use tantivy::{Index, Term};

use crate::schema::Fields;

/// What to look for.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    /// The query text; `*` or empty matches every event.
    pub query: String,
    /// Only events of this host (exact).
    pub host: Option<String>,
    /// Only events of this log (exact).
    pub log: Option<String>,
    /// Only events of one of these hosts, and of one of these logs (rules'
    /// `hosts:` and `logs:`).
    pub hosts_in: Option<Vec<String>>,
    pub logs_in: Option<Vec<String>>,
    /// Only events at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only events committed in `[from, to)`: their `commit` number (the
    /// opstamp of the commit before the one that made them searchable) in
    /// that range. Rules read what was committed since they last looked.
    pub commits: Option<(u64, u64)>,
    /// At most this many hits (not used by counts and histograms).
    pub limit: usize,
    /// Oldest first instead of newest first.
    pub oldest_first: bool,
    /// When the search must stop (never, by default).
    pub deadline: crate::Deadline,
}

/// A query that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("invalid query {query:?}{}: expected {expected}", position.map(|p| format!(" at position {p}")).unwrap_or_default())]
pub struct QueryError {
    pub query: String,
    /// Byte offset in `query` where the problem is, when known.
    pub position: Option<usize>,
    /// What was expected there.
    pub expected: String,
}

impl QueryError {
    /// The query with a caret under the position, for terminals:
    /// ```text
    ///   error AND (timeout
    ///                      ^
    /// ```
    pub fn pointer(&self) -> Option<String> {
        let p = self.position?;
        let col = self.query.get(..p).map_or(p, |s| s.chars().count());
        Some(format!("  {}\n  {}^", self.query, " ".repeat(col)))
    }
}

/// The longest query text, in bytes. Engineers type a few hundred at most;
/// tantivy's parser takes memory and time that grow with the text (an 8 MB
/// query took the parser process to 17 GB).
pub const MAX_QUERY_BYTES: usize = 4096;

/// The most `(` a query may hold. Each opens a group in tantivy's grammar
/// (unless it sits in a phrase), and the grammar recurses once per level of
/// nesting: 1,000 levels overflowed a worker thread's stack and aborted
/// the parser. Counting every `(`, in phrases and escaped too, bounds the
/// nesting whatever tantivy makes of the quotes; 32 groups side by side or
/// nested is more than a person writes.
pub const MAX_GROUPS: usize = 32;

/// Refuses a query over [`MAX_QUERY_BYTES`] or with more than
/// [`MAX_GROUPS`] `(`, before any parsing.
pub fn check_limits(text: &str) -> Result<(), QueryError> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(QueryError {
            query: format!("{}...", &text[..head(text, 64)]),
            position: None,
            expected: format!(
                "a query of at most {MAX_QUERY_BYTES} bytes, got {} bytes",
                text.len()
            ),
        });
    }
    if let Some((i, _)) = text.match_indices('(').nth(MAX_GROUPS) {
        return Err(QueryError {
            query: text.to_owned(),
            position: Some(i),
            expected: format!("at most {MAX_GROUPS} groups: every `(` counts, also in a phrase"),
        });
    }
    Ok(())
}

/// Checks `text` as a search would read it, with no index on disk (a
/// saved query of the config, checked by `rill check-config`).
pub fn check_text(text: &str) -> Result<(), QueryError> {
    let (schema, fields) = crate::schema::build();
    let index = Index::create_in_ram(schema);
    let req = SearchRequest {
        query: text.to_owned(),
        ..SearchRequest::default()
    };
    build(&index, &fields, &req).map(drop)
}

/// The longest prefix of `text` of at most `n` bytes that ends on a
/// character boundary.
fn head(text: &str, n: usize) -> usize {
    (0..=n.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

/// Fields a query may name, for error messages.
const FIELDS: &str = "host, log, path, file_id, parse_error, body or fields.<name>";

/// Builds the tantivy query for `req`.
pub fn build(index: &Index, f: &Fields, req: &SearchRequest) -> Result<Box<dyn Query>, QueryError> {
    check_limits(&req.query)?;
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    let text = req.query.trim();
    if !(text.is_empty() || text == "*") {
        clauses.push((Occur::Must, parse(index, f, &req.query)?));
    }
    for (field, value) in [(f.host, &req.host), (f.log, &req.log)] {
        if let Some(v) = value {
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(field, v),
                    IndexRecordOption::Basic,
                )),
            ));
        }
    }
    for (field, values) in [(f.host, &req.hosts_in), (f.log, &req.logs_in)] {
        if let Some(values) = values {
            let any: Vec<(Occur, Box<dyn Query>)> = values
                .iter()
                .map(|v| -> (Occur, Box<dyn Query>) {
                    (
                        Occur::Should,
                        Box::new(TermQuery::new(
                            Term::from_field_text(field, v),
                            IndexRecordOption::Basic,
                        )),
                    )
                })
                .collect();
            clauses.push((Occur::Must, Box::new(BooleanQuery::new(any))));
        }
    }
    if req.since.is_some() || req.until.is_some() {
        let t = |d: DateTime<Utc>| Term::from_field_date(f.ts, crate::tantivy_time(d));
        clauses.push((
            Occur::Must,
            Box::new(RangeQuery::new(
                req.since
                    .map_or(Bound::Unbounded, |s| Bound::Included(t(s))),
                req.until
                    .map_or(Bound::Unbounded, |u| Bound::Excluded(t(u))),
            )),
        ));
    }
    if let Some((from, to)) = req.commits {
        let Some(field) = f.commit else {
            return Err(QueryError {
                query: req.query.clone(),
                position: None,
                expected: "an index with commit numbers (this one was made by an older rill)"
                    .into(),
            });
        };
        clauses.push((
            Occur::Must,
            Box::new(RangeQuery::new(
                Bound::Included(Term::from_field_u64(field, from)),
                Bound::Excluded(Term::from_field_u64(field, to)),
            )),
        ));
    }
    Ok(match clauses.len() {
        0 => Box::new(AllQuery),
        1 => clauses.pop().unwrap().1,
        _ => Box::new(BooleanQuery::new(clauses)),
    })
}

/// Parses the user's query text; `AND` binds as engineers expect from
/// grep-like tools: terms without operators must all match.
/// [`build`] checked the text's limits before.
fn parse(index: &Index, f: &Fields, text: &str) -> Result<Box<dyn Query>, QueryError> {
    let mut parser = QueryParser::for_index(index, vec![f.body]);
    parser.set_conjunction_by_default();
    let err = |position, expected: String| QueryError {
        query: text.to_owned(),
        position,
        expected,
    };
    // The lenient grammar says where a query goes wrong; without errors
    // its tree is the query. (The strict grammar panics on `- *`.)
    let (ast, errors) = tantivy::query_grammar::parse_query_lenient(text);
    if let Some(e) = errors.first() {
        return Err(err(Some(e.pos.min(text.len())), explain(&e.message)));
    }
    parser.build_query_from_user_input_ast(hoist_negations(ast)).map_err(|e| match e {
        QueryParserError::FieldDoesNotExist(name) => err(
            text.find(&format!("{name}:")),
            format!("a known field instead of `{name}`: {FIELDS}"),
        ),
        QueryParserError::ExpectedBool(_) => err(
            text.find("parse_error:").map(|p| p + "parse_error:".len()),
            "true or false after `parse_error:`".into(),
        ),
        QueryParserError::AllButQueryForbidden => err(
            Some(0),
            "at least one term that must match (a query of only -exclusions matches nothing; use `* -word`)".into(),
        ),
        QueryParserError::SyntaxError(_) => err(None, "a term, phrase, field:value or (group)".into()),
        other => err(None, other.to_string()),
    })
}

/// `a AND NOT b` parses as `+a +(-b)`, and a group of only exclusions
/// matches nothing, so the whole query would match nothing. Lift such
/// groups into their parent: `+a -b`.
fn hoist_negations(ast: UserInputAst) -> UserInputAst {
    match ast {
        UserInputAst::Clause(children) => {
            let mut out = Vec::with_capacity(children.len());
            for (occur, child) in children {
                match hoist_negations(child) {
                    UserInputAst::Clause(inner)
                        if occur == Some(GrammarOccur::Must)
                            && !inner.is_empty()
                            && inner.iter().all(|(o, _)| *o == Some(GrammarOccur::MustNot)) =>
                    {
                        out.extend(inner)
                    }
                    child => out.push((occur, child)),
                }
            }
            UserInputAst::Clause(out)
        }
        UserInputAst::Boost(inner, b) => UserInputAst::Boost(Box::new(hoist_negations(*inner)), b),
        leaf => leaf,
    }
}

/// tantivy's grammar messages, in the operator's words.
fn explain(message: &str) -> String {
    let m = match message {
        "expected ')'" => "`)` to close the group",
        "missing ]" | "missing range delimiter" => "`]` or `}` to close the range",
        "Found unexpected boolean operator before term" => "a term before the operator",
        "unparsed end of query" => {
            "a term, phrase, operator or `)` here (unbalanced parenthesis or a dangling operator?)"
        }
        "parsed possible invalid field as term" => "a value after `field:`",
        "missing space" => "a space between terms",
        m if m.starts_with("parsed keyword NOT") => {
            "a term after NOT (quote \"NOT\" to search for the word)"
        }
        m if m.starts_with("missing delimiter") => "a closing `\"` for the phrase",
        m => return m.to_owned(),
    };
    m.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: 100 nested parentheses hung the search API (tantivy's
    /// strict grammar doubles its time with each level), and 1,000 behind a
    /// `'"'` (a quote inside a single-quoted phrase) overflowed the stack.
    #[test]
    fn deep_nesting_and_long_queries_are_refused_before_parsing() {
        let deep = format!("{}a{}", "(".repeat(100), ")".repeat(100));
        let e = check_limits(&deep).unwrap_err();
        assert_eq!(e.position, Some(MAX_GROUPS));
        assert_eq!(
            e.expected,
            "at most 32 groups: every `(` counts, also in a phrase"
        );
        let quoted = format!("'\"'{}a{}", "(".repeat(1000), ")".repeat(1000));
        assert_eq!(
            check_limits(&quoted).unwrap_err().position,
            Some(3 + MAX_GROUPS)
        );
        let ok = format!("{}a{}", "(".repeat(32), ")".repeat(32));
        assert!(check_limits(&ok).is_ok());
        let long = "é".repeat(MAX_QUERY_BYTES);
        let e = check_limits(&long).unwrap_err();
        assert_eq!(
            e.expected,
            format!("a query of at most 4096 bytes, got {} bytes", long.len())
        );
        assert!(e.query.len() < 80);
        assert!(check_limits(&"a ".repeat(MAX_QUERY_BYTES / 2)).is_ok());
    }
}
