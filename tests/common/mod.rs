//! Support for the black-box tests: start the built `httpserve` binary (or Python's
//! `http.server`) on a loopback port and talk to it over raw sockets.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // test support: a panic is a test failure

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every socket operation and every wait in these tests is bounded by this.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The `httpserve` binary cargo built for this test run (`HTTPSERVE_BIN` overrides).
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("HTTPSERVE_BIN") {
        return PathBuf::from(path);
    }
    // target/<profile>/deps/<test binary> → target/<profile>/httpserve
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let bin = dir.join("httpserve");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds it",
        bin.display()
    );
    bin
}

/// The CGI test program `cgi-helper` (crates/cgi-helper), built beside `httpserve`.
pub fn cgi_helper() -> PathBuf {
    let bin = binary().with_file_name("cgi-helper");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test --workspace`",
        bin.display()
    );
    bin
}

/// The verdict of a differential test: no compared request differed, and at least
/// `min_requests` were compared (so a fixture that silently shrank cannot pass).
pub fn assert_all_alike(failures: &[String], compared: usize, min_requests: usize) {
    assert!(
        failures.is_empty(),
        "{} of {} compared requests differ:\n\n{}",
        failures.len(),
        compared,
        failures.join("\n\n")
    );
    assert!(
        compared >= min_requests,
        "only {compared} requests compared"
    );
    eprintln!("{compared} requests compared, all alike");
}

/// The `K=V` lines of the CGI helper's `/env` dump.
pub fn env_of(res: &Response) -> Vec<(String, String)> {
    res.text()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

/// One variable of an [`env_of`] dump.
pub fn var<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// FNV-1a, 64-bit: what the helper's `/echo` reports for an upload.
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x100_0000_01b3);
    }
    hash
}

/// A running server process, killed when dropped.
pub struct Server {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// The first line it printed on stdout.
    pub banner: String,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Server {
    /// `httpserve 0 -b 127.0.0.1 ARGS…`
    pub fn start(args: &[&str]) -> Server {
        let mut cmd = Command::new(binary());
        cmd.args(["0", "-b", "127.0.0.1"]).args(args);
        Server::spawn(cmd)
    }

    /// `httpserve 0 -b 127.0.0.1 -d DIR ARGS…`
    pub fn serve(dir: &Path, args: &[&str]) -> Server {
        let mut cmd = Command::new(binary());
        cmd.args(["0", "-b", "127.0.0.1", "-d"]).arg(dir).args(args);
        Server::spawn(cmd)
    }

    /// `python3 -u -m http.server 0 -b 127.0.0.1 -d DIR ARGS…`
    pub fn python(dir: &Path, args: &[&str]) -> Server {
        let mut cmd = Command::new("python3");
        cmd.args(["-u", "-m", "http.server", "0", "-b", "127.0.0.1", "-d"])
            .arg(dir)
            .args(args);
        Server::spawn(cmd)
    }

    /// Starts `cmd` and waits (bounded) for its `Serving HTTP on … port N` banner.
    pub fn spawn(mut cmd: Command) -> Server {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start server");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut err_pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so the server never blocks on a full pipe.
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest);
        });
        let banner = rx.recv_timeout(TIMEOUT).unwrap_or_default();
        let Some(port) = banner
            .split(" port ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            let err = String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned();
            panic!("server did not start: banner {banner:?}, stderr {err:?}");
        };
        Server {
            child,
            port,
            banner: banner.trim_end().to_owned(),
            stderr,
        }
    }

    /// A new connection to the server.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        stream
    }

    /// Sends `raw` byte for byte on a new connection and reads until the server closes it.
    pub fn raw(&self, raw: &[u8]) -> Vec<u8> {
        let mut stream = self.connect();
        stream.write_all(raw).unwrap();
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out);
        out
    }

    /// `METHOD target HTTP/1.1` with `Connection: close` and the extra header lines.
    pub fn request(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
        let mut raw =
            format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        for (name, value) in headers {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        raw.push_str("\r\n");
        Response::parse(&self.raw(raw.as_bytes()))
    }

    /// `GET target`.
    pub fn get(&self, target: &str) -> Response {
        self.request("GET", target, &[])
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits (bounded) until stderr contains `needle`; returns whether it did.
    pub fn wait_for_stderr(&self, needle: &str) -> bool {
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            if self.stderr().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Sends `signal` (e.g. "TERM") and waits (bounded) for the exit status code.
    pub fn signal_and_wait(&mut self, signal: &str) -> Option<i32> {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
        self.wait_exit()
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP/1.x response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The whole response as received.
    pub raw: Vec<u8>,
}

impl Response {
    /// Parses one response from raw bytes (the body is everything after the head).
    pub fn parse(raw: &[u8]) -> Response {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut res = httparse::Response::new(&mut headers);
        let head_len = match res.parse(raw) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!(
                "unparsable response {other:?}: {:?}",
                String::from_utf8_lossy(raw)
            ),
        };
        let headers: Vec<(String, String)> = res
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let chunked = headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
        let rest = &raw[head_len..];
        Response {
            status: res.code.unwrap_or(0),
            headers,
            body: if chunked {
                dechunk(rest)
            } else {
                rest.to_vec()
            },
            raw: raw.to_vec(),
        }
    }

    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `<li>` lines of a listing page.
    pub fn listing_entries(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.starts_with("<li>"))
            .map(str::to_owned)
            .collect()
    }
}

/// Decodes a chunked body as far as it is complete (a body cut short decodes to what
/// arrived; `raw` shows whether the final `0` chunk came).
pub fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..eol]).into_owned();
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_hex, 16) else {
            return out;
        };
        data = &data[eol + 2..];
        if size == 0 {
            return out;
        }
        let take = size.min(data.len());
        out.extend_from_slice(&data[..take]);
        if data.len() < size + 2 {
            return out;
        }
        data = &data[size + 2..];
    }
}

/// Runs the binary with `args` to completion (bounded) and returns (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start httpserve");
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let mut err = String::new();
    let _ = child.stdout.take().map(|mut s| s.read_to_string(&mut out));
    let _ = child.stderr.take().map(|mut s| s.read_to_string(&mut err));
    (status.and_then(|s| s.code()), out, err)
}

/// A figure of `/proc/PID/status` in KiB (`VmRSS:`, `VmHWM:`, `RssAnon:`, …).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}
