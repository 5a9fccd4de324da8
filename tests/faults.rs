//! Fault tests: many slow or idle clients, descriptor exhaustion. Bounded in count and
//! time, loopback only.
#![allow(clippy::unwrap_used)] // a panic in a test is a failure with a message

mod common;

use common::{Response, Server};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// These tests load the machine on purpose and assert response times, so they run one at
/// a time, not beside each other.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Lets this test process hold a few thousand sockets.
fn raise_own_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    }
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        soft >= 4096,
        "this machine allows only {soft} open files per process"
    );
}

fn fixture() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("a.txt"), "alpha\n").unwrap();
    d
}

/// A normal request on a fresh connection, timed.
fn timed_get(server: &Server) -> (Duration, Response) {
    let started = Instant::now();
    let res = server.get("/a.txt");
    (started.elapsed(), res)
}

#[test]
fn slow_header_clients_neither_block_others_nor_stay_forever() {
    let _serial = one_at_a_time();
    raise_own_fd_limit();
    let d = fixture();
    let server = Server::serve(d.path(), &["--header-timeout", "2"]);
    // 500 clients that start a request and never finish its headers (slowloris).
    let mut slow: Vec<TcpStream> = (0..500)
        .map(|_| {
            let mut s = server.connect();
            s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    let (elapsed, res) = timed_get(&server);
    assert_eq!(res.body, b"alpha\n");
    assert!(
        elapsed < Duration::from_secs(1),
        "a normal client waited {elapsed:?}"
    );
    // After the header timeout every slow connection is closed by the server.
    std::thread::sleep(Duration::from_millis(2500));
    let deadline = Instant::now() + Duration::from_secs(10);
    for s in &mut slow {
        s.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10)),
        ))
        .unwrap();
        let mut buf = [0u8; 1024];
        // EOF (or a reset, or a 408 followed by EOF): anything but a read timeout.
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    panic!("a slow-header connection was still open after the header timeout")
                }
                Err(_) => break,
            }
        }
    }
    assert_eq!(server.get("/a.txt").status, 200);
}

#[test]
fn fifteen_hundred_idle_connections_do_not_stop_service() {
    let _serial = one_at_a_time();
    raise_own_fd_limit();
    let d = fixture();
    let server = Server::serve(d.path(), &[]);
    let idle: Vec<TcpStream> = (0..1500).map(|_| server.connect()).collect();
    let (elapsed, res) = timed_get(&server);
    assert_eq!(res.body, b"alpha\n");
    assert!(
        elapsed < Duration::from_secs(1),
        "a normal client waited {elapsed:?} behind 1500 idle ones"
    );
    // They are all still connected (not refused), and keep-alive works for a new client.
    assert_eq!(idle.len(), 1500);
    let mut s = server.connect();
    for _ in 0..3 {
        s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
    }
}

#[test]
fn the_connection_cap_queues_clients_instead_of_failing() {
    let _serial = one_at_a_time();
    let d = fixture();
    let server = Server::serve(
        d.path(),
        &["--max-connections", "4", "--header-timeout", "2"],
    );
    let held: Vec<TcpStream> = (0..4).map(|_| server.connect()).collect();
    // The fifth client waits in the backlog until a slot frees (the idle ones time out).
    let started = Instant::now();
    let res = server.get("/a.txt");
    assert_eq!(res.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "served past the cap"
    );
    drop(held);
}

#[test]
fn running_out_of_descriptors_does_not_stop_the_server() {
    let _serial = one_at_a_time();
    // 40 descriptors: the listener, the runtime's own, and a handful of connections.
    let d = fixture();
    let mut cmd = Command::new("prlimit");
    cmd.args(["--nofile=40:40", "--"])
        .arg(common::binary())
        .args(["0", "-b", "127.0.0.1", "-d"])
        .arg(d.path());
    let server = Server::spawn(cmd);
    // Far more connections than descriptors: accept fails with EMFILE for many of them.
    let flood: Vec<TcpStream> = (0..60)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", server.port)).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.wait_for_stderr("accept failed"),
        "{}",
        server.stderr()
    );
    drop(flood);
    // Once descriptors free up, service resumes.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = TcpStream::connect(("127.0.0.1", server.port))
            .ok()
            .and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .ok()?;
                let mut out = Vec::new();
                s.read_to_end(&mut out).ok()?;
                Some(out)
            });
        if let Some(out) = res
            && out.starts_with(b"HTTP/1.1 200 OK")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server never recovered from EMFILE"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The server's resident set size, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn a_slow_reader_of_a_10_gib_file_keeps_memory_flat() {
    let _serial = one_at_a_time();
    let d = fixture();
    // Sparse: 10 GiB of zeros that take no disk.
    let file = std::fs::File::create(d.path().join("huge.bin")).unwrap();
    file.set_len(10 * 1024 * 1024 * 1024).unwrap();
    drop(file);
    let server = Server::serve(d.path(), &[]);
    let before = rss_kib(server.pid());
    let mut s = server.connect();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Read 64 MiB in small sips, pausing, so the server keeps hitting backpressure.
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0usize;
    let mut peak = before;
    for round in 0..256 {
        let mut got = 0;
        while got < buf.len() {
            let n = s.read(&mut buf[got..]).unwrap();
            assert!(n > 0, "the download stopped");
            got += n;
        }
        total += got;
        if round % 16 == 0 {
            std::thread::sleep(Duration::from_millis(20));
            peak = peak.max(rss_kib(server.pid()));
        }
    }
    assert!(total >= 64 * 1024 * 1024);
    // The socket buffers and a few file chunks in flight, not the 10 GiB.
    assert!(
        peak < before + 16 * 1024,
        "RSS grew from {before} KiB to {peak} KiB"
    );
}

#[test]
fn a_thousand_idle_keep_alive_connections_cost_under_50_mib() {
    let _serial = one_at_a_time();
    raise_own_fd_limit();
    let d = fixture();
    let server = Server::serve(d.path(), &[]);
    let idle_rss = rss_kib(server.pid());
    assert!(idle_rss < 10 * 1024, "idle RSS {idle_rss} KiB");
    // Each connection makes one request and then stays open, idle, kept alive.
    let mut conns: Vec<TcpStream> = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let mut s = server.connect();
        s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        conns.push(s);
    }
    for s in &mut conns {
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
    }
    std::thread::sleep(Duration::from_millis(200));
    let rss = rss_kib(server.pid());
    assert!(
        rss < 50 * 1024,
        "1000 idle keep-alive connections: RSS {rss} KiB"
    );
    assert_eq!(server.get("/a.txt").status, 200);
}

/// A child process killed (and reaped) when dropped, for tests that need its pipes.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `httpserve 0 -b 127.0.0.1 -d DIR ARGS…` with stdout drained (the banner's port
/// returned) and stderr a pipe left to the caller.
fn spawn_with_stderr_pipe(dir: &std::path::Path, args: &[&str]) -> (Child, u16) {
    use std::io::BufRead;
    use std::process::Stdio;
    let mut child = Child(
        Command::new(common::binary())
            .args(["0", "-b", "127.0.0.1", "-d"])
            .arg(dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = std::io::BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let banner = rx.recv_timeout(common::TIMEOUT).unwrap();
    let port = banner
        .split(" port ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in the banner {banner:?}"));
    (child, port)
}

/// Sends `count` pipelined requests for missing files on `stream` and waits for all their
/// (404) answers, each batch within `within`.
fn pipelined_404s(stream: &mut TcpStream, count: usize, within: Duration) {
    const BATCH: usize = 100;
    let page_end = b"</html>\n";
    let mut sent = 0;
    while sent < count {
        let batch = BATCH.min(count - sent);
        let requests: String = (sent..sent + batch)
            .map(|i| format!("GET /missing-{i} HTTP/1.1\r\nHost: x\r\n\r\n"))
            .collect();
        let started = Instant::now();
        stream.write_all(requests.as_bytes()).unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut answered = 0;
        while answered < batch {
            let n = match stream.read(&mut buf) {
                Ok(0) => panic!("closed after {} answers", sent + answered),
                Ok(n) => n,
                Err(e) => panic!(
                    "request {} not answered within {within:?} ({e}): the server waits on its log",
                    sent + answered
                ),
            };
            got.extend_from_slice(&buf[..n]);
            answered = got
                .windows(page_end.len())
                .filter(|w| w == page_end)
                .count();
        }
        assert!(got.starts_with(b"HTTP/1.1 404"));
        assert!(
            started.elapsed() < within,
            "a batch took {:?}",
            started.elapsed()
        );
        sent += batch;
    }
}

#[test]
fn a_stderr_nobody_reads_never_stops_serving_and_drops_are_counted() {
    let _serial = one_at_a_time();
    let d = fixture();
    let (mut child, port) = spawn_with_stderr_pipe(d.path(), &[]);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let within = Duration::from_secs(3);
    stream.set_read_timeout(Some(within)).unwrap();
    stream.set_write_timeout(Some(within)).unwrap();
    // Each 404 logs two lines (`code 404, message …` and the access line): 12,000 lines,
    // ~850 KB, far past a 64 KiB pipe and the server's log queue.
    const REQUESTS: usize = 6000;
    pipelined_404s(&mut stream, REQUESTS, within);
    drop(stream);

    // Now read the log: every line is either there or counted as dropped, and shutdown
    // flushes what was queued.
    let mut stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut log = Vec::new();
        let _ = stderr.read_to_end(&mut log);
        let _ = tx.send(log);
    });
    std::thread::sleep(Duration::from_millis(200));
    let killed = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let log = rx
        .recv_timeout(common::TIMEOUT)
        .expect("stderr was not closed after shutdown");
    let log = String::from_utf8_lossy(&log);
    let mut dropped = 0;
    let mut written = 0;
    for line in log.lines() {
        if let Some(rest) = line.strip_prefix("httpserve: WARN httpserve: ") {
            let count = rest.strip_suffix(" log lines dropped: stderr did not keep up");
            dropped += count
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("unexpected warning {line:?}"));
        } else if line.contains("\" 404 -") || line.contains("code 404, message File not found") {
            written += 1;
        }
    }
    eprintln!("{written} log lines written, {dropped} dropped and counted");
    assert!(dropped > 0, "nothing dropped: {written} lines written");
    assert_eq!(written + dropped, 2 * REQUESTS, "lines lost uncounted");
}

/// A directory of `entries` empty files with long names, whose listing takes a while to
/// render.
fn big_directory(root: &std::path::Path, entries: usize) {
    let dir = root.join("big");
    std::fs::create_dir(&dir).unwrap();
    for i in 0..entries {
        std::fs::File::create(dir.join(format!("entry-with-a-long-name-{i:08}.txt"))).unwrap();
    }
}

/// Sends SIGTERM (or SIGINT) to `pid`.
fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn shutdown_ends_at_the_grace_deadline_while_listings_render() {
    let _serial = one_at_a_time();
    let d = fixture();
    big_directory(d.path(), 40_000);
    let mut server = Server::serve(d.path(), &["--shutdown-grace", "1"]);
    // Listings render on tokio's blocking pool, which a runtime's drop waits for (f5bde70:
    // 6+ s). The clients never read, so every one also keeps its connection in flight. The
    // margin is for a loaded machine: 40 rendering threads compete with the exit path.
    let clients: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = server.connect();
            s.write_all(b"GET /big/ HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    send_signal(server.pid(), "TERM");
    let code = server.wait_exit();
    let took = started.elapsed();
    eprintln!("exited after {took:?}");
    assert_eq!(code, Some(0), "after {took:?}: {}", server.stderr());
    assert!(
        took < Duration::from_millis(3500),
        "--shutdown-grace 1, but the process took {took:?} to exit"
    );
    drop(clients);
}

#[test]
fn a_second_signal_ends_the_process_at_once() {
    let _serial = one_at_a_time();
    let d = fixture();
    // Sparse: a response far larger than the socket buffers.
    let file = std::fs::File::create(d.path().join("large.bin")).unwrap();
    file.set_len(64 * 1024 * 1024).unwrap();
    drop(file);
    for (first, second, status) in [
        ("TERM", "TERM", 143),
        ("INT", "TERM", 143),
        ("TERM", "INT", 130),
    ] {
        let mut server = Server::serve(d.path(), &["--shutdown-grace", "60"]);
        // A client that never reads keeps its response in flight: the graceful shutdown
        // would wait the whole grace period for it.
        let mut stalled = server.connect();
        stalled
            .write_all(b"GET /large.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        send_signal(server.pid(), first);
        std::thread::sleep(Duration::from_millis(300));
        // Still finishing the response, not accepting new connections.
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.pid())).unwrap();
        let state = stat.rsplit(')').next().unwrap().trim_start();
        assert!(!state.starts_with('Z'), "exited on the first signal");
        let started = Instant::now();
        send_signal(server.pid(), second);
        let code = server.wait_exit();
        let took = started.elapsed();
        assert_eq!(code, Some(status), "SIG{first} then SIG{second}");
        assert!(
            took < Duration::from_secs(1),
            "SIG{first} then SIG{second}: exited after {took:?}"
        );
        drop(stalled);
    }
}

/// A sparse file of `len` bytes (zeros that take no disk) in `dir`.
fn sparse_file(dir: &std::path::Path, name: &str, len: u64) {
    let file = std::fs::File::create(dir.join(name)).unwrap();
    file.set_len(len).unwrap();
}

/// Waits (bounded) until the server's RSS stops moving, and returns it.
fn settled_rss_kib(pid: u32) -> u64 {
    let mut last = rss_kib(pid);
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(250));
        let now = rss_kib(pid);
        if now.abs_diff(last) <= last / 100 {
            return now;
        }
        last = now;
    }
    last
}

#[test]
fn stalled_readers_are_cut_after_the_send_timeout_and_others_get_served() {
    let _serial = one_at_a_time();
    let d = fixture();
    sparse_file(d.path(), "large.bin", 256 * 1024 * 1024);
    // Every connection slot taken by a client that asks for a large file and never reads.
    let server = Server::serve(
        d.path(),
        &["--send-timeout", "2", "--max-connections", "40"],
    );
    let stalled: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = server.connect();
            s.write_all(b"GET /large.bin HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // Another client waits in the backlog until the send timeout frees the slots.
    let started = Instant::now();
    let res = server.get("/a.txt");
    let waited = started.elapsed();
    eprintln!("a normal client waited {waited:?}");
    assert_eq!(res.body, b"alpha\n");
    assert!(
        waited < Duration::from_secs(6),
        "a normal client waited {waited:?} behind stalled readers"
    );
    // Each stalled response was cut (they stalled within moments of each other; reading
    // one before its timeout would count as progress): what the kernel had buffered, then
    // the end, well short of the 256 MiB.
    std::thread::sleep(Duration::from_millis(1500));
    for mut s in stalled {
        let mut total = 0usize;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("a stalled connection was still open ({e}) after {total} bytes"),
            }
        }
        assert!(total < 64 * 1024 * 1024, "{total} bytes: not cut");
    }
    assert_eq!(server.get("/a.txt").status, 200);
}

#[test]
fn stalled_readers_cost_under_128_kib_each_and_memory_returns_when_they_go() {
    let _serial = one_at_a_time();
    raise_own_fd_limit();
    let d = fixture();
    sparse_file(d.path(), "large.bin", 256 * 1024 * 1024);
    std::fs::write(d.path().join("f128.bin"), vec![b'x'; 128 * 1024]).unwrap();
    let server = Server::serve(d.path(), &[]);
    assert_eq!(server.get("/f128.bin").body.len(), 128 * 1024);
    let before = settled_rss_kib(server.pid());
    // 200 readers of a large file and 200 that pipeline 40 requests for a 128 KiB file,
    // none of which ever reads.
    const EACH: usize = 200;
    let pipelined = b"GET /f128.bin HTTP/1.1\r\nHost: x\r\n\r\n".repeat(40);
    let mut stalled: Vec<TcpStream> = Vec::with_capacity(2 * EACH);
    for i in 0..2 * EACH {
        let mut s = server.connect();
        if i % 2 == 0 {
            s.write_all(b"GET /large.bin HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
        } else {
            s.write_all(&pipelined).unwrap();
        }
        stalled.push(s);
    }
    let held = settled_rss_kib(server.pid());
    let per_connection = held.saturating_sub(before) / (2 * EACH) as u64;
    eprintln!(
        "RSS {before} KiB, with {} stalled readers {held} KiB: {per_connection} KiB each",
        2 * EACH
    );
    assert!(
        per_connection <= 128,
        "{per_connection} KiB per stalled connection (RSS {before} → {held} KiB)"
    );
    drop(stalled);
    // The memory goes back to the kernel once they are gone.
    let deadline = Instant::now() + Duration::from_secs(8);
    let grown = held - before;
    let mut after = rss_kib(server.pid());
    while after > before + grown / 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        after = rss_kib(server.pid());
    }
    eprintln!("after they left: {after} KiB");
    assert!(
        after <= before + grown / 4,
        "RSS {before} KiB, {held} KiB with stalled readers, still {after} KiB after they left"
    );
    assert_eq!(server.get("/a.txt").status, 200);
}
