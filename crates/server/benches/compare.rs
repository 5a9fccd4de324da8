//! `cargo bench -p httpserve --bench compare`: httpserve against `python3 -m http.server`,
//! nginx and lighttpd, on loopback, in one run.
//!
//! The harness makes its own fixture in a temporary directory (1 KiB, 64 KiB and 10 MiB
//! files, a 1000-entry directory, a `cgi-bin/hello` shell script), starts every server on a
//! free loopback port (nginx and lighttpd from the templates in `benches/conf/`, with their
//! pid files, logs and temp paths in the temporary directory), checks once with a plain
//! request that each server answers each scenario as expected, then drives the scenarios
//! with `wrk`, the servers interleaved (in an order that rotates from scenario to scenario).
//! It prints a Markdown report and writes it to `benches/RESULTS.md`.
//!
//! It needs `wrk`, `nginx` and `lighttpd` (Debian: `apt-get install -y wrk nginx-light
//! lighttpd`) and `python3`; it says what is missing and stops, it never installs anything.
//! Every server it started is stopped by its PID when the harness ends, panics included, and
//! on SIGINT, SIGTERM or SIGHUP (caught: the run stops at its next wait and cleans up).
//!
//! Knobs (environment variables):
//! - `HTTPSERVE_BENCH_DURATION`: seconds measured per scenario and server (default 5);
//! - `HTTPSERVE_BENCH_WARMUP`: seconds of unmeasured load before each (default 1, 0 for none);
//! - `HTTPSERVE_BENCH_THREADS`: wrk threads (default: the number of connections, at most
//!   the number of cores);
//! - `HTTPSERVE_BENCH_PEERS`: comma-separated peers among `python,nginx,lighttpd` (default
//!   all; an empty value runs httpserve alone);
//! - `HTTPSERVE_BENCH_ONLY`: comma-separated scenarios among `1k,1k-close,64k,10m,404,ims,
//!   listing,cgi` (default all);
//! - `HTTPSERVE_BENCH_OUT`: where to write the report (default `benches/RESULTS.md` of this
//!   crate; `-` writes none);
//! - `HTTPSERVE_BENCH_PIN`: `0` leaves the 1-connection runs unpinned (see below);
//! - `HTTPSERVE_BIN`: the httpserve binary (default: the one cargo built for this bench).
//!
//! With one connection, a request is a ping-pong between wrk and one server thread, and on a
//! virtual machine its rate depends tenfold on whether the scheduler puts the two on the same
//! CPU (~10 µs round trips) or on two (~70 µs of cross-CPU wake-ups), which changes from run
//! to run. So the 1-connection runs pin wrk and every thread of the server (and nginx's
//! workers) to one CPU with `taskset`, and measure what a request costs on one CPU; the
//! 64-connection runs are not pinned.
//!
//! Exit status: 0 when every run was measured; 1 when a check or a run failed (the report
//! is still written, with the reasons in its notes) or httpserve would not start; 2 when a
//! tool is missing.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

const NGINX_CONF: &str = include_str!("conf/nginx.conf");
const LIGHTTPD_CONF: &str = include_str!("conf/lighttpd.conf");
const REPORT_LUA: &str = include_str!("conf/report.lua");

/// How long a server gets to start listening, and to stop after SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Socket timeouts and the overall bound of one check request.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// wrk's own per-request timeout.
const WRK_TIMEOUT: &str = "5s";
/// The fixture files' modification time (2024-01-01T00:00:00Z), sent back as If-Modified-Since.
const FIXTURE_MTIME: u64 = 1_704_067_200;
const MIB: f64 = 1024.0 * 1024.0;

/// Raised by SIGINT, SIGTERM or SIGHUP: the run stops at the next wait and returns, so that
/// every guard is dropped and every server stopped on the way out.
static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

fn catch_signals() -> Result<(), String> {
    let flag = STOP.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(signal, Arc::clone(flag))
            .map_err(|e| format!("cannot catch signal {signal}: {e}"))?;
    }
    Ok(())
}

fn stopping() -> bool {
    STOP.get().is_some_and(|flag| flag.load(Ordering::Relaxed))
}

const INTERRUPTED: &str = "interrupted by a signal";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", help());
        return ExitCode::SUCCESS;
    }
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches` / `--all-targets` runs bench targets without `--bench`.
        println!("compare: skipped (a benchmark: run `cargo bench -p httpserve --bench compare`)");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(code) => code,
        Err(message) => {
            eprintln!("compare: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn help() -> &'static str {
    "cargo bench -p httpserve --bench compare\n\
     \n\
     Benchmarks httpserve against python3 -m http.server, nginx and lighttpd with wrk on\n\
     loopback and writes crates/server/benches/RESULTS.md. Needs wrk, nginx, lighttpd\n\
     (apt-get install -y wrk nginx-light lighttpd) and python3.\n\
     \n\
     Environment: HTTPSERVE_BENCH_DURATION (s, default 5), HTTPSERVE_BENCH_WARMUP (s,\n\
     default 1), HTTPSERVE_BENCH_THREADS (wrk threads), HTTPSERVE_BENCH_PEERS\n\
     (python,nginx,lighttpd), HTTPSERVE_BENCH_ONLY (1k,1k-close,64k,10m,404,ims,listing,cgi),\n\
     HTTPSERVE_BENCH_OUT (report path, - for none), HTTPSERVE_BIN (httpserve binary)."
}

// ---------------------------------------------------------------------------------------
// Configuration and tools

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Httpserve,
    Python,
    Nginx,
    Lighttpd,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Httpserve, Kind::Python, Kind::Nginx, Kind::Lighttpd];

    fn name(self) -> &'static str {
        match self {
            Kind::Httpserve => "httpserve",
            Kind::Python => "python",
            Kind::Nginx => "nginx",
            Kind::Lighttpd => "lighttpd",
        }
    }
}

#[derive(Debug)]
struct Config {
    duration: u64,
    warmup: u64,
    threads: Option<u32>,
    kinds: Vec<Kind>,
    only: Option<Vec<String>>,
    out: Option<PathBuf>,
    httpserve: PathBuf,
    cores: u32,
    /// Pin the 1-connection runs to one CPU.
    pin: bool,
}

fn env_secs(name: &str, default: u64, min: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if (min..=600).contains(&n) => Ok(n),
            _ => Err(format!("{name}={v}: want whole seconds from {min} to 600")),
        },
    }
}

fn config() -> Result<Config, String> {
    let duration = env_secs("HTTPSERVE_BENCH_DURATION", 5, 1)?;
    let warmup = env_secs("HTTPSERVE_BENCH_WARMUP", 1, 0)?;
    let threads = match std::env::var("HTTPSERVE_BENCH_THREADS") {
        Err(_) => None,
        Ok(v) => match v.trim().parse::<u32>() {
            Ok(n) if (1..=256).contains(&n) => Some(n),
            _ => return Err(format!("HTTPSERVE_BENCH_THREADS={v}: want 1 to 256")),
        },
    };
    let mut kinds = vec![Kind::Httpserve];
    match std::env::var("HTTPSERVE_BENCH_PEERS") {
        Err(_) => kinds.extend([Kind::Python, Kind::Nginx, Kind::Lighttpd]),
        Ok(v) => {
            for name in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let kind = Kind::ALL[1..]
                    .iter()
                    .copied()
                    .find(|k| k.name() == name)
                    .ok_or_else(|| {
                        format!(
                            "HTTPSERVE_BENCH_PEERS: unknown peer {name:?} (python, nginx, lighttpd)"
                        )
                    })?;
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
        }
    }
    let only = match std::env::var("HTTPSERVE_BENCH_ONLY") {
        Err(_) => None,
        Ok(v) => {
            let ids: Vec<String> = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            let known = SCENARIO_IDS;
            if let Some(bad) = ids.iter().find(|id| !known.contains(&id.as_str())) {
                return Err(format!(
                    "HTTPSERVE_BENCH_ONLY: unknown scenario {bad:?} ({})",
                    known.join(", ")
                ));
            }
            Some(ids)
        }
    };
    let out = match std::env::var_os("HTTPSERVE_BENCH_OUT") {
        Some(v) if v == "-" => None,
        Some(v) => Some(PathBuf::from(v)),
        None => Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/RESULTS.md")),
    };
    let httpserve = std::env::var_os("HTTPSERVE_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_httpserve")),
        PathBuf::from,
    );
    if !httpserve.is_file() {
        return Err(format!(
            "{} is missing: run `cargo bench -p httpserve --bench compare`, which builds it",
            httpserve.display()
        ));
    }
    let cores =
        std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1));
    let pin = std::env::var("HTTPSERVE_BENCH_PIN").map_or(true, |v| v.trim() != "0");
    Ok(Config {
        duration,
        warmup,
        threads,
        kinds,
        only,
        out,
        httpserve,
        cores,
        pin,
    })
}

#[derive(Debug)]
struct Tools {
    wrk: PathBuf,
    python: PathBuf,
    nginx: Option<PathBuf>,
    lighttpd: Option<PathBuf>,
    /// How the 1-connection runs are pinned, if they are.
    pin: Option<Pin>,
}

#[derive(Debug)]
struct Pin {
    taskset: PathBuf,
    /// The CPU the 1-connection runs share.
    one: String,
    /// The CPUs this harness may use (`Cpus_allowed_list`), restored after each.
    all: String,
}

fn pin_plan(cfg: &Config) -> Option<Pin> {
    if !cfg.pin {
        return None;
    }
    let taskset = find_program("taskset")?;
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let all = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
        .trim()
        .to_owned();
    let one = all.split([',', '-']).next()?.trim().to_owned();
    one.parse::<u32>().ok()?;
    Some(Pin { taskset, one, all })
}

/// `taskset -a -p -c CPUS PID`: every thread of the process.
fn set_affinity(pin: &Pin, pid: u32, cpus: &str) -> bool {
    Command::new(&pin.taskset)
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A server (every thread, and nginx's workers) pinned to one CPU until dropped.
#[derive(Debug)]
struct Pinned<'a> {
    pin: &'a Pin,
    pids: Vec<u32>,
}

impl<'a> Pinned<'a> {
    fn new(pin: &'a Pin, server: &Server) -> Option<Pinned<'a>> {
        let pid = server.guard.pid();
        let mut pinned = Pinned {
            pin,
            pids: vec![pid],
        };
        if !set_affinity(pin, pid, &pin.one) {
            return None;
        }
        for (child, _) in descendants(pid) {
            // CGI scripts come and go: only the ones that stay matter.
            if set_affinity(pin, child, &pin.one) {
                pinned.pids.push(child);
            }
        }
        Some(pinned)
    }
}

impl Drop for Pinned<'_> {
    fn drop(&mut self) {
        for &pid in &self.pids {
            let _ = set_affinity(self.pin, pid, &self.pin.all);
        }
    }
}

/// `name` on PATH, or in the sbin directories a non-root PATH often lacks.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Finds the tools; on a miss, says what is missing and how to install it.
fn tools(cfg: &Config) -> Result<Tools, String> {
    let mut missing: Vec<(&str, &str)> = Vec::new();
    let mut want = |program: &'static str, package: &'static str, needed: bool| {
        if !needed {
            return None;
        }
        let found = find_program(program);
        if found.is_none() {
            missing.push((program, package));
        }
        found
    };
    let wrk = want("wrk", "wrk", true);
    let python = want("python3", "python3", true);
    let nginx = want("nginx", "nginx-light", cfg.kinds.contains(&Kind::Nginx));
    let lighttpd = want("lighttpd", "lighttpd", cfg.kinds.contains(&Kind::Lighttpd));
    if !missing.is_empty() {
        let programs: Vec<&str> = missing.iter().map(|m| m.0).collect();
        let packages: Vec<&str> = missing.iter().map(|m| m.1).collect();
        return Err(format!(
            "missing: {}\n\
             Install with (as root, Debian/Ubuntu):\n    apt-get install -y {}\n\
             (the whole set: apt-get install -y wrk nginx-light lighttpd; this benchmark never \
             installs anything itself; HTTPSERVE_BENCH_PEERS=python runs without nginx and lighttpd)",
            programs.join(", "),
            packages.join(" ")
        ));
    }
    let (Some(wrk), Some(python)) = (wrk, python) else {
        return Err(String::from("wrk or python3 not found"));
    };
    Ok(Tools {
        wrk,
        python,
        nginx,
        lighttpd,
        pin: pin_plan(cfg),
    })
}

// ---------------------------------------------------------------------------------------
// Fixture

#[derive(Debug)]
struct Fixture {
    root: PathBuf,
    run: PathBuf,
    /// The fixture files' Last-Modified, as an HTTP date.
    mtime: String,
}

const FILES: [(&str, usize); 3] = [
    ("1k.bin", 1024),
    ("64k.bin", 64 * 1024),
    ("10m.bin", 10 * 1024 * 1024),
];
const LISTING_ENTRIES: usize = 1000;
const HELLO_CGI: &str = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nhello\\n'\n";

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

fn write_file(path: &Path, contents: &[u8], mode: u32, mtime: SystemTime) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut file = fs::File::create(path).map_err(err)?;
    file.write_all(contents).map_err(err)?;
    file.set_modified(mtime).map_err(err)?;
    drop(file);
    set_mode(path, mode)
}

fn make_fixture(base: &Path) -> Result<Fixture, String> {
    // CGI scripts run as nobody when the benchmark runs as root, and nginx's workers and
    // lighttpd run as nobody too: every directory on the way must be world-searchable.
    set_mode(base, 0o755)?;
    let root = base.join("root");
    let run = base.join("run");
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(FIXTURE_MTIME);
    for dir in [&root, &run, &root.join("dir"), &root.join("cgi-bin")] {
        fs::create_dir(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        set_mode(dir, 0o755)?;
    }
    for (name, size) in FILES {
        let contents: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        write_file(&root.join(name), &contents, 0o644, mtime)?;
    }
    for i in 0..LISTING_ENTRIES {
        let name = format!("entry-{i:04}.txt");
        write_file(&root.join("dir").join(&name), name.as_bytes(), 0o644, mtime)?;
    }
    write_file(
        &root.join("cgi-bin/hello"),
        HELLO_CGI.as_bytes(),
        0o755,
        mtime,
    )?;
    write_file(&run.join("report.lua"), REPORT_LUA.as_bytes(), 0o644, mtime)?;
    Ok(Fixture {
        root,
        run,
        mtime: httpdate::fmt_http_date(mtime),
    })
}

// ---------------------------------------------------------------------------------------
// Scenarios

const SCENARIO_IDS: &[&str] = &[
    "1k", "1k-close", "64k", "10m", "404", "ims", "listing", "cgi",
];

#[derive(Debug, Clone)]
enum Expect {
    /// 200 and a body of exactly this many bytes.
    File(usize),
    /// This status.
    Status(u16),
    /// 200 and a body containing this.
    Contains(&'static str),
}

#[derive(Debug, Clone)]
struct Scenario {
    id: &'static str,
    title: &'static str,
    path: &'static str,
    conns: u32,
    /// `Connection: close` on every request.
    close: bool,
    /// One extra request header line, `Name: value`.
    header: Option<String>,
    cgi: bool,
    expect: Expect,
}

fn scenarios(fixture: &Fixture, only: Option<&[String]>) -> Vec<Scenario> {
    let base = |id, title, path, expect| Scenario {
        id,
        title,
        path,
        conns: 1,
        close: false,
        header: None,
        cgi: false,
        expect,
    };
    let kinds = [
        base("1k", "GET 1 KiB", "/1k.bin", Expect::File(1024)),
        base("64k", "GET 64 KiB", "/64k.bin", Expect::File(64 * 1024)),
        base(
            "10m",
            "GET 10 MiB",
            "/10m.bin",
            Expect::File(10 * 1024 * 1024),
        ),
        base("404", "404", "/missing.bin", Expect::Status(404)),
        Scenario {
            header: Some(format!("If-Modified-Since: {}", fixture.mtime)),
            ..base(
                "ims",
                "If-Modified-Since → 304",
                "/1k.bin",
                Expect::Status(304),
            )
        },
        base(
            "listing",
            "1000-entry listing",
            "/dir/",
            Expect::Contains("entry-0999.txt"),
        ),
        Scenario {
            cgi: true,
            ..base(
                "cgi",
                "CGI hello",
                "/cgi-bin/hello",
                Expect::Contains("hello"),
            )
        },
    ];
    let mut all = Vec::new();
    for sc in kinds {
        for conns in [1, 64] {
            all.push(Scenario {
                conns,
                ..sc.clone()
            });
        }
        if sc.id == "1k" {
            all.push(Scenario {
                id: "1k-close",
                title: "GET 1 KiB, Connection: close",
                conns: 64,
                close: true,
                ..sc.clone()
            });
        }
    }
    all.retain(|sc| only.is_none_or(|ids| ids.iter().any(|id| id == sc.id)));
    all
}

// ---------------------------------------------------------------------------------------
// Processes

/// A child process stopped (SIGTERM, then SIGKILL) with its descendants when dropped.
#[derive(Debug)]
struct Guard {
    name: String,
    child: Child,
}

impl Guard {
    fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Guard, String> {
        let out = fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Guard {
            name: name.to_owned(),
            child,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits at most `limit` for the process to exit on its own; gives up early (`Err`) when
    /// the harness is told to stop.
    fn wait_or_stop(
        &mut self,
        limit: Duration,
    ) -> Result<Option<std::process::ExitStatus>, String> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(Some(status)),
                Ok(None) if stopping() => return Err(String::from(INTERRUPTED)),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(None) => return Ok(None),
                Err(e) => return Err(format!("cannot wait for {}: {e}", self.name)),
            }
        }
    }

    /// Waits at most `limit` for the process to exit on its own.
    fn wait_for(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => return None,
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = self.pid();
        // nginx's workers, CGI scripts in flight: stopped by the parent on SIGTERM, and
        // killed below if they outlive it.
        let descendants = descendants(pid);
        signal("TERM", pid);
        if self.wait_for(STOP_TIMEOUT).is_none() {
            eprintln!(
                "compare: {} (pid {pid}) ignored SIGTERM; killing it",
                self.name
            );
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for (child, start) in descendants {
            if proc_stat(child).is_some_and(|s| s.start == start) {
                signal("KILL", child);
            }
        }
    }
}

fn signal(name: &str, pid: u32) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[derive(Debug)]
struct ProcStat {
    ppid: u32,
    /// Start time in clock ticks since boot: with the pid, names one process.
    start: u64,
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`: comm may hold spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        ppid: fields.get(1)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Every process below `pid`, with its start time.
fn descendants(pid: u32) -> Vec<(u32, u64)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let all: Vec<(u32, ProcStat)> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| Some((p, proc_stat(p)?)))
        .collect();
    let mut found: Vec<(u32, u64)> = Vec::new();
    let mut parents = vec![pid];
    while let Some(parent) = parents.pop() {
        for (p, stat) in &all {
            if stat.ppid == parent && !found.iter().any(|f| f.0 == *p) {
                found.push((*p, stat.start));
                parents.push(*p);
            }
        }
    }
    found
}

/// KiB of `VmRSS` or `VmHWM` of one process.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim_start_matches(':')
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// KiB of `VmRSS` or `VmHWM` of a server: its process plus the processes it keeps running,
/// nginx's workers and httpserve's CGI spawner helpers (other children are CGI scripts,
/// which come and go and are not counted).
fn memory_kib(server: &Server, field: &str) -> Option<u64> {
    let mut total = status_kib(server.guard.pid(), field)?;
    total += standing_children(server)
        .into_iter()
        .filter_map(|child| status_kib(child, field))
        .sum::<u64>();
    Some(total)
}

/// The processes a server keeps running beside its own: nginx's workers, httpserve's CGI
/// spawner helpers (run as root with `--cgi`).
fn standing_children(server: &Server) -> Vec<u32> {
    let pid = server.guard.pid();
    match server.kind {
        Kind::Nginx => descendants(pid).into_iter().map(|(p, _)| p).collect(),
        Kind::Httpserve => descendants(pid)
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| {
                let arg: &[u8] = b"--internal-cgi-spawner";
                fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| c.windows(arg.len()).any(|w| w == arg))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Resets the peak RSS (`VmHWM`) of `pid` to its current RSS; false if the kernel refused.
fn reset_peak(pid: u32) -> bool {
    fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| format!("cannot bind a loopback port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("cannot read a bound address: {e}"))
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

// ---------------------------------------------------------------------------------------
// Servers

#[derive(Debug)]
struct Server {
    kind: Kind,
    /// Started for the CGI scenario (httpserve and Python run a second instance with --cgi).
    cgi: bool,
    label: String,
    port: u16,
    guard: Guard,
    idle_rss_kib: Option<u64>,
}

fn fill(template: &str, port: u16, fixture: &Fixture, run_as: &str) -> String {
    template
        .replace("@PORT@", &port.to_string())
        .replace("@ROOT@", &fixture.root.display().to_string())
        .replace("@RUN@", &fixture.run.display().to_string())
        .replace("@RUN_AS@", run_as)
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

fn start_server(
    kind: Kind,
    cgi: bool,
    cfg: &Config,
    tools: &Tools,
    fixture: &Fixture,
) -> Result<Server, String> {
    let port = free_port()?;
    let label = if cgi && matches!(kind, Kind::Httpserve | Kind::Python) {
        format!("{} --cgi", kind.name())
    } else {
        kind.name().to_owned()
    };
    let run = &fixture.run;
    let log = run.join(format!("{}.log", label.replace(' ', "")));
    let mut cmd;
    match kind {
        Kind::Httpserve => {
            cmd = Command::new(&cfg.httpserve);
            cmd.arg(port.to_string())
                .arg("-b")
                .arg("127.0.0.1")
                .arg("-d")
                .arg(&fixture.root)
                .env("RUST_LOG", "off");
            if cgi {
                cmd.arg("--cgi");
            }
        }
        Kind::Python => {
            // As it comes: HTTP/1.0, one request per connection. (With `-p HTTP/1.1` its
            // keep-alive responses stall ~40 ms each on Nagle and delayed ACKs, and its CGI
            // responses, which carry no length, cannot be kept alive at all.)
            cmd = Command::new(&tools.python);
            cmd.args([
                "-m",
                "http.server",
                &port.to_string(),
                "-b",
                "127.0.0.1",
                "-d",
            ])
            .arg(&fixture.root)
            .current_dir(&fixture.root)
            .env("PYTHONDONTWRITEBYTECODE", "1");
            if cgi {
                cmd.arg("--cgi");
            }
        }
        Kind::Nginx => {
            let nginx = tools.nginx.as_ref().ok_or("nginx not found")?;
            let conf = run.join("nginx.conf");
            fs::write(&conf, fill(NGINX_CONF, port, fixture, ""))
                .map_err(|e| format!("{}: {e}", conf.display()))?;
            let temp = run.join("nginx-temp");
            fs::create_dir_all(&temp).map_err(|e| format!("{}: {e}", temp.display()))?;
            cmd = Command::new(nginx);
            cmd.arg("-p")
                .arg(format!("{}/", run.display()))
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(run.join("nginx-error.log"));
        }
        Kind::Lighttpd => {
            let lighttpd = tools.lighttpd.as_ref().ok_or("lighttpd not found")?;
            let run_as = if is_root() {
                "server.username = \"nobody\""
            } else {
                "# not root: runs as the current user"
            };
            let temp = run.join("lighttpd-tmp");
            fs::create_dir_all(&temp).map_err(|e| format!("{}: {e}", temp.display()))?;
            set_mode(&temp, 0o1777)?;
            let conf = run.join("lighttpd.conf");
            fs::write(&conf, fill(LIGHTTPD_CONF, port, fixture, run_as))
                .map_err(|e| format!("{}: {e}", conf.display()))?;
            cmd = Command::new(lighttpd);
            cmd.arg("-D").arg("-f").arg(&conf);
        }
    }
    let mut guard = Guard::spawn(&label, cmd, &log)?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = guard.child.try_wait() {
            let mut why = log_tail(&log);
            if kind == Kind::Nginx {
                why = format!("{why} | {}", log_tail(&run.join("nginx-error.log")));
            }
            return Err(format!("{label} exited at start ({status}): {why}"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!("{label} did not listen on port {port} within 10 s"));
        }
        if stopping() {
            return Err(String::from(INTERRUPTED));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    // Settle, then read the idle footprint (nginx's workers included).
    std::thread::sleep(Duration::from_millis(300));
    let mut server = Server {
        kind,
        cgi,
        label,
        port,
        guard,
        idle_rss_kib: None,
    };
    server.idle_rss_kib = memory_kib(&server, "VmRSS");
    Ok(server)
}

// ---------------------------------------------------------------------------------------
// The check request

#[derive(Debug)]
struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// One plain request on a fresh connection (`Connection: close`), bounded in time and size.
fn fetch(port: u16, sc: &Scenario) -> Result<Response, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let io = |e: std::io::Error| format!("request failed: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, CHECK_TIMEOUT).map_err(io)?;
    stream.set_read_timeout(Some(CHECK_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(CHECK_TIMEOUT)).map_err(io)?;
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n",
        sc.path
    );
    if let Some(header) = &sc.header {
        let _ = write!(request, "{header}\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;
    let limit = 12 * 1024 * 1024;
    let deadline = Instant::now() + CHECK_TIMEOUT;
    let mut raw = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.len() > limit {
            return Err(format!("response over {limit} bytes"));
        }
        if Instant::now() > deadline {
            return Err(String::from("response took over 10 s"));
        }
    }
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of response head")?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {:?}", head.lines().next()))?;
    Ok(Response {
        status,
        head,
        body: raw[end + 4..].to_vec(),
    })
}

/// Whether the server answers the scenario as expected (`Err(reason)` if not), and whether
/// its response body ends with the connection (no Content-Length, not chunked).
fn check(port: u16, sc: &Scenario) -> Result<bool, String> {
    let resp = fetch(port, sc)?;
    let first = resp.head.lines().next().unwrap_or_default().to_owned();
    match sc.expect {
        Expect::File(len) => {
            if resp.status != 200 {
                return Err(format!("expected 200, got {first:?}"));
            }
            if resp.body.len() != len {
                return Err(format!(
                    "expected a {len}-byte body, got {} bytes",
                    resp.body.len()
                ));
            }
        }
        Expect::Status(status) => {
            if resp.status != status {
                return Err(format!("expected {status}, got {first:?}"));
            }
        }
        Expect::Contains(needle) => {
            if resp.status != 200 {
                return Err(format!("expected 200, got {first:?}"));
            }
            if !String::from_utf8_lossy(&resp.body).contains(needle) {
                return Err(format!("expected {needle:?} in the body"));
            }
        }
    }
    let head = resp.head.to_ascii_lowercase();
    let framed = head.contains("\r\ncontent-length:")
        || head.contains("\r\ntransfer-encoding:")
        || matches!(resp.status, 204 | 304);
    Ok(!framed)
}

// ---------------------------------------------------------------------------------------
// wrk

#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    requests: f64,
    duration_us: f64,
    bytes: f64,
    connect_errors: f64,
    read_errors: f64,
    write_errors: f64,
    timeouts: f64,
    /// Responses with a status of 400 or more.
    status_errors: f64,
    p50_us: f64,
    p99_us: f64,
    /// The server ends each body by closing: wrk then counts a read error per response.
    close_delimited: bool,
    /// The scenario asks for an error status (404).
    errors_expected: bool,
}

impl Stats {
    /// Responses of the expected kind: wrk tells statuses of 400 and up from the others.
    fn good(&self) -> f64 {
        if self.errors_expected {
            self.status_errors
        } else {
            self.requests - self.status_errors
        }
    }

    /// Responses of the expected kind per second.
    fn rps(&self) -> f64 {
        self.good() / (self.duration_us / 1e6).max(1e-9)
    }

    fn mibs(&self) -> f64 {
        self.bytes / MIB / (self.duration_us / 1e6).max(1e-9)
    }
}

fn parse_wrk(output: &str) -> Option<Stats> {
    let line = output.lines().find(|l| l.starts_with("HTTPSERVE_BENCH "))?;
    let fields: HashMap<&str, f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k, v.parse().ok()?))
        })
        .collect();
    let get = |k: &str| fields.get(k).copied();
    Some(Stats {
        requests: get("requests")?,
        duration_us: get("duration_us")?,
        bytes: get("bytes")?,
        connect_errors: get("connect")?,
        read_errors: get("read")?,
        write_errors: get("write")?,
        timeouts: get("timeout")?,
        status_errors: get("status")?,
        p50_us: get("p50_us")?,
        p99_us: get("p99_us")?,
        close_delimited: false,
        errors_expected: false,
    })
}

/// One wrk run against a server.
#[derive(Debug)]
struct Load<'a> {
    port: u16,
    secs: u64,
    /// Names the output file.
    name: &'a str,
    /// On the pinned CPU (`Tools::pin`).
    pinned: bool,
}

fn wrk(
    cfg: &Config,
    tools: &Tools,
    fixture: &Fixture,
    sc: &Scenario,
    load: &Load<'_>,
) -> Result<Stats, String> {
    let (port, secs, name) = (load.port, load.secs, load.name);
    let threads = cfg.threads.unwrap_or(cfg.cores).clamp(1, sc.conns);
    let mut cmd = match &tools.pin {
        Some(pin) if load.pinned => {
            let mut cmd = Command::new(&pin.taskset);
            cmd.arg("-c").arg(&pin.one).arg(&tools.wrk);
            cmd
        }
        _ => Command::new(&tools.wrk),
    };
    cmd.arg("-t")
        .arg(threads.to_string())
        .arg("-c")
        .arg(sc.conns.to_string())
        .arg("-d")
        .arg(format!("{secs}s"))
        .arg("--timeout")
        .arg(WRK_TIMEOUT)
        .arg("--latency")
        .arg("-s")
        .arg(fixture.run.join("report.lua"));
    if let Some(header) = &sc.header {
        cmd.arg("-H").arg(header);
    }
    if sc.close {
        cmd.arg("-H").arg("Connection: close");
    }
    cmd.arg(format!("http://127.0.0.1:{port}{}", sc.path));
    let log = fixture.run.join(format!("wrk-{name}.out"));
    let mut guard = Guard::spawn("wrk", cmd, &log)?;
    let status = guard
        .wait_or_stop(Duration::from_secs(secs + 30))?
        .ok_or("wrk still running 30 s after the end of its run")?;
    let output = fs::read_to_string(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    if !status.success() {
        return Err(format!("wrk failed ({status}): {}", log_tail(&log)));
    }
    parse_wrk(&output).ok_or_else(|| format!("no result line from wrk: {}", log_tail(&log)))
}

// ---------------------------------------------------------------------------------------
// The run

#[derive(Debug)]
enum Cell {
    /// The server has no such feature.
    NotApplicable(&'static str),
    /// The check or the run failed.
    Skipped(String),
    Measured {
        stats: Stats,
        /// httpserve only: its peak RSS during this scenario.
        peak_rss_kib: Option<u64>,
    },
}

#[derive(Debug)]
struct Row {
    scenario: Scenario,
    cells: Vec<(Kind, Cell)>,
}

impl Row {
    fn cell(&self, kind: Kind) -> Option<&Cell> {
        self.cells.iter().find(|c| c.0 == kind).map(|c| &c.1)
    }
}

fn run() -> Result<ExitCode, String> {
    let started = Instant::now();
    catch_signals()?;
    let cfg = config()?;
    let tools = match tools(&cfg) {
        Ok(t) => t,
        Err(message) => {
            eprintln!("compare: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    // Declared first, dropped last: after every server is stopped.
    let temp = tempfile::Builder::new()
        .prefix("httpserve-bench-")
        .tempdir()
        .map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let fixture = make_fixture(temp.path())?;
    let all = scenarios(&fixture, cfg.only.as_deref());
    let want_cgi = all.iter().any(|s| s.cgi);
    let want_static = all.iter().any(|s| !s.cgi);
    eprintln!(
        "compare: fixture in {}; {} scenarios × {} servers, {} s each (+{} s warm-up)",
        temp.path().display(),
        all.len(),
        cfg.kinds.len(),
        cfg.duration,
        cfg.warmup
    );

    // Start every server once; keep them for the whole run.
    let mut servers: Vec<Server> = Vec::new();
    let mut failed: Vec<(Kind, bool, String)> = Vec::new();
    for &kind in &cfg.kinds {
        let instances: &[bool] = match kind {
            Kind::Httpserve | Kind::Python => &[false, true],
            Kind::Nginx => &[false],
            Kind::Lighttpd => &[false],
        };
        for &cgi in instances {
            if (cgi && !want_cgi) || (!cgi && !want_static && kind != Kind::Lighttpd) {
                continue;
            }
            match start_server(kind, cgi, &cfg, &tools, &fixture) {
                Ok(server) => {
                    eprintln!(
                        "compare: {} on 127.0.0.1:{} (pid {})",
                        server.label,
                        server.port,
                        server.guard.pid()
                    );
                    servers.push(server);
                }
                Err(e) if kind == Kind::Httpserve => return Err(e),
                Err(e) => {
                    eprintln!("compare: {e}");
                    failed.push((kind, cgi, e));
                }
            }
        }
    }
    let find = |kind: Kind, cgi: bool| -> Result<&Server, String> {
        let cgi = cgi && matches!(kind, Kind::Httpserve | Kind::Python);
        if let Some(server) = servers.iter().find(|s| s.kind == kind && s.cgi == cgi) {
            return Ok(server);
        }
        let why = failed
            .iter()
            .find(|f| f.0 == kind && f.1 == cgi)
            .map_or("not started", |f| f.2.as_str());
        Err(format!("did not start: {why}"))
    };

    let runs_total: usize = all
        .iter()
        .map(|sc| {
            cfg.kinds
                .iter()
                .filter(|&&k| !(sc.cgi && k == Kind::Nginx))
                .count()
        })
        .sum();
    let mut runs_done = 0;
    let mut peak_reset_ok = true;
    let mut unpinned_runs = 0;
    // httpserve's VmHWM is reset before each scenario: its peak over the run is kept here.
    let mut peaks: HashMap<String, u64> = HashMap::new();
    let mut rows: Vec<Row> = Vec::new();
    for (index, sc) in all.iter().enumerate() {
        let mut order = cfg.kinds.clone();
        let turn = index % order.len();
        order.rotate_left(turn);
        let mut cells = Vec::new();
        for kind in order {
            if stopping() {
                // Returning drops every server's guard (and then the fixture).
                return Err(String::from(INTERRUPTED));
            }
            if sc.cgi && kind == Kind::Nginx {
                cells.push((kind, Cell::NotApplicable("nginx has no CGI")));
                continue;
            }
            runs_done += 1;
            let what = format!(
                "[{runs_done}/{runs_total}] {} c{} {}",
                sc.id,
                sc.conns,
                kind.name()
            );
            let server = match find(kind, sc.cgi) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("compare: {what}: skipped: {e}");
                    cells.push((kind, Cell::Skipped(e)));
                    continue;
                }
            };
            let close_delimited = match check(server.port, sc) {
                Ok(close_delimited) => close_delimited,
                Err(e) => {
                    let e = format!("check failed: {e}");
                    eprintln!("compare: {what}: skipped: {e}");
                    cells.push((kind, Cell::Skipped(e)));
                    continue;
                }
            };
            if kind == Kind::Httpserve {
                peak_reset_ok &= reset_peak(server.guard.pid());
                for helper in standing_children(server) {
                    peak_reset_ok &= reset_peak(helper);
                }
            }
            let name = format!("{}-c{}-{}", sc.id, sc.conns, kind.name());
            // Restores the server's CPUs when dropped, after this run.
            let pinned = match &tools.pin {
                Some(pin) if sc.conns == 1 => {
                    let pinned = Pinned::new(pin, server);
                    if pinned.is_none() {
                        eprintln!("compare: {what}: cannot pin the server; running unpinned");
                        unpinned_runs += 1;
                    }
                    pinned
                }
                _ => None,
            };
            let mut load = Load {
                port: server.port,
                secs: cfg.warmup,
                name: "warmup",
                pinned: pinned.is_some(),
            };
            if cfg.warmup > 0
                && let Err(e) = wrk(&cfg, &tools, &fixture, sc, &load)
            {
                eprintln!("compare: {what}: warm-up: {e}");
            }
            load.secs = cfg.duration;
            load.name = &name;
            let result = wrk(&cfg, &tools, &fixture, sc, &load);
            drop(pinned);
            match result {
                Ok(mut stats) => {
                    stats.close_delimited = close_delimited;
                    stats.errors_expected = matches!(sc.expect, Expect::Status(404));
                    let peak_rss_kib = (kind == Kind::Httpserve)
                        .then(|| memory_kib(server, "VmHWM"))
                        .flatten();
                    if let Some(peak) = peak_rss_kib {
                        let seen = peaks.entry(server.label.clone()).or_insert(0);
                        *seen = (*seen).max(peak);
                    }
                    eprintln!(
                        "compare: {what}: {} req/s, {:.1} MiB/s, p50 {}, p99 {}{}",
                        si(stats.rps()),
                        stats.mibs(),
                        latency(stats.p50_us),
                        latency(stats.p99_us),
                        errors_note(sc, &stats).map_or_else(String::new, |e| format!(", {e}"))
                    );
                    cells.push((
                        kind,
                        Cell::Measured {
                            stats,
                            peak_rss_kib,
                        },
                    ));
                }
                Err(e) => {
                    eprintln!("compare: {what}: skipped: {e}");
                    cells.push((kind, Cell::Skipped(e)));
                }
            }
        }
        rows.push(Row {
            scenario: sc.clone(),
            cells,
        });
    }

    let memory: Vec<(String, Option<u64>, Option<u64>)> = servers
        .iter()
        .map(|s| {
            (
                s.label.clone(),
                s.idle_rss_kib,
                memory_kib(s, "VmHWM").max(peaks.get(&s.label).copied()),
            )
        })
        .collect();
    drop(servers);
    let elapsed = started.elapsed();
    let report = report(
        &cfg,
        &tools,
        &rows,
        &memory,
        peak_reset_ok,
        unpinned_runs,
        elapsed,
    );
    println!("\n{report}");
    if let Some(out) = &cfg.out {
        fs::write(out, &report).map_err(|e| format!("{}: {e}", out.display()))?;
        eprintln!("compare: wrote {}", out.display());
    }
    eprintln!(
        "compare: total run time {}m{:02}s",
        elapsed.as_secs() / 60,
        elapsed.as_secs() % 60
    );
    drop(temp);
    let skipped = rows
        .iter()
        .flat_map(|r| &r.cells)
        .any(|c| matches!(c.1, Cell::Skipped(_)));
    Ok(if skipped {
        eprintln!("compare: some runs were skipped (see the notes in the report)");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

// ---------------------------------------------------------------------------------------
// The report

/// Three significant digits with a k/M suffix.
fn si(v: f64) -> String {
    let (v, suffix) = if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$}{suffix}")
}

fn latency(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || String::from("?"),
        |k| format!("{:.1} MiB", k as f64 / 1024.0),
    )
}

/// Socket errors, and error statuses where the scenario expects none.
fn errors_note(sc: &Scenario, stats: &Stats) -> Option<String> {
    let mut notes = Vec::new();
    // A close-delimited body ends in what wrk counts as a read error: one per response
    // (and one per connection still open at the end) is no error.
    let read = if stats.close_delimited {
        (stats.read_errors - stats.requests - f64::from(sc.conns)).max(0.0)
    } else {
        stats.read_errors
    };
    for (count, what) in [
        (stats.connect_errors, "connect errors"),
        (read, "read errors"),
        (stats.write_errors, "write errors"),
        (stats.timeouts, "timeouts"),
    ] {
        if count > 0.0 {
            notes.push(format!("{count:.0} {what}"));
        }
    }
    let bad_status = stats.requests - stats.good();
    if bad_status > 0.0 {
        let side = if stats.errors_expected {
            "< 400"
        } else {
            "≥ 400"
        };
        notes.push(format!(
            "{bad_status:.0} responses with a status {side} (not counted in req/s)"
        ));
    }
    (!notes.is_empty()).then(|| notes.join(", "))
}

/// The headline figure: MiB/s for the 10 MiB rows, else requests/s.
fn headline(sc: &Scenario, stats: &Stats) -> f64 {
    if sc.id == "10m" {
        stats.mibs()
    } else {
        stats.rps()
    }
}

fn command_output(program: &Path, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(out) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            text.lines().next().unwrap_or_default().trim().to_owned()
        }
        Err(_) => String::from("?"),
    }
}

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| String::from("unknown CPU"))
}

fn git_revision() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let rev = Command::new("git")
        .args(["-C", dir, "rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let Some(rev) = rev else {
        return String::from("unknown revision");
    };
    // The benchmark's own files don't change what is measured.
    let dirty = Command::new("git")
        .args([
            "-C",
            dir,
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
        ])
        .args([":/", ":(top,exclude)crates/server/benches"])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    if dirty {
        format!("{rev} + uncommitted changes")
    } else {
        rev
    }
}

fn report(
    cfg: &Config,
    tools: &Tools,
    rows: &[Row],
    memory: &[(String, Option<u64>, Option<u64>)],
    peak_reset_ok: bool,
    unpinned_runs: usize,
    elapsed: Duration,
) -> String {
    let mut md = String::new();
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| String::from("?"), |s| s.trim().to_owned());
    let mem_total = fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(format!("{:.1} GiB RAM", kib / 1024.0 / 1024.0))
    });
    let _ = writeln!(md, "# httpserve benchmark results\n");
    let _ = writeln!(
        md,
        "Written by `cargo bench -p httpserve --bench compare` \
         ([`compare.rs`](compare.rs), peer configurations in [`conf/`](conf/)); \
         regenerate rather than edit.\n"
    );
    let _ = writeln!(md, "- Date: {}", httpdate::fmt_http_date(SystemTime::now()));
    let _ = writeln!(
        md,
        "- Machine: {} cores ({}), Linux {kernel}{}",
        cfg.cores,
        cpu_model(),
        mem_total.map_or_else(String::new, |m| format!(", {m}"))
    );
    let _ = writeln!(
        md,
        "- httpserve: {} (release build), revision {}",
        command_output(&cfg.httpserve, &["--version"]),
        git_revision()
    );
    let mut peers = vec![format!(
        "{} (`-m http.server` as it comes, HTTP/1.0: one request per connection; `--cgi` \
         for CGI)",
        command_output(&tools.python, &["--version"])
    )];
    if let Some(nginx) = &tools.nginx {
        peers.push(format!(
            "{} (`worker_processes auto`)",
            command_output(nginx, &["-v"]).replace("nginx version: ", "")
        ));
    }
    if let Some(lighttpd) = &tools.lighttpd {
        let v = command_output(lighttpd, &["-v"]);
        peers.push(format!(
            "{} (one process, mod_cgi)",
            v.split_whitespace().next().unwrap_or("lighttpd")
        ));
    }
    let _ = writeln!(md, "- Peers: {}", peers.join("; "));
    let _ = writeln!(
        md,
        "- Load: {} on the same machine, over loopback; {} s measured per scenario and \
         server after a {} s warm-up; threads = connections, at most {}; the servers \
         take turns, in an order that rotates from scenario to scenario; every server's \
         answer checked once with a plain request first",
        command_output(&tools.wrk, &["-v"])
            .split(" Copyright")
            .next()
            .unwrap_or("wrk"),
        cfg.duration,
        cfg.warmup,
        cfg.threads.unwrap_or(cfg.cores)
    );
    let pinning = match &tools.pin {
        Some(pin) => format!(
            "wrk and every thread of the server share CPU {} (taskset), so these rows \
             measure what a request costs on one CPU, not the machine's cross-CPU wake-up \
             latency",
            pin.one
        ),
        None if cfg.pin => String::from("not pinned (no taskset): expect run-to-run swings"),
        None => String::from(
            "not pinned (HTTPSERVE_BENCH_PIN=0): expect run-to-run swings, up to tenfold on a \
             virtual machine",
        ),
    };
    let _ = writeln!(md, "- 1-connection rows: {pinning}");
    let _ = writeln!(
        md,
        "- Whole run: {}m{:02}s\n",
        elapsed.as_secs() / 60,
        elapsed.as_secs() % 60
    );

    // Summary: one row per scenario.
    let peers: Vec<Kind> = cfg.kinds[1..].to_vec();
    let _ = writeln!(md, "## Summary\n");
    let _ = writeln!(
        md,
        "Requests/s (MiB/s for the 10 MiB rows). After each peer's figure: httpserve ÷ peer \
         (≥ 1.00× means httpserve is at least as fast). Peak RSS: httpserve's during that \
         scenario.\n"
    );
    let mut header = String::from("| scenario | conns | httpserve |");
    let mut rule = String::from("|---|---:|---:|");
    for peer in &peers {
        let _ = write!(header, " {} |", peer.name());
        rule.push_str("---:|");
    }
    header.push_str(" httpserve peak RSS |");
    rule.push_str("---:|");
    let _ = writeln!(md, "{header}\n{rule}");
    for row in rows {
        let sc = &row.scenario;
        let ours = match row.cell(Kind::Httpserve) {
            Some(Cell::Measured { stats, .. }) => Some(headline(sc, stats)),
            _ => None,
        };
        let _ = write!(
            md,
            "| {} | {} | {} |",
            sc.title,
            sc.conns,
            short_cell(row.cell(Kind::Httpserve), sc, None)
        );
        for peer in &peers {
            let _ = write!(md, " {} |", short_cell(row.cell(*peer), sc, ours));
        }
        let peak = match row.cell(Kind::Httpserve) {
            Some(Cell::Measured { peak_rss_kib, .. }) => mib(*peak_rss_kib),
            _ => String::from("—"),
        };
        let _ = writeln!(md, " {peak} |");
    }

    // Details: one row per scenario and server.
    let _ = writeln!(md, "\n## Details\n");
    let _ = writeln!(
        md,
        "MiB/s counts every byte read, headers included; latencies are wrk's (`--latency`) \
         percentiles; req/s counts only responses of the expected kind (status < 400, or \
         ≥ 400 for the 404 rows); errors are socket errors and the other responses \
         (wrk counts a read error for every body that ends with the connection, as \
         Python's CGI responses do: those are left out).\n"
    );
    let _ = writeln!(
        md,
        "| scenario | conns | server | req/s | MiB/s | p50 | p99 | errors | httpserve ÷ this |"
    );
    let _ = writeln!(md, "|---|---:|---|---:|---:|---:|---:|---|---:|");
    let mut notes = Vec::new();
    for row in rows {
        let sc = &row.scenario;
        let ours = match row.cell(Kind::Httpserve) {
            Some(Cell::Measured { stats, .. }) => Some(headline(sc, stats)),
            _ => None,
        };
        for &kind in &cfg.kinds {
            let Some(cell) = row.cell(kind) else {
                continue;
            };
            match cell {
                Cell::NotApplicable(why) => {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | — | — | — | — | {why} | — |",
                        sc.title,
                        sc.conns,
                        kind.name()
                    );
                }
                Cell::Skipped(why) => {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | skipped | | | | see notes | |",
                        sc.title,
                        sc.conns,
                        kind.name()
                    );
                    notes.push(format!(
                        "{}, {} connection(s), {}: skipped: {why}",
                        sc.title,
                        sc.conns,
                        kind.name()
                    ));
                }
                Cell::Measured { stats, .. } => {
                    let ratio = match ours {
                        Some(o) if kind != Kind::Httpserve => {
                            format!("{:.2}×", o / headline(sc, stats).max(1e-9))
                        }
                        _ => String::new(),
                    };
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | {} | {:.1} | {} | {} | {} | {ratio} |",
                        sc.title,
                        sc.conns,
                        kind.name(),
                        si(stats.rps()),
                        stats.mibs(),
                        latency(stats.p50_us),
                        latency(stats.p99_us),
                        errors_note(sc, stats).unwrap_or_default()
                    );
                }
            }
        }
    }

    let _ = writeln!(md, "\n## Memory\n");
    let _ = writeln!(
        md,
        "Idle: VmRSS just after start, before any request. Peak: the highest VmHWM over the \
         whole run. nginx's worker processes and httpserve's CGI spawner helpers are added in; CGI scripts are not.\n"
    );
    let _ = writeln!(md, "| server | idle RSS | peak RSS |\n|---|---:|---:|");
    for (label, idle, peak) in memory {
        let _ = writeln!(md, "| {label} | {} | {} |", mib(*idle), mib(*peak));
    }
    if unpinned_runs > 0 {
        notes.push(format!(
            "{unpinned_runs} of the 1-connection runs could not pin the server and ran unpinned"
        ));
    }
    if !peak_reset_ok {
        notes.push(String::from(
            "the kernel refused to reset httpserve's VmHWM between scenarios: its per-scenario \
             peak RSS is the peak so far",
        ));
    }
    if !notes.is_empty() {
        let _ = writeln!(md, "\n## Notes\n");
        for note in notes {
            let _ = writeln!(md, "- {note}");
        }
    }
    md
}

/// A summary cell: the headline figure, and for a peer httpserve's ratio to it.
fn short_cell(cell: Option<&Cell>, sc: &Scenario, ours: Option<f64>) -> String {
    match cell {
        None => String::new(),
        Some(Cell::NotApplicable(_)) => String::from("—"),
        Some(Cell::Skipped(_)) => String::from("skipped"),
        Some(Cell::Measured { stats, .. }) => {
            let value = headline(sc, stats);
            let mut text = si(value);
            if let Some(ours) = ours {
                let _ = write!(text, " ({:.2}×)", ours / value.max(1e-9));
            }
            if errors_note(sc, stats).is_some() {
                text.push_str(" ⚠");
            }
            text
        }
    }
}
