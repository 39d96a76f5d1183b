//! iptables rules a test holds while it runs: a TCP port on loopback cut
//! off, as a partitioned network is, or opened to one user's processes.

use std::process::Command;

/// An iptables rule (inserted first in its chain), deleted when dropped.
pub struct IptablesRule {
    args: Vec<String>,
}

impl IptablesRule {
    /// Inserts the rule `args` (chain first, as after `iptables -I`).
    pub fn insert(args: &[&str]) -> IptablesRule {
        let rule = IptablesRule {
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        rule.iptables("-I");
        rule
    }

    fn iptables(&self, action: &str) {
        let out = Command::new("iptables")
            .args(["-w", action])
            .args(&self.args)
            .output()
            .expect("iptables is not installed; run tests/install-deps.sh");
        assert!(
            out.status.success() || action == "-D",
            "iptables {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for IptablesRule {
    fn drop(&mut self) {
        self.iptables("-D");
    }
}

/// Packets to and from a TCP port on loopback silently dropped (no reset),
/// as a partitioned network does, until dropped.
pub struct BlackHole {
    _rules: [IptablesRule; 2],
}

impl BlackHole {
    pub fn start(port: u16) -> BlackHole {
        let port = port.to_string();
        let rule = |dir| IptablesRule::insert(&["INPUT", "-p", "tcp", dir, &port, "-j", "DROP"]);
        BlackHole {
            _rules: [rule("--dport"), rule("--sport")],
        }
    }
}

/// New TCP connections to 127.0.0.1:`port` refused unless made by a
/// process of uid `allowed`, until dropped.
pub fn only_from(port: u16, allowed: u32) -> IptablesRule {
    let (port, uid) = (port.to_string(), allowed.to_string());
    IptablesRule::insert(&[
        "OUTPUT",
        "-o",
        "lo",
        "-p",
        "tcp",
        "-d",
        "127.0.0.1",
        "--dport",
        &port,
        "-m",
        "owner",
        "!",
        "--uid-owner",
        &uid,
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ])
}
