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

/// What `rill tail --json` streamed of one log (`line/<host>/<log>`), in
/// order: the messages, each with its `body`, `path`, offsets.
pub struct Live {
    tail: Tail,
    topic: String,
    pub lines: Vec<Value>,
}

impl Live {
    /// Starts `rill tail` on the log and waits until it is subscribed: the
    /// tap publishes `status/` every second through the same proxy, so once
    /// one arrives the `line/` subscription sent with it has arrived too.
    pub fn subscribe(rill: &Rill, host: &str, log: &str, within: Duration) -> Live {
        let topic = format!("line/{host}/{log}");
        let status = format!("status/{host}");
        let mut live = Live {
            tail: rill.tail(&[&topic, &status]),
            topic,
            lines: Vec::new(),
        };
        let mut subscribed = false;
        live.wait(within, |_, v| {
            subscribed |= v["topic"] == status.as_str();
            subscribed
        });
        assert!(subscribed, "tail never connected");
        live
    }

    /// Collects messages until `done` (given the lines so far and the
    /// latest message) holds, for up to `within`.
    pub fn wait(&mut self, within: Duration, mut done: impl FnMut(&[Value], &Value) -> bool) {
        let end = Instant::now() + within;
        let mut latest = Value::Null;
        while !done(&self.lines, &latest) && Instant::now() < end {
            if let Ok(v) = self.tail.rx.recv_timeout(Duration::from_millis(50)) {
                if v["topic"] == self.topic.as_str() {
                    self.lines.push(v.clone());
                }
                latest = v;
            }
        }
    }

    /// Takes whatever the tail still has queued.
    pub fn drain(&mut self) {
        for v in self.tail.rx.try_iter() {
            if v["topic"] == self.topic.as_str() {
                self.lines.push(v);
            }
        }
    }

    /// The lines' text, in order.
    pub fn bodies(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|v| v["body"].as_str())
            .collect()
    }

    /// How many lines start with `prefix`.
    pub fn count_starting(&self, prefix: &str) -> usize {
        self.bodies()
            .iter()
            .filter(|b| b.starts_with(prefix))
            .count()
    }

    /// Every line streamed is one written, and none twice.
    pub fn assert_each_once(&self, written: &[String]) {
        let mut seen = std::collections::HashSet::new();
        for b in self.bodies() {
            assert!(
                written.iter().any(|w| w == b),
                "streamed but never written: {b:?}"
            );
            assert!(seen.insert(b), "streamed twice: {b:?}");
        }
    }
}
