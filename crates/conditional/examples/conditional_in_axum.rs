//! The conditional layer alone in an axum app: any handler that sets `Last-Modified` or
//! `ETag` gets 304/412 for free.
//! `cargo run -p httpserve-conditional --example conditional_in_axum`, then
//! `curl -i -H 'If-None-Match: "v1"' http://127.0.0.1:3000/report` → 304.

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use httpserve_conditional::ConditionalLayer;

async fn report() -> impl IntoResponse {
    (
        [
            ("etag", "\"v1\""),
            ("last-modified", "Thu, 02 Jan 2020 03:04:05 GMT"),
        ],
        "an expensive report\n",
    )
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let app = Router::new()
        .route("/report", get(report))
        .layer(ConditionalLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, app).await
}
