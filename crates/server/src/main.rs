//! The `httpserve` binary: `python3 -m http.server`'s command line.

use clap::Parser;
use httpserve::serve::{ServeOptions, bind, raise_fd_limit, serve};
use httpserve::{HttpServe, SymlinkPolicy};
use httpserve_cgi::{RunAs, Spawner};
use std::io::Write;
use std::net::{IpAddr, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Serve a directory over HTTP, like `python3 -m http.server`, faster and safe to leave running.
#[derive(Debug, Parser)]
#[command(name = "httpserve", version)]
struct Cli {
    /// bind to this port
    #[arg(default_value_t = 8000)]
    port: u16,

    /// bind to this address (default: all interfaces)
    #[arg(short, long = "bind", value_name = "ADDRESS")]
    bind: Option<String>,

    /// serve this directory (default: current directory)
    #[arg(short, long, value_name = "DIRECTORY")]
    directory: Option<PathBuf>,

    /// conform to this HTTP version: HTTP/1.1 keeps connections alive, HTTP/1.0 closes each
    #[arg(short, long, value_name = "VERSION", default_value = "HTTP/1.1",
          value_parser = ["HTTP/1.0", "HTTP/1.1"])]
    protocol: String,

    /// seconds a client may take to send a request's headers; also how long an idle
    /// keep-alive connection is kept
    #[arg(long, value_name = "SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS))]
    header_timeout: u64,

    /// seconds a response may make no write progress (a client that stopped reading)
    /// before its connection is dropped
    #[arg(long, value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS))]
    send_timeout: u64,

    /// seconds a request body (to a CGI script) may stall before the request is dropped
    #[arg(long, value_name = "SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS))]
    body_timeout: u64,

    /// the most connections served at once; more wait in the listen backlog
    #[arg(long, value_name = "N", default_value_t = 8192,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,

    /// the most bytes of request line and headers (431 past it; a target over 65534 bytes is 414)
    #[arg(long, value_name = "BYTES", default_value_t = 96 * 1024,
          value_parser = clap::value_parser!(u64).range(8192..=16 * 1024 * 1024))]
    max_header_bytes: u64,

    /// the most header fields in a request (431 past it)
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    max_headers: u64,

    /// symlinks: follow (as Python, also out of the directory), within (only while the
    /// path stays inside the directory, checked race-free by the kernel), never
    #[arg(long, value_name = "POLICY", default_value = "follow")]
    symlinks: Symlinks,

    /// hide dot-files: neither listed nor served nor run
    #[arg(long)]
    hide_dotfiles: bool,

    /// seconds in-flight responses get to finish after Ctrl-C or SIGTERM
    #[arg(long, value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(0..=MAX_SECONDS))]
    shutdown_grace: u64,

    /// run as CGI server: scripts in /cgi-bin and /htbin (see --cgi-*)
    #[arg(long)]
    cgi: bool,

    /// a CGI directory below the served one, like /scripts; repeat for several (replaces the
    /// defaults /cgi-bin and /htbin, whose files are then served as plain files)
    #[arg(long = "cgi-dir", value_name = "PATH", requires = "cgi")]
    cgi_dirs: Vec<String>,

    /// seconds a CGI script may run in all
    #[arg(long, value_name = "SECONDS", default_value_t = 300, requires = "cgi",
          value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS))]
    cgi_timeout: u64,

    /// seconds a CGI script may stay silent before or between output
    #[arg(long, value_name = "SECONDS", default_value_t = 60, requires = "cgi",
          value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS))]
    cgi_idle_timeout: u64,

    /// the most CGI scripts running at once (further requests wait for a slot)
    #[arg(long, value_name = "N", default_value_t = 64, requires = "cgi",
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    cgi_max_scripts: u64,

    /// seconds a request waits for a CGI script slot before it gets 503 (0: 503 at once)
    #[arg(long, value_name = "SECONDS", default_value_t = 5, requires = "cgi",
          value_parser = clap::value_parser!(u64).range(0..=MAX_SECONDS))]
    cgi_queue_timeout: u64,

    /// interpreter for non-executable .py scripts ("none" to refuse them)
    #[arg(
        long,
        value_name = "PROGRAM",
        default_value = "python3",
        requires = "cgi"
    )]
    cgi_interpreter: String,

    /// user that CGI scripts run as (default: nobody when run as root, else the current user)
    #[arg(long, value_name = "USER", requires = "cgi")]
    cgi_user: Option<String>,

    /// a variable of httpserve's own environment passed to CGI scripts; repeat for several
    /// (scripts get PATH and nothing else by default)
    #[arg(long = "cgi-pass-env", value_name = "NAME", requires = "cgi")]
    cgi_pass_env: Vec<String>,
}

/// The longest any time flag may be: a year, so no deadline arithmetic can overflow.
const MAX_SECONDS: u64 = 366 * 24 * 3600;

/// `--symlinks` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Symlinks {
    Follow,
    Within,
    Never,
}

/// The argument that makes the binary the CGI spawner helper (`httpserve_cgi::spawner`):
/// run as root with `--cgi`, httpserve re-executes itself with it as the scripts' user.
const SPAWNER_ARG: &str = "--internal-cgi-spawner";

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == SPAWNER_ARG)
    {
        return run_spawner();
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!(
                "httpserve: error: {} (see --help)",
                one_line(&e.render().to_string())
            );
            return ExitCode::from(2);
        }
    };
    match run(&cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("httpserve: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The CGI spawner helper: serves spawn requests on its stdin, the socket httpserve
/// started it with, until httpserve closes it.
fn run_spawner() -> ExitCode {
    use std::os::fd::AsFd;
    let socket = std::io::stdin().as_fd().try_clone_to_owned();
    let socket = match socket {
        Ok(fd)
            if rustix::fs::fstat(&fd).is_ok_and(|st| {
                rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Socket
            }) =>
        {
            fd
        }
        _ => {
            eprintln!("httpserve: error: {SPAWNER_ARG} is for httpserve's own use");
            return ExitCode::from(2);
        }
    };
    match httpserve_cgi::spawner::serve(socket.as_fd()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("httpserve: CGI spawner: {e}");
            ExitCode::FAILURE
        }
    }
}

/// clap's message on one line: everything before the usage, with its detail lines (the
/// missing argument, the allowed values, a suggestion) joined in.
fn one_line(rendered: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for line in rendered.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    let joined = parts.join(" ");
    if joined.is_empty() {
        String::from("invalid arguments")
    } else {
        joined
    }
}

/// Marks every descriptor httpserve inherited (above stderr) close-on-exec, so CGI scripts
/// — which may run as another user — never receive them.
#[allow(unsafe_code)]
fn close_inherited_fds_on_exec() {
    use std::os::fd::BorrowedFd;
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: called at start, before any other thread exists, on descriptors listed
        // as open a moment ago; the only one that may have closed since is the directory
        // handle of the listing, and then fcntl just fails with EBADF.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        if let Ok(flags) = rustix::io::fcntl_getfd(borrowed) {
            let _ = rustix::io::fcntl_setfd(borrowed, flags | rustix::io::FdFlags::CLOEXEC);
        }
    }
}

fn run(cli: &Cli) -> Result<ExitCode, String> {
    let _log = init_logging();
    let root = match &cli.directory {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().map_err(|e| format!("current directory: {e}"))?,
    };
    let root = root
        .canonicalize()
        .map_err(|e| format!("directory '{}': {e}", root.display()))?;
    if !root.is_dir() {
        return Err(format!("directory '{}' is not a directory", root.display()));
    }
    let addr = match &cli.bind {
        Some(host) => Some(resolve_host(host)?),
        None => None,
    };
    let keep_alive = cli.protocol == "HTTP/1.1";
    close_inherited_fds_on_exec();
    for dir in &cli.cgi_dirs {
        let segments: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
        if !dir.starts_with('/')
            || segments.is_empty()
            || segments.iter().any(|s| *s == "." || *s == "..")
        {
            return Err(format!(
                "--cgi-dir {dir}: a URL path below the served directory, like /cgi-bin"
            ));
        }
    }
    // Everything that can fail is checked before the banner.
    let run_as = match &cli.cgi_user {
        Some(user) => Some(RunAs::user(user).map_err(|e| format!("--cgi-user {user}: {e}"))?),
        None => None,
    };
    if let Err(e) = raise_fd_limit() {
        tracing::warn!("cannot raise the open-file limit: {e}");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let result = runtime.block_on(async move {
        let mut signals = Signals::new().map_err(|e| format!("cannot watch signals: {e}"))?;
        #[cfg(target_env = "gnu")]
        tokio::spawn(return_freed_memory());
        let listener = bind(addr, cli.port).map_err(|e| {
            let shown = addr.map_or_else(|| String::from("all interfaces"), |a| a.to_string());
            format!("cannot listen on {shown} port {}: {e}", cli.port)
        })?;
        let local = listener
            .local_addr()
            .map_err(|e| format!("cannot read the bound address: {e}"))?;
        let host = local.ip();
        let url_host = if host.is_ipv6() {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let port = local.port();
        // Scripts are started by helper processes (no fork of the whole server per
        // script), each under a keeper that kills whatever the script leaves behind.
        // Started before the banner, so they exist once it is out.
        let run_as = cli
            .cgi
            .then(|| run_as.unwrap_or_else(RunAs::nobody_if_root));
        let spawner = if cli.cgi {
            let helpers = std::thread::available_parallelism().map_or(2, usize::from);
            Spawner::start(helpers.min(8), || {
                let mut helper = std::process::Command::new("/proc/self/exe");
                helper.arg0("httpserve").arg(SPAWNER_ARG);
                helper
            })
            .map_err(|e| {
                tracing::warn!(
                    "cannot start the CGI spawner ({e}); scripts are started by the server"
                );
            })
            .ok()
        } else {
            None
        };
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(
            stdout,
            "Serving HTTP on {host} port {port} (http://{url_host}:{port}/) ..."
        );
        let _ = stdout.flush();
        drop(stdout);

        let mut app = HttpServe::new(root)
            .symlinks(match cli.symlinks {
                Symlinks::Follow => SymlinkPolicy::Follow,
                Symlinks::Within => SymlinkPolicy::WithinRoot,
                Symlinks::Never => SymlinkPolicy::Never,
            })
            .hide_dotfiles(cli.hide_dotfiles);
        if let Some(run_as) = run_as {
            let interpreter =
                (cli.cgi_interpreter != "none").then(|| PathBuf::from(&cli.cgi_interpreter));
            app = app.cgi(|config| {
                let config = config
                    .timeout(Duration::from_secs(cli.cgi_timeout))
                    .idle_timeout(Duration::from_secs(cli.cgi_idle_timeout))
                    .body_timeout(Duration::from_secs(cli.body_timeout))
                    .interpreter(interpreter)
                    .run_as(run_as)
                    .max_scripts(usize::try_from(cli.cgi_max_scripts).unwrap_or(64))
                    .script_queue_timeout(Duration::from_secs(cli.cgi_queue_timeout))
                    .pass_env(cli.cgi_pass_env.iter().cloned());
                let config = match spawner {
                    Some(spawner) => config.spawner(spawner),
                    None => config,
                };
                if cli.cgi_dirs.is_empty() {
                    config
                } else {
                    config.directories(&cli.cgi_dirs)
                }
            });
        }
        let service = app.into_service();
        let options = ServeOptions::default()
            .keep_alive(keep_alive)
            .header_read_timeout(Duration::from_secs(cli.header_timeout))
            .send_timeout(Duration::from_secs(cli.send_timeout))
            .max_connections(usize::try_from(cli.max_connections).unwrap_or(usize::MAX))
            .max_header_bytes(usize::try_from(cli.max_header_bytes).unwrap_or(usize::MAX))
            .max_headers(usize::try_from(cli.max_headers).unwrap_or(10_000))
            .grace_period(Duration::from_secs(cli.shutdown_grace));
        let (first_signal, shutdown) = tokio::sync::oneshot::channel::<()>();
        let serving = serve(listener, service, options, async {
            let _ = shutdown.await;
        });
        let signals = async {
            if signals.next().await == Signal::Interrupt {
                println!("\nKeyboard interrupt received, exiting.");
            }
            let _ = first_signal.send(());
            signals.next().await
        };
        tokio::select! {
            () = serving => Ok(None),
            second = signals => Ok(Some(second)),
        }
    });
    // Work on the blocking pool (a listing being rendered) cannot be cancelled and is not
    // waited for. `serve` has dropped every connection by its deadline; after a second
    // signal the workers drop them now (their CGI scripts killed), given a moment for it.
    match result {
        Ok(None) => {
            runtime.shutdown_background();
            Ok(ExitCode::SUCCESS)
        }
        Ok(Some(second)) => {
            runtime.shutdown_timeout(Duration::from_millis(100));
            Ok(ExitCode::from(second.exit_status()))
        }
        Err(e) => {
            runtime.shutdown_background();
            Err(e)
        }
    }
}

/// A literal IP address, or a host name resolved to its first address (as Python's
/// `getaddrinfo(...)[0]`).
fn resolve_host(host: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(ip);
    }
    let mut addrs = (host, 0)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve bind address '{host}': {e}"))?;
    addrs
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| format!("cannot resolve bind address '{host}': no addresses"))
}

/// Freed memory glibc's allocator may gain before it is handed back to the kernel.
#[cfg(target_env = "gnu")]
const FREED_MEMORY_KEPT: usize = 16 << 20;

/// Freed memory handed back once the allocator has been quiet for a second.
#[cfg(target_env = "gnu")]
const FREED_MEMORY_SETTLED: usize = 1 << 20;

/// glibc keeps freed memory in its arenas for reuse and rarely gives it back: after a burst
/// of connections (each holding file chunks and buffers) RSS would stay at its peak. Every
/// second, if the freed memory held has grown by more than [`FREED_MEMORY_KEPT`] since the
/// last trim, or by more than [`FREED_MEMORY_SETTLED`] and then not changed for a second,
/// `malloc_trim` returns it to the kernel (on the blocking pool: it walks the heap). Cheap
/// when nothing changed: one `mallinfo2` call.
#[cfg(target_env = "gnu")]
async fn return_freed_memory() {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut after_last_trim = freed_memory_held();
    let mut last_tick = after_last_trim;
    loop {
        tick.tick().await;
        let held = freed_memory_held();
        after_last_trim = after_last_trim.min(held);
        // A burst freed over a few seconds can stay under the threshold in every second:
        // once the freeing has stopped (nothing changed in a second), a smaller gain is
        // handed back too.
        let settled = held == last_tick && held > after_last_trim + FREED_MEMORY_SETTLED;
        last_tick = held;
        if held > after_last_trim + FREED_MEMORY_KEPT || settled {
            let _ = tokio::task::spawn_blocking(trim_freed_memory).await;
            after_last_trim = freed_memory_held();
            last_tick = after_last_trim;
        }
    }
}

/// Bytes in free chunks of glibc's arenas (trimmed or not).
#[cfg(target_env = "gnu")]
#[allow(unsafe_code)]
fn freed_memory_held() -> usize {
    // SAFETY: mallinfo2 takes no arguments and only reads the allocator's statistics,
    // under its own locks; the struct is returned by value.
    unsafe { libc::mallinfo2() }.fordblks
}

/// Hands the free pages of glibc's heap back to the kernel.
#[cfg(target_env = "gnu")]
#[allow(unsafe_code)]
fn trim_freed_memory() {
    // SAFETY: malloc_trim only gives free pages of the heap back to the kernel (madvise),
    // under the allocator's locks; no memory in use is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// SIGINT (Ctrl-C) and SIGTERM: the first starts a graceful shutdown, a second one ends
/// the process at once.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Interrupt,
    Terminate,
}

impl Signal {
    /// The shell's status for a process this signal ended: 128 + its number.
    fn exit_status(self) -> u8 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// The next SIGINT or SIGTERM.
    async fn next(&mut self) -> Signal {
        tokio::select! {
            Some(()) = self.interrupt.recv() => Signal::Interrupt,
            Some(()) = self.terminate.recv() => Signal::Terminate,
            else => std::future::pending().await,
        }
    }
}

/// Log lines queued for stderr at most; past it lines are dropped and counted. The writer
/// thread takes several hundred thousand lines a second, so this absorbs bursts while
/// stderr keeps up; each slot is allocated at start (40 bytes), the lines only when queued.
const LOG_QUEUE_LINES: usize = 2048;

/// Access lines go to stderr exactly as Python writes them; other events get a level and
/// target. `RUST_LOG` filters (default `info`), e.g. `RUST_LOG=httpserve::access=off`.
///
/// Serving never waits on stderr (a pipe nobody reads would stop the server): lines go
/// through a bounded queue to a writer thread; when it is full they are dropped and counted,
/// and the count is logged once the writer gets going again. Dropping the returned guard
/// flushes the queue, waiting about a second at most.
fn init_logging() -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let dropped = Arc::new(OnceLock::new());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("httpserve-log")
        .finish(DropReporting {
            out: std::io::BufWriter::new(std::io::stderr()),
            dropped: dropped.clone(),
            reported: 0,
        });
    let _ = dropped.set(writer.error_counter());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .event_format(PythonFormat)
        .init();
    guard
}

/// The log writer thread's output: before each line, the count of lines dropped since the
/// last report, if any. Buffered: the writer thread flushes after each batch it drains.
struct DropReporting<W> {
    out: W,
    dropped: Arc<OnceLock<tracing_appender::non_blocking::ErrorCounter>>,
    reported: usize,
}

impl<W: Write> Write for DropReporting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf)
    }

    /// The writer thread's call, once per line.
    fn write_all(&mut self, line: &[u8]) -> std::io::Result<()> {
        let dropped = self.dropped.get().map_or(0, |c| c.dropped_lines());
        if dropped > self.reported {
            writeln!(
                self.out,
                "httpserve: WARN httpserve: {} log lines dropped: stderr did not keep up",
                dropped - self.reported
            )?;
            self.reported = dropped;
        }
        self.out.write_all(line)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Formats access-log events as the bare message (Python's line) and others as
/// `httpserve: LEVEL target: message`.
struct PythonFormat;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for PythonFormat
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        if meta.target() != httpserve_access_log::TARGET {
            write!(writer, "httpserve: {} {}: ", meta.level(), meta.target())?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
