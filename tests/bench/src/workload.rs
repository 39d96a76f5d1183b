//! The lines benchmarks write: nginx-like, about 120 bytes, each ending in
//! its sequence number so a reader can tell which one arrived.

/// Line `seq`, with its newline.
pub fn line(seq: u64) -> String {
    let status = [200, 200, 200, 304, 404, 500][(seq % 6) as usize];
    format!(
        "10.0.{}.{} - - [22/Nov/2026:10:00:00 +0000] \"GET /api/items/{} HTTP/1.1\" {status} {} \"-\" \"bench/1.0\" seq={seq}\n",
        seq % 250,
        seq % 200,
        seq % 10_000,
        512 + seq % 1000,
    )
}

/// The number `"key":N` of a JSON meta, found without parsing all of it.
pub fn number_in(meta: &[u8], key: &str) -> Option<u64> {
    let key = format!("\"{key}\":");
    let key = key.as_bytes();
    let at = meta.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = meta[at..].iter().take_while(|c| c.is_ascii_digit()).count();
    std::str::from_utf8(&meta[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// The sequence number at the end of a line.
pub fn seq_of(body: &str) -> Option<u64> {
    body.rsplit_once("seq=")?.1.trim_end().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_about_120_bytes_and_name_their_number() {
        let l = line(123_456);
        assert!((100..=140).contains(&l.len()), "{} bytes", l.len());
        assert_eq!(seq_of(&l), Some(123_456));
    }
}
