use super::*;
use axum::body::Body;
use http_body_util::BodyExt;
use std::os::unix::fs::PermissionsExt;
use tower::{ServiceExt, service_fn};
use tower_layer::Layer;

/// A document root with `cgi-bin/` holding shell scripts, readable by `nobody`.
fn fixture() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let bin = d.path().join("cgi-bin");
    std::fs::create_dir(&bin).unwrap();
    for dir in [d.path(), bin.as_path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let scripts = [
        (
            "env.sh",
            "printf 'Content-Type: text/plain\\n\\n'; printf 'SN=%s PI=%s QS=%s RM=%s\\n' \"$SCRIPT_NAME\" \"$PATH_INFO\" \"$QUERY_STRING\" \"$REQUEST_METHOD\"",
        ),
        (
            "status.sh",
            "printf 'Status: 404 Gone Fishing\\nContent-Type: text/plain\\n\\nnot here\\n'",
        ),
        ("local.sh", "printf 'Location: /static.txt\\n\\n'"),
        (
            "echo.sh",
            "printf 'Content-Type: text/plain\\n\\n'; head -c \"$CONTENT_LENGTH\"",
        ),
        (
            "stdin.sh",
            "printf 'Content-Type: text/plain\\n\\n'; head -c \"$CONTENT_LENGTH\"; if printf x >&0; then echo ' writable'; else echo ' read-only'; fi 2>/dev/null",
        ),
    ];
    for (name, body) in scripts {
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    d
}

async fn text(
    res: Response<impl http_body::Body<Data = bytes::Bytes, Error: std::fmt::Debug>>,
) -> (StatusCode, String) {
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The layer over an inner service that answers "static" for everything.
fn layered(
    root: PathBuf,
) -> Cgi<
    impl tower_service::Service<
        Request<Body>,
        Response = Response<String>,
        Error = Infallible,
        Future: Send,
    > + Clone
    + Send,
> {
    let inner = service_fn(|req: Request<Body>| async move {
        Ok::<_, Infallible>(Response::new(format!("static {}", req.uri())))
    });
    CgiLayer::new(CgiConfig::new(root).run_as(RunAs::current_user())).layer(inner)
}

#[tokio::test]
async fn the_layer_runs_scripts_and_passes_the_rest_on() {
    let d = fixture();
    let svc = layered(d.path().to_path_buf());
    let res = svc
        .clone()
        .oneshot(
            Request::get("/cgi-bin/env.sh/a/b?x=1")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        text(res).await,
        (
            StatusCode::OK,
            "SN=/cgi-bin/env.sh PI=/a/b QS=x=1 RM=GET\n".to_owned()
        )
    );
    let res = svc
        .clone()
        .oneshot(Request::get("/other.txt").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(text(res).await.1, "static /other.txt");
    let res = svc
        .oneshot(Request::post("/other.txt").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_IMPLEMENTED);
}

#[tokio::test]
async fn status_header_sets_the_status() {
    let d = fixture();
    let res = layered(d.path().to_path_buf())
        .oneshot(
            Request::get("/cgi-bin/status.sh")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        text(res).await,
        (StatusCode::NOT_FOUND, "not here\n".to_owned())
    );
}

#[tokio::test]
async fn local_redirects_go_through_the_inner_service() {
    let d = fixture();
    let res = layered(d.path().to_path_buf())
        .oneshot(
            Request::get("/cgi-bin/local.sh")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        text(res).await,
        (StatusCode::OK, "static /static.txt".to_owned())
    );
}

#[tokio::test]
async fn post_bodies_reach_stdin() {
    let d = fixture();
    let req = Request::post("/cgi-bin/echo.sh")
        .header("content-length", "5")
        .body(Body::from("hello"))
        .unwrap();
    let res = layered(d.path().to_path_buf()).oneshot(req).await.unwrap();
    assert_eq!(text(res).await, (StatusCode::OK, "hello".to_owned()));
}

/// A chunked request body: `len` bytes, one per frame, with no length known beforehand.
struct Drip {
    sent: usize,
    len: usize,
}

impl http_body::Body for Drip {
    type Data = bytes::Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Infallible>>> {
        if self.sent == self.len {
            return Poll::Ready(None);
        }
        let byte = b'a' + (self.sent % 26) as u8;
        self.sent += 1;
        Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from(vec![
            byte,
        ])))))
    }
}

#[tokio::test]
async fn a_chunked_body_is_spooled_and_read_only_on_stdin() {
    let d = fixture();
    let svc = CgiService::new(
        CgiConfig::new(d.path().join("cgi-bin"))
            .run_as(RunAs::current_user())
            .max_buffered_body(100_000),
    );
    let req = Request::post("/stdin.sh")
        .body(Drip {
            sent: 0,
            len: 100_000,
        })
        .unwrap();
    let (status, text) = text(svc.clone().oneshot(req).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let want: String = (0..100_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    assert_eq!(text, format!("{want} read-only\n"));
    // One byte over the limit is refused before any script runs.
    let req = Request::post("/stdin.sh")
        .body(Drip {
            sent: 0,
            len: 100_001,
        })
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

/// A declared-length body that arrives `step` bytes every 100 ms.
struct Paced {
    left: usize,
    step: usize,
    tick: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for Paced {
    type Data = bytes::Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        std::task::ready!(self.tick.as_mut().poll(cx));
        let next = tokio::time::Instant::now() + Duration::from_millis(100);
        self.tick.as_mut().reset(next);
        let n = self.step.min(self.left);
        self.left -= n;
        Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from(
            vec![b'x'; n],
        )))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left as u64)
    }
}

#[tokio::test]
async fn a_steady_streamed_upload_is_not_idle() {
    // A declared body over the spool limit streams to the running script, which reads it
    // all before it answers: silent for 1.5 s, five idle timeouts, while bytes flow in.
    let d = fixture();
    let svc = CgiService::new(
        CgiConfig::new(d.path().join("cgi-bin"))
            .run_as(RunAs::current_user())
            .max_buffered_body(1000)
            .idle_timeout(Duration::from_millis(300)),
    );
    let len = 15 * 1000;
    let req = Request::post("/echo.sh")
        .header("content-length", len.to_string())
        .body(Paced {
            left: len,
            step: 1000,
            tick: Box::pin(tokio::time::sleep(Duration::ZERO)),
        })
        .unwrap();
    let (status, text) = text(svc.oneshot(req).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(text.len(), len);
}

#[tokio::test]
async fn the_service_mounted_under_a_prefix_names_scripts_with_it() {
    let d = fixture();
    #[derive(Clone)]
    struct Prefix(&'static str);
    let svc = CgiService::new(
        CgiConfig::new(d.path().join("cgi-bin"))
            .run_as(RunAs::current_user())
            .mount_prefix(|ext| ext.get::<Prefix>().map(|p| p.0)),
    );
    let mut req = Request::get("/env.sh/x").body(Body::empty()).unwrap();
    req.extensions_mut().insert(Prefix("/scripts"));
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(text(res).await.1, "SN=/scripts/env.sh PI=/x QS= RM=GET\n");
    // Outside an app, a local redirect becomes a client redirect.
    let res = svc
        .oneshot(Request::get("/local.sh").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    assert_eq!(res.headers()["location"], "/static.txt");
}

#[tokio::test]
async fn directories_are_configurable() {
    let d = fixture();
    std::fs::rename(d.path().join("cgi-bin"), d.path().join("scripts")).unwrap();
    let inner = service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(String::from("static")))
    });
    let svc = CgiLayer::new(
        CgiConfig::new(d.path())
            .directories(["/scripts"])
            .run_as(RunAs::current_user()),
    )
    .layer(inner);
    let res = svc
        .clone()
        .oneshot(Request::get("/scripts/env.sh").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(text(res).await.1.starts_with("SN=/scripts/env.sh"));
    let res = svc
        .oneshot(Request::get("/cgi-bin/env.sh").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(text(res).await.1, "static");
}

#[tokio::test]
async fn a_pass_through_layer_runs_nothing() {
    let d = fixture();
    let inner = service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(String::from("inner")))
    });
    let svc = CgiLayer::pass_through().layer(inner);
    let res = svc
        .clone()
        .oneshot(Request::get("/cgi-bin/env.sh").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(text(res).await.1, "inner");
    // Not even Python's POST rule: without CGI, POST is the inner service's business.
    let res = svc
        .oneshot(Request::post("/x").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(text(res).await.1, "inner");
    drop(d);
}
