//! The values a script is given that are not the user's: its limits.

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
