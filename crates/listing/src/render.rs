//! Reading a directory and rendering its page: the blocking part of a listing.

use askama::Template;
use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, Uri, header};
use httpserve_core::{
    Entry, PageBody, Resolved, SymlinkPolicy, error_response, python_quote, safe_redirect_path,
};
use percent_encoding::percent_decode_str;

/// The listing of one directory, ready to read and render.
#[derive(Debug)]
pub struct ListingPage {
    resolved: Resolved,
    title: String,
    href_prefix: String,
}

impl ListingPage {
    /// The page for a request whose path resolved to a directory.
    ///
    /// The title is the decoded request path, HTML-escaped. When the request path has no
    /// trailing slash (this layer used without the index layer's redirect), hrefs are
    /// prefixed with the directory's own name so that they still resolve.
    pub fn for_request(uri: &Uri, resolved: Resolved) -> Self {
        let path = safe_redirect_path(uri.path());
        let title =
            html_escape::encode_text(&percent_decode_str(&path).decode_utf8_lossy()).into_owned();
        let href_prefix = match path.rsplit_once('/') {
            Some((_, last)) if !last.is_empty() => format!("{last}/"),
            _ => String::new(),
        };
        Self {
            resolved,
            title,
            href_prefix,
        }
    }
}

#[derive(Template)]
#[template(path = "listing.html")]
struct ListingHtml<'a> {
    title: &'a str,
    entries: &'a [ListedEntry],
}

struct ListedEntry {
    href: String,
    text: String,
}

/// Reads the directory and renders Python's listing page (headers only for `HEAD`).
pub fn render_listing(page: &ListingPage, head: bool) -> Response<PageBody> {
    let method = if head { Method::HEAD } else { Method::GET };
    let Entry::Directory { metadata, .. } = page.resolved.entry() else {
        return error_response(StatusCode::NOT_FOUND, "File not found", &method);
    };
    let Ok(entries) = read_entries(page) else {
        return error_response(
            StatusCode::NOT_FOUND,
            "No permission to list directory",
            &method,
        );
    };
    let html = ListingHtml {
        title: &page.title,
        entries: &entries,
    }
    .render()
    .unwrap_or_default();
    let len = html.len();
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from(html)
    };
    let mut res = Response::new(PageBody::new(body));
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(modified) = metadata.modified() {
        // A directory changed within the last second could change again in the same
        // second, which a one-second date cannot tell (RFC 9110 §8.8.2.2): no date then.
        let settled = modified
            .elapsed()
            .is_ok_and(|age| age >= std::time::Duration::from_secs(1));
        if settled && let Ok(value) = HeaderValue::try_from(httpdate::fmt_http_date(modified)) {
            headers.insert(header::LAST_MODIFIED, value);
        }
        // Nanosecond mtime and inode: changes with every entry added, removed or renamed.
        // Weak, because the page also shows where symlinks point.
        use std::os::unix::fs::MetadataExt;
        let tag = format!(
            "W/\"d{:x}-{:x}.{:08x}\"",
            metadata.ino(),
            metadata.mtime(),
            metadata.mtime_nsec()
        );
        if let Ok(value) = HeaderValue::try_from(tag) {
            headers.insert(header::ETAG, value);
        }
    }
    res
}

/// The code points Python compares when it sorts by `name.lower()`: the lower-cased name,
/// with each byte that is not valid UTF-8 as the surrogate U+DC80–U+DCFF that Python's
/// `surrogateescape` decoding gives it.
fn python_sort_key(name: &[u8]) -> Vec<u32> {
    let mut key = Vec::with_capacity(name.len());
    for chunk in name.utf8_chunks() {
        key.extend(chunk.valid().to_lowercase().chars().map(u32::from));
        key.extend(chunk.invalid().iter().map(|&b| 0xDC00 + u32::from(b)));
    }
    key
}

/// Reads the entries from the directory the lookup already opened (no second lookup of
/// its path, and no window for a rename to swap it), skipping what the root's policies
/// hide.
fn read_entries(page: &ListingPage) -> std::io::Result<Vec<ListedEntry>> {
    use rustix::fs::{AtFlags, FileType, statat};
    let Entry::Directory { dir, .. } = page.resolved.entry() else {
        return Err(std::io::Error::other("not a directory"));
    };
    let root = page.resolved.root();
    let hide_dotfiles = root.hides_dotfiles();
    let hide_symlinks = root.symlink_policy() == SymlinkPolicy::Never;
    let mut names: Vec<(Vec<u32>, Vec<u8>, bool, bool)> = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." || (hide_dotfiles && name.first() == Some(&b'.')) {
            continue;
        }
        let mut file_type = entry.file_type();
        if file_type == FileType::Unknown {
            file_type = statat(dir, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW)
                .map_or(FileType::Unknown, |st| FileType::from_raw_mode(st.st_mode));
        }
        let is_link = file_type == FileType::Symlink;
        if is_link && hide_symlinks {
            continue;
        }
        // A link with an ordinary name to a dot-file is hidden like the dot-file.
        if is_link && hide_dotfiles {
            let target = page
                .resolved
                .fs_path()
                .join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name));
            if target
                .canonicalize()
                .map_or(true, |real| root.is_hidden_target(&real))
            {
                continue;
            }
        }
        // Like Python's `isdir`, which follows symlinks.
        let is_dir = if is_link {
            statat(dir, entry.file_name(), AtFlags::empty())
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
        } else {
            file_type == FileType::Directory
        };
        names.push((python_sort_key(name), name.to_vec(), is_dir, is_link));
    }
    // Python sorts by `name.lower()`, stably.
    names.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(names
        .into_iter()
        .map(|(_, name, is_dir, is_link)| {
            let mut href = page.href_prefix.clone();
            href.push_str(&python_quote(&name));
            let mut text = html_escape::encode_text(&String::from_utf8_lossy(&name)).into_owned();
            if is_dir {
                href.push('/');
                text.push('/');
            }
            if is_link {
                // Python replaces the `/` with `@` for a link to a directory.
                if is_dir {
                    text.pop();
                }
                text.push('@');
            }
            ListedEntry { href, text }
        })
        .collect())
}
