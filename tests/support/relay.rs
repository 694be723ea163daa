//! `Relay`: a TCP relay on 127.0.0.1 in front of one target (a ZooKeeper server, say) that a test can cut and
//! restore, to make a network outage between a client and its server without stopping either.

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the relay waits to connect to its target for a new client connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the acceptor, whose listener is non-blocking, looks for a new connection and for `Drop`.
const ACCEPT_POLL: Duration = Duration::from_millis(5);

/// Forwards every connection made to `addr()` to the target, bytes both ways, one thread per direction.
/// `cut()` closes every open connection (both sides) and makes the relay close each new connection as soon as
/// it accepts it, as a network partition would look to the client, until `restore()`. Dropping it closes the
/// listener and every connection and joins every thread.
pub struct Relay {
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    target: SocketAddr,
    cut: AtomicBool,
    stopping: AtomicBool,
    next_id: AtomicU64,
    /// Both sockets of every open connection, so `cut` and `Drop` can shut them down and unblock their threads.
    connections: Mutex<HashMap<u64, (TcpStream, TcpStream)>>,
    /// Connections accepted and forwarded so far (refused ones not counted).
    forwarded: AtomicU64,
}

impl Shared {
    fn shut_down_all(&self) {
        for (_, (client, server)) in self.connections.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }
}

impl Relay {
    /// Starts a relay on a reserved port of 127.0.0.1 (`reserved_listener`) forwarding to `target`, which must be a loopback address.
    pub fn start(target: SocketAddr) -> Relay {
        assert!(target.ip().is_loopback(), "the relay only forwards to loopback, not {target}");
        let listener = super::reserved_listener();
        listener.set_nonblocking(true).expect("make the relay's listener non-blocking");
        let addr = listener.local_addr().expect("local_addr of a bound listener");
        let shared = Arc::new(Shared {
            target,
            cut: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            connections: Mutex::new(HashMap::new()),
            forwarded: AtomicU64::new(0),
        });
        let acceptor = std::thread::Builder::new()
            .name(format!("relay-{}", addr.port()))
            .spawn({
                let shared = Arc::clone(&shared);
                move || accept_loop(listener, shared)
            })
            .expect("spawn the relay's thread");
        Relay { addr, target, shared, acceptor: Some(acceptor) }
    }

    /// Where clients connect: `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:<port>`, as a ZooKeeper connect string or a watcher's `server`.
    pub fn connect_string(&self) -> String {
        self.addr.to_string()
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Closes every open connection and refuses (accepts and closes at once) new ones until `restore`.
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        self.shared.shut_down_all();
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    pub fn is_cut(&self) -> bool {
        self.shared.cut.load(Ordering::SeqCst)
    }

    /// Connections open through the relay right now.
    pub fn open_connections(&self) -> usize {
        self.shared.connections.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Connections forwarded since the start (those refused while cut not counted).
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stopping.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
            Err(_) => {
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
        };
        workers.retain(|worker| !worker.is_finished());
        if shared.cut.load(Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        if let Ok(pair) = connect(&shared, client) {
            workers.extend(pair);
        }
    }
    drop(listener);
    shared.shut_down_all();
    for worker in workers {
        let _ = worker.join();
    }
}

/// Connects to the target for `client` and starts one copying thread per direction.
fn connect(shared: &Arc<Shared>, client: TcpStream) -> io::Result<Vec<JoinHandle<()>>> {
    // Accepted sockets inherit nothing from the non-blocking listener on Linux, but be explicit.
    client.set_nonblocking(false)?;
    let server = match TcpStream::connect_timeout(&shared.target, CONNECT_TIMEOUT) {
        Ok(server) => server,
        Err(e) => {
            // The target is down: the client sees its connection closed, as it would see a refusal.
            let _ = client.shutdown(Shutdown::Both);
            return Err(e);
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    {
        let mut connections = shared.connections.lock().unwrap_or_else(|e| e.into_inner());
        // A cut that came while connecting must not miss this connection.
        if shared.cut.load(Ordering::SeqCst) || shared.stopping.load(Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            return Ok(Vec::new());
        }
        connections.insert(id, (client.try_clone()?, server.try_clone()?));
    }
    shared.forwarded.fetch_add(1, Ordering::SeqCst);
    let mut handles = Vec::new();
    for (from, to, direction) in [(client.try_clone()?, server.try_clone()?, "up"), (server, client, "down")]
    {
        let thread_shared = Arc::clone(shared);
        let spawned = std::thread::Builder::new().name(format!("relay-{id}-{direction}")).spawn(move || {
            copy(from, to);
            // Either side ending ends the connection: close both, so the other direction's thread ends too.
            close(&thread_shared, id);
        });
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                close(shared, id);
                return if handles.is_empty() { Err(e) } else { Ok(handles) };
            }
        }
    }
    Ok(handles)
}

/// Shuts both sockets of connection `id` down, if it is still open.
fn close(shared: &Shared, id: u64) {
    if let Some((client, server)) = shared.connections.lock().unwrap_or_else(|e| e.into_inner()).remove(&id) {
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
    }
}

/// Copies until either socket fails or `from` reaches its end; a shutdown from `cut` or `Drop` ends the read.
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
}
