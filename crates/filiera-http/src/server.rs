//! Connection handling: the accept loop over hyper's HTTP/1 server, with the limits that keep
//! slow, idle or malformed clients from holding the service (SPEC 5.3).
//!
//! - A client has [`ServeSettings::header_read_timeout`] to send each request head, and
//!   [`ServeSettings::body_timeout`] to send its body (408 `request_timeout`).
//! - A connection idle between requests is closed after [`ServeSettings::keep_alive_timeout`];
//!   one whose client takes no byte of a response for [`ServeSettings::write_timeout`] (a slow
//!   or vanished reader, on a large page or the live stream) is dropped. TCP keepalive probes
//!   find peers that vanished from a connection with nothing to send.
//! - An answer given before its request body was read to the end says `connection: close`:
//!   hyper closes such a connection rather than wait for the rest, and a client must not send
//!   its next request on it.
//! - Asked to shut down, the server goes on serving for [`ServeSettings::drain_delay`] while
//!   `/readyz` answers 503 and every answer says `connection: close`; then it stops accepting,
//!   ends the live streams and lets the requests in flight finish.
//! - At most [`ServeSettings::max_connections`] connections are served at once; a permit is
//!   taken before `accept`, so further clients wait in the kernel's backlog, not in memory.
//! - Accept errors (out of file descriptors, …) are logged and retried after a pause; the loop
//!   never ends on its own.
//! - The bodiless 400, 414 and 431 that hyper answers by itself to a request head it cannot
//!   parse are rewritten into problem documents by `ProblemIo`, so that every answer of the
//!   service is one.
//!
//! hyper sees a connection through `ProblemIo`, which also keeps the idle and write timers; it
//! learns from `TrackExchanges`, wrapped around the app, whether a response is under way.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use futures::task::AtomicWaker;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower_http::timeout::RequestBodyDeadlineLayer;

use crate::problem::ApiError;
use crate::{AppState, SHUTDOWN_GRACE, router};

/// How the server treats its connections. [`Default`] suits a service behind a reverse proxy
/// or reached directly on a LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeSettings {
    /// Time a client has to send a complete request head (request line and headers), counted
    /// from when the server starts waiting for it; past it the connection is closed without an
    /// answer. It is the time a client that connects and sends nothing holds a connection. hyper
    /// also starts it when a connection waits for its next request, so the idle time allowed
    /// between two requests is the smaller of this and [`Self::keep_alive_timeout`].
    pub header_read_timeout: Duration,
    /// Time a client has to send a whole request body, counted from when its head was read;
    /// past it the request is answered 408 `request_timeout`. A deadline, not an idle timeout,
    /// so a client trickling a byte at a time cannot hold a connection either.
    pub body_timeout: Duration,
    /// Time a connection may stay idle after a response has been written, before the client
    /// starts its next request; past it the connection is closed (a clean close, no answer).
    /// The idle time allowed is the smaller of this and [`Self::header_read_timeout`], which
    /// hyper starts at the same moment. A streamed response (the live feed) is not idle,
    /// however long it waits for events: only the time after a complete response counts.
    pub keep_alive_timeout: Duration,
    /// Time a write may wait for the client to take a byte of a response; past it the
    /// connection is dropped. A client that stops reading (a large feed page, the live stream)
    /// holds its connection no longer than this once the socket buffers are full. Keep it well
    /// above the live stream's keep-alive interval (15 s).
    pub write_timeout: Duration,
    /// Connections served at once; further clients wait in the kernel's accept backlog until
    /// one closes. Each takes a file descriptor: keep the process's limit above this.
    pub max_connections: usize,
    /// How long the server keeps serving once asked to shut down, before it stops accepting:
    /// `/readyz` answers 503 `shutting_down` meanwhile, so that a proxy or an orchestrator that
    /// probes it stops sending requests here, and every response says `connection: close`, so
    /// that keep-alive clients move on. Requests arriving meanwhile are served as usual. Zero
    /// stops accepting at once (a single process with nothing in front of it).
    pub drain_delay: Duration,
}

impl Default for ServeSettings {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(60),
            max_connections: 1024,
            drain_delay: Duration::from_secs(5),
        }
    }
}

/// The longest pause between two accept attempts after accept errors.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// TCP keepalive on accepted connections: the first probe after a minute without traffic, then
/// one every 10 s; the kernel drops the connection after its retry count (9 on Linux), so a
/// peer that vanished is found within about two and a half minutes.
const TCP_KEEPALIVE: TcpKeepalive = TcpKeepalive::new()
    .with_time(Duration::from_secs(60))
    .with_interval(Duration::from_secs(10));

/// Serves the API over `state` on `listener` with `settings` until `shutdown` resolves; see
/// [`crate::serve`].
pub async fn serve_with(
    listener: TcpListener,
    state: AppState,
    settings: ServeSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = router(state.clone()).layer(RequestBodyDeadlineLayer::new(settings.body_timeout));
    let answers = Arc::new(ParseErrorAnswers::render().await);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    let http = Arc::new(http);
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    // Every connection holds a receiver; `closed()` resolves once they have all ended.
    let (open_tx, open_rx) = watch::channel(());

    // Asked to shut down: report not ready and go on serving for the drain delay.
    let draining = state.clone();
    let drain_delay = settings.drain_delay;
    let mut shutdown = pin!(async move {
        shutdown.await;
        draining.begin_draining();
        tracing::info!(
            drain_delay_ms = drain_delay.as_millis() as u64,
            "shutting down: /readyz answers 503; serving until the drain delay has passed"
        );
        tokio::time::sleep(drain_delay).await;
    });
    let mut backoff = Duration::ZERO;
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => {
                permit.expect("the connection semaphore is never closed")
            }
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    backoff = accept_failed(&err, backoff);
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        backoff = Duration::ZERO;
        let _ = stream.set_nodelay(true);
        if let Err(err) = enable_tcp_keepalive(&stream) {
            tracing::debug!(%peer, error = %err, "cannot enable TCP keepalive");
        }
        let exchanges = Arc::new(Exchanges::default());
        let io = TokioIo::new(ProblemIo::new(
            stream,
            answers.clone(),
            Timeouts::of(&settings, exchanges.clone()),
        ));
        let service = TrackExchanges {
            app: TowerToHyperService::new(app.clone()),
            exchanges,
            state: state.clone(),
        };
        let http = http.clone();
        let mut stopping = state.stopping.clone();
        let open = open_rx.clone();
        tokio::spawn(async move {
            let mut connection = pin!(http.serve_connection(io, service));
            let stop = async {
                if stopping.wait_for(|stopping| *stopping).await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = stop => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = result {
                let error = crate::problem::error_chain(&err);
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop((permit, open));
        });
    }

    // Shutting down: no more connections; the open ones finish their requests, or are left
    // behind after the grace period.
    state.begin_shutdown();
    drop(listener);
    drop(open_rx);
    tokio::select! {
        () = open_tx.closed() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!(
                "requests still running after the shutdown grace period; stopping anyway"
            );
        }
    }
    Ok(())
}

/// Turns on [`TCP_KEEPALIVE`] for an accepted connection.
fn enable_tcp_keepalive(stream: &tokio::net::TcpStream) -> io::Result<()> {
    SockRef::from(stream).set_tcp_keepalive(&TCP_KEEPALIVE)
}

/// Logs a failed `accept` and returns how long to wait before the next attempt, given the
/// previous pause: none after an error that concerns only that connection, otherwise doubling
/// up to [`MAX_ACCEPT_BACKOFF`] so that a process out of file descriptors (EMFILE) does not
/// spin.
fn accept_failed(err: &io::Error, previous: Duration) -> Duration {
    if matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    ) {
        tracing::debug!(error = %err, "a connection failed before it was accepted");
        return Duration::ZERO;
    }
    let pause = (previous * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
    tracing::error!(
        error = %err,
        retry_in_ms = pause.as_millis() as u64,
        "cannot accept connections"
    );
    pause
}

/// The problem documents standing for hyper's own answers to request heads it cannot parse,
/// rendered once by [`ApiError`].
#[derive(Debug)]
struct ParseErrorAnswers {
    malformed: RenderedProblem,
    uri_too_long: RenderedProblem,
    header_too_large: RenderedProblem,
}

/// A problem document's media type and bytes.
#[derive(Debug)]
struct RenderedProblem {
    content_type: HeaderValue,
    body: axum::body::Bytes,
}

impl ParseErrorAnswers {
    async fn render() -> Self {
        Self {
            malformed: RenderedProblem::of(ApiError::problem(
                StatusCode::BAD_REQUEST,
                "malformed_request",
                "Malformed request",
                "the request line or a header is malformed (e.g. a control character in a \
                 header value); the connection is closed",
                None,
            ))
            .await,
            uri_too_long: RenderedProblem::of(ApiError::problem(
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                "URI too long",
                format!(
                    "request targets are limited to {} bytes; the connection is closed",
                    crate::URI_LIMIT
                ),
                Some("uri".into()),
            ))
            .await,
            header_too_large: RenderedProblem::of(ApiError::problem(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "header_too_large",
                "Request header too large",
                "the request head is too large or has too many headers; the connection is closed",
                None,
            ))
            .await,
        }
    }

    fn for_status(&self, status: &[u8]) -> Option<&RenderedProblem> {
        match status {
            b"400" => Some(&self.malformed),
            b"414" => Some(&self.uri_too_long),
            b"431" => Some(&self.header_too_large),
            _ => None,
        }
    }
}

impl RenderedProblem {
    async fn of(problem: ApiError) -> Self {
        let response = problem.into_response();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("application/problem+json"));
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        Self { content_type, body }
    }
}

/// A hyper answer to an unparsable request head, found in the bytes hyper writes.
#[derive(Debug, PartialEq, Eq)]
struct ParseErrorHead {
    /// Where it starts in the written bytes.
    offset: usize,
    /// Its length, up to and including the blank line.
    len: usize,
}

/// Finds the first head in `written` that hyper answers by itself to a request it cannot
/// parse: `HTTP/1.x 400|414|431 …`, then only `connection`, `content-length: 0` and `date`
/// lines. The service's own answers always carry a `content-type`, and response bodies (JSON,
/// Prometheus text, server-sent events) never hold a raw CRLF, so nothing else matches.
fn find_parse_error_head(written: &[u8]) -> Option<ParseErrorHead> {
    let finder = memchr::memmem::Finder::new(b"HTTP/1.");
    let mut from = 0;
    while let Some(found) = finder.find(&written[from..]) {
        let offset = from + found;
        if let Some(len) = parse_error_head_len(&written[offset..]) {
            return Some(ParseErrorHead { offset, len });
        }
        from = offset + 1;
    }
    None
}

/// hyper's parse-error heads are about 110 bytes (status line, `connection`, `content-length`,
/// `date`); looking further for their end would only rescan response bodies.
const PARSE_ERROR_HEAD_MAX: usize = 256;

/// The length of the parse-error head at the start of `bytes`, if there is one.
fn parse_error_head_len(bytes: &[u8]) -> Option<usize> {
    let window = &bytes[..bytes.len().min(PARSE_ERROR_HEAD_MAX)];
    let end = memchr::memmem::find(window, b"\r\n\r\n")? + 4;
    // Each line with its CRLF, the blank line left out.
    let mut lines = bytes[..end - 2]
        .split_inclusive(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r\n"));
    let status_line = lines.next()??;
    let status = status_line.get(9..12)?;
    let shaped = status_line.len() > 12
        && status_line[7].is_ascii_digit()
        && status_line[8] == b' '
        && status_line[12] == b' '
        && matches!(status, b"400" | b"414" | b"431");
    if !shaped {
        return None;
    }
    for line in lines {
        let line = line?.to_ascii_lowercase();
        let allowed = line.starts_with(b"connection: ")
            || line == b"content-length: 0"
            || line.starts_with(b"date: ");
        if !allowed {
            return None;
        }
    }
    Some(end)
}

/// The parse-error head `head` rewritten into a whole answer carrying its problem document:
/// the same status line and `date`, `connection: close`, and the document.
fn rewrite(head: &[u8], answers: &ParseErrorAnswers) -> Option<Vec<u8>> {
    let status_end = memchr::memmem::find(head, b"\r\n")?;
    let problem = answers.for_status(head.get(9..12)?)?;
    let mut out = Vec::with_capacity(head.len() + problem.body.len() + 80);
    out.extend_from_slice(&head[..status_end + 2]);
    for line in head[status_end + 2..head.len() - 2].split_inclusive(|&b| b == b'\n') {
        if line.to_ascii_lowercase().starts_with(b"date: ") {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"connection: close\r\ncontent-type: ");
    out.extend_from_slice(problem.content_type.as_bytes());
    out.extend_from_slice(format!("\r\ncontent-length: {}\r\n\r\n", problem.body.len()).as_bytes());
    out.extend_from_slice(&problem.body);
    Some(out)
}

/// What a connection's service tells its IO: whether a response is under way, and whether one
/// ended since the IO last looked. Shared by [`TrackExchanges`] and [`ProblemIo`].
#[derive(Debug, Default)]
struct Exchanges {
    /// Requests handed to the app whose response hyper has not finished with (it drops the
    /// body once the last of it is in its write buffer, or when it gives up).
    open: AtomicUsize,
    /// Responses finished so far.
    ended: AtomicU64,
    /// The connection's task, woken when a response ends: hyper may not read again until the
    /// client sends something, and the idle timer starts in a read.
    task: AtomicWaker,
}

/// One request and its response, from the call of the app until hyper drops the response body.
#[derive(Debug)]
struct Exchange(Arc<Exchanges>);

impl Exchange {
    fn begin(exchanges: &Arc<Exchanges>) -> Self {
        exchanges.open.fetch_add(1, Ordering::AcqRel);
        Self(exchanges.clone())
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.0.ended.fetch_add(1, Ordering::AcqRel);
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.task.wake();
    }
}

/// The app as hyper calls it, each response body carrying its [`Exchange`], so that the
/// connection's IO knows when it is between requests.
struct TrackExchanges {
    app: TowerToHyperService<Router>,
    exchanges: Arc<Exchanges>,
    /// Whether the server is draining (then every answer closes its connection).
    state: AppState,
}

impl hyper::service::Service<Request<Incoming>> for TrackExchanges {
    type Response = Response<TrackedBody>;
    type Error = std::convert::Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let exchange = Exchange::begin(&self.exchanges);
        let read = Arc::new(AtomicBool::new(request.body().is_end_stream()));
        let request = request.map(|body| WatchedBody {
            body,
            read: read.clone(),
        });
        let response = self.app.call(request);
        let state = self.state.clone();
        Box::pin(async move {
            let mut response = response.await?;
            // A body left unread (a refusal before it was needed: 401, 413, 415, …) makes hyper
            // close the connection after the answer unless the rest is already buffered; say
            // so, or a client sends its next request on a connection about to be closed. While
            // draining, every connection closes after its answer, so that keep-alive clients
            // reconnect (through their proxy, to a replica that stays) before this one stops
            // accepting.
            if !read.load(Ordering::Acquire) || state.is_draining() {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response.map(|body| TrackedBody {
                body,
                _exchange: exchange,
            }))
        })
    }
}

/// A request body that notes when it has been read to its end.
struct WatchedBody {
    body: Incoming,
    /// Set once the last frame is out.
    read: Arc<AtomicBool>,
}

impl Body for WatchedBody {
    type Data = axum::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.body).poll_frame(cx));
        if frame.is_none() || this.body.is_end_stream() {
            this.read.store(true, Ordering::Release);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A response body that ends its [`Exchange`] when hyper drops it.
struct TrackedBody {
    body: axum::body::Body,
    /// Held only to be dropped with the body.
    _exchange: Exchange,
}

impl Body for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A timer that an IO starts and stops as it reads and writes; its sleep is allocated on first
/// use and reset after.
#[derive(Debug, Default)]
struct Timer {
    sleep: Option<Pin<Box<Sleep>>>,
    running: bool,
}

impl Timer {
    fn start(&mut self, after: Duration) {
        let deadline = Instant::now() + after;
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().reset(deadline),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
        self.running = true;
    }

    fn stop(&mut self) {
        self.running = false;
    }

    /// Whether the running timer has gone off; otherwise the task is woken when it does.
    fn poll_elapsed(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.sleep {
            Some(sleep) if self.running => sleep.as_mut().poll(cx).is_ready(),
            _ => false,
        }
    }
}

/// A connection's idle and write timers (see [`ServeSettings::keep_alive_timeout`] and
/// [`ServeSettings::write_timeout`]).
#[derive(Debug)]
struct Timeouts {
    keep_alive: Duration,
    write: Duration,
    exchanges: Arc<Exchanges>,
    /// `exchanges.ended` when the IO last looked: a change means a response ended since.
    seen_ended: u64,
    /// Runs from the end of a response (restarted by each byte written after it) until the
    /// client sends a byte.
    idle: Timer,
    /// Runs while a write waits for the client, from the first `Pending` after a byte went out.
    write_stalled: Timer,
    /// The idle timer went off: reads give end-of-file from now on.
    closed_idle: bool,
}

impl Timeouts {
    fn of(settings: &ServeSettings, exchanges: Arc<Exchanges>) -> Self {
        Self {
            keep_alive: settings.keep_alive_timeout,
            write: settings.write_timeout,
            exchanges,
            seen_ended: 0,
            idle: Timer::default(),
            write_stalled: Timer::default(),
            closed_idle: false,
        }
    }

    /// Whether a response is under way.
    fn in_exchange(&self) -> bool {
        self.exchanges.open.load(Ordering::Acquire) > 0
    }

    /// A read is about to be made: starts the idle timer if a response ended since the last
    /// one and no other has begun.
    fn before_read(&mut self, cx: &mut Context<'_>) {
        self.exchanges.task.register(cx.waker());
        let ended = self.exchanges.ended.load(Ordering::Acquire);
        if ended != self.seen_ended && !self.in_exchange() {
            self.seen_ended = ended;
            self.idle.start(self.keep_alive);
        }
    }

    /// The read found nothing: whether the connection has been idle too long. Never while a
    /// response is under way or a write waits for the client.
    fn idle_elapsed(&mut self, cx: &mut Context<'_>) -> bool {
        if self.in_exchange() || self.write_stalled.running {
            return false;
        }
        self.closed_idle = self.idle.poll_elapsed(cx);
        self.closed_idle
    }

    /// A write into `inner`, failed with `TimedOut` once it has waited [`Self::write`] for the
    /// client to take a byte.
    fn poll_write<T: AsyncWrite + Unpin>(
        &mut self,
        inner: &mut T,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(inner).poll_write(cx, buf) {
            Poll::Pending => {
                if !self.write_stalled.running {
                    self.write_stalled.start(self.write);
                }
                if self.write_stalled.poll_elapsed(cx) {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the client took no byte of the response for {:?}",
                            self.write
                        ),
                    )));
                }
                Poll::Pending
            }
            written => {
                self.write_stalled.stop();
                if self.idle.running {
                    self.idle.start(self.keep_alive);
                }
                written
            }
        }
    }
}

/// A connection's IO as hyper sees it. It keeps the connection's [`Timeouts`], and turns
/// hyper's bodiless answers to unparsable request heads into problem documents (see
/// [`find_parse_error_head`]).
///
/// Reads pass through, except that once the connection has been idle past its keep-alive
/// timeout they give end-of-file, on which hyper closes an idle connection cleanly. Writes
/// pass through (failing once the client has taken nothing for the write timeout) until a
/// parse-error head: the bytes before it are written as they are, then its rewritten answer is
/// written whole before hyper is told that its head went out. hyper closes the connection
/// after such an answer.
///
/// Vectored writes are declined so that hyper hands every byte to `poll_write`.
struct ProblemIo<T> {
    inner: T,
    answers: Arc<ParseErrorAnswers>,
    /// A rewritten answer being written, and how many of its bytes are out.
    replacing: Option<Replacement>,
    timeouts: Timeouts,
}

struct Replacement {
    bytes: Vec<u8>,
    written: usize,
    /// The length of hyper's head it stands for, reported as written once it is all out.
    stands_for: usize,
}

impl<T> ProblemIo<T> {
    fn new(inner: T, answers: Arc<ParseErrorAnswers>, timeouts: Timeouts) -> Self {
        Self {
            inner,
            answers,
            replacing: None,
            timeouts,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ProblemIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.timeouts.closed_idle {
            return Poll::Ready(Ok(()));
        }
        this.timeouts.before_read(cx);
        let filled = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending if this.timeouts.idle_elapsed(cx) => {
                tracing::debug!("closing a connection idle past its keep-alive timeout");
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > filled {
                    this.timeouts.idle.stop();
                }
                Poll::Ready(Ok(()))
            }
            failed => failed,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ProblemIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.timeouts.exchanges.task.register(cx.waker());
        if this.replacing.is_none() {
            // hyper hands back the same unwritten bytes after `Pending`, so a head found here
            // is still at the same place on the next call.
            let Some(head) = find_parse_error_head(buf) else {
                return this.timeouts.poll_write(&mut this.inner, cx, buf);
            };
            if head.offset > 0 {
                return this
                    .timeouts
                    .poll_write(&mut this.inner, cx, &buf[..head.offset]);
            }
            let Some(bytes) = rewrite(&buf[..head.len], &this.answers) else {
                return this.timeouts.poll_write(&mut this.inner, cx, buf);
            };
            this.replacing = Some(Replacement {
                bytes,
                written: 0,
                stands_for: head.len,
            });
        }
        let replacement = this.replacing.as_mut().expect("a replacement is set above");
        while replacement.written < replacement.bytes.len() {
            let n = ready!(this.timeouts.poll_write(
                &mut this.inner,
                cx,
                &replacement.bytes[replacement.written..]
            ))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            replacement.written += n;
        }
        let stands_for = replacement.stands_for;
        this.replacing = None;
        Poll::Ready(Ok(stands_for))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const HEAD_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\
        content-length: 0\r\ndate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n";

    #[test]
    fn only_hypers_own_answers_are_found() {
        assert_eq!(
            find_parse_error_head(HEAD_400),
            Some(ParseErrorHead {
                offset: 0,
                len: HEAD_400.len()
            })
        );
        let after_a_body = [b"{\"ok\":true}".as_slice(), HEAD_400].concat();
        assert_eq!(find_parse_error_head(&after_a_body).unwrap().offset, 11);
        let answered_by_the_app = b"HTTP/1.1 400 Bad Request\r\n\
            content-type: application/problem+json\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(find_parse_error_head(answered_by_the_app), None);
        let other_status = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(find_parse_error_head(other_status), None);
        assert_eq!(find_parse_error_head(b"HTTP/1.1 400 Bad Request\r\n"), None);
    }

    #[test]
    fn accept_errors_back_off_up_to_a_second() {
        let emfile = io::Error::from_raw_os_error(24);
        let mut pauses = vec![accept_failed(&emfile, Duration::ZERO)];
        for _ in 0..8 {
            pauses.push(accept_failed(&emfile, *pauses.last().unwrap()));
        }
        assert_eq!(pauses[0], Duration::from_millis(10));
        assert_eq!(pauses[1], Duration::from_millis(20));
        assert_eq!(pauses.last(), Some(&MAX_ACCEPT_BACKOFF));
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(accept_failed(&aborted, MAX_ACCEPT_BACKOFF), Duration::ZERO);
    }

    #[tokio::test]
    async fn accepted_connections_have_tcp_keepalive() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (_client, accepted) = tokio::join!(client, listener.accept());
        let (stream, _) = accepted.unwrap();
        assert!(!SockRef::from(&stream).keepalive().unwrap());
        enable_tcp_keepalive(&stream).unwrap();
        assert!(SockRef::from(&stream).keepalive().unwrap());
    }

    #[tokio::test]
    async fn each_status_gets_its_own_problem() {
        let answers = ParseErrorAnswers::render().await;
        for (status, code) in [
            ("400 Bad Request", "malformed_request"),
            ("414 URI Too Long", "uri_too_long"),
            ("431 Request Header Fields Too Large", "header_too_large"),
        ] {
            let head = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
            let found = find_parse_error_head(head.as_bytes()).expect(status);
            assert_eq!(found.len, head.len());
            let answer = rewrite(head.as_bytes(), &answers).expect(status);
            let answer = String::from_utf8(answer).unwrap();
            let (head, body) = answer.split_once("\r\n\r\n").unwrap();
            assert!(
                head.starts_with(&format!("HTTP/1.1 {status}\r\n")),
                "{head}"
            );
            assert!(head.contains("\r\nconnection: close"), "{head}");
            let problem: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(problem["code"], code);
            assert_eq!(problem["status"], status[..3].parse::<u16>().unwrap());
        }
    }

    /// Accepts at most `chunk` bytes a write, so every write is partial.
    struct Trickle {
        written: Vec<u8>,
        chunk: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let n = buf.len().min(this.chunk);
            this.written.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn partial_writes_carry_the_whole_problem_document() {
        let answers = Arc::new(ParseErrorAnswers::render().await);
        let mut io = ProblemIo::new(
            Trickle {
                written: Vec::new(),
                chunk: 7,
            },
            answers,
            Timeouts::of(&ServeSettings::default(), Arc::default()),
        );
        let earlier = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok";
        io.write_all(&[earlier.as_slice(), HEAD_400].concat())
            .await
            .unwrap();
        let written = String::from_utf8(io.inner.written).unwrap();
        let (before, answer) = written.split_at(earlier.len());
        assert_eq!(before.as_bytes(), earlier);
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("date: Mon, 01 Jan 2024"), "{head}");
        assert!(head.contains("content-type: application/problem+json"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["code"], "malformed_request");
        assert_eq!(problem["status"], 400);
        assert_eq!(problem["type"], "/problems/malformed_request");
    }

    /// Takes no byte, ever: a client that stopped reading, its buffers full.
    struct Stuck;

    impl AsyncWrite for Stuck {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Pending
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_write_the_client_never_takes_times_out() {
        let settings = ServeSettings {
            write_timeout: Duration::from_millis(100),
            ..ServeSettings::default()
        };
        let answers = Arc::new(ParseErrorAnswers::render().await);
        let mut io = ProblemIo::new(Stuck, answers, Timeouts::of(&settings, Arc::default()));
        let started = std::time::Instant::now();
        let err = tokio::time::timeout(Duration::from_secs(5), io.write_all(b"HTTP/1.1 200 OK"))
            .await
            .expect("the write gives up by itself")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(100));
    }
}
