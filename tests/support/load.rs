//! Bounded load loops: HTTP clients that send requests through a port until told to stop, counting what
//! failed, so a test can assert that a reload, a crash or a takeover lost no request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::http_get;

/// What a bounded load loop saw.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub ok: usize,
    pub failed: usize,
    /// The first few errors (at most 10 a client), for the failure message.
    pub errors: Vec<String>,
}

impl LoadReport {
    /// The sum of several clients' reports.
    pub fn sum(reports: impl IntoIterator<Item = LoadReport>) -> LoadReport {
        reports.into_iter().fold(LoadReport::default(), |mut total, report| {
            total.ok += report.ok;
            total.failed += report.failed;
            total.errors.extend(report.errors);
            total
        })
    }

    /// Asserts that the loop ran (over 100 requests answered) and that no request failed, `what` naming what
    /// it ran across; prints its counts either way.
    pub fn assert_none_failed(&self, what: &str) {
        eprintln!("{what}: {} requests ok, {} failed {:?}", self.ok, self.failed, self.errors);
        assert!(self.ok > 100, "the load loop barely ran {what}: {self:?}");
        assert_eq!(self.failed, 0, "failed requests {what}: {:?}", self.errors);
    }
}

/// GET requests against `port` until stopped, at most `max` of them and for at most `limit`: a new connection
/// per request (HTTP/1.0, as `http_get`), or one kept-alive connection reused until the server closes it.
pub fn load(
    port: u16,
    keep_alive: bool,
    max: usize,
    limit: Duration,
    stop: Arc<AtomicBool>,
) -> JoinHandle<LoadReport> {
    let mut connection: Option<BufReader<TcpStream>> = None;
    load_with(max, limit, stop, move |_| {
        if keep_alive {
            keep_alive_request(port, &mut connection)
        } else {
            http_get(port).map(|_| ()).map_err(|e| e.to_string())
        }
    })
}

/// `request(n)` for n = 0, 1, 2, ... on a thread of its own until stopped, at most `max` times and for at most
/// `limit`, each `Err` a failed request: a load loop whose requests the test makes (through a shared frontend,
/// each with its `Host`, checking who answered).
pub fn load_with(
    max: usize,
    limit: Duration,
    stop: Arc<AtomicBool>,
    mut request: impl FnMut(usize) -> Result<(), String> + Send + 'static,
) -> JoinHandle<LoadReport> {
    std::thread::spawn(move || {
        let mut report = LoadReport::default();
        let deadline = Instant::now() + limit;
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && report.ok + report.failed < max {
            match request(report.ok + report.failed) {
                Ok(()) => report.ok += 1,
                Err(e) => {
                    report.failed += 1;
                    if report.errors.len() < 10 {
                        report.errors.push(e);
                    }
                }
            }
        }
        report
    })
}

/// `clients` load loops on one port, stopped together: `Load::start(port, 2, false)`, then `finish()` for the
/// sum of their reports. Each client stops by itself after 50 000 requests or 60 s; dropping a `Load` stops
/// and joins them.
pub struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<LoadReport>>,
}

impl Load {
    pub fn start(port: u16, clients: usize, keep_alive: bool) -> Load {
        Load::start_bounded(port, clients, keep_alive, 50_000, Duration::from_secs(60))
    }

    /// Like `start`, with each client's request count and run time bounded by `max` and `limit`.
    pub fn start_bounded(port: u16, clients: usize, keep_alive: bool, max: usize, limit: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..clients).map(|_| load(port, keep_alive, max, limit, stop.clone())).collect();
        Load { stop, clients }
    }

    /// `clients` loops of `load_with`, each making its requests with a clone of `request`.
    pub fn start_with<R>(clients: usize, max: usize, limit: Duration, request: R) -> Load
    where
        R: FnMut(usize) -> Result<(), String> + Clone + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..clients).map(|_| load_with(max, limit, stop.clone(), request.clone())).collect();
        Load { stop, clients }
    }

    /// Stops every client and returns the sum of their reports.
    pub fn finish(mut self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        LoadReport::sum(std::mem::take(&mut self.clients).into_iter().map(|c| c.join().unwrap_or_default()))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients.drain(..) {
            let _ = client.join();
        }
    }
}

/// One HTTP/1.1 request on the kept connection (opened if need be). A response that says `Connection: close`
/// (what `idle-close-on-response` sends while HAProxy stops) ends the connection after it.
pub fn keep_alive_request(port: u16, connection: &mut Option<BufReader<TcpStream>>) -> Result<(), String> {
    keep_alive_get(port, "test", connection).map(|_| ())
}

/// `GET /` with `Host: host` over HTTP/1.1 on the kept connection (opened if need be): the body of a 200, else
/// an error. A response that says `Connection: close` ends the connection after it; so does an error.
pub fn keep_alive_get(
    port: u16,
    host: &str,
    connection: &mut Option<BufReader<TcpStream>>,
) -> Result<String, String> {
    let result = (|| -> std::io::Result<(String, bool)> {
        if connection.is_none() {
            let stream = TcpStream::connect(("127.0.0.1", port))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            *connection = Some(BufReader::new(stream));
        }
        let reader = connection.as_mut().expect("connected above");
        reader.get_mut().write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())?;
        let mut status = String::new();
        if reader.read_line(&mut status)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed before a response"));
        }
        if !status.starts_with("HTTP/1.1 200") {
            return Err(std::io::Error::other(format!("status {}", status.trim())));
        }
        let (mut length, mut close) = (0usize, false);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed in the headers"));
            }
            let line = line.trim_end().to_ascii_lowercase();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if line.starts_with("connection:") && line.contains("close") {
                close = true;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        Ok((String::from_utf8_lossy(&body).into_owned(), close))
    })();
    match result {
        Ok((body, close)) => {
            if close {
                *connection = None;
            }
            Ok(body)
        }
        Err(e) => {
            *connection = None;
            Err(e.to_string())
        }
    }
}
