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
