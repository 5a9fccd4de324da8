//! Directory requests, the way Python's `http.server` answers them: a directory asked for
//! without its trailing slash is redirected (`301`) to `path/` with the query kept, and a
//! directory asked for with it is served by its first index file (`index.html`, then
//! `index.htm`), which the inner service then serves as a file.
//!
//! ```
//! use httpserve_index::IndexLayer;
//! use http::{Request, Response, StatusCode};
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let root = tempfile::tempdir().unwrap();
//! std::fs::create_dir(root.path().join("docs")).unwrap();
//! std::fs::write(root.path().join("docs/index.html"), "<h1>docs</h1>").unwrap();
//!
//! // The inner service sees the index file's path.
//! let inner = service_fn(|req: Request<()>| async move {
//!     Ok::<_, Infallible>(Response::new(req.uri().to_string()))
//! });
//! let svc = ServiceBuilder::new().layer(IndexLayer::new(root.path())).service(inner);
//!
//! let res = svc.clone().oneshot(Request::get("/docs?lang=en").body(()).unwrap()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::MOVED_PERMANENTLY);
//! assert_eq!(res.headers()["location"], "/docs/?lang=en");
//!
//! let res = svc.oneshot(Request::get("/docs/").body(()).unwrap()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! # }
//! ```
//!
//! The lookup this layer makes is stored in the request ([`httpserve_core::Resolved`]),
//! so the listing and file layers behind it never look the same path up again.
//!
//! A `Location` never starts with `//` or `/\`: any leading run of slashes and backslashes
//! becomes one `/`, so a crafted path cannot redirect a browser to another host
//! (CVE-2021-28861, and the backslash spelling Python still lets through).

use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::Either;
use httpserve_core::{Entry, PageBody, Resolved, Root, python_quote, safe_redirect_path};
use pin_project_lite::pin_project;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

/// Python's default index files, in the order they are tried.
pub const DEFAULT_INDEX_FILES: [&str; 2] = ["index.html", "index.htm"];

pub use httpserve_core::MountPrefixFn;
use httpserve_core::no_mount_prefix;

/// Applies [`Index`] to a service.
#[derive(Debug, Clone)]
pub struct IndexLayer {
    root: Root,
    index_files: Arc<[Box<str>]>,
    mount_prefix: MountPrefixFn,
}

impl IndexLayer {
    /// Resolves directories below `root` (a path, or a shared [`Root`]), with Python's
    /// index files.
    pub fn new(root: impl Into<Root>) -> Self {
        Self {
            root: root.into(),
            index_files: DEFAULT_INDEX_FILES.iter().map(|&n| n.into()).collect(),
            mount_prefix: no_mount_prefix,
        }
    }

    /// Reads the prefix the service is mounted under from the request, so a redirect
    /// `Location` names the full path. Under axum's `nest_service`, pass a function reading
    /// `axum::extract::NestedPath`.
    pub fn mount_prefix(mut self, mount_prefix: MountPrefixFn) -> Self {
        self.mount_prefix = mount_prefix;
        self
    }

    /// Replaces the index file names, tried in the given order. An empty list turns index
    /// files off (directories then reach the inner service, e.g. a listing).
    pub fn index_files<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<Box<str>>,
    {
        self.index_files = names.into_iter().map(Into::into).collect();
        self
    }
}

impl<S> tower_layer::Layer<S> for IndexLayer {
    type Service = Index<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Index {
            inner,
            root: self.root.clone(),
            index_files: self.index_files.clone(),
            mount_prefix: self.mount_prefix,
        }
    }
}

/// Redirects directories to their trailing-slash form and rewrites a directory request to
/// its index file; everything else passes through to the inner service unchanged.
#[derive(Debug, Clone)]
pub struct Index<S> {
    inner: S,
    root: Root,
    index_files: Arc<[Box<str>]>,
    mount_prefix: MountPrefixFn,
}

impl<S> Index<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// What to do with a request, decided before any response is built.
#[derive(Debug)]
enum Decision {
    PassThrough,
    Redirect(HeaderValue),
    ServeIndex { uri: Uri, resolved: Resolved },
}

fn decide<B>(
    req: &mut Request<B>,
    root: &Root,
    index_files: &[Box<str>],
    mount_prefix: MountPrefixFn,
) -> Decision {
    if !httpserve_core::is_get_or_head(req.method()) {
        return Decision::PassThrough;
    }
    let resolved = Resolved::lookup(req, root);
    if !resolved.is_dir() {
        return Decision::PassThrough;
    }
    if !resolved.trailing_slash() {
        let prefix = mount_prefix(req.extensions()).unwrap_or("");
        return match redirect_location(prefix, req.uri()) {
            Some(location) => Decision::Redirect(location),
            None => Decision::PassThrough,
        };
    }
    for name in index_files.iter() {
        let Some(uri) = with_path_suffix(req.uri(), &python_quote(name.as_bytes())) else {
            continue;
        };
        let candidate = resolved.child(name, uri.path());
        match candidate.entry() {
            // Python checks `isfile`: a directory (or FIFO) named index.html is no index,
            // and neither is a missing one.
            Entry::Directory { .. } | Entry::Special | Entry::Missing(io::ErrorKind::NotFound) => {}
            // An index that exists but cannot be read is still the index (the file layer
            // answers 404), so the listing it was meant to hide never shows.
            _ => {
                return Decision::ServeIndex {
                    uri,
                    resolved: candidate,
                };
            }
        }
    }
    Decision::PassThrough
}

/// `prefix` + `path/` plus the query, with any leading run of `/` and `\` collapsed to
/// one `/`.
fn redirect_location(prefix: &str, uri: &Uri) -> Option<HeaderValue> {
    let joined;
    let path = if prefix.is_empty() {
        safe_redirect_path(uri.path())
    } else {
        joined = format!("{}{}", prefix.trim_end_matches('/'), uri.path());
        safe_redirect_path(&joined)
    };
    let location = match uri.query() {
        Some(query) => format!("{path}/?{query}"),
        None => format!("{path}/"),
    };
    HeaderValue::try_from(location).ok()
}

/// `uri` with `suffix` appended to its path, scheme, authority and query kept.
fn with_path_suffix(uri: &Uri, suffix: &str) -> Option<Uri> {
    let path_and_query = match uri.query() {
        Some(query) => format!("{}{suffix}?{query}", uri.path()),
        None => format!("{}{suffix}", uri.path()),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
    Uri::from_parts(parts).ok()
}

fn redirect(location: HeaderValue) -> Response<PageBody> {
    let mut res = Response::new(PageBody::default());
    *res.status_mut() = StatusCode::MOVED_PERMANENTLY;
    res.headers_mut().insert(header::LOCATION, location);
    // Python sends an explicit zero length (bpo-43972) so keep-alive clients never wait.
    res.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    res
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for Index<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<Either<ResBody, PageBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        match decide(&mut req, &self.root, &self.index_files, self.mount_prefix) {
            Decision::PassThrough => ResponseFuture::inner(self.inner.call(req)),
            Decision::Redirect(location) => ResponseFuture::ready(redirect(location)),
            Decision::ServeIndex { uri, resolved } => {
                *req.uri_mut() = uri;
                resolved.store_in(&mut req);
                ResponseFuture::inner(self.inner.call(req))
            }
        }
    }
}

pin_project! {
    /// The future of [`Index`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F> {
        Inner { #[pin] future: F },
        Ready { response: Option<Response<PageBody>> },
    }
}

impl<F> ResponseFuture<F> {
    fn inner(future: F) -> Self {
        Self {
            state: State::Inner { future },
        }
    }

    fn ready(response: Response<PageBody>) -> Self {
        Self {
            state: State::Ready {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<Either<B, PageBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future } => {
                Poll::Ready(Ok(ready!(future.poll(cx))?.map(Either::Left)))
            }
            StateProj::Ready { response } => match response.take() {
                Some(res) => Poll::Ready(Ok(res.map(Either::Right))),
                None => panic!("ResponseFuture polled after completion"),
            },
        }
    }
}

#[cfg(test)]
mod tests;
