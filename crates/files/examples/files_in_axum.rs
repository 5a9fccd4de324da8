//! The file service alone in an axum app, as the fallback behind your own routes.
//! `cargo run -p httpserve-files --example files_in_axum -- DIR`.

use axum::Router;
use axum::routing::get;
use httpserve_files::ServeFiles;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let root = std::env::args().nth(1).unwrap_or_else(|| String::from("."));
    let app = Router::new()
        .route("/api/health", get(|| async { "ok\n" }))
        .fallback_service(ServeFiles::new(root));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, app).await
}
