//! The listening sockets: proxymgr binds every service port itself and keeps it open across HAProxy reloads and
//! restarts, so the kernel queues connections while no HAProxy accepts them (DESIGN.md §3: 0 failed requests
//! over 50 reloads, against 23-25 when HAProxy binds the port itself).
//!
//! Every listener has SO_REUSEPORT, so that a proxymgr started after one that was killed can bind beside the
//! HAProxy it left behind (which still holds the old sockets) and take over without refusing connections. A
//! socket is bound when its service is set up (so a port taken by another program is found at once) but
//! listens only right before the first HAProxy that serves it starts: a listening socket joins the port's
//! reuseport group and gets its share of new connections, which must not wait in a queue nobody accepts from
//! while the orphan still serves.
//!
//! A restart or an upgrade hands the sockets themselves to the next proxymgr (`handover.rs`): it takes them
//! with [`Listeners::adopt`], and the HAProxy it starts accepts from the very queues the old one did.
//!
//! **Architecture Invariant:** the sockets keep FD_CLOEXEC in proxymgr; only [`inherit`] clears it, in the child
//! between fork and exec, for the two children that are to have them (HAProxy, and the hand-over keeper), so
//! no other child ever inherits a listener.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::socket::{
    self, listen, setsockopt, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6,
};

/// The accept queue we ask for: connections wait here while HAProxy reloads or restarts.
const BACKLOG: i32 = 4096;

/// A port that could not be bound or made to listen: its address and port, and its socket's fd once it has one.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}{}: {source}", fd.map(|fd| format!(" (fd {fd})")).unwrap_or_default())]
pub struct ListenerError {
    pub addr: SocketAddr,
    pub fd: Option<RawFd>,
    pub source: io::Error,
}

/// A listener fd a new HAProxy was to inherit that proxymgr does not hold (closed since the start was asked
/// for). Found before the fork: in the child, clearing its FD_CLOEXEC would fail with EBADF, naming no fd.
#[derive(Debug, thiserror::Error)]
#[error("fd {0} is not a listener proxymgr holds")]
pub struct NotAListener(pub RawFd);

#[derive(Default)]
pub struct Listeners {
    bound: BTreeMap<SocketAddr, Bound>,
    /// Sockets the proxymgr before this one handed over, by address, until a service or frontend claims them
    /// or the first HAProxy started without them.
    handed: BTreeMap<SocketAddr, Bound>,
}

struct Bound {
    listener: TcpListener,
    /// The address it is bound to, for errors.
    addr: SocketAddr,
    listening: bool,
}

impl Listeners {
    /// Takes the listening sockets the proxymgr before this one handed over: a service on one of their ports
    /// takes its socket instead of binding a new one. Anything else among them is closed.
    pub fn adopt(&mut self, sockets: Vec<OwnedFd>) {
        for socket in sockets {
            let listening = socket::getsockopt(&socket, sockopt::AcceptConn).unwrap_or(false);
            let stream = socket::getsockopt(&socket, sockopt::SockType).is_ok_and(|t| t == SockType::Stream);
            let listener = TcpListener::from(socket);
            match listener.local_addr() {
                Ok(addr) if listening && stream => {
                    self.handed.insert(addr, Bound { listener, addr, listening: true });
                }
                other => log::warn!("a handed-over socket is not a TCP listener ({other:?}); closing it"),
            }
        }
        if !self.handed.is_empty() {
            log::info!("took {} listening sockets from the proxymgr before", self.handed.len());
        }
    }

    /// Closes the handed-over sockets no service claimed: the first HAProxy started here serves without them.
    pub fn drop_unclaimed(&mut self) {
        for at in std::mem::take(&mut self.handed).into_keys() {
            log::info!("closing the handed-over listener on {at}: no service or frontend uses it");
        }
    }

    /// Every listener's fd.
    pub fn fds(&self) -> Vec<RawFd> {
        self.bound.values().map(|b| b.listener.as_raw_fd()).collect()
    }

    /// The fd of the listener on `addr`: one held, else the one handed over on it, else a new one.
    pub fn open(&mut self, addr: SocketAddr) -> Result<RawFd, ListenerError> {
        if let Some(bound) = self.bound.get(&addr) {
            return Ok(bound.listener.as_raw_fd());
        }
        if let Some(handed) = self.handed.remove(&addr) {
            let fd = handed.listener.as_raw_fd();
            self.bound.insert(addr, handed);
            return Ok(fd);
        }
        let listener = bind(addr).map_err(|e| ListenerError { addr, fd: None, source: e.into() })?;
        let fd = listener.as_raw_fd();
        self.bound.insert(addr, Bound { listener, addr, listening: false });
        Ok(fd)
    }

    /// Whether each of `fds` is a listener held here, so that a new HAProxy can inherit it.
    pub fn check_held(&self, fds: &[RawFd]) -> Result<(), NotAListener> {
        let held: BTreeSet<RawFd> = self.bound.values().map(|b| b.listener.as_raw_fd()).collect();
        match fds.iter().find(|fd| !held.contains(fd)) {
            Some(&fd) => Err(NotAListener(fd)),
            None => Ok(()),
        }
    }

    /// Makes every bound socket listen (with a long accept queue: std's 128 is short for a slow HAProxy
    /// start). Called right before a HAProxy starts on them.
    pub fn listen_all(&mut self) -> Result<(), ListenerError> {
        for bound in self.bound.values_mut().filter(|b| !b.listening) {
            listen(&bound.listener, Backlog::new(BACKLOG).unwrap_or(Backlog::MAXCONN)).map_err(|e| {
                ListenerError { addr: bound.addr, fd: Some(bound.listener.as_raw_fd()), source: e.into() }
            })?;
            bound.listening = true;
        }
        Ok(())
    }

    /// A listener on a port the kernel picks (bound at once, so no other test can be handed the same port in
    /// between): the port and the fd.
    #[cfg(test)]
    pub fn open_any(&mut self, address: std::net::IpAddr) -> Result<(u16, RawFd), ListenerError> {
        let addr = SocketAddr::new(address, 0);
        let listener = bind(addr).map_err(|e| ListenerError { addr, fd: None, source: e.into() })?;
        let fd = listener.as_raw_fd();
        let addr = listener.local_addr().map_err(|source| ListenerError { addr, fd: Some(fd), source })?;
        self.bound.insert(addr, Bound { listener, addr, listening: false });
        Ok((addr.port(), fd))
    }

    /// Closes every listener whose address is not in `keep`.
    pub fn retain(&mut self, keep: impl Fn(SocketAddr) -> bool) {
        self.bound.retain(|&at, _| {
            let keep = keep(at);
            if !keep {
                log::info!("closing listener on {at}");
            }
            keep
        });
    }
}

/// Makes `command`'s child inherit `fds`: clears their FD_CLOEXEC between fork and exec.
pub fn inherit(command: &mut Command, fds: Vec<RawFd>) {
    // SAFETY: between fork and exec only async-signal-safe calls are allowed; fcntl is one, and the closure
    // allocates nothing (the Vec was built before the fork).
    unsafe {
        command.pre_exec(move || {
            for &fd in &fds {
                if nix::libc::fcntl(fd, nix::libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// A TCP socket bound to `addr` with SO_REUSEADDR and SO_REUSEPORT, close-on-exec, not listening yet.
fn bind(addr: SocketAddr) -> nix::Result<TcpListener> {
    let family = if addr.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    match addr {
        SocketAddr::V4(v4) => socket::bind(fd.as_raw_fd(), &SockaddrIn::from(v4))?,
        SocketAddr::V6(v6) => socket::bind(fd.as_raw_fd(), &SockaddrIn6::from(v6))?,
    }
    Ok(TcpListener::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_listener_binds_beside_the_first() {
        // What a restarted proxymgr does while the HAProxy its killed predecessor left still holds the port.
        let mut first = Listeners::default();
        first.open_any("127.0.0.1".parse().unwrap()).unwrap();
        first.listen_all().unwrap();
        let addr = first.bound.values().next().unwrap().listener.local_addr().unwrap();
        let second = bind(addr).unwrap();
        assert_eq!(second.local_addr().unwrap(), addr);
        let flags = nix::fcntl::fcntl(second.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & nix::libc::FD_CLOEXEC, 0, "close-on-exec in proxymgr");
        // A plain socket (no SO_REUSEPORT) cannot: the port is not open to anyone else.
        assert!(std::net::TcpListener::bind(addr).is_err());
    }

    #[test]
    fn a_port_that_cannot_listen_is_named_with_its_fd() {
        let mut listeners = Listeners::default();
        let (port, fd) = listeners.open_any("127.0.0.1".parse().unwrap()).unwrap();
        // Another socket with SO_REUSEADDR alone may bind beside ours while neither listens; once it listens,
        // ours cannot.
        let other =
            socket::socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
        setsockopt(&other, sockopt::ReuseAddr, &true).unwrap();
        socket::bind(other.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, port)).unwrap();
        listen(&other, Backlog::new(1).unwrap()).unwrap();
        let error = listeners.listen_all().unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("cannot listen on 127.0.0.1:{port} (fd {fd}): {}", error.source)
        );
        assert_eq!(error.source.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn only_held_listeners_are_passed_on() {
        let mut listeners = Listeners::default();
        let (_, a) = listeners.open_any("127.0.0.1".parse().unwrap()).unwrap();
        let (_, b) = listeners.open_any("127.0.0.1".parse().unwrap()).unwrap();
        assert!(listeners.check_held(&[a, b]).is_ok());
        let stray = a.max(b) + 100;
        let error = listeners.check_held(&[a, stray]).unwrap_err();
        assert_eq!(error.to_string(), format!("fd {stray} is not a listener proxymgr holds"));
    }
}
