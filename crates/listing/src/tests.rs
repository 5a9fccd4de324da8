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
    request(&ListingLayer::new(root), method, uri).await
}

async fn request(
    layer: &ListingLayer,
    method: Method,
    uri: &str,
) -> (StatusCode, http::HeaderMap, String) {
    let inner = service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::from("inner")))
    });
    let req = Request::builder()
        .method(method.clone())
        .uri(uri)
        .body(())
        .unwrap();
    let res = layer.layer(inner).oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    // The length is sent before the page is rendered: it must be the page's.
    if method == Method::GET
        && parts.status == StatusCode::OK
        && let Some(len) = parts.headers.get("content-length")
    {
        assert_eq!(len.to_str().unwrap(), bytes.len().to_string(), "{uri}");
    }
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// A directory whose timestamps are old enough to be trusted (the cache's rule).
fn settled_dir(names: &[&str]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for name in names {
        std::fs::write(d.path().join(name), "").unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    d
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

#[tokio::test]
async fn head_and_unread_bodies_render_nothing_and_get_renders_once() {
    let d = settled_dir(&["a", "b"]);
    let layer = ListingLayer::new(d.path());
    let (status, headers, body) = request(&layer, Method::HEAD, "/").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    // The head carries the page's exact length, from the read alone.
    let len: usize = headers["content-length"].to_str().unwrap().parse().unwrap();
    assert_eq!(layer.listings.cached().1, 0, "a HEAD rendered the page");
    // A GET whose body is dropped unread (what a 304 does) renders nothing either.
    let inner =
        service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    let res = layer
        .layer(inner)
        .oneshot(Request::get("/").body(()).unwrap())
        .await
        .unwrap();
    assert!(res.headers().contains_key("etag"));
    drop(res);
    tokio::task::yield_now().await;
    assert_eq!(
        layer.listings.cached().1,
        0,
        "an unread body rendered the page"
    );
    let (_, _, page) = request(&layer, Method::GET, "/").await;
    assert_eq!(page.len(), len);
    assert_eq!(layer.listings.cached().1, 1);
}

#[tokio::test]
async fn concurrent_requests_share_one_page() {
    let d = settled_dir(&["x", "y", "z"]);
    let layer = ListingLayer::new(d.path());
    let inner =
        service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    let mut lists = Vec::new();
    let responses = futures_join(
        (0..8)
            .map(|_| {
                Box::pin(
                    layer
                        .layer(inner)
                        .oneshot(Request::get("/").body(()).unwrap()),
                )
            })
            .collect(),
    )
    .await;
    for res in responses {
        let mut body = res.unwrap().into_body();
        let _head = body.frame().await.unwrap().unwrap();
        let list = body.frame().await.unwrap().unwrap().into_data().unwrap();
        lists.push(list);
    }
    // One render: every response sends the very same bytes.
    assert!(lists.iter().all(|l| l.as_ptr() == lists[0].as_ptr()));
    assert!(String::from_utf8_lossy(&lists[0]).contains(r#"href="y""#));
}

/// Polls all futures to completion on this task, concurrently.
async fn futures_join<F: std::future::Future + Unpin>(mut futures: Vec<F>) -> Vec<F::Output> {
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, slot) in futures.iter_mut().zip(&mut out) {
            if slot.is_none() {
                match std::pin::Pin::new(future).poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

#[tokio::test]
async fn a_new_entry_shows_at_once_cached_or_not() {
    for settled in [false, true] {
        let d = if settled {
            settled_dir(&["old"])
        } else {
            let d = tempfile::tempdir().unwrap();
            std::fs::write(d.path().join("old"), "").unwrap();
            d
        };
        let layer = ListingLayer::new(d.path());
        let (_, _, before) = request(&layer, Method::GET, "/").await;
        assert!(before.contains("old") && !before.contains("new"));
        assert_eq!(layer.listings.cached().1, usize::from(settled));
        std::fs::write(d.path().join("new"), "").unwrap();
        let (_, _, after) = request(&layer, Method::GET, "/").await;
        assert!(
            after.contains(r#"href="new""#),
            "settled {settled}: {after}"
        );
        let (_, headers, _) = request(&layer, Method::HEAD, "/").await;
        assert_eq!(
            headers["content-length"].to_str().unwrap(),
            after.len().to_string()
        );
    }
}

#[tokio::test]
async fn a_page_over_the_budget_is_served_but_not_kept() {
    let d = settled_dir(&["one", "two"]);
    let layer = ListingLayer::new(d.path()).cache_budget(10);
    let (status, _, page) = request(&layer, Method::GET, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"href="two""#));
    assert_eq!(layer.listings.cached(), (0, 0));
    // Within the budget it is kept, and counted.
    let layer = ListingLayer::new(d.path());
    request(&layer, Method::GET, "/").await;
    let (bytes, pages) = layer.listings.cached();
    assert_eq!(pages, 1);
    assert_eq!(
        bytes,
        crate::cache::SLOT_OVERHEAD + 2 * "<li><a href=\"one\">one</a></li>\n".len()
    );
}

#[tokio::test]
async fn links_are_listed_fresh_and_never_cached() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("target")).unwrap();
    std::os::unix::fs::symlink(d.path().join("target"), d.path().join("link")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let layer = ListingLayer::new(d.path());
    let (_, _, page) = request(&layer, Method::GET, "/").await;
    assert!(page.contains(r#"<a href="link/">link@</a>"#), "{page}");
    // The link's target turns into a file: the directory itself does not change.
    std::fs::remove_dir(d.path().join("target")).unwrap();
    std::fs::write(d.path().join("target"), "").unwrap();
    let (_, _, page) = request(&layer, Method::GET, "/").await;
    assert!(page.contains(r#"<a href="link">link@</a>"#), "{page}");
    assert_eq!(layer.listings.cached().1, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_render_at_a_time_still_serves_everyone() {
    let d = tempfile::tempdir().unwrap();
    for dir in ["a", "b", "c"] {
        std::fs::create_dir(d.path().join(dir)).unwrap();
        std::fs::write(d.path().join(dir).join(format!("in-{dir}")), "").unwrap();
    }
    let layer = ListingLayer::new(d.path()).render_limit(1);
    let (a, b, c) = tokio::join!(
        request(&layer, Method::GET, "/a/"),
        request(&layer, Method::GET, "/b/"),
        request(&layer, Method::HEAD, "/c/"),
    );
    assert!(a.2.contains(r#"href="in-a""#));
    assert!(b.2.contains(r#"href="in-b""#));
    assert_eq!(c.0, StatusCode::OK);
}
