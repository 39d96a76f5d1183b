//! Bytes to lines, keeping each line's byte offset in the remote file.

/// One line cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Offset of the line's first byte in the remote file.
    pub offset: u64,
    /// The line without its newline; any bytes, not necessarily UTF-8.
    pub bytes: Vec<u8>,
    /// True when this is a piece of a line longer than the maximum.
    pub partial: bool,
}

impl Line {
    /// The offset just past the line: past its newline, or for a partial
    /// line (which has none) past its last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.bytes.len() as u64 + u64::from(!self.partial)
    }
}

/// Accumulates bytes and hands out complete lines. A partial last line stays
/// here until its newline arrives.
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    start: u64,
    max_line: usize,
}

/// Lines longer than this are split into pieces marked partial.
pub const DEFAULT_MAX_LINE: usize = 1 << 20;

impl LineSplitter {
    pub fn new(start_offset: u64, max_line: usize) -> Self {
        LineSplitter {
            buf: Vec::new(),
            start: start_offset,
            max_line: max_line.max(1),
        }
    }

    /// Offset just past the last line handed out: where to resume reading.
    pub fn next_offset(&self) -> u64 {
        self.start
    }

    /// Bytes held back waiting for a newline.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Hands out the bytes still waiting for a newline as a partial line
    /// (when a file is done and its last line never got one).
    pub fn flush(&mut self) -> Option<Line> {
        if self.buf.is_empty() {
            return None;
        }
        let bytes = std::mem::take(&mut self.buf);
        let line = Line {
            offset: self.start,
            bytes,
            partial: true,
        };
        self.start += line.bytes.len() as u64;
        Some(line)
    }

    /// Adds `data` and appends every completed line to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<Line>) {
        self.buf.extend_from_slice(data);
        let mut consumed = 0;
        loop {
            let rest = &self.buf[consumed..];
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) if i <= self.max_line => {
                    out.push(Line {
                        offset: self.start,
                        bytes: rest[..i].to_vec(),
                        partial: false,
                    });
                    consumed += i + 1;
                    self.start += i as u64 + 1;
                }
                _ if rest.len() > self.max_line => {
                    out.push(Line {
                        offset: self.start,
                        bytes: rest[..self.max_line].to_vec(),
                        partial: true,
                    });
                    consumed += self.max_line;
                    self.start += self.max_line as u64;
                }
                _ => break,
            }
        }
        self.buf.drain(..consumed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(s: &mut LineSplitter, chunks: &[&[u8]]) -> Vec<Line> {
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, &mut out);
        }
        out
    }

    #[test]
    fn lines_carry_the_offset_of_their_first_byte() {
        let mut s = LineSplitter::new(100, DEFAULT_MAX_LINE);
        let out = feed_all(&mut s, &[b"ab\nc", b"d\n\nef"]);
        let got: Vec<(u64, &[u8])> = out.iter().map(|l| (l.offset, l.bytes.as_slice())).collect();
        assert_eq!(
            got,
            vec![(100, &b"ab"[..]), (103, &b"cd"[..]), (106, &b""[..])]
        );
        assert_eq!(s.next_offset(), 107);
        assert_eq!(s.pending(), 2, "\"ef\" waits for its newline");
    }

    #[test]
    fn flush_hands_out_the_unterminated_rest_once() {
        let mut s = LineSplitter::new(10, DEFAULT_MAX_LINE);
        let out = feed_all(&mut s, &[b"a\nlast"]);
        assert_eq!(out.len(), 1);
        let rest = s.flush().unwrap();
        assert_eq!(
            (rest.offset, rest.bytes.as_slice(), rest.partial),
            (12, &b"last"[..], true)
        );
        assert_eq!(s.next_offset(), 16);
        assert!(s.flush().is_none());
    }

    #[test]
    fn non_utf8_bytes_pass_through() {
        let mut s = LineSplitter::new(0, DEFAULT_MAX_LINE);
        let out = feed_all(&mut s, &[b"\xff\xfe caf\xc3\xa9\n"]);
        assert_eq!(out[0].bytes, b"\xff\xfe caf\xc3\xa9");
    }

    #[test]
    fn long_lines_are_split_and_marked_never_dropped() {
        let mut s = LineSplitter::new(0, 4);
        let out = feed_all(&mut s, &[b"abcdefghij\nxy\n"]);
        let got: Vec<(u64, &[u8], bool)> = out
            .iter()
            .map(|l| (l.offset, l.bytes.as_slice(), l.partial))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, &b"abcd"[..], true),
                (4, &b"efgh"[..], true),
                (8, &b"ij"[..], false),
                (11, &b"xy"[..], false)
            ]
        );
    }

    #[test]
    fn byte_by_byte_feeding_gives_the_same_lines() {
        let text = b"one\ntwo\nthree\n";
        let mut whole = LineSplitter::new(0, DEFAULT_MAX_LINE);
        let a = feed_all(&mut whole, &[text]);
        let mut bytes = LineSplitter::new(0, DEFAULT_MAX_LINE);
        let chunks: Vec<&[u8]> = text.chunks(1).collect();
        let b = feed_all(&mut bytes, &chunks);
        assert_eq!(a, b);
    }
}
