//! Starting scripts from a helper process that already runs as the scripts' user.
//!
//! A server running as root changes the user of every script it starts, and the standard
//! library can only do that with `fork`: the whole server's page tables are copied, then
//! torn down again by `exec`, and every page the server writes in between is a
//! copy-on-write fault. Measured on a 5 MiB server, that is 0.55 ms of server CPU per script
//! against 0.31 ms for a `posix_spawn` (a `vfork`), which is what std uses when the user
//! stays the same. So a [`Spawner`] starts, once, small single-threaded helpers (one per
//! core) that already run as the scripts' user; the server sends an idle one each
//! script's program, arguments, environment and directory with the script's stdio and a
//! status pipe over a private socket pair, and gets back its pid and a pidfd. The helper
//! starts the script with `posix_spawn`, reaps it, and writes its wait status to the
//! status pipe. The script's I/O never passes through the helper.
//!
//! A helper is the server's own binary, re-executed with an argument that makes it call
//! [`serve`] on its stdin. It refuses to be ptraced or dumped (its memory holds requests),
//! and it exits when the server closes the socket. If one dies, the server reaps it, logs
//! it, and the other helpers (or, with none left, the server itself) start the scripts;
//! a script whose request reached a helper that then died is answered `500`, never
//! started a second time.

use crate::RunAs;
use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use rustix::process::{Pid, PidfdFlags, Signal};
use std::ffi::OsStr;
use std::io::{self, IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::io::AsyncReadExt;
use tokio::io::Interest;
use tokio::net::UnixStream;

/// The largest request the helper takes: the program, arguments and environment of one
/// script. Bigger ones (a request with hundreds of KiB of headers) are started by the server.
const MAX_REQUEST: usize = 192 * 1024;

/// The descriptors that go with a request: the script's stdin, stdout and stderr, and the
/// write end of the pipe that gets its wait status.
const REQUEST_FDS: usize = 4;

/// Starts scripts through helper processes running as the scripts' user; cheap to clone.
///
/// Built by [`Spawner::start`] and handed to [`CgiConfig::spawner`](crate::CgiConfig::spawner).
#[derive(Debug, Clone)]
pub struct Spawner {
    helpers: Arc<[Helper]>,
    /// Where the search for a free helper starts, so they take turns.
    next: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct Helper {
    /// A stream socket pair: each request is a length-prefixed message with four
    /// descriptors on its first byte, each reply 8 bytes and a pidfd. Locked for a whole
    /// exchange, so a request and its reply are never interleaved with another's.
    socket: tokio::sync::Mutex<UnixStream>,
    /// Set when the helper is gone (its process exited, or an exchange failed); the
    /// other helpers, or the server itself, then start the scripts.
    broken: Arc<AtomicBool>,
}

impl Spawner {
    /// Starts `helpers` helper processes (at least one) with `command`, which runs
    /// [`serve`] on its stdin (the `httpserve` binary does so when re-executed with
    /// `--internal-cgi-spawner`), as the user `run_as` names. `None` when scripts run as
    /// the server's own user: std already starts those with `posix_spawn`.
    ///
    /// A helper is busy while a script it starts executes `exec`, so one per core keeps
    /// scripts starting in parallel. Must be called within a tokio runtime.
    pub fn start(
        run_as: RunAs,
        helpers: usize,
        mut command: impl FnMut() -> std::process::Command,
    ) -> io::Result<Option<Self>> {
        let Some((uid, gid)) = run_as.ids() else {
            return Ok(None);
        };
        let mut started = Vec::with_capacity(helpers.max(1));
        for _ in 0..helpers.max(1) {
            let (ours, theirs) = socket_pair()?;
            let mut helper = command();
            helper
                .stdin(Stdio::from(theirs))
                .stdout(Stdio::null())
                .uid(uid)
                .gid(gid);
            let mut process = tokio::process::Command::from(helper)
                .kill_on_drop(true)
                .spawn()?;
            let started_helper = Helper::new(ours)?;
            let broken = started_helper.broken.clone();
            // Reaps the helper if it dies, and stops sending it work. The helper ends by
            // itself when the server closes the socket; at runtime shutdown this task is
            // dropped and `kill_on_drop` ends it.
            tokio::spawn(async move {
                let status = process.wait().await;
                broken.store(true, Ordering::Relaxed);
                match status {
                    // Its socket closed: the server is going away.
                    Ok(status) if status.success() => {}
                    Ok(status) => {
                        tracing::error!(target: "httpserve::cgi", "a CGI spawner helper ended ({status}); the others, or the server, start scripts");
                    }
                    Err(e) => {
                        tracing::error!(target: "httpserve::cgi", "waiting for a CGI spawner helper: {e}");
                    }
                }
            });
            started.push(started_helper);
        }
        Ok(Some(Self::with_helpers(started)))
    }

    fn with_helpers(helpers: Vec<Helper>) -> Self {
        Self {
            helpers: helpers.into(),
            next: Arc::default(),
        }
    }

    /// False once every helper has gone away.
    pub(crate) fn is_working(&self) -> bool {
        self.helpers.iter().any(Helper::is_working)
    }

    /// Starts `request` with `stdio` (stdin, stdout, stderr) as its standard streams.
    /// An error from the helper's `posix_spawn` (no such file, not executable) comes back
    /// as it would from `Command::spawn`; `Err(None)` means no helper could be asked (all
    /// gone, or the request too big) and the caller should start the script itself.
    pub(crate) async fn spawn(
        &self,
        request: &SpawnRequest<'_>,
        stdio: [OwnedFd; 3],
    ) -> Result<HelperChild, Option<io::Error>> {
        let bytes = request.encode();
        if bytes.len() > MAX_REQUEST {
            return Err(None);
        }
        let (status_read, status_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| Some(e.into()))?;
        let [stdin, stdout, stderr] = stdio;
        let fds = [stdin, stdout, stderr, status_write];
        let spawner = self.clone();
        // In a task of its own, so a request whose client goes away mid-exchange still
        // reads its reply, and the next request never reads another's.
        let exchange = tokio::spawn(async move {
            let helper = spawner.pick().ok_or_else(|| {
                Exchange::NotSent(io::Error::other("every CGI spawner helper is gone"))
            })?;
            let result = exchange(&*helper.socket.lock().await, &bytes, &fds).await;
            drop(fds);
            result.inspect_err(|failed| {
                if !helper.broken.swap(true, Ordering::Relaxed) {
                    let (Exchange::NotSent(e) | Exchange::NoReply(e)) = failed;
                    tracing::error!(target: "httpserve::cgi", "a CGI spawner helper is gone ({e}); the others, or the server, start scripts");
                }
            })
        });
        let reply = match exchange.await {
            Ok(Ok(reply)) => reply,
            Ok(Err(Exchange::NotSent(_))) => return Err(None),
            // It may have started the script: starting it again could run it twice.
            Ok(Err(Exchange::NoReply(e))) => return Err(Some(e)),
            Err(e) => return Err(Some(io::Error::other(e))),
        };
        match reply {
            Reply::Started { pid, pidfd } => Ok(HelperChild {
                pid,
                pidfd,
                status: tokio::net::unix::pipe::Receiver::from_owned_fd(status_read)
                    .map_err(Some)?,
                reaped: false,
            }),
            Reply::Failed(errno) => Err(Some(io::Error::from_raw_os_error(errno))),
        }
    }

    /// A working helper: an idle one if any, else the next in turn.
    fn pick(&self) -> Option<&Helper> {
        let count = self.helpers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let working = (0..count)
            .map(|i| &self.helpers[(start + i) % count])
            .filter(|h| h.is_working());
        let mut first = None;
        for helper in working {
            if helper.socket.try_lock().is_ok() {
                return Some(helper);
            }
            first.get_or_insert(helper);
        }
        first
    }
}

impl Helper {
    fn new(socket: OwnedFd) -> io::Result<Self> {
        let socket = UnixStream::from_std(std::os::unix::net::UnixStream::from(socket))?;
        Ok(Self {
            socket: tokio::sync::Mutex::new(socket),
            broken: Arc::default(),
        })
    }

    fn is_working(&self) -> bool {
        !self.broken.load(Ordering::Relaxed)
    }
}

/// The server's end (non-blocking, for tokio) and the helper's end (blocking: the helper
/// does nothing but wait for requests and scripts) of a new connected stream socket pair.
fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (ours, theirs) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC | rustix::net::SocketFlags::NONBLOCK,
        None,
    )?;
    rustix::io::ioctl_fionbio(&theirs, false)?;
    Ok((ours, theirs))
}

/// How an exchange with a helper failed.
#[derive(Debug)]
enum Exchange {
    /// The request did not reach the helper whole: the script can be started another way.
    NotSent(io::Error),
    /// The request went out, the reply never came: the script may be running.
    NoReply(io::Error),
}

/// Sends one request and reads its reply.
async fn exchange(
    socket: &UnixStream,
    request: &[u8],
    fds: &[OwnedFd; REQUEST_FDS],
) -> Result<Reply, Exchange> {
    send_request(socket, request, fds)
        .await
        .map_err(Exchange::NotSent)?;
    read_reply(socket).await.map_err(Exchange::NoReply)
}

/// Sends a request whole, its descriptors with its first bytes.
async fn send_request(
    socket: &UnixStream,
    request: &[u8],
    fds: &[OwnedFd; REQUEST_FDS],
) -> io::Result<()> {
    let borrowed: [BorrowedFd<'_>; REQUEST_FDS] = [
        fds[0].as_fd(),
        fds[1].as_fd(),
        fds[2].as_fd(),
        fds[3].as_fd(),
    ];
    let mut framed = Vec::with_capacity(4 + request.len());
    framed.extend_from_slice(&frame_len(request.len())?);
    framed.extend_from_slice(request);
    // The descriptors travel with the first bytes sent; the rest follows plainly.
    let mut sent = 0;
    while sent < framed.len() {
        socket.writable().await?;
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(REQUEST_FDS))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if sent == 0 {
            control.push(SendAncillaryMessage::ScmRights(&borrowed));
        }
        match socket.try_io(Interest::WRITABLE, || {
            rustix::net::sendmsg(
                socket,
                &[IoSlice::new(&framed[sent..])],
                &mut control,
                SendFlags::NOSIGNAL,
            )
            .map_err(io::Error::from)
        }) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads a reply whole, and the pidfd that comes with it.
async fn read_reply(socket: &UnixStream) -> io::Result<Reply> {
    let mut reply = [0u8; REPLY_LEN];
    let mut got = 0;
    let mut pidfd = None;
    while got < REPLY_LEN {
        socket.readable().await?;
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        match socket.try_io(Interest::READABLE, || {
            rustix::net::recvmsg(
                socket,
                &mut [IoSliceMut::new(&mut reply[got..])],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            )
            .map_err(io::Error::from)
        }) {
            Ok(msg) if msg.bytes == 0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the spawner closed its socket",
                ));
            }
            Ok(msg) => got += msg.bytes,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                for fd in fds {
                    // More than one descriptor is a broken helper; extra ones just close.
                    pidfd.get_or_insert(fd);
                }
            }
        }
    }
    Reply::decode(&reply, pidfd)
}

/// The 4-byte length prefix of a request.
fn frame_len(len: usize) -> io::Result<[u8; 4]> {
    u32::try_from(len)
        .map(u32::to_le_bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "spawn request too big"))
}

/// Bytes in a reply: a tag and a pid or errno.
const REPLY_LEN: usize = 8;

/// What the helper answers.
#[derive(Debug)]
enum Reply {
    Started { pid: u32, pidfd: OwnedFd },
    Failed(i32),
}

impl Reply {
    /// The helper's side: a tag (0 started, 1 failed) and the pid or errno; a started
    /// script's pidfd goes with it.
    fn encode(started: Result<u32, i32>) -> [u8; REPLY_LEN] {
        let (tag, value) = match started {
            Ok(pid) => (0u32, pid.to_le_bytes()),
            Err(errno) => (1, errno.to_le_bytes()),
        };
        let mut out = [0u8; REPLY_LEN];
        out[..4].copy_from_slice(&tag.to_le_bytes());
        out[4..].copy_from_slice(&value);
        out
    }

    fn decode(bytes: &[u8], pidfd: Option<OwnedFd>) -> io::Result<Self> {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed spawner reply");
        let (tag, value) = bytes.split_at_checked(4).ok_or_else(bad)?;
        let value: [u8; 4] = value.try_into().map_err(|_| bad())?;
        match (tag, pidfd) {
            ([0, 0, 0, 0], Some(pidfd)) => Ok(Self::Started {
                pid: u32::from_le_bytes(value),
                pidfd,
            }),
            ([1, 0, 0, 0], None) => Ok(Self::Failed(i32::from_le_bytes(value))),
            _ => Err(bad()),
        }
    }
}

/// What the helper needs to start one script.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SpawnRequest<'a> {
    pub(crate) program: &'a OsStr,
    pub(crate) args: Vec<&'a OsStr>,
    pub(crate) env: Vec<(&'a OsStr, &'a OsStr)>,
    pub(crate) dir: Option<&'a Path>,
}

impl<'a> SpawnRequest<'a> {
    /// Length-prefixed fields: program, directory (empty: none), the argument count and
    /// arguments, the variable count and each name and value.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096);
        let mut field = |bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        };
        field(self.program.as_bytes());
        field(self.dir.map_or(&[][..], |d| d.as_os_str().as_bytes()));
        field(&(self.args.len() as u32).to_le_bytes());
        for arg in &self.args {
            field(arg.as_bytes());
        }
        field(&(self.env.len() as u32).to_le_bytes());
        for (name, value) in &self.env {
            field(name.as_bytes());
            field(value.as_bytes());
        }
        out
    }

    fn decode(mut bytes: &'a [u8]) -> Option<Self> {
        let mut field = || -> Option<&'a [u8]> {
            let (len, rest) = bytes.split_at_checked(4)?;
            let len = usize::try_from(u32::from_le_bytes(len.try_into().ok()?)).ok()?;
            let (value, rest) = rest.split_at_checked(len)?;
            bytes = rest;
            Some(value)
        };
        let count = |f: &[u8]| -> Option<usize> {
            usize::try_from(u32::from_le_bytes(f.try_into().ok()?)).ok()
        };
        let program = OsStr::from_bytes(field()?);
        let dir = field()?;
        let dir = (!dir.is_empty()).then(|| Path::new(OsStr::from_bytes(dir)));
        let argc = count(field()?)?;
        let mut args = Vec::new();
        for _ in 0..argc {
            args.push(OsStr::from_bytes(field()?));
        }
        let envc = count(field()?)?;
        let mut env = Vec::new();
        for _ in 0..envc {
            env.push((OsStr::from_bytes(field()?), OsStr::from_bytes(field()?)));
        }
        Some(Self {
            program,
            args,
            env,
            dir,
        })
        .filter(|_| bytes.is_empty())
    }
}

/// A script the helper started. Dropped before it was reaped, it is killed (through its
/// pidfd, so never another process that reused its pid).
#[derive(Debug)]
pub(crate) struct HelperChild {
    pid: u32,
    pidfd: OwnedFd,
    status: tokio::net::unix::pipe::Receiver,
    reaped: bool,
}

impl HelperChild {
    pub(crate) fn id(&self) -> u32 {
        self.pid
    }

    /// Waits until the helper has reaped the script, and returns its exit status.
    pub(crate) async fn wait(&mut self) -> io::Result<ExitStatus> {
        let mut raw = [0u8; 4];
        // No status (the helper died first): the script may still run, so it stays
        // unreaped and is killed on drop.
        self.status.read_exact(&mut raw).await?;
        self.reaped = true;
        Ok(ExitStatus::from_raw(i32::from_le_bytes(raw)))
    }
}

impl Drop for HelperChild {
    fn drop(&mut self) {
        if !self.reaped {
            // ESRCH: it has exited already.
            let _ = rustix::process::pidfd_send_signal(&self.pidfd, Signal::KILL);
        }
    }
}

/// The helper's side: starts the scripts requested on `socket` until the server closes
/// it, reaps them, and reports each one's wait status. Runs in the helper process, on
/// its only thread.
pub fn serve(socket: BorrowedFd<'_>) -> io::Result<()> {
    // Scripts run as the same user; none of them may read a request out of this process.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    let mut running: Vec<Running> = Vec::new();
    let mut buf = vec![0u8; 4 + MAX_REQUEST];
    loop {
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd<'_>> = std::iter::once(PollFd::new(&socket, PollFlags::IN))
                .chain(running.iter().map(|r| PollFd::new(&r.pidfd, PollFlags::IN)))
                .collect();
            match rustix::event::poll(&mut fds, None) {
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            fds.iter().map(|f| !f.revents().is_empty()).collect()
        };
        // Backwards, so `swap_remove` only moves entries already looked at.
        for i in (0..running.len()).rev() {
            if ready.get(i + 1) == Some(&true) {
                running.swap_remove(i).report();
            }
        }
        if ready.first() == Some(&true) {
            match receive(socket, &mut buf)? {
                None => return Ok(()),
                Some(Received { request, fds }) => match start(request.as_deref(), fds) {
                    Ok(script) => {
                        send_reply(socket, Ok(script.child.id()), Some(script.pidfd.as_fd()))?;
                        running.push(script);
                    }
                    Err(errno) => send_reply(socket, Err(errno), None)?,
                },
            }
        }
    }
}

/// A script the helper started and has not reaped yet.
struct Running {
    child: std::process::Child,
    pidfd: OwnedFd,
    status: std::fs::File,
}

impl Running {
    /// Reaps the script (its pidfd said it exited) and writes its wait status for the
    /// server: 4 bytes into an empty pipe never block.
    fn report(mut self) {
        if let Ok(status) = self.child.wait() {
            let _ = self.status.write_all(&status.into_raw().to_le_bytes());
        }
    }
}

/// A request as the helper received it.
struct Received {
    /// `None` when it was not whole (descriptors missing or cut).
    request: Option<Vec<u8>>,
    fds: Vec<OwnedFd>,
}

/// The next request and its descriptors; `None` when the server has closed the socket.
/// A request that is not whole (descriptors missing or cut) comes back as `None` inside,
/// and is answered with `EINVAL`; one longer than [`MAX_REQUEST`] ends the helper.
fn receive(socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<Received>> {
    let mut got = 0;
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut cut = false;
    loop {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(REQUEST_FDS))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let want = match buf.get(..4).filter(|_| got >= 4) {
            Some(len) => {
                let len = u32::from_le_bytes(len.try_into().map_err(io::Error::other)?);
                let len = usize::try_from(len).map_err(io::Error::other)?;
                if len > MAX_REQUEST {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "spawn request too big",
                    ));
                }
                4 + len
            }
            None => 4,
        };
        if got >= 4 && got == want {
            let request = (!cut && fds.len() == REQUEST_FDS).then(|| buf[4..got].to_vec());
            return Ok(Some(Received { request, fds }));
        }
        let msg = match rustix::net::recvmsg(
            socket,
            &mut [IoSliceMut::new(&mut buf[got..want])],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Err(Errno::INTR) => continue,
            other => other?,
        };
        cut |= msg.flags.contains(ReturnFlags::CTRUNC);
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = message {
                fds.extend(received);
            }
        }
        if msg.bytes == 0 {
            if got == 0 && fds.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the socket mid-request",
            ));
        }
        got += msg.bytes;
    }
}

/// Starts one script: the script to watch, or the errno to answer.
fn start(request: Option<&[u8]>, fds: Vec<OwnedFd>) -> Result<Running, i32> {
    let invalid = Errno::INVAL.raw_os_error();
    let request = request.and_then(SpawnRequest::decode).ok_or(invalid)?;
    let [stdin, stdout, stderr, status] =
        <[OwnedFd; REQUEST_FDS]>::try_from(fds).map_err(|_| invalid)?;
    let mut cmd = std::process::Command::new(request.program);
    cmd.args(&request.args)
        .env_clear()
        .envs(request.env.iter().copied())
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        // Its own process group, so everything it starts can be killed with it.
        .process_group(0);
    if let Some(dir) = request.dir {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| e.raw_os_error().unwrap_or(invalid))?;
    // Our own unreaped child: its pid cannot have been reused yet.
    let pidfd = Pid::from_raw(child.id().cast_signed())
        .ok_or(Errno::SRCH)
        .and_then(|pid| rustix::process::pidfd_open(pid, PidfdFlags::empty()));
    match pidfd {
        Ok(pidfd) => Ok(Running {
            child,
            pidfd,
            status: std::fs::File::from(status),
        }),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e.raw_os_error())
        }
    }
}

/// Sends a reply whole, a started script's pidfd with its first bytes.
fn send_reply(
    socket: BorrowedFd<'_>,
    started: Result<u32, i32>,
    pidfd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let bytes = Reply::encode(started);
    let pidfd: Vec<BorrowedFd<'_>> = pidfd.into_iter().collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !pidfd.is_empty() {
        control.push(SendAncillaryMessage::ScmRights(&pidfd));
    }
    let mut sent = 0;
    while sent < bytes.len() {
        match rustix::net::sendmsg(
            socket,
            &[IoSlice::new(&bytes[sent..])],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(n) => {
                sent += n;
                // The pidfd went with the first bytes.
                control.clear();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};
    use tokio::io::AsyncReadExt;

    /// A spawner whose one helper is `serve` on a thread of this process.
    fn spawner_on_a_thread() -> (Spawner, std::thread::JoinHandle<io::Result<()>>) {
        let (ours, theirs) = socket_pair().unwrap();
        let thread = std::thread::spawn(move || serve(theirs.as_fd()));
        let helper = Helper::new(ours).unwrap();
        (Spawner::with_helpers(vec![helper]), thread)
    }

    fn pipe() -> (OwnedFd, OwnedFd) {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap()
    }

    fn devnull() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }

    fn sh<'a>(script: &'a str, env: Vec<(&'a OsStr, &'a OsStr)>) -> SpawnRequest<'a> {
        SpawnRequest {
            program: OsStr::new("/bin/sh"),
            args: vec![OsStr::new("-c"), OsStr::new(script)],
            env,
            dir: Some(Path::new("/tmp")),
        }
    }

    async fn read_all(fd: OwnedFd) -> String {
        let mut pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(fd).unwrap();
        let mut out = String::new();
        pipe.read_to_string(&mut out).await.unwrap();
        out
    }

    fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            !stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        })
    }

    #[test]
    fn requests_survive_encoding_and_truncation_is_refused() {
        let request = SpawnRequest {
            program: OsStr::new("/usr/bin/env"),
            args: vec![OsStr::new("a b"), OsStr::from_bytes(b"\xff\x00")],
            env: vec![
                (OsStr::new("PATH_INFO"), OsStr::new("/x=y")),
                (OsStr::new("EMPTY"), OsStr::new("")),
            ],
            dir: Some(Path::new("/srv/cgi-bin")),
        };
        let bytes = request.encode();
        assert_eq!(SpawnRequest::decode(&bytes), Some(request));
        for cut in 0..bytes.len() {
            assert_eq!(SpawnRequest::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut longer = bytes;
        longer.push(0);
        assert_eq!(SpawnRequest::decode(&longer), None);
    }

    #[tokio::test]
    async fn a_script_runs_with_its_arguments_environment_directory_and_streams() {
        let (spawner, _thread) = spawner_on_a_thread();
        let (out_read, out_write) = pipe();
        let (err_read, err_write) = pipe();
        let (in_read, in_write) = pipe();
        let script = "read line; echo \"$line $GREETING $(pwd)\"; echo oops >&2; exit 3";
        let env = vec![(OsStr::new("GREETING"), OsStr::new("hello"))];
        let mut child = spawner
            .spawn(&sh(script, env), [in_read, out_write, err_write])
            .await
            .unwrap();
        assert!(child.id() > 0);
        rustix::io::write(&in_write, b"input\n").unwrap();
        drop(in_write);
        assert_eq!(read_all(out_read).await, "input hello /tmp\n");
        assert_eq!(read_all(err_read).await, "oops\n");
        assert_eq!(child.wait().await.unwrap().code(), Some(3));
    }

    #[tokio::test]
    async fn spawn_errors_come_back_as_std_would_report_them() {
        let (spawner, _thread) = spawner_on_a_thread();
        let (_out_read, out_write) = pipe();
        let (_err_read, err_write) = pipe();
        let request = SpawnRequest {
            program: OsStr::new("/nonexistent/script"),
            args: Vec::new(),
            env: Vec::new(),
            dir: None,
        };
        let err = spawner
            .spawn(&request, [devnull(), out_write, err_write])
            .await
            .unwrap_err()
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        // The helper is still there for the next one.
        assert!(spawner.is_working());
    }

    #[tokio::test]
    async fn a_dropped_script_is_killed_and_reaped() {
        let (spawner, _thread) = spawner_on_a_thread();
        let (_out_read, out_write) = pipe();
        let (_err_read, err_write) = pipe();
        let child = spawner
            .spawn(
                &sh("exec sleep 30", Vec::new()),
                [devnull(), out_write, err_write],
            )
            .await
            .unwrap();
        let pid = child.id();
        assert!(alive(pid));
        drop(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(format!("/proc/{pid}")).is_ok() {
            assert!(Instant::now() < deadline, "{pid} still exists (unreaped?)");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_script_whose_helper_died_before_reporting_is_still_killed() {
        let mut script = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = Pid::from_raw(script.id().cast_signed()).unwrap();
        let (status_read, status_write) = pipe();
        let mut child = HelperChild {
            pid: script.id(),
            pidfd: rustix::process::pidfd_open(pid, PidfdFlags::empty()).unwrap(),
            status: tokio::net::unix::pipe::Receiver::from_owned_fd(status_read).unwrap(),
            reaped: false,
        };
        // The helper goes away without writing a status.
        drop(status_write);
        assert!(child.wait().await.is_err());
        drop(child);
        let status = script.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "{status:?}");
    }

    #[tokio::test]
    async fn without_a_helper_the_caller_is_told_to_start_the_script_itself() {
        let (ours, theirs) = socket_pair().unwrap();
        drop(theirs);
        let spawner = Spawner::with_helpers(vec![Helper::new(ours).unwrap()]);
        let (_out_read, out_write) = pipe();
        let (_err_read, err_write) = pipe();
        let result = spawner
            .spawn(&sh("exit 0", Vec::new()), [devnull(), out_write, err_write])
            .await;
        assert!(matches!(result, Err(None)), "{result:?}");
        assert!(!spawner.is_working());
    }

    #[tokio::test]
    async fn the_helper_ends_when_the_server_closes_its_socket() {
        let (spawner, thread) = spawner_on_a_thread();
        drop(spawner);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !thread.is_finished() {
            assert!(Instant::now() < deadline, "the helper kept running");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        thread.join().unwrap().unwrap();
    }
}
