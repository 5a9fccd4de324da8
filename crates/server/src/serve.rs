//! Binding and serving: the connection loop the `httpserve` binary runs, usable on its own.
//!
//! axum's `serve` has no knobs for keep-alive or header timeouts, so httpserve drives
//! hyper's HTTP/1 connections itself: `TCP_NODELAY` on every connection (a keep-alive
//! client otherwise stalls ~40 ms per request on delayed ACKs), keep-alive on or off,
//! a header-read timeout, a send timeout (a client that stops reading is dropped), and a
//! graceful shutdown bounded by a grace period.

use axum::extract::ConnectInfo;
use http::Request;
use httpserve_core::LocalAddr;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use socket2::{Domain, Protocol, Socket, Type};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// How connections are served.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    keep_alive: bool,
    header_read_timeout: Duration,
    grace_period: Duration,
    max_connections: usize,
    max_header_bytes: usize,
    max_headers: usize,
    send_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            keep_alive: true,
            header_read_timeout: Duration::from_secs(30),
            grace_period: Duration::from_secs(10),
            max_connections: 8192,
            max_header_bytes: 96 * 1024,
            max_headers: 100,
            send_timeout: Duration::from_secs(60),
        }
    }
}

impl ServeOptions {
    /// HTTP/1.1 keep-alive (default on). Off is Python's default `-p HTTP/1.0` behaviour:
    /// one request per connection.
    pub fn keep_alive(mut self, enabled: bool) -> Self {
        self.keep_alive = enabled;
        self
    }

    /// How long a client may take to send a request's headers (default 30 s). hyper starts
    /// this clock when a connection is ready for its next request, so it is also the
    /// keep-alive idle timeout.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// The most connections served at once (default 8192); past it, new connections wait
    /// in the listen backlog until one closes.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// The most bytes a request line plus headers may take (default 96 KiB, at least
    /// 8 KiB): past it, `431`. A request target over 65534 bytes is a `414`.
    pub fn max_header_bytes(mut self, max: usize) -> Self {
        self.max_header_bytes = max.max(8192);
        self
    }

    /// The most header fields a request may carry (default 100, as Python): past it, `431`.
    pub fn max_headers(mut self, max: usize) -> Self {
        self.max_headers = max;
        self
    }

    /// How long a response may make no write progress before its connection is dropped
    /// (default 60 s, as nginx's `send_timeout`): a client that stops reading holds its
    /// connection and buffers no longer than this.
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = timeout;
        self
    }

    /// How long in-flight responses may run after shutdown begins (default 10 s).
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = grace;
        self
    }
}

/// Raises the open-file soft limit to the hard limit (as Go's runtime does), so the
/// connection cap, not a default of 1024 descriptors, bounds what can be served. Returns
/// the new soft limit.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard.max(soft))
}

/// Binds a listening socket as Python's `http.server` does: `SO_REUSEADDR`, and with no
/// address the IPv6 wildcard `::` accepting IPv4 too (dual stack), falling back to
/// `0.0.0.0` on hosts without IPv6.
pub fn bind(addr: Option<IpAddr>, port: u16) -> io::Result<TcpListener> {
    let listener = match addr {
        Some(ip) => bind_socket(SocketAddr::new(ip, port))?,
        None => match bind_socket(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port)) {
            Ok(listener) => listener,
            Err(e) if is_no_ipv6(&e) => {
                bind_socket(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port))?
            }
            Err(e) => return Err(e),
        },
    };
    TcpListener::from_std(listener)
}

fn is_no_ipv6(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_codes::EAFNOSUPPORT | libc_codes::EADDRNOTAVAIL | libc_codes::EPROTONOSUPPORT)
    )
}

/// The errno values that mean "this host has no IPv6" (Linux numbering).
mod libc_codes {
    pub(super) const EAFNOSUPPORT: i32 = 97;
    pub(super) const EADDRNOTAVAIL: i32 = 99;
    pub(super) const EPROTONOSUPPORT: i32 = 93;
}

fn bind_socket(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        // Dual stack, as Python's CLI server (bpo-38907); failure just means IPv6 only.
        let _ = socket.set_only_v6(false);
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// A request body straight from hyper, without boxing: `Default` (empty) so a service can
/// make requests of its own (CGI's local redirects).
#[derive(Debug, Default)]
pub struct IncomingBody(Option<Incoming>);

impl From<Incoming> for IncomingBody {
    fn from(body: Incoming) -> Self {
        Self(Some(body))
    }
}

impl http_body::Body for IncomingBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, hyper::Error>>> {
        match &mut self.get_mut().0 {
            Some(body) => std::pin::Pin::new(body).poll_frame(cx),
            None => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.as_ref().map_or_else(
            || http_body::SizeHint::with_exact(0),
            http_body::Body::size_hint,
        )
    }
}

/// A connection whose writes fail with `TimedOut` once they have made no progress for
/// `timeout`, so hyper drops a client that stopped reading. The timer is armed when a
/// write or flush returns `Pending` and disarmed by any progress; it is registered with
/// the same waker, so hyper is woken to see the error.
#[derive(Debug)]
struct SendTimeout<IO> {
    io: IO,
    timeout: Duration,
    /// Boxed on first need: most connections never fill their socket buffer.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
    /// What the input side last showed while hyper was not reading it.
    peer: PeerInput,
}

/// The client's input as seen without consuming it. With half-closes allowed, hyper does
/// not read while a response is pending, so a client that reset the connection would go
/// unnoticed until the next write, and its listing or CGI script would run on for nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerInput {
    /// Nothing seen since hyper last read.
    Quiet,
    /// Bytes (a pipelined request) or an end of input (a half-close) wait there: nothing to
    /// check again until hyper reads.
    Waiting,
}

/// A transport that can tell, without consuming input, that the peer reset it.
trait PeerReset {
    /// Whether the peer reset the connection; otherwise the task is woken when input
    /// arrives (data, end of input or a reset).
    fn poll_peer_reset(&mut self, cx: &mut Context<'_>, peer: &mut PeerInput) -> bool;
}

impl PeerReset for tokio::net::TcpStream {
    fn poll_peer_reset(&mut self, cx: &mut Context<'_>, peer: &mut PeerInput) -> bool {
        if *peer == PeerInput::Waiting || self.poll_read_ready(cx).is_pending() {
            return false;
        }
        let mut byte = [0u8; 1];
        let mut buf = tokio::io::ReadBuf::new(&mut byte);
        match self.poll_peek(cx, &mut buf) {
            Poll::Ready(Err(e)) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
            ),
            Poll::Ready(Ok(_)) => {
                *peer = PeerInput::Waiting;
                false
            }
            Poll::Pending => false,
        }
    }
}

#[cfg(test)]
impl PeerReset for tokio::io::DuplexStream {
    fn poll_peer_reset(&mut self, _: &mut Context<'_>, _: &mut PeerInput) -> bool {
        false
    }
}

impl<IO> SendTimeout<IO> {
    fn new(io: IO, timeout: Duration) -> Self {
        Self {
            io,
            timeout,
            stall: None,
            armed: false,
            peer: PeerInput::Quiet,
        }
    }

    /// Passes on a write's result; a `Pending` one starts (or goes on with) the clock.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.armed = false;
            return result;
        }
        if !self.armed {
            self.armed = true;
            let now = tokio::time::Instant::now();
            // A timeout too large to add is as good as none (tokio caps far deadlines).
            let deadline = now
                .checked_add(self.timeout)
                .unwrap_or_else(|| now + Duration::from_secs(366 * 24 * 3600));
            match &mut self.stall {
                Some(stall) => stall.as_mut().reset(deadline),
                None => self.stall = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let fired = self
            .stall
            .as_mut()
            .is_some_and(|stall| stall.as_mut().poll(cx).is_ready());
        if fired {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("send timeout: no write progress for {:?}", self.timeout),
            )));
        }
        Poll::Pending
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for SendTimeout<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.peer = PeerInput::Quiet;
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + PeerReset + Unpin> AsyncWrite for SendTimeout<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // hyper flushes on every turn of its connection loop, also while it waits for a
        // response: the one place to notice a client that reset the connection meanwhile.
        if this.io.poll_peer_reset(cx, &mut this.peer) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the client reset the connection",
            )));
        }
        let result = Pin::new(&mut this.io).poll_flush(cx);
        this.watch(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Status codes without a standard reason phrase (a CGI script's `299`) get the one the
/// response carries, else `Unknown`, instead of hyper's `<none>`.
fn with_reason_phrase<B>(mut res: http::Response<B>) -> http::Response<B> {
    if res.status().canonical_reason().is_none() {
        let phrase = res
            .extensions()
            .get::<httpserve_core::ReasonPhrase>()
            .and_then(|r| hyper::ext::ReasonPhrase::try_from(r.0.as_bytes().to_vec()).ok())
            .unwrap_or_else(|| hyper::ext::ReasonPhrase::from_static(b"Unknown"));
        res.extensions_mut().insert(phrase);
    }
    res
}

/// Serves `service` (an axum `Router`, or [`HttpServe::into_service`](crate::HttpServe::into_service))
/// on `listener` until `shutdown` resolves, then stops accepting and lets in-flight
/// responses finish within the grace period; at its end the remaining connections are
/// closed and `serve` returns. (Work on tokio's blocking pool, which cannot be cancelled,
/// is not waited for: see `Runtime::shutdown_timeout`.) Each request carries axum's
/// `ConnectInfo<SocketAddr>` and httpserve's `LocalAddr` extensions.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) where
    S: tower::Service<Request<IncomingBody>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    // half_close: a client that shuts down its sending side after a request (`nc -N`)
    // still gets the answer, as from Python. hyper then no longer treats that EOF as the
    // client leaving; a client that really left is noticed when a write fails.
    http.timer(TokioTimer::new())
        .half_close(true)
        .keep_alive(options.keep_alive)
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(options.max_header_bytes)
        .max_headers(options.max_headers);
    let graceful = GracefulShutdown::new();
    // Every connection's task, so those still running at the grace deadline can be dropped.
    let mut connections = tokio::task::JoinSet::new();
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A free slot first: at the cap, new connections wait in the kernel's backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE/ENFILE and friends: keep serving the connections we have and
                    // try again shortly instead of spinning or exiting.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().ok().map(LocalAddr);
        let service = service
            .clone()
            .map_request(move |req: Request<Incoming>| {
                let mut req = req.map(IncomingBody::from);
                req.extensions_mut().insert(ConnectInfo(peer));
                if let Some(local) = local {
                    req.extensions_mut().insert(local);
                }
                req
            })
            .map_response(with_reason_phrase);
        let stream = SendTimeout::new(stream, options.send_timeout);
        let connection = graceful
            .watch(http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)));
        // Finished tasks are reaped here, so the set holds about what runs.
        while connections.try_join_next().is_some() {}
        connections.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection from {peer}: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(options.grace_period) => {
            tracing::warn!("grace period over; closing the remaining connections");
        }
    }
    // Dropping a connection's task closes it and drops its response (a CGI script with it).
    connections.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_write_stalled_past_the_send_timeout_fails_and_progress_resets_the_clock() {
        let (near, mut far) = tokio::io::duplex(1024);
        let timeout = Duration::from_millis(150);
        let mut conn = SendTimeout::new(near, timeout);
        let data = vec![7u8; 64 * 1024];
        // A reader that takes 1 KiB every 50 ms: slow, but never stalled for 150 ms.
        let started = tokio::time::Instant::now();
        tokio::join!(
            async {
                conn.write_all(&data[..8 * 1024]).await.unwrap();
                conn.flush().await.unwrap();
            },
            async {
                let mut buf = [0u8; 1024];
                let mut got = 0;
                while got < 8 * 1024 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    got += far.read(&mut buf).await.unwrap();
                }
            }
        );
        assert!(
            started.elapsed() > timeout,
            "the slow reader was never slow"
        );
        // Now nobody reads: the write fails once the timeout passes, not before.
        let stalled = tokio::time::Instant::now();
        let err = conn.write_all(&data).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let waited = stalled.elapsed();
        assert!(
            waited >= timeout && waited < timeout * 4,
            "failed after {waited:?}"
        );
    }
}
