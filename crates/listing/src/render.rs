//! Reading a directory and rendering its page: the blocking part of a listing.
//!
//! A listing is made in two steps, so that a response head can be sent before any page
//! exists: [`scan`] reads the entries into a compact [`Snapshot`] and sums the exact length
//! of the page they make; [`render`] sorts them and writes the `<li>` lines into one buffer,
//! only when a body is actually sent. Both check `keep_going` every few thousand entries.

use askama::Template;
use bytes::Bytes;
use http::Uri;
use httpserve_core::{Entry, Resolved, SymlinkPolicy, python_quote, safe_redirect_path};
use percent_encoding::percent_decode_str;
use std::sync::LazyLock;

/// Entries handled between two checks whether anyone still wants the work.
const CHECK_EVERY: usize = 4096;

/// What a listing page shows that depends on the request rather than the directory.
#[derive(Debug)]
pub(crate) struct PageFor {
    /// The decoded request path, HTML-escaped.
    title: String,
    /// Prepended to every href (empty unless the path lacks its trailing slash).
    pub(crate) href_prefix: Box<str>,
}

impl PageFor {
    /// The page for a request whose path resolved to a directory.
    ///
    /// When the request path has no trailing slash (this layer used without the index
    /// layer's redirect), hrefs are prefixed with the directory's own name so that they
    /// still resolve.
    pub(crate) fn request(uri: &Uri) -> Self {
        let path = safe_redirect_path(uri.path());
        let title =
            html_escape::encode_text(&percent_decode_str(&path).decode_utf8_lossy()).into_owned();
        let href_prefix = match path.rsplit_once('/') {
            Some((_, last)) if !last.is_empty() => format!("{last}/").into(),
            _ => Box::default(),
        };
        Self { title, href_prefix }
    }

    /// The page up to the list: doctype, title, heading.
    pub(crate) fn head(&self) -> Bytes {
        Bytes::from(
            ListingHead { title: &self.title }
                .render()
                .unwrap_or_default(),
        )
    }
}

#[derive(Template)]
#[template(path = "listing.html", block = "head")]
struct ListingHead<'a> {
    title: &'a str,
}

#[derive(Template)]
#[template(path = "listing.html", block = "entry")]
struct ListingEntry<'a> {
    href: &'a str,
    text: &'a str,
}

#[derive(Template)]
#[template(path = "listing.html", block = "tail")]
struct ListingTail;

/// The page after the list.
pub(crate) fn tail() -> Bytes {
    static TAIL: LazyLock<Bytes> =
        LazyLock::new(|| Bytes::from(ListingTail.render().unwrap_or_default()));
    TAIL.clone()
}

/// The work was stopped because nobody wants it any more.
#[derive(Debug)]
pub(crate) struct Stopped;

/// Why a scan gave no snapshot.
#[derive(Debug)]
pub(crate) enum ScanError {
    /// The directory could not be read (Python's `404 No permission to list directory`).
    Unreadable,
    Stopped,
}

/// The visible entries of one read of a directory, unsorted, and the exact length of the
/// `<li>` lines they render to.
#[derive(Default)]
pub(crate) struct Snapshot {
    names: Vec<u8>,
    entries: Vec<Listed>,
    /// Whether any entry is a symlink: the page then shows where links point (`/` for a
    /// link to a directory), which can change without the directory changing.
    pub(crate) has_links: bool,
    /// The length of the rendered list.
    pub(crate) list_len: usize,
}

#[derive(Debug)]
struct Listed {
    start: usize,
    end: usize,
    is_dir: bool,
    is_link: bool,
}

// Not the names: there can be millions.
impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("entries", &self.entries.len())
            .field("has_links", &self.has_links)
            .field("list_len", &self.list_len)
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    /// Memory held, for the cache's budget.
    pub(crate) fn bytes(&self) -> usize {
        self.names.capacity() + self.entries.capacity() * std::mem::size_of::<Listed>()
    }

    /// The same listing without its entries, once its page exists (only the length is
    /// still needed, by `HEAD`s).
    pub(crate) fn emptied(&self) -> Self {
        Self {
            has_links: self.has_links,
            list_len: self.list_len,
            ..Self::default()
        }
    }

    fn name(&self, entry: &Listed) -> &[u8] {
        &self.names[entry.start..entry.end]
    }
}

/// Reads the entries from the directory the lookup already opened (no second lookup of
/// its path, and no window for a rename to swap it), skipping what the root's policies
/// hide.
pub(crate) fn scan(
    resolved: &Resolved,
    href_prefix: &str,
    keep_going: impl Fn() -> bool,
) -> Result<Snapshot, ScanError> {
    use rustix::fs::{AtFlags, FileType, statat};
    let Entry::Directory { dir, .. } = resolved.entry() else {
        return Err(ScanError::Unreadable);
    };
    let root = resolved.root();
    let hide_dotfiles = root.hides_dotfiles();
    let hide_symlinks = root.symlink_policy() == SymlinkPolicy::Never;
    let mut snapshot = Snapshot::default();
    let mut line = String::new();
    let entries = rustix::fs::Dir::read_from(dir).map_err(|_| ScanError::Unreadable)?;
    for (seen, entry) in entries.enumerate() {
        if seen % CHECK_EVERY == CHECK_EVERY - 1 && !keep_going() {
            return Err(ScanError::Stopped);
        }
        let entry = entry.map_err(|_| ScanError::Unreadable)?;
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
            let target = resolved
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
        // The length comes from the very code that renders the line later, so the
        // `Content-Length` sent before rendering cannot disagree with the body.
        line.clear();
        write_entry(&mut line, href_prefix, name, is_dir, is_link);
        snapshot.list_len += line.len();
        snapshot.has_links |= is_link;
        let start = snapshot.names.len();
        snapshot.names.extend_from_slice(name);
        snapshot.entries.push(Listed {
            start,
            end: snapshot.names.len(),
            is_dir,
            is_link,
        });
    }
    snapshot.names.shrink_to_fit();
    snapshot.entries.shrink_to_fit();
    Ok(snapshot)
}

/// The `<li>` lines of a snapshot, in Python's order: `list_len` bytes.
pub(crate) fn render(
    snapshot: &Snapshot,
    href_prefix: &str,
    keep_going: impl Fn() -> bool,
) -> Result<Bytes, Stopped> {
    // Python sorts by `name.lower()`, stably. The keys are made in a loop that can stop;
    // the sort itself only compares bytes.
    let mut order: Vec<(Vec<u8>, &Listed)> = Vec::with_capacity(snapshot.entries.len());
    for (done, entry) in snapshot.entries.iter().enumerate() {
        if done % CHECK_EVERY == CHECK_EVERY - 1 && !keep_going() {
            return Err(Stopped);
        }
        order.push((python_sort_key(snapshot.name(entry)), entry));
    }
    order.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::with_capacity(snapshot.list_len);
    for (done, (_, entry)) in order.into_iter().enumerate() {
        if done % CHECK_EVERY == CHECK_EVERY - 1 && !keep_going() {
            return Err(Stopped);
        }
        write_entry(
            &mut out,
            href_prefix,
            snapshot.name(entry),
            entry.is_dir,
            entry.is_link,
        );
    }
    Ok(Bytes::from(out))
}

/// One `<li>` line: `/` after directories, `@` after symlinks, the name escaped like
/// `html.escape(name, quote=False)`, the href percent-encoded from the raw name bytes so any
/// name, UTF-8 or not, links back to itself.
fn write_entry(out: &mut String, href_prefix: &str, name: &[u8], is_dir: bool, is_link: bool) {
    let mut href = String::with_capacity(href_prefix.len() + name.len() + 1);
    href.push_str(href_prefix);
    href.push_str(&python_quote(name));
    let mut text = html_escape::encode_text(&String::from_utf8_lossy(name)).into_owned();
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
    // Rendering plain strings into a String cannot fail.
    let _ = ListingEntry {
        href: &href,
        text: &text,
    }
    .render_into(out);
}

/// What Python compares when it sorts by `name.lower()`: the code points of the
/// lower-cased name, each byte that is not valid UTF-8 being the surrogate U+DC80–U+DCFF
/// that Python's `surrogateescape` decoding gives it. Kept as UTF-8 (surrogates encoded
/// the same way), whose byte order is code-point order, at a quarter of the memory of
/// the code points themselves.
fn python_sort_key(name: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len());
    for chunk in name.utf8_chunks() {
        key.extend_from_slice(chunk.valid().to_lowercase().as_bytes());
        for &b in chunk.invalid() {
            let surrogate = 0xDC00 + u32::from(b);
            key.extend_from_slice(&[
                0xE0 | (surrogate >> 12) as u8,
                0x80 | ((surrogate >> 6) & 0x3F) as u8,
                0x80 | (surrogate & 0x3F) as u8,
            ]);
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key orders names exactly as the code points Python compares.
    #[test]
    fn sort_key_orders_as_code_points() {
        let code_points = |name: &[u8]| -> Vec<u32> {
            let mut key = Vec::new();
            for chunk in name.utf8_chunks() {
                key.extend(chunk.valid().to_lowercase().chars().map(u32::from));
                key.extend(chunk.invalid().iter().map(|&b| 0xDC00 + u32::from(b)));
            }
            key
        };
        let names: [&[u8]; 12] = [
            b"a",
            b"B",
            b"raw\xff.bin",
            b"raw\xfe.bin",
            "raw\u{ff01}.bin".as_bytes(),
            "raw\u{d7ff}".as_bytes(),
            "raw\u{e000}".as_bytes(),
            "\u{10000}".as_bytes(),
            "\u{c9}t\u{e9}".as_bytes(),
            b"\x80",
            b"",
            b"Zed",
        ];
        for a in names {
            for b in names {
                assert_eq!(
                    python_sort_key(a).cmp(&python_sort_key(b)),
                    code_points(a).cmp(&code_points(b)),
                    "{a:?} {b:?}"
                );
            }
        }
    }
}
