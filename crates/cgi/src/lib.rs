//! CGI/1.1 (RFC 3875) for tower: Python's `--cgi` directory semantics, with the status
//! codes, redirects, streaming, limits and hygiene Python's handler never had.
//!
//! ```
//! use httpserve_cgi::{CgiConfig, CgiService, RunAs};
//! use http::{Request, StatusCode};
//! use http_body_util::BodyExt;
//! use std::os::unix::fs::PermissionsExt;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let scripts = tempfile::tempdir().unwrap();
//! let hello = scripts.path().join("hello.sh");
//! std::fs::write(&hello, "#!/bin/sh\nprintf 'Status: 201 Created\\nContent-Type: text/plain\\n\\n%s' \"$PATH_INFO\"\n").unwrap();
//! std::fs::set_permissions(&hello, std::fs::Permissions::from_mode(0o755)).unwrap();
//!
//! // Every path names a script in the directory; mount it with
//! // `Router::nest_service("/cgi-bin", cgi)` in an axum app.
//! let cgi = CgiService::new(CgiConfig::new(scripts.path()).run_as(RunAs::current_user()));
//! let res = cgi.oneshot(Request::get("/hello.sh/extra").body(String::new()).unwrap()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::CREATED); // the script's own Status, unlike Python
//! assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "/extra");
//! # }
//! ```
//!
//! Two ways to use it:
//!
//! * [`CgiLayer`] in front of any service: requests under the CGI directories of a document
//!   root (`/cgi-bin` and `/htbin` by default, as Python) run scripts, everything else goes
//!   to the inner service, and a `POST` elsewhere gets Python's
//!   `501 Can only POST to CGI scripts`. A script's local redirect (`Location: /path` alone)
//!   is served again through the layer itself, so it reaches static files too.
//! * [`CgiService`] on its own, mounted with `nest_service`: every path below the mount
//!   point names a script in one directory. A local redirect there goes to the client as
//!   `302` (the service cannot see the rest of the app).
//!
//! What a script sees and may do:
//!
//! * An environment built from scratch: the RFC 3875 meta-variables, `REQUEST_URI`,
//!   `SCRIPT_FILENAME`, one `HTTP_*` per request header except `Authorization`, `Proxy`
//!   (httpoxy) and hop-by-hop fields, and of the server's own environment only `PATH` and
//!   the names allowed with [`CgiConfig::pass_env`]. A header whose name has anything but
//!   letters, digits and `-` is dropped, so `X_Forwarded_For` cannot pose as
//!   `X-Forwarded-For`. No argv from the query string.
//! * Its output is parsed per RFC 3875 §6: `Status`, `Location` (local → re-dispatched,
//!   absolute → `302`), `Content-Type` (neither → `502`); the header block is bounded in
//!   bytes and fields (`502` past it); `nph-` scripts give their own status line.
//!   Their `Content-Length` is kept, so keep-alive survives.
//! * The request body, up to a limit, is spooled to an anonymous file that becomes the
//!   script's stdin (a chunked one past it is `413`; a declared one past it streams to
//!   stdin); stdout streams to the client with backpressure, never collected.
//! * A deadline and an idle timeout (no output and no body taken in; `504` before
//!   headers); a short grace to exit once the output has ended; the script's whole process
//!   group is killed when the client goes away, on a timeout, and when the server shuts
//!   down; stderr goes to `tracing` (target `httpserve::cgi`, escaped, capped per
//!   request), never to the client.
//! * When the server runs as root, scripts run as `nobody` (or a configured user); a
//!   [`Spawner`] starts them from helpers already running as that user, so the server is
//!   not forked for every script.

mod body;
mod env;
mod head;
mod progress;
mod resolve;
mod run;
pub mod spawner;

pub use body::CgiBody;
pub use head::{HeadError, ScriptHead, find_head_end, parse_head};
pub use spawner::Spawner;

use http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::Either;
use httpserve_core::Root;
use pin_project_lite::pin_project;
use resolve::{Collapsed, ScriptFile, Target, collapse, fs_path, script_file};
use run::{Handled, Prepared, page, run_script};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub use httpserve_core::{ClientAddrFn, MountPrefixFn};
use httpserve_core::{no_mount_prefix, socket_addr_extension};

/// How scripts are run. Built with consuming setters; shared by [`CgiLayer`] and [`CgiService`].
#[derive(Debug, Clone)]
pub struct CgiConfig {
    root: Root,
    directories: Vec<Vec<Vec<u8>>>,
    interpreter: Option<PathBuf>,
    timeout: Duration,
    idle_timeout: Duration,
    exit_grace: Duration,
    body_timeout: Duration,
    max_header_bytes: usize,
    max_header_fields: usize,
    max_buffered_body: usize,
    pass_env: Vec<String>,
    run_as: RunAs,
    max_local_redirects: u8,
    server_software: String,
    client_addr: ClientAddrFn,
    mount_prefix: MountPrefixFn,
    scripts: Arc<tokio::sync::Semaphore>,
    max_scripts: usize,
    /// Bytes of request bodies being spooled at once: `max_scripts × max_buffered_body`.
    spool_budget: Arc<tokio::sync::Semaphore>,
    script_queue_timeout: Duration,
    spawner: Option<Spawner>,
}

impl CgiConfig {
    /// Scripts below `root`: the document root for [`CgiLayer`] (scripts live in its CGI
    /// directories), or the script directory itself for [`CgiService`]. A [`Root`] brings
    /// its symlink and dot-file policies: a script the policy would not open is `404`
    /// (checked with the same lookup as files, before the script starts; `exec` itself
    /// then goes by path).
    pub fn new(root: impl Into<Root>) -> Self {
        Self {
            root: root.into(),
            directories: Vec::new(),
            interpreter: Some(PathBuf::from("python3")),
            timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(60),
            exit_grace: DEFAULT_EXIT_GRACE,
            body_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            max_header_fields: 100,
            max_buffered_body: DEFAULT_MAX_BUFFERED_BODY,
            pass_env: Vec::new(),
            run_as: RunAs::nobody_if_root(),
            max_local_redirects: 5,
            server_software: String::from("httpserve-cgi"),
            client_addr: socket_addr_extension,
            mount_prefix: no_mount_prefix,
            scripts: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_SCRIPTS)),
            max_scripts: DEFAULT_MAX_SCRIPTS,
            spool_budget: spool_budget(DEFAULT_MAX_SCRIPTS, DEFAULT_MAX_BUFFERED_BODY),
            script_queue_timeout: Duration::from_secs(5),
            spawner: None,
        }
        .directories(["/cgi-bin", "/htbin"])
    }

    /// The CGI directories below the document root ([`CgiLayer`] only). Default
    /// `/cgi-bin` and `/htbin`, as Python; matched case-sensitively, segment by segment.
    pub fn directories<I, D>(mut self, dirs: I) -> Self
    where
        I: IntoIterator<Item = D>,
        D: AsRef<str>,
    {
        self.directories = dirs
            .into_iter()
            .map(|d| {
                d.as_ref()
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.as_bytes().to_vec())
                    .collect::<Vec<_>>()
            })
            .filter(|segs| !segs.is_empty())
            .collect();
        self
    }

    /// The interpreter for `.py` scripts that are not executable (default `python3`);
    /// `None` makes them `403` like any other non-executable file.
    pub fn interpreter(mut self, interpreter: Option<PathBuf>) -> Self {
        self.interpreter = interpreter;
        self
    }

    /// The longest a script may run, headers and body (default 300 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest a script may make no progress (default 60 s): neither send output nor
    /// take in its request body, so a steady upload to a script that answers only at the
    /// end is not idle.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long a script may go on running once its output has ended (default 3 s, as
    /// Apache's kill-after timeout) before it is killed and its slot freed.
    pub fn exit_grace(mut self, grace: Duration) -> Self {
        self.exit_grace = grace;
        self
    }

    /// The longest the client's request body may stall (default 30 s): a spooled
    /// body gets `408`; a streamed one kills the script, and the client gets `408` if no
    /// headers came yet.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// The largest header block a script may send (default 64 KiB).
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes.max(2);
        self
    }

    /// The most header fields a script may send (default 100).
    pub fn max_header_fields(mut self, fields: usize) -> Self {
        self.max_header_fields = fields;
        self
    }

    /// The most scripts running at once (default 64). Past it, a request waits for a slot
    /// (see [`script_queue_timeout`](Self::script_queue_timeout)) rather than starting a
    /// process, so a flood cannot exhaust processes, descriptors or memory. A slot is taken
    /// only once the script can start: a body being spooled holds none.
    pub fn max_scripts(mut self, max: usize) -> Self {
        self.max_scripts = max.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        self.scripts = Arc::new(tokio::sync::Semaphore::new(self.max_scripts));
        self.spool_budget = spool_budget(self.max_scripts, self.max_buffered_body);
        self
    }

    /// How long a request waits for a script slot when [`max_scripts`](Self::max_scripts)
    /// are running (default 5 s) before it gets `503`; zero answers `503` at once. The wait
    /// absorbs bursts, and the moment between a script's last byte reaching its client and
    /// the script being reaped, in which a client's next request would find no slot.
    pub fn script_queue_timeout(mut self, wait: Duration) -> Self {
        self.script_queue_timeout = wait;
        self
    }

    /// The largest request body spooled before its script starts (default 8 MiB): chunked
    /// ones (so `CONTENT_LENGTH` can be set; past it, `413`) and declared ones (so a slow
    /// upload holds no script slot; past it, they stream to the running script). It goes
    /// to an anonymous file in the temporary directory, which becomes the script's stdin,
    /// so it costs no memory. Bodies being spooled (or waiting for a script slot)
    /// share `max_scripts × max_buffered_body` bytes; past that, a body is `503`.
    pub fn max_buffered_body(mut self, bytes: usize) -> Self {
        self.max_buffered_body = bytes;
        self.spool_budget = spool_budget(self.max_scripts, self.max_buffered_body);
        self
    }

    /// Names of the server's environment variables passed to scripts (besides `PATH`).
    pub fn pass_env<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<String>,
    {
        self.pass_env = names.into_iter().map(Into::into).collect();
        self
    }

    /// Whose identity scripts run with (default: `nobody` when the server is root).
    pub fn run_as(mut self, run_as: RunAs) -> Self {
        self.run_as = run_as;
        self
    }

    /// Starts scripts through `spawner`'s helper processes (see [`Spawner::start`]) instead
    /// of forking the server for each one: each script then runs under a keeper that kills
    /// whatever it leaves behind when its request is over. A script no helper can take
    /// (all stuck, or being replaced) gets `503`. Without a spawner, scripts are started
    /// directly, each in a session and process group of its own.
    pub fn spawner(mut self, spawner: Spawner) -> Self {
        self.spawner = Some(spawner);
        self
    }

    /// How many local redirects one request may follow (default 5).
    pub fn max_local_redirects(mut self, hops: u8) -> Self {
        self.max_local_redirects = hops;
        self
    }

    /// `SERVER_SOFTWARE` (default `httpserve-cgi`).
    pub fn server_software(mut self, software: impl Into<String>) -> Self {
        self.server_software = software.into();
        self
    }

    /// Where the client address comes from (default: a `SocketAddr` extension; pass a
    /// function reading axum's `ConnectInfo<SocketAddr>` in an axum app).
    pub fn client_addr(mut self, client_addr: ClientAddrFn) -> Self {
        self.client_addr = client_addr;
        self
    }

    /// Where the mount prefix comes from, for `SCRIPT_NAME` (axum: `NestedPath`).
    pub fn mount_prefix(mut self, mount_prefix: MountPrefixFn) -> Self {
        self.mount_prefix = mount_prefix;
        self
    }

    /// Replaces the root with `root` and its symlink and dot-file policies (the server crate
    /// hands over the `Root` all its layers share).
    pub fn with_root(mut self, root: impl Into<Root>) -> Self {
        self.root = root.into();
        self
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

/// The identity scripts run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs(Option<(u32, u32)>);

impl RunAs {
    /// `nobody` when the server runs as root (as Python does), else the server's own user.
    pub fn nobody_if_root() -> Self {
        if !nix::unistd::geteuid().is_root() {
            return Self(None);
        }
        match nix::unistd::User::from_name("nobody") {
            Ok(Some(user)) => Self(Some((user.uid.as_raw(), user.gid.as_raw()))),
            _ => Self(Some((65534, 65534))),
        }
    }

    /// The server's own user, even when it is root.
    pub fn current_user() -> Self {
        Self(None)
    }

    /// A named user (its uid and primary gid).
    pub fn user(name: &str) -> io::Result<Self> {
        match nix::unistd::User::from_name(name) {
            Ok(Some(user)) => Ok(Self(Some((user.uid.as_raw(), user.gid.as_raw())))),
            Ok(None) => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no user named {name}"),
            )),
            Err(e) => Err(io::Error::from(e)),
        }
    }

    pub(crate) fn ids(self) -> Option<(u32, u32)> {
        self.0
    }
}

/// Scripts allowed to run at once unless [`CgiConfig::max_scripts`] says otherwise.
const DEFAULT_MAX_SCRIPTS: usize = 64;

/// The largest body spooled unless [`CgiConfig::max_buffered_body`] says otherwise.
const DEFAULT_MAX_BUFFERED_BODY: usize = 8 * 1024 * 1024;

/// Bytes of request bodies spooled at once: as many bodies as there are script slots, so
/// the temporary disk they take is bounded as the slots once bounded them in memory.
fn spool_budget(max_scripts: usize, max_body: usize) -> Arc<tokio::sync::Semaphore> {
    let bytes = max_scripts.saturating_mul(max_body);
    Arc::new(tokio::sync::Semaphore::new(
        bytes.min(tokio::sync::Semaphore::MAX_PERMITS),
    ))
}

/// How long a script may run on after its output ended unless
/// [`CgiConfig::exit_grace`] says otherwise.
const DEFAULT_EXIT_GRACE: Duration = Duration::from_secs(3);

/// Counts local redirects followed by one request.
#[derive(Debug, Clone, Copy)]
struct LocalRedirectHops(u8);

/// Resolves the script a target names and runs it.
async fn handle<B>(config: Arc<CgiConfig>, req: Request<B>, target: Target) -> Handled
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let method = req.method().clone();
    let prefix = (config.mount_prefix)(req.extensions())
        .unwrap_or("")
        .trim_end_matches('/')
        .as_bytes()
        .to_vec();
    let mut script_name = prefix;
    script_name.extend(resolve::script_name(&target.dir, &target.script));
    // Python shows the name repr()-escaped; control characters never reach the page raw.
    let shown = httpserve_core::escape_control_chars(&String::from_utf8_lossy(&script_name));
    let has_nul = |bytes: &[u8]| bytes.contains(&0);
    if has_nul(&script_name) || has_nul(&target.path_info) {
        return page(StatusCode::BAD_REQUEST, "Bad request path", &method);
    }
    let relative = fs_path(Path::new(""), &target.dir, &target.script);
    let (program, args, script_file) = match script_file(
        &config.root,
        &relative,
        config.interpreter.is_some(),
    ) {
        ScriptFile::Missing => {
            return page(
                StatusCode::NOT_FOUND,
                &format!("No such CGI script ('{shown}')"),
                &method,
            );
        }
        ScriptFile::NotAFile => {
            return page(
                StatusCode::FORBIDDEN,
                &format!("CGI script is not a plain file ('{shown}')"),
                &method,
            );
        }
        ScriptFile::NotExecutable => {
            return page(
                StatusCode::FORBIDDEN,
                &format!("CGI script is not executable ('{shown}')"),
                &method,
            );
        }
        ScriptFile::NotAProgram => {
            tracing::error!(target: "httpserve::cgi", script = %shown, "not a #! script or an ELF binary");
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "CGI script could not be run",
                &method,
            );
        }
        ScriptFile::Executable(path) => (path.clone(), Vec::new(), path),
        ScriptFile::Python(path) => {
            let interpreter = config
                .interpreter
                .clone()
                .unwrap_or_else(|| PathBuf::from("python3"));
            (interpreter, vec![path.clone().into_os_string()], path)
        }
    };
    let path_translated = (!target.path_info.is_empty())
        .then(|| resolve::translated(config.root.path(), &target.path_info));
    let prepared = Prepared {
        program,
        args,
        script_file,
        script_name,
        path_info: target.path_info,
        path_translated,
        nph: target.script.starts_with(b"nph-"),
        display_name: shown.into(),
    };
    run_script(config, req, prepared).await
}

/// Applies [`Cgi`] to a service.
#[derive(Debug, Clone)]
pub struct CgiLayer {
    config: Arc<CgiConfig>,
    enabled: bool,
}

impl CgiLayer {
    /// Runs the scripts in `config`'s CGI directories.
    pub fn new(config: CgiConfig) -> Self {
        Self {
            config: Arc::new(config),
            enabled: true,
        }
    }

    /// A layer that runs nothing and passes every request on: the same service type with
    /// CGI switched off (so a stack can be built once, with or without `--cgi`).
    pub fn pass_through() -> Self {
        Self {
            config: Arc::new(CgiConfig::new("/nonexistent").directories(Vec::<String>::new())),
            enabled: false,
        }
    }
}

impl<S> tower_layer::Layer<S> for CgiLayer {
    type Service = Cgi<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Cgi {
            inner,
            config: self.config.clone(),
            enabled: self.enabled,
        }
    }
}

/// Sends requests under the CGI directories to their scripts and the rest to the inner
/// service.
#[derive(Debug, Clone)]
pub struct Cgi<S> {
    inner: S,
    config: Arc<CgiConfig>,
    enabled: bool,
}

impl<S> Cgi<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

fn cgi_target(config: &CgiConfig, collapsed: &Collapsed) -> Option<Target> {
    if config.directories.is_empty() {
        return None;
    }
    resolve::target(collapsed, &config.directories, config.root.path())
}

/// The boxed future of a script run. Running a process dwarfs an allocation, and the
/// local-redirect recursion needs the indirection.
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, ResBody> tower_service::Service<Request<B>> for Cgi<S>
where
    S: tower_service::Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Body + Default + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    ResBody: Send + 'static,
{
    type Response = Response<Either<ResBody, CgiBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if !self.enabled {
            return ResponseFuture::inner(self.inner.call(req));
        }
        let Some(target) = cgi_target(&self.config, &collapse(req.uri().path())) else {
            if req.method() == Method::POST {
                let res = run::page(
                    StatusCode::NOT_IMPLEMENTED,
                    "Can only POST to CGI scripts",
                    req.method(),
                );
                if let Handled::Response(res) = res {
                    return ResponseFuture::ready(res);
                }
            }
            return ResponseFuture::inner(self.inner.call(req));
        };
        // The readied service serves any redirect; a clone stays for the next call.
        let inner = self.inner.clone();
        let this = Cgi {
            inner: std::mem::replace(&mut self.inner, inner),
            config: self.config.clone(),
            enabled: true,
        };
        ResponseFuture::boxed(Box::pin(run_layer(this, req, target)))
    }
}

/// Runs a script for [`Cgi`], following its local redirects through the layer itself.
async fn run_layer<S, B, ResBody>(
    mut this: Cgi<S>,
    req: Request<B>,
    target: Target,
) -> Result<Response<Either<ResBody, CgiBody>>, S::Error>
where
    S: tower_service::Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Body + Default + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    ResBody: Send + 'static,
{
    let hops = req
        .extensions()
        .get::<LocalRedirectHops>()
        .map_or(0, |h| h.0);
    let mut extensions = req.extensions().clone();
    let version = req.version();
    let host = req.headers().get(http::header::HOST).cloned();
    let method = req.method().clone();
    match handle(this.config.clone(), req, target).await {
        Handled::Response(res) => Ok(res.map(Either::Right)),
        Handled::LocalRedirect(location) => {
            if hops >= this.config.max_local_redirects {
                return Ok(redirect_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Too many CGI local redirects",
                    &method,
                ));
            }
            let Ok(uri) = location.parse::<Uri>() else {
                return Ok(redirect_page(
                    StatusCode::BAD_GATEWAY,
                    "CGI script sent an invalid Location",
                    &method,
                ));
            };
            // RFC 3875 §6.2.2: the server serves the new path as a GET of its own.
            let mut next = Request::new(B::default());
            *next.uri_mut() = uri;
            *next.version_mut() = version;
            if method == Method::HEAD {
                *next.method_mut() = Method::HEAD;
            }
            if let Some(host) = host {
                next.headers_mut().insert(http::header::HOST, host);
            }
            extensions.insert(LocalRedirectHops(hops + 1));
            *next.extensions_mut() = extensions;
            std::future::poll_fn(|cx| tower_service::Service::poll_ready(&mut this, cx)).await?;
            tower_service::Service::call(&mut this, next).await
        }
    }
}

fn redirect_page<ResBody>(
    status: StatusCode,
    message: &str,
    method: &Method,
) -> Response<Either<ResBody, CgiBody>> {
    httpserve_core::error_response(status, message, method).map(|b| Either::Right(CgiBody::page(b)))
}

pin_project! {
    /// The future of [`Cgi`].
    pub struct ResponseFuture<F, ResBody, E> {
        #[pin]
        state: State<F, ResBody, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, ResBody, E> {
        Inner { #[pin] future: F },
        Script { future: BoxFuture<Result<Response<Either<ResBody, CgiBody>>, E>> },
        Ready { response: Option<Response<CgiBody>> },
    }
}

impl<F, ResBody, E> std::fmt::Debug for ResponseFuture<F, ResBody, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, ResBody, E> ResponseFuture<F, ResBody, E> {
    fn inner(future: F) -> Self {
        Self {
            state: State::Inner { future },
        }
    }

    fn boxed(future: BoxFuture<Result<Response<Either<ResBody, CgiBody>>, E>>) -> Self {
        Self {
            state: State::Script { future },
        }
    }

    fn ready(response: Response<CgiBody>) -> Self {
        Self {
            state: State::Ready {
                response: Some(response),
            },
        }
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F, ResBody, E>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<Either<ResBody, CgiBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future } => {
                Poll::Ready(Ok(ready!(future.poll(cx))?.map(Either::Left)))
            }
            StateProj::Script { future } => future.as_mut().poll(cx),
            StateProj::Ready { response } => match response.take() {
                Some(res) => Poll::Ready(Ok(res.map(Either::Right))),
                None => panic!("ResponseFuture polled after completion"),
            },
        }
    }
}

/// Every request path below the mount point names a script in one directory: for
/// `Router::nest_service("/cgi-bin", CgiService::new(CgiConfig::new("scripts")))`.
#[derive(Debug, Clone)]
pub struct CgiService {
    config: Arc<CgiConfig>,
}

impl CgiService {
    /// Runs the scripts in `config.root()`.
    pub fn new(config: CgiConfig) -> Self {
        Self {
            config: Arc::new(config),
        }
    }
}

/// The future of [`CgiService`].
pub type CgiFuture = BoxFuture<Result<Response<CgiBody>, Infallible>>;

impl<B> tower_service::Service<Request<B>> for CgiService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<CgiBody>;
    type Error = Infallible;
    type Future = CgiFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let config = self.config.clone();
        Box::pin(async move {
            let collapsed = collapse(req.uri().path());
            let target = resolve::target(&collapsed, &[], config.root.path()).unwrap_or(Target {
                dir: Vec::new(),
                script: Vec::new(),
                path_info: Vec::new(),
            });
            let method = req.method().clone();
            Ok(match handle(config, req, target).await {
                Handled::Response(res) => res,
                // Outside an app the path cannot be served here: let the client follow it.
                Handled::LocalRedirect(location) => {
                    let mut res = Response::new(CgiBody::empty());
                    *res.status_mut() = StatusCode::FOUND;
                    if let Ok(value) = http::HeaderValue::try_from(location) {
                        res.headers_mut().insert(http::header::LOCATION, value);
                    }
                    if method == Method::HEAD {
                        res.headers_mut().insert(
                            http::header::CONTENT_LENGTH,
                            http::HeaderValue::from_static("0"),
                        );
                    }
                    res
                }
            })
        })
    }
}

#[cfg(test)]
mod tests;
