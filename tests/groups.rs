//! `tap.hosts_per_process`: several hosts followed by one ssh_tap process,
//! each on a thread that restarts by itself. One host's server going down
//! and coming back (its session server failing with it) neither stops nor
//! restarts the others, nor the process.

use std::time::Duration;

use rill_e2e::*;

const HOSTS: [&str; 3] = ["h1", "h2", "h3"];

/// `n` lines for host `host` in the phase `word`: each holds the one token
/// `<host><word>` so that a count finds them.
fn lines(host: &str, word: &str, n: usize) -> String {
    (0..n).map(|i| format!("{host}{word} line {i}\n")).collect()
}

/// `names.len()` hosts, each its own sshd with one log `<host>.log` named
/// after it, all in one ssh_tap process (`hosts_per_process`); `extra`
/// lines go under a host's entry in the config.
struct Group {
    hosts: ManyHosts,
    rill: Rill,
}

impl Group {
    fn start(names: &[&str], extra: &[(&str, &str)]) -> Group {
        let hosts = ManyHosts::start(names);
        let mut rill = hosts.rill();
        rill.append_config(&format!("tap:\n  hosts_per_process: {}\n", names.len()));
        let mut text = std::fs::read_to_string(&rill.config).unwrap();
        for (host, yaml) in extra {
            let i = names.iter().position(|n| n == host).unwrap();
            let port = format!("    port: {}\n", hosts.sshds[i].port());
            assert!(text.contains(&port));
            text = text.replace(&port, &format!("{port}    {yaml}\n"));
        }
        std::fs::write(&rill.config, text).unwrap();
        rill.start();
        for h in names {
            if extra.iter().all(|(e, _)| e != h) {
                assert!(
                    rill.wait_following(h, Duration::from_secs(30)),
                    "{h} is not followed:\n{}",
                    rill.log()
                );
            }
        }
        Group { hosts, rill }
    }

    /// The Rill's processes running `bin`, with their command lines.
    fn procs(&self, bin: &str) -> Vec<(u32, String)> {
        let config = self.rill.config.display().to_string();
        local_processes_mentioning(&config)
            .into_iter()
            .filter(|(_, c)| c.contains(&format!("/{bin} ")))
            .collect()
    }

    /// How often `host`'s tap connected, by the supervisor's log.
    fn connects(&self, host: &str) -> usize {
        self.rill
            .log()
            .lines()
            .filter(|l| l.contains(&format!("host=\"{host}\"")) && l.contains(": connected "))
            .count()
    }

    /// Waits until `rill search --count WORD` is `n`.
    fn wait_count(&self, word: &str, n: u64, within: Duration) {
        assert_eq!(
            wait_for(within, || self.rill.count(word, &[]).filter(|&c| c == n)),
            Some(n),
            "{word}:\n{}",
            self.rill.log()
        );
    }
}

#[test]
fn three_hosts_share_one_tap_process_and_one_host_down_leaves_the_others_streaming() {
    let mut g = Group::start(&HOSTS, &[]);

    // One ssh_tap process for the three, kept by one robust_ssh_tap.
    let taps = g.procs("ssh_tap");
    assert_eq!(taps.len(), 1, "one ssh_tap: {taps:?}");
    assert!(
        taps[0].1.contains("--host h1 --host h2 --host h3"),
        "{}",
        taps[0].1
    );
    assert_eq!(g.procs("robust_ssh_tap").len(), 1);
    let tap_pid = taps[0].0;

    // Every host's lines reach the index.
    for h in HOSTS {
        g.hosts.append(h, &lines(h, "before", 50));
    }
    for h in HOSTS {
        g.wait_count(&format!("{h}before"), 50, Duration::from_secs(20));
    }

    // h2's server goes away, connections and all: status says so, h1 and
    // h3 go on, on the connections they had.
    let connects: Vec<usize> = HOSTS.iter().map(|h| g.connects(h)).collect();
    assert_eq!(connects, [1, 1, 1], "{}", g.rill.log());
    let serving = g.hosts.sshds[1].connection_pids();
    assert!(!serving.is_empty());
    g.hosts.sshds[1].stop();
    for pid in serving {
        // SAFETY: signalling the test's own sshd's processes.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    assert!(
        wait_until(Duration::from_secs(30), || g
            .rill
            .host_status("h2")
            .is_some_and(|s| s["connected"] == false && !s["error"].is_null())),
        "status does not report h2 down: {:?}",
        g.rill.host_status("h2")
    );
    for h in HOSTS {
        g.hosts.append(h, &lines(h, "during", 40));
    }
    for h in ["h1", "h3"] {
        g.wait_count(&format!("{h}during"), 40, Duration::from_secs(20));
    }

    // h2 comes back: its thread reconnects and reads what was written
    // meanwhile; the process is the same one throughout, and h1 and h3
    // never reconnected.
    g.hosts.sshds[1].restart().unwrap();
    g.wait_count("h2during", 40, Duration::from_secs(60));
    assert!(g.rill.wait_following("h2", Duration::from_secs(10)));
    assert_eq!(
        [g.connects("h1"), g.connects("h3")],
        [1, 1],
        "{}",
        g.rill.log()
    );
    assert!(g.connects("h2") >= 2, "h2 connected again");
    assert_eq!(
        g.procs("ssh_tap").iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![tap_pid],
        "the group's process was not restarted"
    );

    // Killing the process restarts it, with every host of the group.
    // SAFETY: signalling a process of the Rill under test.
    unsafe { libc::kill(tap_pid as i32, libc::SIGKILL) };
    assert!(
        wait_until(Duration::from_secs(30), || g
            .procs("ssh_tap")
            .iter()
            .any(|p| p.0 != tap_pid)),
        "the group's ssh_tap was not restarted"
    );
    for h in HOSTS {
        g.hosts.append(h, &lines(h, "after", 30));
    }
    for h in HOSTS {
        g.wait_count(&format!("{h}after"), 30, Duration::from_secs(30));
    }

    // Stopped: nothing of it is left, here or on the servers.
    let config = g.rill.config.display().to_string();
    let sessions = remote_sessions(&g.hosts.user, &g.hosts.remote.path.display().to_string());
    assert!(g.rill.stop(Duration::from_secs(10)).is_some());
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
            &g.hosts.user,
            &sessions
        )
        .is_empty()),
        "{:?}",
        remote_processes_in(&g.hosts.user, &sessions)
    );
}

/// What ends one host's tap ends that host's run only: h2's session server
/// cannot bind its endpoint (the port is taken), fails, and so ends h2's
/// tap again and again; h1, in the same process, keeps its one connection
/// and streams on.
#[test]
fn a_host_whose_session_server_fails_does_not_stop_the_others_of_its_process() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!(
        "sessions: {{endpoint: 'tcp://127.0.0.1:{}'}}",
        taken.local_addr().unwrap().port()
    );
    let g = Group::start(&["h1", "h2"], &[("h2", &endpoint)]);
    let failures = || g.rill.log().matches("session server failed").count();
    assert!(
        wait_until(Duration::from_secs(30), || failures() >= 2),
        "h2's session server did not fail twice: {}\n{}",
        failures(),
        g.rill.log()
    );
    assert!(
        g.rill
            .host_status("h2")
            .and_then(|s| s["error"].as_str().map(str::to_owned))
            .is_some_and(|e| e.contains("session server")),
        "status of h2: {:?}",
        g.rill.host_status("h2")
    );
    let tap = g.procs("ssh_tap");
    assert_eq!(tap.len(), 1, "{tap:?}");
    g.hosts.append("h1", &lines("h1", "meanwhile", 25));
    g.wait_count("h1meanwhile", 25, Duration::from_secs(20));
    assert_eq!(
        g.connects("h1"),
        1,
        "h1 kept its connection:\n{}",
        g.rill.log()
    );
    assert_eq!(
        g.procs("ssh_tap").iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![tap[0].0],
        "the process was not restarted"
    );
    drop(taken);
}
