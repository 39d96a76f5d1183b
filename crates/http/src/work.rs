//! Running a request's blocking work (a search) under the server's limits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::Limits;

/// The server's pool of turns for blocking work and its budget of answer
/// memory; cheap to clone (every handler holds one).
#[derive(Clone)]
pub struct Work {
    limits: Limits,
    turns: Arc<Semaphore>,
    /// In KiB.
    memory: Arc<Semaphore>,
}

/// What a piece of work gets: when it must stop, and how big its answer
/// may be.
pub struct Job {
    pub deadline: Instant,
    /// Raised when the client hung up or the deadline passed.
    pub cancelled: Arc<AtomicBool>,
    pub max_response_bytes: usize,
}

impl Job {
    /// Whether the work should stop now.
    pub fn stopped(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }
}

/// Raises the flag when dropped: when the handler's future is dropped
/// (the client hung up, or the server stops), the work stops too.
struct RaiseOnDrop(Arc<AtomicBool>);

impl Drop for RaiseOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

impl Work {
    pub fn new(limits: Limits) -> Work {
        Work {
            limits,
            turns: Arc::new(Semaphore::new(limits.workers.max(1))),
            memory: Arc::new(Semaphore::new(kib(limits.response_memory) as usize)),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Runs `work` on a blocking thread once a turn is free, and answers
    /// what it returns (a status and a JSON body). A busy server, a passed
    /// deadline and a panic are answered with a JSON error.
    pub async fn run<F>(&self, work: F) -> Response
    where
        F: FnOnce(&Job) -> (StatusCode, Vec<u8>) + Send + 'static,
    {
        let started = Instant::now();
        let deadline = started + self.limits.request_timeout;
        let secs = self.limits.request_timeout.as_secs_f64();
        let busy = || {
            crate::error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "busy: {} requests were running and none ended within this request's deadline of {secs}s; try again",
                    self.limits.workers
                ),
            )
        };
        let turn = match tokio::time::timeout_at(
            deadline.into(),
            self.turns.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(t)) => t,
            _ => return busy(),
        };
        let want = kib(self.limits.max_response_bytes).min(kib(self.limits.response_memory));
        let mut memory = match tokio::time::timeout_at(
            deadline.into(),
            self.memory.clone().acquire_many_owned(want),
        )
        .await
        {
            Ok(Ok(m)) => m,
            _ => return busy(),
        };
        let cancelled = Arc::new(AtomicBool::new(false));
        let _raise = RaiseOnDrop(cancelled.clone());
        let job = Job {
            deadline,
            cancelled: cancelled.clone(),
            max_response_bytes: self.limits.max_response_bytes,
        };
        let task = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            work(&job)
        });
        // The work looks at its deadline itself; this is the backstop.
        let grace = deadline + std::time::Duration::from_secs(1);
        match tokio::time::timeout_at(grace.into(), task).await {
            Ok(Ok((status, body))) => {
                // Keep what the answer takes until it is sent.
                drop(
                    memory.split(
                        memory
                            .num_permits()
                            .saturating_sub(kib(body.len()) as usize),
                    ),
                );
                answer(status, body, memory)
            }
            Ok(Err(e)) if e.is_panic() => {
                crate::error(StatusCode::INTERNAL_SERVER_ERROR, crate::PANICKED)
            }
            Ok(Err(_)) => crate::error(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping"),
            Err(_) => {
                cancelled.store(true, Ordering::Relaxed);
                crate::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the request ran longer than its deadline of {secs}s and was stopped"),
                )
            }
        }
    }
}

/// The longest an answer may take to be handed to its connection: a client
/// that reads a byte now and then (and so never stalls) is cut off here.
pub const SEND_WITHIN: std::time::Duration = std::time::Duration::from_secs(300);

/// `body` sent in 64 KiB pieces, holding `memory` until the last piece is
/// handed to the connection, or [`SEND_WITHIN`] passed.
fn answer(status: StatusCode, body: Vec<u8>, memory: OwnedSemaphorePermit) -> Response {
    const PIECE: usize = 64 * 1024;
    let len = body.len();
    let until = Instant::now() + SEND_WITHIN;
    let pieces = futures_util::stream::unfold(
        (Bytes::from(body), Some(memory)),
        move |(mut rest, memory)| async move {
            if rest.is_empty() {
                drop(memory);
                return None;
            }
            if Instant::now() > until {
                let e = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the answer was not taken within {}s", SEND_WITHIN.as_secs()),
                );
                return Some((Err(e), (Bytes::new(), None)));
            }
            let piece = rest.split_to(rest.len().min(PIECE));
            Some((Ok::<_, std::io::Error>(piece), (rest, memory)))
        },
    );
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, len)
        .body(Body::from_stream(pieces))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
