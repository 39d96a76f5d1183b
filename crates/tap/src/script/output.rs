//! Reading what a script prints: [`Output`] turns its stdout into a header,
//! file bytes and control records, for both of its modes (see [`super`]);
//! [`StderrLines`] turns its stderr into control records and complaints.
//!
//! - [`StreamFilter`] (stream mode): the bytes are the file's, except for
//!   messages GNU tail prints about the file (`tail: ... <nonce path> ...\n`),
//!   which are lifted out where they stand. "file truncated" becomes
//!   [`Control::Truncated`] exactly between the old bytes and the new.
//! - [`ChunkDecoder`] (chunk mode): `RILL-CHUNK <off> <len>`, the bytes,
//!   `RILL-OK`, and control lines in between. A chunk is handed out only
//!   once its `RILL-OK` arrived.
//!
//! All are pure: bytes in, [`Piece`]s out; no I/O. The tap and the tests
//! of the scripts decode through the same [`Output`].

use memchr::memmem;

use super::params::{Nonce, CHUNK_BYTES};
use crate::checkpoint::Verify;

/// What the script said, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// The first line (or lines, after `RILL-WAIT`): which file, from where.
    Header(Header),
    /// The file's next bytes.
    Data(Vec<u8>),
    Control(Control),
    /// Something tail printed about the file other than a truncation (an
    /// I/O error, say): not file bytes; shown in the log's status.
    TailSaid(String),
}

/// What went wrong in a chunk stream: the reader is closed and reopened
/// from the last complete chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unexpected line in the chunk stream: {0:?}")]
    Unexpected(String),
    #[error("chunk at offset {got} where {want} was expected")]
    OutOfOrder { got: u64, want: u64 },
}

/// How every tail message starts.
const TAIL: &[u8] = b"tail: ";

/// Stream mode: passes file bytes through and lifts out tail's messages.
#[derive(Debug)]
pub struct StreamFilter {
    nonce: memmem::Finder<'static>,
    nonce_len: usize,
    /// Bytes that may be the start of a message, held until it is clear.
    held: Vec<u8>,
}

impl StreamFilter {
    pub fn new(nonce: &Nonce) -> Self {
        let bytes = nonce.as_str().as_bytes().to_vec();
        StreamFilter {
            nonce_len: bytes.len(),
            nonce: memmem::Finder::new(&bytes).into_owned(),
            held: Vec::new(),
        }
    }

    pub fn feed(&mut self, data: &[u8], out: &mut Vec<Piece>) {
        if self.held.is_empty() && self.nonce.find(data).is_none() {
            // Nearly every read: no message, nothing held. One copy.
            let ready = data.len() - undecided_suffix(data);
            push_data(out, data[..ready].to_vec());
            self.held.extend_from_slice(&data[ready..]);
            return;
        }
        self.held.extend_from_slice(data);
        while let Some(at) = self.nonce.find(&self.held) {
            // The message starts at the last "tail: " before the nonce on
            // the same line; the nonce anywhere else is just data.
            let line_start = memchr::memrchr(b'\n', &self.held[..at]).map_or(0, |i| i + 1);
            let Some(start) =
                memmem::rfind(&self.held[line_start..at], TAIL).map(|i| line_start + i)
            else {
                let end = at + self.nonce_len;
                push_data(out, take_front(&mut self.held, end));
                continue;
            };
            let Some(nl) = memchr::memchr(b'\n', &self.held[at..]).map(|i| at + i) else {
                // The message is still arriving.
                push_data(out, take_front(&mut self.held, start));
                return;
            };
            push_data(out, take_front(&mut self.held, start));
            let message = take_front(&mut self.held, nl - start + 1);
            let text = String::from_utf8_lossy(&message).trim_end().to_owned();
            out.push(if text.ends_with(": file truncated") {
                Piece::Control(Control::Truncated)
            } else {
                Piece::TailSaid(text)
            });
        }
        let ready = self.held.len() - undecided_suffix(&self.held);
        push_data(out, take_front(&mut self.held, ready));
    }

    /// Hands out held bytes as data (the file has been quiet: they were
    /// never a message).
    pub fn flush(&mut self, out: &mut Vec<Piece>) {
        push_data(out, std::mem::take(&mut self.held));
    }
}

/// How many trailing bytes of `h` could still turn out to begin a
/// message: from a `tail: ` after the last newline on, or a trailing piece
/// of `tail: ` itself.
fn undecided_suffix(h: &[u8]) -> usize {
    let line_start = memchr::memrchr(b'\n', h).map_or(0, |i| i + 1);
    if let Some(i) = memmem::rfind(&h[line_start..], TAIL) {
        return h.len() - (line_start + i);
    }
    (1..TAIL.len())
        .rev()
        .find(|&k| h.len() >= k && h.ends_with(&TAIL[..k]))
        .unwrap_or(0)
}

/// The first `n` bytes of `v`, leaving the rest: the rest is copied (it is
/// the short part, what may still be a message), the front keeps the
/// allocation.
fn take_front(v: &mut Vec<u8>, n: usize) -> Vec<u8> {
    let rest = v.split_off(n);
    std::mem::replace(v, rest)
}

fn push_data(out: &mut Vec<Piece>, bytes: Vec<u8>) {
    if !bytes.is_empty() {
        out.push(Piece::Data(bytes));
    }
}

/// Chunk mode: `RILL-CHUNK <off> <len>\n<bytes>RILL-OK\n` and control lines.
#[derive(Debug)]
pub struct ChunkDecoder {
    /// The offset the next chunk must start at.
    next: u64,
    line: Vec<u8>,
    state: ChunkState,
}

#[derive(Debug)]
enum ChunkState {
    /// Between records: reading a line.
    Line,
    /// Reading `len` bytes of the chunk at `off`.
    Bytes { len: usize, buf: Vec<u8> },
    /// The chunk's bytes are in; its `RILL-OK` line is due.
    Ok { buf: Vec<u8> },
}

impl ChunkDecoder {
    /// `start`: the offset the header announced.
    pub fn new(start: u64) -> Self {
        ChunkDecoder {
            next: start,
            line: Vec::new(),
            state: ChunkState::Line,
        }
    }

    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<Piece>) -> Result<(), FrameError> {
        while !data.is_empty() {
            match &mut self.state {
                ChunkState::Bytes { len, buf } => {
                    let take = (*len - buf.len()).min(data.len());
                    buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if buf.len() == *len {
                        self.state = ChunkState::Ok {
                            buf: std::mem::take(buf),
                        };
                    }
                }
                ChunkState::Line | ChunkState::Ok { .. } => {
                    let Some(nl) = memchr::memchr(b'\n', data) else {
                        self.line.extend_from_slice(data);
                        return Ok(());
                    };
                    self.line.extend_from_slice(&data[..nl]);
                    data = &data[nl + 1..];
                    let line =
                        String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
                    self.take_line(&line, out)?;
                }
            }
        }
        Ok(())
    }

    fn take_line(&mut self, line: &str, out: &mut Vec<Piece>) -> Result<(), FrameError> {
        let unexpected = || FrameError::Unexpected(line.to_owned());
        match std::mem::replace(&mut self.state, ChunkState::Line) {
            ChunkState::Ok { buf } => {
                if line != "RILL-OK" {
                    return Err(unexpected());
                }
                self.next += buf.len() as u64;
                push_data(out, buf);
            }
            ChunkState::Line => {
                if let Some(rest) = line.strip_prefix("RILL-CHUNK ") {
                    let mut w = rest.split(' ').map(|x| x.parse::<u64>().ok());
                    let (Some(Some(off)), Some(Some(len)), None) = (w.next(), w.next(), w.next())
                    else {
                        return Err(unexpected());
                    };
                    if off != self.next {
                        return Err(FrameError::OutOfOrder {
                            got: off,
                            want: self.next,
                        });
                    }
                    if len == 0 || len > CHUNK_BYTES {
                        return Err(unexpected());
                    }
                    self.state = ChunkState::Bytes {
                        len: len as usize,
                        buf: Vec::with_capacity(len as usize),
                    };
                } else {
                    let c = parse_control(line).ok_or_else(unexpected)?;
                    out.push(Piece::Control(c));
                }
            }
            ChunkState::Bytes { .. } => unreachable!("bytes are not read as lines"),
        }
        Ok(())
    }
}

/// A control line: on stderr (stream mode) or in the stream (chunks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// The path now names another inode, or nothing.
    Rotated,
    /// The file being drained stopped growing at this size.
    Final(u64),
    /// The file being read by name is no longer in the directory.
    Gone,
    /// The file shrank or its first bytes changed: it was truncated.
    Truncated,
    /// The file grew to a full fingerprint: verify it by this from now on.
    Fingerprint(Verify),
    /// The file at the path is now this long (reported when it changes).
    Size(u64),
    /// The script is alive (once per interval, however quiet the file).
    Tick,
    /// The process that holds the file open as its fd 4, until the channel
    /// closes.
    Pid(u32),
}

/// Parses one control line; `None` for anything else (a real error message).
pub fn parse_control(line: &str) -> Option<Control> {
    let mut words = line.split_ascii_whitespace();
    let tag = words.next()?;
    let mut num = || words.next()?.parse::<u64>().ok();
    match tag {
        "RILL-ROTATED" => Some(Control::Rotated),
        "RILL-FINAL" => num().map(Control::Final),
        "RILL-GONE" => Some(Control::Gone),
        "RILL-TRUNCATED" => Some(Control::Truncated),
        "RILL-SIZE" => num().map(Control::Size),
        "RILL-TICK" => Some(Control::Tick),
        "RILL-PID" => num().and_then(|n| u32::try_from(n).ok()).map(Control::Pid),
        "RILL-FP" => {
            let len = num()?;
            let fp = u32::try_from(num()?).ok()?;
            Some(Control::Fingerprint(Verify { len, fp }))
        }
        _ => None,
    }
}

/// How the script sends the bytes after its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Stream,
    Chunks,
}

/// The script's first line(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The file does not exist yet (nor, with `dir_missing`, its folder);
    /// the script waits for it.
    Waiting { dir_missing: bool },
    /// Reading the file `dev`/`ino` from byte `start`.
    Following {
        dev: u64,
        ino: u64,
        verify: Verify,
        start: u64,
        mode: Mode,
    },
    /// (finish) The old file is not there any more.
    Gone,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("unexpected output from the follow script: {0:?}")]
pub struct HeaderError(pub String);

pub fn parse_header(line: &[u8]) -> Result<Header, HeaderError> {
    let text = String::from_utf8_lossy(line);
    let err = || HeaderError(text.clone().into_owned());
    match text.as_ref() {
        "RILL-WAIT" => return Ok(Header::Waiting { dir_missing: false }),
        "RILL-WAIT-DIR" => return Ok(Header::Waiting { dir_missing: true }),
        "RILL-GONE" => return Ok(Header::Gone),
        _ => {}
    }
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    let [tag, dev, ino, vn, fp, start, mode] = words[..] else {
        return Err(err());
    };
    if tag != "RILL" {
        return Err(err());
    }
    let num = |w: &str| w.parse::<u64>().map_err(|_| err());
    let mode = match mode {
        "stream" => Mode::Stream,
        "chunks" => Mode::Chunks,
        _ => return Err(err()),
    };
    Ok(Header::Following {
        dev: num(dev)?,
        ino: num(ino)?,
        verify: Verify {
            len: num(vn)?,
            fp: u32::try_from(num(fp)?).map_err(|_| err())?,
        },
        start: num(start)?,
        mode,
    })
}

/// What went wrong in a script's stdout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    /// The first line is not a header: the script did not run as written
    /// (no `sh`, a broken login shell). The connection is not to be trusted.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// A bad record after the header: the reader is reopened from the last
    /// complete line.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// A script's stdout: header lines, then the file in the header's mode.
#[derive(Debug)]
pub struct Output {
    nonce: Nonce,
    head: Vec<u8>,
    body: Option<Body>,
    /// `RILL-GONE` came instead of a header: nothing follows.
    gone: bool,
}

#[derive(Debug)]
enum Body {
    Stream(Box<StreamFilter>),
    Chunks(ChunkDecoder),
}

impl Output {
    /// `nonce`: the one the script was given (stream mode's tail messages
    /// name the file behind it).
    pub fn new(nonce: Nonce) -> Self {
        Output {
            nonce,
            head: Vec::new(),
            body: None,
            gone: false,
        }
    }

    /// Decodes `data`, the next bytes of stdout, into `out`.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<Piece>) -> Result<(), OutputError> {
        while self.body.is_none() {
            if self.gone {
                return Ok(());
            }
            let Some(nl) = memchr::memchr(b'\n', data) else {
                self.head.extend_from_slice(data);
                return Ok(());
            };
            self.head.extend_from_slice(&data[..nl]);
            data = &data[nl + 1..];
            let header = parse_header(&std::mem::take(&mut self.head))?;
            match header {
                Header::Following { mode, start, .. } => {
                    self.body = Some(match mode {
                        Mode::Stream => Body::Stream(Box::new(StreamFilter::new(&self.nonce))),
                        Mode::Chunks => Body::Chunks(ChunkDecoder::new(start)),
                    });
                }
                Header::Gone => self.gone = true,
                Header::Waiting { .. } => {}
            }
            out.push(Piece::Header(header));
        }
        if data.is_empty() {
            return Ok(());
        }
        match self.body.as_mut() {
            Some(Body::Stream(filter)) => filter.feed(data, out),
            Some(Body::Chunks(d)) => d.feed(data, out)?,
            None => {}
        }
        Ok(())
    }

    /// Hands out bytes held back as a possible tail message (stream mode;
    /// the file has been quiet, so they were never one).
    pub fn flush(&mut self, out: &mut Vec<Piece>) {
        if let Some(Body::Stream(filter)) = self.body.as_mut() {
            filter.flush(out);
        }
    }
}

/// What one line of a script's stderr says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    Control(Control),
    /// Anything else: a real error message of a command.
    Complaint(String),
}

/// A script's stderr, cut into lines.
#[derive(Debug, Default)]
pub struct StderrLines {
    buf: Vec<u8>,
}

impl StderrLines {
    /// Takes the next bytes of stderr; returns what each complete line says.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Said> {
        self.buf.extend_from_slice(data);
        let mut said = Vec::new();
        while let Some(nl) = memchr::memchr(b'\n', &self.buf) {
            let line = String::from_utf8_lossy(&self.buf[..nl]).trim().to_owned();
            self.buf.drain(..=nl);
            said.push(match parse_control(&line) {
                Some(c) => Said::Control(c),
                None => Said::Complaint(line),
            });
        }
        said
    }
}

/// The file bytes among `pieces`, joined (for tests of the decoders and
/// of the scripts).
#[cfg(test)]
pub fn data(pieces: &[Piece]) -> Vec<u8> {
    pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Data(d) => Some(d.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Verify;

    /// Feeds `input` in pieces of every size from 1 to 7 bytes and checks
    /// the result does not depend on how the bytes were cut.
    fn filtered(nonce: &Nonce, input: &[u8]) -> Vec<Piece> {
        let mut whole = Vec::new();
        let mut f = StreamFilter::new(nonce);
        f.feed(input, &mut whole);
        let norm = |ps: Vec<Piece>| {
            let mut out: Vec<Piece> = Vec::new();
            for p in ps {
                match (out.last_mut(), p) {
                    (Some(Piece::Data(a)), Piece::Data(b)) => a.extend(b),
                    (_, p) => out.push(p),
                }
            }
            out
        };
        for step in 1..=7 {
            let mut f = StreamFilter::new(nonce);
            let mut got = Vec::new();
            for c in input.chunks(step) {
                f.feed(c, &mut got);
            }
            assert_eq!(norm(got), norm(whole.clone()), "fed {step} bytes at a time");
        }
        norm(whole)
    }

    #[test]
    fn a_truncation_message_splits_old_bytes_from_new() {
        let nonce = Nonce::random();
        let msg = format!("tail: {}/dev/fd/4: file truncated\n", nonce.as_str());
        let input = [b"old1\nold-partial".as_slice(), msg.as_bytes(), b"new1\n"].concat();
        assert_eq!(
            filtered(&nonce, &input),
            vec![
                Piece::Data(b"old1\nold-partial".to_vec()),
                Piece::Control(Control::Truncated),
                Piece::Data(b"new1\n".to_vec()),
            ]
        );
        // Quoted names (spaces in the path) too.
        let msg = format!(
            "tail: '{}/var/log/a b.log': file truncated\n",
            nonce.as_str()
        );
        let input = [b"x\n".as_slice(), msg.as_bytes()].concat();
        assert_eq!(
            filtered(&nonce, &input),
            vec![
                Piece::Data(b"x\n".to_vec()),
                Piece::Control(Control::Truncated)
            ]
        );
    }

    #[test]
    fn log_lines_that_look_like_tail_messages_are_data() {
        let nonce = Nonce::random();
        let other = Nonce::random();
        let input = format!(
            "tail: /var/log/app.log: file truncated\ntail: {}/dev/fd/4: file truncated\nta",
            other.as_str()
        );
        let got = filtered(&nonce, input.as_bytes());
        // Everything but a trailing piece of "tail: " is data at once.
        assert_eq!(got, vec![Piece::Data(input[..input.len() - 2].into())]);
        let mut f = StreamFilter::new(&nonce);
        let mut out = Vec::new();
        f.feed(input.as_bytes(), &mut out);
        f.flush(&mut out);
        assert_eq!(data(&out), input.as_bytes());
    }

    #[test]
    fn other_tail_messages_are_lifted_out_not_indexed() {
        let nonce = Nonce::random();
        let msg = format!(
            "tail: error reading '{}/dev/fd/4': Input/output error\n",
            nonce.as_str()
        );
        let input = [b"a\n".as_slice(), msg.as_bytes(), b"b\n"].concat();
        let got = filtered(&nonce, &input);
        assert_eq!(data(&got), b"a\nb\n");
        assert!(matches!(&got[1], Piece::TailSaid(t) if t.contains("Input/output error")));
    }

    #[test]
    fn chunks_come_out_only_when_confirmed_and_in_order() {
        let mut d = ChunkDecoder::new(10);
        let mut out = Vec::new();
        let stream = b"RILL-FP 64 77\nRILL-CHUNK 10 4\nab\ncRILL-OK\nRILL-ROTATED 5\nRILL-CHUNK 14 2\nxyRILL-OK\nRILL-FINAL 16\n";
        for c in stream.chunks(3) {
            d.feed(c, &mut out).unwrap();
        }
        assert_eq!(
            out,
            vec![
                Piece::Control(Control::Fingerprint(Verify { len: 64, fp: 77 })),
                Piece::Data(b"ab\nc".to_vec()),
                Piece::Control(Control::Rotated),
                Piece::Data(b"xy".to_vec()),
                Piece::Control(Control::Final(16)),
            ]
        );
        // A chunk that never got its RILL-OK is never handed out.
        let mut d = ChunkDecoder::new(0);
        let mut out = Vec::new();
        d.feed(b"RILL-CHUNK 0 5\nabc", &mut out).unwrap();
        assert!(out.is_empty());
        // A short chunk runs into the next line: refused, not misread.
        let mut d = ChunkDecoder::new(0);
        assert!(d
            .feed(b"RILL-CHUNK 0 5\nabRILL-TRUNCATED 2\n", &mut Vec::new())
            .is_err());
        assert_eq!(
            ChunkDecoder::new(3).feed(b"RILL-CHUNK 0 1\n", &mut Vec::new()),
            Err(FrameError::OutOfOrder { got: 0, want: 3 })
        );
        assert!(ChunkDecoder::new(0)
            .feed(b"sh: 1: oops\n", &mut Vec::new())
            .is_err());
    }
}
