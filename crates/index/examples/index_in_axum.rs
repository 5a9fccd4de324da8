//! The index layer alone in an axum app, in front of any file service (here httpserve's,
//! tower-http's `ServeDir` works the same way): Python's 301 to `dir/`, `index.html` then
//! `index.htm`. `cargo run -p httpserve-index --example index_in_axum -- DIR`.

use axum::Router;
use httpserve_core::Root;
use httpserve_files::ServeFiles;
use httpserve_index::IndexLayer;
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // One Root shared by both, so the file service reuses the index layer's lookup.
    let root = Root::new(std::env::args().nth(1).unwrap_or_else(|| String::from(".")));
    let site = ServiceBuilder::new()
        .layer(IndexLayer::new(&root).index_files(["index.html", "index.htm", "default.html"]))
        .service(ServeFiles::new(&root));
    let app = Router::new().fallback_service(site);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, app).await
}
