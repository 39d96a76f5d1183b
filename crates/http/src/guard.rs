//! Who may use a listener: an allowlist of peer networks and bearer
//! tokens, checked for every request before its route runs.
//!
//! ```text
//! peer not in a non-empty `allow`          -> 403 {"error": "address A is not in S.allow"}
//! path in `open_paths`                     -> served (no token asked)
//! no `Authorization` header (nor cookie)   -> 401 {"error": "missing token: ..."}
//! `Authorization` not `Bearer TOKEN`       -> 401 {"error": "... expected Bearer ..."}
//! a token not in the tokens file           -> 401 {"error": "unknown token: ..."}
//! a known token                            -> served; the route sees Caller(its name)
//! ```
//!
//! A 401 carries `WWW-Authenticate: Bearer realm="S"` (with
//! `error="invalid_token"` for a wrong one). No answer and no log line
//! ever holds a token. Tokens are compared in constant time
//! ([`Tokens::name`]).

use std::net::{IpAddr, SocketAddr};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use rill_config::hub::Tokens;
use rill_config::Cidr;

/// Who sent a request, when the listener takes tokens: the name its token
/// has in the tokens file. In the request's extensions
/// (`Option<axum::Extension<Caller>>` in a handler).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

/// The peer's address; in every request's extensions, guarded or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// A listener's checks. Without `allow` and `tokens` it lets everything
/// through.
#[derive(Debug, Clone)]
pub struct Guard {
    /// The config block refusals name (`search`, `ingest`): "address A is
    /// not in search.allow", "not one of search.tokens_file".
    pub section: String,
    /// Peers that may send requests; empty means any.
    pub allow: Vec<Cidr>,
    /// When set, every request but those to `open_paths` needs one of
    /// these as `Authorization: Bearer TOKEN`.
    pub tokens: Option<Tokens>,
    /// Paths served without a token (still only to `allow`), e.g. a
    /// liveness probe's `/health`. Exact paths.
    pub open_paths: Vec<String>,
    /// A cookie whose value (percent-decoded) is taken as the token when a
    /// request has no `Authorization` header: for a browser's
    /// `EventSource`, which cannot set headers.
    pub cookie: Option<String>,
}

/// Why a request was refused; [`Refusal::response`] is its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The peer is not in a non-empty allowlist.
    NotAllowed { peer: IpAddr, section: String },
    /// Neither the header nor the cookie.
    MissingToken {
        section: String,
        cookie: Option<String>,
    },
    /// An `Authorization` header of another scheme, or unreadable.
    NotBearer { section: String, scheme: String },
    /// A token that is not in the tokens file.
    UnknownToken { section: String },
}

impl Guard {
    /// A guard that lets everything through, to be filled in.
    pub fn new(section: impl Into<String>) -> Guard {
        Guard {
            section: section.into(),
            allow: Vec::new(),
            tokens: None,
            open_paths: Vec::new(),
            cookie: None,
        }
    }

    /// Whether no check applies.
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.tokens.is_none()
    }

    /// The checks for one request from `peer` to `path`: the caller's name
    /// when a token was asked for and given, None when none was asked.
    pub fn check(
        &self,
        peer: IpAddr,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Option<Caller>, Refusal> {
        let peer = peer.to_canonical();
        if !self.allow.is_empty() && !self.allow.iter().any(|c| c.contains(peer)) {
            return Err(Refusal::NotAllowed {
                peer,
                section: self.section.clone(),
            });
        }
        let Some(tokens) = &self.tokens else {
            return Ok(None);
        };
        if self.open_paths.iter().any(|p| p == path) {
            return Ok(None);
        }
        let token = match headers.get(header::AUTHORIZATION) {
            Some(v) => bearer(v).map_err(|scheme| Refusal::NotBearer {
                section: self.section.clone(),
                scheme,
            })?,
            None => self
                .cookie
                .as_deref()
                .and_then(|name| cookie(headers, name))
                .ok_or_else(|| Refusal::MissingToken {
                    section: self.section.clone(),
                    cookie: self.cookie.clone(),
                })?,
        };
        match tokens.name(&token) {
            Some(name) => Ok(Some(Caller(name.to_owned()))),
            None => Err(Refusal::UnknownToken {
                section: self.section.clone(),
            }),
        }
    }
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::NotAllowed { .. } => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::NotAllowed { peer, section } => {
                format!("address {peer} is not in {section}.allow")
            }
            Refusal::MissingToken { section, cookie } => format!(
                "missing token: expected the header `Authorization: Bearer TOKEN` with a token of {section}.tokens_file{}",
                cookie
                    .as_deref()
                    .map(|c| format!(" (or the cookie {c})"))
                    .unwrap_or_default()
            ),
            Refusal::NotBearer { section, scheme } => format!(
                "expected `Authorization: Bearer TOKEN` with a token of {section}.tokens_file, got the scheme {scheme}"
            ),
            Refusal::UnknownToken { section } => {
                format!("unknown token: the bearer token given is not one of {section}.tokens_file")
            }
        }
    }

    /// The JSON answer, with `WWW-Authenticate` on a 401.
    pub fn response(&self) -> Response {
        let mut r = crate::error(self.status(), self.message());
        let challenge = match self {
            Refusal::NotAllowed { .. } => return r,
            Refusal::UnknownToken { section } => {
                format!("Bearer realm=\"{section}\", error=\"invalid_token\"")
            }
            Refusal::MissingToken { section, .. } | Refusal::NotBearer { section, .. } => {
                format!("Bearer realm=\"{section}\"")
            }
        };
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    }
}

/// The token a request presents: `Authorization: Bearer TOKEN`, else the
/// cookie `cookie` (what [`Guard`] checks), to pass on to another
/// service that shares the tokens (a cluster's members).
pub fn presented_token(headers: &HeaderMap, cookie_name: Option<&str>) -> Option<String> {
    match headers.get(header::AUTHORIZATION) {
        Some(v) => bearer(v).ok(),
        None => cookie_name.and_then(|n| cookie(headers, n)),
    }
}

/// The token of `Bearer TOKEN` (the scheme in any case), or the scheme
/// that was given instead (never the credentials).
fn bearer(value: &HeaderValue) -> Result<String, String> {
    let text = value.to_str().map_err(|_| "(not text)".to_owned())?.trim();
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Only a scheme of the HTTP registry is named: a bare token sent
        // without `Bearer` would otherwise be echoed as "the scheme".
        const KNOWN: [&str; 8] = [
            "Basic",
            "Digest",
            "Negotiate",
            "NTLM",
            "HOBA",
            "Mutual",
            "SCRAM-SHA-256",
            "AWS4-HMAC-SHA256",
        ];
        let shown = KNOWN
            .iter()
            .find(|k| k.eq_ignore_ascii_case(scheme))
            .map_or_else(|| "(an unknown scheme)".to_owned(), |k| (*k).to_owned());
        return Err(shown);
    }
    let token = rest.trim();
    if token.is_empty() {
        return Err("Bearer without a token".into());
    }
    Ok(token.to_owned())
}

/// The value of cookie `name` (percent-decoded), from any `Cookie` header.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| percent_decode(v.trim().trim_matches('"')))
        .filter(|v| !v.is_empty())
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "abcdefghijklmnop;=%x";

    fn guard() -> Guard {
        let mut g = Guard::new("search");
        g.tokens = Some(Tokens::parse(&format!("{TOKEN} alice\n")).unwrap());
        g.open_paths = vec!["/health".into()];
        g.cookie = Some("rill_token".into());
        g
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn a_bearer_token_names_its_caller_and_open_paths_need_none() {
        let g = guard();
        let ok = g.check(
            HOME,
            "/search",
            &headers(&[("authorization", &format!("Bearer {TOKEN}"))]),
        );
        assert_eq!(ok, Ok(Some(Caller("alice".into()))));
        let ok = g.check(
            HOME,
            "/x",
            &headers(&[("authorization", &format!("bearer  {TOKEN} "))]),
        );
        assert_eq!(ok, Ok(Some(Caller("alice".into()))));
        assert_eq!(g.check(HOME, "/health", &HeaderMap::new()), Ok(None));
        assert_eq!(
            Guard::new("search").check(HOME, "/x", &HeaderMap::new()),
            Ok(None)
        );
    }

    #[test]
    fn a_token_sent_without_its_scheme_is_never_echoed() {
        let g = guard();
        let bare = "0123456789abcdef0123456789abcdef";
        let e = g
            .check(HOME, "/x", &headers(&[("authorization", bare)]))
            .unwrap_err();
        assert!(!e.message().contains(bare), "{}", e.message());
        let e = g
            .check(
                HOME,
                "/x",
                &headers(&[("authorization", "basic dXNlcjpwdw==")]),
            )
            .unwrap_err();
        assert!(e.message().contains("Basic"), "{}", e.message());
    }

    #[test]
    fn the_cookie_counts_when_there_is_no_header() {
        let g = guard();
        let encoded = "abcdefghijklmnop%3B%3D%25x";
        let h = headers(&[("cookie", &format!("a=b; rill_token={encoded}; c=d"))]);
        assert_eq!(g.check(HOME, "/live", &h), Ok(Some(Caller("alice".into()))));
        // A header, right or wrong, wins over the cookie.
        let h = headers(&[
            ("cookie", &format!("rill_token={encoded}")),
            ("authorization", "Bearer wrongwrongwrongwrong"),
        ]);
        assert!(matches!(
            g.check(HOME, "/live", &h),
            Err(Refusal::UnknownToken { .. })
        ));
        let mut no_cookie = guard();
        no_cookie.cookie = None;
        let h = headers(&[("cookie", &format!("rill_token={encoded}"))]);
        assert!(matches!(
            no_cookie.check(HOME, "/live", &h),
            Err(Refusal::MissingToken { .. })
        ));
    }

    #[test]
    fn refusals_say_why_and_never_hold_the_token() {
        let g = guard();
        let refused = |h: HeaderMap| g.check(HOME, "/search", &h).unwrap_err();
        let missing = refused(HeaderMap::new());
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert!(
            missing.message().starts_with("missing token"),
            "{}",
            missing.message()
        );
        assert!(missing.message().contains("search.tokens_file"));
        assert!(missing.message().contains("rill_token"));
        let wrong = refused(headers(&[(
            "authorization",
            "Bearer abcdefghijklmnoQ-secret",
        )]));
        assert!(
            wrong.message().starts_with("unknown token"),
            "{}",
            wrong.message()
        );
        assert!(!wrong.message().contains("secret"));
        let r = wrong.response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"search\", error=\"invalid_token\""
        );
        let basic = refused(headers(&[("authorization", "Basic YWxpY2U6c2VjcmV0")]));
        assert!(
            basic.message().ends_with("got the scheme Basic"),
            "{}",
            basic.message()
        );
        assert!(!basic.message().contains("YWxp"));
        let empty = refused(headers(&[("authorization", "Bearer ")]));
        assert!(matches!(empty, Refusal::NotBearer { .. }));
        assert_eq!(
            missing.response().headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"search\""
        );
    }

    #[test]
    fn peers_outside_a_non_empty_allowlist_are_refused_even_on_open_paths() {
        let mut g = guard();
        g.section = "ingest".into();
        g.allow = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let e = g.check(other, "/health", &HeaderMap::new()).unwrap_err();
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert_eq!(e.message(), "address 127.0.0.2 is not in ingest.allow");
        assert!(e
            .response()
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .is_none());
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(g.check(mapped, "/health", &HeaderMap::new()), Ok(None));
    }
}
