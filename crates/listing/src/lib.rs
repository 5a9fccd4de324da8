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
//! Reading the directory runs on tokio's blocking pool, so a huge directory never stalls
//! other requests; the directory itself is found through [`httpserve_core::Resolved`], shared
//! with the other httpserve layers.

mod render;

use http::{Method, Request, Response};
use http_body_util::Either;
use httpserve_core::{PageBody, Resolved, Root};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::task::JoinHandle;

pub use render::{ListingPage, render_listing};

/// Applies [`Listing`] to a service.
#[derive(Debug, Clone)]
pub struct ListingLayer {
    root: Root,
}

impl ListingLayer {
    /// Lists the directories below `root` (a path, or a shared [`Root`] whose policies
    /// decide which entries show: hidden dot-files and, with
    /// [`SymlinkPolicy::Never`](httpserve_core::SymlinkPolicy), symlinks are left out).
    pub fn new(root: impl Into<Root>) -> Self {
        Self { root: root.into() }
    }
}

impl<S> tower_layer::Layer<S> for ListingLayer {
    type Service = Listing<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Listing {
            inner,
            root: self.root.clone(),
        }
    }
}

/// Answers `GET`/`HEAD` for a directory with its listing; everything else goes to the
/// inner service.
#[derive(Debug, Clone)]
pub struct Listing<S> {
    inner: S,
    root: Root,
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
    type Response = Response<Either<ResBody, PageBody>>;
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
        if !resolved.is_dir() {
            return ResponseFuture::inner(self.inner.call(req));
        }
        let page = ListingPage::for_request(req.uri(), resolved);
        let head = req.method() == Method::HEAD;
        ResponseFuture {
            state: State::Listing {
                task: tokio::task::spawn_blocking(move || render_listing(&page, head)),
                head,
            },
        }
    }
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
        Listing { task: JoinHandle<Response<PageBody>>, head: bool },
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
    type Output = Result<Response<Either<B, PageBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future } => {
                Poll::Ready(Ok(ready!(future.poll(cx))?.map(Either::Left)))
            }
            StateProj::Listing { task, head } => {
                let res = ready!(Pin::new(task).poll(cx)).unwrap_or_else(|_| {
                    let method = if *head { Method::HEAD } else { Method::GET };
                    httpserve_core::error_response(
                        http::StatusCode::INTERNAL_SERVER_ERROR,
                        "Could not list directory",
                        &method,
                    )
                });
                Poll::Ready(Ok(res.map(Either::Right)))
            }
        }
    }
}

#[cfg(test)]
mod tests;
