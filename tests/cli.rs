//! The CLI's contract: every binary answers --help; check-config reports
//! errors with file and key; the README's commands are what .ci/run runs.

use std::process::Command;

use rill_e2e::bin;

#[test]
fn every_binary_answers_help() {
    for name in [
        "ssh_tap",
        "robust_ssh_tap",
        "masspinger",
        "parser",
        "supervisor",
        "rill",
    ] {
        let out = Command::new(bin(name)).arg("--help").output().unwrap();
        assert!(out.status.success(), "{name} --help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage:"), "{name}: {text}");
        if name != "rill" {
            assert!(text.contains("--config"), "{name}: {text}");
        }
    }
}

/// `rill ARGS --config CONFIG`, run to its end.
fn rill(args: &[&str], config: &std::path::Path) -> std::process::Output {
    Command::new(bin("rill"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

#[test]
fn check_config_accepts_good_files_and_names_the_key_in_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "hosts: {web01: {address: 127.0.0.1, user: u, auth: {agent: true}}}\nlogs: {app: {path: /var/log/app.log, hosts: all}}\n").unwrap();
    let out = rill(&["check-config"], &good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("host web01: u@127.0.0.1:22"));

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "hosts: {web01: {address: 127.0.0.1, user: u, auth: {agent: true}, prot: 22}}\nlogs: {app: {path: /x, hosts: all}}\n").unwrap();
    let out = rill(&["check-config"], &bad);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&bad.display().to_string())
            && err.contains("hosts.web01.prot")
            && err.contains("unknown field `prot`"),
        "{err}"
    );
}

#[test]
fn check_config_names_a_saved_query_that_does_not_parse_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rill.yaml");
    let base = "hosts: {web01: {address: 127.0.0.1, user: u, auth: {agent: true}}}\nlogs: {app: {path: /x, hosts: all}}\n";
    std::fs::write(
        &cfg,
        format!(
            "{base}queries:\n  ok: 'fields.status:[500 TO 599]'\n  broken: 'error AND (timeout'\n"
        ),
    )
    .unwrap();
    let out = rill(&["check-config"], &cfg);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&cfg.display().to_string())
            && err.contains("queries.broken: expected")
            && err.contains("at position"),
        "{err}"
    );
    std::fs::write(
        &cfg,
        format!("{base}queries:\n  ok: 'fields.status:[500 TO 599]'\n"),
    )
    .unwrap();
    let out = rill(&["check-config"], &cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("saved queries: ok"));
    // An unknown saved query is named, with the ones there are.
    let out = rill(&["search", "--saved", "nope"], &cfg);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--saved \"nope\": no such query") && err.contains("saved queries: ok"),
        "{err}"
    );
}

#[test]
fn check_config_names_a_rule_query_that_does_not_parse_and_rules_test_fires_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rill.yaml");
    let base = "hosts: {web01: {address: 127.0.0.1, user: u, auth: {agent: true}}}\nlogs: {app: {path: /x, hosts: all}}\n";
    std::fs::write(
        &cfg,
        format!("{base}rules:\n  bad:\n    query: 'status:[500 TO'\n    kind: any\n"),
    )
    .unwrap();
    let out = rill(&["check-config"], &cfg);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&cfg.display().to_string())
            && err.contains("rules.bad.query: expected")
            && err.contains("at position"),
        "{err}"
    );
    // A good rule is listed; `rules test` of an unknown rule names the ones
    // there are.
    std::fs::write(
        &cfg,
        format!("{base}rules:\n  errors:\n    query: ERROR\n    kind: frequency\n    count: 5\n    within: 1m\n"),
    )
    .unwrap();
    let out = rill(&["check-config"], &cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("rule errors: frequency on \"ERROR\""));
    let out = rill(&["rules", "test", "nope"], &cfg);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no rule \"nope\"") && err.contains("rules: errors"),
        "{err}"
    );
    // Nothing fired yet: the list says so without a running collector.
    let out = rill(&["rules"], &cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("errors") && text.contains("frequency"),
        "{text}"
    );
}

#[test]
fn status_without_a_supervisor_says_so_even_without_the_hosts_secrets() {
    // Clients never log in to hosts, so an unset password variable is no error for them.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rill.yaml");
    std::fs::write(&cfg, "hosts: {web01: {address: 127.0.0.1, user: u, auth: {password_env: RILL_E2E_SURELY_UNSET}}}\nlogs: {app: {path: /x, hosts: all}}\n").unwrap();
    let out = rill(&["status"], &cfg);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("supervisor did not answer"));
}

#[test]
fn ci_runs_exactly_the_readme_test_command() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    let ci_cmd: Vec<&str> = ci
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty() && !l.starts_with("set "))
        .collect();
    assert_eq!(ci_cmd.len(), 1, ".ci/run runs one command: {ci_cmd:?}");
    assert!(
        readme.contains(ci_cmd[0].trim()),
        "README shows the CI command {:?}",
        ci_cmd[0]
    );
}
