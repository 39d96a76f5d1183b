//! Reading what `list.sh` prints: passes of
//!
//! ```text
//! RILL-LIST
//! N <ino> <size> <vlen> <vfp> <path>
//! S <ino> <path>
//! RILL-END <newline> <cut>
//! ```
//!
//! A server can print anything: a line longer than [`MAX_LINE`], a pass
//! of more than [`crate::script::LIST_LIMIT`] files or a line that does not
//! parse is an error (the tap reopens the listing); a name that is not
//! UTF-8 is counted and left out.

use crate::checkpoint::Verify;
use crate::script::LIST_LIMIT;

/// The longest line a listing may print (a path of 4096 bytes and more).
pub const MAX_LINE: usize = 8192;

/// One file of a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub ino: u64,
    pub path: String,
    /// For a file the script had not listed under this name and inode:
    /// its size and first bytes then.
    pub new: Option<(u64, Verify)>,
}

/// One whole pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    pub files: Vec<Listed>,
    /// Files whose name holds a newline were left out.
    pub odd_names: bool,
    /// Names that are not UTF-8, left out.
    pub not_utf8: usize,
    /// More files than one pass lists: the rest left out.
    pub cut: bool,
}

/// Decodes a listing's stdout as it arrives.
#[derive(Debug, Default)]
pub struct Listing {
    buf: Vec<u8>,
    pass: Option<Pass>,
}

impl Listing {
    /// Takes `bytes`; returns the passes they completed, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Pass>, String> {
        self.buf.extend_from_slice(bytes);
        let mut done = Vec::new();
        let mut start = 0;
        while let Some(n) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let line = self.buf[start..start + n].to_vec();
            start += n + 1;
            if let Some(p) = self.line(&line)? {
                done.push(p);
            }
        }
        self.buf.drain(..start);
        if self.buf.len() > MAX_LINE {
            return Err(format!("a listing line longer than {MAX_LINE} bytes"));
        }
        Ok(done)
    }

    fn line(&mut self, line: &[u8]) -> Result<Option<Pass>, String> {
        let bad = || {
            format!(
                "an unreadable listing line: {:?}",
                String::from_utf8_lossy(line)
            )
        };
        if line == b"RILL-LIST" {
            self.pass = Some(Pass::default());
            return Ok(None);
        }
        // Whatever came before the first pass (a login banner) is not ours.
        let Some(pass) = &mut self.pass else {
            return Ok(None);
        };
        if let Some(rest) = line.strip_prefix(b"RILL-END ") {
            let flags: Vec<&[u8]> = rest.split(|&b| b == b' ').collect();
            let mut pass = self.pass.take().unwrap_or_default();
            match flags.as_slice() {
                [odd, cut] => {
                    pass.odd_names = *odd == b"1";
                    pass.cut |= *cut == b"1";
                }
                _ => return Err(bad()),
            }
            return Ok(Some(pass));
        }
        if pass.files.len() >= LIST_LIMIT {
            return Err(format!("a listing of more than {LIST_LIMIT} files"));
        }
        let (kind, rest) = match line {
            [k @ (b'N' | b'S'), b' ', rest @ ..] => (*k, rest),
            _ => return Err(bad()),
        };
        let fields = if kind == b'N' { 4 } else { 1 };
        let mut parts = rest.splitn(fields + 1, |&b| b == b' ');
        let mut num = || -> Result<u64, String> {
            let w = parts.next().ok_or_else(bad)?;
            std::str::from_utf8(w)
                .ok()
                .and_then(|w| w.parse().ok())
                .ok_or_else(bad)
        };
        let ino = num()?;
        let new = if kind == b'N' {
            let size = num()?;
            let len = num()?;
            let fp = u32::try_from(num()?).map_err(|_| bad())?;
            Some((size, Verify { len, fp }))
        } else {
            None
        };
        let path = parts.next().ok_or_else(bad)?;
        match std::str::from_utf8(path) {
            Ok(p) if p.starts_with('/') => pass.files.push(Listed {
                ino,
                path: p.to_owned(),
                new,
            }),
            Ok(_) => return Err(bad()),
            Err(_) => pass.not_utf8 += 1,
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_come_whole_however_the_bytes_are_cut() {
        let text = "banner\nRILL-LIST\nN 12 100 64 4242 /var/log/a b.log\nS 13 /var/log/$(id).log\nRILL-END 1 0\n";
        for cut in 1..text.len() {
            let mut l = Listing::default();
            let mut passes = l.feed(&text.as_bytes()[..cut]).unwrap();
            passes.extend(l.feed(&text.as_bytes()[cut..]).unwrap());
            assert_eq!(passes.len(), 1);
            let pass = passes.pop().unwrap();
            assert_eq!(
                pass.files,
                vec![
                    Listed {
                        ino: 12,
                        path: "/var/log/a b.log".into(),
                        new: Some((100, Verify { len: 64, fp: 4242 })),
                    },
                    Listed {
                        ino: 13,
                        path: "/var/log/$(id).log".into(),
                        new: None,
                    },
                ]
            );
            assert!(pass.odd_names);
            assert!(!pass.cut);
        }
    }

    #[test]
    fn hostile_output_is_an_error_or_left_out_never_a_panic() {
        let mut l = Listing::default();
        assert!(l.feed(b"RILL-LIST\nX 1 /a\n").is_err());
        let mut l = Listing::default();
        assert!(l
            .feed(b"RILL-LIST\nN 99999999999999999999999 1 1 1 /a\n")
            .is_err());
        let mut l = Listing::default();
        assert!(l.feed(b"RILL-LIST\nN 1 1 1 99999999999 /a\n").is_err());
        let mut l = Listing::default();
        assert!(l.feed(b"RILL-LIST\nS 1 relative\n").is_err());
        let mut l = Listing::default();
        assert!(l.feed(&vec![b'x'; MAX_LINE + 1]).is_err());
        let mut l = Listing::default();
        let mut flood = b"RILL-LIST\n".to_vec();
        for i in 0..=LIST_LIMIT {
            flood.extend(format!("S {i} /f{i}\n").bytes());
        }
        assert!(l.feed(&flood).is_err());
        let mut l = Listing::default();
        let p = l
            .feed(b"RILL-LIST\nS 1 /a\xff\nS 2 /b\nRILL-END 0 1\nRILL-LIST\nRILL-END 0 0\n")
            .unwrap()
            .remove(0);
        assert_eq!(p.not_utf8, 1);
        assert_eq!(p.files.len(), 1);
        assert!(p.cut);
    }
}
