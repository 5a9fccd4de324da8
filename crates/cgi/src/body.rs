//! The response body of a script, and the guard that kills its process group.

use crate::progress::Progress;
use crate::spawner::HelperChild;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use httpserve_core::PageBody;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::process::ExitStatus;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::process::{Child, ChildStdout};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};

/// `now + duration`, saturating far in the future instead of overflowing.
pub(crate) fn after(duration: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(duration)
        .unwrap_or_else(|| now + Duration::from_secs(366 * 24 * 3600))
}

/// A running script: started by the server itself, or by its spawner helper. Dropped, it
/// is killed either way.
#[derive(Debug)]
pub(crate) enum ScriptProcess {
    /// A child of the server (`kill_on_drop`; tokio reaps it).
    Direct(Child),
    /// A child of the helper, which reaps it and reports its status.
    Helper(HelperChild),
}

impl ScriptProcess {
    pub(crate) fn id(&self) -> Option<u32> {
        match self {
            Self::Direct(child) => child.id(),
            Self::Helper(child) => Some(child.id()),
        }
    }

    async fn wait(&mut self) -> io::Result<ExitStatus> {
        match self {
            Self::Direct(child) => child.wait().await,
            Self::Helper(child) => child.wait().await,
        }
    }
}

/// Owns a running script. Dropped before the script's output was complete (the client
/// went away, a timeout, server shutdown), it kills the script's whole process group.
#[derive(Debug)]
pub(crate) struct ScriptGuard {
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
    body_failure: Option<crate::run::BodyFailure>,
    child: Option<ScriptProcess>,
    group: Option<ScriptGroup>,
    stdin_task: Option<JoinHandle<()>>,
    name: Arc<str>,
    deadline: Instant,
    exit_grace: Option<Duration>,
}

impl ScriptGuard {
    pub(crate) fn new(
        child: ScriptProcess,
        stdin_task: Option<JoinHandle<()>>,
        name: Arc<str>,
        deadline: Instant,
    ) -> Self {
        let group = ScriptGroup::of(&child);
        Self {
            slot: None,
            body_failure: None,
            child: Some(child),
            group,
            stdin_task,
            name,
            deadline,
            exit_grace: None,
        }
    }

    /// Once its output is complete, the script gets `grace` to exit, then is killed: a
    /// script that closes stdout and lingers must not hold its slot until the deadline.
    pub(crate) fn with_exit_grace(mut self, grace: Duration) -> Self {
        self.exit_grace = Some(grace);
        self
    }

    /// Shares the request-body failure flag, so a body cut short ends the response with an
    /// error instead of a complete-looking one.
    pub(crate) fn with_body_failure(mut self, failure: crate::run::BodyFailure) -> Self {
        self.body_failure = Some(failure);
        self
    }

    /// Holds a running-script slot until the script has exited (or been killed).
    pub(crate) fn with_slot(mut self, slot: tokio::sync::OwnedSemaphorePermit) -> Self {
        self.slot = Some(slot);
        self
    }

    fn body_failed(&self) -> bool {
        self.body_failure
            .as_ref()
            .is_some_and(|f| f.get().is_some())
    }

    /// The output is complete: reap the script in the background and log a non-zero exit;
    /// if it is still running after its exit grace (or at its deadline), kill its group then.
    pub(crate) fn finish(mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let killer = GroupKiller(self.group.take());
        let slot = self.slot.take();
        let name = self.name.clone();
        // The exit grace counts when it ends before the deadline.
        let grace = self
            .exit_grace
            .filter(|&grace| after(grace) < self.deadline);
        let until = grace.map_or(self.deadline, after);
        tokio::spawn(async move {
            let _slot = slot;
            let mut killer = killer;
            match tokio::time::timeout_at(until, child.wait()).await {
                Ok(Ok(status)) => {
                    killer.disarm();
                    if let Some(code) = status.code().filter(|&c| c != 0) {
                        tracing::warn!(target: "httpserve::cgi", script = %name, "CGI script exit code {code}");
                    } else if status.code().is_none() {
                        tracing::warn!(target: "httpserve::cgi", script = %name, "CGI script ended by a signal");
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(target: "httpserve::cgi", script = %name, "waiting for CGI script: {e}");
                }
                Err(_) => match grace {
                    Some(grace) => {
                        tracing::warn!(target: "httpserve::cgi", script = %name, "CGI script still running {grace:?} after its output ended; killed");
                    }
                    None => {
                        tracing::warn!(target: "httpserve::cgi", script = %name, "CGI script still running at its deadline; killed");
                    }
                },
            }
        });
    }
}

impl Drop for ScriptGuard {
    fn drop(&mut self) {
        if let Some(task) = self.stdin_task.take() {
            task.abort();
        }
        drop(GroupKiller(self.group.take()));
        // The script is dropped and so killed: a `Child` has `kill_on_drop` (tokio reaps it
        // in the background), a `HelperChild` is killed through its pidfd.
    }
}

/// The process group a script leads (its pid is the group's number), to kill everything in
/// it at once. The number is safe to signal only while the script is unreaped: a helper's
/// keeper reaps its script as soon as it exits, after which the number could be reused, so
/// for such a script its pidfd is signalled first, and the group only if that worked.
#[derive(Debug, Clone)]
pub(crate) struct ScriptGroup {
    pgid: Pid,
    /// The script's pidfd when it is not the server's own child.
    leader: Option<Arc<std::os::fd::OwnedFd>>,
}

impl ScriptGroup {
    pub(crate) fn of(process: &ScriptProcess) -> Option<Self> {
        let pgid = Pid::from_raw(i32::try_from(process.id()?).ok()?);
        let leader = match process {
            // The server's own child: unreaped until the server waits for it.
            ScriptProcess::Direct(_) => None,
            ScriptProcess::Helper(child) => Some(child.pidfd()),
        };
        Some(Self { pgid, leader })
    }

    /// Kills the script and its process group.
    pub(crate) fn kill(&self) {
        if let Some(leader) = &self.leader
            && rustix::process::pidfd_send_signal(&**leader, rustix::process::Signal::KILL).is_err()
        {
            // Reaped: the number may be another group's now. What the script left is
            // killed by its keeper when the request ends.
            return;
        }
        // ESRCH just means everything in it is already gone.
        let _ = killpg(self.pgid, Signal::SIGKILL);
    }
}

/// Kills a process group when dropped, unless disarmed.
#[derive(Debug)]
struct GroupKiller(Option<ScriptGroup>);

impl GroupKiller {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        if let Some(group) = self.0.take() {
            group.kill();
        }
    }
}

/// The body of a CGI response: the script's stdout, streamed with backpressure (nothing
/// is read until the client takes the previous chunk), or a page httpserve made itself.
#[derive(Debug)]
pub struct CgiBody {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Page(PageBody),
    Stream(Box<Streaming>),
}

#[derive(Debug)]
struct Streaming {
    stdout: ChildStdout,
    leftover: Option<Bytes>,
    /// Fires at the idle instant as last seen; the shared clock may have moved it since.
    idle: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    progress: Progress,
    deadline: Pin<Box<Sleep>>,
    guard: Option<ScriptGuard>,
}

/// Bytes asked of the pipe per read.
const CHUNK: usize = 64 * 1024;

impl CgiBody {
    pub(crate) fn page(page: PageBody) -> Self {
        Self {
            inner: Inner::Page(page),
        }
    }

    pub(crate) fn empty() -> Self {
        Self::page(PageBody::default())
    }

    pub(crate) fn stream(
        stdout: ChildStdout,
        leftover: Bytes,
        guard: ScriptGuard,
        idle_timeout: Duration,
        progress: Progress,
        deadline: Instant,
    ) -> Self {
        Self {
            inner: Inner::Stream(Box::new(Streaming {
                stdout,
                leftover: Some(leftover).filter(|b| !b.is_empty()),
                idle: Box::pin(tokio::time::sleep_until(progress.idle_at(idle_timeout))),
                idle_timeout,
                progress,
                deadline: Box::pin(tokio::time::sleep_until(deadline)),
                guard: Some(guard),
            })),
        }
    }
}

impl Body for CgiBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match &mut self.get_mut().inner {
            Inner::Page(page) => Pin::new(page)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            Inner::Stream(s) => s.poll_next(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Page(page) => page.is_end_stream(),
            Inner::Stream(s) => s.guard.is_none() && s.leftover.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Page(page) => page.size_hint(),
            Inner::Stream(_) => SizeHint::default(),
        }
    }
}

impl Streaming {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Some(bytes) = self.leftover.take() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        if self.guard.is_none() {
            return Poll::Ready(None);
        }
        let mut buf = BytesMut::with_capacity(CHUNK);
        match tokio_util::io::poll_read_buf(Pin::new(&mut self.stdout), cx, &mut buf) {
            Poll::Ready(Ok(0)) => {
                if let Some(guard) = self.guard.take() {
                    if guard.body_failed() {
                        // The script was killed for a broken upload: not a complete answer.
                        return Poll::Ready(Some(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "request body incomplete; CGI script killed",
                        ))));
                    }
                    guard.finish();
                }
                Poll::Ready(None)
            }
            Poll::Ready(Ok(_)) => {
                // The idle timer is moved only when it fires, not per chunk.
                self.progress.touch();
                Poll::Ready(Some(Ok(Frame::data(buf.freeze()))))
            }
            Poll::Ready(Err(e)) => {
                self.guard = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => {
                let idle = self.poll_idle(cx);
                let late = self.deadline.as_mut().poll(cx).is_ready();
                if idle || late {
                    // Dropping the guard kills the script's process group.
                    if let Some(guard) = self.guard.take() {
                        tracing::warn!(target: "httpserve::cgi", script = %guard.name, "CGI script timed out while sending its body");
                    }
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "CGI script timed out",
                    ))));
                }
                Poll::Pending
            }
        }
    }

    /// Whether the script has been idle (no output read, no request body written) for the
    /// idle timeout; else the timer is re-armed at the instant progress last set.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> bool {
        while self.idle.as_mut().poll(cx).is_ready() {
            let idle_at = self.progress.idle_at(self.idle_timeout);
            if idle_at <= Instant::now() {
                return true;
            }
            self.idle.as_mut().reset(idle_at);
        }
        false
    }
}
