//! The helper's side of the spawner: receive requests, start each script under a keeper
//! process of its own, and reap the keepers.
//!
//! A helper runs as the server's user (root, when scripts change user), so the scripts'
//! user can neither signal nor ptrace it; it leaves the server's session at start, so
//! nothing it starts has a controlling terminal. For each script it forks a *keeper*: a
//! child subreaper in a new session that starts the script (as the scripts' user), replies
//! to the server with the script's pid and pidfd, writes the script's wait status into the
//! status pipe, and kills every process the script left behind — a background child, a
//! double fork, a `setsid` daemon — once the server closes that pipe (the request is over:
//! answered, abandoned, timed out, or the server gone). Orphans of a script are re-parented
//! to its keeper, not to init, so none can slip away.

use super::{MAX_REQUEST, REQUEST_FDS, Reply, SpawnRequest};
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
use std::os::unix::process::CommandExt;
use std::process::Stdio;

/// Starts the scripts requested on `socket` until the server closes it. Runs in the helper
/// process, on its only thread (each script's keeper is a `fork` of it).
pub fn serve(socket: BorrowedFd<'_>) -> io::Result<()> {
    // Its memory holds requests (cookies, credentials): never dumped or ptraced.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    // Out of the server's session and away from its terminal (EPERM: already a leader).
    let _ = rustix::process::setsid();
    let mut keepers: Vec<Keeper> = Vec::new();
    let mut buf = vec![0u8; 4 + MAX_REQUEST];
    loop {
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd<'_>> = std::iter::once(PollFd::new(&socket, PollFlags::IN))
                .chain(keepers.iter().map(|k| PollFd::new(&k.pidfd, PollFlags::IN)))
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
            if ready.get(i + 1) == Some(&true) {
                keepers.swap_remove(i).reap();
            }
        }
        if ready.first() == Some(&true) {
            let Some(Received { request, fds }) = receive(socket, &mut buf)? else {
                return Ok(());
            };
            let started = Script::take(request.as_deref(), fds)
                .and_then(|script| fork_keeper(script, socket, &mut keepers));
            // A keeper answers for the script it started; the helper only for failures.
            if let Err(errno) = started {
                send_reply(socket, Err(errno), None)?;
            }
        }
    }
}

/// A keeper the helper forked and has not reaped yet.
struct Keeper {
    pid: Pid,
    pidfd: OwnedFd,
}

impl Keeper {
    /// Reaps the keeper (its pidfd said it exited).
    fn reap(self) {
        let _ = rustix::process::waitpid(Some(self.pid), WaitOptions::NOHANG);
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

/// Forks the keeper of `script`. In the helper, returns once it runs; in the keeper, never
/// returns.
#[allow(unsafe_code)]
fn fork_keeper(
    script: Script<'_>,
    socket: BorrowedFd<'_>,
    keepers: &mut Vec<Keeper>,
) -> Result<(), i32> {
    // SAFETY: the helper process has one thread (`serve` runs on its main thread, and
    // nothing else starts one), so the child may run ordinary code: it does not inherit
    // a lock some other thread held.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            // The other keepers are the helper's to reap.
            keepers.clear();
            std::process::exit(keep(script, socket));
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            // The script's descriptors are the keeper's now.
            drop(script);
            let pid = Pid::from_raw(child.as_raw()).ok_or(Errno::SRCH.raw_os_error())?;
            // Our own unreaped child: its pid cannot have been reused.
            match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
                Ok(pidfd) => keepers.push(Keeper { pid, pidfd }),
                // Cannot watch it: wait for it now (it ends when its script's request does).
                Err(_) => {
                    let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
                }
            }
            Ok(())
        }
        Err(e) => Err(e as i32),
    }
}

/// The keeper: starts the script, replies to the server, then watches over the script's
/// processes until its request is over. Returns the keeper's exit code.
fn keep(script: Script<'_>, socket: BorrowedFd<'_>) -> i32 {
    // A session of its own, without a terminal (the script cannot open `/dev/tty`, so
    // no TIOCSTI into the operator's shell), and every orphan of the script comes here.
    let _ = rustix::process::setsid();
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    let Script {
        request,
        stdio,
        status,
    } = script;
    // Only what this script needs: another script's pipe held here would keep that
    // script's response open.
    let needed = [socket.as_raw_fd(), status.as_raw_fd()];
    close_other_descriptors(&[&needed[..], &stdio.each_ref().map(AsRawFd::as_raw_fd)].concat());
    let started = start_script(&request, stdio);
    let reply = match &started {
        Ok((child, pidfd)) => send_reply(socket, Ok(child.id()), Some(pidfd.as_fd())),
        Err(errno) => send_reply(socket, Err(*errno), None),
    };
    // The helper's socket and stdin (the same socket) are not the keeper's to hold: the
    // server must see the helper's end close when the helper goes.
    let stdin = std::io::stdin();
    if same_file(stdin.as_fd(), socket) {
        let _ = nix::unistd::close(stdin.as_fd().as_raw_fd());
    }
    let _ = nix::unistd::close(socket.as_raw_fd());
    match (started, reply) {
        (Ok((child, pidfd)), Ok(())) => {
            supervise(&child, &pidfd, &status);
            0
        }
        // The server never learnt of the script: it must not run unwatched.
        (Ok(_), Err(_)) => {
            kill_all_children();
            1
        }
        (Err(_), _) => 1,
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

/// Starts the script in its own process group, as the requested user.
fn start_script(
    request: &SpawnRequest<'_>,
    [stdin, stdout, stderr]: [OwnedFd; 3],
) -> Result<(std::process::Child, OwnedFd), i32> {
    let invalid = Errno::INVAL.raw_os_error();
    let mut cmd = std::process::Command::new(request.program);
    cmd.args(&request.args)
        .env_clear()
        .envs(request.env.iter().copied())
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        // Its own process group, so the server can signal everything it starts at once.
        .process_group(0);
    if let Some(dir) = request.dir {
        cmd.current_dir(dir);
    }
    if let Some((uid, gid)) = request.user {
        // std drops supplementary groups too when it changes user as root.
        cmd.uid(uid).gid(gid);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| e.raw_os_error().unwrap_or(invalid))?;
    // Our own unreaped child: its pid cannot have been reused yet.
    let pidfd = Pid::from_raw(child.id().cast_signed())
        .ok_or(Errno::SRCH)
        .and_then(|pid| rustix::process::pidfd_open(pid, PidfdFlags::empty()));
    match pidfd {
        Ok(pidfd) => Ok((child, pidfd)),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e.raw_os_error())
        }
    }
}

/// Until the server closes its end of `status`: reports the script's wait status when it
/// exits, then, once the request is over, kills whatever the script left running. Ends
/// early when the script has exited and left nothing behind.
fn supervise(child: &std::process::Child, pidfd: &OwnedFd, status: &OwnedFd) {
    let pid = Pid::from_raw(child.id().cast_signed());
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
