//! What HAProxy says over its admin socket, the same way for both modes: one fresh connection per question, so a
//! reload (a new process behind the socket path) is followed without any care.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Admin-state bits that take a server out of rotation: forced (0x01), inherited (0x02), DNS resolution (0x20)
/// and hostname (0x40, 0x80) maintenance. Drain (0x08, 0x10) keeps it in, and so does 0x04 (`disabled` in the
/// config) alone: it stays on a slot proxymgr filled and set ready at run time (HAProxy 1.8 to 2.4).
const MAINT_BITS: u32 = 0x01 | 0x02 | 0x20 | 0x40 | 0x80;

/// One server line of `show servers state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    pub admin_state: u32,
    pub uweight: u32,
}

impl ServerState {
    pub fn ready(&self) -> bool {
        self.admin_state & MAINT_BITS == 0
    }
}

/// One command on a fresh connection (1 s timeouts).
pub fn command(socket: &Path, command: &str) -> io::Result<String> {
    let timeout = Duration::from_secs(1);
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(format!("{command}\n").as_bytes())?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}

/// `show servers state <backend>`: server (`address:port`) -> state, or `None` if the socket does not answer or
/// the backend is unknown. Keyed by address and port, not HAProxy's name: on HAProxy 1.8 to 2.4 proxymgr names
/// servers by their slots (`slot3`).
pub fn servers_state(socket: &Path, backend: &str) -> Option<BTreeMap<String, ServerState>> {
    let reply = command(socket, &format!("show servers state {backend}")).ok()?;
    let rows = crate::support::parse_servers_state(&reply)?.into_iter();
    let states = rows.filter_map(|row| {
        let state = ServerState { admin_state: row.admin_state, uweight: row.uweight.parse().ok()? };
        Some((row.name, state))
    });
    Some(states.collect())
}

/// The names of the servers of `backend` in rotation.
pub fn ready_servers(socket: &Path, backend: &str) -> Option<Vec<String>> {
    servers_state(socket, backend)
        .map(|servers| servers.into_iter().filter(|(_, s)| s.ready()).map(|(name, _)| name).collect())
}

/// The pid `show info` reports: the process answering on the socket right now.
pub fn serving_pid(socket: &Path) -> Option<u32> {
    let reply = command(socket, "show info").ok()?;
    reply.lines().find_map(|l| l.strip_prefix("Pid: ")).and_then(|p| p.trim().parse().ok())
}

/// Polls `backend`'s state until `done` holds, starting at once and then every `every` (a poll is one fresh
/// connection, ~0.1 ms), and returns how long after `since` it first held; `None` at `deadline`.
pub fn wait_state(
    socket: &Path,
    backend: &str,
    since: Instant,
    deadline: Duration,
    every: Duration,
    done: impl Fn(Option<&BTreeMap<String, ServerState>>) -> bool,
) -> Option<Duration> {
    loop {
        let state = servers_state(socket, backend);
        if done(state.as_ref()) {
            return Some(since.elapsed());
        }
        if since.elapsed() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// An HTTP/1.0 GET to 127.0.0.1:`port`: the response's status, any status (a service whose servers are
/// unreachable answers 503, which still means HAProxy serves the port). `None` if nothing answered in `timeout`.
pub fn http_status(port: u16, timeout: Duration) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n").ok()?;
    let mut head = [0u8; 32];
    let mut n = 0;
    while n < 12 {
        match stream.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let text = String::from_utf8_lossy(&head[..n]);
    text.split_whitespace().nth(1)?.parse().ok()
}
