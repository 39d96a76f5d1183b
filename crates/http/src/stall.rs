//! A connection that closes itself when it stops making progress.
//!
//! A client that sends half a request and waits, or asks for an answer and
//! never reads it, would hold a connection (and the answer's memory)
//! forever. [`Stall`] fails a read or a write that is pending once neither
//! direction moved for the stall timeout; hyper then closes the connection.
//! Progress either way counts: while an answer streams out, hyper keeps a
//! read pending to notice a hang-up, and that read must not time out a
//! client that reads its answer steadily.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pub struct Stall<T> {
    io: T,
    limit: Duration,
    /// When bytes last moved, either way.
    moved: Instant,
    timer: Pin<Box<Sleep>>,
}

impl<T> Stall<T> {
    pub fn new(io: T, limit: Duration) -> Stall<T> {
        let now = Instant::now();
        Stall {
            io,
            limit,
            moved: now,
            timer: Box::pin(tokio::time::sleep_until(now + limit)),
        }
    }

    /// After a poll of `io`: progress moves the deadline; pending waits for
    /// the deadline, which fails once nothing moved for the limit.
    fn after<R>(
        &mut self,
        polled: Poll<io::Result<R>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Ready(r) => {
                self.moved = Instant::now();
                Poll::Ready(r)
            }
            Poll::Pending => {
                let deadline = self.moved + self.limit;
                if self.timer.deadline() != deadline {
                    self.timer.as_mut().reset(deadline);
                }
                match self.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no bytes moved for {}s", self.limit.as_secs()),
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Stall<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        this.after(polled, cx)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Stall<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.after(polled, cx)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.after(polled, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.after(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
