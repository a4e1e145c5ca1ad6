use crate::net::Socket;

use std::io::{self, Read, Write};
use std::task::{Context, Poll};

use futures_util::future;

pub struct StdSocket<S> {
    pub socket: S,
    wants_read: bool,
    wants_write: bool,
}

impl<S: Socket> StdSocket<S> {
    pub fn new(socket: S) -> Self {
        Self {
            socket,
            wants_read: false,
            wants_write: false,
        }
    }

    /// Ready once the socket can make progress in a direction the TLS layer was blocked on.
    ///
    /// filiera's patch: 0.8.6 waited for *both* directions when the TLS layer was blocked on
    /// both (a write that filled the socket, then a read that found nothing), and could so
    /// sleep forever while the server sends nothing until it has read more, as during a `COPY
    /// … FROM STDIN` or a large bind: once the socket was writable again, the task still
    /// waited to read. Both wake-ups are now registered and either one is enough (as upstream's
    /// fix of launchbadge/sqlx#4248 does).
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.wants_write && !self.wants_read {
            return Poll::Ready(Ok(()));
        }
        let writable = self.wants_write && is_ready(self.socket.poll_write_ready(cx))?;
        let readable = self.wants_read && is_ready(self.socket.poll_read_ready(cx))?;
        self.wants_write &= !writable;
        self.wants_read &= !readable;
        if writable || readable {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    pub async fn ready(&mut self) -> io::Result<()> {
        future::poll_fn(|cx| self.poll_ready(cx)).await
    }
}

impl<S: Socket> Read for StdSocket<S> {
    fn read(&mut self, mut buf: &mut [u8]) -> io::Result<usize> {
        self.wants_read = true;
        let read = self.socket.try_read(&mut buf)?;
        self.wants_read = false;

        Ok(read)
    }
}

impl<S: Socket> Write for StdSocket<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.wants_write = true;
        let written = self.socket.try_write(buf)?;
        self.wants_write = false;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        // NOTE: TCP sockets and unix sockets are both no-ops for flushes
        Ok(())
    }
}

/// Whether `poll` is ready, or the error it is ready with.
fn is_ready(poll: Poll<io::Result<()>>) -> io::Result<bool> {
    match poll {
        Poll::Ready(result) => result.map(|()| true),
        Poll::Pending => Ok(false),
    }
}
