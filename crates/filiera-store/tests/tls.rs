//! Large writes over TLS finish when the server was slow to read them (ADR 0017).
//!
//! sqlx-core 0.8.6 could hang there: when a write filled the socket and the TLS layer's read
//! then found nothing, its socket adapter (`StdSocket`, under both TLS back-ends) waited for
//! the socket to be writable *and* readable. A server in the middle of a `COPY … FROM STDIN`
//! (a rebuild's timelines) or of a large bind sends nothing until it has read more, so the
//! task could sleep forever. The workspace patches `StdSocket::poll_ready` to wake on either
//! direction; the first test compiles that very file of the patched copy and checks it, the
//! second streams a copy over TLS through a stall of the server.

use std::io::{self, Read as _, Write as _};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use filiera_testkit::TestDb;
use sqlx::{Connection as _, Executor as _, PgConnection};

/// What the patched file names `crate::net`: sqlx-core's own socket trait.
mod net {
    pub use sqlx_core::net::Socket;
}

/// sqlx-core's socket adapter, compiled from the patched copy the workspace builds with.
#[path = "../../vendor/sqlx-core/src/net/tls/util.rs"]
#[allow(dead_code)]
mod util;

/// A socket that may or may not be ready in each direction, and records which readiness the
/// adapter asked for.
#[derive(Default)]
struct Socket {
    writable: bool,
    readable: bool,
    asked_write: usize,
    asked_read: usize,
}

impl sqlx_core::net::Socket for Socket {
    fn try_read(&mut self, _: &mut dyn sqlx_core::io::ReadBuf) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    fn try_write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    fn poll_read_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.asked_read += 1;
        if self.readable {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn poll_write_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.asked_write += 1;
        if self.writable {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn poll_shutdown(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The adapter after the TLS layer was blocked writing, then reading (as rustls's
/// `complete_io` is when a write fills the socket and nothing has arrived).
fn blocked_both_ways(socket: Socket) -> util::StdSocket<Socket> {
    let mut adapter = util::StdSocket::new(socket);
    assert!(adapter.write(b"tls record").is_err());
    assert!(adapter.read(&mut [0; 16]).is_err());
    adapter
}

#[test]
fn blocked_both_ways_the_adapter_wakes_when_the_socket_is_writable_again() {
    let mut cx = Context::from_waker(Waker::noop());
    // The server read: the socket takes data again, nothing came back. 0.8.6 went on waiting
    // for a read here, and the server waited for the rest of the data.
    let mut adapter = blocked_both_ways(Socket {
        writable: true,
        ..Socket::default()
    });
    assert!(matches!(adapter.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    // And when the server answered first: readable is enough too.
    let mut adapter = blocked_both_ways(Socket {
        readable: true,
        ..Socket::default()
    });
    assert!(matches!(adapter.poll_ready(&mut cx), Poll::Ready(Ok(()))));
}

#[test]
fn blocked_both_ways_the_adapter_waits_for_either_direction() {
    let mut cx = Context::from_waker(Waker::noop());
    let mut adapter = blocked_both_ways(Socket::default());
    assert!(adapter.poll_ready(&mut cx).is_pending());
    // Both readinesses were asked for, so the waker is registered for both directions.
    assert_eq!(
        (adapter.socket.asked_write, adapter.socket.asked_read),
        (1, 1)
    );
    // Not blocked at all: ready without asking the socket.
    let mut idle = util::StdSocket::new(Socket::default());
    assert!(matches!(idle.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    assert_eq!((idle.socket.asked_write, idle.socket.asked_read), (0, 0));
}

/// Rows of about 1 KiB: 32 MiB, several times what the loopback's socket buffers hold.
const ROWS: usize = 32 * 1024;

/// A `COPY` over TLS whose server stops reading for a while (its first row waits for a lock)
/// goes on when the server reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_over_tls_finishes_after_the_server_stalled() -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let mut holder = PgConnection::connect(&db.url).await?;
    holder
        .execute("CREATE TABLE t (id integer PRIMARY KEY, data text NOT NULL)")
        .await?;

    let mut writer = PgConnection::connect(&with_tls(&db.url)).await?;
    let (encrypted, pid): (bool, i32) = sqlx::query_as(
        "SELECT ssl, pg_backend_pid() FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .fetch_one(&mut writer)
    .await?;
    ensure!(encrypted, "the copy's connection must be encrypted");

    // The holder's uncommitted row 0 makes the copy's first row wait for it: meanwhile the
    // server reads nothing more, and the client's writes fill the socket.
    holder.execute("BEGIN").await?;
    holder.execute("INSERT INTO t VALUES (0, 'held')").await?;

    let copy = tokio::spawn(async move {
        let mut copy = writer.copy_in_raw("COPY t FROM STDIN").await?;
        let payload = "x".repeat(1000);
        let mut chunk = String::new();
        for id in 0..ROWS {
            // Row 0 collides with the holder's row only if the holder commits: it rolls back.
            chunk.push_str(&format!("{id}\t{payload}\n"));
            if chunk.len() >= 256 * 1024 {
                copy.send(std::mem::take(&mut chunk).into_bytes()).await?;
            }
        }
        copy.send(chunk.into_bytes()).await?;
        let written = copy.finish().await?;
        anyhow::Ok(written)
    });

    // The copy waits on the holder's lock (and its client on a full socket) …
    let mut observer = PgConnection::connect(&db.url).await?;
    wait_for_lock(&mut observer, pid).await?;
    observer.close().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // … until the holder lets go: then the server reads again, and the client must go on.
    holder.execute("ROLLBACK").await?;

    let written = tokio::time::timeout(Duration::from_secs(60), copy)
        .await
        .context("the copy hung after the server read again (sqlx-core's TLS wake-up)")???;
    ensure!(written == ROWS as u64, "copied {written} rows of {ROWS}");
    let (stored,): (i64,) = sqlx::query_as("SELECT count(*) FROM t")
        .fetch_one(&mut holder)
        .await?;
    ensure!(stored == ROWS as i64);
    holder.close().await?;
    Ok(())
}

/// `url` asking for TLS (a local server answers with its own certificate).
fn with_tls(url: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}sslmode=require")
}

/// Waits until backend `pid` waits on a lock (asked outside any transaction: statistics views
/// keep one snapshot per transaction).
async fn wait_for_lock(conn: &mut PgConnection, pid: i32) -> anyhow::Result<()> {
    for _ in 0..200 {
        let waiting: Option<(String,)> = sqlx::query_as(
            "SELECT wait_event_type FROM pg_stat_activity \
             WHERE pid = $1 AND wait_event_type = 'Lock'",
        )
        .bind(pid)
        .fetch_optional(&mut *conn)
        .await?;
        if waiting.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the copy never waited for the held row")
}
