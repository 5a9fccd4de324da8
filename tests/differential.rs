//! Differential test: one fixture directory served by Python 3.11's `http.server` and by
//! httpserve, the same requests sent to both, the responses compared on status,
//! `Location`, `Content-Type`, `Content-Length`, `Last-Modified` and body (listings by
//! their `<li>` entries).
//!
//! The differences that are allowed are the rows of the README's "Differences from
//! Python" table; each is allowed narrowly, in one place, and httpserve's side is still
//! asserted to be the documented value.

mod common;

use common::{Response, Server};
use std::collections::{BTreeSet, VecDeque};
use std::ffi::OsStr;
use std::fs::{self, File, FileTimes};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

/// Every file and directory of the fixture gets this mtime.
const MTIME_SECS: u64 = 1_577_934_245;
/// [`MTIME_SECS`] as an HTTP date.
const MTIME_HTTP: &str = "Thu, 02 Jan 2020 03:04:05 GMT";
const IMS_LATER: &str = "Fri, 03 Jan 2020 03:04:05 GMT";
const IMS_EARLIER: &str = "Wed, 01 Jan 2020 03:04:05 GMT";

/// The non-UTF-8 file name (README "Differences from Python": non-UTF-8 names).
const RAW_NAME: &[u8] = b"raw\xff.bin";
const RAW_CONTENT: &[u8] = b"raw bytes \x00\x01\x02\xff\n";
/// Python's listing entry for it (surrogate-escaped href; the raw byte, shown lossily).
const RAW_ENTRY_PYTHON: &str = "<li><a href=\"raw%ED%B3%BF.bin\">raw\u{FFFD}.bin</a></li>";
/// httpserve's (the raw byte percent-encoded; U+FFFD in the text).
const RAW_ENTRY_OURS: &str = "<li><a href=\"raw%FF.bin\">raw\u{FFFD}.bin</a></li>";

/// README "Differences from Python": Content-Type. Extensions for which httpserve's
/// `mime_guess` table and Python's `mimetypes` (with Debian's /etc/mime.types) disagree:
/// (extension as in the file name, Python's value, httpserve's value). Every row must be
/// hit by at least one request, so the table cannot go stale.
// `.mjs`, `.xml` and `.Z` once differed here; httpserve now gives Python's values, so
// they are compared strictly like every other type.
const CONTENT_TYPE_DIFFS: &[(&str, &str, &str)] = &[];

/// Plain files at the root: (name, content).
const ROOT_FILES: &[(&str, &[u8])] = &[
    ("a.txt", b"hello, world\n"),
    ("empty.txt", b""),
    ("page.html", b"<!DOCTYPE html>\n<p>page.html</p>\n"),
    ("page.htm", b"<p>page.htm</p>\n"),
    ("style.css", b"body { color: red; }\n"),
    ("app.js", b"console.log('app');\n"),
    ("mod.mjs", b"export const x = 1;\n"),
    ("data.json", b"{\"a\": [1, 2, 3]}\n"),
    ("img.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR fake png"),
    (
        "pic.svg",
        b"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1\" height=\"1\"/>\n",
    ),
    ("feed.xml", b"<?xml version=\"1.0\"?><feed/>\n"),
    ("doc.md", b"# Title\n"),
    ("bin.wasm", b"\x00asm\x01\x00\x00\x00"),
    ("arch.gz", b"\x1f\x8b\x08\x00 not really gzip"),
    ("arch.tar.gz", b"\x1f\x8b\x08\x00 not really a tarball"),
    ("UP.GZ", b"\x1f\x8b upper-case extension"),
    ("old.Z", b"\x1f\x9d compress"),
    ("arch.bz2", b"BZh91AY&SY not really bzip2"),
    ("arch.xz", b"\xfd7zXZ\x00 not really xz"),
    ("noext", b"no extension\n"),
    ("thing.qqq", b"unknown extension\n"),
    (".hidden", b"dot file\n"),
    // Hostile names.
    ("<i>.txt", b"angle brackets\n"),
    ("\"dq\".txt", b"double quotes\n"),
    ("'sq'.txt", b"single quotes\n"),
    ("&amp.txt", b"ampersand\n"),
    ("%41.txt", b"percent four one\n"),
    ("q?.txt", b"question mark\n"),
    ("h#.txt", b"hash\n"),
    ("sp ace.txt", b"space\n"),
    ("p+lus.txt", b"plus\n"),
    ("\u{e9}.txt", b"e acute\n"),
    ("Zed.txt", b"capital Z\n"),
];

/// Files below subdirectories: (path relative to the root, content).
const SUB_FILES: &[(&str, &[u8])] = &[
    ("with_html/index.html", b"<p>with_html index.html</p>\n"),
    ("with_html/other.txt", b"with_html other\n"),
    ("with_htm/index.htm", b"<p>with_htm index.htm</p>\n"),
    ("with_both/index.html", b"<p>with_both index.html</p>\n"),
    ("with_both/index.htm", b"<p>with_both index.htm</p>\n"),
    ("no_index/one.txt", b"no_index one\n"),
    ("no_index/two.css", b"p { margin: 0 }\n"),
    ("no_index/Three.json", b"[3]\n"),
    (
        "dir_index/index.html/inner.txt",
        b"inside a directory named index.html\n",
    ),
    ("nested/top.txt", b"nested top\n"),
    ("nested/deeper/deepest/leaf.txt", b"nested leaf\n"),
    ("d ir/x.txt", b"in a directory with a space\n"),
];

/// Directories that must exist even when no file is put in them.
const EMPTY_DIRS: &[&str] = &["empty", "nested/deeper/empty_too"];

fn build_fixture(root: &Path) {
    for (name, content) in ROOT_FILES {
        fs::write(root.join(name), content).expect("build the fixture");
    }
    fs::write(root.join(OsStr::from_bytes(RAW_NAME)), RAW_CONTENT).expect("build the fixture");
    for (path, content) in SUB_FILES {
        let path = root.join(path);
        fs::create_dir_all(path.parent().expect("build the fixture")).expect("build the fixture");
        fs::write(path, content).expect("build the fixture");
    }
    for dir in EMPTY_DIRS {
        fs::create_dir_all(root.join(dir)).expect("build the fixture");
    }
    std::os::unix::fs::symlink("a.txt", root.join("link.txt")).expect("build the fixture");
    std::os::unix::fs::symlink("no_index", root.join("dlink")).expect("build the fixture");
    std::os::unix::fs::symlink("does-not-exist", root.join("broken")).expect("build the fixture");
    set_mtimes(root, 0);
}

/// Sets every file's and directory's mtime below `path` (children first, so that no later
/// change touches a directory already set). Symlinks are left alone: both servers follow them.
fn set_mtimes(path: &Path, depth: usize) {
    assert!(depth < 16, "fixture nested too deep");
    let mtime = UNIX_EPOCH + Duration::from_secs(MTIME_SECS);
    let meta = fs::symlink_metadata(path).expect("build the fixture");
    if meta.is_symlink() {
        return;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path).expect("build the fixture") {
            set_mtimes(&entry.expect("build the fixture").path(), depth + 1);
        }
    }
    // futimens on a read-only descriptor works for the owner, also for a directory.
    File::open(path)
        .expect("build the fixture")
        .set_times(FileTimes::new().set_modified(mtime).set_accessed(mtime))
        .expect("build the fixture");
}

/// What a request is expected to produce on Python (the reference), checked before the
/// comparison so that a broken fixture cannot make both sides agree vacuously.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// This status, compared field by field.
    Status(u16),
    /// A 200 directory listing.
    Listing,
}

/// Both servers and the running tally.
struct Diff {
    python: Server,
    ours: Server,
    /// Requests sent to both servers and compared.
    compared: usize,
    failures: Vec<String>,
    /// Which rows of [`CONTENT_TYPE_DIFFS`] were needed.
    content_type_rows_used: BTreeSet<usize>,
}

impl Diff {
    fn fail(&mut self, what: &str, request: &str, py: &Response, us: &Response) {
        self.failures.push(format!(
            "{request}: {what}\n--- python ---\n{}\n--- httpserve ---\n{}",
            show(py),
            show(us)
        ));
    }

    /// Sends the request to both servers and compares the responses.
    fn check(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        expect: Expect,
    ) -> (Response, Response) {
        let py = self.python.request(method, target, headers);
        let us = self.ours.request(method, target, headers);
        self.compared += 1;
        let request = format!("{method} {target} {headers:?}");
        let expected_status = match expect {
            Expect::Status(code) => code,
            Expect::Listing => 200,
        };
        if py.status != expected_status {
            self.fail(
                &format!("python answered {} (expected {expected_status})", py.status),
                &request,
                &py,
                &us,
            );
            return (py, us);
        }
        if us.status != py.status {
            self.fail("status differs", &request, &py, &us);
            return (py, us);
        }
        if py.status == 304 {
            self.compare_not_modified(&request, &py, &us);
        } else if expect == Expect::Listing {
            self.compare_listing(method, target, &request, &py, &us);
        } else {
            self.compare_plain(target, &request, &py, &us);
        }
        (py, us)
    }

    fn compare_header(&mut self, name: &str, request: &str, py: &Response, us: &Response) {
        if py.header(name) != us.header(name) {
            self.fail(&format!("{name} differs"), request, py, us);
        }
    }

    /// Files, index files, redirects, error pages: everything compared as is, except the
    /// Content-Type rows of [`CONTENT_TYPE_DIFFS`].
    fn compare_plain(&mut self, target: &str, request: &str, py: &Response, us: &Response) {
        for name in ["location", "content-length", "last-modified"] {
            self.compare_header(name, request, py, us);
        }
        if py.body != us.body {
            self.fail("body differs", request, py, us);
        }
        let (py_ct, us_ct) = (py.header("content-type"), us.header("content-type"));
        if py_ct == us_ct {
            return;
        }
        // README "Differences from Python": Content-Type (mime_guess vs /etc/mime.types),
        // only for 200 file responses and only for the listed extension and values.
        let ext = extension(target);
        let row = CONTENT_TYPE_DIFFS
            .iter()
            .position(|&(e, p, o)| e == ext && Some(p) == py_ct && Some(o) == us_ct);
        match row {
            Some(row) if py.status == 200 => {
                self.content_type_rows_used.insert(row);
            }
            _ => self.fail(
                &format!("content-type differs (extension {ext:?})"),
                request,
                py,
                us,
            ),
        }
    }

    /// README "Differences from Python": 304 responses keep ETag and Last-Modified
    /// (RFC 9110) where Python sends only Server and Date. Compared: status (done by the
    /// caller), no body on either side, Python without Last-Modified, ours with the file's.
    fn compare_not_modified(&mut self, request: &str, py: &Response, us: &Response) {
        if !py.body.is_empty() || !us.body.is_empty() {
            self.fail("304 with a body", request, py, us);
        }
        if py.header("last-modified").is_some() {
            self.fail("python's 304 has Last-Modified", request, py, us);
        }
        if us.header("last-modified") != Some(MTIME_HTTP) {
            self.fail("httpserve's 304 lacks Last-Modified", request, py, us);
        }
        if us.header("etag").is_none() {
            self.fail("httpserve's 304 lacks ETag", request, py, us);
        }
    }

    /// Listings: headers, then the `<li>` entries in order, then the rest of the page.
    fn compare_listing(
        &mut self,
        method: &str,
        target: &str,
        request: &str,
        py: &Response,
        us: &Response,
    ) {
        self.compare_header("content-type", request, py, us);
        self.compare_header("location", request, py, us);
        if py.header("content-type") != Some("text/html; charset=utf-8") {
            self.fail("not a listing", request, py, us);
            return;
        }
        // README "Differences from Python": Last-Modified on listings. Python sends none;
        // httpserve sends the directory's mtime (the fixture's fixed one).
        if py.header("last-modified").is_some() {
            self.fail("python's listing has Last-Modified", request, py, us);
        }
        if us.header("last-modified") != Some(MTIME_HTTP) {
            self.fail(
                "httpserve's listing lacks the directory's Last-Modified",
                request,
                py,
                us,
            );
        }
        let query = target.split_once('?').map(|(_, q)| q);
        if method == "HEAD" {
            if !py.body.is_empty() || !us.body.is_empty() {
                self.fail("HEAD listing with a body", request, py, us);
            }
            // Only called for listings that differ in neither the title nor the raw entry.
            self.compare_header("content-length", request, py, us);
            return;
        }
        for (side, res) in [("python", py), ("httpserve", us)] {
            if res.header("content-length") != Some(res.body.len().to_string().as_str()) {
                self.fail(
                    &format!("{side}'s Content-Length is not its body's length"),
                    request,
                    py,
                    us,
                );
            }
        }
        let mut py_entries = py.listing_entries();
        let mut us_entries = us.listing_entries();
        // README "Differences from Python": non-UTF-8 names. Same position in both lists,
        // each server's documented form; `raw_name_is_served_under_each_own_href` checks
        // that both links work.
        let py_raw = py_entries.iter().position(|e| e.contains("href=\"raw"));
        let us_raw = us_entries.iter().position(|e| e.contains("href=\"raw"));
        let mut raw_entry_here = false;
        match (py_raw, us_raw) {
            (None, None) => {}
            (Some(p), Some(u)) if p == u => {
                raw_entry_here = true;
                if py_entries[p] != RAW_ENTRY_PYTHON || us_entries[u] != RAW_ENTRY_OURS {
                    self.fail("raw-name entry is not the documented one", request, py, us);
                }
                // Python writes the undecodable byte itself; httpserve writes U+FFFD.
                if !contains(&py.body, b">raw\xff.bin</a>")
                    || !contains(&us.body, ">raw\u{FFFD}.bin</a>".as_bytes())
                {
                    self.fail(
                        "raw-name link text is not the documented one",
                        request,
                        py,
                        us,
                    );
                }
                py_entries.remove(p);
                us_entries.remove(u);
            }
            _ => self.fail("raw-name entry at different positions", request, py, us),
        }
        if py_entries != us_entries {
            self.fail("listing entries differ", request, py, us);
        }
        // The rest of the page (doctype, title, h1, framing) must match too.
        let frame = |res: &Response| -> Vec<String> {
            res.text()
                .lines()
                .filter(|l| !l.starts_with("<li>"))
                .map(str::to_owned)
                .collect()
        };
        let (mut py_frame, us_frame) = (frame(py), frame(us));
        if let Some(query) = query {
            // README "Differences from Python": listing title. Python 3.11 shows the raw
            // query in the title and h1; httpserve never does (Python 3.14's behaviour).
            let shown = format!("?{}", query.replace('&', "&amp;"));
            let titles = py_frame.iter().filter(|l| l.contains(&shown)).count();
            if titles != 2 {
                self.fail("python's title does not show the query", request, py, us);
            }
            for line in &mut py_frame {
                *line = line.replace(&shown, "");
            }
        }
        if py_frame != us_frame {
            self.fail(
                "listing page (outside the entries) differs",
                request,
                py,
                us,
            );
        }
        if query.is_none() && !raw_entry_here {
            self.compare_header("content-length", request, py, us);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The extension Python's `guess_type` would look at (`a.tar.gz` → `gz`), of the decoded
/// last path segment of a request target.
fn extension(target: &str) -> String {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let last = path.rsplit('/').next().unwrap_or_default();
    let last = percent_decode(last);
    match last.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.to_owned(),
        _ => String::new(),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A response for a failure message: status, the compared headers, the body (cut).
fn show(res: &Response) -> String {
    let mut out = format!("status {}\n", res.status);
    for (name, value) in &res.headers {
        out.push_str(&format!("{name}: {value}\n"));
    }
    let text = res.text();
    let cut: String = text.chars().take(1500).collect();
    out.push_str(&format!("body ({} bytes): {cut:?}", res.body.len()));
    out
}

/// The hrefs of a listing's entries, minus the raw-name one (compared separately).
fn hrefs(res: &Response) -> Vec<String> {
    res.listing_entries()
        .iter()
        .filter_map(|e| e.strip_prefix("<li><a href=\""))
        .filter_map(|e| e.split_once('"').map(|(href, _)| href.to_owned()))
        .filter(|href| !href.starts_with("raw"))
        .collect()
}

fn start() -> (tempfile::TempDir, Diff) {
    let dir = tempfile::tempdir().expect("fixture directory");
    let root = dir.path().join("root");
    fs::create_dir(&root).expect("fixture directory");
    build_fixture(&root);
    let diff = Diff {
        python: Server::python(&root, &[]),
        ours: Server::serve(&root, &[]),
        compared: 0,
        failures: Vec::new(),
        content_type_rows_used: BTreeSet::new(),
    };
    // Python's side is expected to show the query in a listing's title, as 3.11 and 3.12
    // do (3.14 does not).
    let server = diff.python.get("/a.txt");
    let server = server.header("server").unwrap_or_default();
    assert!(
        ["SimpleHTTP/0.6 Python/3.11.", "SimpleHTTP/0.6 Python/3.12."]
            .iter()
            .any(|v| server.starts_with(v)),
        "python3 on PATH must be 3.11 or 3.12, found {server:?}"
    );
    (dir, diff)
}

fn finish(diff: &Diff, min_requests: usize) {
    common::assert_all_alike(&diff.failures, diff.compared, min_requests);
}

/// Every listing reachable from `/`, and every file by its listing href.
#[test]
fn every_listing_and_every_file_by_its_href() {
    let (_dir, mut diff) = start();
    let mut queue = VecDeque::from([String::from("/")]);
    let mut seen = BTreeSet::new();
    let mut listings = 0;
    // Bounded: the fixture has a dozen directories (the symlinked one listed twice).
    for _ in 0..64 {
        let Some(dir) = queue.pop_front() else { break };
        if !seen.insert(dir.clone()) {
            continue;
        }
        let (py, _) = diff.check("GET", &dir, &[], Expect::Listing);
        listings += 1;
        for href in hrefs(&py) {
            let target = format!("{dir}{href}");
            if href.ends_with('/') {
                let index = ["with_html/", "with_htm/", "with_both/"].contains(&href.as_str());
                if index {
                    diff.check("GET", &target, &[], Expect::Status(200));
                } else {
                    queue.push_back(target);
                }
            } else if href == "broken" {
                diff.check("GET", &target, &[], Expect::Status(404));
            } else {
                diff.check("GET", &target, &[], Expect::Status(200));
            }
        }
    }
    assert!(queue.is_empty(), "listing crawl did not finish");
    // /, no_index, dlink, dir_index, dir_index/index.html, empty, nested, nested/deeper,
    // nested/deeper/deepest, nested/deeper/empty_too, d ir.
    assert_eq!(listings, 11, "listings crawled: {seen:?}");
    let unused: Vec<_> = (0..CONTENT_TYPE_DIFFS.len())
        .filter(|row| !diff.content_type_rows_used.contains(row))
        .map(|row| CONTENT_TYPE_DIFFS[row])
        .collect();
    assert!(
        unused.is_empty(),
        "CONTENT_TYPE_DIFFS rows never needed: {unused:?}"
    );
    // One listing or file per fixture entry: 11 listings and 48 entries.
    finish(&diff, 55);
}

/// README "Differences from Python": non-UTF-8 names. Each server links the file under
/// its own href; each serves it there, with the same bytes and headers.
#[test]
fn raw_name_is_served_under_each_own_href() {
    let (_dir, diff) = start();
    let py_listing = diff.python.get("/");
    let us_listing = diff.ours.get("/");
    assert!(
        py_listing
            .listing_entries()
            .contains(&RAW_ENTRY_PYTHON.to_owned())
    );
    assert!(
        us_listing
            .listing_entries()
            .contains(&RAW_ENTRY_OURS.to_owned())
    );
    let py = diff.python.get("/raw%ED%B3%BF.bin");
    let us = diff.ours.get("/raw%FF.bin");
    assert_eq!((py.status, us.status), (200, 200));
    assert_eq!(py.body, RAW_CONTENT);
    assert_eq!(us.body, RAW_CONTENT);
    for name in ["content-type", "content-length", "last-modified"] {
        assert_eq!(py.header(name), us.header(name), "{name}");
    }
    assert_eq!(us.header("last-modified"), Some(MTIME_HTTP));
}

/// Path mapping, redirects, errors, HEAD, conditional requests and methods.
#[test]
fn edge_cases() {
    let (_dir, mut diff) = start();
    let ok = Expect::Status(200);
    let moved = Expect::Status(301);
    let missing = Expect::Status(404);
    let not_modified = Expect::Status(304);
    let unsupported = Expect::Status(501);

    // Directory without a trailing slash: 301 to the slash, query kept.
    for target in [
        "/no_index",
        "/no_index?a=1&b=2",
        "/with_html",
        "/with_html?a=1&b=2",
        "/empty",
        "/d%20ir",
        "/dlink",
        "/nested/deeper",
        "/dir_index/index.html",
        // Leading double slash: Python collapses it.
        "//no_index",
        "//no_index?a=1&b=2",
    ] {
        let (_, us) = diff.check("GET", target, &[], moved);
        assert!(us.header("location").is_some_and(|l| l.starts_with('/')));
    }
    diff.check("GET", "//no_index/", &[], Expect::Listing);
    diff.check("GET", "//a.txt", &[], ok);

    // Listings with a query (title differs, entries do not).
    diff.check("GET", "/no_index/?x=1&y=2", &[], Expect::Listing);
    diff.check("GET", "/?x=1", &[], Expect::Listing);

    // Dot segments, empty segments, escapes.
    for target in [
        "/no_index/../a.txt",
        "/./a.txt",
        "/no_index//one.txt",
        "/%2e%2e/a.txt",
        "/%2E%2E/%2e%2e/a.txt",
        "/nested/deeper/../top.txt",
        "/../a.txt",
    ] {
        diff.check("GET", target, &[], ok);
    }
    for target in ["/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd"] {
        diff.check("GET", target, &[], missing);
    }

    // Missing files and a file with a trailing slash: Python's 404 page.
    for target in [
        "/nope",
        "/nope/",
        "/nope.txt",
        "/no_index/nope.txt",
        "/a.txt/",
        "/with_html/index.html/",
        "/noext/child",
        "/broken",
        "/broken/",
    ] {
        diff.check("GET", target, &[], missing);
    }

    // Query strings on files.
    diff.check("GET", "/a.txt?x=1", &[], ok);
    diff.check("GET", "/a.txt?", &[], ok);
    diff.check("GET", "/a.txt#frag", &[], ok);
    diff.check("GET", "/with_both/?x=1", &[], ok);

    // Percent-encoded names; `+` is not a space; `%41` decodes to `A`.
    for target in [
        "/%3Ci%3E.txt",
        "/%3ci%3e.txt",
        "/sp%20ace.txt",
        "/%C3%A9.txt",
        "/%c3%a9.txt",
        "/%2541.txt",
        "/q%3F.txt",
        "/h%23.txt",
        "/p+lus.txt",
        "/p%2Blus.txt",
        "/%61.txt",
    ] {
        diff.check("GET", target, &[], ok);
    }
    for target in ["/sp+ace.txt", "/%41.txt", "/q?.txt", "/%zz.txt"] {
        diff.check("GET", target, &[], missing);
    }

    // HEAD of a file, an index, a listing, a redirect and a 404.
    diff.check("HEAD", "/a.txt", &[], ok);
    diff.check("HEAD", "/with_htm/", &[], ok);
    diff.check("HEAD", "/no_index/", &[], Expect::Listing);
    diff.check("HEAD", "/no_index", &[], moved);
    diff.check("HEAD", "/nope", &[], missing);
    // HEAD of the root listing: its length differs (raw-name entry), so each server's HEAD
    // must announce the length of its own GET.
    for server in [&diff.python, &diff.ours] {
        let head = server.request("HEAD", "/", &[]);
        let get = server.get("/");
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(
            head.header("content-length"),
            Some(get.body.len().to_string().as_str())
        );
    }

    // If-Modified-Since on a file and on an index file.
    let ims = |date| [("If-Modified-Since", date)];
    diff.check("GET", "/a.txt", &ims(MTIME_HTTP), not_modified);
    diff.check("GET", "/a.txt", &ims(IMS_LATER), not_modified);
    diff.check("HEAD", "/a.txt", &ims(IMS_LATER), not_modified);
    diff.check("GET", "/a.txt", &ims(IMS_EARLIER), ok);
    diff.check("GET", "/a.txt", &ims("garbage"), ok);
    diff.check("GET", "/a.txt", &ims("Thu, 32 Jan 2030 03:04:05 GMT"), ok);
    // The obsolete date forms both accept, and a non-GMT zone both ignore.
    diff.check(
        "GET",
        "/a.txt",
        &ims("Thursday, 02-Jan-20 03:04:05 GMT"),
        not_modified,
    );
    diff.check(
        "GET",
        "/a.txt",
        &ims("Thu Jan  2 03:04:05 2020"),
        not_modified,
    );
    diff.check("GET", "/a.txt", &ims("Fri, 03 Jan 2020 05:04:05 +0100"), ok);
    diff.check("GET", "/with_html/", &ims(IMS_LATER), not_modified);
    diff.check("GET", "/with_html/", &ims(IMS_EARLIER), ok);
    // If-None-Match present (not matching): Python ignores If-Modified-Since.
    diff.check(
        "GET",
        "/a.txt",
        &[
            ("If-Modified-Since", IMS_LATER),
            ("If-None-Match", "\"no-such-etag\""),
        ],
        ok,
    );
    // A missing file stays 404 whatever the date.
    diff.check("GET", "/nope", &ims(IMS_LATER), missing);

    // Methods Python does not support: 501 with the same page.
    for method in ["PUT", "DELETE", "OPTIONS", "POST", "PATCH"] {
        diff.check(method, "/a.txt", &[], unsupported);
    }
    diff.check("POST", "/no_index/", &[], unsupported);
    diff.check("DELETE", "/nope", &[], unsupported);

    // One header line (name, ": ", value, CRLF) of exactly 65,536 bytes is read; one byte
    // more is Python's `431 Line too long` page.
    let value = |line: usize| "v".repeat(line - "X-Foo: \r\n".len());
    diff.check("GET", "/a.txt", &[("X-Foo", &value(65_536))], ok);
    for line in [65_537, 70_000] {
        diff.check(
            "GET",
            "/a.txt",
            &[("X-Foo", &value(line))],
            Expect::Status(431),
        );
    }

    finish(&diff, 60);
}
