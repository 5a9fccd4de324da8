use super::*;
use http::StatusCode;
use http_body_util::BodyExt;
use std::convert::Infallible;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use tower::{ServiceExt, service_fn};
use tower_layer::Layer;

async fn get(root: &Path, method: Method, uri: &str) -> (StatusCode, http::HeaderMap, String) {
    let inner = service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::from("inner")))
    });
    let req = Request::builder().method(method).uri(uri).body(()).unwrap();
    let res = ListingLayer::new(root)
        .layer(inner)
        .oneshot(req)
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

#[tokio::test]
async fn page_is_byte_identical_to_python() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("sub")).unwrap();
    std::fs::write(d.path().join("sub/file"), "").unwrap();
    let (status, headers, body) = get(d.path(), Method::GET, "/sub/").await;
    assert_eq!(status, StatusCode::OK);
    // python3 -m http.server 3.11, GET /sub/ (228 bytes).
    let python = "<!DOCTYPE HTML>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Directory listing for /sub/</title>\n</head>\n<body>\n<h1>Directory listing for /sub/</h1>\n<hr>\n<ul>\n<li><a href=\"file\">file</a></li>\n</ul>\n<hr>\n</body>\n</html>\n";
    assert_eq!(body, python);
    assert_eq!(headers["content-length"], "228");
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    // Just created: too fresh for a one-second date, but the ETag is there.
    assert!(headers.get("last-modified").is_none());
    assert!(headers["etag"].to_str().unwrap().starts_with("W/\"d"));
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::open(d.path().join("sub"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let (_, headers, _) = get(d.path(), Method::GET, "/sub/").await;
    assert_eq!(
        headers["last-modified"],
        httpdate::fmt_http_date(old).as_str()
    );
}

#[tokio::test]
async fn empty_directory() {
    let d = tempfile::tempdir().unwrap();
    let (_, headers, body) = get(d.path(), Method::GET, "/").await;
    assert!(body.contains("<ul>\n</ul>"));
    // Python's /emptydir/ page is 205 bytes; "/" is 9 bytes shorter, twice.
    assert_eq!(
        headers["content-length"],
        (205 - 2 * "emptydir/".len()).to_string()
    );
}

#[tokio::test]
async fn hostile_names_symlinks_and_order() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    for name in [
        "\"dq\".txt",
        "%A4.txt",
        "&amp.txt",
        "'sq'.txt",
        ".hidden",
        "a.GZ",
        "a.gz",
        "q?.txt",
        "Zed.txt",
        "é.txt",
        "h#.txt",
    ] {
        std::fs::write(p.join(name), "").unwrap();
    }
    std::fs::create_dir(p.join("<b>.dir")).unwrap();
    std::fs::create_dir(p.join("d ir")).unwrap();
    std::fs::write(p.join(OsStr::from_bytes(b"raw\xff.bin")), "").unwrap();
    std::os::unix::fs::symlink(p.join("Zed.txt"), p.join("link")).unwrap();
    std::os::unix::fs::symlink(p.join("d ir"), p.join("dlink")).unwrap();
    std::os::unix::fs::symlink(p.join("gone"), p.join("brokenlink")).unwrap();
    let (_, _, body) = get(p, Method::GET, "/").await;
    let items: Vec<&str> = body.lines().filter(|l| l.starts_with("<li>")).collect();
    // The order and spelling Python 3.11 gives for the same names (reference §7), plus
    // `h#.txt`; the non-UTF-8 name links with its raw byte (Python: `%ED%B3%BF`).
    assert_eq!(
        items,
        [
            r#"<li><a href="%22dq%22.txt">"dq".txt</a></li>"#,
            r#"<li><a href="%25A4.txt">%A4.txt</a></li>"#,
            r#"<li><a href="%26amp.txt">&amp;amp.txt</a></li>"#,
            r#"<li><a href="%27sq%27.txt">'sq'.txt</a></li>"#,
            r#"<li><a href=".hidden">.hidden</a></li>"#,
            r#"<li><a href="%3Cb%3E.dir/">&lt;b&gt;.dir/</a></li>"#,
            r#"<li><a href="a.GZ">a.GZ</a></li>"#,
            r#"<li><a href="a.gz">a.gz</a></li>"#,
            r#"<li><a href="brokenlink">brokenlink@</a></li>"#,
            r#"<li><a href="d%20ir/">d ir/</a></li>"#,
            r#"<li><a href="dlink/">dlink@</a></li>"#,
            r#"<li><a href="h%23.txt">h#.txt</a></li>"#,
            r#"<li><a href="link">link@</a></li>"#,
            r#"<li><a href="q%3F.txt">q?.txt</a></li>"#,
            r#"<li><a href="raw%FF.bin">raw�.bin</a></li>"#,
            r#"<li><a href="Zed.txt">Zed.txt</a></li>"#,
            r#"<li><a href="%C3%A9.txt">é.txt</a></li>"#,
        ]
    );
}

#[tokio::test]
async fn title_is_the_decoded_escaped_path_without_query() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("<i> x")).unwrap();
    let (_, _, body) = get(d.path(), Method::GET, "/%3Ci%3E%20x/?q=%3Cb%3E").await;
    assert!(
        body.contains("<title>Directory listing for /&lt;i&gt; x/</title>"),
        "{body}"
    );
}

#[tokio::test]
async fn without_trailing_slash_links_still_resolve() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("sub")).unwrap();
    std::fs::write(d.path().join("sub/f"), "").unwrap();
    let (_, _, body) = get(d.path(), Method::GET, "/sub").await;
    assert!(body.contains(r#"<a href="sub/f">f</a>"#));
}

#[tokio::test]
async fn head_has_headers_only() {
    let d = tempfile::tempdir().unwrap();
    let (status, headers, body) = get(d.path(), Method::HEAD, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_empty());
    assert_ne!(headers["content-length"], "0");
}

#[tokio::test]
async fn files_and_other_methods_go_to_the_inner_service() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("f"), "").unwrap();
    assert_eq!(get(d.path(), Method::GET, "/f").await.2, "inner");
    assert_eq!(get(d.path(), Method::GET, "/missing").await.2, "inner");
    assert_eq!(get(d.path(), Method::POST, "/").await.2, "inner");
}

#[tokio::test]
async fn undecodable_names_sort_as_pythons_surrogates() {
    let d = tempfile::tempdir().unwrap();
    for name in [
        &b"raw\xff.bin"[..],
        b"raw\xfe.bin",
        "raw\u{ff01}.bin".as_bytes(),
    ] {
        std::fs::write(d.path().join(OsStr::from_bytes(name)), "").unwrap();
    }
    let (_, _, body) = get(d.path(), Method::GET, "/").await;
    let hrefs: Vec<&str> = body
        .lines()
        .filter_map(|l| l.split("href=\"").nth(1)?.split('"').next())
        .collect();
    // Python 3.11: raw%ED%B3%BE.bin, raw%ED%B3%BF.bin, raw%EF%BC%81.bin.
    assert_eq!(hrefs, ["raw%FE.bin", "raw%FF.bin", "raw%EF%BC%81.bin"]);
}
