//! Access log lines in the format of Python's `http.server`, emitted through `tracing`.
//!
//! ```
//! use httpserve_access_log::{AccessLogLayer, TARGET};
//! use http::{Request, Response};
//! use std::convert::Infallible;
//! use std::net::SocketAddr;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // Lines go to the `httpserve::access` target: route, format or silence them there.
//! assert_eq!(TARGET, "httpserve::access");
//!
//! let svc = ServiceBuilder::new()
//!     .layer(AccessLogLayer::new())
//!     .service(service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) }));
//!
//! let mut req = Request::get("/x").body(()).unwrap();
//! req.extensions_mut().insert(SocketAddr::from(([127, 0, 0, 1], 4242)));
//! svc.oneshot(req).await.unwrap();
//! // logs: 127.0.0.1 - - [24/Nov/2026 19:22:43] "GET /x HTTP/1.1" 200 -
//! # }
//! ```
//!
//! Each response logs one line, `CLIENT - - [DD/Mon/YYYY HH:MM:SS] "REQUEST LINE" STATUS -`
//! (local time), preceded for an error (status ≥ 400) by Python's
//! `code 404, message File not found` line. Control characters (U+0000–U+001F,
//! U+007F–U+009F) in the message become `\xHH` and a backslash becomes `\\`, as Python does
//! since gh-100001, so no request can forge or corrupt a line.
//!
//! The client address is read from the request's extensions by a function you choose with
//! [`AccessLogLayer::client_addr`]; by default a plain [`std::net::SocketAddr`] extension. An
//! axum app passes a function that reads axum's `ConnectInfo<SocketAddr>`.

use http::{Request, Response};
use httpserve_core::ErrorMessage;
pub use httpserve_core::escape_control_chars;
use pin_project_lite::pin_project;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// The `tracing` target of every access log line.
pub const TARGET: &str = "httpserve::access";

pub use httpserve_core::ClientAddrFn;
use httpserve_core::socket_addr_extension;

/// Applies [`AccessLog`] to a service.
#[derive(Debug, Clone, Copy)]
pub struct AccessLogLayer {
    client_addr: ClientAddrFn,
}

impl Default for AccessLogLayer {
    fn default() -> Self {
        Self {
            client_addr: socket_addr_extension,
        }
    }
}

impl AccessLogLayer {
    /// Logs every request, reading the client address from a `SocketAddr` extension.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the client address with `client_addr` instead.
    pub fn client_addr(mut self, client_addr: ClientAddrFn) -> Self {
        self.client_addr = client_addr;
        self
    }
}

impl<S> tower_layer::Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessLog {
            inner,
            client_addr: self.client_addr,
        }
    }
}

/// Logs a Python-style access line for each response of the inner service.
#[derive(Debug, Clone)]
pub struct AccessLog<S> {
    inner: S,
    client_addr: ClientAddrFn,
}

impl<S> AccessLog<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// What is known of a request when it arrives, kept until its response is ready.
#[derive(Debug)]
struct RequestInfo {
    client: Option<IpAddr>,
    request_line: String,
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for AccessLog<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // Skip the formatting when nobody listens.
        let info = tracing::enabled!(target: TARGET, tracing::Level::INFO).then(|| RequestInfo {
            client: (self.client_addr)(req.extensions()).map(|addr| addr.ip()),
            request_line: request_line(&req),
        });
        ResponseFuture {
            inner: self.inner.call(req),
            info,
        }
    }
}

fn request_line<B>(req: &Request<B>) -> String {
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().to_string(), ToString::to_string);
    format!("{} {} {:?}", req.method(), target, req.version())
}

pin_project! {
    /// The future of [`AccessLog`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        info: Option<RequestInfo>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let (Ok(res), Some(info)) = (&result, this.info.take()) {
            log_response(&info, res);
        }
        Poll::Ready(result)
    }
}

fn log_response<B>(info: &RequestInfo, res: &Response<B>) {
    let client = info
        .client
        .map_or_else(|| String::from("-"), |ip| ip.to_string());
    let now = chrono::Local::now().format("%d/%b/%Y %H:%M:%S");
    let status = res.status();
    if status.as_u16() >= 400 {
        let message = res
            .extensions()
            .get::<ErrorMessage>()
            .map_or_else(|| status.canonical_reason().unwrap_or(""), |m| &m.0);
        let line = escape_control_chars(&format!("code {}, message {message}", status.as_u16()));
        tracing::info!(target: TARGET, "{client} - - [{now}] {line}");
    }
    let line = escape_control_chars(&format!("\"{}\" {} -", info.request_line, status.as_u16()));
    tracing::info!(target: TARGET, "{client} - - [{now}] {line}");
}

#[cfg(test)]
mod tests;
