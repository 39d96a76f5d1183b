//! What a client presents to a gated socket ([`crate::gate`]): a PLAIN
//! login or CURVE keys, set on its socket before it connects.

use std::path::Path;

use crate::keys::{self, Key, KeyError, KeyPair};

/// A client's CURVE keys: the server's public key (to know it is talking to
/// the right server) and its own pair (which the server must have in its
/// authorized keys). Its `Debug` does not show the secret key.
#[derive(Clone, PartialEq, Eq)]
pub struct CurveClient {
    pub server_public: Key,
    pub public: Key,
    pub secret: Key,
}

impl std::fmt::Debug for CurveClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurveClient")
            .field("server_public", &keys::z85(&self.server_public))
            .field("public", &keys::z85(&self.public))
            .finish_non_exhaustive()
    }
}

impl CurveClient {
    /// The client's pair from `key_file` (a secret key file of `rill
    /// keygen`, 0600) and the server's key from `server_key_file` (its
    /// `.pub`).
    pub fn load(key_file: &Path, server_key_file: &Path) -> Result<CurveClient, KeyError> {
        let pair = KeyPair::load(key_file)?;
        Ok(CurveClient {
            server_public: keys::load_public_key(server_key_file)?,
            public: pair.public,
            secret: pair.secret,
        })
    }
}

/// How a client logs in; the default is no login (NULL mechanism).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientAuth {
    /// PLAIN user and password.
    pub plain: Option<(String, String)>,
    pub curve: Option<CurveClient>,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("plain_user", &self.plain.as_ref().map(|(u, _)| u))
            .field("curve", &self.curve)
            .finish()
    }
}

impl ClientAuth {
    /// Sets the login on `s`; call before `connect`. With both set, CURVE
    /// wins (libzmq keeps the last mechanism set on a socket).
    pub fn apply(&self, s: &zmq::Socket) -> zmq::Result<()> {
        if let Some((user, password)) = &self.plain {
            s.set_plain_username(Some(user))?;
            s.set_plain_password(Some(password))?;
        }
        if let Some(c) = &self.curve {
            s.set_curve_serverkey(&c.server_public)?;
            s.set_curve_publickey(&c.public)?;
            s.set_curve_secretkey(&c.secret)?;
        }
        Ok(())
    }
}

impl ClientAuth {
    /// How this collector's own tools (`rill tail`, the page's Live tab,
    /// the supervisor) log in to its stream endpoint: with the server's own
    /// CURVE key pair (which the gate admits), or as the first user of its
    /// PLAIN credentials file; no login when the endpoint has neither.
    pub fn for_own_streams(cfg: &rill_config::Config) -> Result<ClientAuth, String> {
        let g = &cfg.streams_guard;
        if let Some(c) = &g.curve {
            let pair = KeyPair::load(&c.secret_key_file)
                .map_err(|e| format!("streams.curve.secret_key_file: {e}"))?;
            return Ok(ClientAuth {
                plain: None,
                curve: Some(CurveClient {
                    server_public: pair.public,
                    public: pair.public,
                    secret: pair.secret,
                }),
            });
        }
        if let Some(path) = &g.credentials_file {
            let users = rill_config::Credentials::load(path)
                .map_err(|e| format!("streams.credentials_file: {e}"))?;
            let (user, password) = users
                .first()
                .ok_or("streams.credentials_file has no user")?;
            return Ok(ClientAuth {
                plain: Some((user.to_owned(), password.to_owned())),
                curve: None,
            });
        }
        Ok(ClientAuth::default())
    }

    /// How this collector logs in to one of its `upstreams`.
    pub fn for_upstream(u: &rill_config::hub::Upstream) -> Result<ClientAuth, String> {
        let key = |k: &str| format!("upstreams.{}.{k}", u.name);
        let plain = u
            .plain
            .as_ref()
            .map(|p| {
                p.password
                    .read()
                    .map(|pw| (p.user.clone(), pw))
                    .map_err(|e| format!("{}: {e}", key("plain")))
            })
            .transpose()?;
        let curve = u
            .curve
            .as_ref()
            .map(|c| {
                CurveClient::load(&c.secret_key_file, &c.server_key_file)
                    .map_err(|e| format!("{}: {e}", key("curve")))
            })
            .transpose()?;
        Ok(ClientAuth { plain, curve })
    }
}
