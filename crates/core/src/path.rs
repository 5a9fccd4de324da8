//! Request path → filesystem path, the way Python's `translate_path` does it.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, percent_encode};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// A request path mapped below a root directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslatedPath {
    /// The filesystem path: the root joined with the decoded, normalised segments.
    pub fs_path: PathBuf,
    /// Whether the decoded request path ends in `/` (so `/dir%2F` counts, as in Python 3.14).
    pub trailing_slash: bool,
}

/// Maps the path part of a request target (no query) below `root`, as Python's
/// `SimpleHTTPRequestHandler.translate_path`: percent-decode to raw bytes, then
/// drop empty and `.` segments and let `..` remove the previous segment, never
/// climbing above `root`.
///
/// Returns `None` when the decoded path holds a NUL byte, which no filesystem path
/// can contain (Python drops the connection there; callers answer 400).
///
/// Unlike Python, `%FF` decodes to the raw byte 0xFF, so every file name, UTF-8 or
/// not, has exactly one spelling that reaches it.
pub fn translate_path(root: &Path, uri_path: &str) -> Option<TranslatedPath> {
    let (relative, trailing_slash) = translate_relative(uri_path)?;
    Some(TranslatedPath {
        fs_path: root.join(relative),
        trailing_slash,
    })
}

/// [`translate_path`] without the root: the normalised relative path (empty for the root
/// itself) and whether the decoded path ended in `/`.
pub fn translate_relative(uri_path: &str) -> Option<(PathBuf, bool)> {
    let decoded: std::borrow::Cow<'_, [u8]> = percent_decode_str(uri_path).into();
    if decoded.contains(&0) {
        return None;
    }
    let trailing_slash = decoded.last() == Some(&b'/');
    let relative = resolve_dot_segments(&decoded).join(&b'/');
    Some((
        PathBuf::from(std::ffi::OsString::from_vec(relative)),
        trailing_slash,
    ))
}

/// The segments of a decoded path with empty and `.` segments dropped and each `..`
/// removing the segment before it — never climbing above the start. Python's
/// `translate_path` and CGI's `_url_collapse_path` both rest on this.
pub fn resolve_dot_segments(path: &[u8]) -> Vec<&[u8]> {
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in path.split(|&b| b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    segments
}

/// The characters Python's `urllib.parse.quote` leaves alone: `A-Za-z0-9_.-~/`.
const PYTHON_QUOTE_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~')
    .remove(b'/');

/// Percent-encodes raw bytes (a file name, UTF-8 or not) with the safe set of Python's
/// `urllib.parse.quote`, so an href built from it reaches exactly that name.
pub fn python_quote(raw: &[u8]) -> String {
    percent_encode(raw, PYTHON_QUOTE_SAFE).to_string()
}

/// The path to put in a `Location` header for a request path: any leading run of `/`
/// and `\` becomes one `/`, so the result is never a scheme-relative reference that a
/// browser would send to another host (CVE-2021-28861; Python still lets `/\host` through).
pub fn safe_redirect_path(uri_path: &str) -> std::borrow::Cow<'_, str> {
    let rest = uri_path.trim_start_matches(['/', '\\']);
    if rest.len() + 1 == uri_path.len() && uri_path.starts_with('/') {
        std::borrow::Cow::Borrowed(uri_path)
    } else {
        std::borrow::Cow::Owned(format!("/{rest}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs(p: &str) -> PathBuf {
        translate_path(Path::new("/r"), p).unwrap().fs_path
    }

    #[test]
    fn dot_segments_never_leave_the_root() {
        assert_eq!(fs("/../../../etc/passwd"), Path::new("/r/etc/passwd"));
        assert_eq!(fs("/%2e%2e/%2e%2e/etc/passwd"), Path::new("/r/etc/passwd"));
        assert_eq!(fs("/..%2f..%2fetc"), Path::new("/r/etc"));
        assert_eq!(fs("/sub/../test"), Path::new("/r/test"));
        assert_eq!(fs("/sub//./file"), Path::new("/r/sub/file"));
        assert_eq!(fs("/"), Path::new("/r"));
        assert_eq!(fs(""), Path::new("/r"));
    }

    #[test]
    fn decoding_is_bytewise_and_keeps_invalid_escapes() {
        assert_eq!(fs("/%C3%A9.txt"), Path::new("/r/é.txt"));
        assert_eq!(fs("/sp+ace"), Path::new("/r/sp+ace"));
        assert_eq!(fs("/%zz"), Path::new("/r/%zz"));
        assert_eq!(fs("/%FF").as_os_str().as_encoded_bytes(), b"/r/\xff");
        assert_eq!(fs("/a%5Cb"), Path::new("/r/a\\b"));
    }

    #[test]
    fn trailing_slash_is_judged_after_decoding() {
        let t = |p| translate_path(Path::new("/r"), p).unwrap().trailing_slash;
        assert!(t("/sub/"));
        assert!(t("/sub%2F"));
        assert!(t("/sub%2f"));
        assert!(!t("/sub"));
        assert!(!t("/sub/."));
    }

    #[test]
    fn relative_form_matches() {
        let r = |p| translate_relative(p).unwrap().0;
        assert_eq!(r("/"), Path::new(""));
        assert_eq!(r("/a/b/../c"), Path::new("a/c"));
        assert_eq!(r("/a/../../b"), Path::new("b"));
        assert_eq!(r("/aa/b/.."), Path::new("aa"));
        assert_eq!(r("//a//./b/"), Path::new("a/b"));
    }

    #[test]
    fn nul_is_refused() {
        assert_eq!(translate_path(Path::new("/r"), "/a%00b"), None);
    }

    #[test]
    fn quote_matches_python() {
        // Expected strings from python3 -c 'urllib.parse.quote(...)'.
        assert_eq!(python_quote(b"d ir/"), "d%20ir/");
        assert_eq!(
            python_quote(b"\"q\"'&%?#;<>"),
            "%22q%22%27%26%25%3F%23%3B%3C%3E"
        );
        assert_eq!(python_quote("é~_.-".as_bytes()), "%C3%A9~_.-");
        assert_eq!(python_quote(b"\xff"), "%FF");
    }

    #[test]
    fn redirect_paths_cannot_become_scheme_relative() {
        assert_eq!(safe_redirect_path("/sub"), "/sub");
        assert_eq!(safe_redirect_path("//evil.com/x"), "/evil.com/x");
        assert_eq!(safe_redirect_path("/\\evil.com/x"), "/evil.com/x");
        assert_eq!(safe_redirect_path("\\/\\evil.com"), "/evil.com");
        assert_eq!(safe_redirect_path("sub"), "/sub");
    }
}
