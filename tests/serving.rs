//! Black-box tests of static serving: the built binary on a loopback port, raw sockets.
#![allow(clippy::unwrap_used)] // a panic in a test is a failure with a message

mod common;

use common::{Response, Server};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const HOSTILE: [&str; 10] = [
    "<i>.txt",
    "\"dq\".txt",
    "'sq'.txt",
    "&amp.txt",
    "%41.txt",
    "q?.txt",
    "h#.txt",
    "sp ace.txt",
    "é.txt",
    "back\\slash.txt",
];

fn fixture() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::write(p.join("a.txt"), "alpha\n").unwrap();
    for name in HOSTILE {
        std::fs::write(p.join(name), format!("content of {name}")).unwrap();
    }
    std::fs::write(p.join(OsStr::from_bytes(b"raw\xff.bin")), "raw bytes").unwrap();
    for dir in [
        "both",
        "htm",
        "plain",
        "dirindex/index.html",
        "empty",
        "<b> dir",
    ] {
        std::fs::create_dir_all(p.join(dir)).unwrap();
    }
    std::fs::write(p.join("both/index.html"), "index.html").unwrap();
    std::fs::write(p.join("both/index.htm"), "index.htm").unwrap();
    std::fs::write(p.join("htm/index.htm"), "index.htm only").unwrap();
    std::fs::write(p.join("plain/file.txt"), "in plain").unwrap();
    std::os::unix::fs::symlink(p.join("a.txt"), p.join("filelink")).unwrap();
    std::os::unix::fs::symlink(p.join("plain"), p.join("dirlink")).unwrap();
    std::os::unix::fs::symlink(p.join("nowhere"), p.join("broken")).unwrap();
    d
}

fn href_of(entry: &str) -> &str {
    entry
        .split("href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
}

#[test]
fn hostile_names_round_trip_through_their_listing_links() {
    let d = fixture();
    let server = Server::serve(d.path(), &[]);
    let listing = server.get("/");
    assert_eq!(listing.status, 200);
    let entries = listing.listing_entries();
    let mut served = 0;
    for entry in &entries {
        let href = href_of(entry);
        if href.ends_with('/') || href == "broken" {
            continue;
        }
        let res = server.get(&format!("/{href}"));
        assert_eq!(res.status, 200, "{entry}");
        served += 1;
    }
    assert_eq!(served, HOSTILE.len() + 3, "{entries:?}"); // + a.txt, raw\xff.bin, filelink
    // Names are escaped in text and percent-encoded in hrefs: no markup gets through.
    let html = listing.text();
    assert!(
        html.contains(r#"<a href="%3Ci%3E.txt">&lt;i&gt;.txt</a>"#),
        "{html}"
    );
    assert!(html.contains(r#"<a href="%22dq%22.txt">"dq".txt</a>"#));
    assert!(html.contains(r#"<a href="%3Cb%3E%20dir/">&lt;b&gt; dir/</a>"#));
    assert!(!html.contains("<i>"));
    assert_eq!(server.get("/%3Ci%3E.txt").body, b"content of <i>.txt");
    assert_eq!(server.get("/q%3F.txt").body, b"content of q?.txt");
    assert_eq!(server.get("/h%23.txt").body, b"content of h#.txt");
    assert_eq!(server.get("/raw%FF.bin").body, b"raw bytes");
    // `?` and `#` unencoded end the path, as in Python.
    assert_eq!(server.get("/q?.txt").status, 404);
}

#[test]
fn symlinks_are_followed_and_marked() {
    let d = fixture();
    let server = Server::serve(d.path(), &[]);
    let entries = server.get("/").listing_entries();
    assert!(entries.contains(&r#"<li><a href="filelink">filelink@</a></li>"#.to_owned()));
    assert!(entries.contains(&r#"<li><a href="dirlink/">dirlink@</a></li>"#.to_owned()));
    assert!(entries.contains(&r#"<li><a href="broken">broken@</a></li>"#.to_owned()));
    assert_eq!(server.get("/filelink").body, b"alpha\n");
    assert_eq!(server.get("/dirlink").header("location"), Some("/dirlink/"));
    assert_eq!(server.get("/dirlink/file.txt").body, b"in plain");
    assert_eq!(server.get("/broken").status, 404);
}

#[test]
fn listing_is_sorted_case_insensitively_and_marks_dirs() {
    let d = tempfile::tempdir().unwrap();
    for name in ["b", "A", "c", "B2"] {
        std::fs::write(d.path().join(name), "").unwrap();
    }
    std::fs::create_dir(d.path().join("a-dir")).unwrap();
    let server = Server::serve(d.path(), &[]);
    let entries = server.get("/").listing_entries();
    assert_eq!(
        entries,
        [
            r#"<li><a href="A">A</a></li>"#,
            r#"<li><a href="a-dir/">a-dir/</a></li>"#,
            r#"<li><a href="b">b</a></li>"#,
            r#"<li><a href="B2">B2</a></li>"#,
            r#"<li><a href="c">c</a></li>"#,
        ]
    );
}

#[test]
fn index_files_take_precedence_in_pythons_order() {
    let d = fixture();
    let server = Server::serve(d.path(), &[]);
    let both = server.get("/both/");
    assert_eq!(both.body, b"index.html");
    assert_eq!(both.header("content-type"), Some("text/html"));
    assert_eq!(server.get("/htm/").body, b"index.htm only");
    // A directory named index.html is not an index: the listing shows.
    let res = server.get("/dirindex/");
    assert_eq!(res.status, 200);
    assert_eq!(
        res.listing_entries(),
        [r#"<li><a href="index.html/">index.html/</a></li>"#]
    );
    assert_eq!(
        server.get("/empty/").listing_entries(),
        Vec::<String>::new()
    );
}

#[test]
fn directories_redirect_to_their_slash_form_keeping_the_query() {
    let d = fixture();
    let server = Server::serve(d.path(), &[]);
    let res = server.get("/plain?a=1&b=%202");
    assert_eq!(res.status, 301);
    assert_eq!(res.header("location"), Some("/plain/?a=1&b=%202"));
    assert_eq!(res.header("content-length"), Some("0"));
    assert_eq!(
        server.get("/%3Cb%3E%20dir").header("location"),
        Some("/%3Cb%3E%20dir/")
    );
}

#[test]
fn redirects_never_point_at_another_host() {
    let d = fixture();
    let server = Server::serve(d.path(), &[]);
    for (target, location) in [
        ("//plain", "/plain/"),
        ("///plain", "/plain/"),
        (
            "//evil.example/..%2f..%2fplain",
            "/evil.example/..%2f..%2fplain/",
        ),
        (
            "/\\evil.example/%2e%2e%2fplain",
            "/evil.example/%2e%2e%2fplain/",
        ),
        (
            "/%5Cevil.example/%2e%2e%2fplain",
            "/%5Cevil.example/%2e%2e%2fplain/",
        ),
    ] {
        let res = server.get(target);
        assert_eq!(res.status, 301, "{target}");
        let got = res.header("location").unwrap();
        assert_eq!(got, location, "{target}");
        assert!(
            !got.starts_with("//") && !got.starts_with("/\\"),
            "{target} → {got}"
        );
    }
}

#[test]
fn paths_never_leave_the_root() {
    let outer = tempfile::tempdir().unwrap();
    std::fs::write(outer.path().join("secret.txt"), "secret").unwrap();
    let root = outer.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("a.txt"), "alpha").unwrap();
    let server = Server::serve(&root, &[]);
    for target in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "/a/../../secret.txt",
        "/./../secret.txt",
    ] {
        let res = server.get(target);
        assert_eq!(res.status, 404, "{target}");
        assert!(!res.text().contains("secret"), "{target}");
    }
    // Python's normalisation: `..` is resolved against the path, never above the root.
    assert_eq!(server.get("/sub/../a.txt").body, b"alpha");
    assert_eq!(server.get("/../a.txt").body, b"alpha");
    assert_eq!(server.get("/.//a.txt").body, b"alpha");
    assert_eq!(server.get("/a%00.txt").status, 400);
}

fn file_mtime(path: &Path) -> String {
    httpdate::fmt_http_date(std::fs::metadata(path).unwrap().modified().unwrap())
}

#[test]
fn if_modified_since_gives_304_or_200() {
    let d = fixture();
    let server = Server::serve(d.path(), &[]);
    let lm = file_mtime(&d.path().join("a.txt"));
    let ims = |value: &str| server.request("GET", "/a.txt", &[("If-Modified-Since", value)]);
    let res = ims(&lm);
    assert_eq!(res.status, 304);
    assert!(res.body.is_empty());
    assert_eq!(res.header("last-modified"), Some(lm.as_str()));
    assert_eq!(ims("Fri, 01 Jan 2100 00:00:00 GMT").status, 304);
    assert_eq!(ims("Thu, 01 Jan 1970 00:00:00 GMT").status, 200);
    assert_eq!(ims("garbage").status, 200);
    assert_eq!(ims("Thu, 32 Jan 2030 00:00:00 GMT").status, 200);
    // If-None-Match disables If-Modified-Since.
    let res = server.request(
        "GET",
        "/a.txt",
        &[("If-Modified-Since", &lm), ("If-None-Match", "\"nope\"")],
    );
    assert_eq!(res.status, 200);
    let etag = server.get("/a.txt").header("etag").unwrap().to_owned();
    assert_eq!(
        server
            .request("GET", "/a.txt", &[("If-None-Match", &etag)])
            .status,
        304
    );
    assert_eq!(
        server
            .request("HEAD", "/a.txt", &[("If-Modified-Since", &lm)])
            .status,
        304
    );
    assert_eq!(
        server
            .request("GET", "/a.txt", &[("If-Match", "\"nope\"")])
            .status,
        412
    );
    // Listings carry the directory's Last-Modified (once it is over a second old, so a
    // change in the same second cannot hide behind it), and an ETag, so they get 304 too.
    let fresh = server.get("/plain/");
    assert_eq!(fresh.header("last-modified"), None);
    let etag = fresh.header("etag").unwrap().to_owned();
    assert_eq!(
        server
            .request("GET", "/plain/", &[("If-None-Match", &etag)])
            .status,
        304
    );
    std::fs::write(d.path().join("plain/another.txt"), "x").unwrap();
    assert_eq!(
        server
            .request("GET", "/plain/", &[("If-None-Match", &etag)])
            .status,
        200
    );
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::open(d.path().join("plain"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let listing = server.get("/plain/");
    let dir_lm = listing.header("last-modified").unwrap().to_owned();
    assert_eq!(dir_lm, file_mtime(&d.path().join("plain")));
    assert_eq!(
        server
            .request("GET", "/plain/", &[("If-Modified-Since", &dir_lm)])
            .status,
        304
    );
    // …and the index file's validators apply to a directory served by its index.
    let index_lm = file_mtime(&d.path().join("both/index.html"));
    assert_eq!(
        server
            .request("GET", "/both/", &[("If-Modified-Since", &index_lm)])
            .status,
        304
    );
}

#[test]
fn no_cache_serves_stale_bytes_or_entries() {
    let d = fixture();
    let server = Server::serve(d.path(), &[]);
    assert_eq!(server.get("/plain/").listing_entries().len(), 1);
    std::fs::write(d.path().join("plain/new.txt"), "new").unwrap();
    assert_eq!(server.get("/plain/").listing_entries().len(), 2);
    // An entry replaced by another name (a rename within the same second).
    std::fs::rename(
        d.path().join("plain/new.txt"),
        d.path().join("plain/renamed.txt"),
    )
    .unwrap();
    let entries = server.get("/plain/").listing_entries();
    assert!(
        entries.iter().any(|e| e.contains("renamed.txt")),
        "{entries:?}"
    );
    assert!(
        !entries.iter().any(|e| e.contains("new.txt")),
        "{entries:?}"
    );
    // A file overwritten in place, same size, read back at once.
    std::fs::write(d.path().join("a.txt"), "ALPHA\n").unwrap();
    assert_eq!(server.get("/a.txt").body, b"ALPHA\n");
    // Replaced by a new file under the same name (a new inode).
    std::fs::write(d.path().join("a.tmp"), "replaced").unwrap();
    std::fs::rename(d.path().join("a.tmp"), d.path().join("a.txt")).unwrap();
    assert_eq!(server.get("/a.txt").body, b"replaced");
    std::fs::write(d.path().join("a.txt"), "rewritten").unwrap();
    assert_eq!(server.get("/a.txt").body, b"rewritten");
}

#[test]
fn head_sends_headers_only() {
    let d = fixture();
    let server = Server::serve(d.path(), &[]);
    for (target, status) in [("/a.txt", 200), ("/plain/", 200), ("/missing", 404)] {
        let get = server.get(target);
        let head = server.request("HEAD", target, &[]);
        assert_eq!(head.status, status);
        assert!(head.body.is_empty(), "{target}");
        assert_eq!(
            head.header("content-length"),
            get.header("content-length"),
            "{target}"
        );
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "{target}"
        );
        assert_eq!(
            get.header("content-length").unwrap(),
            get.body.len().to_string()
        );
    }
}

#[test]
fn error_pages_are_pythons() {
    let d = fixture();
    let server = Server::serve(d.path(), &[]);
    let res = server.get("/missing");
    assert_eq!(res.status, 404);
    assert_eq!(res.header("content-type"), Some("text/html;charset=utf-8"));
    assert_eq!(res.header("content-length"), Some("335"));
    assert!(res.text().contains("<p>Message: File not found.</p>"));
    assert_eq!(server.get("/a.txt/").status, 404);
    for method in ["PUT", "DELETE", "POST", "OPTIONS", "PATCH", "FOO"] {
        let res = server.request(method, "/a.txt", &[("Content-Length", "0")]);
        assert_eq!(res.status, 501, "{method}");
        assert!(
            res.text()
                .contains(&format!("Unsupported method ('{method}')")),
            "{method}"
        );
    }
}

#[test]
fn ranges_are_served() {
    let d = fixture();
    let server = Server::serve(d.path(), &[]);
    let res = server.request("GET", "/a.txt", &[("Range", "bytes=1-3")]);
    assert_eq!(res.status, 206);
    assert_eq!(res.body, b"lph");
    assert_eq!(res.header("content-range"), Some("bytes 1-3/6"));
    let res = server.request("GET", "/a.txt", &[("Range", "bytes=10-")]);
    assert_eq!(res.status, 416);
    assert_eq!(res.header("content-range"), Some("bytes */6"));
}

#[test]
fn mime_types_and_headers() {
    let d = tempfile::tempdir().unwrap();
    for name in [
        "a.html",
        "a.css",
        "a.json",
        "a.png",
        "a.svg",
        "a.gz",
        "noext",
        "a.unknownext",
    ] {
        std::fs::write(d.path().join(name), "x").unwrap();
    }
    let server = Server::serve(d.path(), &[]);
    for (name, mime) in [
        ("a.html", "text/html"),
        ("a.css", "text/css"),
        ("a.json", "application/json"),
        ("a.png", "image/png"),
        ("a.svg", "image/svg+xml"),
        ("a.gz", "application/gzip"),
        ("noext", "application/octet-stream"),
        ("a.unknownext", "application/octet-stream"),
    ] {
        let res = server.get(&format!("/{name}"));
        assert_eq!(res.header("content-type"), Some(mime), "{name}");
        assert_eq!(
            res.header("server"),
            Some(concat!("httpserve/", env!("CARGO_PKG_VERSION")))
        );
        assert!(res.header("date").is_some());
    }
}

/// Reads one response with a Content-Length body from a kept-alive connection.
fn read_one(stream: &mut std::net::TcpStream) -> Response {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).unwrap();
        assert_eq!(
            n,
            1,
            "connection closed mid-head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = Response::parse(&buf);
    let len: usize = head.header("content-length").unwrap().parse().unwrap();
    let mut body = vec![0; len];
    stream.read_exact(&mut body).unwrap();
    buf.extend_from_slice(&body);
    Response::parse(&buf)
}

#[test]
fn keep_alive_by_default_and_off_with_http_1_0() {
    let d = fixture();
    let server = Server::serve(d.path(), &[]);
    let mut stream = server.connect();
    for _ in 0..5 {
        stream
            .write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(read_one(&mut stream).body, b"alpha\n");
    }
    // Pipelined requests are answered in order on the same connection.
    stream
        .write_all(
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /missing HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .unwrap();
    assert_eq!(read_one(&mut stream).status, 200);
    let not_found = read_one(&mut stream);
    assert_eq!(not_found.status, 404);
    // The standard reason phrase (Python: `404 File not found`), and an error does not
    // close the connection (Python closes after every error).
    assert!(not_found.raw.starts_with(b"HTTP/1.1 404 Not Found\r\n"));
    assert_eq!(not_found.header("connection"), None);
    stream
        .write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_one(&mut stream).body, b"alpha\n");

    let server = Server::serve(d.path(), &["-p", "HTTP/1.0"]);
    let mut stream = server.connect();
    stream
        .write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap(); // returns only because the server closes
    let res = Response::parse(&all);
    assert_eq!(res.body, b"alpha\n");
    assert_eq!(res.header("connection"), Some("close"));
}

#[test]
fn access_log_lines_are_pythons_and_filterable() {
    let d = fixture();
    let server = Server::serve(d.path(), &[]);
    server.get("/a.txt?x=1");
    server.get("/missing");
    assert!(server.wait_for_stderr("\"GET /missing HTTP/1.1\" 404 -"));
    let log = server.stderr();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(lines[0].starts_with("127.0.0.1 - - ["), "{log}");
    assert!(
        lines[0].ends_with("] \"GET /a.txt?x=1 HTTP/1.1\" 200 -"),
        "{log}"
    );
    assert!(
        lines[1].ends_with("] code 404, message File not found"),
        "{log}"
    );
    // [24/Nov/2026 19:22:43]
    let date = lines[0]
        .split('[')
        .nth(1)
        .unwrap()
        .split(']')
        .next()
        .unwrap();
    assert_eq!(date.len(), 20, "{date}");

    let mut cmd = std::process::Command::new(common::binary());
    cmd.args(["0", "-b", "127.0.0.1", "-d"])
        .arg(d.path())
        .env("RUST_LOG", "httpserve::access=off");
    let quiet = Server::spawn(cmd);
    assert_eq!(quiet.get("/a.txt").status, 200);
    assert_eq!(quiet.get("/a.txt").status, 200);
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(quiet.stderr(), "");
}

#[test]
fn malformed_requests_get_4xx_and_never_reach_the_log_raw() {
    let d = fixture();
    let server = Server::serve(d.path(), &[]);
    let res = Response::parse(&server.raw(b"GET /a\x1b[31mred HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert_eq!(res.status, 400);
    let res = Response::parse(&server.raw(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"));
    assert_eq!(res.status, 400);
    server.get("/a.txt");
    assert!(server.wait_for_stderr("\"GET /a.txt HTTP/1.1\" 200 -"));
    assert!(!server.stderr().contains('\x1b'));
}

#[test]
fn sigterm_lets_an_in_flight_download_finish_and_exits_zero() {
    let d = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..32u32 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    std::fs::write(d.path().join("big.bin"), &data).unwrap();
    let mut server = Server::serve(d.path(), &[]);
    let mut stream = server.connect();
    stream
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Read a little, so the response is in flight, then ask the server to stop.
    let mut first = vec![0u8; 4096];
    stream.read_exact(&mut first).unwrap();
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(server.pid().to_string())
        .status();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    first.extend_from_slice(&rest);
    let res = Response::parse(&first);
    assert_eq!(res.status, 200);
    assert_eq!(res.body.len(), data.len());
    assert!(res.body == data);
    assert_eq!(server.wait_exit(), Some(0));
    // It stopped accepting.
    assert!(std::net::TcpStream::connect(("127.0.0.1", server.port)).is_err());
}

#[test]
fn ctrl_c_exits_zero() {
    let d = fixture();
    let mut server = Server::serve(d.path(), &[]);
    assert_eq!(server.get("/a.txt").status, 200);
    assert_eq!(server.signal_and_wait("INT"), Some(0));
}

#[test]
fn protocol_edge_cases_get_clear_answers() {
    let d = fixture();
    let server = Server::serve(d.path(), &[]);
    // HTTP/0.9, a bad version token and HTTP/2.0 in an HTTP/1 request line: 400, then close.
    for raw in [
        &b"GET /a.txt\r\n\r\n"[..],
        b"GET /a.txt FUBAR\r\n\r\n",
        b"GET /a.txt HTTP/2.0\r\n\r\n",
    ] {
        let res = Response::parse(&server.raw(raw));
        assert_eq!(res.status, 400, "{}", String::from_utf8_lossy(raw));
    }
    // A request body on GET is read and discarded, never parsed as the next request (Python
    // answers the next request with `501 Unsupported method ('helloGET')`).
    let out = server.raw(
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&out);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    // Stray CRLFs before a request line are ignored (RFC 9112 §2.2); Python closes.
    let res = Response::parse(
        &server.raw(b"\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(res.body, b"alpha\n");
    // Absolute-form: the redirect carries the path only, never the client's host.
    let res = server.get("http://evil.example/plain");
    assert_eq!(res.header("location"), Some("/plain/"));
    // HTTP/1.0 requests are answered in HTTP/1.0 and closed.
    let out = server.raw(b"GET /a.txt HTTP/1.0\r\n\r\n");
    assert!(out.starts_with(b"HTTP/1.0 200 OK\r\n"));
}

#[test]
fn unreadable_directories_and_files_as_python_reports_them() {
    // Permissions mean nothing to root, so run the server as nobody (where we can).
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .unwrap()
        .stdout
        == b"0\n";
    if !is_root
        || std::process::Command::new("setpriv")
            .arg("--version")
            .output()
            .is_err()
    {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::create_dir(p.join("locked")).unwrap();
    std::fs::write(p.join("locked/inside.txt"), "x").unwrap();
    std::fs::write(p.join("private.txt"), "private").unwrap();
    std::fs::write(p.join("public.txt"), "public").unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(p.join("locked"), std::fs::Permissions::from_mode(0o311)).unwrap();
    std::fs::set_permissions(
        p.join("private.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(common::binary())
        .args(["0", "-b", "127.0.0.1", "-d"])
        .arg(p);
    let server = Server::spawn(cmd);
    assert_eq!(server.get("/public.txt").body, b"public");
    // A directory that cannot be listed: redirected, then Python's 404 message.
    assert_eq!(server.get("/locked").header("location"), Some("/locked/"));
    let res = server.get("/locked/");
    assert_eq!(res.status, 404);
    assert!(
        res.text().contains("No permission to list directory"),
        "{}",
        res.text()
    );
    // Its files can still be reached by name (x permission), as in Python.
    assert_eq!(server.get("/locked/inside.txt").body, b"x");
    // An unreadable file is a plain 404.
    let res = server.get("/private.txt");
    assert_eq!(res.status, 404);
    assert!(res.text().contains("File not found"));
}
