//! Accounts whose login shell is not sh. sshd runs every remote command
//! through the account's login shell (`tcsh -c CMD`, `fish -c CMD`), which
//! must hand `exec sh -c BOOT rill SCRIPT ARGS...` to sh unchanged
//! (crates/tap/src/script/mod.rs). For each shell: a file with a hostile
//! name is followed live and indexed exactly once, across a rename rotation
//! and a copytruncate; `rill status` shows the host connected without error;
//! and once the supervisor stops, nothing of the account is left on the
//! server.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rill_e2e::*;

/// A file name holding a placeholder the scripts once substituted, command
/// substitution, a single quote and letters outside ASCII.
const NAME: &str = "app @IV@ $(id) it's caf\u{e9} \u{1f600}.log";

/// How long a written line may take to be streamed or indexed.
const WITHIN: Duration = Duration::from_secs(20);

/// A test account and its login shell.
struct LoginShell {
    account: &'static str,
    /// The program's name, as `getent passwd` ends with it.
    program: &'static str,
    /// A command that prints something only this shell has (its version).
    probe: &'static str,
}

#[test]
fn an_account_whose_login_shell_is_tcsh_is_followed() {
    follows_under(LoginShell {
        account: "rilltcsh",
        program: "tcsh",
        probe: "echo $tcsh",
    });
}

#[test]
fn an_account_whose_login_shell_is_fish_is_followed() {
    follows_under(LoginShell {
        account: "rillfish",
        program: "fish",
        probe: "echo $FISH_VERSION",
    });
}

fn follows_under(shell: LoginShell) {
    let user = TestUser::account(shell.account).unwrap();
    assert_login_shell(&user, shell.program);
    let sshd = Sshd::start(SshdOptions::default()).unwrap();
    let key = user.authorize_new_key().unwrap();
    // sshd really runs commands through that shell: sh has neither variable.
    let probe = sshd.client(&key, shell.probe).output().unwrap();
    let version = String::from_utf8_lossy(&probe.stdout).trim().to_owned();
    assert!(
        probe.status.success() && version.starts_with(|c: char| c.is_ascii_digit()),
        "`{}` as {}: {version:?}, stderr {}",
        shell.probe,
        user.name,
        String::from_utf8_lossy(&probe.stderr)
    );

    let remote = user.scratch_dir().unwrap();
    let file = remote.file(NAME);
    remote.append(NAME, b"").unwrap();
    let mut rill = Rill::new(
        &[TestHost::web01(&sshd, &user, &key)],
        &[TestLog {
            name: "app",
            path: &file,
            hosts: &["web01"],
        }],
        &[sshd.known_hosts_line()],
    );
    rill.start_following("web01");
    let mut live = Live::subscribe(&rill, "web01", "app", WITHIN);
    let scratch = remote.path.display().to_string();
    let sessions = remote_sessions(&user, &scratch);
    assert!(!sessions.is_empty(), "{:?}", user.processes());
    // `exec sh` replaced the login shell: no tcsh or fish waits behind it.
    let shells: Vec<RemoteProcess> = remote_processes_in(&user, &sessions)
        .into_iter()
        .filter(|p| program_of(&p.cmdline) == shell.program)
        .collect();
    assert!(shells.is_empty(), "{shells:?}");

    let mut written = Vec::new();
    write(&remote, NAME, "alpha", 10, &mut written);
    expect(&rill, &mut live, "alpha", 10, &written);

    // Rename rotation: the writer adds to the renamed file before it reopens
    // by name; the tap must move on to the new file.
    let renamed = format!("{NAME}.1");
    std::fs::rename(&file, remote.file(&renamed)).unwrap();
    write(&remote, &renamed, "bravo", 3, &mut written);
    write(&remote, NAME, "charlie", 10, &mut written);
    expect(&rill, &mut live, "bravo", 3, &written);
    expect(&rill, &mut live, "charlie", 10, &written);
    assert_follows(&rill, &file);

    // copytruncate: lines written just before the copy may be read from
    // the copy; the truncated file is read again from its start.
    write(&remote, NAME, "delta", 5, &mut written);
    let copied = format!("{NAME}.2");
    remote
        .append(&copied, &std::fs::read(&file).unwrap())
        .unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(0)
        .unwrap();
    write(&remote, NAME, "echo", 10, &mut written);
    expect(&rill, &mut live, "delta", 5, &written);
    expect(&rill, &mut live, "echo", 10, &written);
    assert_follows(&rill, &file);
    let total = written.len() as u64;
    assert_eq!(rill.wait_count("*", &[], total, WITHIN), Some(total));

    let host = rill.host_status("web01").unwrap();
    assert_eq!(host["connected"], true, "{host}");
    assert!(host["error"].is_null(), "{host}");
    assert_eq!(host["logs"][0]["path"], file.display().to_string());
    assert!(host["logs"][0]["error"].is_null(), "{host}");
    let out = rill.rill(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // The host's block: its line and the indented lines of its logs.
    let block: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("web01: "))
        .take_while(|l| l.starts_with("web01: ") || l.starts_with("  "))
        .collect();
    assert!(
        block
            .first()
            .is_some_and(|l| l.starts_with("web01: connected")),
        "{text}"
    );
    assert!(block.iter().all(|l| !l.contains("error")), "{text}");

    let status = rill.stop(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(
        wait_until(Duration::from_secs(5), || account_processes(&user.name)
            .is_empty()),
        "{} still runs: {:?}",
        user.name,
        account_processes(&user.name)
    );
    // Nothing arrived late: every line once, also after the supervisor stopped.
    live.drain();
    live.assert_each_once(&written);
    for (word, n) in [
        ("alpha", 10),
        ("bravo", 3),
        ("charlie", 10),
        ("delta", 5),
        ("echo", 10),
    ] {
        assert_eq!(rill.count(word, &[]), Some(n), "{word}");
    }
    assert_eq!(rill.count("*", &[]), Some(total));
}

/// `getent passwd` gives `user` the login shell `program` (not a link to sh).
fn assert_login_shell(user: &TestUser, program: &str) {
    let out = Command::new("getent")
        .args(["passwd", &user.name])
        .output()
        .unwrap();
    let entry = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let login = PathBuf::from(entry.rsplit(':').next().unwrap_or_default());
    let real = std::fs::canonicalize(&login)
        .unwrap_or_else(|e| panic!("{}: login shell {}: {e}", user.name, login.display()));
    assert_eq!(
        (name_of(&login), name_of(&real)),
        (program, program),
        "{entry}; run tests/install-deps.sh"
    );
}

fn name_of(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or_default()
}

/// The program a command line runs (its first word's file name).
fn program_of(cmdline: &str) -> &str {
    let first = cmdline.split(' ').next().unwrap_or_default();
    name_of(Path::new(first)).trim_start_matches('-')
}

/// Every process of `user`, sshd's session processes included (the account
/// is this test's alone).
fn account_processes(user: &str) -> Vec<String> {
    let out = Command::new(which("pgrep"))
        .args(["-a", "-u", user])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Appends `n` lines `WORD i ...` to `name`, one write each, recording them.
fn write(remote: &RemoteDir, name: &str, word: &str, n: usize, written: &mut Vec<String>) {
    for i in 0..n {
        let line = format!("{word} {i} it's $(id) `id` caf\u{e9}");
        remote.append(name, format!("{line}\n").as_bytes()).unwrap();
        written.push(line);
    }
}

/// Waits until the tap follows the file now at `path` (its `dev:ino:`),
/// without error.
fn assert_follows(rill: &Rill, path: &Path) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    let inode = format!("{}:{}:", m.dev(), m.ino());
    let log = || {
        rill.host_status("web01")
            .map(|h| h["logs"][0].clone())
            .unwrap_or_default()
    };
    assert!(
        wait_until(WITHIN, || {
            let l = log();
            l["error"].is_null()
                && l["file_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with(&inode))
        }),
        "{} ({inode}) not followed: {}\n{}",
        path.display(),
        log(),
        rill.log()
    );
}

/// Waits until the `n` lines of `word` are streamed and indexed.
fn expect(rill: &Rill, live: &mut Live, word: &str, n: u64, written: &[String]) {
    let prefix = format!("{word} ");
    live.wait(WITHIN, |lines, _| {
        lines
            .iter()
            .filter(|v| v["body"].as_str().is_some_and(|b| b.starts_with(&prefix)))
            .count() as u64
            >= n
    });
    let streamed = live.count_starting(&prefix);
    assert_eq!(
        streamed as u64,
        n,
        "{word} lines streamed: {:?}\nlog:\n{}",
        live.bodies(),
        rill.log()
    );
    assert_eq!(
        rill.wait_count(word, &[], n, WITHIN),
        Some(n),
        "{word} lines indexed; log:\n{}",
        rill.log()
    );
    live.assert_each_once(written);
}
