//! A running `rill tail --json`, its messages on a channel.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{bin, Rill};

impl Rill {
    /// Starts `rill tail --json TOPICS...`; its lines arrive on the channel.
    pub fn tail(&self, topics: &[&str]) -> Tail {
        let mut child = Command::new(bin("rill"))
            .arg("tail")
            .arg("--json")
            .arg("--config")
            .arg(&self.config)
            .args(topics)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        Tail { child, rx }
    }
}

/// A running `rill tail --json`.
pub struct Tail {
    child: Child,
    pub rx: mpsc::Receiver<Value>,
}

impl Tail {
    /// Collects messages until `done` says so or `deadline` passes.
    pub fn collect_until(
        &self,
        deadline: Duration,
        mut done: impl FnMut(&[Value]) -> bool,
    ) -> Vec<Value> {
        let end = Instant::now() + deadline;
        let mut got = Vec::new();
        while Instant::now() < end && !done(&got) {
            if let Ok(v) = self.rx.recv_timeout(Duration::from_millis(50)) {
                got.push(v);
                while let Ok(v) = self.rx.try_recv() {
                    got.push(v);
                }
            }
        }
        got
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
