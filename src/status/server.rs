//! The status endpoint: a small synchronous HTTP server (`tiny_http`) on threads of its own, serving the last
//! published [`Status`] as `/status` (JSON), `/metrics` (Prometheus' text format) and `/` (the page).
//!
//! It never waits on the reconciler: it reads the last `Status` published. `/metrics` and the page are rendered
//! once per publication and at most once a second (they show ages), however often they are scraped, and sent
//! from the one rendering shared by every request. `/status`, megabytes at 1000 services × 50 servers, is not
//! kept: its length is counted by serializing it into nothing, then it is serialized again into the response
//! through a pipe, so no request holds it whole in memory. It is read-only: any method but GET and HEAD is
//! refused with 405.

use std::fs::File;
use std::io::{self, Cursor, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use tiny_http::{Header, Method, Request, Response, Server, StatusCode};

use super::{Published, Status};

/// How often a port that could not be bound (another program holds it, or the proxymgr handing over to this
/// one still does) is tried again.
const BIND_RETRY: Duration = Duration::from_secs(1);
/// Threads answering requests: a slow reader of a large `/status` does not hold up a scrape.
const WORKERS: usize = 2;
/// The longest a rendered view that shows ages is served again.
const AGE_LIMIT: Duration = Duration::from_secs(1);

/// The views the endpoint serves: `/status`, streamed, and those rendered once and kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Status,
    Kept(Kept),
}

/// The views rendered at most once a second and once per publication, and sent from that rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    Metrics,
    Page,
}

impl View {
    fn of(path: &str) -> Option<View> {
        match path.split('?').next().unwrap_or_default() {
            "/status" => Some(View::Status),
            "/metrics" => Some(View::Kept(Kept::Metrics)),
            "/" => Some(View::Kept(Kept::Page)),
            _ => None,
        }
    }
}

impl Kept {
    fn content_type(self) -> &'static str {
        match self {
            Kept::Metrics => "text/plain; version=0.0.4; charset=utf-8",
            Kept::Page => "text/html; charset=utf-8",
        }
    }

    fn render(self, status: &Status) -> Vec<u8> {
        let now = super::now_unix();
        match self {
            Kept::Page => super::page::render(status, now).into_bytes(),
            Kept::Metrics => {
                super::metrics::encode(status, now, &super::metrics::resident_bytes).into_bytes()
            }
        }
    }
}

/// A rendering shared by every request that sends it.
struct Shared(Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Counts what is written to it, and keeps nothing.
struct Counter(usize);

impl Write for Counter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `status` as JSON: its length, and a reader of it that a thread of its own fills through a pipe
/// (close-on-exec: a HAProxy started meanwhile must not hold its end open). A reader that stops reading ends
/// the thread.
fn streamed(status: Arc<Status>) -> io::Result<(usize, File)> {
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, &*status).map_err(io::Error::other)?;
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    std::thread::Builder::new().name("status-json".into()).spawn(move || {
        let mut out = io::BufWriter::with_capacity(64 * 1024, File::from(write));
        if serde_json::to_writer(&mut out, &*status).is_ok() {
            let _ = out.flush();
        }
    })?;
    Ok((counter.0, File::from(read)))
}

/// A view rendered from one publication, and when.
struct Rendered {
    status: Arc<Status>,
    at: Instant,
    body: Arc<Vec<u8>>,
}

/// The last rendering of each view.
#[derive(Default)]
struct Cache {
    views: Mutex<Vec<(Kept, Rendered)>>,
}

impl Cache {
    fn get(&self, view: Kept, status: Arc<Status>) -> Arc<Vec<u8>> {
        let fresh = |r: &Rendered| Arc::ptr_eq(&r.status, &status) && r.at.elapsed() < AGE_LIMIT;
        {
            let views = self.views.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, r)) = views.iter().find(|(v, r)| *v == view && fresh(r)) {
                return r.body.clone();
            }
        }
        // Rendered outside the lock: two requests at once may both render; neither waits.
        let body = Arc::new(view.render(&status));
        let mut views = self.views.lock().unwrap_or_else(|e| e.into_inner());
        views.retain(|(v, _)| *v != view);
        views.push((view, Rendered { status, at: Instant::now(), body: body.clone() }));
        body
    }
}

/// Serves `published` on `address` from now on, on threads of their own. A port that cannot be bound is
/// logged and tried again every second; nothing else waits for it.
pub fn start(address: SocketAddr, published: Published) {
    let spawned = std::thread::Builder::new().name("status".into()).spawn(move || {
        let server = bind(address);
        log::info!("status: serving /, /status and /metrics on http://{address}/");
        let (server, cache) = (Arc::new(server), Arc::new(Cache::default()));
        for n in 1..WORKERS {
            let (server, cache, published) = (server.clone(), cache.clone(), published.clone());
            let _ = std::thread::Builder::new()
                .name(format!("status-{n}"))
                .spawn(move || answer_all(&server, &cache, &published));
        }
        answer_all(&server, &cache, &published);
    });
    if let Err(e) = spawned {
        log::error!("status: cannot create its thread: {e}; serving without the status endpoint");
    }
}

/// The endpoint's server, once `address` can be bound. A warning, not an error, when it cannot at first: on a
/// hand-over the proxymgr before this one holds it until it exits, a moment later.
fn bind(address: SocketAddr) -> Server {
    let started = Instant::now();
    let mut logged = false;
    loop {
        match TcpListener::bind(address)
            .and_then(|l| Server::from_listener(l, None).map_err(io::Error::other))
        {
            Ok(server) if logged => {
                log::info!("status: listening on {address} after {:.0?}", started.elapsed());
                return server;
            }
            Ok(server) => return server,
            Err(e) if !logged => {
                log::warn!("status: cannot listen on {address}: {e}; trying again every {BIND_RETRY:?}");
                logged = true;
            }
            Err(_) => {}
        }
        // The pacing of the retries, not a wait for an event.
        std::thread::sleep(BIND_RETRY);
    }
}

fn answer_all(server: &Server, cache: &Cache, published: &Published) {
    while let Ok(request) = server.recv() {
        // A bug in a view costs that request, not the endpoint.
        let answered = catch_unwind(AssertUnwindSafe(|| answer(request, cache, published)));
        if answered.is_err() {
            log::error!("status: a request failed (a bug); serving on");
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name, value).expect("a valid header")
}

fn answer(request: Request, cache: &Cache, published: &Published) {
    let view = View::of(request.url());
    let answered = match (request.method(), view) {
        (Method::Get | Method::Head, Some(View::Status)) => match streamed(published.latest()) {
            Ok((length, body)) => request.respond(reply(200, "application/json", body, length)),
            Err(e) => {
                log::error!("status: cannot stream /status: {e}");
                request.respond(text(503, "cannot answer now: see proxymgr's log\n"))
            }
        },
        (Method::Get | Method::Head, Some(View::Kept(view))) => {
            let body = cache.get(view, published.latest());
            let length = body.len();
            request.respond(reply(200, view.content_type(), Cursor::new(Shared(body)), length))
        }
        (Method::Get | Method::Head, None) => {
            request.respond(text(404, "not found: try /, /status or /metrics\n"))
        }
        _ => request
            .respond(text(405, "read-only: GET or HEAD only\n").with_header(header("Allow", "GET, HEAD"))),
    };
    if let Err(e) = answered {
        log::debug!("status: answering a request: {e}");
    }
}

fn reply<R: Read>(code: u16, content_type: &str, body: R, length: usize) -> Response<R> {
    let headers = vec![header("Content-Type", content_type), header("Cache-Control", "no-store")];
    Response::new(StatusCode(code), headers, body, Some(length), None)
}

fn text(code: u16, body: &'static str) -> Response<Cursor<&'static [u8]>> {
    reply(code, "text/plain; charset=utf-8", Cursor::new(body.as_bytes()), body.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_has_its_view_and_the_rest_none() {
        let table = [
            ("/", Some(View::Kept(Kept::Page))),
            ("/status", Some(View::Status)),
            ("/status?pretty", Some(View::Status)),
            ("/metrics", Some(View::Kept(Kept::Metrics))),
            ("/metrics/", None),
            ("/admin", None),
            ("", None),
        ];
        for (path, view) in table {
            assert_eq!(View::of(path), view, "{path:?}");
        }
    }
}
