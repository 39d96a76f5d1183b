//! Every shipped config parses; every broken fixture fails with the message
//! written in its first line (`# expect: key=K message=M`).

use std::path::{Path, PathBuf};

use rill_config::Config;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

#[test]
fn every_file_in_config_dir_parses() {
    let dir = repo_root().join("config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let cfg = Config::from_yaml_unchecked(&path, &text).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                !cfg.hosts.is_empty() && !cfg.logs.is_empty(),
                "{}",
                path.display()
            );
            seen += 1;
        }
    }
    assert!(
        seen >= 2,
        "expected the reference and the demo config in {}",
        dir.display()
    );
}

#[test]
fn reference_config_documents_defaults() {
    let path = repo_root().join("config/rill.yaml");
    let cfg = Config::from_yaml_unchecked(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(cfg.state_dir, repo_root().join("config/state"));
    assert_eq!(cfg.streams_endpoint, "tcp://127.0.0.1:7600");
    assert_eq!(cfg.hosts["db01"].port, 22);
    let sessions = cfg.hosts["web01"].sessions.as_ref().unwrap();
    assert_eq!(sessions.endpoint, "tcp://127.0.0.1:7701");
    assert_eq!((sessions.max, sessions.pool), (8, 5));
    assert_eq!(sessions.max_request_age, std::time::Duration::from_secs(30));
    assert!(
        cfg.hosts["db01"].sessions.is_none(),
        "off unless configured"
    );
    assert_eq!(cfg.logs["syslog"].hosts, vec!["db01", "web01"]);
    assert_eq!(
        cfg.logs_for("web01")
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>(),
        ["nginx-access", "syslog", "units", "vhosts"]
    );
    let vhosts = &cfg.logs["vhosts"];
    assert_eq!(vhosts.max_files, rill_config::DEFAULT_MAX_FILES);
    assert!(vhosts.covers("/var/log/nginx/api.log"));
    assert!(!vhosts.covers("/var/log/nginx/debug-1.log"));
    assert!(!vhosts.covers("/var/log/nginx/api.log.2.gz"));
    assert_eq!(cfg.logs["syslog"].read_from, rill_config::ReadFrom::End);
    let units = cfg.logs["units"].journal.as_ref().unwrap();
    assert_eq!(units.units, ["nginx.service", "sshd.service"]);
    assert_eq!(cfg.logs["units"].parser, rill_config::ParserSpec::Journal);
    assert!(cfg.logs["auth"].sudo);
    assert_eq!(cfg.hosts["db01"].jump.as_deref(), Some("web01"));
}

#[test]
fn every_broken_fixture_fails_with_its_expected_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap();
        let spec = first
            .strip_prefix("# expect: key=")
            .expect("fixture starts with # expect:");
        let (key, message) = spec.split_once(" message=").unwrap();
        let err = Config::from_yaml(&path, &text).expect_err(&path.display().to_string());
        assert_eq!(err.file, path, "error names the file");
        assert_eq!(err.key, key, "{}: {err}", path.display());
        assert!(
            err.message.contains(message),
            "{}: got {:?}",
            path.display(),
            err.message
        );
        let shown = err.to_string();
        assert!(shown.starts_with(&path.display().to_string()), "{shown}");
        // A fixture's secrets (`Hunter2`) never appear in its error.
        assert!(!shown.contains("Hunter2"), "{shown}");
        seen += 1;
    }
    assert!(seen >= 15);
}

#[test]
fn secrets_are_read_only_when_asked_and_files_lose_their_newline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
    let path = dir.path().join("rill.yaml");
    let text = "hosts: {h: {address: a, user: u, auth: {password_file: pw}}}\nlogs: {x: {path: /x, hosts: all}}\n";
    let cfg = Config::from_yaml(&path, text).unwrap();
    match &cfg.hosts["h"].auth {
        rill_config::Auth::Password(secret) => {
            assert_eq!(secret.read().unwrap(), "s3cret");
            assert!(!format!("{secret:?}").contains("s3cret"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(cfg.state_dir, dir.path().join("state"));
    assert_eq!(
        cfg.ingest_endpoint(),
        format!("ipc://{}/state/run/ingest.sock", dir.path().display())
    );
}

#[test]
fn sessions_default_to_an_ipc_socket_and_open_endpoints_need_allow_and_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rill.yaml");
    let cfg = Config::from_yaml(
        &path,
        "hosts: {web01: {address: a, user: u, auth: {agent: true}, sessions: {}}}\nlogs: {x: {path: /x, hosts: all}}\n",
    )
    .unwrap();
    let s = cfg.hosts["web01"].sessions.as_ref().unwrap();
    assert_eq!(
        s.endpoint,
        format!("ipc://{}/state/run/web01.sessions", dir.path().display())
    );
    assert!(s.allow.is_empty() && s.credentials_file.is_none());

    std::fs::write(dir.path().join("sessions.users"), "ops:s3cret\n").unwrap();
    let open = "hosts:\n  web01:\n    address: a\n    user: u\n    auth: {agent: true}\n    sessions:\n      endpoint: tcp://0.0.0.0:7701\n      max: 3\n      pool: 0\n      max_request_age: 5s\n      allow: [10.0.0.0/8, 192.0.2.7]\n      credentials_file: sessions.users\nlogs: {x: {path: /x, hosts: all}}\n";
    let cfg = Config::from_yaml(&path, open).unwrap();
    let s = cfg.hosts["web01"].sessions.as_ref().unwrap();
    assert_eq!((s.max, s.pool), (3, 0));
    assert_eq!(s.max_request_age, std::time::Duration::from_secs(5));
    assert_eq!(s.allow.len(), 2);
    assert!(s.allow[1].contains("192.0.2.7".parse().unwrap()));
    assert_eq!(
        s.credentials_file.as_deref(),
        Some(dir.path().join("sessions.users").as_path())
    );
    let creds = rill_config::Credentials::load(s.credentials_file.as_ref().unwrap()).unwrap();
    assert!(creds.check("ops", "s3cret"));

    std::fs::write(dir.path().join("sessions.users"), "ops\n").unwrap();
    let err = Config::from_yaml(&path, open).unwrap_err();
    assert_eq!(err.key, "hosts.web01.sessions.credentials_file");
    assert!(
        err.message.contains("line 1: expected user:password"),
        "{err}"
    );
    // Clients load configs without looking at secrets.
    assert!(Config::from_yaml_unchecked(&path, open).is_ok());
}

#[test]
fn reference_config_shows_every_parser_option_multiline_retention_and_search() {
    use rill_config::{MultilineRule, ParserSpec};
    let path = repo_root().join("config/rill.yaml");
    let cfg = Config::from_yaml_unchecked(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(cfg.logs["nginx-access"].parser, ParserSpec::Combined);
    assert_eq!(
        cfg.logs["syslog"].parser,
        ParserSpec::Syslog {
            timezone: chrono_tz::Europe::Berlin
        }
    );
    match &cfg.logs["app"].parser {
        ParserSpec::Regex { pattern, timestamp } => {
            assert!(pattern.contains("(?P<level>"));
            let t = timestamp.as_ref().unwrap();
            assert_eq!(
                (t.capture.as_str(), t.timezone),
                ("ts", chrono_tz::Europe::Berlin)
            );
        }
        other => panic!("{other:?}"),
    }
    let m = cfg.logs["app"].multiline.as_ref().unwrap();
    assert_eq!(m.rule, MultilineRule::Continues(r"^(\s|Caused by)".into()));
    assert_eq!(m.flush_after, std::time::Duration::from_millis(500));
    assert_eq!(
        cfg.logs["events"].parser,
        ParserSpec::Json {
            timestamp_key: Some("time".into()),
            timezone: chrono_tz::UTC
        }
    );
    assert_eq!(
        cfg.index.retention,
        Some(std::time::Duration::from_secs(30 * 86400))
    );
    assert_eq!(cfg.search.listen, Some("127.0.0.1:7680".parse().unwrap()));
    // The short forms and the defaults.
    let text = "hosts: {h: {address: a, user: u, auth: {agent: true}}}\nsearch: {listen: off}\nlogs: {x: {path: /x, hosts: all, parser: json}}\n";
    let cfg = Config::from_yaml_unchecked(Path::new("/t/rill.yaml"), text).unwrap();
    assert_eq!(cfg.search.listen, None);
    assert_eq!(cfg.index.retention, None);
    assert!(cfg.logs["x"].multiline.is_none());
    assert!(matches!(
        cfg.logs["x"].parser,
        ParserSpec::Json {
            timestamp_key: None,
            ..
        }
    ));
}

/// A fleet of `n` hosts with `tap` as the config's tap section.
fn fleet(n: usize, tap: &str) -> Config {
    let mut yaml = format!("{tap}hosts:\n");
    for i in 0..n {
        yaml += &format!("  h{i:03}: {{address: a, user: u, auth: {{agent: true}}}}\n");
    }
    yaml += "logs: {x: {path: /x, hosts: all}}\n";
    Config::from_yaml_unchecked(Path::new("fleet.yaml"), &yaml).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn hosts_per_process_auto_gives_a_process_per_host_up_to_16_then_spreads_them() {
    let sizes = |c: &Config| c.tap_groups().iter().map(Vec::len).collect::<Vec<_>>();
    // The default is auto.
    assert_eq!(sizes(&fleet(5, "")), vec![1; 5]);
    assert_eq!(
        sizes(&fleet(16, "tap: {hosts_per_process: auto}\n")),
        vec![1; 16]
    );
    assert_eq!(sizes(&fleet(17, "")), [vec![2; 8], vec![1]].concat());
    let big = sizes(&fleet(200, ""));
    assert_eq!(big.len(), 16, "{big:?}");
    assert!(big.iter().all(|&n| n == 13 || n == 5), "{big:?}");
    assert_eq!(big.iter().sum::<usize>(), 200);
    // A number is taken as it is.
    assert_eq!(
        sizes(&fleet(200, "tap: {hosts_per_process: 1}\n")).len(),
        200
    );
    assert_eq!(
        sizes(&fleet(5, "tap: {hosts_per_process: 2}\n")),
        vec![2, 2, 1]
    );
}

/// Hostile files get an error, within a bound on time and memory.
#[test]
fn deep_nesting_and_huge_files_are_refused_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rill.yaml");
    for text in [
        "[".repeat(100_000),
        format!("{}a", "- ".repeat(100_000)),
        format!("hosts: {}1{}", "{a: ".repeat(5_000), "}".repeat(5_000)),
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n".to_owned(),
    ] {
        let t = std::time::Instant::now();
        assert!(Config::from_yaml(&path, &text).is_err());
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "{:?}", t.elapsed());
    }
    std::fs::write(&path, "#".repeat(17 << 20)).unwrap();
    let e = Config::load(&path).unwrap_err();
    assert!(e.message.contains("larger than 16 MiB"), "{e}");
}
