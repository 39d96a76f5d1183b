//! Paths are data, never code: a log whose path is full of shell syntax is
//! followed as that literal file, and none of the embedded commands run.

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
        &[TestHost {
            name: "web01",
            port: sshd.port(),
            user: &user.name,
            auth: TestAuth::Key(&key.private),
            known_hosts: "strict",
        }],
        &[TestLog {
            name: "odd",
            path: &file,
            hosts: &["web01"],
        }],
        &[sshd.known_hosts_line()],
    );
    rill.start();
    assert!(
        rill.wait_following("web01", Duration::from_secs(20)),
        "{}",
        rill.log()
    );
    remote
        .append(&name, b"literal line one\nliteral line two\n")
        .unwrap();
    assert_eq!(
        wait_for(Duration::from_secs(15), || rill
            .count("literal", &[])
            .filter(|&n| n == 2)),
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
/// used, shell syntax and a newline-free mix of quotes.
const HOSTILE_DIR: &str = "d @DIR@ @BASE@;touch RILLPWN;# $(touch RILLPWN) 'q' \"w\" \\ !";

/// Regression (issue 17, item 1): `@BASE@` in a path closed the remote
/// script's quotes, so `x@BASE@;touch RILLPWN;#` created `~/RILLPWN` at
/// every connect; `t@IV@.log` was followed as `t1.log`.
#[test]
fn placeholders_in_folder_and_file_names_are_followed_literally() {
    let names = [
        "x@BASE@;touch RILLPWN;#",
        "t@IV@.log",
        "@PATH@@DIR@@FPB@@CHUNK@@START@@MODE@@NONCE@@STREAM_POLL@",
        "caf\u{e9} \u{1f600} it's.log",
    ];
    let user = TestUser::get().unwrap();
    let sshd = Sshd::start(SshdOptions::default()).unwrap();
    let key = user.authorize_new_key().unwrap();
    let remote = user.scratch_dir().unwrap();
    std::fs::create_dir(remote.file(HOSTILE_DIR)).unwrap();
    // What the old substitution turned the names into.
    for decoy in ["t1.log", "x", "RILLPWN.log"] {
        remote
            .append(&format!("{HOSTILE_DIR}/{decoy}"), b"decoy line\n")
            .unwrap();
    }
    let files: Vec<_> = names
        .iter()
        .map(|n| remote.file(&format!("{HOSTILE_DIR}/{n}")))
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
        remote.append(&format!("{HOSTILE_DIR}/{n}"), b"").unwrap();
    }
    let mut rill = Rill::new(
        &[TestHost {
            name: "web01",
            port: sshd.port(),
            user: &user.name,
            auth: TestAuth::Key(&key.private),
            known_hosts: "strict",
        }],
        &logs,
        &[sshd.known_hosts_line()],
    );
    rill.start();
    assert!(
        rill.wait_following("web01", Duration::from_secs(20)),
        "{}",
        rill.log()
    );
    for (i, n) in names.iter().enumerate() {
        remote
            .append(
                &format!("{HOSTILE_DIR}/{n}"),
                format!("written to l{i}\n").as_bytes(),
            )
            .unwrap();
    }
    for (i, log) in log_names.iter().enumerate() {
        assert_eq!(
            wait_for(Duration::from_secs(15), || rill
                .count("written", &["--log", log])
                .filter(|&n| n == 1)),
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
    rill.start();
    assert!(rill.wait_following("web01", Duration::from_secs(20)));
    for dir in [
        &user.home,
        &remote.path,
        &remote.file(HOSTILE_DIR),
        &std::path::PathBuf::from("/tmp"),
    ] {
        assert!(
            !dir.join("RILLPWN").exists(),
            "{}/RILLPWN was created: a path ran as a command",
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
            wait_for(Duration::from_secs(15), || h
                .rill
                .count("before", &[])
                .filter(|&n| n == 2)),
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
            wait_for(Duration::from_secs(20), || h
                .rill
                .count("down OR new", &[])
                .filter(|&n| n == 3)),
            Some(3),
            "renamed to {rotated:?}; log:\n{}",
            h.rill.log()
        );
        assert_eq!(h.rill.count("*", &[]), Some(5));
    }
}
