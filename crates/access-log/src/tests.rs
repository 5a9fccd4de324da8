use super::*;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tower::{ServiceExt, service_fn};
use tower_layer::Layer;

/// Collects formatted log output in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs one request through an `AccessLog` and returns the lines logged under `TARGET`.
fn log_lines(layer: AccessLogLayer, req: Request<()>, response: Response<()>) -> Vec<String> {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_env_filter("httpserve::access=info")
        .with_target(true)
        .with_level(false)
        .without_time()
        .with_ansi(false)
        .finish();
    let response = Mutex::new(Some(response));
    tracing::subscriber::with_default(subscriber, || {
        let svc = layer.layer(service_fn(|_req: Request<()>| {
            let res = response.lock().unwrap().take().unwrap();
            async move { Ok::<_, Infallible>(res) }
        }));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(svc.oneshot(req)).unwrap();
    });
    let out = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    out.lines().map(str::to_owned).collect()
}

fn with_client(mut req: Request<()>) -> Request<()> {
    req.extensions_mut()
        .insert(SocketAddr::from(([127, 0, 0, 1], 5555)));
    req
}

/// `httpserve::access: ` then Python's line; the date is checked for shape only.
fn assert_python_line(line: &str, client: &str, rest: &str) {
    let line = line.strip_prefix("httpserve::access: ").expect(line);
    let (prefix, tail) = line.split_once("] ").expect(line);
    let date = prefix.strip_prefix(&format!("{client} - - [")).expect(line);
    // 24/Nov/2026 19:22:43
    assert_eq!(date.len(), 20, "{date}");
    assert_eq!(&date[2..3], "/");
    assert_eq!(&date[6..7], "/");
    assert!(
        date[3..6].chars().all(|c| c.is_ascii_alphabetic()),
        "{date}"
    );
    assert_eq!(tail, rest);
}

#[test]
fn logs_python_lines() {
    let req = with_client(Request::get("/x?q=1").body(()).unwrap());
    let lines = log_lines(AccessLogLayer::new(), req, Response::new(()));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_python_line(&lines[0], "127.0.0.1", "\"GET /x?q=1 HTTP/1.1\" 200 -");
}

#[test]
fn errors_get_pythons_code_and_message_line_first() {
    let req = with_client(Request::get("/nope").body(()).unwrap());
    let (parts, _) = httpserve_core::error_response(
        http::StatusCode::NOT_FOUND,
        "File not found",
        &http::Method::GET,
    )
    .into_parts();
    let lines = log_lines(AccessLogLayer::new(), req, Response::from_parts(parts, ()));
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_python_line(&lines[0], "127.0.0.1", "code 404, message File not found");
    assert_python_line(&lines[1], "127.0.0.1", "\"GET /nope HTTP/1.1\" 404 -");
}

#[test]
fn unknown_client_is_a_dash_and_the_address_source_is_configurable() {
    let lines = log_lines(
        AccessLogLayer::new(),
        Request::get("/").body(()).unwrap(),
        Response::new(()),
    );
    assert_python_line(&lines[0], "-", "\"GET / HTTP/1.1\" 200 -");

    #[derive(Clone)]
    struct Peer(SocketAddr);
    let layer = AccessLogLayer::new().client_addr(|ext| ext.get::<Peer>().map(|p| p.0));
    let mut req = Request::get("/").body(()).unwrap();
    req.extensions_mut()
        .insert(Peer("[::ffff:10.0.0.1]:9".parse().unwrap()));
    let lines = log_lines(layer, req, Response::new(()));
    assert_python_line(&lines[0], "::ffff:10.0.0.1", "\"GET / HTTP/1.1\" 200 -");
}

#[test]
fn control_characters_and_backslashes_are_escaped() {
    assert_eq!(escape_control_chars("a\x1b[31mred"), "a\\x1b[31mred");
    assert_eq!(
        escape_control_chars("line\r\nforged"),
        "line\\x0d\\x0aforged"
    );
    assert_eq!(escape_control_chars("/\\evil"), "/\\\\evil");
    assert_eq!(
        escape_control_chars("\u{7f}\u{85}\u{9f}\u{a0}é"),
        "\\x7f\\x85\\x9f\u{a0}é"
    );
}

#[test]
fn a_hostile_error_message_cannot_forge_a_line() {
    let req = with_client(Request::get("/").body(()).unwrap());
    let mut res = Response::new(());
    *res.status_mut() = http::StatusCode::BAD_REQUEST;
    res.extensions_mut()
        .insert(ErrorMessage("x\n127.0.0.1 - - [forged]".into()));
    let lines = log_lines(AccessLogLayer::new(), req, res);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].ends_with("code 400, message x\\x0a127.0.0.1 - - [forged]"));
}
