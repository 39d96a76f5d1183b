//! Bytes to lines, keeping each line's byte offset in the remote file.
//!
//! The lines of a read go into one buffer ([`Lines`]) as they were in the
//! file, newlines included, so a run of consecutive lines is one slice of
//! it: the live path sends that slice as it is, and no line is an
//! allocation of its own (a `Vec` per line was a quarter of the tap's time
//! in a burst).

use std::ops::Range;

/// One line cut from the stream, borrowed from its [`Lines`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// Offset of the line's first byte in the remote file.
    pub offset: u64,
    /// The line without its newline; any bytes, not necessarily UTF-8.
    pub bytes: &'a [u8],
    /// True when this is a piece of a line longer than the maximum, or a
    /// last line handed out without its newline.
    pub partial: bool,
    /// For a record ([`Lines::push_record`]): where the next may start.
    record_end: Option<u64>,
}

impl Line<'_> {
    /// Whether this is a record ([`Lines::push_record`]).
    pub fn is_record(&self) -> bool {
        self.record_end.is_some()
    }

    /// The offset just past the line: past its newline, or for a partial
    /// line (which has none) past its last byte; for a record, what it says.
    pub fn end(&self) -> u64 {
        self.record_end
            .unwrap_or(self.offset + self.bytes.len() as u64 + u64::from(!self.partial))
    }
}

/// Lines in one buffer: each complete line followed by its newline, a
/// partial one without.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Lines {
    data: Vec<u8>,
    items: Vec<Item>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Item {
    offset: u64,
    start: usize,
    len: usize,
    partial: bool,
    record_end: Option<u64>,
}

impl Lines {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The bytes the lines take, newlines included.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.items.clear();
    }

    /// Adds a line (copying its bytes).
    pub fn push(&mut self, offset: u64, bytes: &[u8], partial: bool) {
        self.items.push(Item {
            offset,
            start: self.data.len(),
            len: bytes.len(),
            partial,
            record_end: None,
        });
        self.data.extend_from_slice(bytes);
        if !partial {
            self.data.push(b'\n');
        }
    }

    /// Adds a record that is not a run of bytes of a file (a journal
    /// entry): named by `offset` (its sequence number), ending at `end`,
    /// never joined with its neighbours into one message.
    pub fn push_record(&mut self, offset: u64, end: u64, bytes: &[u8]) {
        self.push(offset, bytes, false);
        if let Some(it) = self.items.last_mut() {
            it.record_end = Some(end);
        }
    }

    /// Line `i`.
    pub fn get(&self, i: usize) -> Line<'_> {
        let it = self.items[i];
        Line {
            offset: it.offset,
            bytes: &self.data[it.start..it.start + it.len],
            partial: it.partial,
            record_end: it.record_end,
        }
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = Line<'_>> + '_ {
        (0..self.items.len()).map(|i| self.get(i))
    }

    /// Whether line `i` starts right after line `i - 1` ends, in the file
    /// and in the buffer: complete lines read in one go.
    pub fn follows(&self, i: usize) -> bool {
        let (prev, it) = (self.items[i - 1], self.items[i]);
        !prev.partial
            && !it.partial
            && prev.record_end.is_none()
            && it.record_end.is_none()
            && it.offset == prev.offset + prev.len as u64 + 1
            && it.start == prev.start + prev.len + 1
    }

    /// Lines `range` as they are in the file, joined by their newlines and
    /// without the last one. Each line of the range after the first must
    /// [`Lines::follows`] the one before.
    pub fn joined(&self, range: Range<usize>) -> &[u8] {
        let (first, last) = (self.items[range.start], self.items[range.end - 1]);
        &self.data[first.start..last.start + last.len]
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
    /// (when a file is done and its last line never got one); whether
    /// there were any.
    pub fn flush(&mut self, out: &mut Lines) -> bool {
        if self.buf.is_empty() {
            return false;
        }
        out.push(self.start, &self.buf, true);
        self.start += self.buf.len() as u64;
        self.buf.clear();
        true
    }

    /// Adds `data` and appends every completed line to `out`. Only the
    /// line pending from the last read is put together in `buf`; the lines
    /// after it are cut from `data` itself and the unfinished rest kept.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Lines) {
        if !self.buf.is_empty() {
            // Up to and including the pending line's newline, if it came.
            let upto = memchr::memchr(b'\n', data).map_or(data.len(), |i| i + 1);
            let mut buf = std::mem::take(&mut self.buf);
            buf.extend_from_slice(&data[..upto]);
            let used = self.cut(&buf, out);
            buf.drain(..used);
            self.buf = buf;
            data = &data[upto..];
            // A newline ends every piece of the pending line: all cut.
            debug_assert!(self.buf.is_empty() || data.is_empty());
        }
        let used = self.cut(data, out);
        self.buf.extend_from_slice(&data[used..]);
    }

    /// Cuts the complete lines (and pieces of overlong ones) off the front
    /// of `data` into `out`; how many bytes they took.
    fn cut(&mut self, data: &[u8], out: &mut Lines) -> usize {
        let mut consumed = 0;
        loop {
            let rest = &data[consumed..];
            match memchr::memchr(b'\n', rest) {
                Some(i) if i <= self.max_line => {
                    out.push(self.start, &rest[..i], false);
                    consumed += i + 1;
                    self.start += i as u64 + 1;
                }
                _ if rest.len() > self.max_line => {
                    out.push(self.start, &rest[..self.max_line], true);
                    consumed += self.max_line;
                    self.start += self.max_line as u64;
                }
                _ => break,
            }
        }
        consumed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(s: &mut LineSplitter, chunks: &[&[u8]]) -> Lines {
        let mut out = Lines::default();
        for c in chunks {
            s.feed(c, &mut out);
        }
        out
    }

    #[test]
    fn lines_carry_the_offset_of_their_first_byte() {
        let mut s = LineSplitter::new(100, DEFAULT_MAX_LINE);
        let out = feed_all(&mut s, &[b"ab\nc", b"d\n\nef"]);
        let got: Vec<(u64, &[u8])> = out.iter().map(|l| (l.offset, l.bytes)).collect();
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
        let mut out = feed_all(&mut s, &[b"a\nlast"]);
        assert_eq!(out.len(), 1);
        assert!(s.flush(&mut out));
        let rest = out.get(1);
        assert_eq!(
            (rest.offset, rest.bytes, rest.partial),
            (12, &b"last"[..], true)
        );
        assert_eq!(s.next_offset(), 16);
        assert!(!s.flush(&mut out));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn non_utf8_bytes_pass_through() {
        let mut s = LineSplitter::new(0, DEFAULT_MAX_LINE);
        let out = feed_all(&mut s, &[b"\xff\xfe caf\xc3\xa9\n"]);
        assert_eq!(out.get(0).bytes, b"\xff\xfe caf\xc3\xa9");
    }

    #[test]
    fn long_lines_are_split_and_marked_never_dropped() {
        let mut s = LineSplitter::new(0, 4);
        let out = feed_all(&mut s, &[b"abcdefghij\nxy\n"]);
        let got: Vec<(u64, &[u8], bool)> =
            out.iter().map(|l| (l.offset, l.bytes, l.partial)).collect();
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

    #[test]
    fn consecutive_lines_are_one_slice_as_in_the_file() {
        let mut s = LineSplitter::new(0, 4);
        // A line split over two reads, then an overlong one in pieces.
        let out = feed_all(&mut s, &[b"one\ntw", b"o\n\nthree\nabcdefg\nz\n"]);
        let follows: Vec<bool> = (1..out.len()).map(|i| out.follows(i)).collect();
        // one, two, "", three (pieces "thre" + "e"), "abcd" + "efg", z
        assert_eq!(out.len(), 8);
        assert_eq!(follows, [true, true, false, false, false, false, true]);
        assert_eq!(out.joined(0..3), b"one\ntwo\n");
        assert_eq!(out.joined(6..8), b"efg\nz");
        assert_eq!(out.joined(3..4), b"thre");
    }
}
