//! Starting scripts from small helper processes instead of the server itself.
//!
//! A server running as root changes the user of every script it starts, and the standard
//! library can only do that with `fork`: the whole server's page tables are copied, then
//! torn down again by `exec`, and every page the server writes in between is a
//! copy-on-write fault (0.55 ms of server CPU per script against 0.31 ms for a
//! `posix_spawn`). So a [`Spawner`] starts, once, small single-threaded helpers (one per
//! core); the server sends an idle one each script's program, arguments, environment,
//! directory and user with the script's stdio and a status pipe over a private socket
//! pair, and gets back its pid and a pidfd. The script's I/O never passes through the
//! helper.
//!
//! Each script is started by a *keeper*, a process the helper forked and reuses (see
//! [`serve`]): a child subreaper in a session of its own, watching over one script at a
//! time, that reports the script's wait status into the status pipe and, when the server
//! closes that pipe (the request is over), kills every process the script left behind. The helpers and keepers run as the server's user, not the
//! scripts', so a script can neither signal nor ptrace them; they refuse to be dumped.
//!
//! A helper is the server's own binary, re-executed with an argument that makes it call
//! [`serve`] on its stdin; it exits when the server closes the socket. An exchange with a
//! helper is bounded ([`SPAWN_TIMEOUT`]): a helper that does not answer in time is killed
//! and replaced, and the request is answered without it. If a helper dies, the server
//! reaps it, logs it and starts another (at most one a second per helper); meanwhile the
//! other helpers, or the server itself, start the scripts. A script whose request reached a
//! helper that then failed is answered `500`, never started a second time.

mod exec;
mod helper;

pub use helper::serve;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use rustix::process::{Pid, PidfdFlags, Signal};
use std::ffi::OsStr;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::io::Interest;
use tokio::net::UnixStream;

/// The largest request the helper takes: the program, arguments and environment of one
/// script. Twice what Linux lets `execve` take by default (a quarter of an 8 MiB stack),
/// so only a script that could not start anyway is refused (`E2BIG`).
const MAX_REQUEST: usize = 4 * 1024 * 1024;

/// The descriptors that go with a request: the script's stdin, stdout and stderr, and the
/// write end of the pipe that gets its wait status.
const REQUEST_FDS: usize = 4;

/// The longest a request waits for a helper to take it and answer. A healthy helper
/// answers within milliseconds; one that does not is killed and replaced.
pub const SPAWN_TIMEOUT: Duration = Duration::from_secs(5);

/// How soon a helper that died may be replaced, so one that cannot start is not
/// restarted in a loop.
const RESTART_INTERVAL: Duration = Duration::from_secs(1);

/// Builds the command that starts a helper.
type Launcher = dyn Fn() -> std::process::Command + Send + Sync;

/// Starts scripts through helper processes; cheap to clone.
///
/// Built by [`Spawner::start`] and handed to [`CgiConfig::spawner`](crate::CgiConfig::spawner).
#[derive(Clone)]
pub struct Spawner {
    inner: Arc<Inner>,
}

struct Inner {
    /// Each slot holds its current helper; a helper that fails is replaced in its slot.
    slots: Box<[Mutex<Arc<Helper>>]>,
    /// Where the search for a free helper starts, so they take turns.
    next: AtomicUsize,
    /// `None` in tests, whose helpers cannot be restarted.
    launcher: Option<Box<Launcher>>,
}

impl std::fmt::Debug for Spawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawner")
            .field("helpers", &self.inner.slots.len())
            .finish_non_exhaustive()
    }
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
    /// The helper's process, to kill it when it stops answering (`None` in tests).
    pidfd: Option<OwnedFd>,
    started: Instant,
}

impl Spawner {
    /// Starts `helpers` helper processes (at least one) with `command`, which runs
    /// [`serve`] on its stdin (the `httpserve` binary does so when re-executed with
    /// `--internal-cgi-spawner`); `command` is called again to replace a helper that died
    /// or stopped answering. The helpers run as the server's own user; each script is
    /// started as the user its [`CgiConfig`](crate::CgiConfig) says.
    ///
    /// A helper is busy while a script it starts forks and executes, so one per core
    /// keeps scripts starting in parallel. Must be called within a tokio runtime.
    pub fn start(
        helpers: usize,
        command: impl Fn() -> std::process::Command + Send + Sync + 'static,
    ) -> io::Result<Self> {
        let mut slots = Vec::with_capacity(helpers.max(1));
        for _ in 0..helpers.max(1) {
            slots.push(Mutex::new(Arc::new(launch(&command)?)));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                slots: slots.into(),
                next: AtomicUsize::new(0),
                launcher: Some(Box::new(command)),
            }),
        })
    }

    #[cfg(test)]
    fn with_helpers(helpers: Vec<Helper>) -> Self {
        Self {
            inner: Arc::new(Inner {
                slots: helpers
                    .into_iter()
                    .map(|h| Mutex::new(Arc::new(h)))
                    .collect(),
                next: AtomicUsize::new(0),
                launcher: None,
            }),
        }
    }

    /// False once every helper has gone away for good.
    pub(crate) fn is_working(&self) -> bool {
        self.inner.launcher.is_some() || self.inner.slots.iter().any(|s| current(s).is_working())
    }

    /// Starts `request` with `stdio` (stdin, stdout, stderr) as its standard streams.
    /// An error from the keeper's spawn (no such file, not executable, an environment too
    /// big) comes back as it would from `Command::spawn`; `Err(None)` means no helper could
    /// be asked (all gone or stuck): nothing was started.
    pub(crate) async fn spawn(
        &self,
        request: &SpawnRequest<'_>,
        stdio: [OwnedFd; 3],
    ) -> Result<HelperChild, Option<io::Error>> {
        let bytes = request.encode();
        if bytes.len() > MAX_REQUEST {
            return Err(Some(io::Error::from_raw_os_error(
                rustix::io::Errno::TOOBIG.raw_os_error(),
            )));
        }
        let (status_read, status_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| Some(e.into()))?;
        let [stdin, stdout, stderr] = stdio;
        let fds = [stdin, stdout, stderr, status_write];
        let spawner = self.clone();
        // In a task of its own, so a request whose client goes away mid-exchange still
        // reads its reply, and the next request never reads another's. Bounded, so a
        // helper that stops answering holds neither the request nor its descriptors.
        let exchange = tokio::spawn(async move {
            let (slot, helper) = spawner.pick_soon().await.ok_or_else(|| {
                Exchange::NotSent(io::Error::other("every CGI spawner helper is gone"))
            })?;
            let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "no answer in time");
            let result = match tokio::time::timeout(SPAWN_TIMEOUT, helper.socket.lock()).await {
                // Another request held it all that time: it is stuck.
                Err(_) => Err(Exchange::NotSent(timed_out())),
                Ok(socket) => tokio::time::timeout(SPAWN_TIMEOUT, exchange(&socket, &bytes, &fds))
                    .await
                    .unwrap_or_else(|_| Err(Exchange::NoReply(timed_out()))),
            };
            drop(fds);
            result.inspect_err(|failed| spawner.failed(slot, &helper, failed))
        });
        let reply = match exchange.await {
            Ok(Ok(reply)) => reply,
            Ok(Err(Exchange::NotSent(_))) => return Err(None),
            // It may have started the script: starting it again could run it twice (the
            // keeper, if any, kills it when it sees the status pipe closed).
            Ok(Err(Exchange::NoReply(e))) => return Err(Some(e)),
            Err(e) => return Err(Some(io::Error::other(e))),
        };
        match reply {
            Reply::Started { pid, pidfd } => Ok(HelperChild {
                pid,
                pidfd: Arc::new(pidfd),
                status: tokio::net::unix::pipe::Receiver::from_owned_fd(status_read)
                    .map_err(Some)?,
                reaped: false,
            }),
            Reply::Failed(errno) => Err(Some(io::Error::from_raw_os_error(errno))),
        }
    }

    /// A working helper and its slot, waiting for a dead one's replacement if none works
    /// (at most [`RESTART_INTERVAL`]); `None` when none can be had.
    async fn pick_soon(&self) -> Option<(usize, Arc<Helper>)> {
        let until = Instant::now() + RESTART_INTERVAL + Duration::from_millis(100);
        loop {
            if let Some(picked) = self.pick() {
                return Some(picked);
            }
            if self.inner.launcher.is_none() || Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A working helper and its slot: an idle one if any, else the next in turn. A slot
    /// whose helper is gone gets a new one first, if it may.
    fn pick(&self) -> Option<(usize, Arc<Helper>)> {
        let slots = &self.inner.slots;
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let mut first = None;
        for i in (0..slots.len()).map(|i| (start + i) % slots.len()) {
            let helper = self.restarted(i);
            if !helper.is_working() {
                continue;
            }
            if helper.socket.try_lock().is_ok() {
                return Some((i, helper));
            }
            first.get_or_insert((i, helper));
        }
        first
    }

    /// The helper of slot `i`, replaced first if it is gone and may be.
    fn restarted(&self, i: usize) -> Arc<Helper> {
        let mut slot = self.inner.slots[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !slot.is_working()
            && slot.started.elapsed() >= RESTART_INTERVAL
            && let Some(launcher) = &self.inner.launcher
        {
            match launch(launcher) {
                Ok(helper) => *slot = Arc::new(helper),
                Err(e) => {
                    tracing::error!(target: "httpserve::cgi", "cannot start a CGI spawner helper: {e}");
                }
            }
        }
        slot.clone()
    }

    /// An exchange with `helper` failed: it is gone, or stuck and killed here; its slot
    /// gets a new helper at the next request.
    fn failed(&self, slot: usize, helper: &Helper, failed: &Exchange) {
        if helper.broken.swap(true, Ordering::Relaxed) {
            return;
        }
        let (Exchange::NotSent(e) | Exchange::NoReply(e)) = failed;
        tracing::error!(target: "httpserve::cgi", "CGI spawner helper {slot} failed ({e}); it is replaced, and meanwhile the others, or the server, start scripts");
        helper.kill();
    }
}

/// The helper a slot holds now.
fn current(slot: &Mutex<Arc<Helper>>) -> Arc<Helper> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Starts one helper process with `command`, and a task that reaps it when it ends.
fn launch(command: &(impl Fn() -> std::process::Command + ?Sized)) -> io::Result<Helper> {
    let (ours, theirs) = socket_pair()?;
    let mut helper = command();
    helper.stdin(Stdio::from(theirs)).stdout(Stdio::null());
    let mut process = tokio::process::Command::from(helper)
        .kill_on_drop(true)
        .spawn()?;
    // Our own unreaped child: its pid cannot have been reused.
    let pidfd = process
        .id()
        .and_then(|id| Pid::from_raw(id.cast_signed()))
        .and_then(|pid| rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok());
    let mut started = Helper::new(ours)?;
    started.pidfd = pidfd;
    let broken = started.broken.clone();
    // Reaps the helper when it dies, and stops sending it work. The helper ends by
    // itself when the server closes the socket; at runtime shutdown this task is dropped
    // and `kill_on_drop` ends it.
    tokio::spawn(async move {
        let status = process.wait().await;
        let was_broken = broken.swap(true, Ordering::Relaxed);
        match status {
            // Its socket closed: the server is going away.
            Ok(status) if status.success() => {}
            // Killed here for not answering: logged already.
            Ok(_) if was_broken => {}
            Ok(status) => {
                tracing::error!(target: "httpserve::cgi", "a CGI spawner helper ended ({status}); it is replaced, and meanwhile the others, or the server, start scripts");
            }
            Err(e) => {
                tracing::error!(target: "httpserve::cgi", "waiting for a CGI spawner helper: {e}");
            }
        }
    });
    Ok(started)
}

impl Helper {
    fn new(socket: OwnedFd) -> io::Result<Self> {
        let socket = UnixStream::from_std(std::os::unix::net::UnixStream::from(socket))?;
        Ok(Self {
            socket: tokio::sync::Mutex::new(socket),
            broken: Arc::default(),
            pidfd: None,
            started: Instant::now(),
        })
    }

    fn is_working(&self) -> bool {
        !self.broken.load(Ordering::Relaxed)
    }

    /// Kills the helper process (its reaper task then reaps it). Its keepers live on:
    /// each still ends its script's processes when the server closes its status pipe.
    fn kill(&self) {
        if let Some(pidfd) = &self.pidfd {
            let _ = rustix::process::pidfd_send_signal(pidfd, Signal::KILL);
        }
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
    /// The uid and gid to run as; `None`: the helper's own.
    pub(crate) user: Option<(u32, u32)>,
}

impl<'a> SpawnRequest<'a> {
    /// Length-prefixed fields: program, directory (empty: none), user (empty: none, else
    /// uid and gid), the argument count and arguments, the variable count and each name
    /// and value.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096);
        let mut field = |bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        };
        field(self.program.as_bytes());
        field(self.dir.map_or(&[][..], |d| d.as_os_str().as_bytes()));
        let mut user = [0u8; 8];
        if let Some((uid, gid)) = self.user {
            user[..4].copy_from_slice(&uid.to_le_bytes());
            user[4..].copy_from_slice(&gid.to_le_bytes());
        }
        field(if self.user.is_some() { &user } else { &[] });
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
        let user = match field()? {
            [] => None,
            ids if ids.len() == 8 => Some((
                u32::from_le_bytes(ids[..4].try_into().ok()?),
                u32::from_le_bytes(ids[4..].try_into().ok()?),
            )),
            _ => return None,
        };
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
            user,
        })
        .filter(|_| bytes.is_empty())
    }
}

/// A script the helper started. Dropped before it was reaped, it is killed (through its
/// pidfd, so never another process that reused its pid).
#[derive(Debug)]
pub(crate) struct HelperChild {
    pid: u32,
    pidfd: Arc<OwnedFd>,
    status: tokio::net::unix::pipe::Receiver,
    reaped: bool,
}

impl HelperChild {
    pub(crate) fn id(&self) -> u32 {
        self.pid
    }

    /// The script's pidfd: signals through it never reach another process.
    pub(crate) fn pidfd(&self) -> Arc<OwnedFd> {
        self.pidfd.clone()
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
            let _ = rustix::process::pidfd_send_signal(&*self.pidfd, Signal::KILL);
        }
    }
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
            user: None,
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
            user: Some((65534, 65533)),
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
            user: None,
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
            pidfd: Arc::new(rustix::process::pidfd_open(pid, PidfdFlags::empty()).unwrap()),
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
    async fn what_a_script_leaves_behind_is_killed_when_its_request_ends() {
        let (spawner, _thread) = spawner_on_a_thread();
        let (out_read, out_write) = pipe();
        let (_err_read, err_write) = pipe();
        // A background child and a daemon in a session of its own, then exit.
        let script = "sleep 30 >/dev/null 2>&1 & echo $!; \
                      setsid sleep 30 >/dev/null 2>&1 & echo $!";
        let mut child = spawner
            .spawn(&sh(script, Vec::new()), [devnull(), out_write, err_write])
            .await
            .unwrap();
        let pids: Vec<u32> = read_all(out_read)
            .await
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        assert_eq!(pids.len(), 2);
        assert!(child.wait().await.unwrap().success());
        // The script has exited; what it started lives until its request is over.
        assert!(pids.iter().all(|&pid| alive(pid)), "{pids:?}");
        drop(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while pids.iter().any(|&pid| alive(pid)) {
            assert!(Instant::now() < deadline, "{pids:?} outlived the request");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_keeper_takes_the_next_script_only_once_the_last_left_nothing() {
        let (spawner, _thread) = spawner_on_a_thread();
        let mut keepers = Vec::new();
        let mut leftovers = Vec::new();
        for _ in 0..2 {
            let (out_read, out_write) = pipe();
            let (_err_read, err_write) = pipe();
            let script = "sleep 30 >/dev/null 2>&1 & echo $PPID $!";
            let mut child = spawner
                .spawn(&sh(script, Vec::new()), [devnull(), out_write, err_write])
                .await
                .unwrap();
            let out = read_all(out_read).await;
            let (keeper, leftover) = out.trim().split_once(' ').unwrap();
            keepers.push(keeper.to_owned());
            leftovers.push(leftover.parse::<u32>().unwrap());
            assert!(child.wait().await.unwrap().success());
            drop(child);
            // The request is over: the leftover dies before the keeper is idle again.
            let deadline = Instant::now() + Duration::from_secs(10);
            while leftovers.iter().any(|&pid| alive(pid)) {
                assert!(
                    Instant::now() < deadline,
                    "{leftovers:?} outlived the request"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Let the keeper's DONE reach the helper.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // One keeper, reused: no fork per script.
        assert_eq!(keepers[0], keepers[1]);
    }

    #[tokio::test]
    async fn a_helper_that_never_answers_is_abandoned_in_bounded_time() {
        // A helper that takes requests and never answers (stopped, or stuck).
        let (ours, theirs) = socket_pair().unwrap();
        let spawner = Spawner::with_helpers(vec![Helper::new(ours).unwrap()]);
        let (out_read, out_write) = pipe();
        let (_err_read, err_write) = pipe();
        let started = Instant::now();
        let result = spawner
            .spawn(&sh("exit 0", Vec::new()), [devnull(), out_write, err_write])
            .await;
        let elapsed = started.elapsed();
        // It may have started the script, so it is not started again: an error.
        let err = result.unwrap_err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(
            elapsed < SPAWN_TIMEOUT + Duration::from_secs(3),
            "{elapsed:?}"
        );
        assert!(!spawner.is_working());
        // The descriptors sent with the request were let go: the script's stdout has no
        // writer left but the copy the helper holds in its socket buffer.
        drop(theirs);
        assert_eq!(read_all(out_read).await, "");
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
