//! CGI under `/cgi-bin` of an existing axum app.
//! `cargo run -p httpserve-cgi --example cgi_in_axum -- SCRIPT_DIR`, then
//! `curl http://127.0.0.1:3000/cgi-bin/hello.sh/extra?x=1`.

use axum::Router;
use axum::extract::{ConnectInfo, NestedPath};
use axum::routing::get;
use httpserve_cgi::{CgiConfig, CgiService};
use std::net::SocketAddr;
use std::time::Duration;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter("httpserve::cgi=info")
        .init();
    let scripts = std::env::args()
        .nth(1)
        .unwrap_or_else(|| String::from("cgi-bin"));
    let cgi = CgiService::new(
        CgiConfig::new(scripts)
            .timeout(Duration::from_secs(30))
            .client_addr(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0))
            // SCRIPT_NAME = /cgi-bin/<script>
            .mount_prefix(|ext| ext.get::<NestedPath>().map(NestedPath::as_str)),
    );
    let app = Router::new()
        .route(
            "/",
            get(|| async { "the app; scripts live under /cgi-bin/\n" }),
        )
        .nest_service("/cgi-bin", cgi);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}
