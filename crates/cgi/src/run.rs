//! Running one script: spool the request body (up to a limit), take a slot, spawn the
//! script, stream a larger body to its stdin, read its header block, then stream its
//! stdout to the client.

use crate::CgiConfig;
use crate::body::{CgiBody, ScriptGroup, ScriptGuard, ScriptProcess, after};
use crate::env::{EnvInput, build_env};
use crate::head::{find_head_end, parse_head};
use crate::progress::Progress;
use crate::spawner::SpawnRequest;
use bytes::{Buf, BytesMut};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::BodyExt;
use httpserve_core::{LocalAddr, ReasonPhrase, error_response};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::time::Instant;

/// What running a script produced.
#[derive(Debug)]
pub(crate) enum Handled {
    /// A response for the client.
    Response(Response<CgiBody>),
    /// A local redirect (RFC 3875 §6.2.2): serve this `path?query` instead.
    LocalRedirect(String),
}

/// A script ready to run.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<OsString>,
    pub(crate) script_file: PathBuf,
    pub(crate) script_name: Vec<u8>,
    pub(crate) path_info: Vec<u8>,
    pub(crate) path_translated: Option<PathBuf>,
    pub(crate) nph: bool,
    pub(crate) display_name: Arc<str>,
}

pub(crate) fn page(status: StatusCode, message: &str, method: &Method) -> Handled {
    Handled::Response(error_response(status, message, method).map(CgiBody::page))
}

/// How the request body reaches the script.
enum Input<B> {
    None,
    Stream(B),
    /// The whole body in an anonymous file: the script's stdin itself.
    Spooled(Spool),
}

pub(crate) async fn run_script<B>(
    config: Arc<CgiConfig>,
    req: Request<B>,
    script: Prepared,
) -> Handled
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();

    // The body: spooled to a file up to a limit, chunked (so CONTENT_LENGTH can be set,
    // RFC 3875 §4.1.2) or declared, before the script starts: a slow upload holds no
    // script slot, and the file costs no memory. A declared body past the limit streams to
    // the running script.
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (input, content_length) = match declared {
        Some(0) => (Input::None, Some(0)),
        Some(n) if n <= config.max_buffered_body as u64 => match spool_body(body, &config).await {
            // hyper ends a declared body at its length, or with an error if it is cut.
            Ok(spool) if spool.len == n => (Input::Spooled(spool), Some(n)),
            Ok(_) => return SpoolError::Broken.answer(&script.display_name, &method),
            Err(e) => return e.answer(&script.display_name, &method),
        },
        Some(n) => (Input::Stream(body), Some(n)),
        None if body.is_end_stream() => (Input::None, None),
        None => match spool_body(body, &config).await {
            Ok(spool) => {
                let len = spool.len;
                (Input::Spooled(spool), Some(len))
            }
            Err(e) => return e.answer(&script.display_name, &method),
        },
    };

    let query = parts.uri.query().unwrap_or("");
    let request_uri = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let env = build_env(&EnvInput {
        method: &parts.method,
        version: parts.version,
        headers: &parts.headers,
        request_uri,
        query,
        script_name: &script.script_name,
        script_filename: &script.script_file,
        path_info: &script.path_info,
        path_translated: script.path_translated.as_deref(),
        client: (config.client_addr)(&parts.extensions),
        local: parts.extensions.get::<LocalAddr>().map(|l| l.0),
        content_length,
        server_software: &config.server_software,
        pass_env: &config.pass_env,
    });

    let Some(slot) = acquire_slot(&config).await else {
        tracing::warn!(target: "httpserve::cgi", script = %script.display_name, "too many CGI scripts running");
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many CGI scripts running",
            &method,
        );
    };
    let (stdin, body, spool_budget) = match input {
        Input::None => (ScriptStdin::Null, None, None),
        Input::Stream(body) => (ScriptStdin::Pipe, Some(body), None),
        Input::Spooled(spool) => (ScriptStdin::File(spool.file), None, spool.budget),
    };
    let deadline = after(config.timeout);
    let started = start_script(&config, &script, &env, stdin).await;
    // Once the script has the file, the body counts against the script's slot instead.
    drop(spool_budget);
    let started = match started {
        Ok(started) => started,
        Err(e) if e.kind() == std::io::ErrorKind::ResourceBusy => {
            tracing::error!(target: "httpserve::cgi", script = %script.display_name, "cannot run CGI script: {e}");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "No CGI script can be started now",
                &method,
            );
        }
        Err(e) => {
            // ENOEXEC, EACCES, …: say so in the log, never show the script to the client.
            tracing::error!(target: "httpserve::cgi", script = %script.display_name, "cannot run CGI script: {e}");
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "CGI script could not be run",
                &method,
            );
        }
    };
    let Started {
        process: child,
        stdin,
        mut stdout,
        stderr,
    } = started;
    // Set (and the script's group killed) when the client's body fails to arrive whole.
    let body_failure: BodyFailure = Arc::default();
    let group = ScriptGroup::of(&child);
    // Body in, output out: either counts as the script not being idle.
    let progress = Progress::new();
    let stdin_task = match (body, stdin) {
        (Some(body), Some(stdin)) => Some(tokio::spawn(pump_body(
            body,
            stdin,
            BodyPump {
                idle: config.body_timeout,
                expected: content_length.unwrap_or(0),
                group,
                failure: body_failure.clone(),
                progress: progress.clone(),
            },
        ))),
        _ => None,
    };
    tokio::spawn(log_stderr(stderr, script.display_name.clone()));
    let guard = ScriptGuard::new(child, stdin_task, script.display_name.clone(), deadline)
        .with_body_failure(body_failure.clone())
        .with_slot(slot)
        .with_exit_grace(config.exit_grace);
    let failed_body = |method: &Method| {
        body_failure.get().map(|&status| {
            let message = if status == StatusCode::REQUEST_TIMEOUT {
                "Request body timed out"
            } else {
                "Request body incomplete"
            };
            page(status, message, method)
        })
    };

    // The header block: bounded in size and in time.
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let head_end = loop {
        if let Some(end) = find_head_end(&buf) {
            break end;
        }
        if buf.len() >= config.max_header_bytes {
            tracing::warn!(target: "httpserve::cgi", script = %script.display_name, "header block over {} bytes", config.max_header_bytes);
            return page(
                StatusCode::BAD_GATEWAY,
                "CGI script sent too large a header block",
                &method,
            );
        }
        let want = (config.max_header_bytes - buf.len()).min(8 * 1024);
        buf.reserve(want);
        let mut limited = (&mut stdout).take(want as u64);
        // Idle only when the body pump has not moved either.
        let read = loop {
            let wait_until = deadline.min(progress.idle_at(config.idle_timeout));
            match tokio::time::timeout_at(wait_until, limited.read_buf(&mut buf)).await {
                Err(_) if Instant::now() < deadline.min(progress.idle_at(config.idle_timeout)) => {}
                read => break read,
            }
        };
        if matches!(read, Ok(Ok(n)) if n > 0) {
            progress.touch();
        } else if let Some(answer) = failed_body(&method) {
            return answer;
        }
        match read {
            Err(_) => {
                tracing::warn!(target: "httpserve::cgi", script = %script.display_name, "timed out before sending headers");
                return page(StatusCode::GATEWAY_TIMEOUT, "CGI script timed out", &method);
            }
            Ok(Ok(0)) => {
                tracing::warn!(target: "httpserve::cgi", script = %script.display_name, "ended without a complete header block");
                guard.finish();
                return page(
                    StatusCode::BAD_GATEWAY,
                    "CGI script sent no valid response",
                    &method,
                );
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(target: "httpserve::cgi", script = %script.display_name, "reading its output: {e}");
                return page(
                    StatusCode::BAD_GATEWAY,
                    "CGI script sent no valid response",
                    &method,
                );
            }
        }
    };
    let leftover = buf.split_off(head_end).freeze();
    let head = match parse_head(&buf, script.nph, config.max_header_fields) {
        Ok(head) => head,
        Err(e) => {
            tracing::warn!(target: "httpserve::cgi", script = %script.display_name, "bad header block: {e}");
            return page(
                StatusCode::BAD_GATEWAY,
                "CGI script sent a malformed header block",
                &method,
            );
        }
    };

    if !script.nph
        && head.status.is_none()
        && let Some(location) = head.location.as_deref()
        && location.starts_with('/')
        && !location.starts_with("//")
    {
        guard.finish();
        return Handled::LocalRedirect(location.to_owned());
    }
    let status = match (head.status, head.location.is_some(), head.has_content_type) {
        (Some(status), _, _) => status,
        (None, true, _) => StatusCode::FOUND,
        (None, false, true) => StatusCode::OK,
        (None, false, false) => {
            tracing::warn!(target: "httpserve::cgi", script = %script.display_name, "no Status, Location or Content-Type");
            guard.finish();
            return page(
                StatusCode::BAD_GATEWAY,
                "CGI script sent no Content-Type",
                &method,
            );
        }
    };
    // A client redirect without a document (RFC 3875 §6.2.3) has no body.
    let bodiless = head.status.is_none() && head.location.is_some() && !head.has_content_type;
    let body = if method == Method::HEAD || bodiless {
        guard.finish();
        CgiBody::empty()
    } else {
        CgiBody::stream(
            stdout,
            leftover,
            guard,
            config.idle_timeout,
            progress,
            deadline,
        )
    };
    let mut res = Response::new(body);
    *res.status_mut() = status;
    if status.canonical_reason().is_none()
        && let Some(reason) = head.reason
    {
        res.extensions_mut().insert(ReasonPhrase(reason.into()));
    }
    for (name, value) in head.headers {
        res.headers_mut().append(name, value);
    }
    if bodiless {
        res.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    Handled::Response(res)
}

/// Takes a running-script slot, waiting up to the queue timeout for one.
async fn acquire_slot(config: &CgiConfig) -> Option<tokio::sync::OwnedSemaphorePermit> {
    if let Ok(slot) = config.scripts.clone().try_acquire_owned() {
        return Some(slot);
    }
    let wait = config.scripts.clone().acquire_owned();
    tokio::time::timeout(config.script_queue_timeout, wait)
        .await
        .ok()
        .and_then(Result::ok)
}

/// A request body, whole, in a file.
struct Spool {
    /// Read-only, at its start.
    file: std::fs::File,
    len: u64,
    /// Its share of the spool budget.
    budget: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Why a request body was not spooled.
enum SpoolError {
    TooLarge,
    OverBudget,
    Broken,
    TimedOut,
    Storage(std::io::Error),
}

impl SpoolError {
    /// The client's answer; a fault of the server's own is logged too.
    fn answer(self, name: &str, method: &Method) -> Handled {
        let (status, message) = match self {
            Self::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request body too large for a CGI script",
            ),
            Self::OverBudget => {
                tracing::warn!(target: "httpserve::cgi", script = %name, "too many request bodies being received");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Too many request bodies being received",
                )
            }
            Self::Broken => (StatusCode::BAD_REQUEST, "Request body could not be read"),
            Self::TimedOut => (StatusCode::REQUEST_TIMEOUT, "Request body timed out"),
            Self::Storage(e) => {
                tracing::error!(target: "httpserve::cgi", script = %name, "cannot spool the request body: {e}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Request body could not be stored",
                )
            }
        };
        page(status, message, method)
    }
}

impl From<std::io::Error> for SpoolError {
    fn from(e: std::io::Error) -> Self {
        Self::Storage(e)
    }
}

/// Bytes of a body gathered in memory before they go to the spool file: tiny
/// chunks cost one write per this much, not one each.
const SPOOL_BUFFER: usize = 64 * 1024;

/// Writes a request body to an anonymous temporary file, at most
/// `max_buffered_body` bytes, within the spool budget; each frame may take
/// `body_timeout`, the whole body the script timeout.
async fn spool_body<B>(body: B, config: &CgiConfig) -> Result<Spool, SpoolError>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let until = after(config.timeout);
    let file = spool_file()?;
    let mut file = tokio::fs::File::from_std(file);
    // The file keeps no more than one buffer of ours in flight.
    file.set_max_buf_size(SPOOL_BUFFER);
    let mut spool = tokio::io::BufWriter::with_capacity(SPOOL_BUFFER, file);
    let mut body = std::pin::pin!(body);
    let mut len: u64 = 0;
    let max = config.max_buffered_body as u64;
    let mut budget: Option<tokio::sync::OwnedSemaphorePermit> = None;
    let mut reserved: u64 = 0;
    loop {
        let wait_until = until.min(after(config.body_timeout));
        let frame = match tokio::time::timeout_at(wait_until, body.frame()).await {
            Err(_) => return Err(SpoolError::TimedOut),
            Ok(Some(Err(_))) => return Err(SpoolError::Broken),
            Ok(None) => break,
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(mut data) = frame.into_data() {
            len += data.remaining() as u64;
            if len > max {
                return Err(SpoolError::TooLarge);
            }
            if len > reserved {
                // A buffer's worth at a time, not a semaphore operation per tiny chunk.
                let more = (len - reserved)
                    .max(SPOOL_BUFFER as u64)
                    .min(max - reserved);
                let permits = u32::try_from(more).map_err(|_| SpoolError::TooLarge)?;
                let permit = config
                    .spool_budget
                    .clone()
                    .try_acquire_many_owned(permits)
                    .map_err(|_| SpoolError::OverBudget)?;
                match &mut budget {
                    Some(budget) => budget.merge(permit),
                    None => budget = Some(permit),
                }
                reserved += more;
            }
            while data.has_remaining() {
                let n = spool.write(data.chunk()).await?;
                data.advance(n);
            }
        }
    }
    spool.flush().await?;
    let mut file = spool.into_inner();
    file.rewind().await?;
    let file = file.into_std().await;
    Ok(Spool {
        file: read_only(file),
        len,
        budget,
    })
}

/// An anonymous file in the temporary directory. `O_TMPFILE | O_EXCL` (else tempfile's
/// created-and-unlinked file), so it can never be given a name: a script holding it cannot
/// link a file owned by the server's user into a directory.
fn spool_file() -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    let dir = std::env::temp_dir();
    let flags = OFlags::TMPFILE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC;
    match rustix::fs::open(&dir, flags, Mode::RUSR | Mode::WUSR) {
        Ok(fd) => Ok(fd.into()),
        Err(_) => tempfile::tempfile_in(&dir),
    }
}

/// `file` opened again read-only (at offset 0) through `/proc`, so the script cannot write
/// to it; `file` itself (already rewound) when that fails.
fn read_only(file: std::fs::File) -> std::fs::File {
    use std::os::fd::AsRawFd;
    std::fs::File::open(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap_or(file)
}

/// Shared between the body pump and the response: why the client's body failed, if it did.
pub(crate) type BodyFailure = Arc<std::sync::OnceLock<StatusCode>>;

/// How the request body is copied to the script.
struct BodyPump {
    idle: std::time::Duration,
    expected: u64,
    group: Option<ScriptGroup>,
    failure: BodyFailure,
    progress: Progress,
}

impl BodyPump {
    /// The client's body stalled, broke or ended short: the script must not take a partial
    /// upload for a whole one, so its process group is killed before stdin closes.
    fn fail(&self, status: StatusCode) {
        let _ = self.failure.set(status);
        if let Some(group) = &self.group {
            group.kill();
        }
    }
}

/// Copies the request body to the script's stdin with backpressure. A script that stops
/// reading ends the copy quietly; a client body that stalls past the idle timeout, breaks,
/// or ends before CONTENT_LENGTH bytes is a failure (see [`BodyPump::fail`]).
async fn pump_body<B>(body: B, mut stdin: ChildStdin, pump: BodyPump)
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(body);
    let mut delivered: u64 = 0;
    loop {
        let frame = match tokio::time::timeout(pump.idle, body.frame()).await {
            Err(_) => return pump.fail(StatusCode::REQUEST_TIMEOUT),
            Ok(Some(Err(_))) => return pump.fail(StatusCode::BAD_REQUEST),
            Ok(None) if delivered < pump.expected => return pump.fail(StatusCode::BAD_REQUEST),
            Ok(None) => return,
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(mut data) = frame.into_data() {
            while data.has_remaining() {
                // Write by write, so a script reading slowly still counts as progress.
                match stdin.write(data.chunk()).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        pump.progress.touch();
                        delivered += n as u64;
                        data.advance(n);
                    }
                }
            }
        }
    }
}

/// The most bytes of a script's stderr logged per request.
const STDERR_MAX_BYTES: u64 = 64 * 1024;
/// The most lines of a script's stderr logged per request.
const STDERR_MAX_LINES: u32 = 1000;
/// The longest line logged; a longer one is logged in pieces.
const STDERR_MAX_LINE: u64 = 4096;

/// Logs the script's stderr line by line under `httpserve::cgi`, control characters
/// escaped as in the access log (so a script echoing a `%0d` cannot forge a line), up to
/// [`STDERR_MAX_BYTES`] and [`STDERR_MAX_LINES`]. The rest is read (the script never
/// blocks on a full pipe) and only counted, in one line at the end.
async fn log_stderr(stderr: ChildStderr, name: Arc<str>) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    let mut logged_bytes: u64 = 0;
    let mut logged_lines: u32 = 0;
    while logged_lines < STDERR_MAX_LINES && logged_bytes < STDERR_MAX_BYTES {
        line.clear();
        let room = STDERR_MAX_LINE.min(STDERR_MAX_BYTES - logged_bytes);
        let mut limited = (&mut reader).take(room);
        match limited.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                logged_bytes += n as u64;
                logged_lines += 1;
                let text = String::from_utf8_lossy(&line);
                let text = text.strip_suffix('\n').unwrap_or(&text);
                let text =
                    httpserve_core::escape_control_chars(text.strip_suffix('\r').unwrap_or(text));
                tracing::warn!(target: "httpserve::cgi", script = %name, "stderr: {text}");
            }
        }
    }
    let (mut dropped_bytes, mut dropped_lines, mut open_line) = (0u64, 0u64, false);
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(chunk) => chunk,
        };
        let n = chunk.len();
        dropped_bytes += n as u64;
        dropped_lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        open_line = chunk.last() != Some(&b'\n');
        reader.consume(n);
    }
    if dropped_bytes > 0 {
        let lines = dropped_lines + u64::from(open_line);
        tracing::warn!(target: "httpserve::cgi", script = %name, "stderr: {dropped_bytes} more bytes ({lines} lines) not logged; the cap is {STDERR_MAX_BYTES} bytes or {STDERR_MAX_LINES} lines per request");
    }
}

/// A started script and the server's ends of its standard streams.
struct Started {
    process: ScriptProcess,
    /// `None` when the script gets no request body (its stdin is `/dev/null`).
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    stderr: ChildStderr,
}

/// What a script reads on stdin.
enum ScriptStdin {
    /// `/dev/null`: no request body.
    Null,
    /// A pipe the body pump writes into.
    Pipe,
    /// A file holding the whole body, at its start.
    File(std::fs::File),
}

/// Starts `script` with `env`: through the configured [`Spawner`](crate::Spawner) while it
/// works, else (and for what it cannot take) directly.
async fn start_script(
    config: &CgiConfig,
    script: &Prepared,
    env: &[(OsString, OsString)],
    stdin: ScriptStdin,
) -> std::io::Result<Started> {
    if let Some(spawner) = config.spawner.as_ref().filter(|s| s.is_working()) {
        let request = SpawnRequest {
            program: script.program.as_os_str(),
            args: script.args.iter().map(OsString::as_os_str).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.as_os_str(), v.as_os_str()))
                .collect(),
            dir: script.script_file.parent(),
            user: config.run_as.ids(),
        };
        // Every way out of this branch returns: a script is never started both ways.
        let (stdin_child, stdin) = match stdin {
            ScriptStdin::Pipe => {
                let (read, write) = pipe()?;
                let ours = std::process::ChildStdin::from(write);
                (read, Some(ChildStdin::from_std(ours)?))
            }
            ScriptStdin::Null => (std::fs::File::open("/dev/null")?.into(), None),
            ScriptStdin::File(file) => (file.into(), None),
        };
        let (stdout_read, stdout_child) = pipe()?;
        let (stderr_read, stderr_child) = pipe()?;
        let stdout = ChildStdout::from_std(std::process::ChildStdout::from(stdout_read))?;
        let stderr = ChildStderr::from_std(std::process::ChildStderr::from(stderr_read))?;
        match spawner
            .spawn(&request, [stdin_child, stdout_child, stderr_child])
            .await
        {
            Ok(child) => {
                return Ok(Started {
                    process: ScriptProcess::Helper(child),
                    stdin,
                    stdout,
                    stderr,
                });
            }
            Err(Some(e)) => return Err(e),
            // No helper could take it now (all stuck, or being replaced). Started here it
            // would run without a keeper, and what it leaves behind would outlive it.
            Err(None) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ResourceBusy,
                    "no CGI spawner helper is available",
                ));
            }
        }
    }
    let mut cmd = Command::new(&script.program);
    cmd.args(&script.args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(match stdin {
            ScriptStdin::Null => Stdio::null(),
            ScriptStdin::Pipe => Stdio::piped(),
            ScriptStdin::File(file) => Stdio::from(file),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    new_session(&mut cmd);
    if let Some(dir) = script.script_file.parent() {
        cmd.current_dir(dir);
    }
    if let Some((uid, gid)) = config.run_as.ids() {
        cmd.uid(uid).gid(gid);
    }
    let mut child = cmd.spawn()?;
    let missing = || std::io::Error::other("a standard stream of the script is missing");
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().ok_or_else(missing)?;
    let stderr = child.stderr.take().ok_or_else(missing)?;
    Ok(Started {
        process: ScriptProcess::Direct(child),
        stdin,
        stdout,
        stderr,
    })
}

/// Starts the script in a session of its own, without a controlling terminal (it cannot
/// open `/dev/tty` and push keystrokes into the operator's shell), and so also in its own
/// process group, which can be killed with everything it starts.
#[allow(unsafe_code)]
fn new_session(cmd: &mut Command) {
    // SAFETY: `setsid` is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| rustix::process::setsid().map(drop).map_err(Into::into));
    }
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> std::io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// Gives `file` a name in `dir` through `/proc`, as any holder of its descriptor could.
    fn link_into(file: &std::fs::File, dir: &std::path::Path) -> rustix::io::Result<()> {
        let fd = format!("/proc/self/fd/{}", file.as_raw_fd());
        rustix::fs::linkat(
            rustix::fs::CWD,
            fd.as_str(),
            rustix::fs::CWD,
            dir.join("named"),
            rustix::fs::AtFlags::SYMLINK_FOLLOW,
        )
    }

    #[test]
    fn a_spool_file_can_never_be_given_a_name() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool_file().unwrap();
        assert!(link_into(&spool, dir.path()).is_err());
        assert!(link_into(&read_only(spool), dir.path()).is_err());
        // Without O_EXCL, an O_TMPFILE in the same place could be (where there are any).
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
        if let Ok(fd) = rustix::fs::open(std::env::temp_dir(), flags, Mode::RUSR) {
            assert_eq!(link_into(&fd.into(), dir.path()), Ok(()));
        }
    }
}
