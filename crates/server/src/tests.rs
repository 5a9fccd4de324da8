use super::*;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn fixture() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("sub")).unwrap();
    std::fs::write(d.path().join("sub/f.txt"), "in sub").unwrap();
    std::fs::write(d.path().join("top.txt"), "top").unwrap();
    d
}

async fn send(app: Router, uri: &str) -> (StatusCode, http::HeaderMap, String) {
    let res = app
        .oneshot(
            Request::get(uri)
                .header("host", "localhost")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn mounted_under_a_prefix_of_an_existing_app() {
    let d = fixture();
    let app = Router::new()
        .route("/", get(|| async { "app root" }))
        .nest_service("/files", HttpServe::new(d.path()).into_router());
    assert_eq!(send(app.clone(), "/").await.2, "app root");
    assert_eq!(send(app.clone(), "/files/top.txt").await.2, "top");
    assert_eq!(send(app.clone(), "/files/sub/f.txt").await.2, "in sub");
    // The redirect names the full path, prefix included.
    let (status, headers, _) = send(app.clone(), "/files/sub?x=1").await;
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(headers["location"], "/files/sub/?x=1");
    // Listing links are relative, so they resolve under the prefix.
    let (status, _, html) = send(app.clone(), "/files/sub/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"<a href="f.txt">f.txt</a>"#));
    let (status, headers, _) = send(app, "/files/missing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["server"], SERVER_HEADER);
}

#[tokio::test]
async fn merged_as_the_fallback_of_an_app() {
    let d = fixture();
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .merge(HttpServe::new(d.path()).into_router());
    assert_eq!(send(app.clone(), "/health").await.2, "ok");
    assert_eq!(send(app.clone(), "/top.txt").await.2, "top");
    assert_eq!(send(app, "/sub").await.1["location"], "/sub/");
}

#[tokio::test]
async fn server_header_is_configurable() {
    let d = fixture();
    let app = HttpServe::new(d.path()).server_header(None).into_router();
    assert!(send(app, "/top.txt").await.1.get("server").is_none());
    let app = HttpServe::new(d.path())
        .server_header(Some(HeaderValue::from_static("mine")))
        .into_router();
    assert_eq!(send(app, "/top.txt").await.1["server"], "mine");
}

#[tokio::test]
async fn index_files_are_configurable() {
    let d = fixture();
    std::fs::write(d.path().join("sub/home.html"), "home").unwrap();
    let app = HttpServe::new(d.path())
        .index_files(["home.html"])
        .into_router();
    assert_eq!(send(app, "/sub/").await.2, "home");
}

#[tokio::test]
async fn host_must_be_present_single_and_valid_for_http_1_1() {
    let d = fixture();
    let app = HttpServe::new(d.path()).into_router::<()>();
    let send_with = |hosts: &'static [&'static str], version| {
        let app = app.clone();
        async move {
            let mut req = Request::get("/top.txt").version(version);
            for host in hosts {
                req = req.header("host", *host);
            }
            app.oneshot(req.body(Body::empty()).unwrap())
                .await
                .unwrap()
                .status()
        }
    };
    use http::Version;
    assert_eq!(
        send_with(&[], Version::HTTP_11).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send_with(&["a", "b"], Version::HTTP_11).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send_with(&["a b"], Version::HTTP_11).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send_with(&["user@host"], Version::HTTP_11).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send_with(&["example.com:8080"], Version::HTTP_11).await,
        StatusCode::OK
    );
    assert_eq!(
        send_with(&["[::1]:8000"], Version::HTTP_11).await,
        StatusCode::OK
    );
    assert_eq!(send_with(&[""], Version::HTTP_11).await, StatusCode::OK);
    // HTTP/1.0 may omit it; HTTP/2 carries the authority in the URI instead.
    assert_eq!(send_with(&[], Version::HTTP_10).await, StatusCode::OK);
    assert_eq!(send_with(&[], Version::HTTP_2).await, StatusCode::OK);
    // Off for apps that check it themselves.
    let app = HttpServe::new(d.path())
        .validate_host(false)
        .into_router::<()>();
    let res = app
        .oneshot(Request::get("/top.txt").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_header_line_over_python_s_limit_is_a_431_for_library_users_too() {
    let d = fixture();
    // Host checks off: the line limit holds regardless.
    let app = HttpServe::new(d.path())
        .validate_host(false)
        .into_router::<()>();
    let with_line = |len: usize| {
        let value = "v".repeat(len - "X-Foo: \r\n".len());
        Request::get("/top.txt")
            .header("x-foo", value)
            .body(Body::empty())
            .unwrap()
    };
    let res = app.clone().oneshot(with_line(65_536)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.oneshot(with_line(65_537)).await.unwrap();
    assert_eq!(res.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(res.headers()["connection"], "close");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("Message: Line too long."));
}
