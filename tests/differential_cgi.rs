//! Differential test for `--cgi`: one fixture directory served by Python's
//! `python3 -m http.server --cgi` and by `httpserve --cgi`, the same requests sent to
//! both, the responses compared where Python's behaviour is the one to keep: script
//! output (status, `Content-Type`, body), the CGI meta-variables a script sees, the
//! request body on stdin, the error pages (byte for byte), redirects, and which paths
//! are CGI at all.
//!
//! Where httpserve deliberately differs (the CGI rows of the README's "Differences from
//! Python" table, and the `httpserve_cgi` crate docs), the difference is allowed narrowly,
//! in one place, with a comment naming it, and httpserve's side is asserted to be its
//! documented value:
//!
//! * status line: Python always answers `200 Script output follows` and passes the
//!   script's `Status:`/`Location:` lines through as headers; httpserve honours them;
//! * framing: Python sends no `Content-Length` and closes; httpserve frames the body
//!   (length or chunked) and keeps the connection alive;
//! * environment: Python hands scripts its whole environment, httpserve only `PATH`;
//! * `HTTP_*`: Python sets only `HTTP_ACCEPT`, `HTTP_USER_AGENT`, `HTTP_REFERER` and
//!   `HTTP_COOKIE` (empty when absent), httpserve one per request header;
//! * Python's empty defaults (`CONTENT_TYPE=text/plain`, `CONTENT_LENGTH=`,
//!   `REMOTE_HOST=`) are unset in httpserve; httpserve adds `REMOTE_PORT`,
//!   `REQUEST_URI`, `SCRIPT_FILENAME`;
//! * argv: Python passes the query as `argv[1]` when it has no `=`; httpserve never;
//! * `SERVER_SOFTWARE`, `SERVER_PROTOCOL`, `SERVER_NAME`, `SERVER_PORT`: each server's own;
//! * `PATH_INFO`: Python percent-decodes it twice, and turns a decoded `%3F` into the
//!   query separator; httpserve decodes once and keeps `%3F` in the path;
//! * methods: Python runs scripts for `GET`, `HEAD` and `POST` only, and sends the whole
//!   output for `HEAD`; httpserve passes every method on and sends no body for `HEAD`.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Response, Server};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Set in both servers' environment: Python leaks it to scripts, httpserve must not.
const LEAK_VAR: &str = "HTTPSERVE_DIFF_CGI_PROBE";
const LEAK_VALUE: &str = "leaked-from-the-server";

const SH_SCRIPT: &str = r#"#!/bin/sh
printf 'Content-Type: text/plain\n\nhello from sh\n'
"#;
const SH_OUTPUT: &str = "hello from sh\n";

const PY_SCRIPT: &str = r#"#!/usr/bin/env python3
import sys
sys.stdout.write("Content-Type: text/plain; charset=utf-8\n\nhello from python\n")
"#;
const PY_OUTPUT: &str = "hello from python\n";

const NESTED_SCRIPT: &str = r#"#!/bin/sh
printf 'Content-Type: text/plain\n\nnested SCRIPT_NAME=%s PATH_INFO=%s QUERY_STRING=%s\n' "$SCRIPT_NAME" "$PATH_INFO" "$QUERY_STRING"
"#;

const HTBIN_SCRIPT: &str = r#"#!/bin/sh
printf 'Content-Type: text/html; charset=utf-8\n\n<p>htbin %s</p>\n' "$PATH_INFO"
"#;

const ROOT_PLAIN: &str = "root plain\n";

fn write(path: &Path, content: &str, mode: u32) {
    fs::write(path, content).expect("build the fixture");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("build the fixture");
}

fn mkdir(path: &Path) {
    fs::create_dir(path).expect("build the fixture");
    // Both servers run scripts as `nobody` when root: every directory must be traversable.
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("build the fixture");
}

/// ```text
/// plain.txt
/// nested/cgi-bin/readme.txt      (not a CGI directory: only top-level ones are)
/// cgi-bin/cgi-helper  hello.sh  hello.py  plain.txt (0644)  sub/script
/// htbin/ht.sh  htbin/cgi-helper
/// ```
fn build_fixture(root: &Path) {
    mkdir(root);
    write(&root.join("plain.txt"), ROOT_PLAIN, 0o644);
    mkdir(&root.join("nested"));
    mkdir(&root.join("nested/cgi-bin"));
    write(
        &root.join("nested/cgi-bin/readme.txt"),
        "static, not a script\n",
        0o644,
    );
    let cgi = root.join("cgi-bin");
    mkdir(&cgi);
    mkdir(&cgi.join("sub"));
    let helper = common::cgi_helper();
    fs::copy(&helper, cgi.join("cgi-helper")).expect("build the fixture");
    fs::set_permissions(cgi.join("cgi-helper"), fs::Permissions::from_mode(0o755))
        .expect("build the fixture");
    write(&cgi.join("hello.sh"), SH_SCRIPT, 0o755);
    write(&cgi.join("hello.py"), PY_SCRIPT, 0o755);
    write(&cgi.join("plain.txt"), "not a script\n", 0o644);
    write(&cgi.join("sub/script"), NESTED_SCRIPT, 0o755);
    let htbin = root.join("htbin");
    mkdir(&htbin);
    write(&htbin.join("ht.sh"), HTBIN_SCRIPT, 0o755);
    fs::copy(&helper, htbin.join("cgi-helper")).expect("build the fixture");
    fs::set_permissions(htbin.join("cgi-helper"), fs::Permissions::from_mode(0o755))
        .expect("build the fixture");
}

/// Both servers on one fixture, and the running tally.
struct Diff {
    python: Server,
    ours: Server,
    root: PathBuf,
    /// Requests sent to both servers and compared.
    compared: usize,
    failures: Vec<String>,
    /// Which allowed differences were needed (each must be, so the list cannot go stale).
    allowed: BTreeSet<&'static str>,
}

fn start() -> (tempfile::TempDir, Diff) {
    let dir = tempfile::tempdir().expect("fixture directory");
    // tempdir() makes it 0700; `nobody` must be able to reach the scripts.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("fixture");
    let root = dir.path().join("root");
    build_fixture(&root);

    let mut python = Command::new("python3");
    python
        .args(["-u", "-m", "http.server", "0", "-b", "127.0.0.1", "-d"])
        .arg(&root)
        .arg("--cgi");
    let mut ours = Command::new(common::binary());
    ours.args(["0", "-b", "127.0.0.1", "-d"])
        .arg(&root)
        .arg("--cgi");
    for cmd in [&mut python, &mut ours] {
        cmd.env(LEAK_VAR, LEAK_VALUE).current_dir(&root);
    }
    let diff = Diff {
        python: Server::spawn(python),
        ours: Server::spawn(ours),
        root,
        compared: 0,
        failures: Vec::new(),
        allowed: BTreeSet::new(),
    };
    let server = diff.python.get("/plain.txt");
    let server = server.header("server").unwrap_or_default();
    assert!(
        server.starts_with("SimpleHTTP/0.6 Python/3."),
        "python3 on PATH must be a Python 3 with --cgi (3.14 or older), found {server:?}"
    );
    (dir, diff)
}

/// A request: `Host: 127.0.0.1`, `Connection: close`, the extra headers, and for a
/// `POST` the body with its `Content-Length`.
#[derive(Debug, Clone, Copy)]
struct Req<'a> {
    method: &'a str,
    target: &'a str,
    headers: &'a [(&'a str, &'a str)],
    body: &'a [u8],
}

impl<'a> Req<'a> {
    fn get(target: &'a str) -> Self {
        Req {
            method: "GET",
            target,
            headers: &[],
            body: b"",
        }
    }

    fn post(target: &'a str, body: &'a [u8]) -> Self {
        Req {
            method: "POST",
            target,
            headers: &[],
            body,
        }
    }

    fn headers(self, headers: &'a [(&'a str, &'a str)]) -> Self {
        Req { headers, ..self }
    }

    fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    fn query(&self) -> &'a str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    fn bytes(&self) -> Vec<u8> {
        let mut raw = format!(
            "{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n",
            self.method, self.target
        );
        for (name, value) in self.headers {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        if self.method == "POST" {
            raw.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        raw.push_str("\r\n");
        let mut raw = raw.into_bytes();
        raw.extend_from_slice(self.body);
        raw
    }

    /// Sends the request on a new connection (`common` decodes a chunked body).
    fn send(&self, server: &Server) -> Response {
        Response::parse(&server.raw(&self.bytes()))
    }
}

/// What Python (the reference) is expected to answer, checked before the comparison so a
/// broken fixture cannot make both sides agree vacuously.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect<'a> {
    /// The script ran: Python's `200 Script output follows` with the script's own header
    /// lines and this body.
    Script(&'a str),
    /// A response of the server itself (error page, redirect, static file) with this
    /// status, compared header by header and byte for byte.
    Page(u16),
}

impl Diff {
    fn fail(&mut self, what: &str, req: &Req<'_>, py: &Response, us: &Response) {
        self.failures.push(format!(
            "{} {} {:?}: {what}\n--- python ---\n{}\n--- httpserve ---\n{}",
            req.method,
            req.target,
            req.headers,
            show(py),
            show(us)
        ));
    }

    /// Sends `req` to both servers, checks Python's answer against `expect`, and compares.
    fn check(&mut self, req: Req<'_>, expect: Expect<'_>) -> (Response, Response) {
        let py = req.send(&self.python);
        let us = req.send(&self.ours);
        self.compared += 1;
        match expect {
            Expect::Script(body) => {
                if !py
                    .raw
                    .starts_with(b"HTTP/1.0 200 Script output follows\r\n")
                    || py.body != body.as_bytes()
                {
                    self.fail("python did not run the script", &req, &py, &us);
                    return (py, us);
                }
                self.compare_script(&req, &py, &us);
            }
            Expect::Page(status) => {
                if py.status != status {
                    self.fail(
                        &format!("python answered {} (expected {status})", py.status),
                        &req,
                        &py,
                        &us,
                    );
                    return (py, us);
                }
                self.compare_page(&req, &py, &us);
            }
        }
        (py, us)
    }

    /// Script output: status (Python's is always 200 here: the scripts set none),
    /// Content-Type (the script's own, passed through by both) and body.
    fn compare_script(&mut self, req: &Req<'_>, py: &Response, us: &Response) {
        if us.status != 200 {
            self.fail("status differs", req, py, us);
        }
        if py.header("content-type") != us.header("content-type") {
            self.fail("content-type differs", req, py, us);
        }
        if py.body != us.body {
            self.fail("body differs", req, py, us);
        }
        self.check_framing(req, py, us);
    }

    /// Difference "framing": Python writes the script's output after its own status line
    /// and closes, with no Content-Length unless the script sent one; httpserve frames
    /// the body (the script's Content-Length, or chunked; `common` decodes it, so the raw
    /// response must end with the last chunk).
    fn check_framing(&mut self, req: &Req<'_>, py: &Response, us: &Response) {
        if py.header("content-length").is_none() {
            self.allowed
                .insert("framing: no Content-Length from Python");
        }
        let chunked =
            us.header("transfer-encoding") == Some("chunked") && us.raw.ends_with(b"\r\n0\r\n\r\n");
        let length_ok = us.header("content-length") == Some(us.body.len().to_string().as_str());
        if chunked == length_ok {
            self.fail(
                "httpserve's script response is neither length-framed nor chunked",
                req,
                py,
                us,
            );
        }
    }

    /// A page of the server itself: everything that describes the content must match.
    fn compare_page(&mut self, req: &Req<'_>, py: &Response, us: &Response) {
        if us.status != py.status {
            self.fail("status differs", req, py, us);
            return;
        }
        for name in [
            "content-type",
            "content-length",
            "location",
            "last-modified",
        ] {
            if py.header(name) != us.header(name) {
                self.fail(&format!("{name} differs"), req, py, us);
            }
        }
        if py.body != us.body {
            self.fail("body differs", req, py, us);
        }
    }

    /// Runs `/…/cgi-helper/env…` on both and compares the environments the script saw.
    /// `expect` are (variable, value) pairs Python must show (and so httpserve too).
    fn check_env(&mut self, req: Req<'_>, expect: &[(&str, &str)]) -> (Env, Env) {
        let py = req.send(&self.python);
        let us = req.send(&self.ours);
        self.compared += 1;
        let (py_env, us_env) = (env_of(&py), env_of(&us));
        if !py
            .raw
            .starts_with(b"HTTP/1.0 200 Script output follows\r\n")
            || !py_env.contains_key("GATEWAY_INTERFACE")
        {
            self.fail("python did not run the env script", &req, &py, &us);
            return (py_env, us_env);
        }
        if us.status != 200 || py.header("content-type") != us.header("content-type") {
            self.fail("status or content-type differs", &req, &py, &us);
        }
        for (name, value) in expect {
            if py_env.get(*name).map(String::as_str) != Some(value) {
                self.fail(&format!("python's {name} is not {value:?}"), &req, &py, &us);
            }
        }
        // The script's own Content-Length: each server passes it on, and it frames.
        for (side, res) in [("python", &py), ("httpserve", &us)] {
            if res.header("content-length") != Some(res.body.len().to_string().as_str()) {
                self.fail(
                    &format!("{side}'s Content-Length is not the script's body length"),
                    &req,
                    &py,
                    &us,
                );
            }
        }
        let problems = self.compare_env(&req, &py, &us, &py_env, &us_env);
        for problem in problems {
            self.fail(&problem, &req, &py, &us);
        }
        (py_env, us_env)
    }

    /// Every meta-variable must be equal unless one of the allowed differences covers it;
    /// then httpserve's value is checked against its documented one. Returns the problems.
    fn compare_env(
        &mut self,
        req: &Req<'_>,
        py: &Response,
        us: &Response,
        py_env: &Env,
        us_env: &Env,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let names: BTreeSet<&String> = py_env.keys().chain(us_env.keys()).collect();
        for name in names {
            if !is_meta_variable(name) {
                continue;
            }
            let p = py_env.get(name).map(String::as_str);
            let u = us_env.get(name).map(String::as_str);
            match self.allowed_env_difference(req, name, p, u, py, us) {
                Some(Ok(difference)) => {
                    self.allowed.insert(difference);
                }
                Some(Err(problem)) => problems.push(format!("{name}: {problem}")),
                None if p != u => {
                    problems.push(format!("{name} differs: python {p:?}, httpserve {u:?}"));
                }
                None => {}
            }
        }
        problems.extend(self.compare_non_meta(req, py_env, us_env));
        problems
    }

    /// The allowed differences among meta-variables. `None`: not covered, compare
    /// strictly. `Some(Ok(name))`: covered, and httpserve has its documented value.
    /// `Some(Err(why))`: covered, but a side does not look as documented.
    fn allowed_env_difference(
        &self,
        req: &Req<'_>,
        name: &str,
        p: Option<&str>,
        u: Option<&str>,
        py: &Response,
        us: &Response,
    ) -> Option<Result<&'static str, String>> {
        let expect = |difference: &'static str, ok_py: bool, ok_us: bool| {
            if ok_py && ok_us {
                Ok(difference)
            } else {
                Err(format!(
                    "{difference}: python {p:?} (as documented: {ok_py}), \
                     httpserve {u:?} (as documented: {ok_us})"
                ))
            }
        };
        let own_port = |server: &Server, v: Option<&str>| v == Some(&server.port.to_string());
        let result = match name {
            // Each server names itself: its Server header.
            "SERVER_SOFTWARE" => expect(
                "SERVER_SOFTWARE: each server's own",
                p.is_some() && p == py.header("server"),
                u.is_some() && u == us.header("server"),
            ),
            // Python gives its protocol_version (HTTP/1.0); httpserve the request's.
            "SERVER_PROTOCOL" => expect(
                "SERVER_PROTOCOL: Python's own HTTP/1.0, httpserve the request's",
                p == Some("HTTP/1.0"),
                u == Some("HTTP/1.1"),
            ),
            // Python: getfqdn(bind address); httpserve: the Host header's name.
            "SERVER_NAME" => expect(
                "SERVER_NAME: Python getfqdn(bind address), httpserve the Host header",
                p.is_some_and(|v| !v.is_empty()),
                u == Some("127.0.0.1"),
            ),
            "SERVER_PORT" => expect(
                "SERVER_PORT: each server's own port",
                own_port(&self.python, p),
                own_port(&self.ours, u),
            ),
            // Python's empty default; httpserve leaves it unset (no lookup is made).
            "REMOTE_HOST" => expect(
                "REMOTE_HOST: Python's empty default, unset in httpserve",
                p == Some(""),
                u.is_none(),
            ),
            // Variables only httpserve sets (RFC 3875 extensions Apache also sets).
            "REMOTE_PORT" => expect(
                "REMOTE_PORT: httpserve only",
                p.is_none(),
                u.is_some_and(|v| v.parse::<u16>().is_ok()),
            ),
            "REQUEST_URI" => expect(
                "REQUEST_URI: httpserve only",
                p.is_none(),
                u == Some(req.target),
            ),
            "SCRIPT_FILENAME" => {
                let script_name = py_env_value(py, "SCRIPT_NAME");
                let want = format!("{}{script_name}", self.root.display());
                expect(
                    "SCRIPT_FILENAME: httpserve only",
                    p.is_none(),
                    u == Some(want.as_str()),
                )
            }
            // Python's defaults for a request without the header; httpserve leaves them
            // unset (RFC 3875: only when there is a body / a type).
            "CONTENT_TYPE" if req.header("content-type").is_none() => expect(
                "CONTENT_TYPE: Python's text/plain default, unset in httpserve",
                p == Some("text/plain"),
                u.is_none(),
            ),
            "CONTENT_LENGTH" if req.method != "POST" => expect(
                "CONTENT_LENGTH: Python's empty default, unset in httpserve",
                p == Some(""),
                u.is_none(),
            ),
            "HTTP_ACCEPT" | "HTTP_USER_AGENT" | "HTTP_REFERER" | "HTTP_COOKIE" => {
                let header = header_of_var(name);
                match req.header(&header) {
                    // Sent: both must pass it, equal (strict comparison).
                    Some(_) => return None,
                    None => expect(
                        "HTTP_ACCEPT/USER_AGENT/REFERER/COOKIE: Python's empty default",
                        p == Some(""),
                        u.is_none(),
                    ),
                }
            }
            // Any other request header: only httpserve passes it (Python: none, unless
            // inherited from its own environment).
            _ if name.starts_with("HTTP_") => {
                let header = header_of_var(name);
                let sent = if header == "host" {
                    Some("127.0.0.1")
                } else {
                    req.header(&header)
                };
                let inherited = std::env::var(name).ok();
                expect(
                    "HTTP_*: one per request header in httpserve, a fixed few in Python",
                    p.is_none() || p == inherited.as_deref(),
                    u.is_some() && u == sent,
                )
            }
            _ => return None,
        };
        Some(result)
    }

    /// What is not a meta-variable: argv and the server's own environment.
    fn compare_non_meta(&mut self, req: &Req<'_>, py_env: &Env, us_env: &Env) -> Vec<String> {
        let mut problems = Vec::new();
        // argv: Python adds the query (`+` → space) as argv[1] when it has no `=`
        // (also an empty one); httpserve never passes arguments.
        let py_argc = if req.query().contains('=') { "1" } else { "2" };
        if py_env.get("ARGC").map(String::as_str) != Some(py_argc) {
            problems.push(format!("python's ARGC is not {py_argc}"));
        }
        if us_env.get("ARGC").map(String::as_str) != Some("1") {
            problems.push(String::from("httpserve passed arguments"));
        }
        if py_argc == "2" {
            self.allowed.insert("argv: Python's query argument");
        }
        // The server's environment: Python passes all of it, httpserve only PATH.
        if py_env.get(LEAK_VAR).map(String::as_str) == Some(LEAK_VALUE) {
            self.allowed
                .insert("environment: Python leaks the server's");
        } else {
            problems.push(format!("python did not pass {LEAK_VAR} on"));
        }
        let extra: Vec<&String> = us_env
            .keys()
            .filter(|k| !is_meta_variable(k) && !["ARGC", "PATH"].contains(&k.as_str()))
            .collect();
        if !extra.is_empty() {
            problems.push(format!("httpserve passed its environment on: {extra:?}"));
        }
        let path =
            std::env::var("PATH").unwrap_or_else(|_| String::from("/usr/local/bin:/usr/bin:/bin"));
        if us_env.get("PATH") != Some(&path) {
            problems.push(String::from("httpserve's PATH is not its own"));
        }
        problems
    }
}

/// A script's environment as `/env` dumps it, plus `ARGC`.
type Env = BTreeMap<String, String>;

fn env_of(res: &Response) -> Env {
    res.text()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn py_env_value(py: &Response, name: &str) -> String {
    env_of(py).remove(name).unwrap_or_default()
}

/// RFC 3875 meta-variables and the extensions either server sets.
fn is_meta_variable(name: &str) -> bool {
    name.starts_with("HTTP_")
        || [
            "AUTH_TYPE",
            "CONTENT_LENGTH",
            "CONTENT_TYPE",
            "GATEWAY_INTERFACE",
            "PATH_INFO",
            "PATH_TRANSLATED",
            "QUERY_STRING",
            "REMOTE_ADDR",
            "REMOTE_HOST",
            "REMOTE_IDENT",
            "REMOTE_PORT",
            "REMOTE_USER",
            "REQUEST_METHOD",
            "REQUEST_URI",
            "SCRIPT_FILENAME",
            "SCRIPT_NAME",
            "SERVER_NAME",
            "SERVER_PORT",
            "SERVER_PROTOCOL",
            "SERVER_SOFTWARE",
        ]
        .contains(&name)
}

/// `HTTP_USER_AGENT` → `user-agent`.
fn header_of_var(var: &str) -> String {
    var.trim_start_matches("HTTP_")
        .to_ascii_lowercase()
        .replace('_', "-")
}

/// A response for a failure message: status line, headers, the body (cut).
fn show(res: &Response) -> String {
    let head_end = res
        .raw
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(res.raw.len());
    let mut out = format!(
        "{}\n",
        String::from_utf8_lossy(&res.raw[..head_end]).trim_end()
    );
    for (name, value) in &res.headers {
        out.push_str(&format!("{name}: {value}\n"));
    }
    let text = res.text();
    let cut: String = text.chars().take(3000).collect();
    out.push_str(&format!("body ({} bytes): {cut:?}", res.body.len()));
    out
}

fn finish(diff: &Diff, min_requests: usize) {
    common::assert_all_alike(&diff.failures, diff.compared, min_requests);
}

/// Scripts' output, the request body, error pages, redirects, and what is CGI at all.
#[test]
fn scripts_errors_and_dispatch_match_python() {
    let (_dir, mut diff) = start();
    let sh = Expect::Script(SH_OUTPUT);

    // Scripts in each language, with and without query and extra path.
    diff.check(Req::get("/cgi-bin/hello.sh"), sh);
    diff.check(Req::get("/cgi-bin/hello.sh?x=1&y=2"), sh);
    diff.check(Req::get("/cgi-bin/hello.sh/extra/path?q"), sh);
    diff.check(Req::get("/cgi-bin/hello.py"), Expect::Script(PY_OUTPUT));
    diff.check(Req::get("/cgi-bin/hello.py?a=b"), Expect::Script(PY_OUTPUT));
    diff.check(Req::post("/cgi-bin/hello.sh", b"ignored=1"), sh);
    diff.check(
        Req::post("/cgi-bin/hello.py", b""),
        Expect::Script(PY_OUTPUT),
    );
    // The second CGI directory.
    diff.check(Req::get("/htbin/ht.sh"), Expect::Script("<p>htbin </p>\n"));
    diff.check(
        Req::get("/htbin/ht.sh/more/info?x=1"),
        Expect::Script("<p>htbin /more/info</p>\n"),
    );
    // Nested directory walk (bpo-21323): sub/ is a directory, script the script.
    diff.check(
        Req::get("/cgi-bin/sub/script"),
        Expect::Script("nested SCRIPT_NAME=/cgi-bin/sub/script PATH_INFO= QUERY_STRING=\n"),
    );
    diff.check(
        Req::get("/cgi-bin/sub/script/extra?k=v"),
        Expect::Script(
            "nested SCRIPT_NAME=/cgi-bin/sub/script PATH_INFO=/extra QUERY_STRING=k=v\n",
        ),
    );
    diff.check(
        Req::get("/cgi-bin/sub/script/a/b/"),
        Expect::Script("nested SCRIPT_NAME=/cgi-bin/sub/script PATH_INFO=/a/b/ QUERY_STRING=\n"),
    );
    // The path is decoded and collapsed before the CGI check (bpo-21766).
    diff.check(Req::get("/cgi-bin%2fhello.sh"), sh);
    diff.check(Req::get("/cgi-bin//hello.sh"), sh);
    diff.check(Req::get("/./cgi-bin/hello.sh"), sh);
    diff.check(Req::get("/htbin/../cgi-bin/hello.sh"), sh);
    diff.check(Req::get("//cgi-bin/hello.sh"), sh);

    // The request body reaches the script's stdin intact.
    let body: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let echoed = |body: &[u8]| format!("len={}\nfnv={:016x}\n", body.len(), common::fnv1a(body));
    diff.check(
        Req::post("/cgi-bin/cgi-helper/echo", &body)
            .headers(&[("Content-Type", "application/octet-stream")]),
        Expect::Script(&echoed(&body)),
    );
    diff.check(
        Req::post("/cgi-bin/cgi-helper/echo", b"a=1&b=2"),
        Expect::Script(&echoed(b"a=1&b=2")),
    );
    diff.check(
        Req::post("/cgi-bin/cgi-helper/echo", b""),
        Expect::Script(&echoed(b"")),
    );

    // Error pages, byte for byte.
    let missing = Expect::Page(404);
    let forbidden = Expect::Page(403);
    diff.check(Req::get("/cgi-bin/nope"), missing);
    diff.check(Req::get("/cgi-bin/nope/extra?x=1"), missing);
    diff.check(Req::post("/cgi-bin/nope", b""), missing);
    diff.check(Req::get("/cgi-bin/sub/nope"), missing);
    diff.check(Req::get("/htbin/nope"), missing);
    diff.check(Req::get("/cgi-bin/"), forbidden);
    diff.check(Req::get("/cgi-bin/?x=1"), forbidden);
    diff.check(Req::get("/cgi-bin/sub"), forbidden);
    diff.check(Req::get("/cgi-bin/sub/"), forbidden);
    diff.check(Req::get("/htbin/"), forbidden);
    diff.check(Req::get("/cgi-bin/plain.txt"), forbidden);
    diff.check(Req::get("/cgi-bin/plain.txt/extra"), forbidden);
    diff.check(Req::post("/cgi-bin/plain.txt", b""), forbidden);
    // POST outside the CGI directories.
    let post_only_cgi = Expect::Page(501);
    diff.check(Req::post("/plain.txt", b""), post_only_cgi);
    diff.check(Req::post("/", b""), post_only_cgi);
    diff.check(Req::post("/no-such-file", b""), post_only_cgi);
    diff.check(Req::post("/CGI-BIN/hello.sh", b""), post_only_cgi);
    diff.check(Req::post("/cgi-bin", b""), post_only_cgi);

    // The CGI directory itself is a plain directory: 301 to the slash, query kept.
    diff.check(Req::get("/cgi-bin"), Expect::Page(301));
    diff.check(Req::get("/cgi-bin?x=1"), Expect::Page(301));
    diff.check(Req::get("/htbin"), Expect::Page(301));
    // Not CGI: case-sensitive, top level only, whole segment; `..` leaves the directory.
    diff.check(Req::get("/CGI-BIN/x"), missing);
    diff.check(Req::get("/CGI-BIN/hello.sh"), missing);
    diff.check(Req::get("/cgi-binx/hello.sh"), missing);
    diff.check(Req::get("/nested/cgi-bin/readme.txt"), Expect::Page(200));
    diff.check(Req::get("/cgi-bin/../plain.txt"), Expect::Page(200));
    diff.check(Req::get("/plain.txt"), Expect::Page(200));

    finish(&diff, 47);
}

/// The meta-variables scripts see, compared variable by variable.
#[test]
fn script_environment_matches_python() {
    let (_dir, mut diff) = start();
    let base = [
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REMOTE_ADDR", "127.0.0.1"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        base.iter().chain(extra).copied().collect()
    };

    diff.check_env(
        Req::get("/cgi-bin/cgi-helper/env"),
        &with(&[
            ("REQUEST_METHOD", "GET"),
            ("SCRIPT_NAME", "/cgi-bin/cgi-helper"),
            ("PATH_INFO", "/env"),
            ("QUERY_STRING", ""),
        ]),
    );
    diff.check_env(
        Req::get("/cgi-bin/cgi-helper/env?a=1&b=2"),
        &with(&[("QUERY_STRING", "a=1&b=2"), ("PATH_INFO", "/env")]),
    );
    // The query is passed raw; only the first `?` separates it.
    diff.check_env(
        Req::get("/cgi-bin/cgi-helper/env/x/y?a=b?c=d&e=%41+f"),
        &with(&[
            ("QUERY_STRING", "a=b?c=d&e=%41+f"),
            ("PATH_INFO", "/env/x/y"),
            ("SCRIPT_NAME", "/cgi-bin/cgi-helper"),
        ]),
    );
    // A query without `=` (Python also makes it argv[1]).
    diff.check_env(
        Req::get("/cgi-bin/cgi-helper/env?abc+def"),
        &with(&[("QUERY_STRING", "abc+def")]),
    );
    // Single-encoded PATH_INFO is decoded once by both.
    diff.check_env(
        Req::get("/cgi-bin/cgi-helper/env/a%20b/%C3%A9"),
        &with(&[("PATH_INFO", "/env/a b/\u{e9}")]),
    );
    // SCRIPT_NAME is the decoded, collapsed path.
    diff.check_env(
        Req::get("/cgi-bin//cgi-helper/env"),
        &with(&[
            ("SCRIPT_NAME", "/cgi-bin/cgi-helper"),
            ("PATH_INFO", "/env"),
        ]),
    );
    diff.check_env(
        Req::get("/cgi-bin%2fcgi-helper/env?z=1"),
        &with(&[
            ("SCRIPT_NAME", "/cgi-bin/cgi-helper"),
            ("QUERY_STRING", "z=1"),
        ]),
    );
    diff.check_env(
        Req::get("/htbin/../cgi-bin/./cgi-helper/env/p"),
        &with(&[
            ("SCRIPT_NAME", "/cgi-bin/cgi-helper"),
            ("PATH_INFO", "/env/p"),
        ]),
    );
    diff.check_env(
        Req::get("/htbin/cgi-helper/env/h"),
        &with(&[
            ("SCRIPT_NAME", "/htbin/cgi-helper"),
            ("PATH_INFO", "/env/h"),
        ]),
    );
    // POST: method, body length and type.
    diff.check_env(
        Req::post("/cgi-bin/cgi-helper/env/post?q=1", b"a=1&b=2")
            .headers(&[("Content-Type", "application/x-www-form-urlencoded")]),
        &with(&[
            ("REQUEST_METHOD", "POST"),
            ("CONTENT_LENGTH", "7"),
            ("CONTENT_TYPE", "application/x-www-form-urlencoded"),
            ("QUERY_STRING", "q=1"),
            ("PATH_INFO", "/env/post"),
        ]),
    );
    diff.check_env(
        Req::post("/cgi-bin/cgi-helper/env", b"")
            .headers(&[("Content-Type", "text/plain; charset=utf-8")]),
        &with(&[
            ("REQUEST_METHOD", "POST"),
            ("CONTENT_LENGTH", "0"),
            ("CONTENT_TYPE", "text/plain; charset=utf-8"),
        ]),
    );
    // Request headers: the few Python passes are passed alike; the rest httpserve only.
    diff.check_env(
        Req::get("/cgi-bin/cgi-helper/env?h=1").headers(&[
            ("User-Agent", "differential-cgi/1.0"),
            ("Accept", "text/plain"),
            ("Referer", "http://127.0.0.1/from"),
            ("Cookie", "a=1"),
            ("X-Custom-Header", "custom value"),
        ]),
        &with(&[
            ("HTTP_USER_AGENT", "differential-cgi/1.0"),
            ("HTTP_ACCEPT", "text/plain"),
            ("HTTP_REFERER", "http://127.0.0.1/from"),
            ("HTTP_COOKIE", "a=1"),
        ]),
    );

    // Each allowed difference must have been needed at least once.
    let expected: BTreeSet<&str> = [
        "SERVER_SOFTWARE: each server's own",
        "SERVER_PROTOCOL: Python's own HTTP/1.0, httpserve the request's",
        "SERVER_NAME: Python getfqdn(bind address), httpserve the Host header",
        "SERVER_PORT: each server's own port",
        "REMOTE_HOST: Python's empty default, unset in httpserve",
        "REMOTE_PORT: httpserve only",
        "REQUEST_URI: httpserve only",
        "SCRIPT_FILENAME: httpserve only",
        "CONTENT_TYPE: Python's text/plain default, unset in httpserve",
        "CONTENT_LENGTH: Python's empty default, unset in httpserve",
        "HTTP_ACCEPT/USER_AGENT/REFERER/COOKIE: Python's empty default",
        "HTTP_*: one per request header in httpserve, a fixed few in Python",
        "argv: Python's query argument",
        "environment: Python leaks the server's",
    ]
    .into_iter()
    .collect();
    let used: BTreeSet<&str> = diff.allowed.iter().copied().collect();
    assert_eq!(used, expected, "allowed differences used");
    finish(&diff, 12);
}

/// The deliberate differences themselves: Python's side as Python does it, httpserve's as
/// documented.
#[test]
fn deliberate_differences() {
    let (_dir, diff) = start();
    let script_output = b"HTTP/1.0 200 Script output follows\r\n";

    // Status: Python's status line is always 200; the script's `Status:` is a header.
    let req = Req::get("/cgi-bin/cgi-helper/status/404");
    let (py, us) = (req.send(&diff.python), req.send(&diff.ours));
    assert!(py.raw.starts_with(script_output), "{}", show(&py));
    assert_eq!(py.header("status"), Some("404 Custom"), "{}", show(&py));
    assert_eq!(us.status, 404, "{}", show(&us));
    assert_eq!(us.header("status"), None, "{}", show(&us));
    assert_eq!(
        (py.text(), us.text()),
        ("status 404\n".into(), "status 404\n".into())
    );
    assert_eq!(py.header("content-type"), us.header("content-type"));

    // Location with an absolute URL: Python passes it with 200, httpserve answers 302.
    let req = Req::get("/cgi-bin/cgi-helper/client-redirect");
    let (py, us) = (req.send(&diff.python), req.send(&diff.ours));
    assert!(py.raw.starts_with(script_output), "{}", show(&py));
    assert_eq!(py.header("location"), Some("http://example.com/elsewhere"));
    assert_eq!(us.status, 302, "{}", show(&us));
    assert_eq!(us.header("location"), Some("http://example.com/elsewhere"));

    // A local Location: Python passes it with 200 and no body; httpserve serves the path.
    let req = Req::get("/cgi-bin/cgi-helper/local-redirect?/plain.txt");
    let (py, us) = (req.send(&diff.python), req.send(&diff.ours));
    assert!(py.raw.starts_with(script_output), "{}", show(&py));
    assert_eq!(py.header("location"), Some("/plain.txt"));
    assert!(py.body.is_empty(), "{}", show(&py));
    assert_eq!(us.status, 200, "{}", show(&us));
    assert_eq!(us.text(), ROOT_PLAIN, "{}", show(&us));

    // PATH_INFO: Python percent-decodes it a second time; httpserve once.
    let req = Req::get("/cgi-bin/sub/script/x%2520y");
    let (py, us) = (req.send(&diff.python), req.send(&diff.ours));
    let nested = |info: &str, query: &str| {
        format!("nested SCRIPT_NAME=/cgi-bin/sub/script PATH_INFO={info} QUERY_STRING={query}\n")
    };
    assert_eq!(py.text(), nested("/x y", ""), "{}", show(&py));
    assert_eq!(us.text(), nested("/x%20y", ""), "{}", show(&us));

    // An encoded `?` (%3F): Python splits the query there after decoding; httpserve keeps
    // it in PATH_INFO and takes the query from the raw target.
    let req = Req::get("/cgi-bin/sub/script/a%3Fb=1");
    let (py, us) = (req.send(&diff.python), req.send(&diff.ours));
    assert_eq!(py.text(), nested("/a", "b=1"), "{}", show(&py));
    assert_eq!(us.text(), nested("/a?b=1", ""), "{}", show(&us));

    // Methods: Python runs scripts for GET, HEAD and POST only (others 501); every
    // method reaches an httpserve script.
    let req = Req {
        method: "PUT",
        ..Req::get("/cgi-bin/cgi-helper/env")
    };
    let (py, us) = (req.send(&diff.python), req.send(&diff.ours));
    assert_eq!(py.status, 501, "{}", show(&py));
    assert!(
        py.raw
            .starts_with(b"HTTP/1.0 501 Unsupported method ('PUT')\r\n")
    );
    assert_eq!(us.status, 200, "{}", show(&us));
    assert_eq!(
        env_of(&us).get("REQUEST_METHOD").map(String::as_str),
        Some("PUT")
    );

    // HEAD: Python runs the script and sends its whole output; httpserve sends no body.
    let req = Req {
        method: "HEAD",
        ..Req::get("/cgi-bin/hello.sh")
    };
    let (py, us) = (req.send(&diff.python), req.send(&diff.ours));
    assert!(py.raw.starts_with(script_output), "{}", show(&py));
    assert_eq!(py.text(), SH_OUTPUT, "{}", show(&py));
    assert_eq!(us.status, 200, "{}", show(&us));
    assert!(us.body.is_empty(), "{}", show(&us));
    assert_eq!(py.header("content-type"), us.header("content-type"));

    // Framing: Python writes the output raw and closes (HTTP/1.0, no Content-Length);
    // httpserve frames it, so an HTTP/1.1 connection survives a script response.
    let two = b"GET /cgi-bin/hello.sh HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n\
                GET /cgi-bin/hello.sh HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let count = |raw: &[u8]| {
        raw.windows(SH_OUTPUT.len())
            .filter(|w| *w == SH_OUTPUT.as_bytes())
            .count()
    };
    let py_raw = diff.python.raw(two);
    let us_raw = diff.ours.raw(two);
    let py_first = Response::parse(&py_raw);
    assert_eq!(
        py_first.header("content-length"),
        None,
        "{}",
        show(&py_first)
    );
    assert_eq!(count(&py_raw), 1, "{}", String::from_utf8_lossy(&py_raw));
    assert_eq!(count(&us_raw), 2, "{}", String::from_utf8_lossy(&us_raw));
}
