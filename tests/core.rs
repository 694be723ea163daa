//! The core path end to end: services and servers written to a real ZooKeeper are served by a real HAProxy that
//! proxymgr runs, with real requests through it. One test per scenario of issue 2.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::{self, http_get, reserve_port, wait_until, Backend, Proxymgr, Zk};

const SETTLE: Duration = Duration::from_secs(20);

/// A ZooKeeper and a proxymgr following it, or None when a tool is missing (the test then skips).
fn start() -> Option<(Zk, Proxymgr)> {
    support::zk_and_proxymgr("")
}

fn blob(zk: &Zk, service: &str, port: u16) -> String {
    format!(
        r#"{{"type":"zookeeper","server":"{}","path":"/services/{service}","port":{port},
            "listen_options":["mode http","balance roundrobin"],"server_options":["check inter 2000"]}}"#,
        zk.connect_string()
    )
}

fn add_server(zk: &Zk, service: &str, node: &str, backend: &Backend) {
    zk.create(&format!("/services/{service}/{node}"), &server_json(backend.port()));
}

/// A new service named `service` with `backend` as its only server, serving on a free port: returns the port.
fn serve(zk: &Zk, service: &str, backend: &Backend) -> u16 {
    let port = reserve_port();
    add_server(zk, service, backend.name(), backend);
    zk.create(&format!("/service_config/{service}"), &blob(zk, service, port));
    wait_answers(port, &[backend.name()]);
    port
}

fn server_json(port: u16) -> String {
    format!(r#"{{"address":"127.0.0.1","port":{port}}}"#)
}

/// The backend names that answered `n` requests through `port` (errors count as "error: ...").
fn answers(port: u16, n: usize) -> BTreeSet<String> {
    (0..n).map(|_| http_get(port).unwrap_or_else(|e| format!("error: {e}"))).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Waits until `n` requests through `port` are answered by exactly `expected`.
fn wait_answers(port: u16, expected: &[&str]) {
    let expected = set(expected);
    wait_until(SETTLE, &format!("port {port} answered by exactly {expected:?}"), || {
        answers(port, 8) == expected
    });
}

fn refused(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
}

#[test]
fn a_zookeeper_service_is_served_through_haproxy() {
    a_zookeeper_service_served();
}

/// A service with two backends written to ZooKeeper is served by both through HAProxy, as haproxy.cfg says;
/// returns what serves it (matrix.rs then reads the log), or None when a tool is missing.
pub(crate) fn a_zookeeper_service_served() -> Option<(Zk, Proxymgr, [Backend; 2])> {
    let (zk, pm) = start()?;
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let port = reserve_port();
    add_server(&zk, "web", "a", &a);
    add_server(&zk, "web", "b", &b);
    zk.create("/service_config/web", &blob(&zk, "web", port));

    wait_answers(port, &["a", "b"]);
    let cfg = pm.haproxy_cfg();
    assert!(
        cfg.contains(&format!("stats socket {}/haproxy.sock mode 600 level admin", pm.dir().display())),
        "{cfg}"
    );
    assert!(cfg.contains("listen web\n  bind fd@"), "{cfg}");
    assert!(
        // Named by its address, or on HAProxy 1.8 to 2.4 by its slot.
        cfg.contains(&format!("  server 127.0.0.1:{0} 127.0.0.1:{0} check inter 2000\n", a.port()))
            || cfg.contains(&format!(" 127.0.0.1:{} check inter 2000\n", a.port()))
                && cfg.contains("  server slot"),
        "{cfg}"
    );
    // The first HAProxy started on an empty registry; the one that took its place may still be finishing.
    wait_until(SETTLE, "one HAProxy serves", || pm.haproxy_pids().len() == 1);
    Some((zk, pm, [a, b]))
}

#[test]
fn traffic_follows_server_nodes() {
    let Some((zk, pm)) = start() else { return };
    let (a, b, c) = (Backend::start("a"), Backend::start("b"), Backend::start("c"));
    let port = reserve_port();
    add_server(&zk, "web", "a", &a);
    zk.create("/service_config/web", &blob(&zk, "web", port));
    wait_answers(port, &["a"]);

    add_server(&zk, "web", "b", &b);
    add_server(&zk, "web", "c", &c);
    wait_answers(port, &["a", "b", "c"]);

    zk.delete("/services/web/a");
    wait_answers(port, &["b", "c"]);

    // A server node whose data changes moves the server.
    zk.set("/services/web/b", &server_json(a.port()));
    wait_answers(port, &["a", "c"]);
    assert!(pm.log().contains("service web: 2 server(s)"), "{}", pm.log());
}

#[test]
fn a_changed_blob_is_applied() {
    let Some((zk, pm)) = start() else { return };
    let a = Backend::start("a");
    let (port, new_port) = (reserve_port(), reserve_port());
    add_server(&zk, "web", "a", &a);
    zk.create("/service_config/web", &blob(&zk, "web", port));
    wait_answers(port, &["a"]);

    let moved = blob(&zk, "web", new_port).replace("balance roundrobin", "balance leastconn");
    zk.set("/service_config/web", &moved);
    wait_answers(new_port, &["a"]);
    wait_until(SETTLE, "the old port closes", || refused(port));
    assert!(pm.haproxy_cfg().contains("  balance leastconn\n"), "{}", pm.haproxy_cfg());
}

#[test]
fn a_deleted_service_closes_its_listener_and_new_services_get_theirs() {
    let Some((zk, pm)) = start() else { return };
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (web, api) = (reserve_port(), reserve_port());
    add_server(&zk, "web", "a", &a);
    zk.create("/service_config/web", &blob(&zk, "web", web));
    wait_answers(web, &["a"]);

    add_server(&zk, "api", "b", &b);
    zk.create("/service_config/api", &blob(&zk, "api", api));
    wait_answers(api, &["b"]);
    wait_answers(web, &["a"]);

    zk.delete("/service_config/web");
    wait_until(SETTLE, "web's port closes", || refused(web));
    wait_answers(api, &["b"]);
    assert!(!pm.haproxy_cfg().contains("listen web"), "{}", pm.haproxy_cfg());
}

#[test]
fn bad_blobs_and_bad_server_nodes_are_logged_and_skipped() {
    let Some((zk, pm)) = start() else { return };
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (web, other) = (reserve_port(), reserve_port());
    add_server(&zk, "web", "a", &a);
    add_server(&zk, "web", "b", &b);
    zk.create("/services/web/broken", "{\"address\": 1");
    zk.create("/services/web/noport", r#"{"address":"127.0.0.1"}"#);
    zk.create("/service_config/web", &blob(&zk, "web", web));
    wait_answers(web, &["a", "b"]);
    pm.wait_log("server node /services/web/broken: invalid JSON", SETTLE);
    pm.wait_log("server node /services/web/noport: has no `port`; skipped", SETTLE);

    // A new service with a bad blob never becomes one.
    let injected = blob(&zk, "evil", other).replace("mode http", "mode http\\nlisten evil");
    zk.create("/service_config/evil", &injected);
    pm.wait_log("service /service_config/evil: listen_options[0]", SETTLE);
    zk.create("/service_config/bad%20name", &blob(&zk, "x", other));
    pm.wait_log("service /service_config/bad%20name: name \"bad%20name\" contains '%'", SETTLE);

    // A running service whose blob turns bad keeps its last good spec.
    zk.set("/service_config/web", r#"{"type":"zookeeper","port":99999}"#);
    pm.wait_log(
        "service /service_config/web: port 99999 is out of range 1-65535; keeping its last good spec",
        SETTLE,
    );
    zk.delete("/services/web/b");
    wait_answers(web, &["a"]);
    assert!(!pm.haproxy_cfg().contains("evil"), "{}", pm.haproxy_cfg());
    assert!(refused(other), "no listener for a refused service");
}

#[test]
fn a_port_taken_by_another_service_is_refused_by_name() {
    let Some((zk, pm)) = start() else { return };
    let a = Backend::start("a");
    let port = serve(&zk, "first", &a);
    zk.create("/service_config/second", &blob(&zk, "first", port));
    pm.wait_log(&format!("service second: port {port} is already used by service first; not served"), SETTLE);
    wait_answers(port, &["a"]);

    // Once the first is gone, the second gets the port.
    zk.delete("/service_config/first");
    pm.wait_log("service second: added", SETTLE);
    wait_until(SETTLE, "haproxy.cfg has the second service", || {
        let cfg = pm.haproxy_cfg();
        cfg.contains("listen second") && !cfg.contains("listen first")
    });
    wait_answers(port, &["a"]);
}

#[test]
fn a_killed_haproxy_is_started_again() {
    let Some((zk, pm)) = start() else { return };
    let a = Backend::start("a");
    let port = serve(&zk, "web", &a);
    wait_until(SETTLE, "one HAProxy serves", || pm.haproxy_pids().len() == 1);
    let pids = pm.haproxy_pids();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pids[0] as i32), nix::sys::signal::SIGKILL).unwrap();
    pm.wait_log(&format!("haproxy[{}] exited unexpectedly (killed by SIGKILL)", pids[0]), SETTLE);
    wait_answers(port, &["a"]);
    let now = pm.haproxy_pids();
    assert!(now.len() == 1 && now != pids, "a new HAProxy serves: {now:?}");
}

#[test]
fn sigterm_stops_haproxy_and_exits_zero() {
    let Some((zk, mut pm)) = start() else { return };
    let a = Backend::start("a");
    let port = serve(&zk, "web", &a);
    let pids = pm.haproxy_pids();
    assert!(!pids.is_empty());
    let status = pm.stop();
    assert_eq!(status.code(), Some(0), "{}", pm.log());
    for pid in pids {
        assert!(!support::pid_alive(pid), "haproxy {pid} is left behind");
    }
    assert!(refused(port), "nothing listens any more");
    assert!(pm.log().contains("stopped"), "{}", pm.log());
}
