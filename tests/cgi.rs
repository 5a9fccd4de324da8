//! Black-box tests of `httpserve --cgi`: the built binary, a Rust CGI helper program
//! (crates/cgi-helper), and a few shell and Python scripts, over loopback.
#![allow(clippy::unwrap_used)] // a panic in a test is a failure with a message

mod common;
use common::{env_of, var};

use common::{Response, Server};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

fn write_script(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A document root with `cgi-bin/` (the helper as `h` and `nph-h`, shell and Python
/// scripts), `htbin/`, a nested directory and a static file. Everything is world-readable:
/// when the tests run as root, scripts run as `nobody`.
fn fixture() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    for dir in ["cgi-bin/sub", "htbin", "static"] {
        std::fs::create_dir_all(p.join(dir)).unwrap();
    }
    for dir in [
        p.to_path_buf(),
        p.join("cgi-bin"),
        p.join("cgi-bin/sub"),
        p.join("htbin"),
        p.join("static"),
    ] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for name in ["cgi-bin/h", "cgi-bin/nph-h", "cgi-bin/sub/h", "htbin/h"] {
        std::fs::copy(common::cgi_helper(), p.join(name)).unwrap();
        std::fs::set_permissions(p.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    write_script(
        &p.join("cgi-bin/hello.sh"),
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nhello %s\\n' \"$QUERY_STRING\"\n",
        0o755,
    );
    write_script(
        &p.join("cgi-bin/uid.sh"),
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n%s\\n' \"$(id -u)\"\n",
        0o755,
    );
    write_script(
        &p.join("cgi-bin/head.sh"),
        "#!/bin/sh\necho ran > \"$MARKER\"\nprintf 'Content-Type: text/plain\\nContent-Length: 5\\n\\nbody\\n'\n",
        0o755,
    );
    write_script(
        &p.join("cgi-bin/plain.py"),
        "print('Content-Type: text/plain')\nprint()\nprint('python without x bit')\n",
        0o644,
    );
    write_script(
        &p.join("cgi-bin/noshebang"),
        "this is the script's secret text\n",
        0o755,
    );
    write_script(&p.join("cgi-bin/readme.txt"), "not a script\n", 0o644);
    write_script(
        &p.join("cgi-bin/fd7.sh"),
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\ncat <&7 2>/dev/null || echo no-fd-7\n",
        0o755,
    );
    write_script(
        &p.join("cgi-bin/badlength.sh"),
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\nContent-Length: abc\\n\\nhello\\n'\n",
        0o755,
    );
    write_script(
        &p.join("cgi-bin/continue.sh"),
        "#!/bin/sh\nprintf 'Status: 100 Continue\\nContent-Type: text/plain\\n\\nx'\n",
        0o755,
    );
    write_script(
        &p.join("cgi-bin/linger.sh"),
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\nX-Pid: %s\\n\\ndone\\n' \"$$\"\nexec >&-\nexec sleep 30\n",
        0o755,
    );
    write_script(
        &p.join("cgi-bin/path-to-stderr.sh"),
        "#!/bin/sh\nprintf '%s\\n' \"$PATH_INFO\" >&2\nprintf 'Content-Type: text/plain\\n\\nok\\n'\n",
        0o755,
    );
    write_script(
        &p.join("cgi-bin/noisy.sh"),
        concat!(
            "#!/bin/sh\n",
            "if [ \"$PATH_INFO\" = /lines ]; then yes 'noise line' | head -n 20000 >&2\n",
            "else head -c 1000000 /dev/zero | tr '\\0' x >&2; fi\n",
            "printf 'Content-Type: text/plain\\n\\nok\\n'\n",
        ),
        0o755,
    );
    std::fs::write(p.join("static/page.txt"), "static page\n").unwrap();
    d
}

fn cgi_server(d: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["--cgi"];
    args.extend_from_slice(extra);
    Server::serve(d, &args)
}

#[test]
fn scripts_get_rfc_3875_variables_and_nothing_of_the_server() {
    let d = fixture();
    let server = cgi_server(d.path(), &[]);
    let raw = format!(
        "POST /cgi-bin/h/env/extra%20path?a=1&b=%20x HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\nX-Custom: yes\r\n\r\nabc",
        server.port
    );
    let res = Response::parse(&server.raw(raw.as_bytes()));
    assert_eq!(res.status, 200, "{}", res.text());
    let env = env_of(&res);
    let root = d.path().canonicalize().unwrap();
    for (k, v) in [
        ("GATEWAY_INTERFACE", "CGI/1.1".to_owned()),
        (
            "SERVER_SOFTWARE",
            concat!("httpserve/", env!("CARGO_PKG_VERSION")).to_owned(),
        ),
        ("SERVER_PROTOCOL", "HTTP/1.1".to_owned()),
        ("SERVER_NAME", "localhost".to_owned()),
        ("SERVER_PORT", server.port.to_string()),
        ("REQUEST_METHOD", "POST".to_owned()),
        ("QUERY_STRING", "a=1&b=%20x".to_owned()),
        ("SCRIPT_NAME", "/cgi-bin/h".to_owned()),
        ("PATH_INFO", "/env/extra path".to_owned()),
        (
            "PATH_TRANSLATED",
            root.join("env/extra path").display().to_string(),
        ),
        (
            "SCRIPT_FILENAME",
            root.join("cgi-bin/h").display().to_string(),
        ),
        ("REMOTE_ADDR", "127.0.0.1".to_owned()),
        ("CONTENT_LENGTH", "3".to_owned()),
        (
            "CONTENT_TYPE",
            "application/x-www-form-urlencoded".to_owned(),
        ),
        ("HTTP_X_CUSTOM", "yes".to_owned()),
        ("ARGC", "1".to_owned()),
    ] {
        assert_eq!(var(&env, k), Some(v.as_str()), "{k} in {env:?}");
    }
    assert!(var(&env, "REMOTE_PORT").is_some_and(|p| p.parse::<u16>().is_ok()));
    // Nothing of the server's own environment but PATH: the test runner's HOME and
    // CARGO_* variables are in httpserve's environment, not in the script's.
    assert!(std::env::var_os("HOME").is_some());
    let allowed = |k: &str| {
        k.starts_with("HTTP_")
            || matches!(
                k,
                "ARGC"
                    | "PATH"
                    | "GATEWAY_INTERFACE"
                    | "SERVER_SOFTWARE"
                    | "SERVER_PROTOCOL"
                    | "SERVER_NAME"
                    | "SERVER_PORT"
                    | "REQUEST_METHOD"
                    | "REQUEST_URI"
                    | "QUERY_STRING"
                    | "SCRIPT_NAME"
                    | "SCRIPT_FILENAME"
                    | "PATH_INFO"
                    | "PATH_TRANSLATED"
                    | "REMOTE_ADDR"
                    | "REMOTE_PORT"
                    | "CONTENT_LENGTH"
                    | "CONTENT_TYPE"
            )
    };
    for (k, _) in &env {
        assert!(allowed(k), "{k} leaked into the script's environment");
    }
    // --cgi-pass-env lets one through on purpose.
    let server = cgi_server(d.path(), &["--cgi-pass-env", "HOME"]);
    let env = env_of(&server.get("/cgi-bin/h/env"));
    assert_eq!(
        var(&env, "HOME").map(str::to_owned),
        std::env::var("HOME").ok()
    );
}

#[test]
fn httpoxy_credentials_and_underscored_headers_never_reach_scripts() {
    let d = fixture();
    let server = cgi_server(d.path(), &[]);
    let res = server.request(
        "GET",
        "/cgi-bin/h/env",
        &[
            ("Proxy", "http://evil.example:8080"),
            ("Authorization", "Basic dXNlcjpzZWNyZXQ="),
            ("X_Forwarded_For", "6.6.6.6"),
            ("X-Real-Ip", "10.1.1.1"),
        ],
    );
    let env = env_of(&res);
    assert_eq!(var(&env, "HTTP_PROXY"), None);
    assert_eq!(var(&env, "HTTP_AUTHORIZATION"), None);
    assert!(!res.text().contains("secret") && !res.text().contains("dXNlcjpzZWNyZXQ="));
    assert_eq!(var(&env, "AUTH_TYPE"), Some("Basic"));
    assert_eq!(var(&env, "REMOTE_USER"), Some("user"));
    assert_eq!(var(&env, "HTTP_X_FORWARDED_FOR"), None);
    assert_eq!(var(&env, "HTTP_X_REAL_IP"), Some("10.1.1.1"));
}

#[test]
fn no_argv_from_the_query_string() {
    let d = fixture();
    let server = cgi_server(d.path(), &[]);
    // Python would run the script with argv[1] = "-s" (the PHP-CGI CVE-2012-1823 class).
    let env = env_of(&server.get("/cgi-bin/h/env?-s"));
    assert_eq!(var(&env, "ARGC"), Some("1"));
    assert_eq!(var(&env, "QUERY_STRING"), Some("-s"));
}

#[test]
fn status_and_redirects_follow_rfc_3875() {
    let d = fixture();
    let server = cgi_server(d.path(), &[]);
    let res = server.get("/cgi-bin/h/status/418");
    assert_eq!(res.status, 418);
    assert_eq!(res.text(), "status 418\n");
    let res = server.get("/cgi-bin/h/status/201");
    assert_eq!(res.status, 201);
    // Client redirect: an absolute Location without Status is a 302, no body.
    let res = server.get("/cgi-bin/h/client-redirect");
    assert_eq!(res.status, 302);
    assert_eq!(res.header("location"), Some("http://example.com/elsewhere"));
    assert!(res.body.is_empty());
    // Local redirect: served again inside the server, to a script…
    let res = server.get("/cgi-bin/h/local-redirect");
    assert_eq!(res.status, 200);
    let env = env_of(&res);
    assert_eq!(var(&env, "QUERY_STRING"), Some("from=redirect"));
    assert_eq!(var(&env, "REQUEST_METHOD"), Some("GET"));
    // …or to a static file.
    let res = server.get("/cgi-bin/h/local-redirect?/static/page.txt");
    assert_eq!((res.status, res.text().as_str()), (200, "static page\n"));
    // A loop is cut off.
    assert_eq!(server.get("/cgi-bin/h/redirect-loop").status, 500);
}

#[test]
fn bad_script_output_is_a_502_and_never_shown() {
    let d = fixture();
    let server = cgi_server(d.path(), &[]);
    for (mode, leak) in [
        ("no-content-type", "body without a type"),
        ("no-headers", ""),
        ("huge-header", "xxxxxxxx"),
        ("many-headers", "X-H999"),
    ] {
        let res = server.get(&format!("/cgi-bin/h/{mode}"));
        assert_eq!(res.status, 502, "{mode}");
        assert_eq!(
            res.header("content-type"),
            Some("text/html;charset=utf-8"),
            "{mode}"
        );
        if !leak.is_empty() {
            assert!(!res.text().contains(leak), "{mode} leaked script output");
        }
    }
    // A file with the x bit but no interpreter line: ENOEXEC is a 500, the text stays hidden.
    let res = server.get("/cgi-bin/noshebang");
    assert_eq!(res.status, 500);
    assert!(!res.text().contains("secret"));
    // A non-zero exit after the headers: the output so far is delivered, the exit logged.
    let res = Response::parse(&server.raw(
        b"GET /cgi-bin/h/fail-after-headers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ));
    assert_eq!(res.status, 200);
    assert!(res.raw.windows(7).any(|w| w == b"partial"));
    assert!(
        server.wait_for_stderr("CGI script exit code 3"),
        "{}",
        server.stderr()
    );
}

#[test]
fn nph_scripts_give_their_own_status_line() {
    let d = fixture();
    let server = cgi_server(d.path(), &[]);
    let res = server.get("/cgi-bin/nph-h");
    assert_eq!(res.status, 299);
    // A code without a standard phrase keeps the script's own.
    assert!(res.raw.starts_with(b"HTTP/1.1 299 Custom\r\n"));
    assert_eq!(res.header("x-nph"), Some("yes"));
    assert_eq!(res.text(), "nph body\n");
}

#[test]
fn head_runs_the_script_and_sends_no_body() {
    let d = fixture();
    let marker = d.path().join("static/marker");
    std::fs::set_permissions(
        d.path().join("static"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(common::binary());
    cmd.args([
        "0",
        "-b",
        "127.0.0.1",
        "--cgi",
        "--cgi-pass-env",
        "MARKER",
        "-d",
    ])
    .arg(d.path())
    .env("MARKER", &marker);
    let server = Server::spawn(cmd);
    let res = server.request("HEAD", "/cgi-bin/head.sh", &[]);
    assert_eq!(res.status, 200);
    assert!(res.body.is_empty());
    assert_eq!(res.header("content-length"), Some("5"));
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "ran\n");
}

#[test]
fn python_and_shell_scripts_and_pythons_error_pages() {
    let d = fixture();
    let server = cgi_server(d.path(), &[]);
    assert_eq!(server.get("/cgi-bin/hello.sh?x=1").text(), "hello x=1\n");
    // A .py without the x bit runs with the interpreter.
    assert_eq!(
        server.get("/cgi-bin/plain.py").text(),
        "python without x bit\n"
    );
    let res = server.get("/cgi-bin/nope");
    assert_eq!(res.status, 404);
    assert!(res.text().contains("No such CGI script ('/cgi-bin/nope')"));
    let res = server.get("/cgi-bin/readme.txt");
    assert_eq!(res.status, 403);
    assert!(
        res.text()
            .contains("CGI script is not executable ('/cgi-bin/readme.txt')")
    );
    for dir in ["/cgi-bin/", "/cgi-bin/sub"] {
        let res = server.get(dir);
        assert_eq!(res.status, 403, "{dir}");
        assert!(
            res.text().contains("CGI script is not a plain file"),
            "{dir}"
        );
    }
    assert_eq!(server.get("/cgi-bin").header("location"), Some("/cgi-bin/"));
    let res = server.request("POST", "/static/page.txt", &[("Content-Length", "0")]);
    assert_eq!(res.status, 501);
    assert!(res.text().contains("Can only POST to CGI scripts"));
    // Nested directories walk; the rest is PATH_INFO. /htbin is a CGI directory too.
    let env = env_of(&server.get("/cgi-bin/sub/h/env/x"));
    assert_eq!(var(&env, "SCRIPT_NAME"), Some("/cgi-bin/sub/h"));
    assert_eq!(var(&env, "PATH_INFO"), Some("/env/x"));
    assert_eq!(
        var(&env_of(&server.get("/htbin/h/env")), "SCRIPT_NAME"),
        Some("/htbin/h")
    );
    // Decoded before matching (CVE-2014-4650 class); case-sensitive; top level only.
    assert_eq!(
        var(&env_of(&server.get("/cgi-bin%2fh/env")), "SCRIPT_NAME"),
        Some("/cgi-bin/h")
    );
    assert_eq!(server.get("/CGI-BIN/h").status, 404);
    // The interpreter can be turned off.
    let server = cgi_server(d.path(), &["--cgi-interpreter", "none"]);
    assert_eq!(server.get("/cgi-bin/plain.py").status, 403);
}

#[test]
fn scripts_run_as_nobody_when_the_server_is_root() {
    let d = fixture();
    let server = cgi_server(d.path(), &[]);
    let uid = server.get("/cgi-bin/uid.sh").text();
    let euid = std::process::Command::new("id")
        .arg("-u")
        .output()
        .unwrap()
        .stdout;
    if String::from_utf8_lossy(&euid).trim() == "0" {
        assert_eq!(uid.trim(), "65534");
        let server = cgi_server(d.path(), &["--cgi-user", "root"]);
        assert_eq!(server.get("/cgi-bin/uid.sh").text().trim(), "0");
    } else {
        assert_eq!(uid.trim(), String::from_utf8_lossy(&euid).trim());
    }
}

fn running_as_root() -> bool {
    let euid = std::process::Command::new("id")
        .arg("-u")
        .output()
        .unwrap()
        .stdout;
    String::from_utf8_lossy(&euid).trim() == "0"
}

/// A process as `/proc` shows it.
#[derive(Debug)]
struct Proc {
    pid: u32,
    parent: u32,
    state: String,
    uid: u32,
    cmdline: String,
}

fn proc_of(pid: u32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(Proc {
        pid,
        parent: fields.get(1)?.parse().ok()?,
        state: (*fields.first()?).to_owned(),
        uid,
        cmdline: String::from_utf8_lossy(&cmdline).replace('\0', " "),
    })
}

fn children_of(parent: u32) -> Vec<Proc> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter_map(proc_of)
        .filter(|p| p.parent == parent)
        .collect()
}

/// The server's CGI spawner helpers.
fn spawner_helpers(server: &Server) -> Vec<Proc> {
    children_of(server.pid())
        .into_iter()
        .filter(|p| p.cmdline.contains("--internal-cgi-spawner"))
        .collect()
}

#[test]
fn scripts_are_started_by_helpers_each_under_a_keeper_of_the_servers_user() {
    let d = fixture();
    let server = cgi_server(d.path(), &[]);
    let helpers = spawner_helpers(&server);
    let (_stream, pid, _grandchild) = start_pid_script(&server);
    let script = proc_of(pid).unwrap();
    let keeper = proc_of(script.parent).unwrap();
    // No fork of the server per script: a helper forks a keeper, which starts the script.
    assert!(!helpers.is_empty());
    assert!(
        helpers.iter().any(|h| h.pid == keeper.parent),
        "keeper {keeper:?} of {script:?} is not a helper's child: {helpers:?}"
    );
    // Helpers and keepers keep the server's user: the scripts' user cannot signal them.
    let server_uid = proc_of(server.pid()).unwrap().uid;
    assert!(
        helpers
            .iter()
            .all(|h| h.uid == server_uid && h.state != "Z"),
        "{helpers:?}"
    );
    assert_eq!(keeper.uid, server_uid);
    // A keeper holds none of the helper's descriptors (its socket was the helper's stdin).
    let keeper_fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", keeper.pid))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .collect();
    let helper_socket = std::fs::read_link(format!("/proc/{}/fd/0", keeper.parent))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(helper_socket.starts_with("socket:"), "{helper_socket}");
    assert!(
        !keeper_fds.contains(&helper_socket),
        "keeper holds the helper's socket {helper_socket}: {keeper_fds:?}"
    );
    if running_as_root() {
        assert_eq!(script.uid, 65534);
    }
    // Nothing but the server can use a helper.
    let (code, _, stderr) = common::run_cli(&["--internal-cgi-spawner"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("httpserve's own use"), "{stderr}");
}

#[test]
fn scripts_still_run_when_the_spawner_helpers_are_killed() {
    let d = fixture();
    let server = cgi_server(d.path(), &[]);
    let helpers = spawner_helpers(&server);
    for helper in &helpers {
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &helper.pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
    }
    // Reaped by the server, not left as zombies.
    for helper in &helpers {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(format!("/proc/{}", helper.pid)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "helper {} not reaped",
                helper.pid
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let expected = if running_as_root() { "65534" } else { "" };
    for _ in 0..5 {
        let res = server.get("/cgi-bin/uid.sh");
        assert_eq!(res.status, 200, "{}", res.text());
        if !expected.is_empty() {
            assert_eq!(res.text().trim(), expected);
        }
    }
    assert!(server.wait_for_stderr("CGI spawner helper ended"));
    // Each killed helper is replaced (at most once a second) by a new one.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert_eq!(server.get("/cgi-bin/uid.sh").status, 200);
        let now = spawner_helpers(&server);
        if now.len() == helpers.len()
            && now
                .iter()
                .all(|h| helpers.iter().all(|old| old.pid != h.pid))
        {
            break;
        }
        assert!(Instant::now() < deadline, "helpers not replaced: {now:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Open descriptors of a process.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn stopped_helpers_delay_scripts_a_bounded_time_and_leak_nothing() {
    let d = fixture();
    let server = cgi_server(d.path(), &[]);
    assert_eq!(server.get("/cgi-bin/uid.sh").status, 200);
    let fds_before = open_fds(server.pid());
    let helpers = spawner_helpers(&server);
    for helper in &helpers {
        let stopped = std::process::Command::new("kill")
            .args(["-STOP", &helper.pid.to_string()])
            .status()
            .unwrap();
        assert!(stopped.success());
    }
    // Requests that reach a stopped helper are answered once the exchange times out (the
    // script may have been started, so never started twice: 500); the others, and every
    // one after, run.
    let started = Instant::now();
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let port = server.port;
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                s.write_all(
                    b"GET /cgi-bin/uid.sh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                )
                .unwrap();
                let mut out = Vec::new();
                let _ = s.read_to_end(&mut out);
                Response::parse(&out).status
            })
        })
        .collect();
    let statuses: Vec<u16> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    // 500: a stopped helper got the request (maybe started it); 503: none could take it.
    assert!(
        statuses.iter().all(|s| matches!(s, 200 | 500 | 503)),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().any(|s| matches!(s, 500 | 503)),
        "no request reached a stopped helper: {statuses:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.get("/cgi-bin/uid.sh").status != 200 {
        assert!(Instant::now() < deadline, "CGI did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The stopped helpers were killed and replaced, and no descriptor stayed behind.
    for helper in &helpers {
        assert!(
            wait_gone(helper.pid),
            "stopped helper {} still there",
            helper.pid
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_fds(server.pid()) > fds_before {
        assert!(
            Instant::now() < deadline,
            "{} descriptors open, {fds_before} before",
            open_fds(server.pid())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_20_mib_output_and_a_5_mib_upload_arrive_intact() {
    let d = fixture();
    let server = cgi_server(d.path(), &[]);
    for mode in ["big", "stream-big"] {
        let res = server.get(&format!("/cgi-bin/h/{mode}/20"));
        assert_eq!(res.status, 200, "{mode}");
        let want: Vec<u8> = (0..20 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        if mode == "big" {
            assert_eq!(res.header("content-length"), Some("20971520"));
            assert_eq!(res.body.len(), want.len());
            assert!(res.body == want, "{mode}: bytes differ");
        } else {
            // No Content-Length from the script: chunked, complete, and byte for byte equal.
            assert_eq!(res.header("transfer-encoding"), Some("chunked"));
            assert!(
                res.raw.ends_with(b"\r\n0\r\n\r\n"),
                "{mode}: the chunked body never ended"
            );
            assert_eq!(res.body.len(), want.len(), "{mode}");
            assert!(res.body == want, "{mode}: bytes differ");
        }
    }
    let upload: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut stream = server.connect();
    let head = format!(
        "POST /cgi-bin/h/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        upload.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&upload).unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    let res = Response::parse(&out);
    assert_eq!(
        res.text(),
        format!(
            "len={}\nfnv={:016x}\n",
            upload.len(),
            common::fnv1a(&upload)
        )
    );
    // A chunked upload is buffered so CONTENT_LENGTH can be set.
    let mut stream = server.connect();
    stream
        .write_all(b"POST /cgi-bin/h/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    let res = Response::parse(&out);
    assert!(
        res.text().contains(&format!(
            "len=11\nfnv={:016x}\n",
            common::fnv1a(b"hello world")
        )),
        "{}",
        res.text()
    );
}

fn pid_alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; count it as gone only when reaped or dead.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn wait_gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !pid_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Starts `/cgi-bin/h/pid` and returns the open connection with the script's and its
/// child's pids, read from the response head.
fn start_pid_script(server: &Server) -> (std::net::TcpStream, u32, u32) {
    let mut stream = server.connect();
    stream
        .write_all(b"GET /cgi-bin/h/pid HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1);
        buf.push(byte[0]);
    }
    let head = Response::parse(&buf);
    let pid: u32 = head.header("x-pid").unwrap().parse().unwrap();
    let child: u32 = head.header("x-grandchild-pid").unwrap().parse().unwrap();
    assert!(pid_alive(pid) && child > 0 && pid_alive(child));
    (stream, pid, child)
}

#[test]
fn a_client_going_away_kills_the_script_and_its_children() {
    let d = fixture();
    let server = cgi_server(d.path(), &[]);
    let (stream, pid, child) = start_pid_script(&server);
    drop(stream);
    assert!(wait_gone(pid), "script {pid} survived its client");
    assert!(wait_gone(child), "the script's child {child} survived");
}

#[test]
fn server_shutdown_kills_running_scripts() {
    let d = fixture();
    let mut server = cgi_server(d.path(), &["--shutdown-grace", "1"]);
    let (_stream, pid, child) = start_pid_script(&server);
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
    assert!(wait_gone(pid), "script {pid} survived shutdown");
    assert!(
        wait_gone(child),
        "the script's child {child} survived shutdown"
    );
}

/// A script that leaves a plain background child and a `setsid` daemon behind (both with
/// their output redirected, so the response can end) and reports their pids; with a
/// `hold` query it then sleeps instead of exiting.
const ORPHANS_SH: &str = "#!/bin/sh\n\
sleep 120 >/dev/null 2>&1 </dev/null &\n\
child=$!\n\
setsid sleep 120 >/dev/null 2>&1 </dev/null &\n\
daemon=$!\n\
printf 'Content-Type: text/plain\\nX-Child: %s\\nX-Daemon: %s\\n\\nstarted\\n' \"$child\" \"$daemon\"\n\
if [ \"$QUERY_STRING\" = hold ]; then exec sleep 120 >/dev/null; fi\n";

/// The pids an `ORPHANS_SH` response reports.
fn orphan_pids(head: &Response) -> [u32; 2] {
    ["x-child", "x-daemon"].map(|h| head.header(h).unwrap().parse::<u32>().unwrap())
}

/// The pids an `ORPHANS_SH?hold` response reports, checked alive (its script still runs).
fn running_orphan_pids(head: &Response) -> [u32; 2] {
    let pids = orphan_pids(head);
    for pid in pids {
        assert!(pid_alive(pid), "{pid} not running");
    }
    pids
}

/// Reads a response head (through the blank line) from `stream`.
fn read_head(stream: &mut std::net::TcpStream) -> Response {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1);
        buf.push(byte[0]);
    }
    Response::parse(&buf)
}

#[test]
fn nothing_a_script_starts_outlives_its_request() {
    let d = fixture();
    write_script(&d.path().join("cgi-bin/orphans.sh"), ORPHANS_SH, 0o755);
    let mut server = cgi_server(d.path(), &["--shutdown-grace", "1"]);
    // The script answers and exits: what it left behind is killed with its request (maybe
    // before we look, so only their end is checked).
    let res = server.get("/cgi-bin/orphans.sh");
    assert_eq!(res.status, 200, "{}", res.text());
    for pid in orphan_pids(&res) {
        assert!(wait_gone(pid), "{pid} outlived the response");
    }
    // A request whose environment is too big for a helper's old 192 KiB limit (the path
    // counts three times: REQUEST_URI, PATH_INFO, PATH_TRANSLATED) still runs under a keeper.
    let long = format!("/cgi-bin/orphans.sh/{}", "A".repeat(65_000));
    let res = server.request("GET", &long, &[("X-Pad", &"B".repeat(4_000))]);
    assert_eq!(res.status, 200, "{}", res.text());
    for pid in orphan_pids(&res) {
        assert!(
            wait_gone(pid),
            "{pid} outlived a response with a big environment"
        );
    }
    // The client goes away while the script still runs.
    let mut stream = server.connect();
    stream
        .write_all(b"GET /cgi-bin/orphans.sh?hold HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let pids = running_orphan_pids(&read_head(&mut stream));
    drop(stream);
    for pid in pids {
        assert!(wait_gone(pid), "{pid} outlived its client");
    }
    // The server shuts down while the script still runs.
    let mut stream = server.connect();
    stream
        .write_all(b"GET /cgi-bin/orphans.sh?hold HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let pids = running_orphan_pids(&read_head(&mut stream));
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
    for pid in pids {
        assert!(wait_gone(pid), "{pid} outlived the server");
    }
}

#[test]
fn a_client_that_resets_the_connection_stops_a_silent_script_at_once() {
    let d = fixture();
    let drop_box = d.path().join("pids");
    std::fs::create_dir(&drop_box).unwrap();
    std::fs::set_permissions(&drop_box, std::fs::Permissions::from_mode(0o777)).unwrap();
    write_script(
        &d.path().join("cgi-bin/silent.sh"),
        &format!(
            "#!/bin/sh\necho $$ > {}/pid.tmp && mv {0}/pid.tmp {0}/pid\nexec sleep 60\n",
            drop_box.display()
        ),
        0o755,
    );
    let server = cgi_server(d.path(), &[]);
    let mut stream = server.connect();
    stream
        .write_all(b"GET /cgi-bin/silent.sh HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid: u32 = loop {
        if let Ok(pid) = std::fs::read_to_string(drop_box.join("pid")) {
            break pid.trim().parse().unwrap();
        }
        assert!(Instant::now() < deadline, "the script never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Gone for good (a reset, not a half-close, which would still be answered).
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
    let gone_by = Instant::now() + Duration::from_secs(3);
    while pid_alive(pid) {
        assert!(
            Instant::now() < gone_by,
            "script {pid} outlived its client by 3 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Python CGI script that tries, as the scripts' user, to signal (signal 0: the
/// permission check alone) and to read the environment of its parent, grandparent and
/// great-grandparent (keeper, helper, server) and of every child of those, and reports
/// what it could reach, and whether it has a terminal.
const REACH_PY: &str = r#"#!/usr/bin/env python3
import os
def parent(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])
me = os.getpid()
chain, pid = [], me
for _ in range(3):
    pid = parent(pid)
    if pid <= 1:
        break
    chain.append(pid)
targets = set(chain)
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            if parent(int(entry)) in chain:
                targets.add(int(entry))
        except OSError:
            pass
reached = []
for pid in sorted(targets - {me}):
    try:
        os.kill(pid, 0)
        reached.append(f"signal {pid}")
    except PermissionError:
        pass
    except ProcessLookupError:
        pass
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            f.read()
        reached.append(f"environ {pid}")
    except OSError:
        pass
try:
    os.close(os.open("/dev/tty", os.O_RDWR))
    reached.append("tty")
except OSError:
    pass
print("Content-Type: text/plain")
print()
print(f"targets {len(targets)}")
print(" ".join(reached) or "nothing")
"#;

#[test]
fn scripts_cannot_signal_or_inspect_the_server_helpers_or_keepers() {
    if !running_as_root() {
        // Scripts then run as the server's own user, which can signal it (README).
        return;
    }
    let d = fixture();
    write_script(&d.path().join("cgi-bin/reach.py"), REACH_PY, 0o755);
    let server = cgi_server(d.path(), &[]);
    let res = server.get("/cgi-bin/reach.py");
    assert_eq!(res.status, 200, "{}", res.text());
    let text = res.text();
    // Keeper, helper, server and the other helpers were all tried.
    let tried: usize = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("targets "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(tried >= 3, "{text}");
    assert_eq!(
        text.lines().nth(1),
        Some("nothing"),
        "a script reached: {text}"
    );
    // And CGI keeps working.
    assert_eq!(server.get("/cgi-bin/uid.sh").status, 200);
}

/// A Python CGI script that, for `$QUERY_STRING` seconds, stops every process its user
/// may signal (`kill(-1, SIGSTOP)`), as a script could to catch other scripts' processes
/// between their user change and `execve`.
const STOPPER_PY: &str = r#"#!/usr/bin/env python3
import os, signal, time
end = time.time() + float(os.environ.get("QUERY_STRING") or "3")
stops = 0
while time.time() < end:
    try:
        os.kill(-1, signal.SIGSTOP)
        stops += 1
    except OSError:
        pass
    time.sleep(0.0005)
# What else of this user's it stopped goes on.
try:
    os.kill(-1, signal.SIGCONT)
except OSError:
    pass
print("Content-Type: text/plain")
print()
print(f"stops {stops}")
"#;

/// The state letters of every process running `--internal-cgi-spawner` (helpers and
/// keepers, of any server).
fn spawner_states() -> Vec<(u32, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter_map(proc_of)
        .filter(|p| p.cmdline.contains("--internal-cgi-spawner"))
        .map(|p| (p.pid, p.state))
        .collect()
}

#[test]
fn a_script_stopping_its_users_processes_cannot_hold_a_keeper() {
    if !running_as_root() {
        return;
    }
    // Scripts as `daemon`, which no other test's scripts run as: the attack reaches only
    // processes of this test.
    let d = fixture();
    write_script(&d.path().join("cgi-bin/stopper.py"), STOPPER_PY, 0o755);
    // Scripts stopped after their execve are the attacker's to stop (same user): they end
    // with the idle timeout.
    // A PATH of 2,000 missing directories before the real ones: finding `python3` for
    // `plain.py` then takes 2,000 failed execve calls after the user change, a window the
    // attacker hits.
    let mut path: Vec<String> = (0..2000).map(|i| format!("/nonexistent/{i}")).collect();
    path.push(std::env::var("PATH").unwrap_or_else(|_| String::from("/usr/bin:/bin")));
    let mut cmd = std::process::Command::new(common::binary());
    cmd.args(["0", "-b", "127.0.0.1", "--cgi", "--cgi-user", "daemon"])
        .args(["--cgi-idle-timeout", "3", "-d"])
        .arg(d.path())
        .env("PATH", path.join(":"));
    let server = Server::spawn(cmd);
    let port = server.port;
    let attacker = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(b"GET /cgi-bin/stopper.py?2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        Response::parse(&out)
    });
    // Meanwhile scripts keep starting: each request is answered in bounded time (a
    // script stopped before its execve is killed by its keeper: 500).
    let started = Instant::now();
    let clients: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                let mut answered = 0;
                while started.elapsed() < Duration::from_secs(2) {
                    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    s.write_all(
                        b"GET /cgi-bin/plain.py HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    )
                    .unwrap();
                    let mut out = Vec::new();
                    let _ = s.read_to_end(&mut out);
                    let status = Response::parse(&out).status;
                    assert!(matches!(status, 200 | 500 | 503 | 504), "{status}");
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    for client in clients {
        assert!(client.join().unwrap() > 0);
    }
    let res = attacker.join().unwrap();
    assert_eq!(res.status, 200, "{}", res.text());
    assert!(res.text().starts_with("stops "), "{}", res.text());
    // No helper or keeper is left hanging on a stopped child, and CGI works again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stuck: Vec<_> = spawner_states()
            .into_iter()
            .filter(|(_, state)| state == "D" || state == "T")
            .collect();
        if stuck.is_empty() && server.get("/cgi-bin/uid.sh").status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "stuck: {stuck:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Python CGI script that pushes a command into its controlling terminal's input
/// (TIOCSTI), as a script could into the shell of an operator who started the server.
const TIOCSTI_PY: &str = r#"#!/usr/bin/env python3
import fcntl, os, termios
try:
    fd = os.open("/dev/tty", os.O_RDWR)
except OSError as e:
    result = f"no terminal: errno {e.errno}"
else:
    try:
        for c in b"echo INJECTED-BY-CGI\n":
            fcntl.ioctl(fd, termios.TIOCSTI, bytes([c]))
        result = "injected"
    except OSError as e:
        result = f"refused by the terminal: errno {e.errno}"
print("Content-Type: text/plain")
print()
print(result)
"#;

#[test]
fn scripts_cannot_type_into_the_operators_terminal() {
    let d = fixture();
    write_script(&d.path().join("cgi-bin/tiocsti.py"), TIOCSTI_PY, 0o755);
    // The server on a terminal of its own, as when started from a shell: `script` runs it
    // on a pseudo-terminal and copies everything shown there to our stdout.
    let command = format!(
        "exec {} 0 -b 127.0.0.1 -d {} --cgi",
        common::binary().display(),
        d.path().display()
    );
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-q", "-e", "-c", &command, "/dev/null"]);
    let server = Server::spawn(cmd);
    let res = server.get("/cgi-bin/tiocsti.py");
    assert_eq!(res.status, 200);
    // ENXIO: no controlling terminal at all (a kernel that refuses TIOCSTI itself, with
    // dev.tty.legacy_tiocsti=0, would not prove anything here).
    assert_eq!(res.text().trim(), "no terminal: errno 6", "{}", res.text());
}

#[test]
fn timeouts_answer_504_and_cut_slow_bodies() {
    let d = fixture();
    let server = cgi_server(d.path(), &["--cgi-idle-timeout", "1", "--cgi-timeout", "2"]);
    let started = Instant::now();
    let res = server.get("/cgi-bin/h/silent");
    assert_eq!(res.status, 504);
    assert!(started.elapsed() < Duration::from_secs(10));
    // Headers came, then the 2 s deadline cut the 5 s body: the chunked body never ends.
    let res = Response::parse(
        &server
            .raw(b"GET /cgi-bin/h/slow-body/50 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(res.status, 200);
    assert!(
        !res.raw.ends_with(b"0\r\n\r\n"),
        "a cut body must not look complete"
    );
    assert!(res.text().contains("tick 0"));
    assert!(!res.text().contains("tick 49"));
}

#[test]
fn slow_scripts_do_not_block_other_requests() {
    let d = fixture();
    let server = cgi_server(d.path(), &[]);
    let port = server.port;
    let slow: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                s.write_all(
                    b"GET /cgi-bin/h/sleep/3000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                )
                .unwrap();
                let mut out = Vec::new();
                let _ = s.read_to_end(&mut out);
                (Instant::now(), out)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let fast_started = Instant::now();
    assert_eq!(server.get("/cgi-bin/hello.sh").status, 200);
    assert_eq!(server.get("/static/page.txt").status, 200);
    let fast_done = Instant::now();
    for handle in slow {
        let (finished, out) = handle.join().unwrap();
        assert!(String::from_utf8_lossy(&out).contains("slept"));
        // The fast requests were answered while the slow ones were still running.
        assert!(
            finished > fast_done,
            "a slow script finished before the fast requests"
        );
    }
    assert!(fast_done - fast_started < Duration::from_secs(3));
}

#[test]
fn stderr_goes_to_the_log_not_the_client() {
    let d = fixture();
    let server = cgi_server(d.path(), &[]);
    let res = server.get("/cgi-bin/h/stderr");
    assert_eq!(res.text(), "see the log\n");
    assert!(server.wait_for_stderr("oops from stderr"));
    assert!(server.stderr().contains("/cgi-bin/h"));
}

#[test]
fn keep_alive_survives_scripts_that_set_content_length() {
    let d = fixture();
    let server = cgi_server(d.path(), &[]);
    let mut stream = server.connect();
    for _ in 0..3 {
        stream
            .write_all(b"GET /cgi-bin/h/big/1 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            assert_eq!(stream.read(&mut byte).unwrap(), 1);
            buf.push(byte[0]);
        }
        let head = Response::parse(&buf);
        let len: usize = head.header("content-length").unwrap().parse().unwrap();
        let mut body = vec![0; len];
        stream.read_exact(&mut body).unwrap();
        assert_eq!(len, 1024 * 1024);
    }
}

#[test]
fn no_zombies_are_left_behind() {
    let d = fixture();
    let server = cgi_server(d.path(), &[]);
    for _ in 0..10 {
        assert_eq!(server.get("/cgi-bin/hello.sh").status, 200);
        assert_eq!(server.get("/cgi-bin/h/no-headers").status, 502);
    }
    let helpers = spawner_helpers(&server);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // Scripts are the server's children, or (run as root) its spawner helpers'.
        let mut zombies = zombie_children(server.pid());
        for helper in &helpers {
            zombies.extend(zombie_children(helper.pid));
        }
        if zombies.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "zombies: {zombies:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pids of zombie processes whose parent is `parent`.
fn zombie_children(parent: u32) -> Vec<u32> {
    let mut zombies = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rsplit(')').next() else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") && fields.get(1) == Some(&parent.to_string().as_str()) {
            zombies.push(pid);
        }
    }
    zombies
}

#[test]
fn a_cut_short_upload_is_never_taken_for_a_whole_one() {
    let d = fixture();
    let server = cgi_server(d.path(), &["--body-timeout", "1"]);
    // 3 of 100 declared bytes, then silence: the script is killed, the client told.
    let mut s = server.connect();
    s.write_all(b"POST /cgi-bin/h/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(
        !text.contains("len=3"),
        "the script answered for a partial body: {text}"
    );
}

#[test]
fn inherited_descriptors_never_reach_scripts() {
    let d = fixture();
    let secret = d.path().join("secret-fd");
    std::fs::write(&secret, "inherited-secret").unwrap();
    // The shell opens fd 7 without close-on-exec, then becomes httpserve.
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("exec 7<\"$1\"; shift; exec \"$@\"")
        .arg("sh")
        .arg(&secret)
        .arg(common::binary())
        .args(["0", "-b", "127.0.0.1", "--cgi", "--cgi-user", "root", "-d"])
        .arg(d.path());
    let server = Server::spawn(cmd);
    let res = server.get("/cgi-bin/fd7.sh");
    assert_eq!(res.text(), "no-fd-7\n");
}

/// Starts `count` requests for a script that sleeps `ms`, each on its own connection.
fn sleeping_scripts(port: u16, count: usize, ms: u32) -> Vec<std::thread::JoinHandle<Vec<u8>>> {
    (0..count)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let req = format!(
                    "GET /cgi-bin/h/sleep/{ms} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                );
                s.write_all(req.as_bytes()).unwrap();
                let mut out = Vec::new();
                let _ = s.read_to_end(&mut out);
                out
            })
        })
        .collect()
}

#[test]
fn the_number_of_running_scripts_is_capped() {
    let d = fixture();
    let server = cgi_server(
        d.path(),
        &["--cgi-max-scripts", "2", "--cgi-queue-timeout", "1"],
    );
    let slow = sleeping_scripts(server.port, 2, 2500);
    std::thread::sleep(Duration::from_millis(400));
    // Both slots stay taken for longer than the queue timeout: 503 once it runs out.
    let started = std::time::Instant::now();
    let res = server.get("/cgi-bin/hello.sh");
    assert_eq!(res.status, 503, "{}", res.text());
    assert!(started.elapsed() >= Duration::from_millis(900));
    for handle in slow {
        assert!(String::from_utf8_lossy(&handle.join().unwrap()).contains("slept"));
    }
    // Slots free up again.
    assert_eq!(server.get("/cgi-bin/hello.sh").status, 200);
}

#[test]
fn a_request_past_the_script_cap_waits_for_a_slot() {
    let d = fixture();
    let server = cgi_server(
        d.path(),
        &["--cgi-max-scripts", "1", "--cgi-queue-timeout", "20"],
    );
    let slow = sleeping_scripts(server.port, 1, 1500);
    std::thread::sleep(Duration::from_millis(400));
    let started = std::time::Instant::now();
    let res = server.get("/cgi-bin/hello.sh");
    assert_eq!(res.status, 200, "{}", res.text());
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "it ran before the only slot was free"
    );
    for handle in slow {
        assert!(String::from_utf8_lossy(&handle.join().unwrap()).contains("slept"));
    }
}

#[test]
fn header_blocks_hyper_would_refuse_are_502() {
    let d = fixture();
    let server = cgi_server(d.path(), &[]);
    assert_eq!(server.get("/cgi-bin/badlength.sh").status, 502);
    assert_eq!(server.get("/cgi-bin/continue.sh").status, 502);
}

#[test]
fn symlink_policies_apply_to_scripts() {
    let d = fixture();
    // An absolute link to a script inside the root, and a link to one outside.
    std::os::unix::fs::symlink(
        d.path().join("cgi-bin/hello.sh"),
        d.path().join("cgi-bin/abs.sh"),
    )
    .unwrap();
    std::os::unix::fs::symlink("hello.sh", d.path().join("cgi-bin/rel.sh")).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    write_script(
        &outside.path().join("out.sh"),
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nout\\n'\n",
        0o755,
    );
    std::os::unix::fs::symlink(
        outside.path().join("out.sh"),
        d.path().join("cgi-bin/out.sh"),
    )
    .unwrap();
    let follow = cgi_server(d.path(), &[]);
    for script in ["abs.sh", "rel.sh", "out.sh"] {
        assert_eq!(
            follow.get(&format!("/cgi-bin/{script}")).status,
            200,
            "follow {script}"
        );
    }
    let within = cgi_server(d.path(), &["--symlinks", "within"]);
    assert_eq!(within.get("/cgi-bin/rel.sh").status, 200);
    assert_eq!(within.get("/cgi-bin/abs.sh").status, 404);
    assert_eq!(within.get("/cgi-bin/out.sh").status, 404);
    let never = cgi_server(d.path(), &["--symlinks", "never"]);
    for script in ["abs.sh", "rel.sh", "out.sh"] {
        assert_eq!(
            never.get(&format!("/cgi-bin/{script}")).status,
            404,
            "never {script}"
        );
    }
    assert_eq!(never.get("/cgi-bin/hello.sh").status, 200);
}

#[test]
fn chunked_uploads_are_spooled_not_held_in_memory() {
    // Three 8 MiB chunked uploads at once, in small chunks (the first 64 KiB one byte per
    // chunk, the rest 256 bytes per chunk: a chunk costs hyper ~6 µs, so 8 Mi one-byte
    // chunks would take a minute). Buffered in memory, each cost 10+ MiB of RSS.
    const TOTAL: usize = 8 * 1024 * 1024;
    const ONE_BYTE_PART: usize = 64 * 1024;
    const CLIENTS: usize = 3;
    let d = fixture();
    let server = cgi_server(d.path(), &[]);
    assert_eq!(server.get("/cgi-bin/hello.sh").status, 200);
    let before = common::proc_status_kib(server.pid(), "VmHWM:");
    let data: Vec<u8> = (0..TOTAL as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut wire = Vec::with_capacity(TOTAL * 2);
    for &b in &data[..ONE_BYTE_PART] {
        wire.extend_from_slice(b"1\r\n");
        wire.push(b);
        wire.extend_from_slice(b"\r\n");
    }
    for chunk in data[ONE_BYTE_PART..].chunks(256) {
        wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        wire.extend_from_slice(chunk);
        wire.extend_from_slice(b"\r\n");
    }
    let wire = std::sync::Arc::new(wire);
    let all_sent = std::sync::Arc::new(std::sync::Barrier::new(CLIENTS));
    let port = server.port;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (wire, all_sent) = (wire.clone(), all_sent.clone());
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
                s.write_all(b"POST /cgi-bin/h/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .unwrap();
                s.write_all(&wire).unwrap();
                // Every body is in the server at once before any ends.
                all_sent.wait();
                s.write_all(b"0\r\n\r\n").unwrap();
                let mut out = Vec::new();
                let _ = s.read_to_end(&mut out);
                Response::parse(&out)
            })
        })
        .collect();
    let want = format!("len={TOTAL}\nfnv={:016x}\n", common::fnv1a(&data));
    for client in clients {
        let res = client.join().unwrap();
        assert_eq!(res.status, 200, "{}", res.text());
        assert_eq!(res.text(), want);
    }
    let grown = common::proc_status_kib(server.pid(), "VmHWM:").saturating_sub(before);
    eprintln!("peak RSS grew by {grown} KiB for {CLIENTS} chunked 8 MiB uploads");
    // Less than one body's worth for all three together.
    assert!(grown < 8 * 1024, "peak RSS grew by {grown} KiB");
}

/// Opens a chunked `POST` to the echo script and sends one byte of its body.
fn start_chunked_upload(server: &Server) -> std::net::TcpStream {
    let mut s = server.connect();
    s.write_all(b"POST /cgi-bin/h/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n")
        .unwrap();
    s
}

#[test]
fn a_chunked_body_being_received_holds_no_script_slot() {
    let d = fixture();
    let server = cgi_server(
        d.path(),
        &["--cgi-max-scripts", "2", "--cgi-queue-timeout", "2"],
    );
    let mut uploads: Vec<_> = (0..4).map(|_| start_chunked_upload(&server)).collect();
    std::thread::sleep(Duration::from_millis(300));
    // Four bodies in flight, two slots: a script still starts (a held slot would keep it
    // queued past the 2 s queue timeout: 503).
    let res = server.get("/cgi-bin/hello.sh");
    assert_eq!(res.status, 200, "{}", res.text());
    // Each upload takes a slot once its body is whole, and is answered.
    for s in &mut uploads {
        s.write_all(b"0\r\n\r\n").unwrap();
    }
    let want = format!("len=1\nfnv={:016x}\n", common::fnv1a(b"x"));
    for mut s in uploads {
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let res = Response::parse(&out);
        assert_eq!(res.status, 200, "{}", res.text());
        assert_eq!(res.text(), want);
    }
}

#[test]
fn a_declared_body_being_received_holds_no_script_slot() {
    let d = fixture();
    let server = cgi_server(
        d.path(),
        &["--cgi-max-scripts", "2", "--cgi-queue-timeout", "2"],
    );
    // Four uploads that declare 2 bytes and send one (the red-team's variant of the
    // slot-holding attack, with Content-Length instead of chunks).
    let mut uploads: Vec<_> = (0..4)
        .map(|_| {
            let mut s = server.connect();
            s.write_all(b"POST /cgi-bin/h/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\nx")
                .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let res = server.get("/cgi-bin/hello.sh");
    assert_eq!(res.status, 200, "{}", res.text());
    for s in &mut uploads {
        s.write_all(b"y").unwrap();
    }
    let want = format!("len=2\nfnv={:016x}\n", common::fnv1a(b"xy"));
    for mut s in uploads {
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let res = Response::parse(&out);
        assert_eq!(res.status, 200, "{}", res.text());
        assert_eq!(res.text(), want);
    }
}

#[test]
fn a_script_lingering_after_its_output_is_killed_and_frees_its_slot() {
    let d = fixture();
    let server = cgi_server(
        d.path(),
        &[
            "--cgi-max-scripts",
            "1",
            "--cgi-queue-timeout",
            "8",
            "--cgi-timeout",
            "60",
        ],
    );
    // It closes stdout, so its response is complete, then sleeps 30 s.
    let res = server.get("/cgi-bin/linger.sh");
    assert_eq!((res.status, res.text().as_str()), (200, "done\n"));
    let pid: u32 = res.header("x-pid").unwrap().parse().unwrap();
    // The only slot frees once the exit grace (3 s) ends, not at the 60 s deadline.
    let started = Instant::now();
    let res = server.get("/cgi-bin/hello.sh");
    assert_eq!(res.status, 200, "{}", res.text());
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
    assert!(wait_gone(pid), "the lingering script {pid} survived");
    assert!(
        server.wait_for_stderr("after its output ended; killed"),
        "{}",
        server.stderr()
    );
}

#[test]
fn a_steady_upload_is_not_idle() {
    // A script that reads its whole body before it answers is silent while it reads;
    // bytes still flow in, so the idle timeout must not fire.
    let d = fixture();
    let server = cgi_server(d.path(), &["--cgi-idle-timeout", "1"]);
    // Over the 8 MiB spool limit, so the body streams to the running script (a smaller one
    // is whole in a file before the script starts, and the idle clock never sees it).
    let upload: Vec<u8> = (0..9 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let mut s = server.connect();
    let head = format!(
        "POST /cgi-bin/h/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        upload.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // 30 pieces 100 ms apart: 3 s, three idle timeouts long.
    for piece in upload.chunks(upload.len() / 30 + 1) {
        s.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let res = Response::parse(&out);
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        res.text(),
        format!(
            "len={}\nfnv={:016x}\n",
            upload.len(),
            common::fnv1a(&upload)
        )
    );
    // Idle in both directions is still idle.
    assert_eq!(server.get("/cgi-bin/h/silent").status, 504);
}

#[test]
fn script_stderr_cannot_forge_log_lines() {
    let d = fixture();
    let server = cgi_server(d.path(), &[]);
    let forged = "%0d127.0.0.1%20-%20-%20[02/Dec/2026%2000:00:00]%20%22GET%20/forged%20HTTP/1.1%22%20200%20-%0d%0aalso%1b[31mred";
    let res = server.get(&format!("/cgi-bin/path-to-stderr.sh/x{forged}"));
    assert_eq!(res.text(), "ok\n");
    assert!(
        server.wait_for_stderr("stderr: /x\\x0d127.0.0.1 - - [02/Dec/2026 00:00:00] \"GET /forged"),
        "{}",
        server.stderr()
    );
    assert!(server.wait_for_stderr("stderr: also\\x1b[31mred"));
    let log = server.stderr();
    assert!(!log.contains('\r'), "a raw CR reached the log: {log:?}");
    assert!(!log.contains('\x1b'), "a raw ESC reached the log: {log:?}");
}

#[test]
fn script_stderr_is_capped_per_request() {
    let d = fixture();
    let server = cgi_server(d.path(), &[]);
    // 20,000 lines: the first 1,000 are logged, the rest counted.
    assert_eq!(server.get("/cgi-bin/noisy.sh/lines").text(), "ok\n");
    assert!(
        server.wait_for_stderr("stderr: 209000 more bytes (19000 lines) not logged"),
        "{}",
        server.stderr()
    );
    assert_eq!(server.stderr().matches("stderr: noise line").count(), 1000);
    // 1 MB without a newline: 64 KiB logged (in 4 KiB pieces), the rest counted.
    assert_eq!(server.get("/cgi-bin/noisy.sh/bytes").text(), "ok\n");
    assert!(
        server.wait_for_stderr("stderr: 934464 more bytes (1 lines) not logged"),
        "{}",
        server.stderr()
    );
    let piece = format!("stderr: {}", "x".repeat(4096));
    assert_eq!(server.stderr().matches(&piece).count(), 16);
}

/// `len` bytes as chunks of at most 64 KiB.
fn chunked(len: usize) -> Vec<u8> {
    let mut wire = Vec::with_capacity(len + len / 1000 + 16);
    let mut left = len;
    while left > 0 {
        let n = left.min(64 * 1024);
        wire.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        wire.resize(wire.len() + n, b'b');
        wire.extend_from_slice(b"\r\n");
        left -= n;
    }
    wire
}

#[test]
fn chunked_bodies_being_received_share_a_bounded_spool() {
    // One slot: the spool budget is one 8 MiB body's worth.
    const MIB: usize = 1024 * 1024;
    let d = fixture();
    let server = cgi_server(
        d.path(),
        &["--cgi-max-scripts", "1", "--cgi-queue-timeout", "1"],
    );
    let head = b"POST /cgi-bin/h/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut big = server.connect();
    big.write_all(head).unwrap();
    big.write_all(&chunked(8 * MIB - 64 * 1024)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Nearly all of it is taken, and no slot: a script still runs…
    assert_eq!(server.get("/cgi-bin/hello.sh").status, 200);
    // …but a second body finds no room past its first 64 KiB.
    let mut second = server.connect();
    second.write_all(head).unwrap();
    second.write_all(&chunked(128 * 1024)).unwrap();
    let mut out = Vec::new();
    let _ = second.read_to_end(&mut out);
    let res = Response::parse(&out);
    assert_eq!(res.status, 503, "{}", res.text());
    assert!(
        res.text()
            .contains("Too many request bodies being received")
    );
    // The first is whole and answered; its share is free again afterwards.
    big.write_all(b"0\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = big.read_to_end(&mut out);
    assert!(
        Response::parse(&out)
            .text()
            .starts_with(&format!("len={}\n", 8 * MIB - 64 * 1024))
    );
    let mut third = server.connect();
    third.write_all(head).unwrap();
    third.write_all(&chunked(4 * MIB)).unwrap();
    third.write_all(b"0\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = third.read_to_end(&mut out);
    assert!(
        Response::parse(&out)
            .text()
            .starts_with(&format!("len={}\n", 4 * MIB))
    );
}
