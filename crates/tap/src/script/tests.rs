//! The command line and the scripts' text: every login shell passes the
//! arguments on unchanged, shellcheck finds nothing, the output parses.

use std::process::Command;

use super::shells::{login_shells, Shell, HOSTILE, IV};
use super::*;

#[test]
fn every_login_shell_hands_the_script_its_arguments_unchanged() {
    let script = r#"for a in "$@"; do printf '<%s>' "$a" | od -An -c; done"#;
    let expected = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(HOSTILE)
        .output()
        .unwrap()
        .stdout;
    for (login, shell) in login_shells() {
        let mut cmd = match &shell {
            Shell::Posix => Command::new(&login),
            Shell::BusyBox(applets) => {
                let mut c = Command::new(applets.path().join(&login));
                c.env("PATH", applets.path());
                c
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let out = cmd
            .current_dir(dir.path())
            .arg("-c")
            .arg(command(script, &HOSTILE))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&expected),
            "under {login}: stderr {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}

#[test]
fn the_command_line_holds_nothing_a_login_shell_interprets_in_quotes() {
    let cmd = follow_command(
        &HOSTILE.concat(),
        StartAt::End,
        (IV, IV),
        Reading::Auto,
        None,
    );
    // Outside its quotes only `exec sh -c` and `rill`; inside, no quote,
    // backslash other than \0ooo, `!` or newline.
    let words: Vec<&str> = cmd.split('\'').collect();
    assert_eq!(words[0], "exec sh -c ");
    assert!(words
        .iter()
        .skip(2)
        .step_by(2)
        .all(|w| w.trim().is_empty() || *w == " rill "));
    for w in words.iter().skip(1).step_by(2) {
        assert!(!w.contains(['!', '\n', '\'']), "{w}");
        let b = w.as_bytes();
        for (i, _) in w.match_indices('\\') {
            assert!(b.len() > i + 4 && b[i + 1] == b'0', "{w}");
            assert!(
                b[i + 2..i + 5].iter().all(|c| (b'0'..=b'7').contains(c)),
                "{w}"
            );
        }
    }
}

#[test]
fn shellcheck_finds_nothing_in_the_scripts() {
    for (name, kind) in [
        ("follow", FOLLOW),
        ("finish", FINISH),
        ("list", LIST),
        ("generations", GENERATIONS),
    ] {
        let said =
            rill_test_support::shellcheck(&format!("{name}.sh"), &[COMMON, kind, RUN].concat());
        assert_eq!(said, None, "shellcheck on {name}");
    }
}

#[test]
fn intervals_render_as_sleep_takes_them() {
    assert_eq!(seconds(Duration::from_secs(1)), "1");
    assert_eq!(seconds(Duration::from_millis(500)), "0.5");
    assert_eq!(seconds(Duration::from_millis(1250)), "1.25");
}

#[test]
fn nothing_of_a_follow_command_changes_with_the_channel() {
    // Every value the server's `ps` shows is the tap's to tell anyone:
    // no secret rides on a command line.
    let cmd = || {
        follow_command(
            "/var/log/app.log",
            StartAt::End,
            (IV, IV),
            Reading::Auto,
            None,
        )
    };
    assert_eq!(cmd(), cmd());
}

#[test]
fn headers_and_controls_parse() {
    assert_eq!(
        parse_header(b"RILL-WAIT"),
        Ok(Header::Waiting { dir_missing: false })
    );
    assert_eq!(
        parse_header(b"RILL-WAIT-DIR"),
        Ok(Header::Waiting { dir_missing: true })
    );
    assert_eq!(
        parse_header(b"RILL 2049 131 64 3735928559 42 stream"),
        Ok(Header::Following {
            dev: 2049,
            ino: 131,
            verify: Verify {
                len: 64,
                fp: 0xdeadbeef
            },
            start: 42,
            mode: Mode::Stream,
        })
    );
    assert!(parse_header(b"sh: ls: not found").is_err());
    assert!(parse_header(b"RILL 1 2 3 4 5").is_err());
    assert!(parse_header(b"RILL 1 2 3 4 5 sideways").is_err());
    assert_eq!(parse_control("RILL-FINAL 12"), Some(Control::Final(12)));
    assert_eq!(
        parse_control("RILL-FP 64 9"),
        Some(Control::Fingerprint(Verify { len: 64, fp: 9 }))
    );
    assert_eq!(parse_control("RILL-SIZE 7"), Some(Control::Size(7)));
    assert_eq!(parse_control("RILL-TICK"), Some(Control::Tick));
    assert_eq!(parse_control("RILL-FINAL x"), None);
    assert_eq!(parse_control("cat: oops"), None);
}
