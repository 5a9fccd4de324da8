//! The helper answers as a CGI program. (This test also makes `cargo test --workspace`
//! build the binary that the black-box CGI tests in the top-level `tests/` copy.)

use std::process::Command;

#[test]
fn env_mode_prints_a_cgi_response() {
    let out = Command::new(env!("CARGO_BIN_EXE_cgi-helper"))
        .env_clear()
        .env("PATH_INFO", "/env")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("Content-Type: text/plain\n"), "{text}");
    assert!(text.contains("\nGATEWAY_INTERFACE=CGI/1.1\n"), "{text}");
}

#[test]
fn status_mode() {
    let out = Command::new(env!("CARGO_BIN_EXE_cgi-helper"))
        .env("PATH_INFO", "/status/418")
        .output()
        .unwrap();
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .starts_with("Status: 418 Custom\n")
    );
}
