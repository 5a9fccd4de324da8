//! Conditional requests (RFC 9110 §13) for any tower service whose responses carry
//! `Last-Modified` and/or `ETag`: a file, a directory listing, a CGI script's output.
//!
//! ```
//! use httpserve_conditional::ConditionalLayer;
//! use http::{Request, Response, StatusCode};
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let svc = ServiceBuilder::new().layer(ConditionalLayer::new()).service(service_fn(|_req| async {
//!     let res = Response::builder()
//!         .header("last-modified", "Thu, 02 Jan 2020 03:04:05 GMT")
//!         .body(String::from("hello"))
//!         .unwrap();
//!     Ok::<_, Infallible>(res)
//! }));
//!
//! let req = Request::get("/")
//!     .header("if-modified-since", "Thu, 02 Jan 2020 03:04:05 GMT")
//!     .body(())
//!     .unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
//! # }
//! ```
//!
//! The preconditions are evaluated in RFC 9110 §13.2.2 order on the inner service's
//! successful (2xx) response to a `GET` or `HEAD`:
//!
//! 1. `If-Match` fails (no strong match) → `412`;
//! 2. else `If-Unmodified-Since` is older than `Last-Modified` → `412`;
//! 3. `If-None-Match` matches (weak comparison, `*` matches anything) → `304`;
//! 4. else `If-Modified-Since` is not older than `Last-Modified` → `304`.
//!
//! A `304` keeps `ETag`, `Last-Modified`, `Cache-Control`, `Content-Location`, `Date`,
//! `Expires` and `Vary` and drops the body unread; a `412` carries Python's HTML error page.
//! Dates that do not parse are ignored, as Python and RFC 9110 do. Other methods pass through
//! untouched: their preconditions must be checked before the action, which only the inner
//! service can do.

use headers::{HeaderMapExt, IfMatch, IfNoneMatch};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Either;
use httpserve_core::{PageBody, error_response};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// Applies [`Conditional`] to a service.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConditionalLayer {
    _private: (),
}

impl ConditionalLayer {
    /// A layer answering conditional `GET`/`HEAD` requests with 304 and 412.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> tower_layer::Layer<S> for ConditionalLayer {
    type Service = Conditional<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Conditional { inner }
    }
}

/// Turns the inner service's successful responses into `304 Not Modified` or
/// `412 Precondition Failed` when the request's preconditions say so.
#[derive(Debug, Clone)]
pub struct Conditional<S> {
    inner: S,
}

impl<S> Conditional<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    /// A [`ConditionalLayer`].
    pub fn layer() -> ConditionalLayer {
        ConditionalLayer::new()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The precondition headers of a request, found in one pass over its headers in `call`.
/// The entity tags are parsed there (they are rare); the dates are kept as sent and parsed
/// only if the evaluation reaches them.
#[derive(Debug, Default)]
struct Preconditions {
    if_match: Option<IfMatch>,
    if_unmodified_since: Option<HeaderValue>,
    if_none_match: Option<IfNoneMatch>,
    if_modified_since: Option<HeaderValue>,
    head: bool,
}

impl Preconditions {
    fn from_request<B>(req: &Request<B>) -> Option<Self> {
        let method = req.method();
        if method != Method::GET && method != Method::HEAD {
            return None;
        }
        let h = req.headers();
        let mut found = None;
        // One walk over the names the request has beats four hashed lookups of names it
        // almost never has.
        for name in h.keys() {
            let p = found.get_or_insert_with(Self::default);
            if name == header::IF_MATCH {
                p.if_match = h.typed_get();
            } else if name == header::IF_UNMODIFIED_SINCE {
                p.if_unmodified_since = single_value(h, name);
            } else if name == header::IF_NONE_MATCH {
                p.if_none_match = h.typed_get();
            } else if name == header::IF_MODIFIED_SINCE {
                p.if_modified_since = single_value(h, name);
            }
        }
        found
            .filter(|p| {
                p.if_match.is_some()
                    || p.if_unmodified_since.is_some()
                    || p.if_none_match.is_some()
                    || p.if_modified_since.is_some()
            })
            .map(|p| Self {
                head: method == Method::HEAD,
                ..p
            })
    }

    /// RFC 9110 §13.2.2, steps 1–4, against the headers of the response that would be sent.
    fn evaluate(&self, response: &HeaderMap) -> Outcome {
        let etag = || response.typed_get::<headers::ETag>();
        let last_modified = || response.get(header::LAST_MODIFIED);
        if let Some(if_match) = &self.if_match {
            let passes =
                if_match.is_any() || etag().is_some_and(|e| if_match.precondition_passes(&e));
            if !passes {
                return Outcome::PreconditionFailed;
            }
        } else if let (Some(date), Some(lm)) = (&self.if_unmodified_since, last_modified())
            && modified_since(lm, date) == Some(true)
        {
            return Outcome::PreconditionFailed;
        }
        if let Some(if_none_match) = &self.if_none_match {
            let matched = match etag() {
                Some(etag) => !if_none_match.precondition_passes(&etag),
                None => *if_none_match == IfNoneMatch::any(),
            };
            if matched {
                return Outcome::NotModified;
            }
        } else if let (Some(date), Some(lm)) = (&self.if_modified_since, last_modified())
            && modified_since(lm, date) == Some(false)
        {
            return Outcome::NotModified;
        }
        Outcome::Send
    }
}

/// The value of a header that must appear once; a repeated one is ignored (RFC 9110 §13.1.3).
fn single_value(headers: &HeaderMap, name: &header::HeaderName) -> Option<HeaderValue> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => Some(value.clone()),
        _ => None,
    }
}

/// Whether `last_modified` is later than `date` (both HTTP dates, compared to the second),
/// or `None` if either is not a valid HTTP date.
fn modified_since(last_modified: &HeaderValue, date: &HeaderValue) -> Option<bool> {
    let since = httpdate::parse_http_date(date.to_str().ok()?).ok()?;
    // A client revalidating echoes the Last-Modified it was sent, byte for byte: then both
    // are this same valid date, and the second parse can be skipped.
    if last_modified == date {
        return Some(false);
    }
    let last_modified = httpdate::parse_http_date(last_modified.to_str().ok()?).ok()?;
    Some(last_modified > since)
}

/// What to do with the inner response.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Send,
    NotModified,
    PreconditionFailed,
}

/// The headers a 304 keeps from the response it replaces (RFC 9110 §15.4.5).
const KEPT_ON_304: [header::HeaderName; 7] = [
    header::CACHE_CONTROL,
    header::CONTENT_LOCATION,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::LAST_MODIFIED,
    header::VARY,
];

fn not_modified<B>(res: Response<B>) -> Response<Either<B, PageBody>> {
    let (parts, _unread_body) = res.into_parts();
    let mut out = Response::new(Either::Right(PageBody::default()));
    *out.status_mut() = StatusCode::NOT_MODIFIED;
    // One pass over what the response has, rather than a lookup per kept name.
    let kept = out.headers_mut();
    for (name, value) in &parts.headers {
        if KEPT_ON_304.contains(name) {
            kept.append(name.clone(), value.clone());
        }
    }
    out
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for Conditional<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<Either<ResBody, PageBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let preconditions = Preconditions::from_request(&req);
        ResponseFuture {
            inner: self.inner.call(req),
            preconditions,
        }
    }
}

pin_project! {
    /// The future of [`Conditional`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        preconditions: Option<Preconditions>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<Either<B, PageBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx))?;
        let outcome = match this.preconditions.as_ref() {
            Some(p) if res.status().is_success() => (p.evaluate(res.headers()), p.head),
            _ => (Outcome::Send, false),
        };
        Poll::Ready(Ok(match outcome {
            (Outcome::Send, _) => res.map(Either::Left),
            (Outcome::NotModified, _) => not_modified(res),
            (Outcome::PreconditionFailed, head) => {
                let method = if head { Method::HEAD } else { Method::GET };
                error_response(
                    StatusCode::PRECONDITION_FAILED,
                    "Precondition failed",
                    &method,
                )
                .map(Either::Right)
            }
        }))
    }
}

#[cfg(test)]
mod tests;
