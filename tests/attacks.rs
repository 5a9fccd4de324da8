//! The attack suite (issue 5, `peers.md` §4): raw requests sent byte for byte to the built
//! binary over loopback, one class of hole per test — traversal in every spelling, symlink
//! and dot-file policies, special files, output safety (XSS, header and log injection),
//! hostile ranges and conditionals, request-line and header limits, request smuggling and
//! CGI. Every request asserts its exact status (a set only where the RFC or hyper leaves a
//! choice) and that no secret appears: a marker file outside the served root, reached by
//! symlinks inside it, and dot-files inside it. Every test ends by checking that the server
//! still answers a normal GET and never printed `panicked`.
//!
//! Four bugs this suite found (ranges past the file or past `u64`, unparsable `If-Range`,
//! NUL in CGI paths, missing or invalid `Host`) are fixed and pinned here.
#![allow(clippy::unwrap_used)] // a panic in a test is a failure with a message

mod common;
use common::{env_of, var};

use common::{Response, Server};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// In `secret.txt`, outside the served root.
const SECRET: &str = "OUTSIDE-SECRET-9d41c7e2";
/// In `.env` inside the root.
const DOTENV: &str = "DOTENV-SECRET-52be0f";
/// In `.git/config` inside the root.
const GITCONFIG: &str = "GITCONFIG-SECRET-77aa31";
/// In `sub/.hidden` inside the root.
const HIDDEN: &str = "HIDDEN-SECRET-c3d9";
/// A special file must be answered well within this.
const PROMPT: Duration = Duration::from_secs(3);

/// `OUTER/secret.txt` and the served `OUTER/root`:
///
/// ```text
/// a.txt  .env  .git/config  sub/{b.txt, .hidden, up -> ../a.txt, esc -> ../../secret.txt}
/// inlink -> a.txt   abs-secret -> OUTER/secret.txt   rel-secret -> ../secret.txt
/// outdir -> OUTER   zero -> /dev/zero   loop -> loop   fifo   fifodir/index.html (FIFO)
/// sock (a unix socket)   "d\r\nSet-Cookie: x=1"/   names/ (hostile file names)
/// cgi-bin/{h, .hidden-script, outlink -> OUTER/outside-h}   htbin/h
/// ```
///
/// Everything is world-readable (dirs 0755): when the tests run as root, CGI scripts run
/// as `nobody`.
struct Fixture {
    outer: tempfile::TempDir,
    root: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let outer = tempfile::tempdir().unwrap();
        let o = outer.path();
        let root = o.join("root");
        std::fs::write(o.join("secret.txt"), format!("{SECRET}\n")).unwrap();
        for dir in [
            "sub",
            ".git",
            "fifodir",
            "names",
            "cgi-bin",
            "htbin",
            "d\r\nSet-Cookie: x=1",
        ] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::write(root.join("a.txt"), "alpha\n").unwrap();
        std::fs::write(root.join(".env"), format!("{DOTENV}\n")).unwrap();
        std::fs::write(root.join(".git/config"), format!("{GITCONFIG}\n")).unwrap();
        std::fs::write(root.join("sub/b.txt"), "beta\n").unwrap();
        std::fs::write(root.join("sub/.hidden"), format!("{HIDDEN}\n")).unwrap();
        symlink("../a.txt", root.join("sub/up")).unwrap();
        symlink("../../secret.txt", root.join("sub/esc")).unwrap();
        symlink("a.txt", root.join("inlink")).unwrap();
        symlink(o.join("secret.txt"), root.join("abs-secret")).unwrap();
        symlink("../secret.txt", root.join("rel-secret")).unwrap();
        symlink(o, root.join("outdir")).unwrap();
        symlink("/dev/zero", root.join("zero")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        for fifo in ["fifo", "fifodir/index.html"] {
            let status = std::process::Command::new("mkfifo")
                .arg(root.join(fifo))
                .status()
                .unwrap();
            assert!(status.success(), "mkfifo {fifo}");
        }
        // The socket file stays when the listener is dropped.
        drop(std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap());
        for name in [
            "<script>alert(1)<.txt",
            "\"><img src=x onerror=alert(1)>.txt",
            "' onmouseover='alert(1).txt",
            "a&b&amp;.txt",
        ] {
            std::fs::write(root.join("names").join(name), "hostile\n").unwrap();
        }
        std::fs::create_dir(root.join("names/<b>\"dir\"&'")).unwrap();
        for name in ["cgi-bin/h", "cgi-bin/.hidden-script", "htbin/h"] {
            std::fs::copy(common::cgi_helper(), root.join(name)).unwrap();
        }
        std::fs::copy(common::cgi_helper(), o.join("outside-h")).unwrap();
        symlink(o.join("outside-h"), root.join("cgi-bin/outlink")).unwrap();
        for path in [
            o.to_path_buf(),
            root.clone(),
            root.join("cgi-bin"),
            root.join("htbin"),
            root.join("cgi-bin/h"),
            root.join("cgi-bin/.hidden-script"),
            root.join("htbin/h"),
            o.join("outside-h"),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Fixture { outer, root }
    }

    fn serve(&self, args: &[&str]) -> Server {
        Server::serve(&self.root, args)
    }

    fn outer(&self) -> &Path {
        self.outer.path()
    }
}

/// `METHOD target HTTP/1.1`, `Host: x`, the `extra` header lines (each ending in CRLF),
/// `Connection: close` — exactly these bytes.
fn req(method: &[u8], target: &[u8], extra: &[u8]) -> Vec<u8> {
    [
        method,
        b" ",
        target,
        b" HTTP/1.1\r\nHost: x\r\n",
        extra,
        b"Connection: close\r\n\r\n",
    ]
    .concat()
}

fn get(target: &[u8]) -> Vec<u8> {
    req(b"GET", target, b"")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn shown(request: &[u8]) -> String {
    let cut = &request[..request.len().min(160)];
    format!("{:?}", String::from_utf8_lossy(cut))
}

/// Nothing from outside the root: not the secret, not the outer directory's path, not
/// `/etc/passwd`.
fn assert_no_secret(fx: &Fixture, raw: &[u8], what: &str) {
    assert!(!contains(raw, SECRET.as_bytes()), "secret leaked by {what}");
    // The outer directory's path may appear only as the start of the root's (CGI's
    // `PATH_TRANSLATED`, `SCRIPT_FILENAME`).
    let outer = fx.outer().display().to_string();
    let root = format!("{outer}/root");
    let mut rest = raw;
    while let Some(at) = rest
        .windows(outer.len())
        .position(|w| w == outer.as_bytes())
    {
        assert!(
            rest[at..].starts_with(root.as_bytes()),
            "outer path in the answer to {what}: {:?}",
            String::from_utf8_lossy(raw)
        );
        rest = &rest[at + outer.len()..];
    }
    assert!(
        !contains(raw, b"root:x:0:0"),
        "/etc/passwd leaked by {what}"
    );
}

fn assert_no_dotfile(raw: &[u8], what: &str) {
    for marker in [DOTENV, GITCONFIG, HIDDEN] {
        assert!(
            !contains(raw, marker.as_bytes()),
            "{marker} leaked by {what}"
        );
    }
}

/// Sends `request` byte for byte, asserts the status is one of `allowed` and nothing from
/// outside the root came back.
fn check(server: &Server, fx: &Fixture, request: &[u8], allowed: &[u16]) -> Response {
    let what = shown(request);
    let raw = server.raw(request);
    assert!(!raw.is_empty(), "no answer to {what}");
    let res = Response::parse(&raw);
    assert!(
        allowed.contains(&res.status),
        "{what} → {} (want {allowed:?}): {}",
        res.status,
        res.text()
    );
    assert_no_secret(fx, &raw, &what);
    res
}

/// The server still answers a normal request and never panicked.
fn assert_alive(server: &Server) {
    let res = Response::parse(&server.raw(&get(b"/a.txt")));
    assert_eq!(res.status, 200, "a normal GET after the attacks");
    assert_eq!(res.body, b"alpha\n");
    std::thread::sleep(Duration::from_millis(50));
    let err = server.stderr();
    assert!(!err.contains("panicked"), "the server panicked: {err}");
}

/// Every spelling of `..`, separators, encodings, NUL, control characters, Windows drive
/// letters and device names, absolute-form and `//` targets: 404 (400 for NUL and for what
/// hyper refuses), Python's generic page, nothing of the outer tree.
#[test]
fn traversal_in_every_spelling_is_denied() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let absolute = format!("/{}", fx.outer().join("secret.txt").display());
    let cases: &[(&[u8], u16)] = &[
        (b"/../secret.txt", 404),
        (b"/../../../../../../../../etc/passwd", 404),
        (b"/%2e%2e/secret.txt", 404),
        (b"/%2E%2e/secret.txt", 404),
        (b"/%2e%2E%2fsecret.txt", 404),
        (b"/.%2e/secret.txt", 404),
        (b"/%2e./secret.txt", 404),
        (b"/..%2fsecret.txt", 404),
        (b"/..%2F..%2F..%2F..%2Fetc%2Fpasswd", 404),
        (b"/..%5csecret.txt", 404),
        (b"/%5c..%5csecret.txt", 404),
        (b"/%2e%2e%5csecret.txt", 404),
        (b"/%252e%252e%252fsecret.txt", 404),
        (b"/%252e%252e/secret.txt", 404),
        (b"/..%255csecret.txt", 404),
        (b"/%c0%ae%c0%ae/secret.txt", 404),
        (b"/..%c0%afsecret.txt", 404),
        (b"/%c0%ae%c0%ae%c0%afsecret.txt", 404),
        (b"/%e0%80%ae%e0%80%ae/secret.txt", 404),
        (b"/%ef%bc%8e%ef%bc%8e%ef%bc%8fsecret.txt", 404),
        (b"/%u002e%u002e/secret.txt", 404),
        (b"/a.txt%00", 400),
        (b"/a.txt%00.html", 400),
        (b"/..%00/secret.txt", 400),
        (b"/%00../secret.txt", 400),
        (b"/sub/%00", 400),
        (b"/%0d%0a../secret.txt", 404),
        (b"/..%0d%0a/secret.txt", 404),
        (b"/%1b../secret.txt", 404),
        (b"/..%09/secret.txt", 404),
        (b"/..\\secret.txt", 404),
        (b"/\\..\\secret.txt", 404),
        (b"/sub\\..\\..\\secret.txt", 404),
        (b"/C:/Windows/win.ini", 404),
        (b"/c:%5cwindows%5cwin.ini", 404),
        (b"/C:%2f..%2fsecret.txt", 404),
        (b"/CON", 404),
        (b"/NUL", 404),
        (b"/aux.txt", 404),
        (b"/COM1", 404),
        (b"/LPT1:", 404),
        (b"/a.txt::$DATA", 404),
        (b"/a.txt.", 404),
        (b"/a.txt%20", 404),
        (b"http://evil/../../secret.txt", 404),
        (b"http://evil/%2e%2e/secret.txt", 404),
        (b"//../secret.txt", 404),
        (b"//%2e%2e/secret.txt", 404),
        (b"/\\../secret.txt", 404),
        (absolute.as_bytes(), 404),
        (b"/sub/../../secret.txt", 404),
        (b"/sub/%2e%2e/%2e%2e/secret.txt", 404),
        (b"/a.txt/../../secret.txt", 404),
        (b"/.../secret.txt", 404),
        (b"/..;/secret.txt", 404),
        (b"/%2e%2e;/secret.txt", 404),
        // hyper refuses these before any layer runs.
        (b"../secret.txt", 400),
        (b"file:///etc/passwd", 400),
    ];
    for &(target, status) in cases {
        let request = get(target);
        let res = check(&server, &fx, &request, &[status]);
        let text = res.text();
        assert!(!text.contains("secret"), "{} → {text}", shown(&request));
        if status == 404 {
            assert!(text.contains("File not found"), "{}", shown(&request));
        }
    }
    // `..` is resolved without climbing above the root, as Python does.
    let res = check(&server, &fx, &get(b"/../a.txt"), &[200]);
    assert_eq!(res.body, b"alpha\n");
    assert_alive(&server);
}

/// `--symlinks follow` (the default) follows links out of the root as Python does; that is
/// the documented default, pinned here so a change is deliberate.
#[test]
fn symlinks_are_followed_by_default_as_python() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    for target in [&b"/abs-secret"[..], b"/rel-secret", b"/outdir/secret.txt"] {
        let raw = server.raw(&get(target));
        let res = Response::parse(&raw);
        assert_eq!(res.status, 200, "{}", shown(target));
        assert!(contains(&res.body, SECRET.as_bytes()), "{}", shown(target));
    }
    assert_alive(&server);
}

/// `--symlinks within`: a link resolving outside the root is 404 however it is reached;
/// relative links staying inside work.
#[test]
fn symlinks_within_confine_every_path_to_the_root() {
    let fx = Fixture::new();
    let server = fx.serve(&["--symlinks", "within"]);
    for target in [
        &b"/abs-secret"[..],
        b"/rel-secret",
        b"/outdir/secret.txt",
        b"/outdir/",
        b"/outdir",
        b"/outdir/root/a.txt",
        b"/sub/esc",
        b"/%61bs-secret",
        b"/sub/../rel-secret",
        b"/outdir%2fsecret.txt",
        b"/zero",
    ] {
        check(&server, &fx, &get(target), &[404]);
    }
    for target in [&b"/inlink"[..], b"/sub/up", b"/sub/./up"] {
        let res = check(&server, &fx, &get(target), &[200]);
        assert_eq!(res.body, b"alpha\n", "{}", shown(target));
    }
    assert_alive(&server);
}

/// `--symlinks never`: no link is followed, even one staying inside, and none is listed.
#[test]
fn symlinks_never_refuses_and_hides_every_link() {
    let fx = Fixture::new();
    let server = fx.serve(&["--symlinks", "never"]);
    for target in [
        &b"/abs-secret"[..],
        b"/rel-secret",
        b"/outdir/secret.txt",
        b"/outdir/",
        b"/sub/esc",
        b"/inlink",
        b"/sub/up",
        b"/zero",
        b"/loop",
    ] {
        check(&server, &fx, &get(target), &[404]);
    }
    for (dir, links) in [
        (
            &b"/"[..],
            &[
                "inlink",
                "abs-secret",
                "rel-secret",
                "outdir",
                "zero",
                "loop",
            ][..],
        ),
        (b"/sub/", &["up", "esc"][..]),
    ] {
        let res = check(&server, &fx, &get(dir), &[200]);
        let entries = res.listing_entries();
        assert!(!entries.is_empty());
        for entry in &entries {
            assert!(!entry.contains('@'), "a link is listed: {entry}");
            for link in links {
                assert!(
                    !entry.contains(&format!("\"{link}")),
                    "{link} listed: {entry}"
                );
            }
        }
    }
    assert_alive(&server);
}

/// `--hide-dotfiles`: dot-files are neither served (in any spelling, any method) nor listed.
#[test]
fn hidden_files_are_neither_served_nor_listed() {
    let fx = Fixture::new();
    let server = fx.serve(&["--hide-dotfiles"]);
    for request in [
        get(b"/.env"),
        get(b"/.git/config"),
        get(b"/%2eenv"),
        get(b"/%2Eenv"),
        get(b"/.%65nv"),
        get(b"/sub/../.env"),
        get(b"/./.env"),
        get(b"//.env"),
        get(b"/.git/"),
        get(b"/.git"),
        get(b"/.git%2fconfig"),
        get(b"/%2egit/config"),
        get(b"/sub/.hidden"),
        get(b"/sub/%2ehidden"),
        get(b"/.env/"),
        req(b"HEAD", b"/.env", b""),
        req(b"GET", b"/.env", b"Range: bytes=0-3\r\n"),
        req(b"GET", b"/.env", b"If-None-Match: *\r\n"),
    ] {
        let res = check(&server, &fx, &request, &[404]);
        assert_no_dotfile(&res.raw, &shown(&request));
    }
    for dir in [&b"/"[..], b"/sub/", b"/%2e/"] {
        let res = check(&server, &fx, &get(dir), &[200]);
        assert!(!res.listing_entries().is_empty());
        assert!(
            !res.text().contains("href=\"."),
            "a dot entry is listed: {}",
            res.text()
        );
    }
    assert_alive(&server);
}

/// Without `--hide-dotfiles`, dot-files are served and listed, as Python does.
#[test]
fn dotfiles_are_served_without_the_flag_as_python() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    for (target, marker) in [
        (&b"/.env"[..], DOTENV),
        (b"/.git/config", GITCONFIG),
        (b"/%2eenv", DOTENV),
        (b"/sub/.hidden", HIDDEN),
    ] {
        let res = check(&server, &fx, &get(target), &[200]);
        assert_eq!(res.text(), format!("{marker}\n"));
    }
    let res = check(&server, &fx, &get(b"/"), &[200]);
    assert!(res.text().contains("<a href=\".env\">.env</a>"));
    assert_alive(&server);
}

/// FIFOs, sockets, devices and symlink loops answer 404 at once; nothing is ever read
/// from them (a FIFO would block, `/dev/zero` would stream forever).
#[test]
fn special_files_are_refused_at_once() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    for request in [
        get(b"/fifo"),
        req(b"HEAD", b"/fifo", b""),
        req(b"GET", b"/fifo", b"Range: bytes=0-10\r\n"),
        get(b"/fifodir/index.html"),
        get(b"/zero"),
        req(b"GET", b"/zero", b"Range: bytes=0-10\r\n"),
        get(b"/sock"),
        get(b"/loop"),
        get(b"/loop/x"),
    ] {
        let start = Instant::now();
        let res = check(&server, &fx, &request, &[404]);
        assert!(
            start.elapsed() < PROMPT,
            "{} took too long",
            shown(&request)
        );
        assert!(res.raw.len() < 4096, "{} streamed", shown(&request));
    }
    // A FIFO named index.html is not an index: the directory is listed.
    let start = Instant::now();
    let res = check(&server, &fx, &get(b"/fifodir/"), &[200]);
    assert!(start.elapsed() < PROMPT);
    assert!(res.text().contains("Directory listing for /fifodir/"));
    assert_alive(&server);
}

/// Hostile names are escaped in listing text and percent-encoded in hrefs, each href
/// reaches its file, and the reflected directory path in the title is escaped.
#[test]
fn listings_escape_every_name_and_path() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let res = check(&server, &fx, &get(b"/names/"), &[200]);
    let html = res.text();
    for markup in ["<script", "<img", "<b>"] {
        assert!(!html.contains(markup), "{markup} unescaped in {html}");
    }
    assert!(html.contains("&lt;script&gt;alert(1)&lt;.txt"), "{html}");
    assert!(html.contains("a&amp;b&amp;amp;.txt"), "{html}");
    let entries = res.listing_entries();
    assert_eq!(entries.len(), 5, "{entries:?}");
    for entry in &entries {
        let href = entry
            .split("href=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap();
        assert!(
            href.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"%-._~/()".contains(&b)),
            "unencoded character in href {href:?}"
        );
        let target = format!("/names/{href}");
        let got = check(&server, &fx, &get(target.as_bytes()), &[200]);
        if !href.ends_with('/') {
            assert_eq!(got.body, b"hostile\n", "{target}");
        }
    }
    let res = check(
        &server,
        &fx,
        &get(b"/names/%3Cb%3E%22dir%22%26%27/"),
        &[200],
    );
    let html = res.text();
    assert!(
        html.contains("<title>Directory listing for /names/&lt;b&gt;"),
        "{html}"
    );
    assert!(!html.contains("<b>"), "{html}");
    assert_alive(&server);
}

/// Reflected request data in error pages is escaped; methods that are not tokens never
/// reach a layer.
#[test]
fn error_pages_escape_what_they_reflect() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    // `&` and `'` are token characters: the method reaches Python's 501 page, escaped.
    let res = check(&server, &fx, &req(b"A&B'C", b"/a.txt", b""), &[501]);
    assert!(
        res.text().contains("Unsupported method ('A&amp;B"),
        "{}",
        res.text()
    );
    assert!(!res.text().contains("A&B"));
    // `<` is not: hyper answers 400 before any layer runs.
    for method in [&b"<x>"[..], b"GET<script>", b"G\"T"] {
        let res = check(&server, &fx, &req(method, b"/a.txt", b""), &[400]);
        assert!(res.body.is_empty());
    }
    for request in [
        req(
            b"POST",
            b"/%3Cscript%3Ealert(1)%3C/script%3E",
            b"Content-Length: 0\r\n",
        ),
        get(b"/%3Cscript%3Ealert(1)%3C/script%3E"),
        get(b"/%22%3E%3Cimg%20src=x%20onerror=alert(1)%3E"),
    ] {
        let res = check(&server, &fx, &request, &[404, 501]);
        assert!(!res.text().contains("<script"), "{}", res.text());
        assert!(!res.text().contains("<img"), "{}", res.text());
    }
    assert_alive(&server);
}

/// A directory whose name holds CR LF gets its redirect with the bytes still
/// percent-encoded: no raw CR or LF, no injected header; redirects never leave the host.
#[test]
fn no_cr_or_lf_reaches_a_response_header() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    for (target, location) in [
        (
            &b"/d%0d%0aSet-Cookie:%20x=1"[..],
            "/d%0d%0aSet-Cookie:%20x=1/",
        ),
        (
            b"/d%0D%0ASet-Cookie:%20x=1?%0d%0aX-Injected:%201",
            "/d%0D%0ASet-Cookie:%20x=1/?%0d%0aX-Injected:%201",
        ),
        (
            b"/sub?%0d%0aSet-Cookie:%20x=1",
            "/sub/?%0d%0aSet-Cookie:%20x=1",
        ),
        (b"//evil.example/%2e%2e/sub", "/evil.example/%2e%2e/sub/"),
        (b"/\\evil.example/../sub", "/evil.example/../sub/"),
        (b"http://evil.example/sub", "/sub/"),
    ] {
        let request = get(target);
        let res = check(&server, &fx, &request, &[301]);
        let head_end = res.raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = &res.raw[..head_end];
        let got = res.header("location").unwrap();
        assert_eq!(got, location, "{}", shown(&request));
        assert!(!got.contains(['\r', '\n']));
        assert!(!got.starts_with("//") && !got.starts_with("/\\"), "{got}");
        for (name, _) in &res.headers {
            assert!(
                name != "set-cookie" && name != "x-injected",
                "header injected by {}",
                shown(&request)
            );
        }
        assert!(!contains(head, b"\nSet-Cookie") && !contains(head, b"\nX-Injected"));
        // Where the redirect points is the directory itself.
        if target.starts_with(b"/d") {
            let res = check(&server, &fx, &get(location.as_bytes()), &[200]);
            assert!(res.text().contains("Directory listing for /d"));
        }
    }
    assert_alive(&server);
}

/// No request can forge an access-log line or put a raw control byte on the terminal:
/// encoded LF/CR/ESC in the target are escaped; raw ones are refused by the parser.
#[test]
fn no_request_can_forge_a_log_line() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let forged = b"/%0a127.0.0.1%20-%20-%20[forged]%20%22GET%20/%20HTTP/1.1%22%20200%20-";
    for (request, status) in [
        (get(forged), 404),
        (get(b"/%0d%0a127.0.0.1%20-%20-%20[forged]"), 404),
        (get(b"/%1b[2J%1b]0;pwned%07"), 404),
        (get(b"/sub/%0a127.0.0.1"), 404),
        (get(b"/\r127.0.0.1 - - [forged]"), 400),
        (get(b"/a\n127.0.0.1 - - [forged]"), 400),
        (get(b"/\x1b[31mred"), 400),
        (req(b"GET", b"/a.txt", b"User-Agent: \x1b[2J\r\n"), 400),
        (
            req(
                b"GET",
                b"/a.txt",
                b"X-Forged: a\r127.0.0.1 - - [forged]\r\n",
            ),
            400,
        ),
        (
            req(b"GET", b"/a.txt", b"Referer: x\n127.0.0.1 - - [forged]\r\n"),
            400,
        ),
        (req(b"A&B'C", b"/%0a[forged]", b""), 501),
    ] {
        check(&server, &fx, &request, &[status]);
    }
    check(&server, &fx, &get(b"/a.txt?log-end"), &[200]);
    assert!(server.wait_for_stderr("\"GET /a.txt?log-end HTTP/1.1\" 200 -"));
    let log = server.stderr();
    assert!(!log.contains('\x1b'), "raw ESC in the log: {log:?}");
    assert!(!log.contains('\r'), "raw CR in the log: {log:?}");
    for line in log.lines() {
        assert!(
            line.starts_with("127.0.0.1 - - [") || line.starts_with("httpserve:"),
            "forged or foreign log line {line:?} in {log:?}"
        );
        assert!(!line.starts_with("127.0.0.1 - - [forged"), "{line:?}");
    }
    assert!(
        log.contains("[forged]"),
        "the attempt is logged, escaped: {log}"
    );
    assert_alive(&server);
}

fn etag_of(server: &Server) -> String {
    let res = Response::parse(&server.raw(&req(b"HEAD", b"/a.txt", b"")));
    res.header("etag").unwrap().to_owned()
}

/// (Range value, allowed statuses, body of a 200/206, Content-Range of a 206)
type RangeCase = (String, &'static [u16], &'static [u8], Option<&'static str>);

/// Hostile `Range` values get a bounded, RFC 9110 §14 answer: several ranges → the whole
/// file; past-the-end starts and `-0` → 416; other units ignored.
#[test]
fn hostile_ranges_get_bounded_answers() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let overlapping: String = (0..500).map(|i| format!("0-{i},")).collect();
    let many_whole: String = (0..300).map(|_| "0-,").collect();
    let range = |value: &str| req(b"GET", b"/a.txt", format!("Range: {value}\r\n").as_bytes());
    let cases: Vec<RangeCase> = vec![
        (
            format!("bytes={}", overlapping.trim_end_matches(',')),
            &[200],
            b"alpha\n",
            None,
        ),
        (
            format!("bytes={}", many_whole.trim_end_matches(',')),
            &[200],
            b"alpha\n",
            None,
        ),
        ("bytes=0-1,1-2".to_owned(), &[200], b"alpha\n", None),
        ("bytes=0-0,-1".to_owned(), &[200], b"alpha\n", None),
        (
            "bytes=99999999999999999999999-".to_owned(),
            &[416],
            b"",
            None,
        ),
        (
            "bytes=18446744073709551615-18446744073709551615".to_owned(),
            &[416],
            b"",
            None,
        ),
        ("bytes=18446744073709551614-".to_owned(), &[416], b"", None),
        (
            "bytes=0-18446744073709551615".to_owned(),
            &[206],
            b"alpha\n",
            Some("bytes 0-5/6"),
        ),
        ("bytes=6-".to_owned(), &[416], b"", None),
        ("bytes=5-".to_owned(), &[206], b"\n", Some("bytes 5-5/6")),
        ("bytes=-0".to_owned(), &[416], b"", None),
        // Invalid ranges-specifiers: a server MAY ignore or reject them (§14.1.1).
        ("bytes=3-1".to_owned(), &[200, 416], b"alpha\n", None),
        ("bytes=--1".to_owned(), &[200, 416], b"alpha\n", None),
        ("bytes=1-2-3".to_owned(), &[200, 416], b"alpha\n", None),
        ("bytes=abc".to_owned(), &[200, 416], b"alpha\n", None),
        ("bytes=".to_owned(), &[200, 416], b"alpha\n", None),
        ("items=0-1".to_owned(), &[200], b"alpha\n", None),
        ("bytes 0-1".to_owned(), &[200], b"alpha\n", None),
    ];
    for (value, allowed, body, content_range) in cases {
        let request = range(&value);
        let res = check(&server, &fx, &request, allowed);
        match res.status {
            200 => {
                assert_eq!(res.body, body, "Range: {value}");
                assert_eq!(res.header("content-range"), None, "Range: {value}");
            }
            206 => {
                assert_eq!(res.body, body, "Range: {value}");
                assert_eq!(res.header("content-range"), content_range, "Range: {value}");
            }
            _ => {
                assert!(res.text().contains("Error code: 416"), "Range: {value}");
                assert_eq!(res.header("content-range"), Some("bytes */6"));
            }
        }
    }
    assert_alive(&server);
}

/// RFC 9110 §14.1.2: a suffix longer than the file, or a last-pos past the end (even past
/// u64), selects the whole file — a 206 (or a 200 if the server ignores Range), never a 416.
#[test]
fn oversized_suffixes_and_last_positions_select_the_whole_file() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    for value in [
        "bytes=-100",
        "bytes=-18446744073709551615",
        "bytes=-99999999999999999999999",
        "bytes=0-99999999999999999999999",
    ] {
        let request = req(b"GET", b"/a.txt", format!("Range: {value}\r\n").as_bytes());
        let res = check(&server, &fx, &request, &[200, 206]);
        assert_eq!(res.body, b"alpha\n", "Range: {value}");
        if res.status == 206 {
            assert_eq!(res.header("content-range"), Some("bytes 0-5/6"));
        }
    }
    assert_alive(&server);
}

/// Absurd dates and huge tag lists in preconditions: invalid dates are ignored (§13.1.3,
/// §13.1.4), thousands of tags are compared in bounded time.
#[test]
fn hostile_conditionals_get_bounded_answers() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let etag = etag_of(&server);
    let tags: Vec<String> = (0..5000).map(|i| format!("\"t{i}\"")).collect();
    let none_match = tags.join(", ");
    let last_match = format!("{none_match}, {etag}");
    let cases: Vec<(String, &[u16])> = vec![
        (
            "If-Modified-Since: Fri, 31 Dec 99999 23:59:59 GMT".into(),
            &[200],
        ),
        (
            "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT".into(),
            &[200],
        ),
        (
            "If-Modified-Since: Thu, 01 Jan -1970 00:00:00 GMT".into(),
            &[200],
        ),
        (
            "If-Modified-Since: Thu, 01 Jan 99999999999999999999999 00:00:00 GMT".into(),
            &[200],
        ),
        ("If-Modified-Since: -1".into(), &[200]),
        ("If-Modified-Since: 18446744073709551616".into(), &[200]),
        (
            "If-Modified-Since: Fri, 31 Dec 9999 23:59:59 GMT".into(),
            &[200, 304],
        ),
        (
            "If-Unmodified-Since: Fri, 31 Dec 99999 23:59:59 GMT".into(),
            &[200],
        ),
        (
            "If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT".into(),
            &[412],
        ),
        (
            "If-Unmodified-Since: Thu, 01 Jan -1970 00:00:00 GMT".into(),
            &[200],
        ),
        (
            "If-Unmodified-Since: Thu, 01 Jan 99999999999999999999999 00:00:00 GMT".into(),
            &[200],
        ),
        (format!("If-None-Match: {none_match}"), &[200]),
        (format!("If-None-Match: {last_match}"), &[304]),
        (format!("If-Match: {none_match}"), &[412]),
        (format!("If-Match: {last_match}"), &[200]),
        ("If-Match: *".into(), &[200]),
        ("If-None-Match: *".into(), &[304]),
        ("If-Match: \"\"".into(), &[412]),
        ("If-None-Match: W/\"\"".into(), &[200]),
        // If-Range that does not match: the Range is ignored, the whole file is sent.
        (
            "If-Range: Thu, 01 Jan 1970 00:00:00 GMT\r\nRange: bytes=0-1".into(),
            &[200],
        ),
        ("If-Range: \"nope\"\r\nRange: bytes=0-1".into(), &[200]),
        ("If-Range: W/\"weak\"\r\nRange: bytes=0-1".into(), &[200]),
    ];
    for (header, allowed) in cases {
        let start = Instant::now();
        let request = req(b"GET", b"/a.txt", format!("{header}\r\n").as_bytes());
        let res = check(&server, &fx, &request, allowed);
        assert!(start.elapsed() < PROMPT, "{header:.80}");
        match res.status {
            200 => assert_eq!(res.body, b"alpha\n", "{header:.80}"),
            _ => assert!(res.raw.len() < 4096, "{header:.80}"),
        }
    }
    // A matching If-Range honours the Range.
    let request = req(
        b"GET",
        b"/a.txt",
        format!("If-Range: {etag}\r\nRange: bytes=0-1\r\n").as_bytes(),
    );
    let res = check(&server, &fx, &request, &[206]);
    assert_eq!(res.body, b"al");
    assert_alive(&server);
}

/// RFC 9110 §13.1.5: a Range is honoured only if the If-Range condition is true; a value
/// that is neither an entity tag nor an HTTP-date can never match (nginx, Apache and Go
/// all send the whole file).
#[test]
fn unparsable_if_range_never_yields_a_partial() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    for value in [
        "garbage",
        "Fri, 31 Dec 99999 23:59:59 GMT",
        "\"unterminated",
    ] {
        let request = req(
            b"GET",
            b"/a.txt",
            format!("If-Range: {value}\r\nRange: bytes=0-1\r\n").as_bytes(),
        );
        let res = check(&server, &fx, &request, &[200]);
        assert_eq!(res.body, b"alpha\n", "If-Range: {value}");
    }
    assert_alive(&server);
}

/// A request line over 65534 bytes → 414, more than `--max-headers` fields or more than
/// `--max-header-bytes` → 431; each closes the connection.
#[test]
fn request_line_and_header_limits() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let long_target = |len: usize| {
        let mut target = b"/".to_vec();
        target.resize(len, b'a');
        target
    };
    let headers = |n: usize| -> Vec<u8> {
        (0..n)
            .flat_map(|i| format!("X-H{i}: v\r\n").into_bytes())
            .collect()
    };
    // No `Connection: close`: the server must close on its own after a 414/431.
    let bare = |target: &[u8], extra: &[u8]| {
        [b"GET ", target, b" HTTP/1.1\r\nHost: x\r\n", extra, b"\r\n"].concat()
    };
    for (request, status) in [
        (bare(&long_target(70_000), b""), 414),
        (bare(&long_target(65_535), b""), 414),
        (bare(b"/a.txt", &headers(100)), 431),
        (bare(b"/a.txt", &headers(500)), 431),
    ] {
        let start = Instant::now();
        let res = check(&server, &fx, &request, &[status]);
        assert!(start.elapsed() < Duration::from_secs(5), "not closed");
        assert_eq!(res.header("connection"), Some("close"));
    }
    // 65534 bytes of target, and exactly 100 fields (Host, Connection and 98 more): fine.
    check(&server, &fx, &get(&long_target(65_534)), &[404]);
    let res = check(&server, &fx, &req(b"GET", b"/a.txt", &headers(98)), &[200]);
    assert_eq!(res.body, b"alpha\n");
    check(&server, &fx, &req(b"GET", b"/a.txt", &headers(99)), &[431]);
    assert_alive(&server);

    let small = fx.serve(&["--max-header-bytes", "8192", "--max-headers", "20"]);
    let big_value = format!("X-Big: {}\r\n", "v".repeat(9000));
    for (request, status) in [
        (bare(b"/a.txt", big_value.as_bytes()), 431),
        (bare(&long_target(9000), b""), 431),
        (bare(b"/a.txt", &headers(20)), 431),
    ] {
        let start = Instant::now();
        check(&small, &fx, &request, &[status]);
        assert!(start.elapsed() < Duration::from_secs(5), "not closed");
    }
    let res = check(&small, &fx, &req(b"GET", b"/a.txt", &headers(18)), &[200]);
    assert_eq!(res.body, b"alpha\n");
    assert_alive(&small);
}

/// Python reads each header line with `readline(65537)`: a line (name, `": "`, value, CRLF)
/// over 65,536 bytes is `431 Line too long`, even under `--max-header-bytes`; one of
/// exactly 65,536 bytes is fine. The answer is Python's page and closes the connection.
#[test]
fn a_header_line_over_64_kib_is_a_431_as_python() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let line = |len: usize| {
        let value = "v".repeat(len - "X-Foo: \r\n".len());
        format!("X-Foo: {value}\r\n").into_bytes()
    };
    let res = check(&server, &fx, &req(b"GET", b"/a.txt", &line(65_536)), &[200]);
    assert_eq!(res.body, b"alpha\n");
    for len in [65_537, 70_000] {
        // No `Connection: close` in the request: the server closes on its own.
        let request = [
            &b"GET /a.txt HTTP/1.1\r\nHost: x\r\n"[..],
            &line(len),
            b"\r\n",
        ]
        .concat();
        let start = Instant::now();
        let res = check(&server, &fx, &request, &[431]);
        assert!(start.elapsed() < Duration::from_secs(5), "not closed");
        assert_eq!(res.header("connection"), Some("close"));
        assert_eq!(res.header("content-type"), Some("text/html;charset=utf-8"));
        let page = res.text();
        assert!(page.contains("<p>Message: Line too long.</p>"), "{page}");
        assert!(
            page.contains(
                "<p>Error code explanation: 431 - got more than 65536 bytes when reading header line.</p>"
            ),
            "{page}"
        );
        // Python's page for this error is 355 bytes.
        assert_eq!(res.body.len(), 355);
    }
    // HEAD: the same status and length, no body.
    let res = check(
        &server,
        &fx,
        &req(b"HEAD", b"/a.txt", &line(65_537)),
        &[431],
    );
    assert_eq!(res.header("content-length"), Some("355"));
    assert!(res.body.is_empty());
    assert!(server.wait_for_stderr("code 431, message Line too long"));
    assert_alive(&server);
}

/// Conflicting or invalid framing (RFC 9112 §6): each request gets one answer and the
/// connection is closed, so the request smuggled behind it is never answered.
#[test]
fn smuggling_attempts_get_one_answer_and_a_closed_connection() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let smuggled = b"GET /.env HTTP/1.1\r\nHost: x\r\n\r\n";
    let cases: &[(&[u8], &[u16])] = &[
        // CL + TE: §6.1 lets the server reject it or use Transfer-Encoding alone, and it
        // MUST close the connection afterwards (hyper does the latter).
        (
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            &[200, 400],
        ),
        (
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
            &[200, 400],
        ),
        (
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            &[400],
        ),
        (
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\n",
            &[400],
        ),
        (
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            &[400],
        ),
        (
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
            &[400],
        ),
        (
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\n",
            &[400],
        ),
        (
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            &[400],
        ),
        (
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            &[400],
        ),
        (
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
            &[400],
        ),
        (
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n",
            &[400],
        ),
        (
            b"GET /a.txt HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            &[400],
        ),
        // A chunk size past u64: the head is answered, the body fails, the connection ends.
        (
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n",
            &[200, 400],
        ),
    ];
    for &(head, allowed) in cases {
        let request = [head, smuggled].concat();
        let start = Instant::now();
        let res = check(&server, &fx, &request, allowed);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "connection left open after {}",
            shown(&request)
        );
        let answers = res.raw.windows(9).filter(|w| w == b"HTTP/1.1 ").count();
        assert_eq!(answers, 1, "smuggled request answered: {}", shown(&request));
        assert_no_dotfile(&res.raw, &shown(&request));
    }
    assert_alive(&server);
}

/// Odd request syntax: obs-fold and NUL are refused, a bare LF is tolerated (RFC 9112
/// §2.2, §5.2), HTTP/0.9 and HTTP/2 lines get 400 and no body.
#[test]
fn malformed_request_syntax_gets_clear_answers() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let cases: &[(&[u8], u16)] = &[
        (
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\nConnection: close\r\n\r\n",
            400,
        ),
        (b"GET /a.txt HTTP/1.1\nHost: x\nConnection: close\n\n", 200),
        (b"GET /a.txt\r\n", 400),
        (b"GET /a.txt\r\n\r\n", 400),
        (
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\x00: b\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /a\x00.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /a.txt HTTP/2.0\r\nHost: x\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /a.txt HTTP/1.2\r\nHost: x\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET  /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /a.txt  HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /a.txt HTTP/1.1 \r\nHost: x\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /a b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            200,
        ),
    ];
    for &(request, status) in cases {
        let res = check(&server, &fx, request, &[status]);
        if status == 200 {
            assert_eq!(res.body, b"alpha\n", "{}", shown(request));
        } else {
            assert!(!contains(&res.body, b"alpha"), "{}", shown(request));
        }
    }
    // The HTTP/2 preface: hyper closes, with a 400 or nothing.
    let raw = server.raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    assert!(
        raw.is_empty() || raw.starts_with(b"HTTP/1.1 400 "),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    assert_alive(&server);
}

/// RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
/// HTTP/1.1 request message that lacks a Host header field and to any request message that
/// contains more than one Host header field line or a Host header field with an invalid
/// field value."
#[test]
fn host_must_be_present_once_and_valid() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    for request in [
        &b"GET /a.txt HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nHost: y\r\nConnection: close\r\n\r\n",
        b"GET /a.txt HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n",
        b"GET /a.txt HTTP/1.1\r\nHost: x/y\r\nConnection: close\r\n\r\n",
    ] {
        check(&server, &fx, request, &[400]);
    }
    // HTTP/1.0 may omit it.
    check(&server, &fx, b"GET /a.txt HTTP/1.0\r\n\r\n", &[200]);
    assert_alive(&server);
}

/// A client that sends its request and then shuts down its sending side (`nc -N`,
/// `shutdown(SHUT_WR)`) still gets the whole answer, as from Python: for a file, for a
/// listing (rendered off the connection's task) and for a CGI script, with and without
/// `Connection: close`, and for two pipelined requests.
#[test]
fn half_closed_clients_get_their_answers() {
    use std::io::{Read, Write};
    let fx = Fixture::new();
    let server = fx.serve(&["--cgi"]);
    let half_closed = |request: &[u8]| {
        let mut stream = server.connect();
        stream.write_all(request).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        // The answer, then the server's close (a read timeout would fail here).
        let mut out = Vec::new();
        stream.read_to_end(&mut out).unwrap();
        out
    };
    for (target, marker) in [
        (&b"/a.txt"[..], &b"alpha\n"[..]),
        (b"/sub/", b"<a href=\"b.txt\">b.txt</a>"),
        (b"/cgi-bin/h/env", b"REQUEST_METHOD=GET"),
    ] {
        for request in [
            get(target),
            [b"GET ", target, b" HTTP/1.1\r\nHost: x\r\n\r\n"].concat(),
            [b"GET ", target, b" HTTP/1.0\r\n\r\n"].concat(),
        ] {
            let raw = half_closed(&request);
            let what = shown(&request);
            assert!(!raw.is_empty(), "no answer to a half-closed {what}");
            let res = Response::parse(&raw);
            assert_eq!(res.status, 200, "{what}");
            assert!(contains(&res.body, marker), "{what}: {}", res.text());
        }
    }
    // A POST whose body is complete before the half-close: the script reads all of it.
    let raw =
        half_closed(b"POST /cgi-bin/h/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    let res = Response::parse(&raw);
    assert_eq!(res.status, 200);
    assert!(res.text().starts_with("len=5\n"), "{}", res.text());
    // Two pipelined requests, then the half-close: both answered.
    let one = [&b"GET /sub/ HTTP/1.1\r\nHost: x\r\n\r\n"[..]].concat();
    let raw = half_closed(
        &[
            one.as_slice(),
            b"GET /cgi-bin/h/env HTTP/1.1\r\nHost: x\r\n\r\n",
        ]
        .concat(),
    );
    let text = String::from_utf8_lossy(&raw);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert!(text.contains("REQUEST_METHOD=GET"), "{text}");
    assert_alive(&server);
}

/// CGI: traversal out of the script directory, hidden scripts, links out of the root,
/// httpoxy, `_` headers, argv from the query, every spelling of a script path (never
/// its bytes), reflected script names escaped and logged escaped.
#[test]
fn cgi_attacks() {
    let fx = Fixture::new();
    let server = fx.serve(&["--cgi", "--hide-dotfiles", "--symlinks", "within"]);
    for target in [
        &b"/cgi-bin/../secret.txt"[..],
        b"/cgi-bin/../../secret.txt",
        b"/cgi-bin/..%2f..%2fsecret.txt",
        b"/cgi-bin%2f..%2f..%2fsecret.txt",
        b"/cgi-bin/%2e%2e/%2e%2e/secret.txt",
        b"/cgi-bin/h/../../../secret.txt",
        b"/cgi-bin/h/env/%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt",
        b"/htbin/..%5c..%5csecret.txt",
        b"/cgi-bin/.hidden-script/env",
        b"/cgi-bin/%2ehidden-script/env",
        b"/htbin/../cgi-bin/.hidden-script/env",
        b"/cgi-bin/outlink/env",
        b"/CGI-BIN/h/env",
    ] {
        let request = get(target);
        let res = check(&server, &fx, &request, &[404]);
        assert!(!res.text().contains("ARGC="), "ran: {}", shown(&request));
    }
    // Every spelling that reaches the script runs it; none serves its bytes.
    for target in [
        &b"/cgi-bin/h/env"[..],
        b"/cgi-bin%2fh/env",
        b"/cgi-bin/./h/env",
        b"//cgi-bin/h/env",
        b"/cgi-bin//h/env",
        b"/%63gi-bin/h/env",
        b"/x/..%2fcgi-bin/h/env",
        b"/htbin/../cgi-bin/h/env",
        b"http://evil/cgi-bin/h/env",
    ] {
        let res = check(&server, &fx, &get(target), &[200]);
        assert!(res.body.starts_with(b"ARGC=1\n"), "{}", shown(target));
        assert!(!contains(&res.raw, b"\x7fELF"), "script bytes served");
        assert_eq!(
            var(&env_of(&res), "SCRIPT_NAME"),
            Some("/cgi-bin/h"),
            "{}",
            shown(target)
        );
    }
    // httpoxy and `_` headers; no argv from the query (CVE-2012-1823 class).
    let res = check(
        &server,
        &fx,
        &req(
            b"GET",
            b"/cgi-bin/h/env?-s",
            b"Proxy: http://evil.example:8080\r\nX_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 1.2.3.4\r\n",
        ),
        &[200],
    );
    let env = env_of(&res);
    assert_eq!(var(&env, "HTTP_PROXY"), None, "{env:?}");
    assert!(!res.text().contains("evil.example"));
    assert!(!res.text().contains("6.6.6.6"));
    assert_eq!(var(&env, "HTTP_X_FORWARDED_FOR"), Some("1.2.3.4"));
    assert_eq!(var(&env, "ARGC"), Some("1"));
    assert_eq!(var(&env, "QUERY_STRING"), Some("-s"));
    let res = check(
        &server,
        &fx,
        &get(b"/cgi-bin/h/env?-d+allow_url_include%3d1+-d+auto_prepend_file%3dphp://input"),
        &[200],
    );
    assert_eq!(var(&env_of(&res), "ARGC"), Some("1"));
    // Reflected script names are escaped in the page and in the log.
    let res = check(
        &server,
        &fx,
        &get(b"/cgi-bin/%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
        &[404],
    );
    assert!(!res.text().contains("<script"), "{}", res.text());
    assert!(res.text().contains("&lt;script&gt;"), "{}", res.text());
    check(
        &server,
        &fx,
        &get(b"/cgi-bin/%0a127.0.0.1%20-%20-%20[forged]%1b[2J"),
        &[404],
    );
    check(&server, &fx, &get(b"/a.txt?log-end"), &[200]);
    assert!(server.wait_for_stderr("\"GET /a.txt?log-end HTTP/1.1\" 200 -"));
    let log = server.stderr();
    assert!(!log.contains('\x1b'), "raw ESC in the log: {log:?}");
    for line in log.lines() {
        assert!(
            line.starts_with("127.0.0.1 - - [") || line.starts_with("httpserve:"),
            "forged or foreign log line {line:?}"
        );
    }
    assert_alive(&server);
}

/// NUL in the path is a 400 everywhere (README: "NUL in the path → 400"), CGI included: a
/// NUL cannot name a script nor be passed in `PATH_INFO`.
#[test]
fn nul_in_a_cgi_path_is_a_400() {
    let fx = Fixture::new();
    let server = fx.serve(&["--cgi"]);
    for target in [
        &b"/cgi-bin/h%00/env"[..],
        b"/cgi-bin/h/env%00",
        b"/cgi-bin/%00",
        b"/htbin/x%00y",
    ] {
        let res = check(&server, &fx, &get(target), &[400]);
        assert!(!res.raw.contains(&0), "raw NUL in the answer");
    }
    assert_alive(&server);
}
