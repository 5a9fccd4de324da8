//! The listing layer alone in an axum app, browsing a directory under `/browse/`.
//! `cargo run -p httpserve-listing --example listing_in_axum -- DIR`, then open
//! http://127.0.0.1:3000/browse/

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use httpserve_listing::ListingLayer;
use tower::ServiceBuilder;
use tower::service_fn;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let root = std::env::args().nth(1).unwrap_or_else(|| String::from("."));
    // Only directories are listed; anything else reaches this inner service.
    let not_a_dir = service_fn(|_req: axum::extract::Request| async {
        Ok::<_, std::convert::Infallible>(
            (StatusCode::NOT_FOUND, "not a directory\n").into_response(),
        )
    });
    let browse = ServiceBuilder::new()
        .layer(ListingLayer::new(root))
        .service(not_a_dir);
    let app = Router::new().nest_service("/browse", browse);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, app).await
}
