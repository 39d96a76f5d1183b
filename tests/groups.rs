//! `tap.hosts_per_process`: several hosts followed by one ssh_tap process,
//! each on a thread that restarts by itself. One host's server going down
//! and coming back neither stops nor restarts the others, nor the process.

use std::time::Duration;

use rill_e2e::*;

const HOSTS: [&str; 3] = ["h1", "h2", "h3"];

/// `n` lines for host `host` in the phase `word`: each holds the one token
/// `<host><word>` so that a count finds them.
fn lines(host: &str, word: &str, n: usize) -> String {
    (0..n).map(|i| format!("{host}{word} line {i}\n")).collect()
}

fn append(path: &std::path::Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[test]
fn three_hosts_share_one_tap_process_and_one_host_down_leaves_the_others_streaming() {
    let user = TestUser::get().unwrap();
    let key = user.authorize_new_key().unwrap();
    let remote = user.scratch_dir().unwrap();
    let mut sshds: Vec<Sshd> = HOSTS
        .iter()
        .map(|_| Sshd::start(SshdOptions::default()).unwrap())
        .collect();
    let paths: Vec<_> = HOSTS
        .iter()
        .map(|h| remote.path.join(format!("{h}.log")))
        .collect();
    for p in &paths {
        append(p, "");
    }
    let hosts: Vec<TestHost> = HOSTS
        .iter()
        .zip(&sshds)
        .map(|(name, sshd)| TestHost {
            name,
            port: sshd.port(),
            user: &user.name,
            auth: TestAuth::Key(&key.private),
            known_hosts: "strict",
        })
        .collect();
    let host_lists: Vec<[&str; 1]> = HOSTS.iter().map(|h| [*h]).collect();
    let logs: Vec<TestLog> = HOSTS
        .iter()
        .zip(&paths)
        .zip(&host_lists)
        .map(|((name, path), hosts)| TestLog { name, path, hosts })
        .collect();
    let known: Vec<String> = sshds.iter().map(Sshd::known_hosts_line).collect();
    let mut rill = Rill::new(&hosts, &logs, &known);
    rill.append_config("tap:\n  hosts_per_process: 3\n");
    rill.start();
    for h in HOSTS {
        assert!(
            rill.wait_following(h, Duration::from_secs(30)),
            "{h} is not followed:\n{}",
            rill.log()
        );
    }

    // One ssh_tap process for the three, kept by one robust_ssh_tap.
    let config = rill.config.display().to_string();
    let procs = |bin: &str| -> Vec<(u32, String)> {
        local_processes_mentioning(&config)
            .into_iter()
            .filter(|(_, c)| c.contains(&format!("/{bin} ")))
            .collect()
    };
    let taps = procs("ssh_tap");
    assert_eq!(taps.len(), 1, "one ssh_tap: {taps:?}");
    assert!(
        taps[0].1.contains("--host h1 --host h2 --host h3"),
        "{}",
        taps[0].1
    );
    assert_eq!(procs("robust_ssh_tap").len(), 1);
    let tap_pid = taps[0].0;

    // Every host's lines reach the index.
    for (h, p) in HOSTS.iter().zip(&paths) {
        append(p, &lines(h, "before", 50));
    }
    for h in HOSTS {
        let word = format!("{h}before");
        assert_eq!(
            wait_for(Duration::from_secs(20), || rill
                .count(&word, &[])
                .filter(|&n| n == 50)),
            Some(50),
            "{word}:\n{}",
            rill.log()
        );
    }

    // h2's server goes away, connections and all: status says so, h1 and
    // h3 go on.
    let serving = sshds[1].connection_pids();
    assert!(!serving.is_empty());
    sshds[1].stop();
    for pid in serving {
        // SAFETY: signalling the test's own sshd's processes.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    assert!(
        wait_until(Duration::from_secs(30), || rill
            .host_status("h2")
            .is_some_and(|s| s["connected"] == false && !s["error"].is_null())),
        "status does not report h2 down: {:?}",
        rill.host_status("h2")
    );
    for (h, p) in HOSTS.iter().zip(&paths) {
        append(p, &lines(h, "during", 40));
    }
    for h in ["h1", "h3"] {
        let word = format!("{h}during");
        assert_eq!(
            wait_for(Duration::from_secs(20), || rill
                .count(&word, &[])
                .filter(|&n| n == 40)),
            Some(40),
            "{word} while h2 is down:\n{}",
            rill.log()
        );
        assert_eq!(
            rill.host_status(h).map(|s| s["connected"].clone()),
            Some(serde_json::Value::Bool(true)),
            "{h} stays connected"
        );
    }
    assert_eq!(rill.count("h2during", &[]), Some(0));

    // h2 comes back: its thread reconnects and reads what was written
    // meanwhile, once; the process is the same one throughout.
    sshds[1].restart().unwrap();
    assert_eq!(
        wait_for(Duration::from_secs(60), || rill
            .count("h2during", &[])
            .filter(|&n| n == 40)),
        Some(40),
        "h2's lines written while it was down:\n{}",
        rill.log()
    );
    assert!(rill.wait_following("h2", Duration::from_secs(10)));
    assert_eq!(rill.count("h2before", &[]), Some(50), "read once");
    assert_eq!(
        procs("ssh_tap").iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![tap_pid],
        "the group's process was not restarted"
    );

    // Killing the process restarts it, with every host of the group.
    // SAFETY: signalling a process of the Rill under test.
    unsafe { libc::kill(tap_pid as i32, libc::SIGKILL) };
    assert!(
        wait_until(Duration::from_secs(30), || procs("ssh_tap")
            .iter()
            .any(|p| p.0 != tap_pid)),
        "the group's ssh_tap was not restarted"
    );
    for (h, p) in HOSTS.iter().zip(&paths) {
        append(p, &lines(h, "after", 30));
    }
    for h in HOSTS {
        let word = format!("{h}after");
        assert_eq!(
            wait_for(Duration::from_secs(30), || rill
                .count(&word, &[])
                .filter(|&n| n == 30)),
            Some(30),
            "{word} after the restart:\n{}",
            rill.log()
        );
    }

    // Stopped: nothing of it is left, here or on the servers.
    let sessions = remote_sessions(&user, &remote.path.display().to_string());
    assert!(rill.stop(Duration::from_secs(10)).is_some());
    assert!(
        wait_until(Duration::from_secs(5), || local_processes_mentioning(
            &config
        )
        .is_empty()),
        "{:?}",
        local_processes_mentioning(&config)
    );
    assert!(
        wait_until(Duration::from_secs(5), || remote_processes_in(
            &user, &sessions
        )
        .is_empty()),
        "{:?}",
        remote_processes_in(&user, &sessions)
    );
    drop(sshds);
}
