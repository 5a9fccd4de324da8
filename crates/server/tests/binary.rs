//! The binary's own smoke test. (Having an integration test here also makes
//! `cargo test --workspace` build the `httpserve` binary the black-box tests in the
//! top-level `tests/` drive.)

use std::process::Command;

#[test]
fn help_lists_pythons_arguments() {
    let out = Command::new(env!("CARGO_BIN_EXE_httpserve"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "[PORT]",
        "--bind <ADDRESS>",
        "--directory <DIRECTORY>",
        "--protocol <VERSION>",
        "--cgi",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}
