//! Starting a script from its keeper the way `posix_spawn` does: `clone(CLONE_VM)`, so the
//! keeper's address space is never copied, then the user change and `execve` in the child.
//!
//! std's `Command` uses `posix_spawn` only when the user stays the same, and `fork`
//! otherwise: a copy of the keeper's page tables, write-protection and TLB shootdowns, and
//! the teardown of that copy at `execve`, for every script. Measured, that made a keeper's
//! `fork` cost as much as all the rest of its work. The child here shares the keeper's
//! memory while the keeper waits for it (bounded: unlike `posix_spawn`'s `CLONE_VFORK`,
//! a child stopped between its user change and `execve` cannot hold the keeper), touches
//! nothing but the prepared [`Exec`] and its own stack, and makes only system calls until
//! `execve` or `_exit`.
#![allow(unsafe_code)]

use super::SpawnRequest;
use std::ffi::{CString, OsStr, c_char, c_int, c_void};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

/// Where a program without a `/` is looked up when the environment names no `PATH`.
const DEFAULT_PATH: &[u8] = b"/usr/local/bin:/usr/bin:/bin";

/// Everything the child needs, allocated before the clone (the child must not allocate).
struct Exec {
    /// Where to look for the program, in order: its path, or one per `PATH` entry.
    candidates: Vec<CString>,
    /// Null-terminated arrays of pointers into `_strings`.
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    dir: Option<CString>,
    user: Option<(u32, u32)>,
    stdio: [RawFd; 3],
    /// The write end of the report pipe: the child's errno when it fails.
    report: RawFd,
    _strings: Vec<CString>,
}

/// How long the keeper waits for the child to reach `execve`. A child that has changed
/// user can be stopped by any process of the scripts' user; it is killed then.
const EXEC_TIMEOUT_MS: i64 = 2000;

/// Starts `request` with `stdio` in a process group of its own; returns its pid, or the
/// errno of what failed (lookup, user change, directory, `execve`; `ETIMEDOUT` for a child
/// stopped before `execve`).
pub(super) fn spawn(request: &SpawnRequest<'_>, stdio: &[OwnedFd; 3]) -> Result<i32, i32> {
    let mut exec = Exec::prepare(request, stdio)?;
    // Closed by `execve` (close-on-exec), or carries the child's errno when it fails.
    let (report_read, report_write) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| e.raw_os_error())?;
    exec.report = report_write.as_raw_fd();
    // The child's own stack, 16-byte aligned at its top (stacks grow down on every
    // architecture Linux runs this on but HP PA, which Rust does not target).
    let mut stack = vec![0u8; 64 * 1024];
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    // Signals stay blocked until the child has reset what the keeper handles, so no
    // handler of the keeper's runs in the child.
    let all = signal_set(true);
    let mut old = signal_set(false);
    // SAFETY: `all` and `old` are valid sigsets; the mask is restored below.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old) };
    // SAFETY: `child` runs on `stack` and reads only `exec`; both stay alive and untouched
    // here until the child has called execve (the report pipe closes) or is dead and
    // reaped (see `await_exec`). Not CLONE_VFORK: a child stopped before execve would hold
    // the keeper in `clone` for good.
    let pid = unsafe {
        libc::clone(
            child,
            top as *mut c_void,
            libc::CLONE_VM | libc::SIGCHLD,
            std::ptr::from_mut(&mut exec).cast::<c_void>(),
        )
    };
    let clone_errno = std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EAGAIN);
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    drop(report_write);
    if pid < 0 {
        return Err(clone_errno);
    }
    let outcome = await_exec(pid, &report_read);
    // The child has exec'd or is gone: its stack and `exec` are ours again.
    drop(stack);
    drop(exec);
    outcome.map(|()| pid)
}

/// Waits, bounded, until the child has called `execve` (the report pipe reads as closed)
/// or reported a failure; a child that takes too long is killed. Either way, on error the
/// child is reaped before this returns.
fn await_exec(pid: c_int, report: &OwnedFd) -> Result<(), i32> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let pid = rustix::process::Pid::from_raw(pid).ok_or(libc::ESRCH)?;
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_millis(EXEC_TIMEOUT_MS as u64);
    let reap = |errno: i32| {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
        Err(errno)
    };
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let timeout = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        });
        let mut fds = [PollFd::new(report, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(0) => return reap(libc::ETIMEDOUT),
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return reap(e.raw_os_error()),
        }
    }
    let mut errno = [0u8; 4];
    match rustix::io::read(report, &mut errno) {
        // Closed without a word: execve went through.
        Ok(0) => Ok(()),
        Ok(_) => reap(i32::from_ne_bytes(errno)),
        Err(e) => reap(e.raw_os_error()),
    }
}

impl Exec {
    fn prepare(request: &SpawnRequest<'_>, stdio: &[OwnedFd; 3]) -> Result<Self, i32> {
        let c = |bytes: &[u8]| CString::new(bytes).map_err(|_| libc::EINVAL);
        let path = request
            .env
            .iter()
            .find(|(name, _)| name.as_bytes() == b"PATH")
            .map_or(DEFAULT_PATH, |(_, value)| value.as_bytes());
        let candidates = candidates(request.program, path)
            .iter()
            .map(|p| c(p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut strings = Vec::with_capacity(1 + request.args.len() + request.env.len());
        strings.push(c(request.program.as_bytes())?);
        for arg in &request.args {
            strings.push(c(arg.as_bytes())?);
        }
        let argc = strings.len();
        for (name, value) in &request.env {
            let mut pair = name.as_bytes().to_vec();
            pair.push(b'=');
            pair.extend_from_slice(value.as_bytes());
            strings.push(c(&pair)?);
        }
        let pointers = |range: &[CString]| {
            range
                .iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        Ok(Self {
            argv: pointers(&strings[..argc]),
            envp: pointers(&strings[argc..]),
            candidates,
            dir: request
                .dir
                .map(|d| c(d.as_os_str().as_bytes()))
                .transpose()?,
            user: request.user,
            stdio: [
                stdio[0].as_raw_fd(),
                stdio[1].as_raw_fd(),
                stdio[2].as_raw_fd(),
            ],
            report: -1,
            _strings: strings,
        })
    }
}

/// `program` itself when it names a path, else its name in each `path` entry, tried in
/// order by the child (after its user change, as `execvp` would).
fn candidates(program: &OsStr, path: &[u8]) -> Vec<Vec<u8>> {
    let name = program.as_bytes();
    if name.contains(&b'/') {
        return vec![name.to_vec()];
    }
    path.split(|&b| b == b':')
        .map(|dir| {
            let dir = if dir.is_empty() { &b"."[..] } else { dir };
            Path::new(OsStr::from_bytes(dir))
                .join(OsStr::from_bytes(name))
                .into_os_string()
                .into_vec()
        })
        .collect()
}

/// An empty or a full signal set.
fn signal_set(full: bool) -> libc::sigset_t {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset/sigemptyset initialise the whole set.
    unsafe {
        if full {
            libc::sigfillset(set.as_mut_ptr());
        } else {
            libc::sigemptyset(set.as_mut_ptr());
        }
        set.assume_init()
    }
}

/// The child: system calls only, on the data prepared in [`Exec`], until `execve`.
extern "C" fn child(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Exec` the parent passed, alive and unmoved while it waits.
    let exec = unsafe { &*arg.cast::<Exec>() };
    // SAFETY: every call below is a plain system call wrapper on valid arguments; on
    // failure the errno is recorded for the parent and the child exits at once.
    unsafe {
        let fail = |exec: &Exec| -> ! {
            let mut errno = *libc::__errno_location();
            if errno == 0 {
                errno = libc::EINVAL;
            }
            libc::write(exec.report, (&raw const errno).cast::<c_void>(), 4);
            libc::_exit(127)
        };
        // What the keeper handles goes back to the default before signals are let in.
        for signal in [libc::SIGPIPE, libc::SIGSEGV, libc::SIGBUS] {
            libc::signal(signal, libc::SIG_DFL);
        }
        // Stdio: first out of 0-2 (a descriptor received there would be overwritten),
        // then into place; dup2 clears close-on-exec on the copies.
        let mut fds = exec.stdio;
        for fd in &mut fds {
            if *fd <= 2 {
                *fd = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3);
                if *fd < 0 {
                    fail(exec);
                }
            }
        }
        for (target, fd) in fds.iter().enumerate() {
            if libc::dup2(*fd, target as c_int) < 0 {
                fail(exec);
            }
        }
        if let Some((uid, gid)) = exec.user {
            // As std does: supplementary groups dropped when root changes user. Raw system
            // calls: glibc's wrappers would try to change the keeper's threads too.
            if (libc::geteuid() == 0
                && libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) < 0)
                || libc::syscall(libc::SYS_setgid, gid) < 0
                || libc::syscall(libc::SYS_setuid, uid) < 0
            {
                fail(exec);
            }
        }
        if let Some(dir) = &exec.dir
            && libc::chdir(dir.as_ptr()) < 0
        {
            fail(exec);
        }
        // Its own process group, so the server can signal everything it starts at once.
        if libc::setpgid(0, 0) < 0 {
            fail(exec);
        }
        let empty = signal_set(false);
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        // As execvp: a candidate that is missing or not ours to run passes to the next;
        // EACCES is reported if any said so.
        let mut denied = false;
        for program in &exec.candidates {
            libc::execve(program.as_ptr(), exec.argv.as_ptr(), exec.envp.as_ptr());
            match *libc::__errno_location() {
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::ENAMETOOLONG => {}
                _ => fail(exec),
            }
        }
        *libc::__errno_location() = if denied { libc::EACCES } else { libc::ENOENT };
        fail(exec)
    }
}
