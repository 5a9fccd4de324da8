//! Shared pieces of the httpserve layers: Python's `translate_path`, a filesystem
//! lookup that every layer of a request shares, and Python's HTML error page.
//!
//! ```
//! use httpserve_core::{error_response, translate_path};
//! use http::{Method, StatusCode};
//! use std::path::Path;
//!
//! // `..` never leaves the root, and `.`/empty segments vanish, as in Python.
//! let t = translate_path(Path::new("/srv"), "/a/./../../etc/%70asswd").unwrap();
//! assert_eq!(t.fs_path, Path::new("/srv/etc/passwd"));
//! assert!(!t.trailing_slash);
//!
//! // Python's error page, with its `text/html;charset=utf-8` type.
//! let res = error_response(StatusCode::NOT_FOUND, "File not found", &Method::GET);
//! assert_eq!(res.status(), StatusCode::NOT_FOUND);
//! assert_eq!(res.headers()["content-length"], "335");
//! ```
//!
//! The layers built on this crate never look a path up twice: the first one that needs
//! the filesystem calls [`Resolved::lookup`], which opens the path once and stores the
//! open file and its metadata in the request's extensions for every later layer.

mod error;
mod extract;
mod path;
mod resolve;
mod root;

pub use error::{ErrorMessage, ErrorPage, error_response, explanation};
pub use extract::{ClientAddrFn, MountPrefixFn, no_mount_prefix, socket_addr_extension};
pub use path::{
    TranslatedPath, python_quote, resolve_dot_segments, safe_redirect_path, translate_path,
    translate_relative,
};
pub use resolve::{Entry, Resolved};
pub use root::{Root, SymlinkPolicy};

/// The body of responses the httpserve layers build themselves (error pages,
/// redirects, listings).
pub type PageBody = http_body_util::Full<bytes::Bytes>;

/// The local address of the connection a request arrived on, stored in the request's
/// extensions by httpserve's server loop (CGI's `SERVER_PORT` comes from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddr(pub std::net::SocketAddr);

/// A reason phrase for a response whose status code has no standard one (a CGI script's
/// `Status: 299 Custom`), stored in the response's extensions; httpserve's server loop
/// writes it on the status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonPhrase(pub Box<str>);

/// Python's log escaping (gh-100001): U+0000–U+001F and U+007F–U+009F become `\xHH`,
/// a backslash becomes `\\`. Used for log lines and for request data shown in messages.
pub fn escape_control_chars(message: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// Whether a method is one that the static layers answer (`GET` or `HEAD`).
pub fn is_get_or_head(method: &http::Method) -> bool {
    method == http::Method::GET || method == http::Method::HEAD
}
