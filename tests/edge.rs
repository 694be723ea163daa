//! Issue 16, proxymgr at the edge: shared HTTP(S) frontends that route by `Host` and path prefix through HAProxy
//! maps kept in step at run time, TLS with HTTP/2 through ALPN (a certificate made with `openssl`, requests made
//! with `curl`), per-service `bind_address` and `bind_options`, `extra_sections` and `default_servers`, through
//! real ZooKeeper, HAProxy and backends on loopback.
//!
//! Routing changes are asserted to cost no reload (HAProxy's pids, `show map` and the map file on disk) and to
//! fail no request under load, kept-alive connections included; a new backend reloads, and a route changed while
//! that reload is under way, or while no proxymgr runs (a hand-over), still arrives; bad routes, missing
//! frontends, routes two services claim, names taken, frontends and extra sections HAProxy rejects are refused by
//! name (the log, `/status`, `--check`).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::support::load::{keep_alive_get, Load};
use crate::support::tls::{self, Http};
use crate::support::{
    self, fetch, http_get, http_get_host, reserve_port, wait_answers, wait_until, Backend, Proxymgr, Zk,
};

const SETTLE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------------------------
// Set-up

/// A ZooKeeper with an empty `/service_config`, what `before` writes into it, and then a proxymgr following it
/// with the standard test config, `haproxy(dir)`'s lines added to its `haproxy` section and `top` to its end;
/// None when a tool is missing (the test then skips).
fn start_with(
    before: impl FnOnce(&Zk),
    haproxy: impl FnOnce(&Path) -> String,
    top: &str,
) -> Option<(Zk, Proxymgr)> {
    if !support::require("haproxy") || !support::require("zookeeper") {
        return None;
    }
    let zk = Zk::start();
    zk.create("/service_config", "");
    before(&zk);
    let pm = Proxymgr::start_with(|dir| {
        let yaml = Proxymgr::config_yaml(dir, &zk.connect_string());
        let anchor = "  bind_address: 127.0.0.1\n";
        assert!(yaml.contains(anchor), "{yaml}");
        format!("{}{top}", yaml.replacen(anchor, &format!("{anchor}{}", haproxy(dir)), 1))
    });
    Some((zk, pm))
}

fn start(haproxy: impl FnOnce(&Path) -> String) -> Option<(Zk, Proxymgr)> {
    start_with(|_| {}, haproxy, "")
}

/// `haproxy.frontends` holding `frontends` (each made by `frontend`).
fn frontends(frontends: &[String]) -> String {
    format!("  frontends:\n{}", frontends.concat())
}

/// One shared frontend on 127.0.0.1:`port`, with `bind_options` (none when empty) and `options`.
fn frontend(name: &str, port: u16, bind_options: &str, options: &[&str]) -> String {
    let mut yaml = format!("    {name}:\n      bind: 127.0.0.1:{port}\n");
    if !bind_options.is_empty() {
        yaml.push_str(&format!("      bind_options: {bind_options:?}\n"));
    }
    if !options.is_empty() {
        yaml.push_str("      options:\n");
        for option in options {
            yaml.push_str(&format!("        - {option:?}\n"));
        }
    }
    yaml
}

/// A zookeeper service blob for `service` (its servers under `/services/<service>`) with the keys of `extra`
/// (`port`, `frontends`, `default_servers`, ...).
fn blob(zk: &Zk, service: &str, extra: Value) -> String {
    let mut blob = json!({
        "type": "zookeeper",
        "server": zk.connect_string(),
        "path": format!("/services/{service}"),
    });
    let (Value::Object(blob_keys), Value::Object(extra)) = (&mut blob, extra) else {
        panic!("a blob's extra keys are an object");
    };
    blob_keys.extend(extra);
    blob.to_string()
}

/// The keys of a service that joins the frontend `web` for `hosts`, path `/`.
fn hosts(hosts: &[&str]) -> Value {
    json!({"frontends": {"web": {"hosts": hosts}}})
}

fn add_server(zk: &Zk, service: &str, backend: &Backend) {
    zk.create(
        &format!("/services/{service}/{}", backend.name()),
        &format!(r#"{{"address":"127.0.0.1","port":{}}}"#, backend.port()),
    );
}

/// `service` with `backend` as its one server and the blob `blob(zk, service, extra)`; waits for nothing.
fn serve(zk: &Zk, service: &str, backend: &Backend, extra: Value) {
    add_server(zk, service, backend);
    zk.create(&format!("/service_config/{service}"), &blob(zk, service, extra));
}

// ---------------------------------------------------------------------------------------------------------------
// What answers

/// Who answered `GET path` with `Host: host` through 127.0.0.1:`port`: the backend's name on a 200, `HTTP
/// <status>` otherwise, `error: ...` when nothing did.
fn answer(port: u16, host: &str, path: &str) -> String {
    match http_get_host(port, host, path) {
        Ok(answer) if answer.status == 200 => answer.body,
        Ok(answer) => format!("HTTP {}", answer.status),
        Err(e) => format!("error: {e}"),
    }
}

/// Waits until every `(host, path, answer)` of `routes` is answered so through 127.0.0.1:`port`.
fn wait_routes(port: u16, routes: &[(&str, &str, &str)]) {
    wait_all(&format!("the routes through port {port}"), || {
        routes
            .iter()
            .filter_map(|&(host, path, want)| {
                let got = answer(port, host, path);
                (got != want).then(|| format!("Host {host} {path}: {got}, not {want}"))
            })
            .collect()
    });
}

/// Polls `wrong` (what is not yet as it should be) until it returns nothing; panics at the deadline naming
/// `what` and listing what was wrong the last time.
fn wait_all(what: &str, mut wrong: impl FnMut() -> Vec<String>) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let wrong = wrong();
        if wrong.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{what} after {SETTLE:?}:\n{}", wrong.join("\n"));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `(key, backend)` of each line of a map: the file (`<key> <backend>`, `#` comments) or `show map <file>`'s
/// reply (`<reference> <key> <backend>`): the last two words of each line.
fn map_entries(text: &str) -> BTreeSet<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let [.., key, backend] = words[..] else { return None };
            Some((key.to_string(), backend.to_string()))
        })
        .collect()
}

fn entries(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    pairs.iter().map(|(key, backend)| (key.to_string(), backend.to_string())).collect()
}

/// Waits until both the map file `map` on disk and HAProxy's copy of it (`show map`) hold exactly `want`.
fn wait_map(pm: &Proxymgr, map: &Path, want: &BTreeSet<(String, String)>) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let on_disk = map_entries(&std::fs::read_to_string(map).unwrap_or_default());
        let reply = pm.haproxy_command(&format!("show map {}", map.display())).unwrap_or_default();
        let in_haproxy = map_entries(&reply);
        if on_disk == *want && in_haproxy == *want {
            return;
        }
        if Instant::now() >= deadline {
            let maps = pm.haproxy_command("show map").unwrap_or_default();
            panic!(
                "{} after {SETTLE:?}: want {want:?}\non disk {on_disk:?}\nin HAProxy {in_haproxy:?} ({reply:?})\n\
                 show map: {maps}",
                map.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The state of the route `key` of `frontend` that `service` asks for, as `/status` shows it (`"routed"`,
/// `{"taken":{"by":"a"}}`, ...); None while it shows no such route.
fn route_state(status: &Value, service: &str, frontend: &str, key: &str) -> Option<String> {
    let services = status["services"].as_array()?;
    let service = services.iter().find(|s| s["name"] == service)?;
    let route =
        service["routes"].as_array()?.iter().find(|r| r["frontend"] == frontend && r["key"] == key)?;
    Some(route["state"].to_string())
}

/// Waits until `/status` shows each `(service, frontend, key, state)` of `routes`.
fn wait_route_states(pm: &Proxymgr, routes: &[(&str, &str, &str, &str)]) {
    pm.wait_status(&format!("the routes {routes:?}"), SETTLE, |status| {
        routes.iter().all(|&(service, frontend, key, state)| {
            route_state(status, service, frontend, key).as_deref() == Some(state)
        })
    });
}

/// Polls `ok` every 100 ms until it holds (true) or `SETTLE` passes (false), for a check whose failure message
/// needs what the last poll saw.
fn poll_until(mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + SETTLE;
    while !ok() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// Waits until one line of the log holds every one of `fragments`.
fn wait_log_line(pm: &Proxymgr, fragments: &[&str]) {
    wait_until(SETTLE, &format!("a log line with all of {fragments:?}"), || {
        pm.log().lines().any(|line| fragments.iter().all(|f| line.contains(f)))
    });
}

fn refused(address: SocketAddr) -> bool {
    TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_err()
}

fn loopback(last: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, last], port))
}

/// Waits until exactly one HAProxy serves (the first, started before any service, may still be finishing) and
/// returns its pid.
fn one_haproxy(pm: &Proxymgr) -> Vec<u32> {
    wait_until(SETTLE, "one HAProxy serves", || pm.haproxy_pids().len() == 1);
    pm.haproxy_pids()
}

/// Rewrites proxymgr.yml with `edit` and sends SIGHUP.
fn sighup(pm: &Proxymgr, edit: impl FnOnce(String) -> String) {
    let yaml = std::fs::read_to_string(pm.config_path()).expect("read proxymgr.yml");
    let edited = edit(yaml.clone());
    assert_ne!(edited, yaml, "the edit changes proxymgr.yml");
    std::fs::write(pm.config_path(), edited).expect("write proxymgr.yml");
    pm.signal(Signal::SIGHUP);
}

/// Whether this machine can serve TLS through HAProxy and ask with curl: false (the test then skips, saying
/// so) when openssl or curl is missing, or the HAProxy under test was built without OpenSSL.
fn tls_available() -> bool {
    if !support::require("haproxy") || !support::require("openssl") || !support::require("curl") {
        return false;
    }
    if !tls::haproxy_has_openssl() {
        eprintln!("skipping: {} was built without OpenSSL (haproxy -vv)", support::haproxy().display());
        return false;
    }
    true
}

/// An HTTPS GET through curl, `host` resolved to `address`: `<body> HTTP/<version>` on a 200, `HTTP <status>`
/// otherwise, `error: ...` when curl failed.
fn https(host: &str, address: IpAddr, port: u16, path: &str, ca: &Path, version: Http) -> String {
    match tls::https_get(host, address, port, path, ca, version) {
        Ok(reply) if reply.status == 200 => format!("{} HTTP/{}", reply.body, reply.http_version),
        Ok(reply) => format!("HTTP {}", reply.status),
        Err(e) => format!("error: {e}"),
    }
}

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

// ---------------------------------------------------------------------------------------------------------------
// Routing

/// Four services on one plain HTTP frontend: exact host, wildcard host (one label, as a TLS wildcard), a path
/// prefix under a host beating the host's `/`, a path prefix for any host, and `default: true` for the rest;
/// the Host header matched lower-cased without its port, the path as sent. The frontend's own options apply,
/// the routes are in `<dir>/maps/web.map` (`map_dir`'s default beside the state file), a service with a port
/// keeps serving there too. Also one of matrix.rs's scenarios, run on every HAProxy version.
#[test]
fn services_share_a_port_routed_by_exact_then_wildcard_then_any_host_and_longest_path() {
    services_share_a_port_routed();
}

/// The body of the test above; returns what serves (matrix.rs then reads the log), or None when a tool is
/// missing.
pub(crate) fn services_share_a_port_routed() -> Option<(Zk, Proxymgr, [Backend; 4])> {
    let web = reserve_port();
    let edge_header = ["http-response set-header X-Edge shared"];
    let (zk, pm) = start(|_| frontends(&[frontend("web", web, "", &edge_header)]))?;
    let (www, api, assets, fallback) =
        (Backend::start("www"), Backend::start("api"), Backend::start("assets"), Backend::start("fallback"));
    let api_port = reserve_port();
    serve(&zk, "www", &www, hosts(&["www.x.test", "*.x.test", "Shop.Y.Test"]));
    let api_join =
        json!({"port": api_port, "frontends": {"web": {"hosts": ["www.x.test"], "paths": ["/api/"]}}});
    serve(&zk, "api", &api, api_join);
    serve(&zk, "assets", &assets, json!({"frontends": {"web": {"paths": ["/static/"]}}}));
    serve(&zk, "fallback", &fallback, json!({"frontends": {"web": {"default": true}}}));

    wait_routes(
        web,
        &[
            ("www.x.test", "/", "www"),
            ("www.x.test", "/index.html", "www"),
            // The longest prefix under the exact host.
            ("www.x.test", "/api/users", "api"),
            ("www.x.test", "/api/", "api"),
            // Lower-cased, its port dropped.
            ("WWW.X.Test:8080", "/api/users", "api"),
            // A prefix, not a word: `/apis` is not under `/api/`; and the path as sent, not decoded.
            ("www.x.test", "/apis", "www"),
            ("www.x.test", "/%61pi/users", "www"),
            // An exact host's routes come before any host's, however long their prefix.
            ("www.x.test", "/static/app.js", "www"),
            // The wildcard: one label before `.x.test`; the api's prefix is for www.x.test alone.
            ("shop.x.test", "/", "www"),
            ("shop.x.test", "/api/users", "www"),
            ("shop.x.test", "/static/app.js", "www"),
            ("a.shop.x.test", "/", "fallback"),
            ("x.test", "/", "fallback"),
            // Any host: the longest prefix, then the default.
            ("unknown.test", "/static/app.js", "assets"),
            ("unknown.test", "/static", "fallback"),
            ("unknown.test", "/", "fallback"),
            ("unknown.test", "/api/users", "fallback"),
            // A host name in a blob is lower-cased too.
            ("shop.y.test", "/", "www"),
            ("SHOP.Y.TEST", "/", "www"),
        ],
    );
    // The frontend's own lines apply to every route.
    let answer = http_get_host(web, "www.x.test", "/").expect("www answers");
    assert!(answer.headers.to_ascii_lowercase().contains("x-edge: shared"), "{answer:?}");
    // A service with a port of its own is served there as well.
    wait_answers(api_port, &["api"]);

    let cfg = pm.haproxy_cfg();
    for section in ["frontend web", "backend www", "backend assets", "backend fallback", "listen api"] {
        assert!(cfg.lines().any(|line| line.trim_end() == section), "no `{section}` in haproxy.cfg:\n{cfg}");
    }
    let map = pm.dir().join("maps/web.map");
    let want = entries(&[
        ("www.x.test/", "www"),
        ("*.x.test/", "www"),
        ("shop.y.test/", "www"),
        ("www.x.test/api/", "api"),
        ("/static/", "assets"),
        ("/", "fallback"),
    ]);
    wait_map(&pm, &map, &want);
    Some((zk, pm, [www, api, assets, fallback]))
}

/// A frontend's own `default_backend` line (its `options`) takes what no route matches, even naming a service
/// that arrives after proxymgr started (until then HAProxy refuses the frontend).
#[test]
fn a_frontend_s_own_default_backend_takes_what_no_route_matches() {
    let web = reserve_port();
    let options = ["default_backend catchall"];
    let Some((zk, _pm)) = start(|_| frontends(&[frontend("web", web, "", &options)])) else { return };
    let (www, catchall) = (Backend::start("www"), Backend::start("catchall"));
    serve(&zk, "www", &www, hosts(&["www.x.test"]));
    serve(&zk, "catchall", &catchall, hosts(&["catchall.test"]));
    wait_routes(
        web,
        &[
            ("www.x.test", "/", "www"),
            ("catchall.test", "/", "catchall"),
            ("other.test", "/", "catchall"),
            ("www.x.test.other", "/", "catchall"),
        ],
    );
}

/// A Host header is a host name and perhaps a port: one that carries a path (`www.x.test/api`, `/static`)
/// must not pick the route of that path for a request whose path is another (the route key is `<host><path>`,
/// so a Host with a `/` in it would otherwise reach `www.x.test/api/` with the path `/x`); it is routed as no
/// Host.
#[test]
fn a_host_header_holding_a_path_does_not_pick_that_path_s_route() {
    let web = reserve_port();
    let Some((zk, _pm)) = start(|_| frontends(&[frontend("web", web, "", &[])])) else { return };
    let (www, api, assets, fallback) =
        (Backend::start("www"), Backend::start("api"), Backend::start("assets"), Backend::start("fallback"));
    serve(&zk, "www", &www, hosts(&["www.x.test"]));
    serve(&zk, "api", &api, json!({"frontends": {"web": {"hosts": ["www.x.test"], "paths": ["/api/"]}}}));
    serve(&zk, "assets", &assets, json!({"frontends": {"web": {"paths": ["/static/"]}}}));
    serve(&zk, "fallback", &fallback, json!({"frontends": {"web": {"default": true}}}));
    wait_routes(
        web,
        &[
            ("www.x.test", "/api/x", "api"),
            ("www.x.test", "/x", "www"),
            ("other.test", "/static/x", "assets"),
        ],
    );
    // A Host that is not a host name is routed as no Host at all, by the path alone (HAProxy 3.2 and later
    // answer a Host with a `/` 400 themselves).
    let smuggled = [
        ("www.x.test/api", "/x", "fallback"),
        ("/static", "/x", "fallback"),
        ("WWW.X.TEST/API", "/", "fallback"),
        ("www.x.test/api", "/static/x", "assets"),
    ];
    wait_all("Hosts holding a path", || {
        smuggled
            .iter()
            .filter_map(|&(host, path, want)| {
                let got = answer(web, host, path);
                (got != want && got != "HTTP 400").then(|| format!("Host {host} {path}: {got}, not {want}"))
            })
            .collect()
    });
    // Nor does a client's own copy of the header the frontend builds its key in (sent after a Host that is not a
    // host name, which leaves the header as the client sent it unless the frontend removes it).
    wait_routes(
        web,
        &[
            ("bad_host\r\nX-Proxymgr-Route: www.x.test/api/x", "/x", "fallback"),
            ("www.x.test\r\nX-Proxymgr-Route: www.x.test/api/x", "/x", "www"),
        ],
    );
}

/// A TLS frontend (`bind_options: ssl crt <pem> alpn h2,http/1.1`, the certificate for `*.edge.test` made with
/// openssl) routes HTTPS by Host, over HTTP/2 negotiated through ALPN and over HTTP/1.1; curl checks the
/// certificate served is the one made. A plain frontend redirects to it; a SIGHUP naming a certificate that is
/// not there is rejected, and TLS serves on.
#[test]
fn tls_on_a_shared_frontend_routes_by_host_and_speaks_http2_through_alpn() {
    if !tls_available() {
        return;
    }
    let (port, http) = (reserve_port(), reserve_port());
    let Some((zk, pm)) = start(|dir| {
        let cert = tls::self_signed(dir, "edge", &["*.edge.test", "edge.test"]);
        let bind_options = format!("ssl crt {} alpn h2,http/1.1", cert.pem.display());
        let options = ["http-request set-header X-Forwarded-Proto https"];
        let redirect = ["http-request redirect scheme https code 301"];
        frontends(&[frontend("https", port, &bind_options, &options), frontend("http", http, "", &redirect)])
    }) else {
        return;
    };
    let ca = pm.dir().join("edge.crt");
    let (api, www) = (Backend::start("api"), Backend::start("www"));
    serve(&zk, "api", &api, json!({"frontends": {"https": {"hosts": ["api.edge.test"]}}}));
    serve(&zk, "www", &www, json!({"frontends": {"https": {"hosts": ["www.edge.test", "edge.test"]}}}));

    let routes = [
        ("api.edge.test", "/", Http::Two, "api HTTP/2"),
        ("api.edge.test", "/v1/users", Http::OneOne, "api HTTP/1.1"),
        ("www.edge.test", "/", Http::Two, "www HTTP/2"),
        ("edge.test", "/index.html", Http::OneOne, "www HTTP/1.1"),
        ("edge.test", "/", Http::Two, "www HTTP/2"),
        // No route and no default: HAProxy's 503, over TLS.
        ("other.edge.test", "/", Http::Two, "HTTP 503"),
    ];
    wait_all("the HTTPS routes", || {
        routes
            .iter()
            .filter_map(|&(host, path, version, want)| {
                let got = https(host, LOCALHOST, port, path, &ca, version);
                (got != want).then(|| format!("https://{host}{path} over {version:?}: {got}, not {want}"))
            })
            .collect()
    });
    let cfg = pm.haproxy_cfg();
    let bind =
        cfg.lines().find(|line| line.contains("ssl crt")).unwrap_or_else(|| panic!("no TLS bind:\n{cfg}"));
    assert!(bind.contains("alpn h2,http/1.1"), "{bind}");
    // Plain HTTP on the TLS port is no route to a backend.
    assert_ne!(answer(port, "api.edge.test", "/"), "api");
    // A frontend no service joins, its options all it does: plain HTTP redirected to HTTPS.
    let redirect = http_get_host(http, "api.edge.test", "/v1/users?x=1").expect("the http frontend answers");
    assert_eq!(redirect.status, 301, "{redirect:?}");
    assert!(
        redirect
            .headers
            .lines()
            .any(|h| h.eq_ignore_ascii_case("location: https://api.edge.test/v1/users?x=1")),
        "{redirect:?}"
    );

    // A certificate that is not there, by SIGHUP: HAProxy's refusal is reported, TLS serves on as it was.
    let pids = one_haproxy(&pm);
    let missing = pm.dir().join("missing.pem");
    sighup(&pm, |yaml| {
        yaml.replacen(&ca.with_extension("pem").display().to_string(), &missing.display().to_string(), 1)
    });
    let status = pm.wait_status("the rejected config", SETTLE, |s| !s["rejected"].is_null());
    let error = status["rejected"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("missing.pem"), "HAProxy's reason names the file: {status:#}");
    support::hold(Duration::from_secs(1), "TLS serving as it was", || {
        match https("api.edge.test", LOCALHOST, port, "/", &ca, Http::Two).as_str() {
            "api HTTP/2" if pm.haproxy_pids() == pids => Ok(()),
            other => Err(format!("{other}; pids {:?}, before {pids:?}", pm.haproxy_pids())),
        }
    });
}

/// A host moves from service a to service b (b claims it while a still has it: a keeps it until it lets go),
/// b gets a new host and a loses one, while two clients send requests through the frontend for a's host, b's
/// host and the host that moves: no request fails, each change reaches the backend it names (on a connection
/// kept alive across it too), HAProxy's processes are the same throughout, and `show map` and the map file (in
/// the configured `map_dir`) follow. Also one of matrix.rs's scenarios, run on every HAProxy version.
#[test]
pub(crate) fn routes_that_move_arrive_and_leave_under_load_fail_no_request_and_take_no_reload() {
    let web = reserve_port();
    let Some((zk, pm)) = start(|dir| {
        format!(
            "  map_dir: {}\n{}",
            dir.join("routing").display(),
            frontends(&[frontend("web", web, "", &[])])
        )
    }) else {
        return;
    };
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    serve(&zk, "a", &a, hosts(&["stay.test", "move.test", "gone.test"]));
    serve(&zk, "b", &b, hosts(&["b.test"]));
    wait_routes(
        web,
        &[
            ("stay.test", "/", "a"),
            ("move.test", "/", "a"),
            ("gone.test", "/", "a"),
            ("b.test", "/", "b"),
            ("new.test", "/", "HTTP 503"),
        ],
    );
    let pids = one_haproxy(&pm);
    let map = pm.dir().join("routing/web.map");
    wait_map(
        &pm,
        &map,
        &entries(&[("stay.test/", "a"), ("move.test/", "a"), ("gone.test/", "a"), ("b.test/", "b")]),
    );

    // Each request names its host and the backends that may answer it; anything else is a failure.
    let load = Load::start_with(2, 50_000, Duration::from_secs(60), move |n| {
        let (host, allowed): (&str, &[&str]) =
            [("stay.test", &["a"][..]), ("move.test", &["a", "b"]), ("b.test", &["b"])][n % 3];
        match http_get_host(web, host, "/") {
            Ok(answer) if answer.status == 200 && allowed.contains(&answer.body.as_str()) => Ok(()),
            Ok(answer) => Err(format!("Host {host}: {} {:?}", answer.status, answer.body)),
            Err(e) => Err(format!("Host {host}: {e}")),
        }
    });
    wait_until(SETTLE, "the load reaches both backends", || a.hits() > 100 && b.hits() > 100);
    // A client that keeps its connection: each request on it is routed afresh.
    let mut kept = None;
    assert_eq!(keep_alive_get(web, "move.test", &mut kept), Ok("a".to_string()));
    let kept_port = kept.as_ref().map(|c| c.get_ref().local_addr().expect("local address").port());

    // b claims move.test while a has it: a keeps it, and the log names both.
    zk.set("/service_config/b", &blob(&zk, "b", hosts(&["b.test", "move.test", "new.test"])));
    wait_routes(web, &[("new.test", "/", "b"), ("move.test", "/", "a")]);
    wait_log_line(&pm, &["service b", "move.test", "service a"]);
    // a lets move.test go, and gone.test with it: move.test is b's.
    zk.set("/service_config/a", &blob(&zk, "a", hosts(&["stay.test"])));
    let done = [
        ("move.test", "/", "b"),
        ("gone.test", "/", "HTTP 503"),
        ("stay.test", "/", "a"),
        ("b.test", "/", "b"),
        ("new.test", "/", "b"),
    ];
    wait_routes(web, &done);
    assert_eq!(keep_alive_get(web, "move.test", &mut kept), Ok("b".to_string()), "on the kept connection");
    assert_eq!(keep_alive_get(web, "stay.test", &mut kept), Ok("a".to_string()), "on the kept connection");
    let port_now = kept.as_ref().map(|c| c.get_ref().local_addr().expect("local address").port());
    assert_eq!(port_now, kept_port, "the same connection throughout");
    // The load goes on after the last change.
    let (a_hits, b_hits) = (a.hits(), b.hits());
    wait_until(SETTLE, "more load after the changes", || a.hits() > a_hits + 100 && b.hits() > b_hits + 200);
    let report = load.finish();
    report.assert_none_failed("while routes moved, arrived and left");
    wait_routes(web, &done);

    assert_eq!(pm.haproxy_pids(), pids, "routing changes take no reload (and start no HAProxy)");
    let want = entries(&[("stay.test/", "a"), ("move.test/", "b"), ("b.test/", "b"), ("new.test/", "b")]);
    wait_map(&pm, &map, &want);
    assert_eq!(pm.haproxy_pids(), pids, "no reload");
}

/// A service that already joins a frontend joins a second one, and turns `default` on: its routes come by
/// `add map`, with no reload.
#[test]
fn a_backend_joining_another_frontend_or_turning_default_on_takes_no_reload() {
    let (web, api) = (reserve_port(), reserve_port());
    let Some((zk, pm)) =
        start(|_| frontends(&[frontend("web", web, "", &[]), frontend("api", api, "", &[])]))
    else {
        return;
    };
    let a = Backend::start("a");
    serve(&zk, "a", &a, hosts(&["a.test"]));
    wait_routes(web, &[("a.test", "/", "a"), ("other.test", "/", "HTTP 503")]);
    wait_routes(api, &[("a.test", "/v1/", "HTTP 503")]);
    let pids = one_haproxy(&pm);

    let joins = json!({"frontends": {
        "web": {"hosts": ["a.test"], "default": true},
        "api": {"hosts": ["a.test"], "paths": ["/v1/"]},
    }});
    zk.set("/service_config/a", &blob(&zk, "a", joins));
    wait_routes(web, &[("a.test", "/", "a"), ("other.test", "/", "a")]);
    wait_routes(api, &[("a.test", "/v1/x", "a"), ("a.test", "/", "HTTP 503")]);
    wait_map(&pm, &pm.dir().join("maps/api.map"), &entries(&[("a.test/v1/", "a")]));
    wait_map(&pm, &pm.dir().join("maps/web.map"), &entries(&[("a.test/", "a"), ("/", "a")]));
    assert_eq!(pm.haproxy_pids(), pids, "no reload");
}

/// Routes changed by hand on the admin socket (one deleted, one moved, one added) are set right by the drift
/// check, at run time.
#[test]
fn routes_changed_by_hand_are_set_right_by_the_drift_check() {
    let web = reserve_port();
    let Some((zk, pm)) =
        start(|_| format!("  drift_check_interval: 0.5\n{}", frontends(&[frontend("web", web, "", &[])])))
    else {
        return;
    };
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    serve(&zk, "a", &a, hosts(&["a.test"]));
    serve(&zk, "b", &b, hosts(&["b.test"]));
    wait_routes(web, &[("a.test", "/", "a"), ("b.test", "/", "b")]);
    let pids = one_haproxy(&pm);
    let map = pm.dir().join("maps/web.map");
    for command in ["del map {map} a.test/", "set map {map} b.test/ a", "add map {map} c.test/ a"] {
        let command = command.replace("{map}", &map.display().to_string());
        pm.haproxy_command(&command).unwrap_or_else(|e| panic!("{command}: {e}"));
    }
    wait_routes(web, &[("a.test", "/", "a"), ("b.test", "/", "b"), ("c.test", "/", "HTTP 503")]);
    wait_map(&pm, &map, &entries(&[("a.test/", "a"), ("b.test/", "b")]));
    assert_eq!(pm.haproxy_pids(), pids, "no reload");
    wait_log_line(&pm, &["drift: frontend web"]);
}

/// 300 host names arrive on a service in one blob change, and leave in the next, while a client sends requests
/// for a host that stays: each arrives and leaves at run time (no reload), no request fails, and the map in
/// HAProxy and on disk follows.
#[test]
fn three_hundred_hosts_arrive_and_leave_at_once_without_a_reload() {
    let web = reserve_port();
    let Some((zk, pm)) = start(|_| frontends(&[frontend("web", web, "", &[])])) else { return };
    let a = Backend::start("a");
    serve(&zk, "a", &a, hosts(&["stay.test"]));
    wait_routes(web, &[("stay.test", "/", "a")]);
    let pids = one_haproxy(&pm);
    let load = Load::start_with(1, 50_000, Duration::from_secs(60), move |_| {
        match http_get_host(web, "stay.test", "/") {
            Ok(answer) if answer.status == 200 && answer.body == "a" => Ok(()),
            Ok(answer) => Err(format!("{} {:?}", answer.status, answer.body)),
            Err(e) => Err(e.to_string()),
        }
    });

    let many: Vec<String> = (0..300).map(|i| format!("h{i}.many.test")).collect();
    let mut names: Vec<&str> = vec!["stay.test"];
    names.extend(many.iter().map(String::as_str));
    zk.set("/service_config/a", &blob(&zk, "a", hosts(&names)));
    let map = pm.dir().join("maps/web.map");
    let all: BTreeSet<(String, String)> =
        names.iter().map(|host| (format!("{host}/"), "a".to_string())).collect();
    wait_map(&pm, &map, &all);
    wait_routes(
        web,
        &[("h0.many.test", "/", "a"), ("h150.many.test", "/", "a"), ("h299.many.test", "/", "a")],
    );

    zk.set("/service_config/a", &blob(&zk, "a", hosts(&["stay.test"])));
    wait_map(&pm, &map, &entries(&[("stay.test/", "a")]));
    wait_routes(web, &[("h0.many.test", "/", "HTTP 503"), ("h299.many.test", "/", "HTTP 503")]);
    let hits = a.hits();
    wait_until(SETTLE, "more load after the changes", || a.hits() > hits + 100);
    load.finish().assert_none_failed("while 300 hosts arrived and left");
    assert_eq!(pm.haproxy_pids(), pids, "no reload");
}

/// The `directory` source with `file` watchers, no ZooKeeper at all: a service file joins the frontend, a host
/// added to the file routes at run time, and the file removed takes its routes and backend with it.
#[test]
fn services_from_a_directory_join_a_frontend_and_their_routes_follow_the_files() {
    if !support::require("haproxy") {
        return;
    }
    let web = reserve_port();
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let file_blob = |dir: &Path, service: &str, hosts: &[&str]| {
        json!({"type": "file", "file": dir.join(format!("{service}.txt")), "interval": 0.2,
               "frontends": {"web": {"hosts": hosts}}})
        .to_string()
    };
    let pm = Proxymgr::start_with(|dir| {
        let services = dir.join("services");
        std::fs::create_dir(&services).expect("create the services directory");
        for (service, backend) in [("a", &a), ("b", &b)] {
            let servers = format!("127.0.0.1:{}\n", backend.port());
            std::fs::write(dir.join(format!("{service}.txt")), servers).expect("write a servers file");
        }
        std::fs::write(services.join("a.json"), file_blob(dir, "a", &["a.test"])).expect("write a.json");
        std::fs::write(services.join("b.json"), file_blob(dir, "b", &["b.test"])).expect("write b.json");
        let yaml = Proxymgr::config_yaml(dir, "127.0.0.1:1");
        let (haproxy, _zookeeper) = yaml.split_once("service_config:\n").expect("a service_config section");
        let haproxy = haproxy.replacen(
            "  bind_address: 127.0.0.1\n",
            &format!("  bind_address: 127.0.0.1\n{}", frontends(&[frontend("web", web, "", &[])])),
            1,
        );
        format!("{haproxy}service_config:\n  type: directory\n  path: {}\n", services.display())
    });
    wait_routes(web, &[("a.test", "/", "a"), ("b.test", "/", "b")]);
    let pids = one_haproxy(&pm);

    let services = pm.dir().join("services");
    std::fs::write(services.join("a.json.tmp"), file_blob(pm.dir(), "a", &["a.test", "a2.test"])).unwrap();
    std::fs::rename(services.join("a.json.tmp"), services.join("a.json")).unwrap();
    wait_routes(web, &[("a2.test", "/", "a"), ("a.test", "/", "a")]);
    assert_eq!(pm.haproxy_pids(), pids, "a host added is no reload");

    std::fs::remove_file(services.join("b.json")).unwrap();
    wait_routes(web, &[("b.test", "/", "HTTP 503"), ("a.test", "/", "a")]);
    wait_map(&pm, &pm.dir().join("maps/web.map"), &entries(&[("a.test/", "a"), ("a2.test/", "a")]));
    wait_until(SETTLE, "haproxy.cfg drops b", || !pm.haproxy_cfg().contains("backend b"));
}

/// A service that joins the frontend is a new backend: HAProxy reloads (a new process), requests through the
/// frontend fail none across it, and the new service's routes work after it.
#[test]
fn a_service_joining_a_frontend_reloads_as_a_new_backend_and_its_routes_work_after_it() {
    let web = reserve_port();
    let Some((zk, pm)) = start(|_| frontends(&[frontend("web", web, "", &[])])) else { return };
    let (www, api) = (Backend::start("www"), Backend::start("api"));
    serve(&zk, "www", &www, hosts(&["www.x.test"]));
    wait_routes(web, &[("www.x.test", "/", "www"), ("api.x.test", "/v1/users", "HTTP 503")]);
    let pids = one_haproxy(&pm);

    let load = Load::start_with(2, 50_000, Duration::from_secs(60), move |_| {
        match http_get_host(web, "www.x.test", "/") {
            Ok(answer) if answer.status == 200 && answer.body == "www" => Ok(()),
            Ok(answer) => Err(format!("{} {:?}", answer.status, answer.body)),
            Err(e) => Err(e.to_string()),
        }
    });
    wait_until(SETTLE, "the load runs", || www.hits() > 100);
    serve(&zk, "api", &api, json!({"frontends": {"web": {"hosts": ["api.x.test"], "paths": ["/v1/"]}}}));
    wait_routes(
        web,
        &[("api.x.test", "/v1/users", "api"), ("api.x.test", "/", "HTTP 503"), ("www.x.test", "/", "www")],
    );
    let now = pm.haproxy_pids();
    assert!(now.iter().any(|pid| !pids.contains(pid)), "a new backend reloads: {now:?}, before {pids:?}");
    let hits = www.hits();
    wait_until(SETTLE, "more load after the reload", || www.hits() > hits + 100);
    load.finish().assert_none_failed("across the reload for a new backend");
    assert!(pm.haproxy_cfg().lines().any(|line| line.trim_end() == "backend api"), "{}", pm.haproxy_cfg());
    let map = pm.dir().join("maps/web.map");
    wait_map(&pm, &map, &entries(&[("www.x.test/", "www"), ("api.x.test/v1/", "api")]));

    // A service that leaves takes its routes and its backend with it.
    zk.delete("/service_config/api");
    wait_routes(web, &[("api.x.test", "/v1/users", "HTTP 503"), ("www.x.test", "/", "www")]);
    wait_map(&pm, &map, &entries(&[("www.x.test/", "www")]));
    wait_until(SETTLE, "haproxy.cfg drops api", || !pm.haproxy_cfg().contains("backend api"));
}

/// A route changed while a reload is under way (a new service makes it; the new HAProxy has read the map file
/// and does not serve yet) reaches the HAProxy that serves after it, six times over; and a HAProxy killed and
/// started again reads every route from the map file on disk.
#[test]
fn a_route_changed_while_a_reload_is_under_way_reaches_the_haproxy_serving_after_it() {
    let web = reserve_port();
    let Some((zk, pm)) = start(|_| frontends(&[frontend("web", web, "", &[])])) else { return };
    let (a, other) = (Backend::start("a"), Backend::start("other"));
    serve(&zk, "a", &a, hosts(&["a0.test"]));
    wait_routes(web, &[("a0.test", "/", "a")]);
    one_haproxy(&pm);

    // Each route: its host, its service, the backend that answers it.
    let mut routed = vec![("a0.test".to_string(), "a".to_string(), "a")];
    let map = pm.dir().join("maps/web.map");
    let wait_routed = |routed: &[(String, String, &str)]| {
        let routes: Vec<(&str, &str, &str)> =
            routed.iter().map(|(host, _, answer)| (host.as_str(), "/", *answer)).collect();
        wait_routes(web, &routes);
        let keys = routed.iter().map(|(host, service, _)| (format!("{host}/"), service.clone())).collect();
        wait_map(&pm, &map, &keys);
    };
    let started = || pm.log().matches("] started, replacing").count();
    for i in 1..=6 {
        let before = started();
        let service = format!("s{i}");
        serve(&zk, &service, &other, hosts(&[&format!("{service}.test")]));
        routed.push((format!("{service}.test"), service, "other"));
        wait_until(SETTLE, "the reload for the new service starts", || started() > before);
        // At once: the new HAProxy has read its map file and may not serve yet.
        routed.push((format!("a{i}.test"), "a".to_string(), "a"));
        let a_hosts: Vec<&str> = routed.iter().filter(|r| r.1 == "a").map(|r| r.0.as_str()).collect();
        zk.set("/service_config/a", &blob(&zk, "a", hosts(&a_hosts)));
        wait_routed(&routed);
    }

    let pids = one_haproxy(&pm);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pids[0] as i32), Signal::SIGKILL)
        .expect("kill HAProxy");
    pm.wait_log(&format!("haproxy[{}] exited unexpectedly", pids[0]), SETTLE);
    wait_until(SETTLE, "a new HAProxy serves", || pm.haproxy_pids().len() == 1 && pm.haproxy_pids() != pids);
    wait_routed(&routed);
}

/// A SIGHUP that moves a frontend to another port and its map to another `map_dir` reloads: the routes serve on
/// the new port, the old one closes, and a later routing change goes to the new map at run time.
#[test]
fn a_sighup_moving_a_frontend_and_its_map_keeps_its_routes() {
    let (web, moved) = (reserve_port(), reserve_port());
    let Some((zk, pm)) = start(|_| frontends(&[frontend("web", web, "", &[])])) else { return };
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    serve(&zk, "a", &a, hosts(&["a.test"]));
    serve(&zk, "b", &b, hosts(&["b.test"]));
    wait_routes(web, &[("a.test", "/", "a"), ("b.test", "/", "b")]);
    let pids = one_haproxy(&pm);

    let map_dir = pm.dir().join("moved-maps");
    sighup(&pm, |yaml| {
        let yaml = yaml.replacen(&frontend("web", web, "", &[]), &frontend("web", moved, "", &[]), 1);
        yaml.replacen("  frontends:\n", &format!("  map_dir: {}\n  frontends:\n", map_dir.display()), 1)
    });
    wait_routes(moved, &[("a.test", "/", "a"), ("b.test", "/", "b")]);
    wait_until(SETTLE, "the old port closes", || refused(loopback(1, web)));
    let now = one_haproxy(&pm);
    assert_ne!(now, pids, "a moved frontend is a reload");

    zk.set("/service_config/a", &blob(&zk, "a", hosts(&["a.test", "a2.test"])));
    wait_routes(moved, &[("a2.test", "/", "a")]);
    wait_map(
        &pm,
        &map_dir.join("web.map"),
        &entries(&[("a.test/", "a"), ("a2.test/", "a"), ("b.test/", "b")]),
    );
    assert_eq!(pm.haproxy_pids(), now, "no reload for the route");
}

/// Issue 13 with a frontend: a hand-over (SIGUSR2) passes the frontend's listening socket itself to the next
/// proxymgr, which applies a route changed while none ran; requests through the frontend fail none throughout.
#[test]
fn a_hand_over_keeps_the_frontend_s_socket_and_the_next_proxymgr_applies_routes_changed_meanwhile() {
    let web = reserve_port();
    let Some((zk, mut pm)) = start(|_| frontends(&[frontend("web", web, "", &[])])) else { return };
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    serve(&zk, "a", &a, hosts(&["a.test", "old.test"]));
    serve(&zk, "b", &b, hosts(&["b.test"]));
    wait_routes(web, &[("a.test", "/", "a"), ("old.test", "/", "a"), ("b.test", "/", "b")]);
    let first = one_haproxy(&pm)[0];
    let sockets = support::listening_inodes(web);
    assert_eq!(sockets.len(), 1, "one listening socket on the frontend's port: {sockets:?}");

    let load = Load::start_with(2, 50_000, Duration::from_secs(60), move |n| {
        let (host, want) = [("a.test", "a"), ("b.test", "b")][n % 2];
        match http_get_host(web, host, "/") {
            Ok(answer) if answer.status == 200 && answer.body == want => Ok(()),
            Ok(answer) => Err(format!("Host {host}: {} {:?}", answer.status, answer.body)),
            Err(e) => Err(format!("Host {host}: {e}")),
        }
    });
    wait_until(SETTLE, "the load runs", || a.hits() > 100 && b.hits() > 100);
    pm.signal(Signal::SIGUSR2);
    let status = pm.wait_exit(SETTLE);
    assert_eq!(status.code(), Some(0), "a hand-over is a clean exit: {status:?}");
    pm.wait_log("handed over; exiting", SETTLE);
    zk.set("/service_config/a", &blob(&zk, "a", hosts(&["a.test", "new.test"])));
    let hits = a.hits();
    wait_until(SETTLE, "requests through the HAProxy left serving", || a.hits() > hits + 100);

    pm.start_again();
    wait_routes(
        web,
        &[("new.test", "/", "a"), ("old.test", "/", "HTTP 503"), ("a.test", "/", "a"), ("b.test", "/", "b")],
    );
    wait_until(SETTLE, "the HAProxy left serving to finish", || !support::pid_alive(first));
    wait_until(SETTLE, "exactly one HAProxy, the new proxymgr's", || {
        let all = pm.haproxy_pids_in_dir();
        all.len() == 1 && pm.haproxy_pids() == all
    });
    let hits = b.hits();
    wait_until(SETTLE, "requests through the new HAProxy", || b.hits() > hits + 100);
    load.finish().assert_none_failed("across a hand-over with a frontend");
    assert_eq!(support::listening_inodes(web), sockets, "the new HAProxy accepts from the very same socket");
    wait_map(
        &pm,
        &pm.dir().join("maps/web.map"),
        &entries(&[("a.test/", "a"), ("new.test/", "a"), ("b.test/", "b")]),
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Validation

/// A blob with a host name that is not one, a wildcard that is not `*.` and a label, or a path that does not
/// start with `/` is refused whole (no port, no route), with an error naming the service and the key; a
/// running service whose blob turns so keeps its last good spec; the rest serves on, with no reload. A join
/// with nothing to route and `mode tcp` in a joined service are refused too.
#[test]
fn bad_host_names_and_paths_are_refused_naming_the_service_and_the_key() {
    let web = reserve_port();
    let Some((zk, pm)) = start(|_| frontends(&[frontend("web", web, "", &[])])) else { return };
    let good = Backend::start("good");
    serve(&zk, "good", &good, hosts(&["good.x.test"]));
    wait_routes(web, &[("good.x.test", "/", "good")]);
    let pids = one_haproxy(&pm);

    let bad = Backend::start("bad");
    let (bad_host, bad_path, bad_wildcard) = (reserve_port(), reserve_port(), reserve_port());
    let join = |join: Value, port: u16| json!({"port": port, "frontends": {"web": join}});
    serve(&zk, "badhost", &bad, join(json!({"hosts": ["ok.x.test", "exa mple.com"]}), bad_host));
    serve(&zk, "badpath", &bad, join(json!({"hosts": ["ok2.x.test"], "paths": ["/v1/", "v2/"]}), bad_path));
    serve(&zk, "badwild", &bad, join(json!({"hosts": ["a*.x.test"]}), bad_wildcard));
    wait_log_line(&pm, &["badhost", "frontends.web.hosts[1]", "\"exa mple.com\"", "is not a host name"]);
    wait_log_line(&pm, &["badpath", "frontends.web.paths[1]", "\"v2/\""]);
    wait_log_line(&pm, &["badwild", "frontends.web.hosts[0]", "\"a*.x.test\""]);

    // good's blob turns bad: its last good spec stays.
    zk.set("/service_config/good", &blob(&zk, "good", hosts(&["good.x.test", "bad..x.test"])));
    wait_log_line(&pm, &["good", "frontends.web.hosts[1]", "\"bad..x.test\"", "keeping its last good spec"]);

    wait_routes(
        web,
        &[("good.x.test", "/", "good"), ("ok.x.test", "/", "HTTP 503"), ("ok2.x.test", "/v1/", "HTTP 503")],
    );
    for port in [bad_host, bad_path, bad_wildcard] {
        assert!(refused(loopback(1, port)), "a refused blob got its port {port}");
    }
    let cfg = pm.haproxy_cfg();
    for name in ["badhost", "badpath", "badwild"] {
        assert!(!cfg.contains(name), "{name} in haproxy.cfg:\n{cfg}");
    }
    assert_eq!(pm.haproxy_pids(), pids, "refused blobs change nothing");
    assert_eq!(bad.hits(), 0);

    // A join with neither hosts, paths nor default; and a joined service in `mode tcp`.
    serve(&zk, "nothing", &bad, json!({"frontends": {"web": {}}}));
    wait_log_line(&pm, &["nothing", "frontends.web"]);
    let tcp = json!({"listen_options": ["mode tcp"], "frontends": {"web": {"hosts": ["tcp.x.test"]}}});
    serve(&zk, "tcpish", &bad, tcp);
    wait_log_line(&pm, &["tcpish", "mode tcp"]);
    // A service on the frontend's own port.
    serve(&zk, "clash", &bad, json!({"port": web, "listen_options": ["mode http"]}));
    wait_log_line(&pm, &["clash", &format!("127.0.0.1:{web}"), "frontend web"]);
    wait_routes(
        web,
        &[("good.x.test", "/", "good"), ("tcp.x.test", "/", "HTTP 503"), ("clash.x.test", "/", "HTTP 503")],
    );
    assert_eq!(bad.hits(), 0);
}

/// A join naming a frontend proxymgr.yml does not have is left out with an error naming the service and the
/// key; its other join and its own port serve. Once a SIGHUP adds that frontend, the join routes there too.
#[test]
fn a_join_to_a_frontend_proxymgr_yml_lacks_is_left_out_and_the_service_still_served() {
    let (web, nope) = (reserve_port(), reserve_port());
    let Some((zk, pm)) = start(|_| frontends(&[frontend("web", web, "", &[])])) else { return };
    let lone = Backend::start("lone");
    let port = reserve_port();
    let joins = json!({"port": port, "frontends": {
        "web": {"hosts": ["lone.x.test"]},
        "nope": {"hosts": ["lone.nope.test"]},
    }});
    serve(&zk, "lone", &lone, joins);
    wait_log_line(&pm, &["lone", "frontends.nope", "no frontend \"nope\""]);
    wait_answers(port, &["lone"]);
    wait_routes(web, &[("lone.x.test", "/", "lone"), ("lone.nope.test", "/", "HTTP 503")]);
    assert!(refused(loopback(1, nope)), "nothing listens for a frontend proxymgr.yml does not have");
    wait_route_states(
        &pm,
        &[
            ("lone", "nope", "lone.nope.test/", r#""no_frontend""#),
            ("lone", "web", "lone.x.test/", r#""routed""#),
        ],
    );

    sighup(&pm, |yaml| {
        let frontend_web = frontend("web", web, "", &[]);
        yaml.replacen(&frontend_web, &format!("{frontend_web}{}", frontend("nope", nope, "", &[])), 1)
    });
    wait_routes(nope, &[("lone.nope.test", "/", "lone"), ("lone.x.test", "/", "HTTP 503")]);
    wait_routes(web, &[("lone.x.test", "/", "lone")]);
    wait_answers(port, &["lone"]);

    // A SIGHUP that takes a frontend away closes its port, and the join to it is left out again.
    let since = pm.log().len();
    sighup(&pm, |yaml| yaml.replacen(&frontend("web", web, "", &[]), "", 1));
    wait_until(SETTLE, "web's port closes", || refused(loopback(1, web)));
    wait_until(SETTLE, "the join to web left out, logged", || {
        pm.log()[since..].lines().any(|line| line.contains("lone") && line.contains("no frontend \"web\""))
    });
    wait_routes(nope, &[("lone.nope.test", "/", "lone")]);
    wait_answers(port, &["lone"]);
    assert!(!pm.haproxy_cfg().contains("frontend web"), "{}", pm.haproxy_cfg());
}

/// Two services claiming one host and path: the one that had it keeps it (zulu, though bravo sorts first); at a
/// tie (both there when proxymgr starts) the first by name (alpha, though zeta was written first). The other's
/// route alone is left out, with an error naming both.
#[test]
fn a_route_two_services_claim_stays_with_the_one_that_had_it_and_the_log_names_both() {
    let web = reserve_port();
    let (zeta, alpha) = (Backend::start("zeta"), Backend::start("alpha"));
    let tie = |zk: &Zk| {
        serve(zk, "zeta", &zeta, hosts(&["tie.x.test"]));
        serve(zk, "alpha", &alpha, hosts(&["tie.x.test", "alpha.x.test"]));
    };
    let Some((zk, pm)) = start_with(tie, |_| frontends(&[frontend("web", web, "", &[])]), "") else { return };
    wait_routes(web, &[("tie.x.test", "/", "alpha"), ("alpha.x.test", "/", "alpha")]);
    wait_log_line(&pm, &["service zeta", "tie.x.test/", "already routed to service alpha"]);

    let (zulu, bravo) = (Backend::start("zulu"), Backend::start("bravo"));
    serve(&zk, "zulu", &zulu, hosts(&["same.x.test"]));
    wait_routes(web, &[("same.x.test", "/", "zulu")]);
    let pids = one_haproxy(&pm);
    serve(&zk, "bravo", &bravo, json!({"frontends": {"web": {"hosts": ["bravo.x.test", "same.x.test"]}}}));
    wait_log_line(
        &pm,
        &["service bravo", "frontends.web.hosts[1]", "same.x.test/", "already routed to service zulu"],
    );
    wait_routes(
        web,
        &[("bravo.x.test", "/", "bravo"), ("same.x.test", "/", "zulu"), ("tie.x.test", "/", "alpha")],
    );
    // bravo is a new backend (a reload); what it could not claim is not in the map.
    let now = pm.haproxy_pids();
    assert!(now.iter().any(|pid| !pids.contains(pid)), "{now:?}");
    let want = entries(&[
        ("tie.x.test/", "alpha"),
        ("alpha.x.test/", "alpha"),
        ("same.x.test/", "zulu"),
        ("bravo.x.test/", "bravo"),
    ]);
    wait_map(&pm, &pm.dir().join("maps/web.map"), &want);
    // A route left out is a warning of `proxymgr status` (once bravo's server shows in rotation: exit code 1).
    let mut last = String::new();
    let warned = poll_until(|| {
        let (code, text) = pm.status_command();
        let first = text.lines().next().unwrap_or_default().to_string();
        last = text;
        code == 1
            && first.starts_with("PROXYMGR WARNING")
            && first.contains("zeta: 1 route not routed")
            && first.contains("bravo: 1 route not routed")
    });
    assert!(warned, "proxymgr status does not warn of the routes left out; the last:\n{last}");
    wait_route_states(
        &pm,
        &[
            ("zeta", "web", "tie.x.test/", r#"{"taken":{"by":"alpha"}}"#),
            ("alpha", "web", "tie.x.test/", r#""routed""#),
            ("bravo", "web", "same.x.test/", r#"{"taken":{"by":"zulu"}}"#),
            ("bravo", "web", "bravo.x.test/", r#""routed""#),
        ],
    );
}

/// A contested route stays with the service that had it when proxymgr is restarted: through a hand-over
/// (SIGUSR2, what a restart or an upgrade sends) and after a SIGKILL, the HAProxy serving all along; a restart
/// must not move a host to the service first by name.
#[test]
fn a_restart_leaves_a_contested_route_with_the_service_that_had_it() {
    let web = reserve_port();
    let Some((zk, mut pm)) = start(|_| frontends(&[frontend("web", web, "", &[])])) else { return };
    let (zulu, bravo) = (Backend::start("zulu"), Backend::start("bravo"));
    serve(&zk, "zulu", &zulu, hosts(&["same.x.test"]));
    wait_routes(web, &[("same.x.test", "/", "zulu")]);
    serve(&zk, "bravo", &bravo, hosts(&["same.x.test", "bravo.x.test"]));
    wait_routes(web, &[("bravo.x.test", "/", "bravo"), ("same.x.test", "/", "zulu")]);
    wait_log_line(&pm, &["service bravo", "already routed to service zulu"]);

    for how in ["a hand-over", "a SIGKILL"] {
        let before = one_haproxy(&pm)[0];
        if how == "a hand-over" {
            pm.signal(Signal::SIGUSR2);
            pm.wait_exit(SETTLE);
        } else {
            pm.kill9();
        }
        pm.start_again();
        wait_until(SETTLE, "the HAProxy left serving to finish", || !support::pid_alive(before));
        one_haproxy(&pm);
        support::hold(
            Duration::from_secs(1),
            &format!("same.x.test with zulu after {how}"),
            || match answer(web, "same.x.test", "/").as_str() {
                "zulu" => Ok(()),
                other => Err(format!("answered by {other}")),
            },
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The rest of issue 16

/// `extra_sections` are rendered as written (a stats page that answers on its port), and no service takes the
/// name of one or of a frontend; a SIGHUP that adds one HAProxy rejects is refused with HAProxy's reason (the
/// log, `haproxy.cfg.rejected`, `/status`), and the HAProxy serving goes on with the last good config (same pid,
/// routes and stats answering); a good change then goes through with a reload.
#[test]
fn extra_sections_are_rendered_as_written_and_one_haproxy_rejects_keeps_the_last_good_config() {
    let (web, stats, broken) = (reserve_port(), reserve_port(), reserve_port());
    let extra = format!(
        "  extra_sections:\n    \"listen stats\":\n      - bind 127.0.0.1:{stats}\n      - mode http\n      - stats enable\n      - stats uri /\n"
    );
    let Some((zk, pm)) = start(|_| format!("{}{extra}", frontends(&[frontend("web", web, "", &[])]))) else {
        return;
    };
    let www = Backend::start("www");
    serve(&zk, "www", &www, hosts(&["www.x.test"]));
    wait_routes(web, &[("www.x.test", "/", "www")]);
    let stats_page = |path: &str| fetch(loopback(1, stats), path);
    wait_until(SETTLE, "the stats page answers", || {
        stats_page("/").is_some_and(|(code, body)| code == 200 && body.contains("Statistics Report"))
    });
    let cfg = pm.haproxy_cfg();
    let lines: Vec<&str> = cfg.lines().map(str::trim).collect();
    let at = lines.iter().position(|line| *line == "listen stats").unwrap_or_else(|| panic!("{cfg}"));
    assert_eq!(
        lines[at + 1..at + 5],
        [format!("bind 127.0.0.1:{stats}").as_str(), "mode http", "stats enable", "stats uri /"],
        "{cfg}"
    );
    // A service may not take an extra section's name (nor a frontend's).
    let other = Backend::start("other");
    serve(&zk, "stats", &other, hosts(&["stats.x.test"]));
    serve(&zk, "web", &other, hosts(&["web.x.test"]));
    wait_log_line(&pm, &["service stats", "proxymgr.yml", "not served"]);
    wait_log_line(&pm, &["service web", "proxymgr.yml", "not served"]);
    wait_routes(
        web,
        &[("www.x.test", "/", "www"), ("stats.x.test", "/", "HTTP 503"), ("web.x.test", "/", "HTTP 503")],
    );
    assert_eq!(other.hits(), 0);

    let pids = one_haproxy(&pm);
    let good = pm.haproxy_cfg();

    sighup(&pm, |yaml| {
        let section =
            format!("    \"listen broken\":\n      - bind 127.0.0.1:{broken}\n      - no-such-keyword on\n");
        yaml.replacen("  extra_sections:\n", &format!("  extra_sections:\n{section}"), 1)
    });
    pm.wait_log("HAProxy rejected the new config", SETTLE);
    let status = pm.wait_status("the rejected config", SETTLE, |s| !s["rejected"].is_null());
    assert!(
        status["rejected"]["error"].as_str().unwrap_or_default().contains("no-such-keyword"),
        "{status:#}"
    );
    let rejected =
        std::fs::read_to_string(pm.dir().join("haproxy.cfg.rejected")).expect("the rejected file is kept");
    assert!(rejected.contains("no-such-keyword on"), "{rejected}");
    assert!(pm.log().lines().any(|line| line.contains("no-such-keyword")), "{}", pm.log());
    support::hold(Duration::from_secs(1), "the last good config serving", || {
        if pm.haproxy_pids() != pids {
            return Err(format!("pids {:?}, before {pids:?}", pm.haproxy_pids()));
        }
        match (answer(web, "www.x.test", "/"), stats_page("/")) {
            (route, Some((200, _))) if route == "www" => {}
            (route, page) => return Err(format!("www.x.test: {route}; stats: {page:?}")),
        }
        if !refused(loopback(1, broken)) {
            return Err(format!("the rejected section's port {broken} listens"));
        }
        (pm.haproxy_cfg() == good).then_some(()).ok_or_else(|| "haproxy.cfg changed".to_string())
    });

    // A good change to an extra section is a reload.
    sighup(&pm, |yaml| {
        let broken_section =
            format!("    \"listen broken\":\n      - bind 127.0.0.1:{broken}\n      - no-such-keyword on\n");
        yaml.replacen(&broken_section, "", 1).replacen(
            "      - stats uri /\n",
            "      - stats uri /haproxy\n",
            1,
        )
    });
    // (`stats uri /` served every path: only `/` leaving the stats page tells the new config serves.)
    wait_until(SETTLE, "a new HAProxy serves alone", || {
        let now = pm.haproxy_pids();
        now.len() == 1 && now != pids
    });
    wait_until(SETTLE, "the stats page moves", || {
        let moved = stats_page("/").is_some_and(|(_, body)| !body.contains("Statistics Report"));
        moved
            && stats_page("/haproxy")
                .is_some_and(|(code, body)| code == 200 && body.contains("Statistics Report"))
    });
    assert!(pm.haproxy_cfg().contains("stats uri /haproxy"), "{}", pm.haproxy_cfg());
    wait_routes(web, &[("www.x.test", "/", "www")]);
}

/// A service's dedicated port on its own `bind_address` (127.0.0.2, not proxymgr's 127.0.0.1), moved to another
/// at run time, and one with `bind_options: accept-proxy`, which serves only a client that speaks the PROXY
/// protocol first; bind options HAProxy refuses leave that service out, with HAProxy's reason, and the rest
/// serving.
#[test]
fn a_dedicated_port_takes_its_own_bind_address_and_bind_options() {
    let Some((zk, pm)) = start(|_| String::new()) else { return };
    let probe = reserve_port();
    assert!(
        std::net::TcpListener::bind(loopback(2, probe)).is_ok(),
        "127.0.0.2 cannot be bound here (Linux routes all of 127/8 to lo)"
    );
    let (plain, proxied) = (Backend::start("plain"), Backend::start("proxied"));
    let (plain_port, proxied_port) = (reserve_port(), reserve_port());
    let on =
        |address: &str| json!({"port": plain_port, "bind_address": address, "listen_options": ["mode http"]});
    serve(&zk, "plain", &plain, on("127.0.0.2"));
    let accept_proxy =
        json!({"port": proxied_port, "bind_options": "accept-proxy", "listen_options": ["mode http"]});
    serve(&zk, "proxied", &proxied, accept_proxy);

    wait_until(SETTLE, "plain answers on 127.0.0.2", || {
        fetch(loopback(2, plain_port), "/") == Some((200, "plain".to_string()))
    });
    assert!(refused(loopback(1, plain_port)), "port {plain_port} is bound on 127.0.0.2 alone");
    let through_proxy = || {
        let header = format!("PROXY TCP4 192.0.2.7 127.0.0.1 40000 {proxied_port}\r\n");
        raw_request(loopback(1, proxied_port), &format!("{header}GET / HTTP/1.0\r\nHost: test\r\n\r\n"))
    };
    wait_until(SETTLE, "proxied answers a PROXY protocol client", || through_proxy().ends_with("proxied"));
    let bare = raw_request(loopback(1, proxied_port), "GET / HTTP/1.0\r\nHost: test\r\n\r\n");
    assert!(!bare.ends_with("proxied"), "a client without the PROXY header is served: {bare:?}");

    // A new bind_address moves the port to it.
    zk.set("/service_config/plain", &blob(&zk, "plain", on("127.0.0.3")));
    wait_until(SETTLE, "plain answers on 127.0.0.3", || {
        fetch(loopback(3, plain_port), "/") == Some((200, "plain".to_string()))
    });
    wait_until(SETTLE, "127.0.0.2 lets plain's port go", || refused(loopback(2, plain_port)));

    // bind_options HAProxy refuses: that service is left out with HAProxy's reason, the others serve on.
    let pids = one_haproxy(&pm);
    let broken_port = reserve_port();
    let broken =
        json!({"port": broken_port, "bind_options": "no-such-bind-option", "listen_options": ["mode http"]});
    serve(&zk, "broken", &plain, broken);
    wait_log_line(&pm, &["service broken", "HAProxy rejects", "no-such-bind-option"]);
    support::hold(Duration::from_secs(1), "the others serving", || {
        match (fetch(loopback(3, plain_port), "/"), through_proxy()) {
            (Some((200, _)), proxied) if proxied.ends_with("proxied") => Ok(()),
            (plain, proxied) => Err(format!("plain: {plain:?}; proxied: {proxied:?}")),
        }
    });
    assert_eq!(pm.haproxy_pids(), pids, "the HAProxy serving stays");
}

/// Sends `request` as it is to `address` and reads until the server closes (2 s timeouts): what came back, or
/// `error: ...`.
fn raw_request(address: SocketAddr, request: &str) -> String {
    use std::io::{Read, Write};
    let result = (|| -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(request.as_bytes())?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        Ok(String::from_utf8_lossy(&response).into_owned())
    })();
    result.unwrap_or_else(|e| format!("error: {e}"))
}

/// A service's dedicated port with TLS by its `bind_options` (ALPN offering HTTP/2), on its own `bind_address`;
/// a certificate that is not there leaves that service out with HAProxy's reason, naming the file.
#[test]
fn a_dedicated_port_serves_tls_by_its_bind_options() {
    if !tls_available() {
        return;
    }
    let Some((zk, pm)) = start(|_| String::new()) else { return };
    let cert = tls::self_signed(pm.dir(), "secure", &["secure.edge.test"]);
    let secure = Backend::start("secure");
    let port = reserve_port();
    let bind_options = format!("ssl crt {} alpn h2,http/1.1", cert.pem.display());
    let keys = json!({"port": port, "bind_address": "127.0.0.2", "bind_options": bind_options,
                      "listen_options": ["mode http"]});
    serve(&zk, "secure", &secure, keys);

    let at_2 = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    wait_until(SETTLE, "secure answers over TLS on 127.0.0.2", || {
        https("secure.edge.test", at_2, port, "/", &cert.cert, Http::Two) == "secure HTTP/2"
    });
    assert_eq!(https("secure.edge.test", at_2, port, "/", &cert.cert, Http::OneOne), "secure HTTP/1.1");
    assert!(refused(loopback(1, port)), "port {port} is bound on 127.0.0.2 alone");
    assert!(!matches!(fetch(loopback(2, port), "/"), Some((200, _))), "no plain HTTP on the TLS port");

    let pids = one_haproxy(&pm);
    let missing = pm.dir().join("missing.pem");
    let broken = json!({"port": reserve_port(), "bind_options": format!("ssl crt {}", missing.display()),
                        "listen_options": ["mode http"]});
    serve(&zk, "broken", &secure, broken);
    wait_log_line(&pm, &["service broken", "HAProxy rejects", &missing.display().to_string()]);
    support::hold(Duration::from_secs(1), "secure serving", || {
        match https("secure.edge.test", at_2, port, "/", &cert.cert, Http::Two).as_str() {
            "secure HTTP/2" => Ok(()),
            other => Err(other.to_string()),
        }
    });
    assert_eq!(pm.haproxy_pids(), pids, "the HAProxy serving stays");
}

/// A new service whose bind line HAProxy refuses (a certificate that is not there) is left out; its port must
/// not be left listening with nothing to serve it, where connections would queue unanswered until the next
/// reload. (So it is for a new service's refused `listen_options` as well: listeners close only after a start
/// that succeeds.)
#[test]
fn a_new_service_haproxy_refuses_leaves_no_port_listening_unserved() {
    let Some((zk, pm)) = start(|_| String::new()) else { return };
    let good = Backend::start("good");
    let good_port = reserve_port();
    serve(&zk, "good", &good, json!({"port": good_port, "listen_options": ["mode http"]}));
    wait_answers(good_port, &["good"]);
    let pids = one_haproxy(&pm);

    let port = reserve_port();
    let missing = pm.dir().join("missing.pem");
    let broken = json!({"port": port, "bind_options": format!("ssl crt {}", missing.display())});
    serve(&zk, "broken", &good, broken);
    wait_log_line(&pm, &["service broken", "HAProxy rejects"]);
    wait_until(SETTLE, "the refused service's port to close", || refused(loopback(1, port)));
    wait_answers(good_port, &["good"]);
    assert_eq!(pm.haproxy_pids(), pids);
}

/// `default_servers` serve while the registry reports no server (its path empty, or not there at all); once it
/// reports one, it alone serves; when it reports none again, the defaults are back (Synapse's semantics), and
/// new ones in the blob take their place at once. A default server that is not one refuses the blob, naming the
/// key.
#[test]
fn default_servers_serve_while_the_registry_has_none_and_step_aside_for_a_real_one() {
    // No removal hold: the real server's removal is the registry's word at once.
    let Some((zk, pm)) = start_with(|_| {}, |_| String::new(), "removal_hold:\n  hold_time: 0\n") else {
        return;
    };
    let (default, real) = (Backend::start("default"), Backend::start("real"));
    let port = reserve_port();
    zk.create("/services/web", "");
    let defaults = json!([{"host": "127.0.0.1", "port": default.port()}]);
    let keys = json!({"port": port, "listen_options": ["mode http"], "default_servers": defaults.clone()});
    zk.create("/service_config/web", &blob(&zk, "web", keys));
    wait_answers(port, &["default"]);

    add_server(&zk, "web", &real);
    wait_answers(port, &["real"]);
    let hits = default.hits();
    support::hold(Duration::from_secs(1), "the real server alone serving", || match http_get(port) {
        Ok(name) if name == "real" => Ok(()),
        other => Err(format!("{other:?}")),
    });
    assert_eq!(default.hits(), hits, "the default server is not used once a real one is there");

    zk.delete("/services/web/real");
    wait_answers(port, &["default"]);

    // New default servers in the blob serve at once (the registry, still empty, reports nothing new).
    let other = Backend::start("other default");
    let others = json!([{"host": "127.0.0.1", "port": other.port()}]);
    let keys = json!({"port": port, "listen_options": ["mode http"], "default_servers": others});
    zk.set("/service_config/web", &blob(&zk, "web", keys));
    wait_answers(port, &["other default"]);

    // A registry path that does not exist reports no server either.
    let ghost = reserve_port();
    let keys = json!({"port": ghost, "listen_options": ["mode http"], "default_servers": defaults});
    zk.create("/service_config/ghost", &blob(&zk, "ghost", keys));
    wait_answers(ghost, &["default"]);

    // A default server that is not one refuses the blob, naming the key.
    for (service, server, reason) in [
        ("badhost", json!({"host": "exa mple", "port": 80}), "\"exa mple\""),
        ("badport", json!({"host": "127.0.0.1", "port": 0}), "port 0"),
        ("noport", json!({"host": "127.0.0.1"}), "`port`"),
    ] {
        let port = reserve_port();
        let keys = json!({"port": port, "default_servers": [{"host": "127.0.0.1", "port": 80}, server]});
        zk.create(&format!("/service_config/{service}"), &blob(&zk, service, keys));
        wait_log_line(&pm, &[service, "default_servers[1]", reason]);
        assert!(refused(loopback(1, port)), "{service} is not served");
    }
    wait_answers(port, &["other default"]);
}

// ---------------------------------------------------------------------------------------------------------------
// --check

/// `proxymgr --check -c <file>` on the standard test config with `haproxy` lines added: its exit code and
/// stdout and stderr together.
fn check(haproxy: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("proxymgr.yml");
    let yaml = Proxymgr::config_yaml(dir.path(), "127.0.0.1:1");
    let anchor = "  bind_address: 127.0.0.1\n";
    std::fs::write(&path, yaml.replacen(anchor, &format!("{anchor}{haproxy}"), 1))
        .expect("write proxymgr.yml");
    let out = support::run_proxymgr(&["--check", "-c", &path.display().to_string()]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// `--check` takes frontends and extra sections HAProxy accepts, and refuses, naming the key, what proxymgr
/// can tell is wrong (a line that would be two, a bind that is no address:port, a name HAProxy does not take,
/// two frontends on one address, a section header that starts no section), and with HAProxy's reason what
/// HAProxy rejects.
#[test]
fn check_takes_good_frontends_and_extra_sections_and_refuses_bad_ones_by_key() {
    if !support::require("haproxy") {
        return;
    }
    let (web, api, stats) = (reserve_port(), reserve_port(), reserve_port());
    let good = format!(
        "{}  extra_sections:\n    \"listen stats\":\n      - bind 127.0.0.1:{stats}\n      - stats enable\n",
        frontends(&[frontend("web", web, "", &["option forwardfor"]), frontend("api", api, "", &[])])
    );
    let (code, text) = check(&good);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("frontends and extra sections"), "{text}");

    let cases = [
        (
            frontends(&[frontend("web", web, "", &["option forwardfor\nlisten x"])]),
            "haproxy.frontends.web.options[0]",
        ),
        (format!("  frontends:\n    web:\n      bind: {web}\n"), "haproxy.frontends.web.bind"),
        (frontends(&[frontend("we b", web, "", &[])]), "name \"we b\""),
        (
            frontends(&[frontend("web", web, "", &[]), frontend("api", web, "", &[])]),
            "is taken by haproxy.frontends",
        ),
        (
            "  extra_sections:\n    \"bogus stats\":\n      - stats enable\n".to_string(),
            "haproxy.extra_sections.\"bogus stats\"",
        ),
        (
            "  extra_sections:\n    \"listen stats\":\n      - \"stats enable\\nlisten y\"\n".to_string(),
            "haproxy.extra_sections.\"listen stats\"[0]",
        ),
        // What HAProxy rejects: its reason.
        (frontends(&[frontend("web", web, "", &["no-such-keyword"])]), "unknown keyword 'no-such-keyword'"),
        (
            "  extra_sections:\n    \"listen broken\":\n      - no-such-keyword on\n".to_string(),
            "unknown keyword 'no-such-keyword'",
        ),
    ];
    let missing_crt =
        (frontends(&[frontend("web", web, "ssl crt /nonexistent/edge.pem", &[])]), "/nonexistent/edge.pem");
    // Without OpenSSL, HAProxy refuses `ssl` itself.
    let cases = cases.into_iter().chain(tls::haproxy_has_openssl().then_some(missing_crt));
    for (haproxy, expected) in cases {
        let (code, text) = check(&haproxy);
        assert_eq!(code, Some(3), "{haproxy}\n{text}");
        assert!(text.contains(expected), "expected {expected:?} for\n{haproxy}in:\n{text}");
    }
}

/// What HAProxy rejects in a frontend or an extra section is named as theirs, not as `global`'s or
/// `defaults`'.
#[test]
fn check_names_the_frontend_or_extra_section_haproxy_rejects() {
    if !support::require("haproxy") {
        return;
    }
    let web = reserve_port();
    let cases = [
        (frontends(&[frontend("web", web, "", &["no-such-keyword"])]), "haproxy.frontends"),
        (
            "  extra_sections:\n    \"listen broken\":\n      - no-such-keyword on\n".to_string(),
            "haproxy.extra_sections",
        ),
    ];
    for (haproxy, expected) in cases {
        let (code, text) = check(&haproxy);
        assert_eq!(code, Some(3), "{haproxy}\n{text}");
        assert!(
            text.contains(expected) && !text.contains("haproxy.global/haproxy.defaults"),
            "{expected:?}:\n{text}"
        );
    }
}
