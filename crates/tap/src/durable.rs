//! The tap's side of the durable path (protocol: `rill_proto::ingest`).
//!
//! Every line read is numbered and kept in a window until the parser's
//! receipt says it is committed to the index; the window is sent in order
//! and sent again from wherever the parser says lines went missing. The
//! window is bounded: when it is full the tap stops reading its channels, so
//! a slow or stopped parser makes the remote file the buffer instead of the
//! tap's memory. Checkpoints are taken from the window: a file's resume
//! point is its oldest line not yet committed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rill_bus::socket::{self, Role};
use rill_proto::ingest::{self, Envelope, Hello, Receipt};
use rill_proto::FileId;
use tracing::{debug, info, warn};

/// A hello goes out this often while lines wait for their receipt...
const HELLO_BUSY: Duration = Duration::from_secs(1);
/// ... and this often otherwise.
const HELLO_IDLE: Duration = Duration::from_secs(5);

/// One line the parser has not confirmed yet.
struct Pending {
    seq: u64,
    /// Which of the tap's logs (index into its list) and file it is from.
    log: usize,
    file_id: FileId,
    offset: u64,
    meta: Vec<u8>,
    bytes: Vec<u8>,
}

/// Something a receipt told the tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// The index's generation, as the parser reports it.
    Generation(String),
}

pub struct Durable {
    socket: zmq::Socket,
    host: String,
    epoch: String,
    next_seq: u64,
    /// Unconfirmed lines, oldest first.
    window: VecDeque<Pending>,
    bytes: usize,
    max_lines: usize,
    /// The next line to hand to the socket.
    send_from: u64,
    last_hello: Option<Instant>,
    parser: Option<String>,
    generation: Option<String>,
    /// Lines confirmed since the tap started.
    pub confirmed: u64,
}

impl Durable {
    pub fn connect(
        ctx: &zmq::Context,
        endpoint: &str,
        host: &str,
        max_lines: usize,
    ) -> anyhow::Result<Self> {
        let s = socket::open(ctx, zmq::DEALER, Role::Ingest)?;
        socket::connect(&s, endpoint)?;
        Ok(Durable {
            socket: s,
            host: host.to_owned(),
            epoch: uuid::Uuid::new_v4().to_string(),
            next_seq: 0,
            window: VecDeque::new(),
            bytes: 0,
            max_lines: max_lines.max(1),
            send_from: 0,
            last_hello: None,
            parser: None,
            generation: None,
            confirmed: 0,
        })
    }

    pub fn socket(&self) -> &zmq::Socket {
        &self.socket
    }

    /// Names this run of the tap: the `epoch` of every line it sends, live
    /// and durable.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// No room for more lines: stop reading until receipts arrive.
    pub fn full(&self) -> bool {
        self.window.len() >= self.max_lines || self.bytes >= ingest::MAX_WINDOW_BYTES
    }

    /// Lines the socket did not take yet (its high-water mark was reached).
    pub fn unsent(&self) -> bool {
        self.send_from < self.next_seq
    }

    /// Lines waiting for their receipt.
    pub fn unconfirmed(&self) -> usize {
        self.window.len()
    }

    fn window_start(&self) -> u64 {
        self.window.front().map_or(self.next_seq, |p| p.seq)
    }

    /// Takes a line for the index.
    pub fn push(&mut self, log: usize, file_id: FileId, offset: u64, meta: Vec<u8>, bytes: &[u8]) {
        self.bytes += meta.len() + bytes.len();
        self.window.push_back(Pending {
            seq: self.next_seq,
            log,
            file_id,
            offset,
            meta,
            bytes: bytes.to_vec(),
        });
        self.next_seq += 1;
        self.send();
    }

    /// Hands unsent lines to the socket until it is full.
    fn send(&mut self) {
        let start = self.window_start();
        while self.send_from < self.next_seq {
            let p = &self.window[(self.send_from - start) as usize];
            let env = Envelope {
                seq: p.seq,
                window_start: start,
            };
            let env = serde_json::to_vec(&env).expect("an envelope serialises");
            let frames: [&[u8]; 4] = [ingest::LINE, &p.meta, &p.bytes, &env];
            match self.socket.send_multipart(frames, zmq::DONTWAIT) {
                Ok(()) => self.send_from += 1,
                Err(zmq::Error::EAGAIN) => break,
                Err(e) => {
                    warn!(error = %e, "could not hand a line to the parser");
                    break;
                }
            }
        }
    }

    /// Reads receipts, sends what is due, says hello when it is time.
    pub fn pump(&mut self) -> anyhow::Result<Vec<Heard>> {
        let mut heard = Vec::new();
        while let Ok(frames) = self.socket.recv_multipart(zmq::DONTWAIT) {
            let Some(body) = frames.last() else { continue };
            match serde_json::from_slice::<Receipt>(body) {
                Ok(r) => self.take(r, &mut heard),
                Err(e) => warn!(error = %e, "ignoring a malformed receipt from the parser"),
            }
        }
        self.send();
        let every = if self.window.is_empty() {
            HELLO_IDLE
        } else {
            HELLO_BUSY
        };
        if self.last_hello.is_none_or(|t| t.elapsed() >= every) {
            let hello = Hello {
                host: self.host.clone(),
                epoch: self.epoch.clone(),
                window_start: self.window_start(),
                sent: self.send_from,
            };
            let json = serde_json::to_vec(&hello)?;
            if self
                .socket
                .send_multipart([ingest::HELLO, &json[..]], zmq::DONTWAIT)
                .is_ok()
            {
                self.last_hello = Some(Instant::now());
            }
        }
        Ok(heard)
    }

    fn take(&mut self, r: Receipt, heard: &mut Vec<Heard>) {
        if r.tap_epoch != self.epoch {
            return;
        }
        if self.parser.as_deref() != Some(&r.parser) {
            info!(parser = %r.parser, "parser (re)started; it tells what it has");
            self.parser = Some(r.parser.clone());
        }
        if self.generation.as_deref() != Some(&r.generation) {
            self.generation = Some(r.generation.clone());
            heard.push(Heard::Generation(r.generation.clone()));
        }
        while self.window.front().is_some_and(|p| p.seq < r.committed) {
            let p = self.window.pop_front().expect("checked");
            self.bytes -= p.meta.len() + p.bytes.len();
            self.confirmed += 1;
        }
        if self.send_from < self.window_start() {
            self.send_from = self.window_start();
        }
        if let Some(from) = r.resend_from {
            let from = from.clamp(self.window_start(), self.next_seq);
            if from < self.send_from {
                debug!(
                    from,
                    to = self.send_from,
                    "parser is missing lines; sending them again"
                );
                self.send_from = from;
            }
        }
    }

    /// The offset of the oldest unconfirmed line of `file_id` in log `log`.
    pub fn first_unconfirmed(&self, log: usize, file_id: FileId) -> Option<u64> {
        self.window
            .iter()
            .find(|p| p.log == log && p.file_id == file_id)
            .map(|p| p.offset)
    }

    /// Forgets every unconfirmed line and starts a new run (after the index
    /// was replaced the files are read again anyway).
    pub fn restart(&mut self) {
        self.window.clear();
        self.bytes = 0;
        self.epoch = uuid::Uuid::new_v4().to_string();
        self.next_seq = 0;
        self.send_from = 0;
        self.last_hello = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake parser on a ROUTER socket: the tap's side against it.
    struct Parser {
        socket: zmq::Socket,
        route: Vec<u8>,
    }

    impl Parser {
        fn recv(&mut self) -> Vec<Vec<u8>> {
            assert!(socket::readable(&self.socket, Duration::from_secs(5)).unwrap());
            let mut f = self.socket.recv_multipart(0).unwrap();
            self.route = f.remove(0);
            f
        }

        /// The next line's envelope (skipping hellos).
        fn next_line(&mut self) -> Envelope {
            loop {
                let f = self.recv();
                if f[0] == ingest::LINE {
                    return serde_json::from_slice(&f[3]).unwrap();
                }
            }
        }

        fn receipt(&self, committed: u64, resend_from: Option<u64>, epoch: &str) {
            let r = Receipt {
                generation: "g1".into(),
                parser: "p1".into(),
                tap_epoch: epoch.into(),
                committed,
                resend_from,
            };
            self.socket
                .send_multipart([self.route.clone(), serde_json::to_vec(&r).unwrap()], 0)
                .unwrap();
        }
    }

    fn pair(max_lines: usize) -> (Durable, Parser) {
        let ctx = zmq::Context::new();
        let dir = tempfile::tempdir().unwrap();
        let ep = format!("ipc://{}/ingest.sock", dir.path().display());
        let router = socket::open(&ctx, zmq::ROUTER, Role::Ingest).unwrap();
        socket::bind(&router, &ep).unwrap();
        let d = Durable::connect(&ctx, &ep, "web01", max_lines).unwrap();
        std::mem::forget(dir);
        (
            d,
            Parser {
                socket: router,
                route: Vec::new(),
            },
        )
    }

    fn id(ino: u64) -> FileId {
        FileId {
            dev: 1,
            ino,
            fingerprint: 2,
        }
    }

    fn wait_receipt(d: &mut Durable, until: impl Fn(&Durable) -> bool) -> Vec<Heard> {
        let end = Instant::now() + Duration::from_secs(5);
        let mut heard = Vec::new();
        while !until(d) {
            assert!(Instant::now() < end, "no receipt");
            socket::readable(&d.socket, Duration::from_millis(50)).unwrap();
            heard.extend(d.pump().unwrap());
        }
        heard
    }

    #[test]
    fn lines_stay_until_committed_and_name_the_resume_point() {
        let (mut d, mut p) = pair(3);
        for (i, off) in [0u64, 10, 20].iter().enumerate() {
            d.push(0, id(7), *off, b"{}".to_vec(), format!("l{i}").as_bytes());
        }
        assert!(d.full(), "the window holds at most 3 lines");
        for want in 0..3 {
            let e = p.next_line();
            assert_eq!((e.seq, e.window_start), (want, 0));
        }
        assert_eq!(d.first_unconfirmed(0, id(7)), Some(0));
        assert_eq!(d.first_unconfirmed(0, id(8)), None);
        p.receipt(2, None, &d.epoch.clone());
        let heard = wait_receipt(&mut d, |d| d.unconfirmed() == 1);
        assert_eq!(heard, vec![Heard::Generation("g1".into())]);
        assert!(!d.full());
        assert_eq!(d.first_unconfirmed(0, id(7)), Some(20));
        assert_eq!(d.confirmed, 2);
        // A receipt for another run of the tap changes nothing.
        p.receipt(3, None, "someone-else");
        std::thread::sleep(Duration::from_millis(100));
        d.pump().unwrap();
        assert_eq!(d.unconfirmed(), 1);
    }

    #[test]
    fn lost_lines_are_sent_again_from_where_the_parser_asks() {
        let (mut d, mut p) = pair(10);
        for off in 0..4u64 {
            d.push(0, id(7), off * 10, b"{}".to_vec(), b"x");
        }
        for want in 0..4 {
            assert_eq!(p.next_line().seq, want);
        }
        // The parser restarted and has nothing after 1: it asks for 1 on.
        let epoch = d.epoch.clone();
        p.receipt(1, Some(1), &epoch);
        wait_receipt(&mut d, |d| d.unconfirmed() == 3);
        for want in 1..4 {
            let e = p.next_line();
            assert_eq!((e.seq, e.window_start), (want, 1));
        }
    }

    #[test]
    fn a_new_run_forgets_the_window() {
        let (mut d, _p) = pair(10);
        d.push(0, id(7), 0, b"{}".to_vec(), b"x");
        let old = d.epoch.clone();
        d.restart();
        assert_ne!(d.epoch, old);
        assert_eq!(d.unconfirmed(), 0);
        assert_eq!(d.first_unconfirmed(0, id(7)), None);
    }
}
