//! Reading what a script prints: [`Output`] turns its stdout into a header,
//! file bytes and control records, for both of its modes (see [`super`]);
//! [`StderrLines`] turns its stderr into control records and complaints.
//!
//! - [`StreamFilter`] (stream mode, [`super::stream`]): the bytes are the
//!   file's, except for what reads like a message of GNU tail's about the
//!   file, lifted out where it stands as a [`Piece::Claim`].
//! - [`ChunkDecoder`] (chunk mode): `RILL-CHUNK <off> <len>`, the bytes,
//!   `RILL-OK`, and control lines in between. A chunk is handed out only
//!   once its `RILL-OK` arrived.
//!
//! All are pure: bytes in, [`Piece`]s out; no I/O. The tap and the tests
//! of the scripts decode through the same [`Output`].

use super::params::CHUNK_BYTES;
use super::stream::{Claim, StreamFilter};
use crate::checkpoint::Verify;

/// What the script said, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// The first line (or lines, after `RILL-WAIT`): which file, from where.
    Header(Header),
    /// The file's next bytes.
    Data(Vec<u8>),
    Control(Control),
    /// Stream mode: a message of tail's, or the file's bytes reading like
    /// one; nothing after it is this reader's to take.
    Claim(Claim),
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
    /// The claim the previous reader of the file stopped at.
    pass: Option<Claim>,
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
    /// `pass`: the claim the previous reader of the file stopped at, if any
    /// ([`super::stream`]).
    pub fn new(pass: Option<Claim>) -> Self {
        Output {
            pass,
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
                        Mode::Stream => {
                            Body::Stream(Box::new(StreamFilter::new(start, self.pass.take())))
                        }
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
