//! What a config that cannot be loaded reports.
//!
//! [`ConfigError`] is what callers see: the file, the dotted key and what
//! was expected. [`Invalid`] is the same without the file, as one section
//! of the validation hands it to the section that holds it: its key is
//! relative, and each level up adds its own part in front.

use std::fmt;
use std::path::{Path, PathBuf};

/// A config that could not be loaded: which file, which key, what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted key path, e.g. `hosts.web01.auth.key`; empty for the whole file.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// A value one section refuses: where, relative to the section (`.port`,
/// `.allow[2]`, or empty for the section itself), and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub key: String,
    pub message: String,
}

impl Invalid {
    /// A refusal at `key` below the section that reports it.
    pub fn at(key: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The same refusal as the enclosing section reports it, where the
    /// reporting section sits at `key` (`.web01`, `.auth`, `tap`).
    pub fn under(self, key: &str) -> Invalid {
        Invalid {
            key: format!("{key}{}", self.key),
            message: self.message,
        }
    }

    /// The refusal as the loader reports it: with the file, and the key
    /// counted from the top of the file.
    pub fn in_file(self, file: &Path) -> ConfigError {
        ConfigError {
            file: file.to_owned(),
            key: self.key,
            message: self.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_grow_from_the_value_up_to_the_file() {
        let e = Invalid::at(".key", "expected a private key file")
            .under(".auth")
            .under(".web01")
            .under("hosts")
            .in_file(Path::new("/etc/rill.yaml"));
        assert_eq!(e.key, "hosts.web01.auth.key");
        assert_eq!(
            e.to_string(),
            "/etc/rill.yaml: hosts.web01.auth.key: expected a private key file"
        );
        let whole = Invalid::at("", "expected at least one host").under("hosts");
        assert_eq!(whole.key, "hosts");
    }
}
