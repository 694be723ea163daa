//! A mass removal is held (issue 12 §3): when most of a service's registrations vanish at once (a ZooKeeper
//! partition expiring its registrars' sessions, say), enough of the removed servers stay in rotation to keep
//! it at `removal_hold.threshold_percent` for `removal_hold.hold_time`, then the registry's word is applied;
//! a service whose blob says `"hold_removals": false` loses them at once. Asserted with HAProxy's `show
//! servers state`, real requests, haproxy.cfg, the state file and HAProxy's pids (no reload).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::{Duration, Instant};

use crate::support::{self, http_get, reserve_port, wait_until, Backend, Proxymgr, Zk};

const SETTLE: Duration = Duration::from_secs(20);
/// The test's hold: short, yet long enough to look at HAProxy during it on a busy machine.
const HOLD: Duration = Duration::from_secs(3);

/// A ZooKeeper with an empty `/service_config` and a proxymgr following it, whose holds last `HOLD`.
fn start() -> Option<(Zk, Proxymgr)> {
    if !support::require("haproxy") || !support::require("zookeeper") {
        return None;
    }
    let zk = Zk::start();
    zk.create("/service_config", "");
    let pm = Proxymgr::start_with(|dir| {
        let yaml = Proxymgr::config_yaml(dir, &zk.connect_string());
        format!("{yaml}removal_hold:\n  hold_time: {}\n", HOLD.as_secs())
    });
    Some((zk, pm))
}

fn blob(zk: &Zk, service: &str, port: u16, extra: &str) -> String {
    format!(
        r#"{{"type":"zookeeper","server":"{}","path":"/services/{service}","port":{port},
            "listen_options":["mode http","balance roundrobin"],"server_options":["check inter 500"]{extra}}}"#,
        zk.connect_string()
    )
}

fn server_name(backend: &Backend) -> String {
    format!("127.0.0.1:{}", backend.port())
}

/// The servers of `service` HAProxy has in rotation (admin state 0: not in maintenance).
fn in_rotation(pm: &Proxymgr, service: &str) -> BTreeSet<String> {
    pm.servers_state(service).into_iter().filter(|s| s.admin_state == 0).map(|s| s.name).collect()
}

/// The servers of `service` on haproxy.cfg's server lines.
fn in_file(pm: &Proxymgr, service: &str) -> BTreeSet<String> {
    let cfg = pm.haproxy_cfg();
    let section = cfg.split("\nlisten ").find(|s| s.starts_with(&format!("{service}\n"))).unwrap_or_default();
    let lines = section.lines().filter_map(|line| line.trim().strip_prefix("server "));
    lines.filter_map(|rest| rest.split(' ').next()).map(str::to_string).collect()
}

/// The servers of `service` in the state file.
fn in_state_file(pm: &Proxymgr, service: &str) -> BTreeSet<String> {
    let text = fs::read_to_string(pm.dir().join("state.json")).unwrap_or_default();
    let state: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let servers = state["services"][service]["servers"].as_array().cloned().unwrap_or_default();
    servers.iter().map(|s| format!("{}:{}", s["address"].as_str().unwrap_or_default(), s["port"])).collect()
}

/// The backends (by name) that answer `count` requests to `port`; an error if any request fails.
fn answers(port: u16, count: usize) -> Result<BTreeSet<String>, String> {
    (0..count).map(|_| http_get(port).map_err(|e| format!("a request to {port} failed: {e}"))).collect()
}

#[test]
fn a_mass_removal_keeps_half_in_rotation_for_the_hold_time_unless_the_service_opted_out() {
    let Some((zk, pm)) = start() else { return };
    let backends: Vec<Backend> = ["a", "b", "c", "d", "e", "f"].map(Backend::start).into();
    let by_server: BTreeMap<String, &str> = backends.iter().map(|b| (server_name(b), b.name())).collect();
    let (web, solo) = (reserve_port(), reserve_port());
    for backend in &backends {
        let server = format!(r#"{{"address":"127.0.0.1","port":{}}}"#, backend.port());
        zk.create(&format!("/services/web/{}", backend.name()), &server);
        zk.create(&format!("/services/solo/{}", backend.name()), &server);
    }
    zk.create("/service_config/web", &blob(&zk, "web", web, ""));
    zk.create("/service_config/solo", &blob(&zk, "solo", solo, r#","hold_removals":false"#));
    wait_until(SETTLE, "both services serve their six servers", || {
        in_rotation(&pm, "web").len() == 6 && in_rotation(&pm, "solo").len() == 6
    });
    wait_until(SETTLE, "one HAProxy serves", || pm.haproxy_pids().len() == 1);
    let pids = pm.haproxy_pids();
    let a: BTreeSet<String> = [server_name(&backends[0])].into();

    // Five of six registrations of each service vanish.
    let removed = Instant::now();
    for backend in &backends[1..] {
        zk.delete(&format!("/services/web/{}", backend.name()));
        zk.delete(&format!("/services/solo/{}", backend.name()));
    }
    wait_until(SETTLE, "solo, which opted out, keeps only a", || in_rotation(&pm, "solo") == a);
    let kept = in_rotation(&pm, "web");
    assert!(removed.elapsed() < HOLD, "the machine was too slow to look during the hold");
    assert!(kept.len() >= 3 && kept.is_superset(&a), "web keeps half in rotation, a among them: {kept:?}");
    pm.wait_log("service web: the registry reports", SETTLE);
    assert!(pm.log().contains("under the 50 % threshold; holding the removal"), "{}", pm.log());
    // Traffic goes on, spread over the servers kept.
    let expected: BTreeSet<String> = kept.iter().map(|s| by_server[s].to_string()).collect();
    assert_eq!(answers(web, 4 * kept.len()), Ok(expected));
    // What HAProxy runs is what haproxy.cfg and the state file say (written within 0.2 s and 1 s).
    wait_until(HOLD, "haproxy.cfg and the state file have the servers kept", || {
        in_file(&pm, "web") == kept && in_state_file(&pm, "web") == kept
    });
    assert_eq!(pm.haproxy_pids(), pids, "no reload");

    // After the hold the registry's word stands, through the runtime API too.
    wait_until(SETTLE, "web keeps only a", || in_rotation(&pm, "web") == a);
    assert!(removed.elapsed() >= HOLD, "the hold ended after {:?}", removed.elapsed());
    pm.wait_log("service web: the removal hold ends (its time is over)", SETTLE);
    assert_eq!(answers(web, 4), Ok(["a".to_string()].into()));
    wait_until(SETTLE, "haproxy.cfg and the state file have only a", || {
        in_file(&pm, "web") == a && in_state_file(&pm, "web") == a
    });
    assert_eq!(pm.haproxy_pids(), pids, "no reload");
}
