//! httpserve: `python3 -m http.server`, rebuilt as tower layers and returned as an axum
//! [`Router`], plus the `httpserve` binary.
//!
//! ```
//! use axum::{Router, routing::get};
//! use httpserve::HttpServe;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let dir = tempfile::tempdir().unwrap();
//! // Your routes first; every other path is served from the directory.
//! let app: Router = Router::new()
//!     .route("/health", get(|| async { "ok" }))
//!     .merge(HttpServe::new(dir.path()).into_router());
//! # let _ = app;
//! // Or under a prefix: `Router::new().nest_service("/files", HttpServe::new(dir).into_router())`.
//! # }
//! ```
//!
//! A request flows through these layers, outermost first:
//!
//! 1. [`httpserve_access_log`] — one Python-style line per response on the
//!    `httpserve::access` tracing target;
//! 2. tower-http's `SetResponseHeader` — `Server: httpserve/VERSION`;
//! 3. [`httpserve_conditional`] — `304`/`412` from `If-Modified-Since`, `If-None-Match`,
//!    `If-Match`, `If-Unmodified-Since` against the response's validators;
//! 4. with [`HttpServe::cgi`], [`httpserve_cgi`] — scripts in `/cgi-bin` and `/htbin`;
//! 5. [`httpserve_index`] — `301` to `dir/`, then `index.html`/`index.htm`;
//! 6. [`httpserve_listing`] — the directory listing page;
//! 7. [`httpserve_files`] — the file bytes, ranges, `HEAD`, `404`/`501` pages.
//!
//! The first layer that needs the filesystem opens the path once; the others reuse that
//! lookup ([`httpserve_core::Resolved`]).

use axum::Router;
use axum::extract::{ConnectInfo, NestedPath};
use http::{Extensions, HeaderValue, StatusCode, header};
use httpserve_access_log::AccessLogLayer;
use httpserve_cgi::{CgiConfig, CgiLayer};
use httpserve_conditional::ConditionalLayer;
use httpserve_core::Root;
pub use httpserve_core::SymlinkPolicy;
use httpserve_files::ServeFiles;
use httpserve_index::{DEFAULT_INDEX_FILES, IndexLayer};
use httpserve_listing::ListingLayer;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::validate_request::ValidateRequestHeaderLayer;

/// The `Server` header httpserve sends by default: `httpserve/VERSION`.
pub const SERVER_HEADER: &str = concat!("httpserve/", env!("CARGO_PKG_VERSION"));

/// Builds the whole static-serving stack for one directory.
#[derive(Debug, Clone)]
pub struct HttpServe {
    root: PathBuf,
    index_files: Vec<String>,
    server_header: Option<HeaderValue>,
    access_log: bool,
    cgi: Option<CgiConfig>,
    symlinks: SymlinkPolicy,
    hide_dotfiles: bool,
    validate_host: bool,
}

impl HttpServe {
    /// Serves `root` as Python's `http.server` would.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            index_files: DEFAULT_INDEX_FILES.iter().map(|&n| n.to_owned()).collect(),
            server_header: Some(HeaderValue::from_static(SERVER_HEADER)),
            access_log: true,
            cgi: None,
            symlinks: SymlinkPolicy::Follow,
            hide_dotfiles: false,
            validate_host: true,
        }
    }

    /// The index files tried for a directory, in order (default `index.html`, `index.htm`).
    pub fn index_files<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<String>,
    {
        self.index_files = names.into_iter().map(Into::into).collect();
        self
    }

    /// The `Server` header value, or `None` to send none.
    pub fn server_header(mut self, value: Option<HeaderValue>) -> Self {
        self.server_header = value;
        self
    }

    /// Whether to log each response on the `httpserve::access` target (default on).
    pub fn access_log(mut self, enabled: bool) -> Self {
        self.access_log = enabled;
        self
    }

    /// Whether an HTTP/1.1 request without exactly one valid `Host` gets `400`, as RFC 9112
    /// §3.2 requires (default on; HTTP/1.0 may omit it, HTTP/2 has no `Host` field).
    pub fn validate_host(mut self, validate: bool) -> Self {
        self.validate_host = validate;
        self
    }

    /// What lookups do with symlinks (default: follow, as Python).
    pub fn symlinks(mut self, policy: SymlinkPolicy) -> Self {
        self.symlinks = policy;
        self
    }

    /// Hides dot-files: neither listed nor served, nor run as CGI scripts (default off).
    pub fn hide_dotfiles(mut self, hide: bool) -> Self {
        self.hide_dotfiles = hide;
        self
    }

    /// Runs CGI scripts (Python's `--cgi`): `configure` receives a [`CgiConfig`] for this
    /// root, already wired to the client address, mount prefix and `SERVER_SOFTWARE`, and
    /// returns it with any changes (directories, timeouts, interpreter, user, environment).
    pub fn cgi(mut self, configure: impl FnOnce(CgiConfig) -> CgiConfig) -> Self {
        let config = CgiConfig::new(&self.root)
            .server_software(SERVER_HEADER)
            .client_addr(connect_info)
            .mount_prefix(nested_path);
        self.cgi = Some(configure(config));
        self
    }

    /// The directory served.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The stack as an axum [`Router`] that answers every path (a fallback), ready to be
    /// served, merged into an app, or nested under a prefix with `nest_service`.
    pub fn into_router<S>(self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        Router::new().fallback_service(self.into_service::<axum::body::Body>())
    }

    /// The stack as one tower service, without axum's router: what the `httpserve` binary
    /// serves (one concrete type, no per-request boxing between layers).
    pub fn into_service<B>(
        self,
    ) -> impl tower::Service<
        http::Request<B>,
        Response = http::Response<
            impl http_body::Body<Data = bytes::Bytes, Error = BoxError> + Send + 'static,
        >,
        Error = Infallible,
        Future = impl Future<
            Output = Result<
                http::Response<
                    impl http_body::Body<Data = bytes::Bytes, Error = BoxError> + Send + 'static,
                >,
                Infallible,
            >,
        > + Send
                 + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
    where
        B: http_body::Body<Data = bytes::Bytes> + Default + Send + 'static,
        B::Error: Into<BoxError>,
    {
        // One Root for every layer: they share its policies and each other's lookups.
        let root = Root::new(&self.root)
            .symlinks(self.symlinks)
            .hide_dotfiles(self.hide_dotfiles);
        let cgi = match self.cgi {
            // Scripts are looked up through the same Root, under the same policies.
            Some(cgi) => CgiLayer::new(cgi.with_root(&root)),
            None => CgiLayer::pass_through(),
        };
        ServiceBuilder::new()
            .option_layer(
                self.access_log
                    .then(|| AccessLogLayer::new().client_addr(connect_info)),
            )
            .option_layer(
                self.server_header
                    .map(|value| SetResponseHeaderLayer::overriding(header::SERVER, value)),
            )
            // Python's header-line limit (431), and RFC 9112 §3.2: one valid Host, or 400.
            .layer(ValidateRequestHeaderLayer::custom(RequestCheck::new(
                self.validate_host,
            )))
            // Outside CGI, so a script's output with validators gets 304 too.
            .layer(ConditionalLayer::new())
            .layer(cgi)
            .layer(
                IndexLayer::new(&root)
                    .index_files(self.index_files)
                    .mount_prefix(nested_path),
            )
            .layer(ListingLayer::new(&root))
            .service(ServeFiles::new(&root))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The longest header line Python reads (`http.client._MAXLINE`): name, `": "`, value and
/// CRLF. Longer lines get Python's `431 Line too long`.
pub const MAX_HEADER_LINE: usize = 65536;

/// Checks what every request must satisfy before any layer works on it, answering with
/// Python's pages: no header line over [`MAX_HEADER_LINE`] (`431`), and (when validating
/// hosts) one valid `Host` (`400`).
struct RequestCheck<B> {
    validate_host: bool,
    _body: std::marker::PhantomData<fn() -> B>,
}

impl<B> RequestCheck<B> {
    fn new(validate_host: bool) -> Self {
        Self {
            validate_host,
            _body: std::marker::PhantomData,
        }
    }
}

impl<B> Clone for RequestCheck<B> {
    fn clone(&self) -> Self {
        Self::new(self.validate_host)
    }
}

impl<ReqBody, B> tower_http::validate_request::ValidateRequest<ReqBody> for RequestCheck<B> {
    type ResponseBody = http_body_util::Either<B, httpserve_core::PageBody>;

    fn validate(
        &mut self,
        req: &mut http::Request<ReqBody>,
    ) -> Result<(), http::Response<Self::ResponseBody>> {
        if has_overlong_header_line(req.headers()) {
            return Err(line_too_long(req.method()).map(http_body_util::Either::Right));
        }
        if !self.validate_host || valid_host(req) {
            return Ok(());
        }
        Err(httpserve_core::error_response(
            StatusCode::BAD_REQUEST,
            "Bad request: missing or invalid Host header",
            req.method(),
        )
        .map(http_body_util::Either::Right))
    }
}

/// Whether a header line, as sent (`name: value\r\n`), is longer than Python reads.
fn has_overlong_header_line(headers: &http::HeaderMap) -> bool {
    headers
        .iter()
        .any(|(name, value)| name.as_str().len() + value.len() + 4 > MAX_HEADER_LINE)
}

/// Python's `send_error(431, "Line too long", "got more than 65536 bytes when reading
/// header line")`, closing the connection as hyper does for its own `431`s.
fn line_too_long(method: &http::Method) -> http::Response<httpserve_core::PageBody> {
    let mut res = httpserve_core::ErrorPage::new(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "Line too long",
    )
    .explanation("got more than 65536 bytes when reading header line")
    .response(method);
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// Whether a request has what RFC 9112 §3.2 requires: exactly one `Host` that is a
/// valid `host[:port]` (or empty), which HTTP/1.1 may not omit.
fn valid_host<B>(req: &http::Request<B>) -> bool {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) => req.version() != http::Version::HTTP_11,
        (Some(_), Some(_)) => false,
        (Some(host), None) => {
            host.is_empty()
                || (!host.as_bytes().contains(&b'@')
                    && http::uri::Authority::try_from(host.as_bytes()).is_ok())
        }
    }
}

/// The client address axum's `into_make_service_with_connect_info` (or httpserve's own
/// server loop) stores in each request, for the access log and CGI's `REMOTE_ADDR`.
pub fn connect_info(extensions: &Extensions) -> Option<SocketAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
}

fn nested_path(extensions: &Extensions) -> Option<&str> {
    extensions.get::<NestedPath>().map(NestedPath::as_str)
}

pub mod serve;

#[cfg(test)]
mod tests;
