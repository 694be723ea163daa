//! Issue 15: what proxymgr sees, shown four ways — `/status` (JSON), `/metrics` (parsed with a Prometheus
//! text-format parser), `proxymgr status` (a table and Nagios exit codes) and the page at `/` (loaded in
//! headless Chromium) — for a healthy service, a registry outage, a rejected config, a quarantined server and
//! a held removal, against real ZooKeeper and HAProxy.

use std::time::Duration;

use serde_json::Value;

use crate::hitless::blob;
use crate::support::{self, browser, reserve_port, wait_answers, wait_until, Backend, Proxymgr, Zk};

const SETTLE: Duration = Duration::from_secs(20);

/// A ZooKeeper with an empty `/service_config` and a proxymgr following it, with `extra` proxymgr.yml lines.
fn start(extra: &str) -> Option<(Zk, Proxymgr)> {
    if !support::require("haproxy") || !support::require("zookeeper") {
        return None;
    }
    let zk = Zk::start();
    zk.create("/service_config", "");
    let pm =
        Proxymgr::start_with(|dir| format!("{}{extra}", Proxymgr::config_yaml(dir, &zk.connect_string())));
    Some((zk, pm))
}

/// A Nerve registration of `backend` with `options` as its `haproxy_server_options`.
fn nerve(backend: &Backend, options: &str) -> String {
    format!(
        r#"{{"host":"127.0.0.1","port":{},"name":"x","haproxy_server_options":"{options}"}}"#,
        backend.port()
    )
}

/// `web` served by `backends` on a port of its own; returns the port.
fn serving_web(zk: &Zk, backends: &[&Backend]) -> u16 {
    let port = reserve_port();
    for backend in backends {
        zk.create(&format!("/services/web/{}", backend.name()), &nerve(backend, ""));
    }
    zk.create("/service_config/web", &blob(zk, "web", port, &["mode http"]));
    wait_answers(port, &backends.iter().map(|b| b.name()).collect::<Vec<_>>());
    port
}

fn service<'a>(status: &'a Value, name: &str) -> &'a Value {
    let services = status["services"].as_array().expect("services");
    services.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no service {name} in {status:#}"))
}

/// The servers of `service` in `/status` whose difference is of `kind` (`quarantined`, `held`, ...); none
/// while the service is not there yet.
fn differing<'a>(status: &'a Value, name: &str, kind: &str) -> Vec<&'a Value> {
    let services = status["services"].as_array().into_iter().flatten();
    let servers =
        services.filter(|s| s["name"] == name).flat_map(|s| s["servers"].as_array().into_iter().flatten());
    servers.filter(|s| s["difference"]["kind"] == kind).collect()
}

/// `/metrics`, parsed by a Prometheus text-format parser.
fn metrics(pm: &Proxymgr) -> prometheus_parse::Scrape {
    let (code, body) = pm.http_get("/metrics").expect("/metrics answers");
    assert_eq!(code, 200, "{body}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("/metrics parses")
}

/// The value of the sample `name` whose labels include `labels`; None when there is none.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))?;
    match found.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => Some(v),
        _ => None,
    }
}

/// Waits until `/metrics` has `name{labels}` at `value`.
fn wait_sample(pm: &Proxymgr, name: &str, labels: &[(&str, &str)], value: f64) {
    let mut last = None;
    let what = format!("{name}{labels:?} = {value} in /metrics");
    wait_until(SETTLE, &what, || {
        last = sample(&metrics(pm), name, labels);
        last == Some(value)
    });
}

/// The page at `/` as headless Chromium sees it (its DOM once loaded).
fn page(pm: &Proxymgr) -> String {
    let address = pm.status_address().expect("the status endpoint is on");
    browser::dump_dom(&format!("http://{address}/"))
}

/// `proxymgr status`: waits until it exits with `code`, and returns its output; at the deadline, panics with
/// the last one.
fn wait_status_command(pm: &Proxymgr, code: i32) -> String {
    let deadline = std::time::Instant::now() + SETTLE;
    loop {
        let (exit, text) = pm.status_command();
        if exit == code {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {SETTLE:?} waiting for proxymgr status to exit with {code}; the last exit {exit}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_healthy_service_is_seen_from_both_sides_in_every_view() {
    let Some((zk, pm)) = start("") else { return };
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let port = serving_web(&zk, &[&a, &b]);

    let status = pm.wait_status("web with two servers in rotation", SETTLE, |s| {
        s["services"][0]["servers"].as_array().is_some_and(|servers| {
            servers.len() == 2 && servers.iter().all(|s| s["haproxy"]["state"] == "ready")
        })
    });
    let web = service(&status, "web");
    assert_eq!(web["port"], port);
    for server in web["servers"].as_array().unwrap() {
        assert!(server["registry"].is_object() && server["difference"].is_null(), "{server:#}");
        assert!(server["registry"]["origin"].as_str().unwrap().starts_with("/services/web/"), "{server:#}");
    }
    assert!(status["haproxy"]["pid"].as_u64().is_some_and(|pid| pm.haproxy_pids().contains(&(pid as u32))));
    assert_eq!(status["registry"][0]["connected"], true, "{status:#}");
    assert_eq!(status["last_reload"]["result"], "served");

    let scrape = metrics(&pm);
    assert_eq!(
        sample(&scrape, "proxymgr_servers", &[("service", "web"), ("state", "in_rotation")]),
        Some(2.0)
    );
    assert_eq!(sample(&scrape, "proxymgr_registry_connected", &[]), Some(1.0));
    assert!(sample(&scrape, "proxymgr_build_info", &[]).is_some());

    let (code, text) = pm.status_command();
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("PROXYMGR OK"), "{text}");
    assert!(text.contains("web"), "{text}");

    let dom = page(&pm);
    assert!(dom.contains(&format!("127.0.0.1:{}", a.port())) && dom.contains("web"), "{dom}");

    // Read-only: nothing changes through it.
    let address = pm.status_address().unwrap();
    assert_eq!(post(address, "/status"), Some(405));
    assert_eq!(pm.http_get("/nothing").map(|r| r.0), Some(404));
}

/// POST `path`: the status code.
fn post(address: std::net::SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "POST {path} HTTP/1.0\r\nContent-Length: 2\r\n\r\n{{}}").ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    reply.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_registry_outage_shows_in_every_view_and_clears() {
    let Some((mut zk, pm)) = start("") else { return };
    let a = Backend::start("a");
    let port = serving_web(&zk, &[&a]);
    pm.wait_status("the session connected", SETTLE, |s| s["registry"][0]["connected"] == true);

    zk.stop();
    let status = pm.wait_status("the outage", SETTLE, |s| s["registry"][0]["connected"] == false);
    assert!(status["registry"][0]["outage_since"].as_f64().is_some(), "{status:#}");
    wait_sample(&pm, "proxymgr_registry_connected", &[], 0.0);
    assert!(sample(&metrics(&pm), "proxymgr_registry_outage_seconds", &[]).is_some_and(|s| s >= 0.0));
    let text = wait_status_command(&pm, 2);
    let first = text.lines().next().unwrap_or_default();
    assert!(first.starts_with("PROXYMGR CRITICAL") && first.contains("registry"), "{text}");
    let dom = page(&pm);
    assert!(dom.contains("id=\"problems\"") && dom.contains(&zk.connect_string()), "{dom}");
    wait_answers(port, &["a"]);

    zk.restart();
    let status = pm.wait_status("the session back", SETTLE, |s| s["registry"][0]["connected"] == true);
    assert!(
        status["registry"][0]["reconnects"].as_u64() >= Some(1)
            || status["registry"][0]["expiries"].as_u64() >= Some(1),
        "{status:#}"
    );
    wait_status_command(&pm, 0);
}

#[test]
fn a_rejected_config_shows_in_every_view() {
    let Some((zk, pm)) = start("") else { return };
    let a = Backend::start("a");
    let port = serving_web(&zk, &[&a]);

    zk.set("/service_config/web", &blob(&zk, "web", port, &["mode http", "no-such-keyword on"]));
    let status = pm.wait_status("the rejected config", SETTLE, |s| !s["rejected"].is_null());
    assert!(status["rejected"]["error"].as_str().unwrap().contains("no-such-keyword"), "{status:#}");
    assert_eq!(service(&status, "web")["spec_rejected"], true);
    assert_eq!(status["last_reload"]["result"], "rejected");
    wait_sample(&pm, "proxymgr_rejected_configs_total", &[], 1.0);
    let text = wait_status_command(&pm, 2);
    assert!(text.lines().next().unwrap().contains("rejected"), "{text}");
    let dom = page(&pm);
    assert!(dom.contains("no-such-keyword"), "{dom}");
    wait_answers(port, &["a"]);
}

#[test]
fn a_quarantined_server_shows_in_every_view_with_haproxys_reason() {
    let Some((zk, pm)) = start("") else { return };
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let port = serving_web(&zk, &[&a]);

    zk.create("/services/web/typo", &nerve(&b, "chekc"));
    let status =
        pm.wait_status("the typo quarantined", SETTLE, |s| !differing(s, "web", "quarantined").is_empty());
    let typo = differing(&status, "web", "quarantined")[0];
    assert!(typo["difference"]["reason"].as_str().unwrap().contains("chekc"), "{typo:#}");
    assert!(typo["haproxy"].is_null() && typo["registry"].is_object(), "{typo:#}");
    wait_sample(&pm, "proxymgr_servers", &[("service", "web"), ("state", "quarantined")], 1.0);
    let text = wait_status_command(&pm, 1);
    assert!(
        text.starts_with("PROXYMGR WARNING") && text.lines().next().unwrap().contains("quarantined"),
        "{text}"
    );
    let dom = page(&pm);
    assert!(dom.contains("quarantined") && dom.contains("chekc"), "{dom}");
    // The screenshot in the README: `PROXYMGR_SCREENSHOT=docs/status-page.png cargo test --test integration
    // observe::a_quarantined`.
    if let Some(path) = std::env::var_os("PROXYMGR_SCREENSHOT") {
        let address = pm.status_address().unwrap();
        browser::screenshot(&format!("http://{address}/"), std::path::Path::new(&path), 1200, 1250);
    }
    wait_answers(port, &["a"]);
}

#[test]
fn a_held_removal_shows_in_every_view() {
    let Some((zk, pm)) = start("removal_hold:\n  hold_time: 30\n") else { return };
    let backends: Vec<Backend> = ["a", "b", "c", "d"].into_iter().map(Backend::start).collect();
    let port = serving_web(&zk, &backends.iter().collect::<Vec<_>>());
    pm.wait_status("four servers", SETTLE, |s| {
        s["services"][0]["servers"].as_array().is_some_and(|v| v.len() == 4)
    });

    for gone in ["b", "c", "d"] {
        zk.delete(&format!("/services/web/{gone}"));
    }
    let status = pm.wait_status("a hold", SETTLE, |s| !differing(s, "web", "held").is_empty());
    let web = service(&status, "web");
    assert!(web["hold"]["until"].as_f64().is_some(), "{web:#}");
    assert_eq!(differing(&status, "web", "held").len(), 1, "one of three kept, at 50 %: {web:#}");
    wait_sample(&pm, "proxymgr_servers_held", &[("service", "web")], 1.0);
    let text = wait_status_command(&pm, 1);
    assert!(text.starts_with("PROXYMGR WARNING") && text.lines().next().unwrap().contains("held"), "{text}");
    let dom = page(&pm);
    assert!(dom.contains("held"), "{dom}");
    wait_until(SETTLE, "two servers answer", || {
        (0..20).filter_map(|_| support::http_get(port).ok()).collect::<std::collections::BTreeSet<_>>().len()
            == 2
    });
}

#[test]
fn the_endpoint_can_be_turned_off_with_one_line() {
    let Some((zk, pm)) = start("status: off\n") else { return };
    let a = Backend::start("a");
    serving_web(&zk, &[&a]);
    pm.wait_log("status: off", SETTLE);
    assert_eq!(pm.status_address(), None);
    let (code, text) = pm.status_command();
    assert_eq!(code, 3, "{text}");
    assert!(text.starts_with("PROXYMGR UNKNOWN"), "{text}");
}

#[test]
fn haproxys_own_exporter_serves_beside_proxymgrs_metrics() {
    let has_exporter = std::process::Command::new(support::haproxy())
        .arg("-vv")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("prometheus-exporter"));
    if !has_exporter {
        eprintln!("skipped: {} was built without the Prometheus exporter", support::haproxy().display());
        return;
    }
    if !support::require("zookeeper") {
        return;
    }
    let exporter = reserve_port();
    let zk = Zk::start();
    zk.create("/service_config", "");
    let pm = Proxymgr::start_with(|dir| {
        let yaml = Proxymgr::config_yaml(dir, &zk.connect_string());
        yaml.replacen("haproxy:\n", &format!("haproxy:\n  prometheus_exporter: 127.0.0.1:{exporter}\n"), 1)
    });
    let a = Backend::start("a");
    serving_web(&zk, &[&a]);
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], exporter));
    let mut body = String::new();
    wait_until(SETTLE, "HAProxy's exporter answers", || {
        body = support::fetch(address, "/metrics").filter(|r| r.0 == 200).map(|r| r.1).unwrap_or_default();
        !body.is_empty()
    });
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("it parses");
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric.starts_with("haproxy_backend_") && s.labels.get("proxy") == Some("web")),
        "HAProxy's figures for web: {body:.2000}"
    );
    assert!(sample(&metrics(&pm), "proxymgr_build_info", &[]).is_some(), "and proxymgr's beside them");
}

#[test]
fn after_a_hand_over_the_next_proxymgr_answers_on_the_same_address() {
    let Some((zk, mut pm)) = start("") else { return };
    let a = Backend::start("a");
    serving_web(&zk, &[&a]);
    let before = pm.wait_status("HAProxy serving", SETTLE, |s| s["haproxy"]["pid"].is_u64());
    let started = before["started"].as_f64().expect("when it started");
    pm.signal(nix::sys::signal::Signal::SIGUSR2);
    assert_eq!(pm.wait_exit(SETTLE).code(), Some(0), "a hand-over");
    pm.start_again();
    let after = pm.wait_status("the next proxymgr's status, HAProxy taken over", SETTLE, |s| {
        s["started"].as_f64().is_some_and(|t| t > started) && s["haproxy"]["pid"].is_u64()
    });
    assert_eq!(service(&after, "web")["port"], service(&before, "web")["port"]);
    wait_status_command(&pm, 0);
}
