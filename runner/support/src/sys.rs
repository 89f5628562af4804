//! The operating-system calls the engine needs: the open-file limit, the process's CPU time,
//! and sockets with kernel receive timestamps (see [`crate::socket_time`]). This is
//! the crate's only `unsafe` code, each call a plain libc wrapper.

use std::os::fd::RawFd;
use std::time::Duration;

/// Raises the soft limit on open files to the hard limit (each in-flight request holds a socket).
///
/// Returns the new soft limit, or `None` when the limit cannot be read or changed.
#[allow(unsafe_code)]
pub fn raise_open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit read from the kernel, only its soft value changed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    Some(limit.rlim_cur)
}

/// Pins process `pid` (0: this one) to CPU core `core`, so worker processes of one machine do
/// not migrate between cores. Returns whether the kernel accepted it (not on other systems).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn pin_to_core(pid: u32, core: usize) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: an all-zero cpu_set_t is the empty set, a valid value of this plain C struct.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if core >= libc::CPU_SETSIZE as usize {
        return false;
    }
    // SAFETY: `core` is below CPU_SETSIZE, so CPU_SET writes inside `set`.
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed, read only during the call.
    unsafe { libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// Pins a process to a core: not supported here.
#[cfg(not(target_os = "linux"))]
pub fn pin_to_core(_pid: u32, _core: usize) -> bool {
    false
}

/// CPU time (user + system) this process has used so far, across all its threads.
#[allow(unsafe_code)]
pub fn process_cpu_time() -> Option<Duration> {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage for the duration of the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let to_duration = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    Some(to_duration(usage.ru_utime) + to_duration(usage.ru_stime))
}

/// Asks the kernel to timestamp data received on socket `fd` (`SO_TIMESTAMPNS`), for
/// [`recv_timestamped`].
#[allow(unsafe_code)]
pub fn enable_receive_timestamps(fd: RawFd) -> std::io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `on` is a valid c_int for the duration of the call, and its size is passed.
    let done = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Reads from socket `fd` without blocking, into `buf`: the bytes read and, when the socket has
/// receive timestamps on, when the kernel received the last of them (Unix nanoseconds).
pub fn recv_timestamped(fd: RawFd, buf: &mut [u8]) -> std::io::Result<(usize, Option<i64>)> {
    recv_raw(fd, buf.as_mut_ptr(), buf.len())
}

/// [`recv_timestamped`] into the unfilled part of `buf` (left uninitialised until the kernel
/// writes it, so no read pays for zeroing hyper's buffer), advancing `buf` by what was read.
#[allow(unsafe_code)]
pub fn recv_into(
    fd: RawFd,
    buf: &mut tokio::io::ReadBuf<'_>,
) -> std::io::Result<(usize, Option<i64>)> {
    // SAFETY: the kernel only writes into the unfilled bytes and never reads them; exactly the
    // `n` bytes it reports written are then marked initialised and filled.
    unsafe {
        let unfilled = buf.unfilled_mut();
        let (n, at) = recv_raw(fd, unfilled.as_mut_ptr().cast(), unfilled.len())?;
        buf.assume_init(n);
        buf.advance(n);
        Ok((n, at))
    }
}

/// Registers `stream` (non-blocking) with the current tokio runtime's reactor.
#[allow(unsafe_code)]
pub fn register_stream(
    stream: std::net::TcpStream,
) -> std::io::Result<tokio::io::unix::AsyncFd<std::net::TcpStream>> {
    stream.set_nonblocking(true)?;
    // SAFETY: the `TcpStream` owns a valid descriptor, and the `AsyncFd` owns the stream, so
    // the descriptor is neither replaced nor closed while registered.
    unsafe { tokio::io::unix::AsyncFd::register(stream) }.map_err(std::io::Error::from)
}

#[allow(unsafe_code)]
fn recv_raw(fd: RawFd, data: *mut u8, len: usize) -> std::io::Result<(usize, Option<i64>)> {
    let mut iov = libc::iovec {
        iov_base: data.cast(),
        iov_len: len,
    };
    // Room for one timespec control message, aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: an all-zero msghdr is a valid value of this plain C struct.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at `iov` (which points at `len` writable bytes at `data`, as the
    // callers guarantee) and at `control`, all valid for the call, with their lengths.
    let n = unsafe { libc::recvmsg(fd, &raw mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut at = None;
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled, within
    // `msg_controllen`; the timespec is read unaligned from a message of that type.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                at = Some(
                    ts.tv_sec
                        .saturating_mul(1_000_000_000)
                        .saturating_add(ts.tv_nsec),
                );
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    Ok((n as usize, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_cpu_time_are_readable() {
        assert!(raise_open_file_limit().is_some_and(|n| n > 0));
        let before = process_cpu_time().unwrap();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(process_cpu_time().unwrap() >= before);
    }

    #[test]
    fn tcp_reads_carry_the_kernels_receive_time() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        enable_receive_timestamps(server.as_raw_fd()).unwrap();
        // The kernel turns receive timestamps on system-wide lazily (a deferred static key), so
        // the first segments after the first socket asks for them may arrive unstamped: the
        // callers then fall back to the hand-over instant. Within a few milliseconds they are
        // stamped.
        for _ in 0..500 {
            let before = jiff::Timestamp::now().as_nanosecond() as i64;
            client.write_all(b"hello").unwrap();
            let mut buf = [0u8; 16];
            let (n, at) = loop {
                match recv_timestamped(server.as_raw_fd(), &mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    other => break other.unwrap(),
                }
            };
            let after = jiff::Timestamp::now().as_nanosecond() as i64;
            assert_eq!(&buf[..n], b"hello");
            if let Some(at) = at {
                assert!(
                    before - 1_000_000 <= at && at <= after,
                    "{before} {at} {after}"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("no read carried a receive timestamp in 500 tries");
    }
}
