//! Joining lines into multiline events (Java stack traces, Python
//! tracebacks), per file.
//!
//! Every line of a log with a `multiline:` rule first becomes a *pending*
//! event. The next line of the same file either continues it (the rule says
//! so AND it starts exactly where the pending event ends, so nothing in
//! between was missed) or completes it. A pending event is also complete
//! after `flush_after` without a new line, at `max_lines`, and on shutdown.
//!
//! A complete event is named by its first line (offset) and ends where its
//! last line ends (`end_offset`), so indexing stays idempotent on the first
//! line's durable name and acknowledgements can use the end.

use std::time::{Duration, Instant};

use regex::Regex;
use rill_config::{Multiline, MultilineRule};
use rill_proto::LineMeta;

/// A compiled `multiline:` rule.
#[derive(Debug, Clone)]
pub struct Joiner {
    re: Regex,
    /// true: a matching line continues; false: a matching line starts.
    match_continues: bool,
    pub flush_after: Duration,
    pub max_lines: usize,
}

impl Joiner {
    pub fn new(m: &Multiline) -> Result<Joiner, regex::Error> {
        let (pattern, match_continues) = match &m.rule {
            MultilineRule::Continues(p) => (p, true),
            MultilineRule::Starts(p) => (p, false),
        };
        Ok(Joiner {
            re: Regex::new(pattern)?,
            match_continues,
            flush_after: m.flush_after,
            max_lines: m.max_lines,
        })
    }

    /// Whether `line` belongs to the event before it.
    pub fn continues(&self, line: &str) -> bool {
        self.re.is_match(line) == self.match_continues
    }
}

/// Lines gathered into one event, not complete yet.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The first line's metadata: the event's name and read time.
    pub first: LineMeta,
    /// Length of the first line in `text` (what the format parses).
    pub first_len: usize,
    /// Every line so far, joined with `\n`.
    pub text: String,
    pub lines: usize,
    /// Where the next line of the file starts.
    pub end_offset: u64,
    /// When the last line arrived.
    pub touched: Instant,
}

impl Pending {
    /// `raw_len`: the line's length in bytes as read (before UTF-8 repair).
    pub fn new(meta: LineMeta, line: String, raw_len: usize, now: Instant) -> Pending {
        let end_offset = next_offset(&meta, raw_len);
        Pending {
            first: meta,
            first_len: line.len(),
            text: line,
            lines: 1,
            end_offset,
            touched: now,
        }
    }

    /// Whether `line` (read at `meta`) continues this event: the rule says
    /// so, it is in the same file and starts exactly where the event ends
    /// (nothing in between was missed), and the event is not full.
    pub fn accepts(&self, joiner: &Joiner, meta: &LineMeta, line: &str) -> bool {
        meta.file_id == self.first.file_id
            && meta.offset == self.end_offset
            && self.lines < joiner.max_lines
            && joiner.continues(line)
    }

    /// Adds a line that [`Pending::accepts`] accepted.
    pub fn append(&mut self, meta: &LineMeta, line: &str, raw_len: usize, now: Instant) {
        self.end_offset = next_offset(meta, raw_len);
        self.text.push('\n');
        self.text.push_str(line);
        self.lines += 1;
        self.touched = now;
    }

    pub fn is_full(&self, joiner: &Joiner) -> bool {
        self.lines >= joiner.max_lines
    }

    pub fn is_idle(&self, joiner: &Joiner, now: Instant) -> bool {
        now.duration_since(self.touched) >= joiner.flush_after
    }
}

/// Where the line after this one starts: past its newline, or right after
/// it when it is a partial piece (no newline of its own). `len` is the
/// length of the raw bytes (lossy UTF-8 repair can change a string's length).
pub fn next_offset(meta: &LineMeta, len: usize) -> u64 {
    meta.offset + len as u64 + u64::from(!meta.partial)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(offset: u64) -> LineMeta {
        serde_json::from_value(serde_json::json!({
            "host": "h", "log": "l", "path": "/p", "file_id": "1:2:00000003",
            "offset": offset, "seq": 0, "epoch": "e", "read_at": "2026-11-22T10:00:00Z"
        }))
        .unwrap()
    }

    fn java() -> Joiner {
        Joiner::new(&Multiline {
            rule: MultilineRule::Continues(r"^(\s|Caused by)".into()),
            flush_after: Duration::from_millis(500),
            max_lines: 4,
        })
        .unwrap()
    }

    #[test]
    fn stack_trace_lines_continue_and_the_next_record_does_not() {
        let j = java();
        let now = Instant::now();
        let lines = [
            "2026-11-22 10:00:00,000 ERROR boom",
            "java.lang.IllegalStateException: x",
            "\tat a.B.c(B.java:1)",
            "Caused by: java.io.IOException: y",
        ];
        assert!(
            !j.continues(lines[1]),
            "by this rule the exception line starts an event"
        );
        assert!(j.continues(lines[2]) && j.continues(lines[3]));
        let mut p = Pending::new(meta(0), lines[0].into(), lines[0].len(), now);
        let mut off = p.end_offset;
        for l in &lines[2..] {
            assert!(p.accepts(&j, &meta(off), l));
            p.append(&meta(off), l, l.len(), now);
            off = p.end_offset;
        }
        assert_eq!(p.lines, 3);
        assert_eq!(
            p.end_offset,
            (lines[0].len() + lines[2].len() + lines[3].len() + 3) as u64
        );
        assert!(!p.accepts(&j, &meta(off), "next record"));
    }

    #[test]
    fn a_gap_a_new_file_or_max_lines_completes_the_event() {
        let j = java();
        let now = Instant::now();
        let mut p = Pending::new(meta(0), "x".into(), 1, now);
        assert!(!p.accepts(&j, &meta(5), " gap"), "offset gap");
        let mut other = meta(2);
        other.file_id.ino = 9;
        assert!(!p.accepts(&j, &other, " other file"));
        for _ in 0..3 {
            let off = p.end_offset;
            assert!(p.accepts(&j, &meta(off), " more"));
            p.append(&meta(off), " more", 5, now);
        }
        assert!(p.is_full(&j));
        let off = p.end_offset;
        assert!(!p.accepts(&j, &meta(off), " one too many"));
        assert!(!p.is_idle(&j, now));
        assert!(p.is_idle(&j, now + Duration::from_millis(500)));
    }

    #[test]
    fn starts_rule_and_partial_pieces() {
        let j = Joiner::new(&Multiline {
            rule: MultilineRule::Starts(r"^\d{4}-".into()),
            flush_after: Duration::from_secs(1),
            max_lines: 10,
        })
        .unwrap();
        assert!(j.continues("Traceback (most recent call last):"));
        assert!(!j.continues("2026-11-22 next"));
        let mut m = meta(10);
        m.partial = true;
        assert_eq!(next_offset(&m, 4), 14, "a partial piece has no newline");
        assert_eq!(next_offset(&meta(10), 4), 15);
    }
}
