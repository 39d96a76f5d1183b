//! The search API with `search.tls` and `search.tokens_file`: a test CA
//! and a certificate for 127.0.0.1 (rill_test_support::TestPki), the real binaries
//! against a real sshd. A search over HTTPS with the token finds the lines;
//! without it, or with a wrong one, 401; plain HTTP to the port and a
//! client that does not trust the CA are never served; `/health` needs no
//! token and the supervisor's probe sees the API up over TLS. The page
//! asks for the token and its Live tab gets it as the cookie. And
//! `check-config` refuses a non-loopback listen without TLS.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rill_e2e::webdriver::Browser;
use rill_e2e::*;
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(60);
const TOKEN: &str = "rill-e2e-token-0123456789";

fn pki() -> TestPki {
    TestPki::new("rill e2e ca")
}

/// Writes `text` to `dir/name`, readable by its owner only.
fn secret(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// A client that trusts `ca` (PEM) alone, or the public roots when None;
/// a 4xx is an answer, not an error.
fn agent(ca: Option<&str>) -> ureq::Agent {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(ca) = ca {
        let cert = ureq::tls::Certificate::from_pem(ca.as_bytes()).unwrap();
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]));
    }
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .tls_config(tls.build())
        .build()
        .into()
}

/// `GET url` with `headers`: status, `WWW-Authenticate` and the body.
fn get(
    agent: &ureq::Agent,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String, String), ureq::Error> {
    let mut req = agent.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.call()?;
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = resp.body_mut().read_to_string()?;
    Ok((resp.status().as_u16(), challenge, body))
}

/// `web01` following `app`, its search API on `search` (YAML lines under
/// `search:` besides `listen`), with `lines` in the index.
fn running(search: &str, lines: usize) -> OneHost {
    let h = OneHost::new(&["app"]);
    h.rill.append_config(&format!(
        "search:\n  listen: 127.0.0.1:{}\n{search}",
        h.rill.search_port
    ));
    let h = OneHost::start(h, &["app"]);
    let text: String = (0..lines).map(|i| format!("GET /item/{i} 200\n")).collect();
    h.append("app", text.as_bytes());
    assert!(
        h.rill
            .wait_count("GET", &[], lines as u64, WITHIN)
            .is_some(),
        "lines never indexed; log:\n{}",
        h.rill.log()
    );
    h
}

#[test]
fn https_with_a_token_finds_the_lines_and_nothing_else_is_served() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let cert = secret(dir.path(), "cert.pem", &pki.cert);
    let key = secret(dir.path(), "key.pem", &pki.key);
    let tokens = secret(dir.path(), "tokens", &format!("# who\n{TOKEN} ops\n"));
    let h = running(
        &format!(
            "  tls:\n    cert: {}\n    key: {}\n  tokens_file: {}\n",
            cert.display(),
            key.display(),
            tokens.display()
        ),
        30,
    );
    let port = h.rill.search_port;
    let base = format!("https://127.0.0.1:{port}");
    let trusting = agent(Some(&pki.ca_pem));
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("authorization", bearer.as_str())];

    let (status, _, body) =
        get(&trusting, &format!("{base}/search?q=GET&limit=100"), &auth).unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["count"], 30, "{v}");
    assert_eq!(v["hits"].as_array().unwrap().len(), 30);
    assert_eq!(v["hits"][0]["body"], "GET /item/29 200");

    // No token, a wrong one: 401 with a JSON error and a Bearer challenge.
    let (status, challenge, body) = get(&trusting, &format!("{base}/search?q=GET"), &[]).unwrap();
    assert_eq!(
        (status, challenge.as_str()),
        (401, "Bearer realm=\"search\"")
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["error"].as_str().unwrap().starts_with("missing token"),
        "{v}"
    );
    let wrong = [("authorization", "Bearer rill-e2e-token-not-this-one")];
    let (status, challenge, body) = get(&trusting, &format!("{base}/count?q=GET"), &wrong).unwrap();
    assert_eq!(status, 401);
    assert!(challenge.contains("invalid_token"), "{challenge}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["error"].as_str().unwrap().starts_with("unknown token"),
        "{v}"
    );
    assert!(!body.contains("not-this-one"), "{body}");
    // Every data route asks, /metrics too; the cookie counts as the token.
    for path in ["/metrics", "/status", "/live", "/facets", "/nowhere"] {
        let (status, _, _) = get(&trusting, &format!("{base}{path}"), &[]).unwrap();
        assert_eq!(status, 401, "{path}");
    }
    let (status, _, body) = get(&trusting, &format!("{base}/metrics"), &auth).unwrap();
    assert!(
        status == 200 && body.contains("rill_index_documents"),
        "{status} {body}"
    );
    let cookie = format!("rill_token={}", url_encode(TOKEN));
    let (status, _, body) = get(
        &trusting,
        &format!("{base}/count?q=GET"),
        &[("cookie", &cookie)],
    )
    .unwrap();
    assert_eq!((status, body.as_str()), (200, "{\"count\":30}"));

    // /health and the page need none.
    let (status, _, body) = get(&trusting, &format!("{base}/health"), &[]).unwrap();
    assert_eq!((status, body.as_str()), (200, "{\"status\":\"ok\"}"));
    let (status, _, body) = get(&trusting, &format!("{base}/"), &[]).unwrap();
    assert!(
        status == 200 && body.contains("<title>Rill</title>"),
        "{status}"
    );

    // Plain HTTP to the TLS port is not served; a client that does not
    // trust the CA fails its handshake.
    assert_eq!(http_get(port, "/health"), None);
    let e = get(&agent(None), &format!("{base}/health"), &[]).unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("UnknownIssuer") || e.contains("certificate"),
        "{e}"
    );

    // The supervisor's probe speaks TLS to it and finds it up.
    let mut last = Value::Null;
    let up = wait_until(Duration::from_secs(30), || {
        last = h
            .rill
            .status()
            .map(|s| s["search_api"].clone())
            .unwrap_or_default();
        last["ok"] == true
    });
    assert!(up, "the probe never saw the api up: {last}");

    // A token added to the file is taken without a restart; one removed
    // is refused.
    let added = "rill-e2e-token-added-later";
    secret(dir.path(), "tokens", &format!("{added} ci\n"));
    let url = format!("{base}/count?q=GET");
    assert!(
        wait_until(WITHIN, || get(
            &trusting,
            &url,
            &[("authorization", &format!("Bearer {added}"))]
        )
        .is_ok_and(|(s, _, _)| s == 200)),
        "the added token was never taken; log:\n{}",
        h.rill.log()
    );
    assert_eq!(get(&trusting, &url, &auth).unwrap().0, 401);
}

#[test]
fn bad_tls_files_keep_the_api_down_and_say_why_and_the_pipeline_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let cert = secret(dir.path(), "cert.pem", "not a certificate\n");
    let key = secret(dir.path(), "key.pem", &pki().key);
    let h = running(
        &format!(
            "  tls:\n    cert: {}\n    key: {}\n",
            cert.display(),
            key.display()
        ),
        5,
    );
    let want = format!("search.tls: {}: no certificate in it", cert.display());
    assert!(
        wait_until(WITHIN, || h.rill.log().contains(&want)),
        "no {want:?} in the log:\n{}",
        h.rill.log()
    );
    // A good certificate written over it is taken (within the keeper's
    // retry), without restarting anything.
    let pki = pki();
    secret(dir.path(), "cert.pem", &pki.cert);
    secret(dir.path(), "key.pem", &pki.key);
    let base = format!("https://127.0.0.1:{}", h.rill.search_port);
    assert!(
        wait_until(WITHIN, || get(
            &agent(Some(&pki.ca_pem)),
            &format!("{base}/count?q=GET"),
            &[]
        )
        .is_ok_and(|(s, _, b)| s == 200 && b == "{\"count\":5}")),
        "the api never came up with the good files; log:\n{}",
        h.rill.log()
    );
}

#[test]
fn the_page_asks_for_the_token_and_live_gets_it_from_the_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = secret(dir.path(), "tokens", &format!("{TOKEN} ops\n"));
    let h = running(&format!("  tokens_file: {}\n", tokens.display()), 3);
    let b = Browser::start("tls-token");
    b.open(&format!("http://127.0.0.1:{}/", h.rill.search_port));
    let asked = "const f = document.getElementById('login'); return !f.classList.contains('hidden') && document.getElementById('login-why').textContent.startsWith(arguments[0]);";
    b.wait(
        "the page asks for the token",
        asked,
        json!(["missing token"]),
    );
    b.type_into("#token", "rill-e2e-token-wrong-wrong");
    b.click("#login-go");
    b.wait("a wrong token is refused", asked, json!(["unknown token"]));
    b.type_into("#token", TOKEN);
    b.click("#login-go");
    b.wait(
        "the token is kept and the form gone",
        "return sessionStorage.getItem('rill_token') === arguments[0] && document.getElementById('login').classList.contains('hidden') && document.readyState === 'complete';",
        json!([TOKEN]),
    );
    b.type_into("#q", "GET");
    b.click("#go");
    b.wait(
        "three hits",
        "return document.querySelectorAll('#hits .hit').length === 3;",
        json!([]),
    );
    if b.eval(
        "return document.getElementById('login').classList.contains('hidden');",
        json!([]),
    ) != json!(true)
    {
        b.fail("the form came back after the token was given");
    }
    // Live: EventSource sends the cookie, not the header.
    b.click("#tab-live");
    b.click("#live-go");
    b.wait(
        "the live stream is ready",
        "return document.getElementById('live-lines').dataset.ready === '1';",
        json!([]),
    );
    h.append("app", b"GET /live 200\n");
    b.wait(
        "the new line shows",
        "return [...document.querySelectorAll('#live-lines li')].some(e => e.dataset.line === 'GET /live 200');",
        json!([]),
    );
}

#[test]
fn check_config_refuses_a_non_loopback_listen_without_tls() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rill.yaml");
    std::fs::write(
        &cfg,
        format!(
            "hosts: {{web01: {{address: 127.0.0.1, user: u, auth: {{agent: true}}}}}}\nlogs: {{app: {{path: /x, hosts: all}}}}\nsearch:\n  listen: 0.0.0.0:{}\n",
            free_port()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(bin("rill"))
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&cfg.display().to_string())
            && err.contains("search.tls")
            && err.contains("reachable from other machines"),
        "{err}"
    );
}
