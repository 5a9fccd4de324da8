//! The command line: Python's arguments, and one clear stderr line for every mistake.
#![allow(clippy::unwrap_used)] // a panic in a test is a failure with a message

mod common;

use common::{Server, run_cli};
use std::process::Command;

/// Asserts a failed start: non-zero exit, nothing on stdout, exactly one stderr line
/// that starts with `httpserve: error:` and contains `needle`.
fn assert_one_line_error(args: &[&str], needle: &str) {
    let (code, out, err) = run_cli(args);
    assert!(
        matches!(code, Some(c) if c != 0),
        "{args:?} exited with {code:?}"
    );
    assert_eq!(out, "", "{args:?}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?} printed {err:?}");
    assert!(lines[0].starts_with("httpserve: error: "), "{err}");
    assert!(lines[0].contains(needle), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn port_in_use() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    assert_one_line_error(&[&port, "-b", "127.0.0.1"], "Address already in use");
}

#[test]
fn port_out_of_range_or_not_a_number() {
    assert_one_line_error(&["70000"], "70000");
    assert_one_line_error(&["-1"], "-1");
    assert_one_line_error(&["abc"], "abc");
}

#[test]
fn unknown_host() {
    assert_one_line_error(&["0", "-b", "no-such-host.invalid"], "no-such-host.invalid");
}

#[test]
fn address_not_on_this_machine() {
    assert_one_line_error(&["0", "-b", "192.0.2.1"], "192.0.2.1");
}

#[test]
fn directory_missing_or_not_a_directory() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("missing");
    assert_one_line_error(
        &["0", "-b", "127.0.0.1", "-d", missing.to_str().unwrap()],
        "missing",
    );
    let file = d.path().join("file");
    std::fs::write(&file, "").unwrap();
    assert_one_line_error(
        &["0", "-b", "127.0.0.1", "-d", file.to_str().unwrap()],
        "not a directory",
    );
}

#[test]
fn unknown_flags_extra_arguments_and_bad_protocols() {
    assert_one_line_error(&["--nope"], "--nope");
    assert_one_line_error(&["8000", "2"], "2");
    assert_one_line_error(&["-p", "HTTP/2"], "HTTP/2");
}

#[test]
fn help_and_version_succeed_on_stdout() {
    let (code, out, err) = run_cli(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("Usage: httpserve"), "{out}");
    assert_eq!(err, "");
    let (code, out, _) = run_cli(&["--version"]);
    assert_eq!(code, Some(0));
    assert_eq!(out.trim(), concat!("httpserve ", env!("CARGO_PKG_VERSION")));
}

#[test]
fn directory_flag_and_current_directory() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("here.txt"), "here").unwrap();
    let server = Server::serve(d.path(), &[]);
    assert_eq!(server.get("/here.txt").body, b"here");
    // Without -d: the current directory, as Python.
    let mut cmd = Command::new(common::binary());
    cmd.args(["0", "-b", "127.0.0.1"]).current_dir(d.path());
    let server = Server::spawn(cmd);
    assert_eq!(server.get("/here.txt").body, b"here");
    // A relative -d is resolved against the current directory.
    std::fs::create_dir(d.path().join("sub")).unwrap();
    std::fs::write(d.path().join("sub/in-sub.txt"), "sub").unwrap();
    let mut cmd = Command::new(common::binary());
    cmd.args(["0", "-b", "127.0.0.1", "-d", "sub"])
        .current_dir(d.path());
    let server = Server::spawn(cmd);
    assert_eq!(server.get("/in-sub.txt").body, b"sub");
}

#[test]
fn default_bind_is_dual_stack() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("x"), "x").unwrap();
    let mut cmd = Command::new(common::binary());
    cmd.args(["0", "-d"]).arg(d.path());
    let server = Server::spawn(cmd);
    let port = server.port;
    let ipv6 = server.banner == format!("Serving HTTP on :: port {port} (http://[::]:{port}/) ...");
    let ipv4 = server.banner
        == format!("Serving HTTP on 0.0.0.0 port {port} (http://0.0.0.0:{port}/) ...");
    assert!(ipv6 || ipv4, "{}", server.banner);
    // IPv4 clients reach it either way (the tests' client connects to 127.0.0.1).
    assert_eq!(server.get("/x").body, b"x");
    if ipv6 {
        let stream = std::net::TcpStream::connect(("::1", port));
        assert!(stream.is_ok(), "IPv6 loopback refused");
        // IPv4 clients are logged as Python logs them on a dual-stack socket.
        assert!(
            server.wait_for_stderr("::ffff:127.0.0.1 - - ["),
            "{}",
            server.stderr()
        );
    }
}

#[test]
fn ipv6_bind_banner_brackets_the_url() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        return; // this host has no IPv6 loopback
    }
    let d = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(common::binary());
    cmd.args(["0", "-b", "::1", "-d"]).arg(d.path());
    let server = Server::spawn(cmd);
    let port = server.port;
    assert_eq!(
        server.banner,
        format!("Serving HTTP on ::1 port {port} (http://[::1]:{port}/) ...")
    );
}

#[test]
fn cgi_directories_must_be_url_paths() {
    for bad in ["/", "relative", "/a/../b", "/."] {
        assert_one_line_error(
            &["0", "-b", "127.0.0.1", "--cgi", "--cgi-dir", bad],
            "--cgi-dir",
        );
    }
}

#[test]
fn absurd_numbers_are_usage_errors_not_panics() {
    for (flag, value) in [
        ("--header-timeout", "18446744073709551615"),
        ("--max-connections", "18446744073709551615"),
        ("--max-headers", "20000000"),
        ("--shutdown-grace", "99999999999"),
    ] {
        assert_one_line_error(&["0", flag, value], flag);
    }
    // clap's detail survives on the one line: the missing `--cgi`, the allowed values.
    assert_one_line_error(&["--cgi-pass-env", "HOME"], "--cgi");
    assert_one_line_error(&["--symlinks", "sometimes"], "follow, within, never");
}
