//! A restart or an upgrade of proxymgr is a hand-over: the old proxymgr leaves HAProxy serving and its listening
//! sockets to the next one, so that not one connection is refused or reset on the way.
//!
//! HAProxy survives proxymgr anyway (it runs in a process group of its own, and the state file names it: the
//! next proxymgr replaces it with `-sf`). What would be lost are the listening sockets: the next proxymgr
//! would bind new ones beside them (SO_REUSEPORT), and when the old HAProxy closed its own, the connections
//! waiting in their accept queues would be reset. So the sockets themselves go over, and the new HAProxy
//! accepts from the very queues the old one did, as on every reload.
//!
//! The sockets must outlive the old proxymgr, which exits before the next one starts (systemd's restart is a
//! stop, then a start). So the old one binds the hand-over socket beside the state file
//! (`<state_file>.handover`, a Unix SOCK_SEQPACKET socket, mode 0600) and starts a **keeper**: its own binary,
//! `proxymgr --hand-over-keeper`, which inherits that socket and the listeners and does nothing but wait for
//! the next proxymgr (up to [`KEEPER_WAIT`]), hand them over and exit. The socket listens before the old
//! proxymgr exits, so the next one can connect however soon it starts.
//!
//! The protocol: the keeper sends a header, `proxymgr hand-over 1 <count>`, then the sockets in messages of up
//! to [`BATCH`] (SCM_RIGHTS), and closes. Both ends check that the other runs as their own user. The next
//! proxymgr takes the hand-over only once it owns the state file (`state::own`), so only the one successor
//! gets it.

use std::ffi::CString;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    self, sockopt, AddressFamily, Backlog, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType,
    UnixAddr,
};
use nix::sys::time::TimeVal;

/// How long a keeper waits for the next proxymgr before it lets the sockets go. HAProxy still holds its own
/// copies and serves on; a proxymgr that starts later binds anew beside it, as after a kill.
pub const KEEPER_WAIT: Duration = Duration::from_secs(60);
/// A keeper lets the sockets go once one of them has had connections waiting this long: nobody accepts from
/// them any more (the HAProxy left serving was stopped by something other than the next proxymgr), and a
/// socket only the keeper holds would take its share of the port's connections and never answer them.
pub const KEEPER_STALL: Duration = Duration::from_secs(1);
/// How often a keeper looks at the accept queues.
const KEEPER_TICK: Duration = Duration::from_millis(100);
/// How long the next proxymgr waits for the keeper's messages once connected.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Sockets in one message (the kernel takes at most 253, SCM_MAX_FD).
const BATCH: usize = 200;
const HEADER: &str = "proxymgr hand-over 1 ";
/// The keeper's name in `ps` and /proc/PID/comm (15 bytes at most).
const KEEPER_NAME: &str = "proxymgr-keeper";

/// Where the hand-over socket of `state_file` is.
pub fn socket_path(state_file: &Path) -> PathBuf {
    crate::state::beside(state_file, ".handover")
}

#[derive(Debug, thiserror::Error)]
pub enum HandOverError {
    #[error("hand-over socket {}: {what}: {source}", path.display())]
    Socket { path: PathBuf, what: &'static str, source: Errno },
    #[error("hand-over socket {}: cannot start the keeper: {source}", path.display())]
    Keeper { path: PathBuf, source: std::io::Error },
    #[error("hand-over socket {}: its other end runs as uid {theirs}, not as this proxymgr ({ours})", path.display())]
    Stranger { path: PathBuf, theirs: u32, ours: u32 },
    #[error("hand-over socket {}: {what}", path.display())]
    Garbled { path: PathBuf, what: String },
}

/// Builds the error for a call on the hand-over socket at `path` that failed: what was tried, and why.
fn socket_error(path: &Path) -> impl Fn(&'static str, Errno) -> HandOverError + '_ {
    move |what, source| HandOverError::Socket { path: path.to_path_buf(), what, source }
}

/// The old proxymgr's side, as it hands over: binds the hand-over socket and starts a keeper on it with
/// `listeners`. Returns the keeper's pid. The listeners stay open here too (HAProxy holds its own copies).
pub fn park(path: &Path, listeners: &[RawFd]) -> Result<u32, HandOverError> {
    let fail = socket_error(path);
    let _ = std::fs::remove_file(path);
    let socket = socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| fail("socket", e))?;
    let addr = UnixAddr::new(path).map_err(|e| fail("address", e))?;
    socket::bind(socket.as_raw_fd(), &addr).map_err(|e| fail("bind", e))?;
    nix::sys::stat::fchmodat(
        None,
        path,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(|e| fail("chmod", e))?;
    socket::listen(&socket, Backlog::new(4).unwrap_or(Backlog::MAXCONN)).map_err(|e| fail("listen", e))?;

    let mut inherited = vec![socket.as_raw_fd()];
    inherited.extend_from_slice(listeners);
    // /proc/self/exe: after an upgrade the path of the binary names the new one, and this keeper is the old
    // proxymgr's helper.
    let mut command = Command::new("/proc/self/exe");
    command
        .arg("--hand-over-keeper")
        .arg(path)
        .args(inherited.iter().map(RawFd::to_string))
        .stdin(Stdio::null())
        // A process group of its own: a signal for the old proxymgr's group or terminal is not for it.
        .process_group(0);
    super::listeners::inherit(&mut command, inherited);
    let keeper =
        command.spawn().map_err(|source| HandOverError::Keeper { path: path.to_path_buf(), source })?;
    Ok(keeper.id())
}

/// The keeper (`proxymgr --hand-over-keeper PATH SOCKET_FD LISTENER_FD...`): waits for the next proxymgr on the
/// inherited hand-over socket, sends it the listeners and exits. Returns the exit code: 0 handed over, 1 not.
pub fn keep(path: &Path, fds: &[RawFd]) -> u8 {
    if let Ok(name) = CString::new(KEEPER_NAME) {
        let _ = nix::sys::prctl::set_name(&name);
    }
    let Some((&socket, listeners)) = fds.split_first() else {
        log::error!("--hand-over-keeper: no hand-over socket given");
        return 1;
    };
    // Only a handing-over proxymgr starts this, with these fds open; anything else is refused before the fds
    // are taken as owned.
    if let Some(fd) = fds.iter().find(|&&fd| nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_err()) {
        log::error!("--hand-over-keeper: fd {fd} is not open");
        return 1;
    }
    // SAFETY: the old proxymgr passed these fds open to this process, which owns them from here on.
    let socket = unsafe { OwnedFd::from_raw_fd(socket) };
    let listeners: Vec<OwnedFd> = listeners.iter().map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) }).collect();
    let result = serve(path, &socket, &listeners, KEEPER_WAIT, KEEPER_STALL);
    // Whatever happened, the socket is of no use any more; a successor that took the listeners removed it.
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    match result {
        Ok(()) => {
            log::info!("handed {} listeners to the next proxymgr", listeners.len());
            0
        }
        Err(e) => {
            log::warn!("{e}; the next proxymgr binds anew beside the HAProxy left serving");
            1
        }
    }
}

/// Waits up to `wait` for one proxymgr of our own user on `socket` and sends it `listeners`; gives up early
/// once connections have waited `stall` on one of them (nobody accepts from them any more).
fn serve(
    path: &Path,
    socket: &OwnedFd,
    listeners: &[OwnedFd],
    wait: Duration,
    stall: Duration,
) -> Result<(), HandOverError> {
    let fail = socket_error(path);
    let deadline = Instant::now() + wait;
    // accept() honours SO_RCVTIMEO: it returns at least once a tick, for a look at the queues.
    socket::setsockopt(socket, sockopt::ReceiveTimeout, &TimeVal::from(timeval(KEEPER_TICK)))
        .map_err(|e| fail("setsockopt", e))?;
    let mut waiting_since = None;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(fail("no proxymgr came for the listeners", Errno::ETIMEDOUT));
        }
        if listeners.iter().any(|l| queued(l) > 0) {
            let since = *waiting_since.get_or_insert(now);
            if now - since >= stall {
                return Err(fail(
                    "connections wait on the listeners and nobody accepts them",
                    Errno::ETIMEDOUT,
                ));
            }
        } else {
            waiting_since = None;
        }
        let peer = match socket::accept4(socket.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
            // SAFETY: accept4 returned a new descriptor that nothing else owns.
            Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            Err(e) => return Err(fail("accept", e)),
        };
        match check_peer(path, &peer) {
            Ok(()) => return send(path, &peer, listeners),
            // Someone else: not for them, and the wait goes on.
            Err(e) => log::warn!("{e}; refused"),
        }
    }
}

fn send(path: &Path, peer: &OwnedFd, listeners: &[OwnedFd]) -> Result<(), HandOverError> {
    let fail = socket_error(path);
    let header = format!("{HEADER}{}", listeners.len());
    socket::sendmsg::<()>(peer.as_raw_fd(), &[IoSlice::new(header.as_bytes())], &[], MsgFlags::empty(), None)
        .map_err(|e| fail("send", e))?;
    let raw: Vec<RawFd> = listeners.iter().map(AsRawFd::as_raw_fd).collect();
    for batch in raw.chunks(BATCH) {
        let rights = [ControlMessage::ScmRights(batch)];
        socket::sendmsg::<()>(peer.as_raw_fd(), &[IoSlice::new(b"fds")], &rights, MsgFlags::empty(), None)
            .map_err(|e| fail("send", e))?;
    }
    Ok(())
}

/// The next proxymgr's side, once it owns the state file: the listeners a keeper holds for it, if one does
/// (none when there is no hand-over socket, or nobody listens on it any more: a keeper that gave up or died).
/// The sockets come close-on-exec.
pub fn receive(path: &Path) -> Result<Vec<OwnedFd>, HandOverError> {
    let fail = socket_error(path);
    if !path.exists() {
        return Ok(vec![]);
    }
    let socket = socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| fail("socket", e))?;
    let addr = UnixAddr::new(path).map_err(|e| fail("address", e))?;
    match socket::connect(socket.as_raw_fd(), &addr) {
        Ok(()) => {}
        Err(Errno::ECONNREFUSED | Errno::ENOENT) => {
            let _ = std::fs::remove_file(path);
            return Ok(vec![]);
        }
        Err(e) => return Err(fail("connect", e)),
    }
    // Taken: whatever comes of it, the socket is done with.
    let _ = std::fs::remove_file(path);
    check_peer(path, &socket)?;
    let taken = take(path, &socket);
    if taken.is_err() {
        // The keeper would hold the sockets on, taking its share of the port's connections once the HAProxy
        // left serving is replaced, and never answer them: it is ours (checked), so it ends now.
        if let Ok(credentials) = socket::getsockopt(&socket, sockopt::PeerCredentials) {
            let pid = credentials.pid();
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == KEEPER_NAME && pid as u32 != std::process::id() {
                log::warn!("ending the keeper (pid {pid}) whose sockets could not be taken");
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
            }
        }
    }
    taken
}

/// The keeper's messages on the connected `socket`: the sockets it holds.
fn take(path: &Path, socket: &OwnedFd) -> Result<Vec<OwnedFd>, HandOverError> {
    let fail = socket_error(path);
    let garbled = |what: String| HandOverError::Garbled { path: path.to_path_buf(), what };
    socket::setsockopt(socket, sockopt::ReceiveTimeout, &TimeVal::from(timeval(RECEIVE_TIMEOUT)))
        .map_err(|e| fail("setsockopt", e))?;

    let mut fds = Vec::new();
    let mut expected = None;
    loop {
        let mut buffer = [0u8; 64];
        let mut space = nix::cmsg_space!([RawFd; BATCH]);
        let mut iov = [IoSliceMut::new(&mut buffer)];
        let message =
            socket::recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
                .map_err(|e| fail("receive", e))?;
        let bytes = message.bytes;
        let truncated = message.flags.contains(MsgFlags::MSG_CTRUNC);
        for cmsg in message.cmsgs().map_err(|e| fail("receive", e))? {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                // SAFETY: SCM_RIGHTS installed these descriptors in this process; nothing else owns them.
                fds.extend(received.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
        if truncated {
            return Err(garbled("more sockets in a message than there is room for".into()));
        }
        if bytes == 0 {
            break;
        }
        if expected.is_none() {
            let text = std::str::from_utf8(&buffer[..bytes]).unwrap_or("");
            let count = text.strip_prefix(HEADER).and_then(|n| n.parse::<usize>().ok());
            expected = Some(count.ok_or_else(|| garbled(format!("unexpected header {text:?}")))?);
        }
        if expected.is_some_and(|n| fds.len() >= n) {
            break;
        }
    }
    match expected {
        Some(n) if n == fds.len() => Ok(fds),
        Some(n) => Err(garbled(format!("{} of {n} sockets came", fds.len()))),
        None => Err(garbled("closed before it said anything".into())),
    }
}

/// The connections waiting in a listening socket's accept queue (TCP_INFO's `tcpi_unacked` for a listener);
/// 0 when it cannot be read.
fn queued(listener: &OwnedFd) -> u32 {
    let mut info = std::mem::MaybeUninit::<nix::libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<nix::libc::tcp_info>() as nix::libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, which is that large and zeroed.
    let rc = unsafe {
        nix::libc::getsockopt(
            listener.as_raw_fd(),
            nix::libc::IPPROTO_TCP,
            nix::libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return 0;
    }
    // SAFETY: zeroed, then (partly) written by the kernel: every bit pattern is a valid tcp_info.
    unsafe { info.assume_init() }.tcpi_unacked
}

/// Whether the process at the other end of `socket` runs as our user.
fn check_peer(path: &Path, socket: &impl AsFd) -> Result<(), HandOverError> {
    let credentials = socket::getsockopt(socket, sockopt::PeerCredentials)
        .map_err(|e| socket_error(path)("peer credentials", e))?;
    let ours = nix::unistd::geteuid().as_raw();
    let theirs = credentials.uid();
    if theirs == ours {
        Ok(())
    } else {
        Err(HandOverError::Stranger { path: path.to_path_buf(), theirs, ours })
    }
}

fn timeval(duration: Duration) -> nix::libc::timeval {
    nix::libc::timeval {
        tv_sec: duration.as_secs() as nix::libc::time_t,
        tv_usec: duration.subsec_micros().max(1) as nix::libc::suseconds_t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A hand-over socket bound as `park` binds it, without the keeper process (this test binary is no
    /// proxymgr): `serve` runs on a thread instead.
    fn bound(path: &Path) -> OwnedFd {
        let socket =
            socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).unwrap();
        socket::bind(socket.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
        socket::listen(&socket, Backlog::new(4).unwrap()).unwrap();
        socket
    }

    #[test]
    fn the_listeners_go_to_the_next_proxymgr_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(&dir.path().join("state.json"));
        assert_eq!(path, dir.path().join("state.json.handover"));
        // More than one message's worth, so that the batches are put together again.
        let listeners: Vec<TcpListener> =
            (0..BATCH + 3).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let addrs: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let socket = bound(&path);
        let fds: Vec<OwnedFd> = listeners.into_iter().map(OwnedFd::from).collect();
        let keeper = {
            let path = path.clone();
            std::thread::spawn(move || serve(&path, &socket, &fds, Duration::from_secs(10), KEEPER_STALL))
        };
        let received = receive(&path).unwrap();
        keeper.join().unwrap().unwrap();
        let got: Vec<_> =
            received.into_iter().map(|fd| TcpListener::from(fd).local_addr().unwrap()).collect();
        assert_eq!(got, addrs, "the same sockets, in order");
        assert!(!path.exists(), "the hand-over socket is gone once taken");
    }

    #[test]
    fn without_a_keeper_there_is_nothing_to_take() {
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(&dir.path().join("state.json"));
        assert!(receive(&path).unwrap().is_empty(), "no socket");
        // A socket whose keeper is gone: nobody listens.
        drop(bound(&path));
        assert!(path.exists());
        assert!(receive(&path).unwrap().is_empty(), "a stale socket");
        assert!(!path.exists(), "a stale socket is removed");
    }

    #[test]
    fn a_keeper_nobody_comes_for_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(&dir.path().join("state.json"));
        let socket = bound(&path);
        let error = serve(&path, &socket, &[], Duration::from_millis(50), KEEPER_STALL).unwrap_err();
        assert!(error.to_string().contains("no proxymgr came"), "{error}");
    }

    #[test]
    fn a_keeper_lets_go_of_sockets_nobody_accepts_from() {
        // The HAProxy left serving is gone and no proxymgr came: a socket only the keeper holds would take its
        // share of the port's connections and never answer them.
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(&dir.path().join("state.json"));
        let socket = bound(&path);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let fds = [OwnedFd::from(listener)];
        assert_eq!(queued(&fds[0]), 0);
        let _client = std::net::TcpStream::connect(addr).unwrap();
        assert_eq!(queued(&fds[0]), 1, "the connection waits in the accept queue");
        let error =
            serve(&path, &socket, &fds, Duration::from_secs(30), Duration::from_millis(200)).unwrap_err();
        assert!(
            error.to_string().contains("nobody accepts them"),
            "gave up on the queue, not the wait: {error}"
        );
    }

    #[test]
    fn a_garbled_header_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(&dir.path().join("state.json"));
        let socket = bound(&path);
        let stranger = std::thread::spawn(move || {
            let peer = unsafe { OwnedFd::from_raw_fd(socket::accept(socket.as_raw_fd()).unwrap()) };
            socket::sendmsg::<()>(peer.as_raw_fd(), &[IoSlice::new(b"hello")], &[], MsgFlags::empty(), None)
                .unwrap();
        });
        let error = receive(&path).unwrap_err();
        stranger.join().unwrap();
        assert!(matches!(error, HandOverError::Garbled { .. }), "{error}");
    }
}
