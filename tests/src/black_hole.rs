//! A TCP port on loopback cut off by iptables, as a partitioned network is.

use std::process::Command;

/// Packets to and from a TCP port on loopback silently dropped (no reset),
/// as a partitioned network does, until dropped.
pub struct BlackHole {
    port: u16,
}

impl BlackHole {
    pub fn start(port: u16) -> BlackHole {
        let hole = BlackHole { port };
        for dir in ["--dport", "--sport"] {
            hole.iptables("-I", dir);
        }
        hole
    }

    fn iptables(&self, action: &str, dir: &str) {
        let out = Command::new("iptables")
            .args(["-w", action, "INPUT", "-p", "tcp", dir])
            .arg(self.port.to_string())
            .args(["-j", "DROP"])
            .output()
            .expect("iptables is not installed; run tests/install-deps.sh");
        assert!(
            out.status.success() || action == "-D",
            "iptables {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        for dir in ["--dport", "--sport"] {
            self.iptables("-D", dir);
        }
    }
}
