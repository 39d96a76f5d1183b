//! The values a script is given that are not the user's: its limits and
//! the nonce its stream is told apart by.

use std::time::Duration;

/// `1`, `0.5`: seconds as `sleep` takes them.
pub fn seconds(d: Duration) -> String {
    let ms = d.as_millis().max(1);
    if ms.is_multiple_of(1000) {
        (ms / 1000).to_string()
    } else {
        format!("{}.{:03}", ms / 1000, ms % 1000)
            .trim_end_matches('0')
            .to_owned()
    }
}

/// The largest chunk the chunk reader sends at once (the tap holds a chunk
/// until its `RILL-OK`). Each chunk costs the server a few processes
/// (sizes and fingerprints before and after): 4 MiB chunks let a catch-up
/// read a backlog at over 100 MB/s; 256 KiB ones held it near 20 MB/s.
pub const CHUNK_BYTES: u64 = 4 << 20;

/// How many leading bytes a full fingerprint covers.
pub const FINGERPRINT_BYTES: u64 = rill_proto::FileId::FINGERPRINT_BYTES;

/// The run of `/.` and `//.` segments put before the file's name for tail,
/// different for every channel, so that a message of tail's names a path no
/// log line can guess.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonce(String);

impl Nonce {
    const BITS: u32 = 48;

    pub fn random() -> Nonce {
        Nonce::from_bits(uuid::Uuid::new_v4().as_u128() as u64)
    }

    pub fn from_bits(bits: u64) -> Nonce {
        let mut s = String::from("/.");
        for i in 0..Self::BITS {
            s.push_str(if bits >> i & 1 == 1 { "//." } else { "/." });
        }
        Nonce(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
