//! `rill keygen`: a CURVE key pair for the stream endpoint or a client of
//! it, in the files the config names (`streams.curve.secret_key_file`, a
//! client's key file, a server's `authorized_keys_dir`). The format is
//! `rill_bus::keys`'s.

use std::io::Write;
use std::path::PathBuf;

use rill_bus::keys::{self, KeyPair};

use crate::emit;

/// Write a CURVE key pair: the secret key to PATH (0600) and the public key
/// to PATH.pub (0644); prints the public key. Never overwrites a key.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The secret key file to create (the public key goes to PATH.pub).
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
}

/// `rill keygen`: writes both files and prints the public key on stdout
/// (where they went on stderr).
pub fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
    let pair = KeyPair::generate()?;
    let public_file = pair.write(&args.out)?;
    eprintln!(
        "rill: wrote the secret key to {} (keep it private) and the public key to {}",
        args.out.display(),
        public_file.display()
    );
    emit(out, &keys::z85(&pair.public))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use rill_bus::gate::CurveServer;
    use rill_bus::CurveClient;

    use super::*;

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn keygen_writes_a_pair_the_gate_reads_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let server = dir.path().join("streams.key");
        let mut printed = Vec::new();
        run(
            &Args {
                out: server.clone(),
            },
            &mut printed,
        )
        .unwrap();
        let public_file = dir.path().join("streams.key.pub");
        assert_eq!((mode(&server), mode(&public_file)), (0o600, 0o644));
        let public = keys::load_public_key(&public_file).unwrap();
        assert_eq!(
            String::from_utf8(printed).unwrap(),
            keys::z85(&public) + "\n"
        );
        let text = std::fs::read_to_string(&server).unwrap();
        assert!(text.starts_with("# rill CURVE secret key"), "{text}");

        // A client's pair, its public key in the server's authorized folder.
        let authorized = dir.path().join("clients");
        std::fs::create_dir(&authorized).unwrap();
        let client = authorized.join("alice");
        run(
            &Args {
                out: client.clone(),
            },
            &mut Vec::new(),
        )
        .unwrap();
        std::fs::rename(&client, dir.path().join("alice.key")).unwrap();
        let curve = CurveServer::load(&server, &authorized).unwrap();
        let alice = CurveClient::load(&dir.path().join("alice.key"), &public_file).unwrap();
        assert_eq!(curve.public_key, public);
        assert_eq!(alice.server_public, public);
        assert!(curve.authorized.contains(&alice.public));

        // Never over an existing key, and the message says so.
        let before = std::fs::read(&server).unwrap();
        let e = run(
            &Args {
                out: server.clone(),
            },
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("already exists"), "{e:#}");
        assert_eq!(std::fs::read(&server).unwrap(), before);
    }
}
