use super::*;
use std::convert::Infallible;
use std::path::Path;
use tower::{ServiceExt, service_fn};
use tower_layer::Layer;

fn fixture() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    for dir in ["both", "htm", "none", "dirindex/index.html", "unreadable"] {
        std::fs::create_dir_all(p.join(dir)).unwrap();
    }
    std::fs::write(p.join("both/index.html"), "html").unwrap();
    std::fs::write(p.join("both/index.htm"), "htm").unwrap();
    std::fs::write(p.join("htm/index.htm"), "htm").unwrap();
    std::fs::write(p.join("file.txt"), "f").unwrap();
    std::os::unix::fs::symlink(p.join("both"), p.join("dirlink")).unwrap();
    d
}

/// Sends `uri` through an `Index` over an inner service that reports the URI it saw and
/// whether the lookup it was handed is a file.
async fn send(root: &Path, layer: IndexLayer, uri: &str) -> (StatusCode, String, Option<String>) {
    let root = Root::new(root);
    let inner = service_fn(move |req: Request<()>| {
        let root = root.clone();
        async move {
            let kind = match Resolved::cached(&req, &root).map(|r| r.entry().is_file_entry()) {
                Some(true) => "file",
                Some(false) => "other",
                None => "none",
            };
            Ok::<_, Infallible>(Response::new(format!("{} {kind}", req.uri())))
        }
    });
    let res = layer
        .layer(inner)
        .oneshot(Request::get(uri).body(()).unwrap())
        .await
        .unwrap();
    let location = res
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    let status = res.status();
    let body = match res.into_body() {
        Either::Left(s) => s,
        Either::Right(_) => String::new(),
    };
    (status, body, location)
}

trait IsFile {
    fn is_file_entry(&self) -> bool;
}
impl IsFile for Entry {
    fn is_file_entry(&self) -> bool {
        matches!(self, Entry::File { .. })
    }
}

#[tokio::test]
async fn redirects_directories_without_slash_keeping_the_query() {
    let d = fixture();
    let layer = IndexLayer::new(d.path());
    let (status, _, location) = send(d.path(), layer.clone(), "/both").await;
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(location.as_deref(), Some("/both/"));
    let (_, _, location) = send(d.path(), layer.clone(), "/both?a=1&b=%20").await;
    assert_eq!(location.as_deref(), Some("/both/?a=1&b=%20"));
    let (_, _, location) = send(d.path(), layer.clone(), "/dirlink").await;
    assert_eq!(location.as_deref(), Some("/dirlink/"));
    let (_, _, location) = send(d.path(), layer, "/none/../both").await;
    assert_eq!(location.as_deref(), Some("/none/../both/"));
}

#[tokio::test]
async fn redirects_never_leave_the_host() {
    let d = fixture();
    let layer = IndexLayer::new(d.path());
    for (uri, want) in [
        ("//both", "/both/"),
        ("///both", "/both/"),
        ("/\\evil.com/%2e%2e%2fboth", "/evil.com/%2e%2e%2fboth/"),
        ("//evil.com/..%2f..%2fboth", "/evil.com/..%2f..%2fboth/"),
    ] {
        let (status, _, location) = send(d.path(), layer.clone(), uri).await;
        assert_eq!(status, StatusCode::MOVED_PERMANENTLY, "{uri}");
        assert_eq!(location.as_deref(), Some(want), "{uri}");
    }
}

#[tokio::test]
async fn index_html_wins_over_index_htm() {
    let d = fixture();
    let layer = IndexLayer::new(d.path());
    assert_eq!(
        send(d.path(), layer.clone(), "/both/").await.1,
        "/both/index.html file"
    );
    assert_eq!(
        send(d.path(), layer.clone(), "/htm/").await.1,
        "/htm/index.htm file"
    );
    assert_eq!(
        send(d.path(), layer.clone(), "/both/?q=1").await.1,
        "/both/index.html?q=1 file"
    );
    // The decoded path counts: `%2F` is a trailing slash (as in Python 3.14).
    assert_eq!(
        send(d.path(), layer, "/both%2F").await.1,
        "/both%2Findex.html file"
    );
}

#[tokio::test]
async fn directories_without_an_index_pass_through() {
    let d = fixture();
    let layer = IndexLayer::new(d.path());
    assert_eq!(
        send(d.path(), layer.clone(), "/none/").await.1,
        "/none/ other"
    );
    // A directory named index.html is not an index.
    assert_eq!(
        send(d.path(), layer.clone(), "/dirindex/").await.1,
        "/dirindex/ other"
    );
    assert_eq!(
        send(d.path(), layer.clone(), "/file.txt").await.1,
        "/file.txt file"
    );
    assert_eq!(send(d.path(), layer, "/missing").await.1, "/missing other");
}

#[tokio::test]
async fn index_names_are_configurable() {
    let d = fixture();
    let layer = IndexLayer::new(d.path()).index_files(["index.htm"]);
    assert_eq!(
        send(d.path(), layer, "/both/").await.1,
        "/both/index.htm file"
    );
    let none = IndexLayer::new(d.path()).index_files(Vec::<String>::new());
    assert_eq!(send(d.path(), none, "/both/").await.1, "/both/ other");
}

#[tokio::test]
async fn other_methods_pass_through_untouched() {
    let d = fixture();
    let root = Root::new(d.path());
    let inner = service_fn(|req: Request<()>| async move {
        Ok::<_, Infallible>(Response::new(req.uri().to_string()))
    });
    let res = IndexLayer::new(&root)
        .layer(inner)
        .oneshot(Request::post("/both").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn redirects_name_the_mount_prefix() {
    #[derive(Clone)]
    struct Mounted(&'static str);
    let d = fixture();
    let layer = IndexLayer::new(d.path()).mount_prefix(|ext| ext.get::<Mounted>().map(|m| m.0));
    let inner =
        service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    let mut req = Request::get("/both?x=1").body(()).unwrap();
    req.extensions_mut().insert(Mounted("/files"));
    let res = layer.layer(inner).oneshot(req).await.unwrap();
    assert_eq!(res.headers()["location"], "/files/both/?x=1");
}
