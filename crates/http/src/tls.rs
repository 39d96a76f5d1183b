//! TLS for a listener: a PEM certificate chain and its private key read
//! into a rustls server config (the ring provider, TLS 1.2 and 1.3,
//! HTTP/1.1 by ALPN).
//!
//! Every error names the file and what is wrong with it; a server whose
//! files are bad does not start. The handshake itself runs per connection
//! in `serve.rs`, under the server's header time and stall limits.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A listener's TLS: cheap to clone.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

/// Why TLS files were refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// One file: unreadable, no PEM block of the expected kind, bad PEM.
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    /// Both read, but rustls refused them together (a key that is not the
    /// certificate's, a key type it does not support).
    #[error("{cert} with {key}: {reason}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

impl Tls {
    /// Reads `cert` (PEM: the server's certificate first, then any
    /// intermediates) and `key` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let file = |path: &Path, reason: String| TlsError::File {
            path: path.to_owned(),
            reason,
        };
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| file(path, format!("could not read it: {e}")))
        };
        let chain = certificates(&read(cert)?).map_err(|r| file(cert, r))?;
        let secret = private_key(&read(key)?).map_err(|r| file(key, r))?;
        Tls::from_der(chain, secret).map_err(|reason| TlsError::Pair {
            cert: cert.to_owned(),
            key: key.to_owned(),
            reason,
        })
    }

    /// [`Tls::load`] of the config's `tls:` block.
    pub fn from_files(files: &rill_config::hub::TlsFiles) -> Result<Tls, TlsError> {
        Tls::load(&files.cert, &files.key)
    }

    /// From PEM text already read (tests).
    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<Tls, String> {
        Tls::from_der(certificates(cert)?, private_key(key)?)
    }

    fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Tls, String> {
        let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => {
                    "the private key is not the certificate's (the first in the chain)".to_owned()
                }
                e => format!("refused: {e}"),
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            config: Arc::new(config),
        })
    }

    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate chain: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)".into());
    }
    Ok(chain)
}

fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            "no private key in it (expected PEM: -----BEGIN PRIVATE KEY-----, \
             RSA PRIVATE KEY or EC PRIVATE KEY)"
                .to_owned()
        }
        e => format!("not a PEM private key: {e}"),
    })
}
