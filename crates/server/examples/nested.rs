//! The whole httpserve stack under `/files` of an existing axum app.
//! `cargo run -p httpserve --example nested -- DIR`, then open http://127.0.0.1:3000/files/

use axum::Router;
use axum::routing::get;
use httpserve::HttpServe;
use std::net::SocketAddr;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let root = std::env::args().nth(1).unwrap_or_else(|| String::from("."));
    let app = Router::new()
        .route("/", get(|| async { "the app; files are under /files/\n" }))
        .nest_service("/files", HttpServe::new(root).into_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}
