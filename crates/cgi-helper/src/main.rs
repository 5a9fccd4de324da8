//! A CGI program for tests. `PATH_INFO` picks the behaviour (`/env`, `/echo`, `/big/MIB`,
//! …, see `main`); a copy named `nph-…` answers with its own status line. Every loop is
//! bounded; nothing here reads the network.

use std::io::{Read, Write};
use std::time::Duration;

/// FNV-1a, 64-bit: tests hash an upload the same way and compare.
fn fnv1a(data: &[u8], mut hash: u64) -> u64 {
    for &b in data {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x100_0000_01b3);
    }
    hash
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Byte `i` of the deterministic big output.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

fn main() {
    let path_info = std::env::var("PATH_INFO").unwrap_or_default();
    let query = std::env::var("QUERY_STRING").unwrap_or_default();
    let script_name = std::env::var("SCRIPT_NAME").unwrap_or_default();
    let argv0 = std::env::args().next().unwrap_or_default();
    let is_nph = std::path::Path::new(&argv0)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("nph-"));
    let mut out = std::io::stdout().lock();
    if is_nph {
        let _ = out.write_all(
            b"HTTP/1.1 299 Custom\r\nContent-Type: text/plain\r\nX-Nph: yes\r\n\r\nnph body\n",
        );
        return;
    }
    let mut parts = path_info.trim_start_matches('/').splitn(2, '/');
    let mode = parts.next().unwrap_or("");
    let arg = parts.next().unwrap_or("");
    let number = |default: usize| arg.parse::<usize>().unwrap_or(default);
    let result = match mode {
        "env" => {
            let mut vars: Vec<(String, String)> = std::env::vars_os()
                .map(|(k, v)| {
                    (
                        k.to_string_lossy().into_owned(),
                        v.to_string_lossy().into_owned(),
                    )
                })
                .collect();
            vars.sort();
            let mut body = format!("ARGC={}\n", std::env::args_os().count());
            for (k, v) in vars {
                body.push_str(&format!("{k}={v}\n"));
            }
            write!(
                out,
                "Content-Type: text/plain\nContent-Length: {}\n\n{body}",
                body.len()
            )
        }
        "echo" => {
            let len: usize = std::env::var("CONTENT_LENGTH")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut hash = FNV_OFFSET;
            let mut seen = 0;
            let mut buf = vec![0u8; 64 * 1024];
            let mut stdin = std::io::stdin().lock();
            while seen < len {
                let want = buf.len().min(len - seen);
                match stdin.read(&mut buf[..want]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        hash = fnv1a(&buf[..n], hash);
                        seen += n;
                    }
                }
            }
            write!(
                out,
                "Content-Type: text/plain\n\nlen={seen}\nfnv={hash:016x}\n"
            )
        }
        "big" | "stream-big" => {
            let total = number(1) * 1024 * 1024;
            let head = if mode == "big" {
                format!("Content-Type: application/octet-stream\nContent-Length: {total}\n\n")
            } else {
                String::from("Content-Type: application/octet-stream\n\n")
            };
            let chunk: Vec<u8> = (0..251 * 256).map(pattern).collect();
            let mut r = out.write_all(head.as_bytes());
            let mut sent = 0;
            while r.is_ok() && sent < total {
                let n = chunk.len().min(total - sent);
                r = out.write_all(&chunk[..n]);
                sent += n;
            }
            r
        }
        "status" => write!(
            out,
            "Status: {} Custom\nContent-Type: text/plain\n\nstatus {}\n",
            number(200),
            number(200)
        ),
        "local-redirect" => {
            let to = if query.is_empty() {
                format!("{script_name}/env?from=redirect")
            } else {
                query
            };
            write!(out, "Location: {to}\n\n")
        }
        "redirect-loop" => write!(out, "Location: {script_name}/redirect-loop\n\n"),
        "client-redirect" => write!(out, "Location: http://example.com/elsewhere\n\n"),
        "no-content-type" => write!(out, "X-Foo: bar\n\nbody without a type\n"),
        "no-headers" => std::process::exit(3),
        "fail-after-headers" => {
            let _ = write!(out, "Content-Type: text/plain\n\npartial");
            let _ = out.flush();
            std::process::exit(3)
        }
        "huge-header" => write!(
            out,
            "Content-Type: text/plain\nX-Big: {}\n\nbody",
            "x".repeat(100 * 1024)
        ),
        "many-headers" => {
            let mut head = String::from("Content-Type: text/plain\n");
            for i in 0..1000 {
                head.push_str(&format!("X-H{i}: {i}\n"));
            }
            write!(out, "{head}\nbody")
        }
        "sleep" => {
            std::thread::sleep(Duration::from_millis(number(100).min(30_000) as u64));
            write!(out, "Content-Type: text/plain\n\nslept\n")
        }
        "silent" => {
            std::thread::sleep(Duration::from_secs(30));
            Ok(())
        }
        "slow-body" => {
            let mut r = write!(out, "Content-Type: text/plain\n\n");
            for i in 0..number(10).min(600) {
                let _ = out.flush();
                std::thread::sleep(Duration::from_millis(100));
                r = r.and_then(|()| writeln!(out, "tick {i}"));
            }
            r
        }
        "pid" => {
            // Report our pid and a grandchild's, then trickle output for up to 30 s.
            let grandchild = std::process::Command::new("sleep").arg("30").spawn();
            let gpid = grandchild.as_ref().map_or(0, std::process::Child::id);
            let mut r = write!(
                out,
                "Content-Type: text/plain\nX-Pid: {}\nX-Grandchild-Pid: {gpid}\n\n",
                std::process::id()
            );
            for _ in 0..150 {
                r = r
                    .and_then(|()| out.write_all(b"."))
                    .and_then(|()| out.flush());
                if r.is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            r
        }
        "stderr" => {
            eprintln!("oops from stderr");
            write!(out, "Content-Type: text/plain\n\nsee the log\n")
        }
        _ => write!(
            out,
            "Status: 400 Unknown Mode\nContent-Type: text/plain\n\nunknown mode {mode:?}\n"
        ),
    };
    let _ = result.and_then(|()| out.flush());
}
