//! Python's HTML error page.

use crate::PageBody;
use askama::Template;
use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::sync::Arc;

/// Python's `send_error` page (3.11–3.13 layout): code, message and explanation, with
/// message and explanation escaped like Python's `html.escape(s, quote=False)`.
#[derive(Debug, Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    code: u16,
    message: &'a str,
    explain: &'a str,
}

impl<'a> ErrorPage<'a> {
    /// A page for `status` with Python's explanation of that status.
    pub fn new(status: StatusCode, message: &'a str) -> Self {
        Self {
            code: status.as_u16(),
            message,
            explain: explanation(status),
        }
    }

    /// Replaces the explanation, as Python's `send_error(code, message, explain)` does.
    pub fn explanation(mut self, explain: &'a str) -> Self {
        self.explain = explain;
        self
    }

    /// Renders the page, escaping the message (it may reflect request data).
    pub fn render_html(&self) -> String {
        let message = html_escape::encode_text(self.message);
        let explain = html_escape::encode_text(self.explain);
        let escaped = ErrorPage {
            code: self.code,
            message: &message,
            explain: &explain,
        };
        // Rendering a template of plain strings into a String cannot fail.
        escaped.render().unwrap_or_default()
    }

    /// The response of this page, rendered now (not cached: for a page with an explanation
    /// of its own), as [`error_response`] builds it.
    pub fn response(&self, method: &Method) -> Response<PageBody> {
        let html = Bytes::from(self.render_html());
        let page = CachedPage {
            content_length: HeaderValue::from(html.len()),
            html,
            message: ErrorMessage(self.message.into()),
        };
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        page_response(status, page, method)
    }
}

/// The response Python's `send_error(status, message)` gives: the HTML page with
/// `Content-Type: text/html;charset=utf-8` and its `Content-Length`; a `HEAD` request
/// gets the same headers and no body.
pub fn error_response(status: StatusCode, message: &str, method: &Method) -> Response<PageBody> {
    page_response(status, cached_page(status, message), method)
}

fn page_response(status: StatusCode, page: CachedPage, method: &Method) -> Response<PageBody> {
    let body = if method == Method::HEAD {
        Bytes::new()
    } else {
        page.html
    };
    let mut res = Response::new(PageBody::new(body));
    *res.status_mut() = status;
    res.extensions_mut().insert(page.message);
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html;charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, page.content_length);
    res
}

/// The message of an error page, kept in the response's extensions so an access log can
/// print Python's `code 404, message File not found` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorMessage(pub Arc<str>);

/// Pages rendered per worker thread, by status and message, so a stream of 404s renders
/// the template once. Bounded: past the limit the cache starts over.
const PAGE_CACHE_LIMIT: usize = 256;

/// One rendered page with everything a response of it needs, so serving it again
/// allocates nothing but the response itself.
#[derive(Clone)]
struct CachedPage {
    html: Bytes,
    content_length: HeaderValue,
    message: ErrorMessage,
}

// Fx hashing: a message can carry request data (an unsupported method's name), but the
// cache holds at most PAGE_CACHE_LIMIT entries, so colliding keys can cost little.
type PageCache = FxHashMap<u16, FxHashMap<Box<str>, CachedPage>>;

thread_local! {
    static PAGES: RefCell<PageCache> = RefCell::default();
}

fn cached_page(status: StatusCode, message: &str) -> CachedPage {
    PAGES.with(|pages| {
        if let Some(page) = pages
            .borrow()
            .get(&status.as_u16())
            .and_then(|m| m.get(message))
        {
            return page.clone();
        }
        let html = Bytes::from(ErrorPage::new(status, message).render_html());
        let page = CachedPage {
            content_length: HeaderValue::from(html.len()),
            html,
            message: ErrorMessage(message.into()),
        };
        let mut pages = pages.borrow_mut();
        if pages.values().map(FxHashMap::len).sum::<usize>() >= PAGE_CACHE_LIMIT {
            pages.clear();
        }
        pages
            .entry(status.as_u16())
            .or_default()
            .insert(message.into(), page.clone());
        page
    })
}

/// Python's `HTTPStatus.description` for a status (`???` where Python has none).
pub fn explanation(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Bad request syntax or unsupported method",
        403 => "Request forbidden -- authorization will not help",
        404 => "Nothing matches the given URI",
        405 => "Specified method is invalid for this resource",
        408 => "Request timed out; try again later",
        411 => "Client must specify Content-Length",
        412 => "Precondition in headers is false",
        413 => "Entity is too large",
        414 => "URI is too long",
        416 => "Cannot satisfy request range",
        417 => "Expect condition could not be satisfied",
        431 => {
            "The server is unwilling to process the request because its header fields are too large"
        }
        500 => "Server got itself in trouble",
        501 => "Server does not support this operation",
        502 => "Invalid responses from another server/proxy",
        503 => "The server cannot process the request due to a high load",
        504 => "The gateway server did not receive a timely response",
        505 => "Cannot fulfill request",
        _ => "???",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn page_is_byte_identical_to_python_3_11() {
        // python3 -m http.server, GET /missing → 335 bytes.
        let expected = "<!DOCTYPE HTML>\n<html lang=\"en\">\n    <head>\n        <meta charset=\"utf-8\">\n        <title>Error response</title>\n    </head>\n    <body>\n        <h1>Error response</h1>\n        <p>Error code: 404</p>\n        <p>Message: File not found.</p>\n        <p>Error code explanation: 404 - Nothing matches the given URI.</p>\n    </body>\n</html>\n";
        let html = ErrorPage::new(StatusCode::NOT_FOUND, "File not found").render_html();
        assert_eq!(html, expected);
        assert_eq!(html.len(), 335);
    }

    #[test]
    fn message_is_escaped_like_html_escape_quote_false() {
        let html = ErrorPage::new(StatusCode::NOT_IMPLEMENTED, "Unsupported method ('<x>\"&')")
            .render_html();
        assert!(html.contains("<p>Message: Unsupported method ('&lt;x&gt;\"&amp;').</p>"));
    }

    #[test]
    fn head_keeps_length_but_no_body() {
        let res = error_response(StatusCode::NOT_FOUND, "File not found", &Method::HEAD);
        assert_eq!(res.headers()[header::CONTENT_LENGTH], "335");
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "text/html;charset=utf-8"
        );
        assert_eq!(
            res.extensions().get(),
            Some(&ErrorMessage("File not found".into()))
        );
        let body = block_on_ready(res.into_body().collect()).unwrap();
        assert!(body.to_bytes().is_empty());
    }

    /// Polls a future that is ready at once (a `Full` body never waits).
    fn block_on_ready<F: std::future::Future>(fut: F) -> F::Output {
        use std::task::{Context, Poll, Waker};
        let mut fut = std::pin::pin!(fut);
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(out) => out,
            Poll::Pending => panic!("a Full body is always ready"),
        }
    }
}
