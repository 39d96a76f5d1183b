//! [`TestEtcd`]: a real etcd cluster (Debian's `etcd-server`) of one or
//! more nodes on free loopback ports, each with its own data dir in a
//! temp dir; nodes can be killed and started again.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_until, which};

/// One node: its name, client and peer ports, and process while running.
struct Node {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

/// A running etcd cluster; every node is killed when dropped.
pub struct TestEtcd {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

impl TestEtcd {
    /// Starts `n` nodes and waits until the cluster answers (a leader is
    /// elected) on every node's client URL.
    pub fn start(n: usize) -> TestEtcd {
        let dir = tempfile::Builder::new()
            .prefix("rill-etcd")
            .tempdir()
            .unwrap();
        let nodes = (0..n)
            .map(|i| Node {
                name: format!("etcd{i}"),
                client: free_port(),
                peer: free_port(),
                child: None,
            })
            .collect();
        let mut etcd = TestEtcd { dir, nodes };
        for i in 0..n {
            etcd.spawn(i);
        }
        for i in 0..n {
            etcd.wait_answering(i);
        }
        etcd
    }

    /// Every node's client URL (`http://127.0.0.1:PORT`).
    pub fn urls(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.url(i)).collect()
    }

    /// Node `i`'s client URL.
    pub fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].client)
    }

    /// `kill -9` of node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts node `i` again (on its data dir) and waits until it answers.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_answering(i);
    }

    /// `etcdctl ARGS` against every node: its stdout; panics with its
    /// stderr if it fails.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let out = etcdctl(&self.urls().join(",")).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What `etcdctl ARGS` (a command that never ends by itself, such as
    /// `watch`) printed within `within`.
    pub fn etcdctl_for(&self, args: &[&str], within: Duration) -> String {
        use std::io::Read;
        let mut child = etcdctl(&self.urls().join(","))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        std::thread::sleep(within);
        let _ = child.kill();
        let _ = child.wait();
        reader.join().unwrap_or_default()
    }

    /// The log of node `i`.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.log", self.nodes[i].name))
    }

    fn spawn(&mut self, i: usize) {
        let cluster: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("{}=http://127.0.0.1:{}", n.name, n.peer))
            .collect();
        let node = &self.nodes[i];
        let data = self.dir.path().join(&node.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .unwrap();
        let client = format!("http://127.0.0.1:{}", node.client);
        let peer = format!("http://127.0.0.1:{}", node.peer);
        let child = Command::new(which("etcd"))
            .arg("--name")
            .arg(&node.name)
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &cluster.join(",")])
            .args(["--initial-cluster-token", "rill-test"])
            // Quick elections on loopback: a killed leader is replaced
            // within about a second.
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.nodes[i].child = Some(child);
    }

    /// Waits until node `i` serves reads that need a leader.
    fn wait_answering(&self, i: usize) {
        let url = self.url(i);
        let ok = wait_until(Duration::from_secs(30), || {
            etcdctl(&url)
                .args(["--command-timeout", "2s", "endpoint", "health"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        assert!(
            ok,
            "etcd node {i} did not answer within 30 s; its log:\n{}",
            self.log(i)
        );
    }
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// `etcdctl` (v3 API) against `endpoints` (comma-separated URLs).
fn etcdctl(endpoints: &str) -> Command {
    let mut c = Command::new(which("etcdctl"));
    c.env("ETCDCTL_API", "3").args(["--endpoints", endpoints]);
    c
}
