//! The listening sockets: proxymgr binds every service port itself and keeps it open across HAProxy reloads and
//! restarts, so the kernel queues connections while no HAProxy accepts them (DESIGN.md §3: 0 failed requests
//! over 50 reloads, against 23-25 when HAProxy binds the port itself).
//!
//! **Architecture Invariant:** the sockets keep FD_CLOEXEC in proxymgr; only `process.rs` clears it, in the
//! child between fork and exec, so no other child ever inherits a listener.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, RawFd};

use nix::sys::socket::{listen, Backlog};

/// The accept queue we ask for: connections wait here while HAProxy reloads or restarts.
const BACKLOG: i32 = 4096;

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct ListenerError {
    pub addr: SocketAddr,
    pub source: io::Error,
}

#[derive(Default)]
pub struct Listeners {
    bound: BTreeMap<u16, TcpListener>,
}

impl Listeners {
    /// The fd of the listener on `port`, binding it first if need be.
    pub fn open(&mut self, address: IpAddr, port: u16) -> Result<RawFd, ListenerError> {
        if let Some(listener) = self.bound.get(&port) {
            return Ok(listener.as_raw_fd());
        }
        let addr = SocketAddr::new(address, port);
        let listener = TcpListener::bind(addr).map_err(|source| ListenerError { addr, source })?;
        // std listens with a backlog of 128; a longer queue rides out a slow HAProxy start.
        let backlog = Backlog::new(BACKLOG).unwrap_or(Backlog::MAXCONN);
        listen(&listener.as_fd(), backlog).map_err(|e| ListenerError { addr, source: e.into() })?;
        let fd = listener.as_raw_fd();
        self.bound.insert(port, listener);
        Ok(fd)
    }

    pub fn fd(&self, port: u16) -> Option<RawFd> {
        self.bound.get(&port).map(AsRawFd::as_raw_fd)
    }

    /// Closes every listener whose port is not in `keep`.
    pub fn retain(&mut self, keep: impl Fn(u16) -> bool) {
        self.bound.retain(|&port, _| {
            let keep = keep(port);
            if !keep {
                log::info!("closing listener on port {port}");
            }
            keep
        });
    }
}
