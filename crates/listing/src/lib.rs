//! Directory listings in the style of Python's `http.server`, as a tower layer.
//!
//! ```
//! use httpserve_listing::ListingLayer;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::BodyExt;
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let root = tempfile::tempdir().unwrap();
//! std::fs::write(root.path().join("a & b.txt"), "").unwrap();
//! std::fs::create_dir(root.path().join("sub")).unwrap();
//!
//! // Requests that are not for a directory go to the inner service.
//! let files = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
//! let svc = ServiceBuilder::new().layer(ListingLayer::new(root.path())).service(files);
//!
//! let res = svc.oneshot(Request::get("/").body(()).unwrap()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
//! let html = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
//! assert!(html.contains(r#"<li><a href="a%20%26%20b.txt">a &amp; b.txt</a></li>"#));
//! assert!(html.contains(r#"<li><a href="sub/">sub/</a></li>"#));
//! # }
//! ```
//!
//! The page is Python's (3.11–3.13 layout, from the `listing.html` askama template):
//! entries sorted case-insensitively, `/` after directories, `@` after symlinks, names
//! escaped like `html.escape(name, quote=False)`, hrefs percent-encoded from the raw name
//! bytes so any name, UTF-8 or not, links back to itself. Unlike Python the title shows only
//! the path (no query, as Python 3.14), and the page carries the directory's
//! `Last-Modified`, so `httpserve-conditional` can answer `304` for it. A directory that
//! cannot be read gives Python's `404 No permission to list directory`.
//!
//! Listings are bounded in memory and CPU whatever the directory's size:
//! * the response head (`ETag`, `Last-Modified`, exact `Content-Length`) is sent after one
//!   read of the directory; the page is rendered only when a body is actually sent, so a
//!   `HEAD`, or a `GET` that `httpserve-conditional` turns into `304`, costs that read at most;
//! * reads and renders run on tokio's blocking pool, at most
//!   [`render_limit`](ListingLayer::render_limit) at a time; concurrent requests for one
//!   directory version share one read and one page (a single [`Bytes`](bytes::Bytes)), and
//!   the work stops within a few thousand entries once every request that wanted it is gone;
//! * pages of settled directories (ctime over a second old, no symlinks listed)
//!   are cached by device, inode and nanosecond mtime and ctime, within
//!   [`cache_budget`](ListingLayer::cache_budget) bytes; any change to the directory moves
//!   its mtime or ctime, so a cached page is never stale. A directory changed within the
//!   last second is read again for every request that arrives after a read began.
//!
//! The directory itself is found through [`httpserve_core::Resolved`], shared with the
//! other httpserve layers.

mod body;
mod cache;
mod render;
mod shared;

use cache::{DirKey, DirListing, Listings, Unreadable};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Either;
use httpserve_core::{Entry, Resolved, Root};
use pin_project_lite::pin_project;
use render::{PageFor, Snapshot};
use shared::Joined;
use std::fs::Metadata;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::sync::oneshot;

pub use body::ListingBody;

/// Bytes of rendered pages kept by default.
const DEFAULT_CACHE_BUDGET: usize = 32 * 1024 * 1024;

/// Applies [`Listing`] to a service.
#[derive(Debug, Clone)]
pub struct ListingLayer {
    root: Root,
    render_limit: usize,
    cache_budget: usize,
    listings: Arc<Listings>,
}

impl ListingLayer {
    /// Lists the directories below `root` (a path, or a shared [`Root`] whose policies
    /// decide which entries show: hidden dot-files and, with
    /// [`SymlinkPolicy::Never`](httpserve_core::SymlinkPolicy), symlinks are left out).
    pub fn new(root: impl Into<Root>) -> Self {
        let render_limit = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            root: root.into(),
            render_limit,
            cache_budget: DEFAULT_CACHE_BUDGET,
            listings: Arc::new(Listings::new(render_limit, DEFAULT_CACHE_BUDGET)),
        }
    }

    /// How many directory reads and page renders may run at once (default: one per
    /// core); more wait for a turn. Every service this layer makes shares the limit.
    pub fn render_limit(mut self, limit: usize) -> Self {
        self.render_limit = limit.max(1);
        self.listings = Arc::new(Listings::new(self.render_limit, self.cache_budget));
        self
    }

    /// Bytes of listings kept for later requests (default 32 MiB; `0` keeps none). A page
    /// larger than this is still served, just not kept.
    pub fn cache_budget(mut self, bytes: usize) -> Self {
        self.cache_budget = bytes;
        self.listings = Arc::new(Listings::new(self.render_limit, self.cache_budget));
        self
    }
}

impl<S> tower_layer::Layer<S> for ListingLayer {
    type Service = Listing<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Listing {
            inner,
            root: self.root.clone(),
            listings: self.listings.clone(),
        }
    }
}

/// Answers `GET`/`HEAD` for a directory with its listing; everything else goes to the
/// inner service.
#[derive(Debug, Clone)]
pub struct Listing<S> {
    inner: S,
    root: Root,
    listings: Arc<Listings>,
}

impl<S> Listing<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for Listing<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<Either<ResBody, ListingBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        if !httpserve_core::is_get_or_head(req.method()) {
            return ResponseFuture::inner(self.inner.call(req));
        }
        let resolved = Resolved::lookup(&mut req, &self.root);
        let Entry::Directory { metadata, .. } = resolved.entry() else {
            return ResponseFuture::inner(self.inner.call(req));
        };
        let page = PageFor::request(req.uri());
        let head = req.method() == Method::HEAD;
        let key = DirKey::of(metadata, page.href_prefix.clone());
        let (listing, joined) = self.listings.join(key, metadata, &resolved);
        let waiting = Waiting {
            listings: self.listings.clone(),
            listing,
            resolved,
            page,
            head,
            retries: 0,
        };
        let state = match joined {
            Joined::Ready(scanned) => State::Ready {
                response: Some(waiting.respond(scanned)),
            },
            Joined::Wait(rx) | Joined::Start(rx) => State::Scan { waiting, rx },
            // `join` only refuses a late joiner, and then makes a new listing.
            Joined::Refused => State::Ready {
                response: Some(could_not_list(head)),
            },
        };
        ResponseFuture { state }
    }
}

/// A request waiting for its directory's read.
#[derive(Debug)]
struct Waiting {
    listings: Arc<Listings>,
    listing: Arc<DirListing>,
    resolved: Resolved,
    page: PageFor,
    head: bool,
    retries: u8,
}

/// Reads given up (their job failed) before a request answers `500`.
const MAX_RETRIES: u8 = 3;

impl Waiting {
    fn respond(&self, scanned: Result<Arc<Snapshot>, Unreadable>) -> Response<ListingBody> {
        let method = if self.head { Method::HEAD } else { Method::GET };
        let Entry::Directory { metadata, .. } = self.resolved.entry() else {
            return could_not_list(self.head);
        };
        let Ok(snapshot) = scanned else {
            return httpserve_core::error_response(
                StatusCode::NOT_FOUND,
                "No permission to list directory",
                &method,
            )
            .map(ListingBody::page);
        };
        let head = self.page.head();
        let tail = render::tail();
        let len = head.len() + snapshot.list_len + tail.len();
        let body = if self.head {
            ListingBody::empty()
        } else {
            ListingBody::listing(
                head,
                tail,
                len,
                self.listings.clone(),
                self.listing.clone(),
                snapshot,
            )
        };
        let mut res = Response::new(body);
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        insert_validators(headers, metadata);
        res
    }
}

/// `ETag` and `Last-Modified` of a directory version, from its metadata alone.
fn insert_validators(headers: &mut HeaderMap, metadata: &Metadata) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(modified) = metadata.modified() {
        // A directory changed within the last second could change again in the same
        // second, which a one-second date cannot tell (RFC 9110 §8.8.2.2): no date then.
        let settled = modified
            .elapsed()
            .is_ok_and(|age| age >= std::time::Duration::from_secs(1));
        if settled && let Ok(value) = HeaderValue::try_from(httpdate::fmt_http_date(modified)) {
            headers.insert(header::LAST_MODIFIED, value);
        }
    }
    // Inode and nanosecond mtime and ctime: changes with every entry added, removed or
    // renamed, and when an mtime is set back. Weak, because the page also shows where
    // symlinks point.
    let tag = format!(
        "W/\"d{:x}-{:x}.{:08x}-{:x}.{:08x}\"",
        metadata.ino(),
        metadata.mtime(),
        metadata.mtime_nsec(),
        metadata.ctime(),
        metadata.ctime_nsec(),
    );
    if let Ok(value) = HeaderValue::try_from(tag) {
        headers.insert(header::ETAG, value);
    }
}

fn could_not_list(head: bool) -> Response<ListingBody> {
    let method = if head { Method::HEAD } else { Method::GET };
    httpserve_core::error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Could not list directory",
        &method,
    )
    .map(ListingBody::page)
}

pin_project! {
    /// The future of [`Listing`].
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
        Ready { response: Option<Response<ListingBody>> },
        Scan {
            waiting: Waiting,
            rx: oneshot::Receiver<Result<Arc<Snapshot>, Unreadable>>,
        },
    }
}

impl<F> ResponseFuture<F> {
    fn inner(future: F) -> Self {
        Self {
            state: State::Inner { future },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<Either<B, ListingBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future } => {
                Poll::Ready(Ok(ready!(future.poll(cx))?.map(Either::Left)))
            }
            StateProj::Ready { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| could_not_list(false))
                .map(Either::Right))),
            StateProj::Scan { waiting, rx } => loop {
                let scanned = match ready!(Pin::new(&mut *rx).poll(cx)) {
                    Ok(scanned) => scanned,
                    // The read was given up (its job failed, or stopped just as this
                    // request joined): join again, a bounded number of times.
                    Err(_) if waiting.retries < MAX_RETRIES => {
                        waiting.retries += 1;
                        match waiting.listings.rejoin(&waiting.listing, &waiting.resolved) {
                            Joined::Ready(scanned) => scanned,
                            Joined::Wait(next) | Joined::Start(next) => {
                                *rx = next;
                                continue;
                            }
                            Joined::Refused => {
                                return Poll::Ready(Ok(
                                    could_not_list(waiting.head).map(Either::Right)
                                ));
                            }
                        }
                    }
                    Err(_) => {
                        return Poll::Ready(Ok(could_not_list(waiting.head).map(Either::Right)));
                    }
                };
                return Poll::Ready(Ok(waiting.respond(scanned).map(Either::Right)));
            },
        }
    }
}

#[cfg(test)]
mod tests;
