//! Hitless updates (issue 3): server changes go through HAProxy's runtime API with no reload, reloads are
//! checked and coalesced, and reloads under load fail no request; a storm of reloads while clients hold
//! connections through every HAProxy stays bounded (issue 12 §2), and the cap on generations cuts the oldest.
//! Each test asserts HAProxy's pids (unchanged where no reload is promised), the server's state in `show
//! servers state`, and which backends answer.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::load::{Load, LoadReport};
use crate::support::{self, http_get, reserve_port, wait_answers, wait_until, Backend, Proxymgr, Zk};

const SETTLE: Duration = Duration::from_secs(20);

/// The standard test config with `extra` lines added to its `haproxy` section.
fn start_with(extra: &str) -> Option<(Zk, Proxymgr)> {
    support::zk_and_proxymgr(extra)
}

fn start() -> Option<(Zk, Proxymgr)> {
    start_with("")
}

pub(crate) fn blob(zk: &Zk, service: &str, port: u16, listen_options: &[&str]) -> String {
    let options: Vec<String> = listen_options.iter().map(|o| format!("{o:?}")).collect();
    format!(
        r#"{{"type":"zookeeper","server":"{}","path":"/services/{service}","port":{port},
            "listen_options":[{}],"server_options":["check inter 500"]}}"#,
        zk.connect_string(),
        options.join(",")
    )
}

fn add_server(zk: &Zk, service: &str, backend: &Backend) {
    zk.create(&format!("/services/{service}/{}", backend.name()), &server_json(backend.port()));
}

fn server_json(port: u16) -> String {
    format!(r#"{{"address":"127.0.0.1","port":{port}}}"#)
}

fn server_name(backend: &Backend) -> String {
    format!("127.0.0.1:{}", backend.port())
}

/// Each server of `service` in HAProxy: name -> srv_admin_state (0 ready, 1 forced maintenance).
fn admin_states(pm: &Proxymgr, service: &str) -> Vec<(String, String)> {
    pm.servers_state(service).into_iter().map(|s| (s.name, s.admin_state.to_string())).collect()
}

fn admin_state(pm: &Proxymgr, service: &str, server: &str) -> Option<String> {
    admin_states(pm, service).into_iter().find(|(name, _)| name == server).map(|(_, state)| state)
}

/// A web service with `backends`, serving; returns its port and the HAProxy pids.
fn serving_web(zk: &Zk, pm: &Proxymgr, backends: &[&Backend], listen_options: &[&str]) -> (u16, Vec<u32>) {
    let port = reserve_port();
    for backend in backends {
        add_server(zk, "web", backend);
    }
    zk.create("/service_config/web", &blob(zk, "web", port, listen_options));
    wait_answers(port, &backends.iter().map(|b| b.name()).collect::<Vec<_>>());
    wait_until(SETTLE, "one HAProxy serves", || pm.haproxy_pids().len() == 1);
    (port, pm.haproxy_pids())
}

/// Also one of matrix.rs's scenarios, run on every HAProxy version.
#[test]
pub(crate) fn a_server_that_leaves_goes_into_maintenance_without_a_reload() {
    let Some((zk, pm)) = start() else { return };
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (port, pids) = serving_web(&zk, &pm, &[&a, &b], &["mode http"]);

    zk.delete("/services/web/b");
    wait_until(SETTLE, "b in maintenance", || {
        admin_state(&pm, "web", &server_name(&b)).as_deref() == Some("1")
    });
    wait_answers(port, &["a"]);
    assert_eq!(pm.haproxy_pids(), pids, "no reload");
    let named = pm.haproxy_name("web", &server_name(&b)).expect("HAProxy has b");
    pm.wait_log(&format!("haproxy: set server web/{named} state maint"), SETTLE);
    // haproxy.cfg follows the desired state, so a later reload loses nothing.
    wait_until(SETTLE, "haproxy.cfg drops b", || !pm.haproxy_cfg().contains(&server_name(&b)));

    // It comes back: ready again, still no reload.
    add_server(&zk, "web", &b);
    wait_until(SETTLE, "b ready", || admin_state(&pm, "web", &server_name(&b)).as_deref() == Some("0"));
    wait_answers(port, &["a", "b"]);
    assert_eq!(pm.haproxy_pids(), pids, "no reload");
    wait_until(SETTLE, "haproxy.cfg has b again", || pm.haproxy_cfg().contains(&server_name(&b)));
}

#[test]
fn a_brand_new_server_is_added_at_run_time() {
    let Some((_zk, pm, [_a, c])) = a_new_server_is_served_without_a_reload() else { return };
    let log = pm.log();
    assert!(
        log.contains(&format!(
            "haproxy: add server web/{0} 127.0.0.1:{1} check inter 500",
            server_name(&c),
            c.port()
        )),
        "{log}"
    );
    assert!(log.contains(&format!("haproxy: enable health web/{}", server_name(&c))), "{log}");
}

/// A web service serving from `a` gets a new server, `c`: it serves, ready, without a reload, is health-checked
/// and reaches haproxy.cfg. Returns what serves it, or None when a tool is missing. Also one of matrix.rs's
/// scenarios, run on every HAProxy version: this asserts nothing of how the server came (`add server`, ...).
pub(crate) fn a_new_server_is_served_without_a_reload() -> Option<(Zk, Proxymgr, [Backend; 2])> {
    let (zk, pm) = start()?;
    let (a, c) = (Backend::start("a"), Backend::start("c"));
    let (port, pids) = serving_web(&zk, &pm, &[&a], &["mode http", "balance roundrobin", "option httpchk"]);

    add_server(&zk, "web", &c);
    wait_answers(port, &["a", "c"]);
    assert_eq!(admin_state(&pm, "web", &server_name(&c)).as_deref(), Some("0"));
    assert_eq!(pm.haproxy_pids(), pids, "no reload for a new server");
    wait_until(SETTLE, "the file has c", || pm.haproxy_cfg().contains(&server_name(&c)));
    // Health checks run on the dynamic server: the backend sees them.
    wait_until(SETTLE, "c is health-checked", || c.checks() > 0);
    Some((zk, pm, [a, c]))
}

#[test]
fn a_backend_that_refuses_dynamic_servers_falls_back_to_a_reload() {
    let Some((zk, pm)) = start() else { return };
    let (a, c) = (Backend::start("a"), Backend::start("c"));
    let (port, pids) = serving_web(&zk, &pm, &[&a], &["mode http", "balance static-rr"]);

    add_server(&zk, "web", &c);
    wait_answers(port, &["a", "c"]);
    assert_ne!(pm.haproxy_pids(), pids, "static-rr takes a reload");
    pm.wait_log("Backend must use a dynamic load balancing", SETTLE);
    // The refusal is remembered: the next new server reloads without asking again.
    let d = Backend::start("d");
    add_server(&zk, "web", &d);
    wait_answers(port, &["a", "c", "d"]);
    assert_eq!(pm.log().matches("Backend must use a dynamic load balancing").count(), 1, "{}", pm.log());
}

#[test]
fn listen_options_take_a_reload() {
    let Some((zk, pm)) = start() else { return };
    let a = Backend::start("a");
    let (port, pids) = serving_web(&zk, &pm, &[&a], &["mode http"]);
    zk.set("/service_config/web", &blob(&zk, "web", port, &["mode http", "timeout server 7s"]));
    wait_until(SETTLE, "a new HAProxy serves", || {
        let now = pm.haproxy_pids();
        !now.is_empty() && !now.contains(&pids[0])
    });
    assert!(pm.haproxy_cfg().contains("  timeout server 7s\n"));
    wait_answers(port, &["a"]);
}

/// Also one of matrix.rs's scenarios, run on every HAProxy version.
#[test]
pub(crate) fn a_config_haproxy_rejects_leaves_traffic_flowing_and_is_reported() {
    let Some((zk, pm)) = start() else { return };
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (port, pids) = serving_web(&zk, &pm, &[&a], &["mode http"]);
    let good = pm.haproxy_cfg();

    zk.set("/service_config/web", &blob(&zk, "web", port, &["mode http", "no-such-keyword on"]));
    pm.wait_log("HAProxy rejected the new config", SETTLE);
    let rejected = pm.dir().join("haproxy.cfg.rejected");
    let text = std::fs::read_to_string(&rejected).expect("the rejected file is kept");
    assert!(text.contains("no-such-keyword on"));
    assert!(
        pm.log().contains(&format!("{}:", rejected.display())),
        "the error names the file and line: {}",
        pm.log()
    );
    assert_eq!(pm.haproxy_cfg(), good, "the running config stays on disk");
    assert_eq!(pm.haproxy_pids(), pids, "the old process keeps serving");
    wait_answers(port, &["a"]);

    // Server changes still go through at run time meanwhile.
    add_server(&zk, "web", &b);
    wait_answers(port, &["a", "b"]);

    // The next good change goes through.
    zk.set("/service_config/web", &blob(&zk, "web", port, &["mode http", "timeout server 9s"]));
    wait_until(SETTLE, "the good change is installed", || pm.haproxy_cfg().contains("timeout server 9s"));
    wait_answers(port, &["a", "b"]);
    // A process that was not serving before serves now. (Read once: the old one may finish between two reads.)
    let now = pm.haproxy_pids();
    assert!(now.iter().any(|pid| !pids.contains(pid)), "it reloaded: {now:?}, before {pids:?}");
}

#[test]
fn a_new_service_haproxy_rejects_stays_out_checked_once_until_it_changes() {
    if !support::require("haproxy") || !support::require("zookeeper") {
        return;
    }
    let zk = Zk::start();
    let a = Backend::start("a");
    let port = reserve_port();
    add_server(&zk, "web", &a);
    zk.create("/service_config/web", &blob(&zk, "web", port, &["mode http", "no-such-keyword on"]));
    let pm = Proxymgr::start_with(|dir| Proxymgr::config_yaml(dir, &zk.connect_string()));
    pm.wait_log("HAProxy rejected the new config", SETTLE);
    // HAProxy named the line: web is left out, and HAProxy starts without it rather than not at all.
    pm.wait_log("service web: HAProxy rejects its options", SETTLE);
    wait_until(SETTLE, "HAProxy serves without web", || !pm.haproxy_pids().is_empty());
    // Every `haproxy -c` ends in a SIGCHLD, which wakes the reconciler: a check must not lead to the next. That no
    // second check comes for 2 s is the point, so the 2 s are watched throughout rather than slept through.
    let checks = || pm.log().matches("HAProxy rejected the new config").count();
    support::hold(Duration::from_secs(2), "one check of the rejected config", || match checks() {
        1 => Ok(()),
        n => Err(format!("{n} checks; the log:\n{}", pm.log())),
    });
    assert!(!pm.haproxy_cfg().contains("listen web"), "{}", pm.haproxy_cfg());

    zk.set("/service_config/web", &blob(&zk, "web", port, &["mode http"]));
    wait_answers(port, &["a"]);
}

#[test]
fn drift_is_repaired_from_show_servers_state() {
    let Some((zk, pm)) = start_with("  drift_check_interval: 0.3\n") else { return };
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (port, pids) = serving_web(&zk, &pm, &[&a, &b], &["mode http"]);

    // Someone puts b into maintenance by hand.
    let reply = pm.haproxy_command(&format!("set server web/{} state maint", server_name(&b))).unwrap();
    assert_eq!(reply.trim(), "");
    pm.wait_log(&format!("drift: service web server {} is in maintenance", server_name(&b)), SETTLE);
    wait_until(SETTLE, "b ready again", || admin_state(&pm, "web", &server_name(&b)).as_deref() == Some("0"));
    wait_answers(port, &["a", "b"]);
    assert_eq!(pm.haproxy_pids(), pids, "repaired without a reload");
}

#[test]
fn servers_long_gone_are_deleted_at_the_drift_check() {
    let Some((zk, pm)) = start_with("  drift_check_interval: 0.3\n") else { return };
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (port, pids) = serving_web(&zk, &pm, &[&a, &b], &["mode http"]);
    zk.delete("/services/web/b");
    wait_until(SETTLE, "b leaves HAProxy", || admin_state(&pm, "web", &server_name(&b)).is_none());
    assert_eq!(pm.haproxy_pids(), pids);
    wait_answers(port, &["a"]);
}

#[test]
fn reloads_are_coalesced() {
    let Some((zk, pm)) = start_with("  reload_window: 0.5\n") else { return };
    let a = Backend::start("a");
    let (port, _) = serving_web(&zk, &pm, &[&a], &["mode http"]);
    let before = pm.log().matches("] started").count();
    let ports: Vec<u16> = (0..5).map(|_| reserve_port()).collect();
    for (i, p) in ports.iter().enumerate() {
        add_server(&zk, &format!("s{i}"), &a);
        zk.create(&format!("/service_config/s{i}"), &blob(&zk, &format!("s{i}"), *p, &["mode http"]));
    }
    for p in &ports {
        wait_answers(*p, &["a"]);
    }
    wait_answers(port, &["a"]);
    let reloads = pm.log().matches("] started").count() - before;
    assert!(reloads <= 2, "five new services within the window took {reloads} reloads:\n{}", pm.log());
}

/// The clients `reloads_under_load` runs, and the reloads it makes.
pub(crate) const RELOAD_CLIENTS: usize = 2;
pub(crate) const RELOADS: usize = 22;

/// `RELOADS` reloads, one after the other, while `RELOAD_CLIENTS` clients send requests through a service (a
/// connection a request, or one kept alive): asserts that at least 20 took place and the clients got through,
/// and returns what they saw, or None when a tool is missing. Also one of matrix.rs's scenarios, run on every
/// HAProxy version, which judges the failures by version.
pub(crate) fn reloads_under_load(keep_alive: bool) -> Option<LoadReport> {
    let (zk, pm) = start_with("  reload_window: 0.01\n  reload_interval: 0.05\n")?;
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (port, _) = serving_web(&zk, &pm, &[&a, &b], &["mode http"]);
    let other = reserve_port();
    add_server(&zk, "other", &a);

    let load = Load::start(port, RELOAD_CLIENTS, keep_alive);
    let serves = |pm: &Proxymgr| pm.log().matches("] serves (").count();
    let start = serves(&pm);
    for i in 0..RELOADS {
        // Each step changes a listen option of another service: a reload every time.
        let options = ["mode http".to_string(), format!("timeout server {}s", 10 + i)];
        let options: Vec<&str> = options.iter().map(String::as_str).collect();
        zk.put("/service_config/other", &blob(&zk, "other", other, &options));
        wait_until(SETTLE, "the reload serves", || serves(&pm) > start + i);
    }
    let report = load.finish();
    let reloads = serves(&pm) - start;
    eprintln!(
        "{reloads} reloads under load, keep-alive {keep_alive}: {} requests ok, {} failed",
        report.ok, report.failed
    );
    assert!(reloads >= 20, "only {reloads} reloads");
    assert!(report.ok > 100, "the load loop barely ran: {report:?}");
    Some(report)
}

/// Also one of matrix.rs's scenarios, run on every HAProxy version.
#[test]
pub(crate) fn reloads_fail_no_request_with_connection_close_clients() {
    let Some(report) = reloads_under_load(false) else { return };
    report.assert_none_failed("across the reloads, connection-close clients");
}

#[test]
fn reloads_fail_no_request_with_keep_alive_clients() {
    let Some(report) = reloads_under_load(true) else { return };
    report.assert_none_failed("across the reloads, keep-alive clients");
}

/// A `mode tcp` service `hold` in front of `backend`, whose connections stay open as long as their clients
/// keep them (the backend waits for a request that never comes): every HAProxy that accepts one lives on after
/// a reload until it closes or `hard_stop_after` passes. Returns its port once it serves.
fn holding_service(zk: &Zk, backend: &Backend) -> u16 {
    let port = reserve_port();
    add_server(zk, "hold", backend);
    let options = ["mode tcp", "timeout client 5m", "timeout server 5m"];
    zk.create("/service_config/hold", &blob(zk, "hold", port, &options));
    wait_answers(port, &[backend.name()]);
    port
}

/// A connection through `hold`, held open, the `nth` the test holds; once the backend has that many, HAProxy
/// has connected through. (Not its count before plus one: a connection that just answered may still be in
/// that count, and health checks come and go.)
fn hold_connection(port: u16, backend: &Backend, nth: usize) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the hold service");
    wait_until(SETTLE, "the held connection reaches the backend", || backend.open_connections() >= nth);
    stream
}

/// Whether the peer closed `stream` (HAProxy stopped hard cuts it) rather than keeping it open and silent.
fn closed(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(Duration::from_millis(50))).expect("set a read timeout");
    match stream.read(&mut [0; 64]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

/// Issue 12 §2 and DESIGN §6: new services 0.3 s apart while clients hold connections through every HAProxy
/// (each would otherwise stay alive until `hard_stop_after`, 60 s) end with at most 4 HAProxy processes alive
/// at once, and each new service serving within 10 s of its creation.
#[test]
fn a_storm_of_new_services_while_connections_are_held_stays_bounded() {
    let Some((zk, pm)) = start() else { return };
    let a = Backend::start("a");
    let hold = holding_service(&zk, &a);
    wait_until(SETTLE, "one HAProxy serves", || pm.haproxy_pids().len() == 1);
    let mut held = vec![hold_connection(hold, &a, 1)];
    let before = pm.log().matches("] started").count();
    let (mut most, mut created, mut waited) = (1, Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    // Every 0.1 s: a new held connection, the processes counted, the new services that serve by now; every
    // 0.3 s a new service, 8 in all. The 0.1 s are pacing, not a wait for an event.
    for tick in 0.. {
        if tick % 3 == 0 && tick / 3 < 8 {
            let (name, port) = (format!("storm{}", tick / 3), reserve_port());
            add_server(&zk, &name, &a);
            zk.create(&format!("/service_config/{name}"), &blob(&zk, &name, port, &["mode http"]));
            created.push((port, Instant::now()));
        }
        held.push(TcpStream::connect(("127.0.0.1", hold)).expect("connect to the hold service"));
        most = most.max(pm.haproxy_pids().len());
        created.retain(|&(port, at)| {
            let serving = http_get(port).is_ok();
            if serving {
                waited.push(at.elapsed());
            }
            !serving
        });
        if waited.len() == 8 {
            break;
        }
        assert!(Instant::now() < deadline, "8 new services do not serve within 30 s:\n{}", pm.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let reloads = pm.log().matches("] started").count() - before;
    eprintln!("8 new services: {reloads} reloads, at most {most} HAProxy processes, waited {waited:?}");
    assert!(most <= 4, "{most} HAProxy processes alive at once:\n{}", pm.log());
    assert!(reloads <= 3, "{reloads} reloads for 8 new services:\n{}", pm.log());
    // Each figure is up to a poll round (0.1 s and a few connections) late.
    assert!(waited.iter().all(|w| *w < Duration::from_secs(10)), "{waited:?}");
    assert!(!held.iter_mut().any(closed), "no cap: no held connection is cut");
}

/// `max_generations: 2`: the reload that would make three stops the oldest generation at once, which cuts
/// the connection it still served and says so; the connection held through the next one stays.
#[test]
fn the_cap_stops_the_oldest_generation_and_cuts_its_connections() {
    let Some((zk, pm)) = start_with("  max_generations: 2\n") else { return };
    let a = Backend::start("a");
    let hold = holding_service(&zk, &a);
    wait_until(SETTLE, "one HAProxy serves", || pm.haproxy_pids().len() == 1);
    let first = pm.haproxy_pids()[0];
    let mut oldest = hold_connection(hold, &a, 1);

    let port = reserve_port();
    add_server(&zk, "one", &a);
    zk.create("/service_config/one", &blob(&zk, "one", port, &["mode http"]));
    wait_answers(port, &["a"]);
    wait_until(SETTLE, "two generations", || pm.haproxy_pids().len() == 2);
    // The new process serves: a connection made now goes through it (the old one no longer accepts).
    let mut later = hold_connection(hold, &a, 2);

    let port = reserve_port();
    add_server(&zk, "two", &a);
    zk.create("/service_config/two", &blob(&zk, "two", port, &["mode http"]));
    pm.wait_log(&format!("haproxy.max_generations is 2: stopping haproxy[{first}] ("), SETTLE);
    wait_answers(port, &["a"]);
    wait_until(SETTLE, "the oldest's connection is cut", || closed(&mut oldest));
    wait_until(SETTLE, "the oldest is gone", || !pm.haproxy_pids().contains(&first));
    assert!(pm.haproxy_pids().len() <= 2, "{:?}", pm.haproxy_pids());
    assert!(!closed(&mut later), "the connection through the next generation stays");
}
