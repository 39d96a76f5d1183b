//! An embedded SSH host: password auth, `exec` through `/bin/sh`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{HashAlg, PrivateKey};
use russh::server::{Auth, Handle, Msg, Server, Session};
use russh::{Channel, ChannelId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::ChildStdin;
use tokio::sync::Mutex;
use tracing::{debug, warn};

/// How long a command may outlive its channel before it is killed.
const GRACE: Duration = Duration::from_secs(2);

/// A running embedded SSH host. Stops on [`EmbeddedSshHost::stop`] or drop.
pub struct EmbeddedSshHost {
    addr: SocketAddr,
    key: PrivateKey,
    live: Arc<AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl EmbeddedSshHost {
    /// Serves on `bind` (e.g. `127.0.0.1:0`) for `user` with `password`.
    pub fn start(bind: &str, user: &str, password: &str) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let seed: [u8; 32] = rand::random();
        let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
        let config = Arc::new(russh::server::Config {
            keys: vec![key.clone()],
            auth_rejection_time: Duration::from_millis(300),
            auth_rejection_time_initial: Some(Duration::ZERO),
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(5)),
            nodelay: true,
            ..Default::default()
        });
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(bind))
            .with_context(|| format!("could not listen on {bind}"))?;
        let addr = listener.local_addr()?;
        let live = Arc::new(AtomicUsize::new(0));
        let mut host = Host {
            user: user.to_owned(),
            password: password.to_owned(),
            live: Arc::clone(&live),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(async move {
            let running = host.run_on_socket(config, &listener);
            let handle = running.handle();
            tokio::select! {
                r = running => if let Err(e) = r { warn!(error = %e, "embedded ssh host stopped") },
                _ = rx => handle.shutdown("stopping".into()),
            }
        });
        Ok(EmbeddedSshHost {
            addr,
            key,
            live,
            runtime: Some(runtime),
            shutdown: Some(tx),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `[host]:port ssh-ed25519 AAAA...` (plain host when the port is 22).
    pub fn known_hosts_line(&self) -> String {
        let public = self.key.public_key().to_openssh().unwrap_or_default();
        let public = public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let ip = self.addr.ip();
        if self.addr.port() == 22 {
            format!("{ip} {public}")
        } else {
            format!("[{ip}]:{} {public}", self.addr.port())
        }
    }

    /// `SHA256:...` as OpenSSH prints it.
    pub fn fingerprint(&self) -> String {
        self.key
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string()
    }

    /// Commands started by exec requests that are still running.
    pub fn live_children(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(GRACE + Duration::from_secs(1));
        }
    }
}

impl Drop for EmbeddedSshHost {
    fn drop(&mut self) {
        self.shut();
    }
}

#[derive(Clone)]
struct Host {
    user: String,
    password: String,
    live: Arc<AtomicUsize>,
}

impl Server for Host {
    type Handler = Connection;
    fn new_client(&mut self, peer: Option<SocketAddr>) -> Connection {
        debug!(?peer, "connection");
        Connection {
            host: self.clone(),
            commands: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

/// One running command: its stdin (None once closed) and process group.
struct Command {
    stdin: Option<ChildStdin>,
    pgid: i32,
}

/// One client connection.
struct Connection {
    host: Host,
    commands: Arc<Mutex<HashMap<ChannelId, Command>>>,
}

impl Connection {
    /// Closes the command's stdin and kills its process group after the grace.
    async fn end(&self, channel: ChannelId) {
        if let Some(mut cmd) = self.commands.lock().await.remove(&channel) {
            cmd.stdin.take();
            kill_later(cmd.pgid);
        }
    }
}

fn kill_later(pgid: i32) {
    tokio::spawn(async move {
        tokio::time::sleep(GRACE).await;
        // SAFETY: the process group of a command we started; ESRCH if gone.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    });
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The connection is gone: end every command it started.
        if let Ok(mut commands) = self.commands.try_lock() {
            for (_, mut cmd) in commands.drain() {
                cmd.stdin.take();
                if tokio::runtime::Handle::try_current().is_ok() {
                    kill_later(cmd.pgid);
                }
            }
        }
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if user == self.host.user && password == self.host.password {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data).into_owned();
        let spawned = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "could not start /bin/sh");
                session.channel_failure(channel)?;
                return Ok(());
            }
        };
        let pgid = child.id().map_or(0, |p| p as i32);
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        self.commands
            .lock()
            .await
            .insert(channel, Command { stdin, pgid });
        session.channel_success(channel)?;

        let handle: Handle = session.handle();
        let live = Arc::clone(&self.host.live);
        let commands = Arc::clone(&self.commands);
        live.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let err_handle = handle.clone();
            let errors = tokio::spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                while let Ok(n) = stderr.read(&mut buf).await {
                    if n == 0
                        || err_handle
                            .extended_data(channel, 1, buf[..n].to_vec())
                            .await
                            .is_err()
                    {
                        break;
                    }
                }
            });
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n) = stdout.read(&mut buf).await {
                if n == 0 || handle.data(channel, buf[..n].to_vec()).await.is_err() {
                    break;
                }
            }
            let _ = errors.await;
            let status = child
                .wait()
                .await
                .ok()
                .and_then(|s| s.code())
                .unwrap_or(255);
            live.fetch_sub(1, Ordering::SeqCst);
            commands.lock().await.remove(&channel);
            let _ = handle.exit_status_request(channel, status as u32).await;
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let mut commands = self.commands.lock().await;
        if let Some(stdin) = commands.get_mut(&channel).and_then(|c| c.stdin.as_mut()) {
            if stdin.write_all(data).await.is_err() {
                commands.get_mut(&channel).map(|c| c.stdin.take());
            }
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(cmd) = self.commands.lock().await.get_mut(&channel) {
            cmd.stdin.take();
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.end(channel).await;
        Ok(())
    }
}
