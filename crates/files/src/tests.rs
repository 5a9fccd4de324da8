use super::*;
use http_body_util::BodyExt;
use tower::ServiceExt;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hello.txt"), "hello world").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/page.html"), "<p>hi</p>").unwrap();
        Self { dir }
    }

    async fn send(&self, req: Request<()>) -> (StatusCode, http::HeaderMap, Bytes) {
        let res = ServeFiles::new(self.dir.path()).oneshot(req).await.unwrap();
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, bytes)
    }

    async fn get(&self, uri: &str) -> (StatusCode, http::HeaderMap, Bytes) {
        self.send(Request::get(uri).body(()).unwrap()).await
    }
}

use bytes::Bytes;

#[tokio::test]
async fn serves_a_file_with_its_headers() {
    let f = Fixture::new();
    let (status, headers, body) = f.get("/hello.txt").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "hello world");
    assert_eq!(headers["content-type"], "text/plain");
    assert_eq!(headers["content-length"], "11");
    assert_eq!(headers["accept-ranges"], "bytes");
    let modified = std::fs::metadata(f.dir.path().join("hello.txt"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        headers["last-modified"],
        httpdate::fmt_http_date(modified).as_str()
    );
    assert!(headers["etag"].to_str().unwrap().ends_with("-b\""));
}

#[tokio::test]
async fn head_has_the_headers_and_no_body() {
    let f = Fixture::new();
    let (status, headers, body) = f.send(Request::head("/hello.txt").body(()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-length"], "11");
    assert!(body.is_empty());
}

#[tokio::test]
async fn paths_are_mapped_like_python() {
    let f = Fixture::new();
    assert_eq!(f.get("/sub/../hello.txt").await.0, StatusCode::OK);
    assert_eq!(f.get("/sub//page.html").await.0, StatusCode::OK);
    assert_eq!(f.get("/../../hello.txt").await.0, StatusCode::OK);
    assert_eq!(f.get("/hello.txt?x=1").await.0, StatusCode::OK);
    assert_eq!(f.get("/sub/page.html").await.1["content-type"], "text/html");
}

#[tokio::test]
async fn missing_dirs_and_trailing_slashes_are_404_pages() {
    let f = Fixture::new();
    for uri in ["/nope", "/hello.txt/", "/hello.txt%2F", "/sub", "/sub/"] {
        let (status, headers, body) = f.get(uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(headers["content-type"], "text/html;charset=utf-8");
        assert!(
            std::str::from_utf8(&body)
                .unwrap()
                .contains("Message: File not found.")
        );
    }
    assert_eq!(f.get("/a%00b").await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn other_methods_are_python_501() {
    let f = Fixture::new();
    let req = Request::builder()
        .method("PUT")
        .uri("/hello.txt")
        .body(())
        .unwrap();
    let (status, _, body) = f.send(req).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert!(
        std::str::from_utf8(&body)
            .unwrap()
            .contains("Unsupported method ('PUT')")
    );
}

async fn ranged(f: &Fixture, range: &str) -> (StatusCode, http::HeaderMap, Bytes) {
    f.send(
        Request::get("/hello.txt")
            .header("range", range)
            .body(())
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn single_ranges_are_206() {
    let f = Fixture::new();
    let (status, headers, body) = ranged(&f, "bytes=0-4").await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, "hello");
    assert_eq!(headers["content-range"], "bytes 0-4/11");
    assert_eq!(headers["content-length"], "5");
    assert_eq!(ranged(&f, "bytes=-5").await.2, "world");
    assert_eq!(ranged(&f, "bytes=6-").await.2, "world");
    // An end past the file is clamped, even one past u64.
    assert_eq!(ranged(&f, "bytes=6-99999999999").await.2, "world");
    assert_eq!(
        ranged(&f, "bytes=6-99999999999999999999999999").await.2,
        "world"
    );
    // A suffix longer than the file is the whole file (RFC 9110 §14.1.2).
    let (status, headers, body) = ranged(&f, "bytes=-100").await;
    assert_eq!(
        (status, body.as_ref()),
        (StatusCode::PARTIAL_CONTENT, &b"hello world"[..])
    );
    assert_eq!(headers["content-range"], "bytes 0-10/11");
    assert_eq!(
        ranged(&f, "bytes=-99999999999999999999999").await.2,
        "hello world"
    );
    assert_eq!(ranged(&f, "BYTES=0-0").await.2, "h");
}

#[tokio::test]
async fn hostile_ranges_get_bounded_answers() {
    let f = Fixture::new();
    for range in [
        "bytes=20-30",
        "bytes=5-2",
        "bytes=99999999999999999999999-",
        "bytes=abc",
    ] {
        let (status, headers, _) = ranged(&f, range).await;
        assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(headers["content-range"], "bytes */11");
    }
    let many = format!("bytes={}", vec!["0-1"; 500].join(","));
    let (status, _, body) = ranged(&f, &many).await;
    assert_eq!((status, body.len()), (StatusCode::OK, 11));
    // Not a bytes range at all: ignored.
    assert_eq!(ranged(&f, "items=0-1").await.0, StatusCode::OK);
}

#[tokio::test]
async fn stale_if_range_gets_the_whole_file() {
    let f = Fixture::new();
    let req = Request::get("/hello.txt")
        .header("range", "bytes=0-4")
        .header("if-range", "\"stale\"")
        .body(())
        .unwrap();
    let (status, _, body) = f.send(req).await;
    assert_eq!((status, body.len()), (StatusCode::OK, 11));
    // An If-Range that cannot be parsed can never match.
    for garbage in [
        "garbage",
        "\"unterminated",
        "Fri, 31 Dec 99999 23:59:59 GMT",
    ] {
        let req = Request::get("/hello.txt")
            .header("range", "bytes=0-4")
            .header("if-range", garbage)
            .body(())
            .unwrap();
        assert_eq!(f.send(req).await.0, StatusCode::OK, "{garbage}");
    }
    let etag = f.get("/hello.txt").await.1["etag"].clone();
    let req = Request::get("/hello.txt")
        .header("range", "bytes=0-4")
        .header("if-range", etag)
        .body(())
        .unwrap();
    assert_eq!(f.send(req).await.0, StatusCode::PARTIAL_CONTENT);
}

#[tokio::test]
async fn large_files_stream_in_chunks_unchanged() {
    let f = Fixture::new();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(f.dir.path().join("big.bin"), &data).unwrap();
    let res = ServeFiles::new(f.dir.path())
        .oneshot(Request::get("/big.bin").body(()).unwrap())
        .await
        .unwrap();
    let mut body = res.into_body();
    let mut frames = 0;
    let mut got = Vec::new();
    while let Some(frame) = body.frame().await {
        got.extend_from_slice(frame.unwrap().data_ref().unwrap());
        frames += 1;
    }
    assert_eq!(got, data);
    assert!(frames > 1, "a 3 MB file must not be read in one piece");
}

#[tokio::test]
async fn a_file_truncated_while_sent_ends_the_body_with_an_error() {
    let f = Fixture::new();
    let path = f.dir.path().join("shrinks.bin");
    std::fs::write(&path, vec![7u8; 1_000_000]).unwrap();
    let res = ServeFiles::new(f.dir.path())
        .oneshot(Request::get("/shrinks.bin").body(()).unwrap())
        .await
        .unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(300_000)
        .unwrap();
    let mut body = res.into_body();
    let mut seen = 0;
    let mut error = false;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => seen += frame.data_ref().map_or(0, Bytes::len),
            Err(_) => error = true,
        }
    }
    assert!(error);
    assert!(seen <= 300_000);
}

#[tokio::test]
async fn special_files_are_refused_without_blocking() {
    let f = Fixture::new();
    let status = std::process::Command::new("mkfifo")
        .arg(f.dir.path().join("fifo"))
        .status()
        .unwrap();
    assert!(status.success());
    let answer = tokio::time::timeout(std::time::Duration::from_secs(5), f.get("/fifo")).await;
    assert_eq!(answer.unwrap().0, StatusCode::NOT_FOUND);
}

#[test]
fn content_types_follow_python() {
    for (name, mime) in [
        ("a.txt", "text/plain"),
        ("a.TXT", "text/plain"),
        ("a.html", "text/html"),
        ("a.js", "text/javascript"),
        ("a.mjs", "text/javascript"),
        ("a.xml", "application/xml"),
        ("a.tar.gz", "application/gzip"),
        ("a.GZ", "application/gzip"),
        ("a.Z", "application/octet-stream"),
        ("a.bz2", "application/x-bzip2"),
        ("a.xz", "application/x-xz"),
        ("a.wasm", "application/wasm"),
        ("noext", "application/octet-stream"),
        (".hidden", "application/octet-stream"),
        ("a.nosuchext", "application/octet-stream"),
    ] {
        assert_eq!(content_type(Path::new(name)), mime, "{name}");
    }
}
