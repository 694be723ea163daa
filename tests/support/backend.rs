//! `Backend`: a tiny HTTP server that answers every request with its own name, and `http_get`, a client for it.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The longest request head a backend reads before giving up on the connection.
const MAX_HEAD: usize = 64 * 1024;

/// An HTTP server on 127.0.0.1 at a reserved port (`reserved_listener`). Each response's body is the backend's name, so a client can
/// tell which backend HAProxy chose. HTTP/1.1 connections are kept alive unless the request says
/// `Connection: close`; HTTP/1.0 connections are closed after one response.
/// Dropping it closes the listener and every open connection and joins its threads.
pub struct Backend {
    name: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    name: String,
    stopping: AtomicBool,
    hits: AtomicUsize,
    checks: AtomicUsize,
    status: AtomicU16,
    next_id: AtomicU64,
    /// A handle on every open connection, so `Drop` can shut them down and unblock their threads.
    connections: Mutex<HashMap<u64, TcpStream>>,
}

impl Backend {
    pub fn start(name: &str) -> Backend {
        // A reserved port, not bind(0): once this backend is dropped no other test's backend can take its port,
        // so a server a test stopped stays stopped.
        let listener = super::reserved_listener();
        let addr = listener.local_addr().expect("local_addr of a bound listener");
        let shared = Arc::new(Shared {
            name: name.to_string(),
            stopping: AtomicBool::new(false),
            hits: AtomicUsize::new(0),
            checks: AtomicUsize::new(0),
            status: AtomicU16::new(200),
            next_id: AtomicU64::new(0),
            connections: Mutex::new(HashMap::new()),
        });
        let acceptor = std::thread::Builder::new()
            .name(format!("backend-{name}"))
            .spawn({
                let shared = Arc::clone(&shared);
                move || accept_loop(listener, shared)
            })
            .expect("spawn a backend thread");
        Backend { name: name.to_string(), addr, shared, acceptor: Some(acceptor) }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests answered so far, not counting health checks (`OPTIONS` requests, which `option httpchk` sends).
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// `OPTIONS` requests (HAProxy's `option httpchk`) answered so far.
    pub fn checks(&self) -> usize {
        self.shared.checks.load(Ordering::SeqCst)
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        self.shared.connections.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The status of every later response, health checks included (200 until changed), e.g. 503 to fail
    /// HTTP health checks.
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the acceptor, blocked in accept(); it sees the flag and stops.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        if let Ok(handle) = stream.try_clone() {
            shared.connections.lock().unwrap_or_else(|e| e.into_inner()).insert(id, handle);
        }
        workers.retain(|worker| !worker.is_finished());
        let worker_shared = Arc::clone(&shared);
        let worker =
            std::thread::Builder::new().name(format!("backend-{}-conn", shared.name)).spawn(move || {
                let _ = serve(stream, &worker_shared);
                worker_shared.connections.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            });
        match worker {
            Ok(worker) => workers.push(worker),
            Err(_) => {
                shared.connections.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            }
        }
    }
    drop(listener);
    // Shutting a connection down unblocks the read its worker waits in.
    for (_, stream) in shared.connections.lock().unwrap_or_else(|e| e.into_inner()).drain() {
        let _ = stream.shutdown(Shutdown::Both);
    }
    for worker in workers {
        let _ = worker.join();
    }
}

/// Answers requests on one connection until the client closes it or a response closes it.
fn serve(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let Some(request) = read_request(&mut reader)? else { return Ok(()) };
        if shared.stopping.load(Ordering::SeqCst) {
            return Ok(());
        }
        if request.method == "OPTIONS" {
            shared.checks.fetch_add(1, Ordering::SeqCst);
        } else {
            shared.hits.fetch_add(1, Ordering::SeqCst);
        }
        let status = shared.status.load(Ordering::SeqCst);
        let reason = match status {
            200 => "OK",
            404 => "Not Found",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Status",
        };
        let connection = if request.keep_alive { "keep-alive" } else { "close" };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{}",
            shared.name.len(),
            shared.name
        );
        writer.write_all(response.as_bytes())?;
        writer.flush()?;
        if !request.keep_alive {
            let _ = writer.shutdown(Shutdown::Write);
            return Ok(());
        }
    }
}

struct Request {
    method: String,
    keep_alive: bool,
}

/// Reads one request head and discards its body; `None` at a clean end of the connection.
fn read_request(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Request>> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(None);
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let version = parts.nth(1).unwrap_or_default().to_string();
    let mut connection = String::new();
    let mut content_length = 0u64;
    let mut head_size = request_line.len();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        head_size += n;
        if n == 0 || head_size > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "truncated or oversized request head"));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("connection") {
                connection = value.to_ascii_lowercase();
            } else if name.eq_ignore_ascii_case("content-length") {
                content_length = value.parse().unwrap_or(0);
            }
        }
    }
    io::copy(&mut reader.by_ref().take(content_length), &mut io::sink())?;
    let keep_alive = version == "HTTP/1.1" && !connection.split(',').any(|token| token.trim() == "close");
    Ok(Some(Request { method, keep_alive }))
}

/// `GET path HTTP/1.0` to `address`, each of connecting, sending and reading within `timeout`: the status line
/// (empty when the answer is) and the body.
pub fn get(address: SocketAddr, path: &str, timeout: Duration) -> io::Result<(String, String)> {
    let (head, body) = get_head(address, "test", path, timeout)?;
    Ok((head.lines().next().unwrap_or_default().to_string(), body))
}

/// `GET path HTTP/1.0` with `Host: host` to `address`, each of connecting, sending and reading within
/// `timeout`: the response's head (status line and headers, empty when the answer is) and its body.
pub fn get_head(
    address: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> io::Result<(String, String)> {
    let mut stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // One write: `write!` on a socket sends each piece apart, and Nagle's algorithm with the server's delayed
    // ACK then holds the last one back for tens of milliseconds.
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    Ok((head.to_string(), body.to_string()))
}

/// What a shared frontend answered a request for a host and path: the status code and the body (a backend's
/// name, when one answered), or why there was no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The headers, one `name: value` a line, as sent.
    pub headers: String,
    pub body: String,
}

/// `GET path` with `Host: host` through 127.0.0.1:`port` (2 s timeouts): the answer, or an error when there
/// was none (nothing listens, the connection was cut, no status line).
pub fn http_get_host(port: u16, host: &str, path: &str) -> io::Result<Answer> {
    let (head, body) = get_head(([127, 0, 0, 1], port).into(), host, path, Duration::from_secs(2))?;
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
    let status =
        status_line.split_whitespace().nth(1).and_then(|code| code.parse().ok()).ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, format!("no status line in {:?}", status_line))
        })?;
    Ok(Answer { status, headers: headers.replace("\r\n", "\n"), body })
}

/// `GET / HTTP/1.0` to 127.0.0.1:`port` with 2 s connect and read timeouts. Returns the body when the status is
/// 200, else an error carrying the status line.
pub fn http_get(port: u16) -> io::Result<String> {
    let (status_line, body) = get(([127, 0, 0, 1], port).into(), "/", Duration::from_secs(2))?;
    if status_line.split_whitespace().nth(1) == Some("200") {
        Ok(body)
    } else if status_line.is_empty() {
        Err(io::Error::new(io::ErrorKind::UnexpectedEof, "empty response"))
    } else {
        Err(io::Error::other(format!("HTTP status: {status_line}")))
    }
}
