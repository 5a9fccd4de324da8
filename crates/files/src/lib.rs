//! Serves file bytes from a directory: `Content-Type`, `Content-Length`,
//! `Last-Modified`, a strong `ETag`, single byte ranges, `HEAD`.
//!
//! ```
//! use httpserve_files::ServeFiles;
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::write(dir.path().join("hello.txt"), "hello").unwrap();
//!
//! let files = ServeFiles::new(dir.path());
//! let res = files.oneshot(Request::get("/hello.txt").body(()).unwrap()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.headers()["content-type"], "text/plain");
//! assert_eq!(res.headers()["content-length"], "5");
//! # }
//! ```
//!
//! It is the innermost service of httpserve's stack and differs from tower-http's
//! `ServeDir` on purpose: it maps paths as Python does (`/sub/../f` is `/f`), reuses the
//! open file an outer layer already looked up ([`httpserve_core::Resolved`]) instead of
//! opening the path again, opens on the calling thread instead of a blocking-pool round
//! trip, and answers with Python's HTML error pages. Conditional requests are left to
//! `httpserve-conditional`, which works on any response carrying `Last-Modified`/`ETag`.

mod body;
mod validators;

pub use body::FileBody;

use headers::{HeaderMapExt, IfRange, LastModified};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Either;
use httpserve_core::{Entry, PageBody, Resolved, Root, error_response};
use std::convert::Infallible;
use std::fs::Metadata;
use std::future::{Ready, ready};
use std::path::Path;
use std::task::{Context, Poll};

/// The body of a [`ServeFiles`] response: file bytes, or an HTML error page.
pub type ResponseBody = Either<FileBody, PageBody>;

/// The future of [`ServeFiles`]: the decision is made in `call`, so it is always ready.
pub type ResponseFuture = Ready<Result<Response<ResponseBody>, Infallible>>;

/// A service that serves the regular files below a root directory.
///
/// Anything other than `GET` and `HEAD` gets Python's `501 Unsupported method`;
/// directories, missing and unreadable paths get `404 File not found`.
#[derive(Debug, Clone)]
pub struct ServeFiles {
    root: Root,
}

impl ServeFiles {
    /// Serves the files below `root` (a path, or a [`Root`] with symlink and dot-file
    /// policies shared with the other layers).
    pub fn new(root: impl Into<Root>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

impl<B> tower_service::Service<Request<B>> for ServeFiles {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let decision = decide(&mut req, &self.root);
        ready(Ok(build_response(decision, req.method())))
    }
}

/// What to answer, decided before any response is built.
#[derive(Debug)]
enum Decision {
    Serve {
        resolved: Resolved,
        span: Option<(u64, u64)>,
    },
    RangeNotSatisfiable {
        len: u64,
    },
    NotFound,
    BadPath,
    UnsupportedMethod,
}

fn decide<B>(req: &mut Request<B>, root: &Root) -> Decision {
    if !httpserve_core::is_get_or_head(req.method()) {
        return Decision::UnsupportedMethod;
    }
    let resolved = Resolved::lookup(req, root);
    let metadata = match resolved.entry() {
        // A trailing slash names a directory; on a file it is a 404, as in Python.
        Entry::File { metadata, .. } if !resolved.trailing_slash() => metadata,
        Entry::Invalid => return Decision::BadPath,
        _ => return Decision::NotFound,
    };
    let len = metadata.len();
    if req.method() != Method::GET {
        return Decision::Serve {
            resolved,
            span: None,
        };
    }
    match requested_range(req.headers(), metadata) {
        RangeRequest::Full => Decision::Serve {
            resolved,
            span: None,
        },
        RangeRequest::Span(start, end) => Decision::Serve {
            resolved,
            span: Some((start, end)),
        },
        RangeRequest::Unsatisfiable => Decision::RangeNotSatisfiable { len },
    }
}

enum RangeRequest {
    Full,
    Span(u64, u64),
    Unsatisfiable,
}

/// One satisfiable `bytes=` range gives a 206. Several ranges are answered with the whole
/// file (RFC 9110 §14.2 lets a server ignore Range), which also bounds the work a request
/// with hundreds of overlapping ranges can cause. An `If-Range` that does not match — or
/// cannot be parsed, so can never match (§13.1.5) — gives the whole file; so does a range
/// unit other than `bytes`.
///
/// The one range is parsed here rather than with `headers::Range`, whose
/// `satisfiable_ranges` drops two valid forms: a suffix longer than the file (`-100` on a
/// 6-byte file means all 6 bytes) and positions too large for `u64` (a last position or
/// suffix that large also means "to the end").
fn requested_range(headers: &http::HeaderMap, metadata: &Metadata) -> RangeRequest {
    let Some(raw) = headers.get(header::RANGE) else {
        return RangeRequest::Full;
    };
    if headers.contains_key(header::IF_RANGE) {
        let Some(if_range) = headers.typed_get::<IfRange>() else {
            return RangeRequest::Full;
        };
        let last_modified = metadata.modified().ok().map(LastModified::from);
        if if_range.is_modified(etag(metadata).as_ref(), last_modified.as_ref()) {
            return RangeRequest::Full;
        }
    }
    let Some(spec) = raw.to_str().ok().and_then(|v| {
        v.get(..6)
            .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
            .map(|_| &v[6..])
    }) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    match byte_range(spec.trim(), metadata.len()) {
        Some((first, last)) => RangeRequest::Span(first, last),
        None => RangeRequest::Unsatisfiable,
    }
}

/// The inclusive span one `first-last`, `first-` or `-suffix` spec selects in a file of
/// `len` bytes, or `None` when it is invalid or unsatisfiable.
fn byte_range(spec: &str, len: u64) -> Option<(u64, u64)> {
    /// Digits as a number; too many digits for `u64` saturate (they mean "past the end").
    fn number(digits: &str) -> Option<u64> {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(digits.parse().unwrap_or(u64::MAX))
    }
    let (first, last) = spec.split_once('-')?;
    if len == 0 {
        return None;
    }
    if first.is_empty() {
        let suffix = number(last)?;
        return (suffix > 0).then(|| (len.saturating_sub(suffix), len - 1));
    }
    let first = number(first)?;
    let last = if last.is_empty() {
        u64::MAX
    } else {
        number(last)?
    };
    (first <= last && first < len).then(|| (first, last.min(len - 1)))
}

/// Python's `guess_type`: its own overrides first (`.Z` case-sensitively), then the
/// current registrations where mime_guess still has the old ones (`.mjs` is
/// `text/javascript` per RFC 9239, `.xml` is `application/xml` per RFC 7303), then
/// mime_guess, then `application/octet-stream`. No charset is added, as in Python.
pub fn content_type(path: &Path) -> &'static str {
    let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
        return "application/octet-stream";
    };
    // SimpleHTTPRequestHandler.extensions_map, matched exactly, then lower-cased.
    let python = |ext: &str| match ext {
        "gz" => Some("application/gzip"),
        "Z" => Some("application/octet-stream"),
        "bz2" => Some("application/x-bzip2"),
        "xz" => Some("application/x-xz"),
        _ => None,
    };
    if let Some(mime) = python(ext).or_else(|| python(&ext.to_ascii_lowercase())) {
        return mime;
    }
    if ext.eq_ignore_ascii_case("mjs") {
        return "text/javascript";
    }
    if ext.eq_ignore_ascii_case("xml") {
        return "application/xml";
    }
    mime_guess::from_ext(ext)
        .first_raw()
        .unwrap_or("application/octet-stream")
}

/// The file's strong `ETag`, typed (for `If-Range`).
fn etag(metadata: &Metadata) -> Option<headers::ETag> {
    validators::validators(metadata)
        .etag
        .to_str()
        .ok()
        .and_then(|text| text.parse().ok())
}

fn build_response(decision: Decision, method: &Method) -> Response<ResponseBody> {
    let page = |status, message: &str| error_response(status, message, method).map(Either::Right);
    match decision {
        Decision::UnsupportedMethod => page(
            StatusCode::NOT_IMPLEMENTED,
            &format!("Unsupported method ('{method}')"),
        ),
        Decision::NotFound => page(StatusCode::NOT_FOUND, "File not found"),
        Decision::BadPath => page(StatusCode::BAD_REQUEST, "Bad request path"),
        Decision::RangeNotSatisfiable { len } => {
            let mut res = error_response(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "Requested range not satisfiable",
                method,
            )
            .map(Either::Right);
            res.headers_mut()
                .typed_insert(headers::ContentRange::unsatisfied_bytes(len));
            res
        }
        Decision::Serve { resolved, span } => file_response(resolved, span, method),
    }
}

fn file_response(
    resolved: Resolved,
    span: Option<(u64, u64)>,
    method: &Method,
) -> Response<ResponseBody> {
    let Entry::File { metadata, .. } = resolved.entry() else {
        return error_response(StatusCode::NOT_FOUND, "File not found", method).map(Either::Right);
    };
    let len = metadata.len();
    let (status, offset, count) = match span {
        Some((first, last)) => (StatusCode::PARTIAL_CONTENT, first, last - first + 1),
        None => (StatusCode::OK, 0, len),
    };
    let mime = validators::cached_content_type(resolved.relative_path());
    let validators = validators::validators(metadata);
    let body = if method == Method::HEAD {
        FileBody::empty()
    } else {
        FileBody::new(resolved, offset, count)
    };

    let mut res = Response::new(Either::Left(body));
    *res.status_mut() = status;
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    let content_length = match span {
        None => validators.content_length,
        Some(_) => HeaderValue::from(count),
    };
    headers.insert(header::CONTENT_LENGTH, content_length);
    if let Some(last_modified) = validators.last_modified {
        headers.insert(header::LAST_MODIFIED, last_modified);
    }
    headers.insert(header::ETAG, validators.etag);
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if span.is_some()
        && let Ok(range) = headers::ContentRange::bytes(offset..offset + count, len)
    {
        headers.typed_insert(range);
    }
    res
}

#[cfg(test)]
mod tests;
