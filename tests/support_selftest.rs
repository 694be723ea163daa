//! Tests of the fixtures in `support` themselves, so a failing integration test points at proxymgr, not at them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::support::{self, http_get, Backend, Zk};

#[test]
fn reserved_ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
    let (low, high) = support::ephemeral_range();
    let mut ports: Vec<u16> = (0..5).map(|_| support::reserve_port()).collect();
    let listeners: Vec<TcpListener> = (0..5).map(|_| support::reserved_listener()).collect();
    for listener in &listeners {
        ports.push(listener.local_addr().expect("local_addr of a reserved listener").port());
    }
    for (i, &port) in ports.iter().enumerate() {
        assert!(port >= 20000, "port {port} is below the tests' range");
        assert!(
            !(low..=high).contains(&u32::from(port)),
            "port {port} is in the ephemeral range {low}-{high}"
        );
        assert!(!ports[..i].contains(&port), "port {port} was handed out twice: {ports:?}");
    }
    // The reserved ports are free (no one else is given them); the listeners' ports are taken by the listeners.
    for &port in &ports[..5] {
        let _held = TcpListener::bind(("127.0.0.1", port)).expect("bind a port reserve_port returned");
    }
    for &port in &ports[5..] {
        assert!(!support::port_is_free(port), "the reserved listener on {port} does not hold it");
    }
    // The listener accepts.
    TcpStream::connect(listeners[0].local_addr().unwrap()).expect("connect to a reserved listener");
}

#[test]
fn a_reserved_port_s_block_is_locked_against_other_processes() {
    let port = support::reserve_port();
    let first = u32::from(port) / 100 * 100;
    let path = std::path::Path::new(support::LOCK_DIR).join(format!("{first}.lock"));
    // flock locks belong to an open file description: a second one, even in this process, is what another test
    // process would have.
    let file = std::fs::File::open(&path).expect("open the block's lock file");
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(_) => panic!("{} is not locked while this process hands out {port}", path.display()),
        Err((_, errno)) => assert_eq!(errno, nix::errno::Errno::EWOULDBLOCK),
    }
}

#[test]
fn wait_for_returns_the_value_once_available() {
    let mut calls = 0;
    let value = support::wait_for(Duration::from_secs(5), "the third call", || {
        calls += 1;
        (calls == 3).then_some(calls * 10)
    });
    assert_eq!(value, 30);
}

#[test]
#[should_panic(expected = "timed out after 100ms waiting for something that never happens")]
fn wait_until_panics_at_the_deadline() {
    support::wait_until(Duration::from_millis(100), "something that never happens", || false);
}

#[test]
fn haproxy_versions_are_read_from_every_version_s_banner() {
    let banners = [
        ("HA-Proxy version 1.8.0 2017/11/26\nCopyright 2000-2017 Willy Tarreau\n", Some((1, 8))),
        ("HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/\n", Some((2, 6))),
        ("HAProxy version 3.4.0-64a335366 2026/06/03 - https://haproxy.org/\n", Some((3, 4))),
        ("haproxy: command not found\n", None),
    ];
    for (banner, version) in banners {
        assert_eq!(support::parse_haproxy_version(banner), version, "{banner:?}");
    }
}

/// The HAProxy the tests run (`PROXYMGR_TEST_HAPROXY` or the one on PATH) answers `-v` with a version proxymgr
/// supports.
#[test]
fn the_haproxy_under_test_has_a_version() {
    if !support::require("haproxy") {
        return;
    }
    let version = support::haproxy_version();
    assert!(version >= (1, 5), "{} is HAProxy {version:?}", support::haproxy().display());
}

#[test]
fn proc_stat_describes_this_process() {
    let stat = support::proc_stat(std::process::id()).expect("our own /proc entry");
    assert_eq!(stat.pid, std::process::id());
    assert_eq!(stat.ppid, std::os::unix::process::parent_id());
    assert!(support::pid_alive(stat.pid));
}

#[test]
fn backend_answers_with_its_name_and_counts_hits() {
    let backend = Backend::start("backend-a");
    assert_eq!(backend.addr().port(), backend.port());
    for _ in 0..3 {
        assert_eq!(http_get(backend.port()).expect("GET from the backend"), "backend-a");
    }
    assert_eq!(backend.hits(), 3);

    backend.set_status(503);
    let err = http_get(backend.port()).expect_err("a 503 is an error");
    assert!(err.to_string().contains("503 Service Unavailable"), "{err}");
    assert_eq!(backend.hits(), 4);
}

#[test]
fn backend_keeps_http11_connections_alive_and_drop_closes_them() {
    let backend = Backend::start("backend-ka");
    let mut stream = TcpStream::connect(backend.addr()).expect("connect to the backend");
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let request = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";
    let expected = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: keep-alive\r\n\r\nbackend-ka";
    for _ in 0..2 {
        stream.write_all(request).unwrap();
        let mut response = vec![0; expected.len()];
        stream.read_exact(&mut response).expect("a response on the kept-alive connection");
        assert_eq!(String::from_utf8_lossy(&response), expected);
    }
    assert_eq!(backend.hits(), 2);
    assert_eq!(backend.open_connections(), 1);

    // An idle kept-alive connection must not keep Drop from returning; the client then sees the close.
    drop(backend);
    let mut rest = Vec::new();
    assert_eq!(stream.read_to_end(&mut rest).expect("a clean close"), 0);
}

#[test]
fn backend_counts_health_checks_apart() {
    let backend = Backend::start("backend-c");
    let mut stream = TcpStream::connect(backend.addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    stream.write_all(b"OPTIONS / HTTP/1.0\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200 OK\r\n") && response.contains("Connection: close"),
        "{response}"
    );
    assert_eq!((backend.hits(), backend.checks()), (0, 1));
}

#[test]
fn zk_create_set_children_delete_round_trip() {
    if !support::require("zookeeper") {
        return;
    }
    let zk = Zk::start();
    assert_eq!(zk.connect_string(), format!("127.0.0.1:{}", zk.port()));
    assert!(zk.four_letter("srvr").unwrap().contains("Mode: standalone"));

    zk.create("/services/web/a", r#"{"address":"127.0.0.1","port":1}"#);
    zk.create("/services/web/b", "b");
    assert_eq!(zk.children("/services/web"), ["a", "b"]);
    assert_eq!(zk.get("/services/web/a").as_deref(), Some(r#"{"address":"127.0.0.1","port":1}"#));
    assert_eq!(zk.get("/services"), Some(String::new()), "parents are created empty");

    zk.set("/services/web/a", "changed");
    assert_eq!(zk.get("/services/web/a").as_deref(), Some("changed"));
    zk.put("/services/web/a", "put");
    zk.put("/services/web/c", "new");
    assert_eq!(zk.get("/services/web/a").as_deref(), Some("put"));
    assert_eq!(zk.children("/services/web"), ["a", "b", "c"]);

    zk.delete("/services/web");
    assert!(!zk.exists("/services/web"));
    assert!(zk.exists("/services"));
    assert_eq!(zk.get("/services/web/a"), None);

    // A separate client sees the same tree.
    let client = zk.client();
    assert_eq!(client.get_children("/services", false).unwrap(), Vec::<String>::new());
}

#[test]
fn zk_ephemeral_node_lives_as_long_as_its_session() {
    if !support::require("zookeeper") {
        return;
    }
    let zk = Zk::start();
    let session = zk.create_ephemeral("/services/web/e", "ephemeral");
    assert_eq!(zk.get("/services/web/e").as_deref(), Some("ephemeral"));
    drop(session);
    support::wait_until(Duration::from_secs(5), "the ephemeral node to go", || !zk.exists("/services/web/e"));
}

#[test]
fn zk_restart_keeps_data_and_port_and_restart_empty_loses_it() {
    if !support::require("zookeeper") {
        return;
    }
    let mut zk = Zk::start();
    let port = zk.port();
    zk.create("/kept", "yes");
    let pid = zk.pid().expect("a running server");

    zk.stop();
    assert!(!zk.is_running());
    assert!(!support::pid_alive(pid));
    assert!(zk.four_letter("srvr").is_none(), "a stopped server does not answer");

    zk.restart();
    assert_eq!(zk.port(), port);
    assert_eq!(zk.get("/kept").as_deref(), Some("yes"));

    zk.restart_empty();
    assert_eq!(zk.port(), port);
    assert!(!zk.exists("/kept"));
}

/// A HAProxy started directly (not through proxymgr), killed on drop.
struct Haproxy(Child);

impl Haproxy {
    /// HAProxy in the foreground on the config file `cfg`.
    fn start(cfg: &std::path::Path) -> Haproxy {
        let child = Command::new(support::haproxy())
            .arg("-f")
            .arg(cfg)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start haproxy");
        Haproxy(child)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn backend_serves_through_haproxy_and_the_runtime_socket_answers() {
    if !support::require("haproxy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start("behind-haproxy");
    let port = support::reserve_port();
    let socket = dir.path().join("haproxy.sock");
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  stats socket {} mode 600 level admin\n\
             defaults\n  mode http\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
             listen web\n  bind 127.0.0.1:{port}\n  server s1 127.0.0.1:{}\n",
            socket.display(),
            backend.port()
        ),
    )
    .unwrap();
    let _haproxy = Haproxy::start(&cfg);

    // HAProxy talks HTTP/1.1 to the backend and keeps that connection alive.
    let body = support::wait_for(Duration::from_secs(10), "HAProxy to serve", || http_get(port).ok());
    assert_eq!(body, "behind-haproxy");
    assert_eq!(http_get(port).unwrap(), "behind-haproxy");
    assert_eq!(backend.hits(), 2);

    let state = support::haproxy_command(&socket, "show servers state web").unwrap();
    assert!(state.contains(" s1 127.0.0.1 "), "{state}");
}

/// The edge tests' helpers: a certificate made with openssl serves TLS through HAProxy (a `frontend` with
/// `ssl crt ... alpn h2,http/1.1`), curl checks it and tells HTTP/2 from HTTP/1.1, a wrong name fails the check,
/// and `http_get_host` sends its Host and reads the status, headers and body HAProxy routed by it.
#[test]
fn a_self_signed_certificate_serves_tls_through_haproxy_and_requests_carry_their_host() {
    use crate::support::tls::{self, Http};
    if !support::require("haproxy") || !support::require("openssl") || !support::require("curl") {
        return;
    }
    if !tls::haproxy_has_openssl() {
        eprintln!("skipping: {} was built without OpenSSL", support::haproxy().display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cert = tls::self_signed(dir.path(), "edge", &["*.edge.test", "edge.test"]);
    let backend = Backend::start("behind-tls");
    let (https, http) = (support::reserve_port(), support::reserve_port());
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "defaults\n  mode http\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
             frontend tls\n  bind 127.0.0.1:{https} ssl crt {} alpn h2,http/1.1\n  default_backend b\n\
             frontend plain\n  bind 127.0.0.1:{http}\n  http-request set-var(txn.host) req.hdr(host)\n\
             \x20 http-response set-header X-Host %[var(txn.host)]\n\
             \x20 use_backend b if {{ req.hdr(host) -i routed.test }}\n\
             backend b\n  server s1 127.0.0.1:{}\n",
            cert.pem.display(),
            backend.port()
        ),
    )
    .unwrap();
    let _haproxy = Haproxy::start(&cfg);
    let localhost = std::net::IpAddr::from([127, 0, 0, 1]);
    let reply = support::wait_for(Duration::from_secs(10), "HAProxy to serve TLS", || {
        tls::https_get("api.edge.test", localhost, https, "/", &cert.cert, Http::Two).ok()
    });
    assert_eq!((reply.status, reply.body.as_str(), reply.http_version.as_str()), (200, "behind-tls", "2"));
    let reply = tls::https_get("edge.test", localhost, https, "/x", &cert.cert, Http::OneOne).unwrap();
    assert_eq!((reply.status, reply.http_version.as_str()), (200, "1.1"));
    let error = tls::https_get("other.test", localhost, https, "/", &cert.cert, Http::Two).unwrap_err();
    assert!(error.contains("curl"), "{error}");

    let answer = support::http_get_host(http, "routed.test", "/").unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "behind-tls"), "{answer:?}");
    assert!(answer.headers.contains("x-host: routed.test"), "{answer:?}");
    assert_eq!(support::http_get_host(http, "elsewhere.test", "/").unwrap().status, 503);
}

/// An HTML page served at `/` on a reserved port, by tiny_http on a thread, until dropped; other paths are 404.
struct StaticPage {
    port: u16,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StaticPage {
    fn serve(html: &'static str) -> StaticPage {
        let listener = support::reserved_listener();
        let port = listener.local_addr().expect("local_addr of a reserved listener").port();
        let server = Arc::new(tiny_http::Server::from_listener(listener, None).expect("serve on a listener"));
        let thread = std::thread::Builder::new()
            .name("static-page".to_string())
            .spawn({
                let server = Arc::clone(&server);
                move || {
                    let html_type = tiny_http::Header::from_bytes("Content-Type", "text/html; charset=utf-8")
                        .expect("a valid header");
                    for request in server.incoming_requests() {
                        let response = if request.url() == "/" {
                            tiny_http::Response::from_string(html).with_header(html_type.clone())
                        } else {
                            tiny_http::Response::from_string("not found").with_status_code(404)
                        };
                        let _ = request.respond(response);
                    }
                }
            })
            .expect("spawn the page's thread");
        StaticPage { port, server, thread: Some(thread) }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for StaticPage {
    fn drop(&mut self) {
        // Ends incoming_requests(); the server itself closes when its last Arc goes.
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn chromium_dumps_the_dom_it_built_from_a_served_page() {
    if !support::require("chromium") {
        return;
    }
    let page = StaticPage::serve("Caf&eacute; &amp; <b id=\"bold\">tea");
    let dom = support::browser::dump_dom(&page.url());
    // Only a parser gives this: the html, head and body elements put around bare text, the entity decoded
    // (and `&` written back as the markup needs it), the unclosed <b> closed.
    assert!(
        dom.contains("<html><head></head><body>Café &amp; <b id=\"bold\">tea</b></body></html>"),
        "{dom}"
    );
}

#[test]
fn chromium_screenshots_a_served_page_at_the_window_size() {
    if !support::require("chromium") {
        return;
    }
    let page = StaticPage::serve("<p style=\"font-size: 40px\">proxymgr</p>");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("page.png");
    support::browser::screenshot(&page.url(), &path, 640, 360);
    let png = std::fs::read(&path).expect("read the screenshot");
    // The IHDR chunk, first after the signature: width and height, big-endian, at bytes 16 and 20.
    let size = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().expect("four bytes"));
    assert_eq!((size(16), size(20)), (640, 360));
}
