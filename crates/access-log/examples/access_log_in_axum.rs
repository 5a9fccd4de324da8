//! The access log alone in an axum app: `cargo run -p httpserve-access-log --example access_log_in_axum`,
//! then `curl http://127.0.0.1:3000/hello`; stderr shows Python-style lines.

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use httpserve_access_log::AccessLogLayer;
use std::net::SocketAddr;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // Print the access target's messages bare, as Python does.
    tracing_subscriber::fmt()
        .with_env_filter("httpserve::access=info")
        .without_time()
        .with_target(false)
        .with_level(false)
        .init();
    let app = Router::new()
        .route("/hello", get(|| async { "hello\n" }))
        .layer(
            AccessLogLayer::new()
                .client_addr(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}
