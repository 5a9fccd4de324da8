use super::*;
use http_body_util::BodyExt;
use std::convert::Infallible;
use tower::{ServiceExt, service_fn};

const LM: &str = "Thu, 02 Jan 2020 03:04:05 GMT";
const ETAG: &str = "\"abc\"";

/// An inner service answering `status` with a body and validators.
async fn send_with(status: StatusCode, req: Request<()>) -> Response<Either<String, PageBody>> {
    let inner = service_fn(move |_req: Request<()>| async move {
        let res = Response::builder()
            .status(status)
            .header("last-modified", LM)
            .header("etag", ETAG)
            .header("content-type", "text/plain")
            .header("content-length", "5")
            .header("cache-control", "max-age=60")
            .header("vary", "accept-encoding")
            .body(String::from("hello"))
            .unwrap();
        Ok::<_, Infallible>(res)
    });
    ConditionalLayer::new()
        .layer(inner)
        .oneshot(req)
        .await
        .unwrap()
}

async fn status_for(headers: &[(&str, &str)]) -> StatusCode {
    let mut req = Request::get("/");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send_with(StatusCode::OK, req.body(()).unwrap())
        .await
        .status()
}

use tower_layer::Layer;

#[tokio::test]
async fn if_modified_since() {
    assert_eq!(
        status_for(&[("if-modified-since", LM)]).await,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        status_for(&[("if-modified-since", "Fri, 03 Jan 2020 00:00:00 GMT")]).await,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        status_for(&[("if-modified-since", "Wed, 01 Jan 2020 00:00:00 GMT")]).await,
        StatusCode::OK
    );
    // RFC 850 and asctime forms are HTTP dates too.
    assert_eq!(
        status_for(&[("if-modified-since", "Thursday, 02-Jan-20 03:04:05 GMT")]).await,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        status_for(&[("if-modified-since", "Thu Jan  2 03:04:05 2020")]).await,
        StatusCode::NOT_MODIFIED
    );
    // Unparsable or absurd dates are ignored.
    for bad in [
        "garbage",
        "Thu, 32 Jan 2030 00:00:00 GMT",
        "Thu, 02 Jan 99999 03:04:05 GMT",
        "",
    ] {
        assert_eq!(
            status_for(&[("if-modified-since", bad)]).await,
            StatusCode::OK,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn if_none_match_wins_over_if_modified_since() {
    assert_eq!(
        status_for(&[("if-none-match", ETAG)]).await,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        status_for(&[("if-none-match", "W/\"abc\"")]).await,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        status_for(&[("if-none-match", "\"x\", \"abc\"")]).await,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        status_for(&[("if-none-match", "*")]).await,
        StatusCode::NOT_MODIFIED
    );
    // A non-matching tag disables If-Modified-Since, as in Python and RFC 9110.
    assert_eq!(
        status_for(&[("if-none-match", "\"other\""), ("if-modified-since", LM)]).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn if_match_and_if_unmodified_since_fail_with_412() {
    assert_eq!(status_for(&[("if-match", ETAG)]).await, StatusCode::OK);
    assert_eq!(status_for(&[("if-match", "*")]).await, StatusCode::OK);
    assert_eq!(
        status_for(&[("if-match", "\"other\"")]).await,
        StatusCode::PRECONDITION_FAILED
    );
    // If-Match compares strongly.
    assert_eq!(
        status_for(&[("if-match", "W/\"abc\"")]).await,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        status_for(&[("if-unmodified-since", "Wed, 01 Jan 2020 00:00:00 GMT")]).await,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        status_for(&[("if-unmodified-since", LM)]).await,
        StatusCode::OK
    );
    // If-Match present: If-Unmodified-Since is not consulted (step 2 is skipped).
    assert_eq!(
        status_for(&[
            ("if-match", ETAG),
            ("if-unmodified-since", "Wed, 01 Jan 2020 00:00:00 GMT")
        ])
        .await,
        StatusCode::OK
    );
    // 412 comes before 304.
    assert_eq!(
        status_for(&[("if-match", "\"other\""), ("if-none-match", ETAG)]).await,
        StatusCode::PRECONDITION_FAILED
    );
}

#[tokio::test]
async fn a_304_keeps_validators_and_drops_the_body() {
    let req = Request::get("/")
        .header("if-none-match", ETAG)
        .body(())
        .unwrap();
    let res = send_with(StatusCode::OK, req).await;
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    let h = res.headers();
    assert_eq!(h["etag"], ETAG);
    assert_eq!(h["last-modified"], LM);
    assert_eq!(h["cache-control"], "max-age=60");
    assert_eq!(h["vary"], "accept-encoding");
    assert!(h.get("content-type").is_none());
    assert!(h.get("content-length").is_none());
    assert!(
        res.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );
}

#[tokio::test]
async fn a_412_is_an_error_page() {
    let req = Request::get("/")
        .header("if-match", "\"no\"")
        .body(())
        .unwrap();
    let res = send_with(StatusCode::OK, req).await;
    assert_eq!(res.headers()["content-type"], "text/html;charset=utf-8");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(
        std::str::from_utf8(&body)
            .unwrap()
            .contains("Error code: 412")
    );
}

#[tokio::test]
async fn head_gets_304_too() {
    let req = Request::head("/")
        .header("if-modified-since", LM)
        .body(())
        .unwrap();
    assert_eq!(
        send_with(StatusCode::OK, req).await.status(),
        StatusCode::NOT_MODIFIED
    );
}

#[tokio::test]
async fn non_success_responses_and_other_methods_pass_through() {
    let req = Request::get("/")
        .header("if-modified-since", LM)
        .body(())
        .unwrap();
    assert_eq!(
        send_with(StatusCode::NOT_FOUND, req).await.status(),
        StatusCode::NOT_FOUND
    );
    let req = Request::post("/")
        .header("if-none-match", "*")
        .body(())
        .unwrap();
    let res = send_with(StatusCode::OK, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "hello");
}

#[tokio::test]
async fn responses_without_validators_are_untouched() {
    let inner = service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::from("x")))
    });
    let req = Request::get("/")
        .header("if-modified-since", LM)
        .body(())
        .unwrap();
    let res = ConditionalLayer::new()
        .layer(inner)
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

/// The status for a request with `if_modified_since` (each value its own header line) to a
/// service whose response carries `last_modified`.
async fn status_with_last_modified(last_modified: &str, if_modified_since: &[&str]) -> StatusCode {
    let last_modified = last_modified.to_owned();
    let inner = service_fn(move |_req: Request<()>| {
        let last_modified = last_modified.clone();
        async move {
            let res = Response::builder()
                .header("last-modified", last_modified)
                .body(String::from("x"))
                .unwrap();
            Ok::<_, Infallible>(res)
        }
    });
    let mut req = Request::get("/");
    for value in if_modified_since {
        req = req.header("if-modified-since", *value);
    }
    let res = ConditionalLayer::new()
        .layer(inner)
        .oneshot(req.body(()).unwrap())
        .await
        .unwrap();
    res.status()
}

#[tokio::test]
async fn an_echoed_last_modified_must_still_be_a_valid_date() {
    assert_eq!(
        status_with_last_modified(LM, &[LM]).await,
        StatusCode::NOT_MODIFIED
    );
    // Byte-for-byte equal, but not dates: ignored, as any unparsable date is.
    for bad in ["garbage", "Thu, 32 Jan 2030 00:00:00 GMT"] {
        assert_eq!(
            status_with_last_modified(bad, &[bad]).await,
            StatusCode::OK,
            "{bad}"
        );
    }
    // A valid If-Modified-Since against an unparsable Last-Modified is ignored too.
    assert_eq!(
        status_with_last_modified("garbage", &[LM]).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_repeated_if_modified_since_is_ignored() {
    assert_eq!(
        status_with_last_modified(LM, &[LM, LM]).await,
        StatusCode::OK
    );
}
