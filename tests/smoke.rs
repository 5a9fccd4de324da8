//! The binary starts, prints Python's banner and serves a file.
#![allow(clippy::unwrap_used)] // a panic in a test is a failure with a message

mod common;
use common::Server;

#[test]
fn serves_a_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "hello").unwrap();
    let server = Server::serve(dir.path(), &[]);
    assert_eq!(
        server.banner,
        format!(
            "Serving HTTP on 127.0.0.1 port {0} (http://127.0.0.1:{0}/) ...",
            server.port
        )
    );
    let res = server.get("/a.txt");
    assert_eq!(res.status, 200);
    assert_eq!(res.body, b"hello");
}
