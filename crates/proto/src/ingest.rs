//! The durable path: taps hand lines to the parser and hear back what is
//! committed to the index (`run/ingest.sock`; tap DEALER -> parser ROUTER).
//!
//! ```text
//! tap -> parser   [b"line",  LineMeta JSON, lines, Envelope JSON]
//! tap -> parser   [b"hello", Hello JSON]
//! parser -> tap   [Receipt JSON]
//! ```
//!
//! A message holds `LineMeta::lines` consecutive lines of one file, joined
//! by their newlines, as a live message does. Every line of one tap run
//! (`epoch`) has a sequence number; a message's envelope carries its first
//! line's. The tap keeps every message the parser has not confirmed (its
//! window) and sends them in order; the parser stores them in order (in its
//! write-ahead log, synced) and then sends a [`Receipt`]: every line with
//! `seq < committed` is stored, and will be in the index even if the parser
//! crashes before it indexed it. Messages travel one ZeroMQ pipe, in order, so a sequence
//! number beyond the next expected one (or a `hello` that says more was sent
//! than arrived) means messages were lost on the way, e.g. because the
//! parser restarted: the receipt then asks to send again from there.
//!
//! `generation` names the index: a tap that finds it changed (the index was
//! deleted or replaced) reads its files again from the start.

use serde::{Deserialize, Serialize};

/// The first frame of a tap's durable message.
pub const LINE: &[u8] = b"line";
pub const HELLO: &[u8] = b"hello";

/// Frame 4 of a durable line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The number of this message's first line in its tap run.
    pub seq: u64,
    /// The first line of the oldest message the tap still holds (not yet
    /// confirmed).
    pub window_start: u64,
}

/// Sent at start and every second or so: lets the parser tell the tap the
/// index's generation and what it is missing even when no line flows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub host: String,
    pub epoch: String,
    pub window_start: u64,
    /// The number of the next message the tap will send: everything before
    /// it was sent before this hello.
    pub sent: u64,
}

/// The parser's answer to a tap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Names the index (changes when it is created anew).
    pub generation: String,
    /// Names the parser run.
    pub parser: String,
    /// The tap run this is about.
    pub tap_epoch: String,
    /// Every line of that run numbered below this is stored.
    pub committed: u64,
    /// Lines from this number on did not arrive: send them again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resend_from: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_messages_round_trip() {
        let e = Envelope {
            seq: 9,
            window_start: 3,
        };
        let back: Envelope = serde_json::from_slice(&serde_json::to_vec(&e).unwrap()).unwrap();
        assert_eq!(back, e);
        let h = Hello {
            host: "web01".into(),
            epoch: "e".into(),
            window_start: 3,
            sent: 10,
        };
        let back: Hello = serde_json::from_slice(&serde_json::to_vec(&h).unwrap()).unwrap();
        assert_eq!(back, h);
        let r = Receipt {
            generation: "g".into(),
            parser: "p".into(),
            tap_epoch: "e".into(),
            committed: 7,
            resend_from: None,
        };
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("resend_from"));
        assert_eq!(serde_json::from_str::<Receipt>(&json).unwrap(), r);
        let with = Receipt {
            resend_from: Some(7),
            ..r
        };
        assert_eq!(
            serde_json::from_str::<Receipt>(&serde_json::to_string(&with).unwrap()).unwrap(),
            with
        );
    }
}
