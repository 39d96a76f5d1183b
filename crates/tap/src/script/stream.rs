//! Stream mode's bytes: the file's, as `tail -c +N -f /dev/fd/4 2>&1`
//! prints them, with tail's own messages where tail wrote them.
//!
//! A message of GNU tail names the file as it was given, `/dev/fd/4`
//! (`tail: /dev/fd/4: file truncated`), and a log line can hold the same
//! text. Nothing secret tells them apart: anything on tail's command line is
//! in every user's `ps`. So a [`StreamFilter`] lifts out what reads like a
//! message as a [`Claim`] at its file offset, and the reader stops there;
//! the next reader resumes at the last line's end and settles it by what the
//! file holds at that offset: the claim's bytes (it was data: read on, the
//! filter lets that one through), or not (it was tail's: for a truncation,
//! the script reads the file again from 0). A log line can cost a reopen,
//! never a byte or a misplaced offset.

use memchr::memmem;

use super::output::Piece;

/// The name the follow script gives tail for the file it reads.
pub const TAIL_NAME: &[u8] = b"/dev/fd/4";

/// How every tail message starts.
const TAIL: &[u8] = b"tail: ";

/// No message of tail's about one file is longer.
const MAX_MESSAGE: usize = 512;

/// Something that reads like a message of tail's, at file offset `at`:
/// tail's, or the file's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub at: u64,
    /// The message, with its newline.
    pub text: Vec<u8>,
    /// It says `file truncated`.
    pub truncated: bool,
}

impl Claim {
    /// The follow script's test of a truncation claim: `AT:LEN:CKSUM` of
    /// the bytes the file holds at `at` if it was data (POSIX `cksum`).
    pub fn check(&self) -> String {
        format!("{}:{}:{}", self.at, self.text.len(), cksum(&self.text))
    }
}

/// POSIX `cksum`: CRC-32 (polynomial 0x04C11DB7, most significant bit
/// first) of the bytes and then of their length, complemented.
pub fn cksum(bytes: &[u8]) -> u32 {
    fn feed(crc: u32, b: u8) -> u32 {
        let mut c = crc ^ (u32::from(b) << 24);
        for _ in 0..8 {
            c = if c & 0x8000_0000 != 0 {
                (c << 1) ^ 0x04C1_1DB7
            } else {
                c << 1
            };
        }
        c
    }
    let mut crc = bytes.iter().fold(0, |c, &b| feed(c, b));
    let mut n = bytes.len() as u64;
    while n > 0 {
        crc = feed(crc, (n & 0xff) as u8);
        n >>= 8;
    }
    !crc
}

/// Stream mode: passes file bytes through and lifts out what reads like
/// one of tail's messages.
#[derive(Debug)]
pub struct StreamFilter {
    name: memmem::Finder<'static>,
    /// The file offset of the next byte handed out as data.
    next: u64,
    /// A claim the previous reader stopped at: if the same text stands at
    /// the same offset it is the file's bytes.
    pass: Option<Claim>,
    /// Bytes that may be the start of a message, held until it is clear.
    held: Vec<u8>,
}

impl StreamFilter {
    /// `start`: the file offset of the first byte; `pass`: the claim the
    /// previous reader stopped at, if any.
    pub fn new(start: u64, pass: Option<Claim>) -> Self {
        StreamFilter {
            name: memmem::Finder::new(TAIL_NAME).into_owned(),
            next: start,
            pass,
            held: Vec::new(),
        }
    }

    pub fn feed(&mut self, data: &[u8], out: &mut Vec<Piece>) {
        if self.held.is_empty() && self.name.find(data).is_none() {
            // Nearly every read: no message, nothing held. One copy.
            let ready = data.len() - undecided_suffix(data);
            self.push_data(out, data[..ready].to_vec());
            self.held.extend_from_slice(&data[ready..]);
            return;
        }
        self.held.extend_from_slice(data);
        let mut from = 0;
        while let Some(at) = self.name.find(&self.held[from..]).map(|i| from + i) {
            // A message starts at the last "tail: " before the name on the
            // same line and ends at the line's end.
            let line_start = memchr::memrchr(b'\n', &self.held[..at]).map_or(0, |i| i + 1);
            let Some(start) =
                memmem::rfind(&self.held[line_start..at], TAIL).map(|i| line_start + i)
            else {
                from = at + TAIL_NAME.len();
                continue;
            };
            let Some(nl) = memchr::memchr(b'\n', &self.held[at..]).map(|i| at + i) else {
                if self.held.len() - start > MAX_MESSAGE {
                    from = at + TAIL_NAME.len();
                    continue;
                }
                // The message is still arriving.
                let front = take_front(&mut self.held, start);
                self.push_data(out, front);
                return;
            };
            let text = &self.held[start..=nl];
            let shaped = text.len() <= MAX_MESSAGE
                && text[..text.len() - 1]
                    .iter()
                    .all(|b| (b' '..=b'~').contains(b));
            let claim = Claim {
                at: self.next + start as u64,
                text: text.to_vec(),
                truncated: text.ends_with(b": file truncated\n"),
            };
            if !shaped || self.pass.as_ref() == Some(&claim) {
                // The file's own bytes.
                self.pass = None;
                from = nl + 1;
                continue;
            }
            let front = take_front(&mut self.held, start);
            self.push_data(out, front);
            self.held.drain(..claim.text.len());
            out.push(Piece::Claim(claim));
            from = 0;
        }
        let ready = self.held.len() - undecided_suffix(&self.held[from..]);
        let front = take_front(&mut self.held, ready);
        self.push_data(out, front);
    }

    /// Hands out held bytes as data (the file has been quiet: they were
    /// never a message).
    pub fn flush(&mut self, out: &mut Vec<Piece>) {
        let held = std::mem::take(&mut self.held);
        self.push_data(out, held);
    }

    fn push_data(&mut self, out: &mut Vec<Piece>, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.next += bytes.len() as u64;
            out.push(Piece::Data(bytes));
        }
    }
}

/// How many trailing bytes of `h` could still turn out to begin a
/// message: from a `tail: ` after the last newline on (if no longer than
/// a message), or a trailing piece of `tail: ` itself.
fn undecided_suffix(h: &[u8]) -> usize {
    let line_start = memchr::memrchr(b'\n', h).map_or(0, |i| i + 1);
    if let Some(i) = memmem::rfind(&h[line_start..], TAIL) {
        let n = h.len() - (line_start + i);
        if n <= MAX_MESSAGE {
            return n;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of every size from 1 to 7 bytes and checks
    /// the result does not depend on how the bytes were cut.
    fn filtered(start: u64, pass: Option<Claim>, input: &[u8]) -> Vec<Piece> {
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
        let run = |step: usize| {
            let mut f = StreamFilter::new(start, pass.clone());
            let mut got = Vec::new();
            for c in input.chunks(step) {
                f.feed(c, &mut got);
            }
            f.flush(&mut got);
            norm(got)
        };
        let whole = run(input.len().max(1));
        for step in 1..=7 {
            assert_eq!(run(step), whole, "fed {step} bytes at a time");
        }
        whole
    }

    fn data(s: &[u8]) -> Piece {
        Piece::Data(s.to_vec())
    }

    const TRUNCATED: &[u8] = b"tail: /dev/fd/4: file truncated\n";

    #[test]
    fn a_truncation_message_is_a_claim_at_its_offset() {
        let input = [b"old1\nold-partial".as_slice(), TRUNCATED, b"new1\n"].concat();
        let claim = Claim {
            at: 100 + 16,
            text: TRUNCATED.to_vec(),
            truncated: true,
        };
        assert_eq!(
            filtered(100, None, &input),
            vec![
                data(b"old1\nold-partial"),
                Piece::Claim(claim.clone()),
                data(b"new1\n"),
            ]
        );
        // Read again with that claim settled as the file's bytes: all data,
        // and only that one passes.
        let twice = [input.as_slice(), TRUNCATED].concat();
        let got = filtered(100, Some(claim), &twice);
        assert_eq!(got[0], data(&input));
        assert!(matches!(&got[1], Piece::Claim(c) if c.at == 100 + input.len() as u64));
    }

    #[test]
    fn other_messages_are_claims_too() {
        let msg = b"tail: error reading '/dev/fd/4': Input/output error\n";
        let input = [b"a\n".as_slice(), msg, b"b\n"].concat();
        let got = filtered(0, None, &input);
        assert_eq!(got[0], data(b"a\n"));
        assert!(matches!(&got[1], Piece::Claim(c) if c.at == 2 && !c.truncated));
        assert_eq!(got[2], data(b"b\n"));
    }

    #[test]
    fn lines_that_cannot_be_tails_messages_are_data() {
        let long = format!("tail: /dev/fd/4: {}\n", "x".repeat(MAX_MESSAGE));
        for input in [
            b"tail: /var/log/app.log: file truncated\n".to_vec(),
            b"/dev/fd/4: file truncated\n".to_vec(),
            b"tail: /dev/fd/4: caf\xc3\xa9 truncated\n".to_vec(),
            long.into_bytes(),
        ] {
            assert_eq!(filtered(7, None, &input), vec![data(&input)], "{input:?}");
        }
        // A trailing piece of "tail: " waits for what follows.
        let mut f = StreamFilter::new(0, None);
        let mut out = Vec::new();
        f.feed(b"x\nta", &mut out);
        assert_eq!(out, vec![data(b"x\n")]);
    }

    #[test]
    fn cksum_is_posix_cksum() {
        // `printf '' | cksum`, `printf 'a' | cksum`, and the message.
        assert_eq!(cksum(b""), 4294967295);
        assert_eq!(cksum(b"a"), 1220704766);
        let out = std::process::Command::new("sh")
            .args(["-c", "printf 'tail: /dev/fd/4: file truncated\\n' | cksum"])
            .output()
            .expect("cksum runs");
        let want = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            want.split_whitespace().next(),
            Some(cksum(TRUNCATED).to_string().as_str())
        );
    }
}
