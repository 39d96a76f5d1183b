//! Rill attacked as a hostile or careless user would (issue 17), on disk:
//! paths that hold shell syntax and placeholders, a rotation to an odd name
//! while the tap is down, broken configs, and a state dir others could
//! read. Each is followed literally or refused clearly, and nothing runs
//! that should not. Attacks on the search API and the session protocol are
//! in `hostile_api.rs`.

use std::time::Duration;

use rill_e2e::*;

#[test]
fn a_path_full_of_shell_syntax_is_just_a_path() {
    let marker = format!("rill-pwned-{}", std::process::id());
    // Quotes, command substitution, backticks, `;`, `&&`, `|`, `$VAR`, spaces.
    let name = format!(
        "it's a \"log\"; touch {marker}1 && $(touch {marker}2) `touch {marker}3` | $HOME.log"
    );
    let user = TestUser::get().unwrap();
    let sshd = Sshd::start(SshdOptions::default()).unwrap();
    let key = user.authorize_new_key().unwrap();
    let remote = user.scratch_dir().unwrap();
    let file = remote.file(&name);
    remote.append(&name, b"").unwrap();
    let mut rill = Rill::new(
        &[TestHost::web01(&sshd, &user, &key)],
        &[TestLog {
            name: "odd",
            path: &file,
            hosts: &["web01"],
        }],
        &[sshd.known_hosts_line()],
    );
    rill.start_following("web01");
    remote
        .append(&name, b"literal line one\nliteral line two\n")
        .unwrap();
    assert_eq!(
        rill.wait_count("literal", &[], 2, Duration::from_secs(15)),
        Some(2),
        "{}",
        rill.log()
    );
    let status = rill.host_status("web01").unwrap();
    assert_eq!(status["logs"][0]["path"], file.display().to_string());
    for i in 1..=3 {
        for dir in [&user.home, &remote.path, &std::path::PathBuf::from("/tmp")] {
            let m = dir.join(format!("{marker}{i}"));
            assert!(
                !m.exists(),
                "{} was created: the path ran as code",
                m.display()
            );
        }
    }
}

/// A folder whose name holds every placeholder the follow scripts ever
/// used, shell syntax and a newline-free mix of quotes; `PWN` is the file
/// its commands would create.
fn hostile_dir() -> String {
    let pwn = pwn();
    format!("d @DIR@ @BASE@;touch {pwn};# $(touch {pwn}) 'q' \"w\" \\ !")
}

/// The name of the file an injected command would create: this test
/// run's own, so a file left by an older run (or another test) is not it.
fn pwn() -> String {
    format!("RILLPWN-{}", std::process::id())
}

/// Regression (issue 17, item 1): `@BASE@` in a path closed the remote
/// script's quotes, so `x@BASE@;touch RILLPWN;#` created `~/RILLPWN` at
/// every connect; `t@IV@.log` was followed as `t1.log`.
#[test]
fn placeholders_in_folder_and_file_names_are_followed_literally() {
    let pwn = pwn();
    let hostile_dir = hostile_dir();
    let injected = format!("x@BASE@;touch {pwn};#");
    let names = [
        injected.as_str(),
        "t@IV@.log",
        "@PATH@@DIR@@FPB@@CHUNK@@START@@MODE@@NONCE@@STREAM_POLL@",
        "caf\u{e9} \u{1f600} it's.log",
    ];
    let user = TestUser::get().unwrap();
    let sshd = Sshd::start(SshdOptions::default()).unwrap();
    let key = user.authorize_new_key().unwrap();
    let remote = user.scratch_dir().unwrap();
    std::fs::create_dir(remote.file(&hostile_dir)).unwrap();
    // What the old substitution turned the names into.
    for decoy in ["t1.log", "x", "RILLPWN.log"] {
        remote
            .append(&format!("{hostile_dir}/{decoy}"), b"decoy line\n")
            .unwrap();
    }
    let files: Vec<_> = names
        .iter()
        .map(|n| remote.file(&format!("{hostile_dir}/{n}")))
        .collect();
    let log_names: Vec<String> = (0..names.len()).map(|i| format!("l{i}")).collect();
    let logs: Vec<TestLog> = files
        .iter()
        .zip(&log_names)
        .map(|(path, name)| TestLog {
            name,
            path,
            hosts: &["web01"],
        })
        .collect();
    for n in names {
        remote.append(&format!("{hostile_dir}/{n}"), b"").unwrap();
    }
    let mut rill = Rill::new(
        &[TestHost::web01(&sshd, &user, &key)],
        &logs,
        &[sshd.known_hosts_line()],
    );
    rill.start_following("web01");
    for (i, n) in names.iter().enumerate() {
        remote
            .append(
                &format!("{hostile_dir}/{n}"),
                format!("written to l{i}\n").as_bytes(),
            )
            .unwrap();
    }
    for (i, log) in log_names.iter().enumerate() {
        assert_eq!(
            rill.wait_count("written", &["--log", log], 1, Duration::from_secs(15)),
            Some(1),
            "{log} ({:?}) never got its line; log:\n{}",
            names[i],
            rill.log()
        );
        let out = rill.rill(&["search", "--json", "--log", log, "*"]);
        let hits: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(hits.len(), 1, "{log}: {hits:?}");
        assert_eq!(hits[0]["body"], format!("written to l{i}"));
        assert_eq!(hits[0]["path"], files[i].display().to_string());
    }
    assert_eq!(
        rill.count("decoy", &[]),
        Some(0),
        "a decoy file was followed"
    );
    // A restart reconnects (the injection ran at every connect).
    rill.stop(Duration::from_secs(10));
    rill.start_following("web01");
    for dir in [
        &user.home,
        &remote.path,
        &remote.file(&hostile_dir),
        &std::path::PathBuf::from("/tmp"),
    ] {
        assert!(
            !dir.join(&pwn).exists(),
            "{}/{pwn} was created: a path ran as a command",
            dir.display()
        );
    }
}

/// Regression (issue 17, item 8): a rotated file was found again by parsing
/// `ls -ai` with `read -r i n`, so a file renamed to a name with a newline
/// or a leading blank while the tap was down lost its last lines.
#[test]
fn lines_left_in_a_file_renamed_oddly_while_the_tap_was_down_are_indexed() {
    for rotated in ["app.log.1\nx", " app.log.1"] {
        let mut h = OneHost::running(&["app"]);
        h.append("app", b"before 1\nbefore 2\n");
        assert_eq!(
            h.rill.wait_count("before", &[], 2, Duration::from_secs(15)),
            Some(2),
            "{}",
            h.rill.log()
        );
        h.rill.stop(Duration::from_secs(10));
        h.append("app", b"while down 1\nwhile down 2\n");
        std::fs::rename(h.file("app"), h.remote.file(rotated)).unwrap();
        h.append("app", b"new file 1\n");
        h.rill.start();
        assert_eq!(
            h.rill
                .wait_count("down OR new", &[], 3, Duration::from_secs(20)),
            Some(3),
            "renamed to {rotated:?}; log:\n{}",
            h.rill.log()
        );
        assert_eq!(h.rill.count("*", &[]), Some(5));
    }
}

/// Issue 17, item 9: broken configs get exit 2 from every binary and an
/// error naming the file, the key and what was expected; no panic, no
/// secret echoed.
#[test]
fn every_binary_refuses_a_broken_config_with_exit_2_and_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let host = "web01: {address: 127.0.0.1, user: u, auth: {agent: true}}";
    let cases = [
        (
            format!("hosts:\n  {host}\n  db01: {{address: b, user: u, auth: {{agent: true}}}}\n  {host}\nlogs: {{x: {{path: /x, hosts: all}}}}\n"),
            "hosts: `web01` is written twice (lines 2 and 4)",
        ),
        (
            format!("hosts: {{{host}}}\nlogs:\n  x: {{path: /x, hosts: all}}\n  x: {{path: /y, hosts: all}}\n"),
            "logs: `x` is written twice (lines 3 and 4)",
        ),
        (
            format!("hosts: {{{host}}}\nlogs: {{x: {{path: /x, hosts: all}}}}\nindex: {{retention: 99999999999999999999d}}\n"),
            "index.retention: expected a duration like 500ms, 1s, 5m, 1h or 7d, got \"99999999999999999999d\", which is too long",
        ),
        (
            format!("hosts: {{{host}}}\nlogs: {{x: {{path: /x, hosts: all}}}}\ntap: {{partial_line_after: 200000000000000d}}\n"),
            "tap.partial_line_after: expected between 100ms and 1h, got 200000000000000d",
        ),
        (
            "hosts: {web01: {address: a, user: u, auth: \"Hunter2\"}}\nlogs: {x: {path: /x, hosts: all}}\n".to_owned(),
            "hosts.web01.auth: invalid type: a value (not shown: it may be a secret)",
        ),
    ];
    for (i, (yaml, want)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        let runs: [(&str, &[&str]); 6] = [
            ("rill", &["check-config"]),
            ("supervisor", &[]),
            ("parser", &[]),
            ("masspinger", &[]),
            ("ssh_tap", &["--host", "web01"]),
            ("robust_ssh_tap", &["--host", "web01"]),
        ];
        for (bin_name, extra) in runs {
            let out = std::process::Command::new(bin(bin_name))
                .args(extra)
                .arg("--config")
                .arg(&path)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{bin_name} on case {i}: {err}");
            assert!(
                err.contains(&format!("{}: {want}", path.display())),
                "{bin_name} on case {i}: {err}"
            );
            assert!(
                !err.contains("panicked") && !err.contains("Hunter2"),
                "{bin_name}: {err}"
            );
        }
    }
}

/// Issue 17, item 10: the state dir and what is in it are the operator's
/// alone; a private key others can read is warned about.
#[test]
fn state_is_private_and_readable_keys_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let mut h = OneHost::new(&["app"]);
    let state = h.rill.dir.path().join("state");
    // A state dir left open by an older rill is closed at start.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&h.key.private, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = h.rill.rill(&["check-config"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!(
            "warning: hosts.web01.auth.key: {} (mode 0644) is readable by other users; chmod 600 it",
            h.key.private.display()
        )),
        "{text}"
    );
    h = OneHost::start(h, &["app"]);
    h.append("app", b"a line\n");
    assert_eq!(
        h.rill.wait_count("line", &[], 1, Duration::from_secs(15)),
        Some(1)
    );
    assert!(h
        .rill
        .log()
        .contains("is readable by other users; chmod 600 it"));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    let mut files = 0;
    let mut stack = vec![state.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                assert_eq!(mode(&p), 0o700, "{}", p.display());
                stack.push(p);
            } else if ft.is_file() && p.file_name().unwrap() != "known_hosts" {
                // known_hosts was written by this test before the start.
                assert_eq!(mode(&p), 0o600, "{}", p.display());
                files += 1;
            }
        }
    }
    assert!(files > 5, "only {files} files in the state dir");
}

/// Issue 19, item 6: nothing on the server's command lines is a secret
/// (`ps` shows them to every user), and a log line that reads like one of
/// GNU tail's messages, whole or after a partial line, is indexed once as
/// the line it is: no line lost, none read twice, the file not read again
/// from 0.
#[test]
fn log_lines_that_read_like_tails_messages_are_indexed_once_as_lines() {
    let h = OneHost::running(&["app"]);
    h.append("app", b"before\n");
    assert_eq!(
        h.rill.wait_count("before", &[], 1, Duration::from_secs(15)),
        Some(1),
        "{}",
        h.rill.log()
    );
    let tails: Vec<String> = h
        .user
        .processes()
        .into_iter()
        .map(|p| p.cmdline)
        .filter(|c| c.starts_with("tail ") && c.contains("/dev/fd/4"))
        .collect();
    assert!(!tails.is_empty(), "no tail follows the file");
    for c in &tails {
        assert!(
            c.split(' ')
                .filter(|w| w.contains("/dev/fd"))
                .all(|w| w == "/dev/fd/4"),
            "tail is given more than the file: {c}"
        );
    }
    h.append(
        "app",
        b"tail: /dev/fd/4: file truncated\n\
          tail: error reading '/dev/fd/4': Input/output error\n\
          partial then tail: /dev/fd/4: file truncated\n\
          sentinel\n",
    );
    assert_eq!(
        h.rill
            .wait_count("sentinel", &[], 1, Duration::from_secs(15)),
        Some(1),
        "{}",
        h.rill.log()
    );
    assert_eq!(h.rill.count("truncated", &[]), Some(2), "{}", h.rill.log());
    assert_eq!(h.rill.count("error", &[]), Some(1));
    assert_eq!(h.rill.count("*", &[]), Some(5), "{}", h.rill.log());
}
