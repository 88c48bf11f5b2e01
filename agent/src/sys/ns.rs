//! The system calls that put a process into a running container with no
//! more privilege than the container's init: joining its namespaces,
//! copying its seccomp filters (read from it with ptrace), and setting the
//! capability sets and `no_new_privs` it has. Used only by the enter helper
//! (`crate::enter`), a single-threaded process of its own.

use nix::libc;
use std::ffi::CString;
use std::io::{Error, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `PTRACE_SECCOMP_GET_FILTER` (linux/ptrace.h; needs CHECKPOINT_RESTORE).
const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
/// `_LINUX_CAPABILITY_VERSION_3`.
const CAP_VERSION_3: u32 = 0x2008_0522;

fn check(r: libc::c_long) -> Result<libc::c_long> {
    if r < 0 {
        Err(Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Open a file under /proc (or anywhere) with `flags | O_CLOEXEC`.
pub fn open(path: &str, flags: libc::c_int) -> Result<OwnedFd> {
    let c = CString::new(path).map_err(Error::other)?;
    // SAFETY: a NUL-terminated path; the fd is owned from here on.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Error::last_os_error());
    }
    // SAFETY: fd was just opened and is ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Join the namespace `fd` refers to (`nstype` 0: whatever it is).
pub fn setns(fd: &OwnedFd) -> Result<()> {
    // SAFETY: a valid fd.
    check(unsafe { libc::setns(fd.as_raw_fd(), 0) } as libc::c_long).map(|_| ())
}

/// Make the directory `fd` this process's root and working directory.
pub fn chroot_to(fd: &OwnedFd) -> Result<()> {
    // SAFETY: a valid directory fd and static strings.
    unsafe {
        check(libc::fchdir(fd.as_raw_fd()) as libc::c_long)?;
        check(libc::chroot(c".".as_ptr()) as libc::c_long)?;
        check(libc::chdir(c"/".as_ptr()) as libc::c_long)?;
    }
    Ok(())
}

/// One classic BPF program as the kernel hands it out.
pub type Filter = Vec<libc::sock_filter>;

/// The seccomp filters of process `pid`, oldest first, read by attaching to
/// it briefly (PTRACE_SEIZE + PTRACE_INTERRUPT, then detach: the process
/// goes on, an interrupted system call is restarted). An alarm ends this
/// process if the tracee never stops; a dead tracer's tracees are detached
/// by the kernel.
pub fn seccomp_filters(pid: i32) -> Result<Vec<Filter>> {
    // SAFETY: ptrace/waitpid/alarm on a pid; buffers sized as the kernel
    // said.
    unsafe {
        // Another helper (a shell, a RUN) may be reading them right now:
        // a process has one tracer at a time.
        let mut tries = 0;
        while libc::ptrace(libc::PTRACE_SEIZE, pid, 0, 0) < 0 {
            let e = Error::last_os_error();
            tries += 1;
            if e.raw_os_error() != Some(libc::EPERM) || tries > 300 {
                return Err(e);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // A signal that arrives meanwhile stops the tracee for us first; it
        // is handed back on detach, so the init never loses one.
        let mut pending: libc::c_int = 0;
        let result = (|| {
            check(libc::ptrace(libc::PTRACE_INTERRUPT, pid, 0, 0))?;
            libc::alarm(10);
            let mut status = 0;
            loop {
                if libc::waitpid(pid, &mut status, libc::__WALL) < 0 {
                    let e = Error::last_os_error();
                    if e.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e);
                }
                if libc::WIFSTOPPED(status) {
                    if status >> 16 == 0 {
                        // A signal-delivery stop: the signal is the init's.
                        pending = libc::WSTOPSIG(status);
                    }
                    break;
                }
                if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                    return Err(Error::other("the process exited"));
                }
            }
            libc::alarm(0);
            let mut out = Vec::new();
            for index in 0.. {
                let n = libc::ptrace(
                    PTRACE_SECCOMP_GET_FILTER,
                    pid,
                    index as libc::c_long,
                    std::ptr::null_mut::<libc::sock_filter>(),
                );
                if n < 0 {
                    let e = Error::last_os_error();
                    if e.raw_os_error() == Some(libc::ENOENT) {
                        break;
                    }
                    return Err(e);
                }
                let mut prog: Filter = vec![
                    libc::sock_filter {
                        code: 0,
                        jt: 0,
                        jf: 0,
                        k: 0
                    };
                    n as usize
                ];
                check(libc::ptrace(
                    PTRACE_SECCOMP_GET_FILTER,
                    pid,
                    index as libc::c_long,
                    prog.as_mut_ptr(),
                ))?;
                out.push(prog);
            }
            // Index 0 is the newest; install order is oldest first.
            out.reverse();
            Ok(out)
        })();
        libc::ptrace(libc::PTRACE_DETACH, pid, 0, pending as libc::c_long);
        result
    }
}

/// Install `filter` on this process (needs no_new_privs or CAP_SYS_ADMIN).
pub fn install_filter(filter: &Filter) -> Result<()> {
    let prog = libc::sock_fprog {
        len: filter.len() as libc::c_ushort,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points into `filter`, alive for the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    })
    .map(|_| ())
}

/// Drop every capability outside `keep` from the bounding set.
pub fn limit_bounding_set(keep: u64, last_cap: u32) -> Result<()> {
    for cap in 0..=last_cap {
        if keep & (1u64 << cap) == 0 {
            // SAFETY: prctl with integer arguments.
            check(
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) }
                    as libc::c_long,
            )?;
        }
    }
    Ok(())
}

pub fn set_no_new_privs() -> Result<()> {
    // SAFETY: prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } as libc::c_long).map(|_| ())
}

/// Set the effective, permitted and inheritable sets, then the ambient one.
pub fn set_capabilities(
    effective: u64,
    permitted: u64,
    inheritable: u64,
    ambient: u64,
    last_cap: u32,
) -> Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let header = Header {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let lo = |v: u64| v as u32;
    let hi = |v: u64| (v >> 32) as u32;
    let data = [
        Data {
            effective: lo(effective),
            permitted: lo(permitted),
            inheritable: lo(inheritable),
        },
        Data {
            effective: hi(effective),
            permitted: hi(permitted),
            inheritable: hi(inheritable),
        },
    ];
    // SAFETY: header and two data structs as capset(2) takes them.
    check(unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) })?;
    // SAFETY: prctl with integer arguments.
    unsafe {
        check(libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        ) as libc::c_long)?;
        for cap in 0..=last_cap {
            if ambient & (1u64 << cap) != 0 {
                check(libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE,
                    cap as libc::c_ulong,
                    0,
                    0,
                ) as libc::c_long)?;
            }
        }
    }
    Ok(())
}

/// Whether this process may be traced or dumped (by processes of its uid).
pub fn set_dumpable(dumpable: bool) -> Result<()> {
    // SAFETY: prctl with integer arguments.
    check(
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, dumpable as libc::c_ulong, 0, 0, 0) }
            as libc::c_long,
    )
    .map(|_| ())
}

/// A new session whose controlling terminal is stdin.
pub fn controlling_terminal() -> Result<()> {
    // SAFETY: setsid and an ioctl on fd 0 with an integer argument.
    unsafe {
        check(libc::setsid() as libc::c_long)?;
        check(libc::ioctl(0, libc::TIOCSCTTY, 0) as libc::c_long)?;
    }
    Ok(())
}

/// Die with the parent (the helper's first process).
pub fn die_with_parent() -> Result<()> {
    // SAFETY: prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } as libc::c_long)
        .map(|_| ())
}

/// The uid that created the user namespace `fd` (`NS_GET_OWNER_UID`).
pub fn namespace_owner(fd: &OwnedFd) -> Result<u32> {
    const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;
    let mut uid: libc::uid_t = 0;
    // SAFETY: the ioctl writes one uid_t into `uid`.
    check(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            NS_GET_OWNER_UID,
            &mut uid as *mut libc::uid_t,
        )
    } as libc::c_long)?;
    Ok(uid)
}

/// The user namespace of `fd` is the one this process is in.
pub fn same_namespace(fd: &OwnedFd, own: &OwnedFd) -> Result<bool> {
    let a = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(Error::from)?;
    let b = nix::sys::stat::fstat(own.as_raw_fd()).map_err(Error::from)?;
    Ok(a.st_dev == b.st_dev && a.st_ino == b.st_ino)
}

/// Write `/proc/sys/KEY = VALUE` for each pair inside the network namespace
/// at `netns` (a bind mount under /run/netns). A thread of its own joins the
/// namespace (network namespaces are per thread), writes and ends, so the
/// rest of the process never changes namespace. Where /proc/sys is mounted
/// read-only (an agent that itself runs in a container), the thread takes a
/// private mount namespace and remounts it writable there first.
pub fn write_net_sysctls(netns: &std::path::Path, sysctls: &[(String, String)]) -> Result<()> {
    let fd = open(
        netns
            .to_str()
            .ok_or_else(|| Error::other("netns path is not UTF-8"))?,
        libc::O_RDONLY,
    )?;
    let sysctls = sysctls.to_vec();
    std::thread::spawn(move || -> Result<()> {
        // SAFETY: a valid fd; only this thread changes namespace.
        check(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } as libc::c_long)?;
        let mut remounted = false;
        for (key, value) in &sysctls {
            if key.contains("..") || !key.starts_with("net/") {
                return Err(Error::other(format!("{key} is not a network sysctl")));
            }
            let path = format!("/proc/sys/{key}");
            let mut result = std::fs::write(&path, value);
            if !remounted && matches!(&result, Err(e) if e.raw_os_error() == Some(libc::EROFS)) {
                writable_proc_sys()?;
                remounted = true;
                result = std::fs::write(&path, value);
            }
            result.map_err(|e| Error::other(format!("{path}: {e}")))?;
        }
        Ok(())
    })
    .join()
    .map_err(|_| Error::other("the sysctl thread panicked"))?
}

/// In a mount namespace of this thread's own, /proc/sys writable.
fn writable_proc_sys() -> Result<()> {
    // SAFETY: unshare and mount with static strings; only this thread's
    // mount namespace changes (CLONE_NEWNS unshares its fs state too).
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS) as libc::c_long)?;
        check(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) as libc::c_long)?;
        check(libc::mount(
            std::ptr::null(),
            c"/proc/sys".as_ptr(),
            std::ptr::null(),
            libc::MS_REMOUNT | libc::MS_BIND,
            std::ptr::null(),
        ) as libc::c_long)?;
    }
    Ok(())
}
