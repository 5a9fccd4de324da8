//! The helper's side of the spawner: receive requests, and start each script under a
//! keeper.
//!
//! A helper runs as the server's user (root, when scripts change user), so the scripts'
//! user can neither signal nor ptrace it; it leaves the server's session at start, so
//! nothing it starts has a controlling terminal. It hands each request to a *keeper*, a
//! process it forked (kept for reuse: at most [`IDLE_KEEPERS`] wait idle): a child
//! subreaper in a session of its own that watches over one script at a time. The keeper
//! starts the script (as the scripts' user), replies with the script's pid and pidfd,
//! writes the script's wait status into the status pipe, and kills every process the
//! script left behind — a background child, a double fork, a `setsid` daemon — once the
//! server closes that pipe (the request is over: answered, abandoned, timed out, or the
//! server gone). Orphans of a script are re-parented to its keeper, not to init, so none
//! can slip away; only then does the keeper take the next script.

use super::{MAX_REQUEST, REPLY_LEN, REQUEST_FDS, Reply, SpawnRequest};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use rustix::process::{Pid, PidfdFlags, Signal, WaitOptions};
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// Idle keepers a helper keeps for the next scripts (forking one costs more than the
/// `posix_spawn` of a script); past that, a keeper whose script is done exits.
const IDLE_KEEPERS: usize = 8;

/// What a keeper writes to its helper when its script's request is over and nothing of
/// it is left: it is idle again.
const DONE: u8 = b'd';

/// Starts the scripts requested on `socket` until the server closes it. Runs in the helper
/// process, on its only thread (keepers are `fork`s of it).
pub fn serve(socket: BorrowedFd<'_>) -> io::Result<()> {
    // Its memory holds requests (cookies, credentials): never dumped or ptraced.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    // Out of the server's session and away from its terminal (EPERM: already a leader).
    let _ = rustix::process::setsid();
    // A keeper killed with its script still running leaves the script's processes here.
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    let mut keepers: Vec<Keeper> = Vec::new();
    let mut buf = vec![0u8; 4 + MAX_REQUEST];
    loop {
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd<'_>> = std::iter::once(PollFd::new(&socket, PollFlags::IN))
                .chain(
                    keepers
                        .iter()
                        .map(|k| PollFd::new(&k.channel, PollFlags::IN)),
                )
                .collect();
            match rustix::event::poll(&mut fds, None) {
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            fds.iter().map(|f| !f.revents().is_empty()).collect()
        };
        // Backwards, so `swap_remove` only moves entries already looked at.
        for i in (0..keepers.len()).rev() {
            if ready.get(i + 1) == Some(&true) && !keepers[i].hear() {
                keepers.swap_remove(i).end();
                kill_strays(&keepers);
            }
        }
        while keepers.iter().filter(|k| !k.busy).count() > IDLE_KEEPERS {
            if let Some(i) = keepers.iter().position(|k| !k.busy) {
                keepers.swap_remove(i).end();
            }
        }
        if ready.first() == Some(&true) {
            let Some(Received { request, fds }) = receive(socket, &mut buf)? else {
                return Ok(());
            };
            let outcome = match request {
                Some(request) if fds.len() == REQUEST_FDS => {
                    hand_over(&mut keepers, &request, &fds, socket)
                }
                _ => Err(Errno::INVAL.raw_os_error()),
            };
            drop(fds);
            match outcome {
                Ok((reply, pidfd)) => {
                    send_raw_reply(socket, &reply, pidfd.as_ref().map(AsFd::as_fd))?;
                }
                Err(errno) => send_reply(socket, Err(errno), None)?,
            }
        }
    }
}

/// A keeper the helper forked, and the helper's end of the socket pair they talk over.
struct Keeper {
    pid: Pid,
    channel: OwnedFd,
    /// Watching over a script (the helper waits for [`DONE`]).
    busy: bool,
}

impl Keeper {
    /// Forks a keeper. In the helper, returns it; in the keeper, never returns.
    #[allow(unsafe_code)]
    fn fork(keepers: &mut Vec<Keeper>, socket: BorrowedFd<'_>) -> Result<Self, i32> {
        let (ours, theirs) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| e.raw_os_error())?;
        // SAFETY: the helper process has one thread (`serve` runs on its main thread, and
        // nothing else starts one), so the child may run ordinary code: it does not
        // inherit a lock some other thread held.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                // Only its own channel: the others are their keepers' business.
                keepers.clear();
                drop(ours);
                std::process::exit(keep_scripts(&theirs, socket));
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => Ok(Self {
                pid: Pid::from_raw(child.as_raw()).ok_or(Errno::SRCH.raw_os_error())?,
                channel: ours,
                busy: false,
            }),
            Err(e) => Err(e as i32),
        }
    }

    /// Reads what the keeper said: `DONE` (true, it is idle again), or nothing because it
    /// is gone (false).
    fn hear(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match rustix::io::read(&self.channel, &mut byte) {
            Ok(1) if byte[0] == DONE => {
                self.busy = false;
                true
            }
            _ => false,
        }
    }

    /// Lets the keeper go (it exits when its channel closes) and reaps it.
    fn end(self) {
        let Self { pid, channel, .. } = self;
        drop(channel);
        let _ = rustix::process::kill_process(pid, Signal::KILL);
        let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
    }
}

/// Gives a request to an idle keeper (forking one if none is) and returns its reply: the
/// 8 bytes and, for a started script, its pidfd. A keeper found gone before it took the
/// request is let go and another one asked.
fn hand_over(
    keepers: &mut Vec<Keeper>,
    request: &[u8],
    fds: &[OwnedFd],
    socket: BorrowedFd<'_>,
) -> Result<([u8; REPLY_LEN], Option<OwnedFd>), i32> {
    for _ in 0..3 {
        let i = match keepers.iter().position(|k| !k.busy) {
            Some(i) => i,
            None => {
                let keeper = Keeper::fork(keepers, socket)?;
                keepers.push(keeper);
                keepers.len() - 1
            }
        };
        keepers[i].busy = true;
        if send_framed(keepers[i].channel.as_fd(), request, fds).is_err() {
            keepers.swap_remove(i).end();
            continue;
        }
        // Gone after it took the request: it may have started the script, so no retry
        // (the poll loop reaps it: its channel reads as closed).
        return receive_reply(keepers[i].channel.as_fd())
            .map_err(|e| e.raw_os_error().unwrap_or(Errno::PIPE.raw_os_error()));
    }
    Err(Errno::AGAIN.raw_os_error())
}

/// Kills and reaps the helper's children that are not keepers: processes of a script
/// whose keeper was killed, re-parented here.
fn kill_strays(keepers: &[Keeper]) {
    let me = rustix::process::getpid().as_raw_pid();
    for _ in 0..100 {
        let strays: Vec<Pid> = children_of(me)
            .into_iter()
            .filter(|pid| keepers.iter().all(|k| k.pid != *pid))
            .collect();
        if strays.is_empty() {
            return;
        }
        for pid in &strays {
            let _ = rustix::process::kill_process(*pid, Signal::KILL);
        }
        for pid in strays {
            let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
        }
    }
}

/// A decoded request with its descriptors.
struct Script<'a> {
    request: SpawnRequest<'a>,
    stdio: [OwnedFd; 3],
    status: OwnedFd,
}

impl<'a> Script<'a> {
    fn take(request: Option<&'a [u8]>, fds: Vec<OwnedFd>) -> Result<Self, i32> {
        let invalid = Errno::INVAL.raw_os_error();
        let request = request.and_then(SpawnRequest::decode).ok_or(invalid)?;
        let [stdin, stdout, stderr, status] =
            <[OwnedFd; REQUEST_FDS]>::try_from(fds).map_err(|_| invalid)?;
        Ok(Self {
            request,
            stdio: [stdin, stdout, stderr],
            status,
        })
    }
}

/// The keeper: takes one script at a time from `channel`, until the helper closes it.
/// Returns the keeper's exit code.
fn keep_scripts(channel: &OwnedFd, socket: BorrowedFd<'_>) -> i32 {
    // Only its channel: a pipe of another script held here would keep that script's
    // response open, and the helper's socket and stdin (the same socket) are the helper's.
    let stdin = std::io::stdin();
    if same_file(stdin.as_fd(), socket) {
        let _ = nix::unistd::close(stdin.as_fd().as_raw_fd());
    }
    close_other_descriptors(&[channel.as_raw_fd()]);
    // A session of its own, without a terminal (a script cannot open `/dev/tty` and push
    // keystrokes into the operator's shell), and every orphan of its script comes here.
    let _ = rustix::process::setsid();
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    let mut buf = vec![0u8; 4 + MAX_REQUEST];
    loop {
        let Ok(Some(Received { request, fds })) = receive(channel.as_fd(), &mut buf) else {
            return 0;
        };
        match Script::take(request.as_deref(), fds) {
            Ok(script) => keep(script, channel.as_fd()),
            Err(errno) => {
                if send_reply(channel.as_fd(), Err(errno), None).is_err() {
                    return 1;
                }
            }
        }
        if rustix::io::write(channel, &[DONE]).is_err() {
            return 1;
        }
    }
}

/// Starts one script, replies, then watches over its processes until its request is over
/// and nothing of it is left.
fn keep(script: Script<'_>, channel: BorrowedFd<'_>) {
    let Script {
        request,
        stdio,
        status,
    } = script;
    let started = start_script(&request, stdio);
    let reply = match &started {
        Ok((pid, pidfd)) => send_reply(channel, Ok(*pid), Some(pidfd.as_fd())),
        Err(errno) => send_reply(channel, Err(*errno), None),
    };
    match (started, reply) {
        (Ok((pid, pidfd)), Ok(())) => supervise(pid, &pidfd, &status),
        // The server never learnt of the script: it must not run unwatched.
        (Ok(_), Err(_)) => kill_all_children(),
        (Err(_), _) => {}
    }
}

/// Closes every descriptor above stderr but `needed` (the keeper was forked with
/// whatever the helper had open).
fn close_other_descriptors(needed: &[i32]) {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let open: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    for fd in open {
        // The directory's own descriptor is among them, closed already: EBADF.
        if fd > 2 && !needed.contains(&fd) {
            let _ = nix::unistd::close(fd);
        }
    }
}

/// Whether two descriptors are the same open file (the helper's stdin is its socket).
fn same_file(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> bool {
    match (rustix::fs::fstat(a), rustix::fs::fstat(b)) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    }
}

/// Starts the script in its own process group, as the requested user: its pid and pidfd.
fn start_script(request: &SpawnRequest<'_>, stdio: [OwnedFd; 3]) -> Result<(u32, OwnedFd), i32> {
    let pid = super::exec::spawn(request, &stdio)?;
    // The script has its copies now.
    drop(stdio);
    let pid = Pid::from_raw(pid).ok_or(Errno::SRCH.raw_os_error())?;
    // Our own unreaped child: its pid cannot have been reused yet.
    match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
        Ok(pidfd) => Ok((pid.as_raw_pid().cast_unsigned(), pidfd)),
        Err(e) => {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
            let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
            Err(e.raw_os_error())
        }
    }
}

/// Until the server closes its end of `status`: reports the script's wait status when it
/// exits, then, once the request is over, kills whatever the script left running. Ends
/// early when the script has exited and left nothing behind.
fn supervise(pid: u32, pidfd: &OwnedFd, status: &OwnedFd) {
    let pid = Pid::from_raw(pid.cast_signed());
    let mut script_running = true;
    loop {
        let (server_done, script_done) = {
            // No events asked of the pipe's write end: poll reports POLLERR once the
            // server has closed the read end.
            let mut fds = vec![PollFd::new(status, PollFlags::empty())];
            if script_running {
                fds.push(PollFd::new(pidfd, PollFlags::IN));
            }
            // Orphans that exit by themselves are reaped once a second.
            let tick = Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            };
            match rustix::event::poll(&mut fds, Some(&tick)) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(_) => return kill_all_children(),
            }
            (
                !fds[0].revents().is_empty(),
                fds.get(1).is_some_and(|f| !f.revents().is_empty()),
            )
        };
        if script_done
            && let Ok(Some((_, wait_status))) = rustix::process::waitpid(pid, WaitOptions::NOHANG)
        {
            script_running = false;
            // 4 bytes into an empty pipe never block; EPIPE (ignored, as SIGPIPE is)
            // means the server has gone already.
            let _ = rustix::io::write(status, &wait_status.as_raw().to_le_bytes());
        }
        if server_done {
            return kill_all_children();
        }
        if script_running {
            reap_exited_orphans(pid);
        } else if !reap_exited_children() {
            return;
        }
    }
}

/// Reaps the children that have exited, but the script: its status is read through its
/// pidfd, and a script that spawns short-lived children must not pile up zombies.
fn reap_exited_orphans(script: Option<Pid>) {
    for orphan in children().into_iter().filter(|&c| Some(c) != script) {
        let _ = rustix::process::waitpid(Some(orphan), WaitOptions::NOHANG);
    }
}

/// Reaps every child that has exited; false once the keeper has no children left.
fn reap_exited_children() -> bool {
    loop {
        match rustix::process::wait(WaitOptions::NOHANG) {
            Ok(Some(_)) | Err(Errno::INTR) => {}
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

/// Kills and reaps every process below the keeper. Each round kills the whole tree as it
/// stands, down to the leaves, so a chain that adds levels below as fast as its top is
/// killed cannot outrun it; a process forked during a round has a parent in the tree, dead
/// by the next round, and so shows up then as the keeper's child. Ends when the keeper has
/// no child left.
fn kill_all_children() {
    loop {
        for pid in descendants() {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
        // Wait for one to end (ECHILD: nothing is left), then reap all that have.
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(_) => return,
        }
        if !reap_exited_children() {
            return;
        }
    }
}

/// Every process below the keeper, parents before their children.
fn descendants() -> Vec<Pid> {
    let mut found = children();
    let mut next = 0;
    while let Some(&parent) = found.get(next) {
        found.extend(children_of(parent.as_raw_pid()));
        next += 1;
    }
    found
}

/// The keeper's children, from `/proc/self/task/TID/children` (the keeper has one thread),
/// else from every process's parent pid.
fn children() -> Vec<Pid> {
    let me = rustix::process::getpid().as_raw_pid();
    if std::fs::metadata(format!("/proc/{me}/task/{me}/children")).is_ok() {
        children_of(me)
    } else {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&pid| parent_of(pid) == Some(me))
            .filter_map(Pid::from_raw)
            .collect()
    }
}

/// The children of every thread of `pid` (a child belongs to the thread that forked it).
fn children_of(pid: i32) -> Vec<Pid> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut kids = Vec::new();
    for task in tasks.flatten() {
        let mut path = task.path();
        path.push("children");
        if let Ok(list) = std::fs::read_to_string(path) {
            kids.extend(
                list.split_ascii_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .filter_map(Pid::from_raw),
            );
        }
    }
    kids
}

/// The parent pid `/proc/PID/stat` gives.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
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

/// Sends a reply whole, a started script's pidfd with its first bytes.
fn send_reply(
    socket: BorrowedFd<'_>,
    started: Result<u32, i32>,
    pidfd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    send_raw_reply(socket, &Reply::encode(started), pidfd)
}

/// Sends encoded reply bytes whole, with `pidfd` on the first of them.
fn send_raw_reply(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    pidfd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    send_with_fds(socket, bytes, &pidfd.into_iter().collect::<Vec<_>>())
}

/// Sends a request, length-prefixed as [`receive`] reads it, with its descriptors.
fn send_framed(channel: BorrowedFd<'_>, request: &[u8], fds: &[OwnedFd]) -> io::Result<()> {
    let len = u32::try_from(request.len()).map_err(io::Error::other)?;
    let mut framed = Vec::with_capacity(4 + request.len());
    framed.extend_from_slice(&len.to_le_bytes());
    framed.extend_from_slice(request);
    let fds: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
    send_with_fds(channel, &framed, &fds)
}

/// Sends `bytes` whole on a blocking socket, `fds` with the first of them.
fn send_with_fds(socket: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(REQUEST_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        control.push(SendAncillaryMessage::ScmRights(fds));
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
                // The descriptors went with the first bytes.
                control.clear();
            }
        }
    }
    Ok(())
}

/// Reads a keeper's reply whole: its bytes and the pidfd that may come with them.
fn receive_reply(channel: BorrowedFd<'_>) -> io::Result<([u8; REPLY_LEN], Option<OwnedFd>)> {
    let mut reply = [0u8; REPLY_LEN];
    let mut got = 0;
    let mut pidfd = None;
    while got < REPLY_LEN {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let msg = match rustix::net::recvmsg(
            channel,
            &mut [IoSliceMut::new(&mut reply[got..])],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Err(Errno::INTR) => continue,
            other => other?,
        };
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                for fd in fds {
                    pidfd.get_or_insert(fd);
                }
            }
        }
        if msg.bytes == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the keeper is gone",
            ));
        }
        got += msg.bytes;
    }
    Ok((reply, pidfd))
}
