//! Issue 14 §1, the matrix: the scenarios whose outcome depends on HAProxy's version, run on the HAProxy that
//! `PROXYMGR_TEST_HAPROXY` names (`support::haproxy()`). `make test-matrix VERSION=x.y` runs this module on a
//! build of that version (`tests/matrix/haproxy`), `make test` on each of 1.8, 2.4, 2.8, 3.0, 3.2 and 3.4, and
//! the default suite on Debian's 2.6. Where another module's test is the scenario, its body runs here as it is;
//! what a version can and cannot do is asserted here, and says which versions it is about.

use std::time::Duration;

use crate::support::{self, load::LoadReport};

/// HAProxy's complaints in proxymgr's log (HAProxy runs with `-db`; proxymgr copies its stderr there): its
/// `[WARNING]` and `[ALERT]` lines, and any line that says "deprecated". Not the notices of a process that
/// stops after a reload, which every version writes as warnings (1.8: "Stopping frontend GLOBAL in 0 ms.",
/// "Proxy GLOBAL stopped (FE: 1 conns, BE: 1 conns)."; 2.4 on: "Proxy GLOBAL stopped (cumulated conns: FE: 1,
/// BE: 1).", which 2.6 may prefix with "CLI : "): proxymgr asks for them.
fn complaints(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            l.contains("[WARNING]") || l.contains("[ALERT]") || l.to_ascii_lowercase().contains("deprecated")
        })
        .filter(|l| !soft_stop_notice(l) && !as_root_notice(l))
        .collect()
}

/// 3.4's warnings that it was started as root without `chroot` or `user`: about how the tests (and CI) run
/// HAProxy, as root with no `user` in their proxymgr.yml, not about what proxymgr renders. The packaged
/// proxymgr.yml has `user haproxy`; README says to add `chroot` there on 3.4.
fn as_root_notice(line: &str) -> bool {
    line.contains("HAProxy was started as root without any 'chroot' directive")
        || line.contains("HAProxy was started as the root user and does not make use of 'user' nor 'uid'")
}

/// `... (<pid>) : [<context> : ]Stopping frontend|backend|proxy <name> in <n> ms.` or `... (<pid>) :
/// [<context> : ]Proxy <name> stopped (...).`
fn soft_stop_notice(line: &str) -> bool {
    let Some((_, said)) = line.split_once(") : ") else { return false };
    let words: Vec<&str> = said.split_whitespace().collect();
    let words = match words[..] {
        [_, ":", ref rest @ ..] => rest,
        ref all => all,
    };
    matches!(
        words,
        ["Stopping", "frontend" | "backend" | "proxy", _, "in", _, "ms."] | ["Proxy", _, "stopped", ..]
    )
}

#[test]
fn complaints_are_warnings_alerts_and_deprecations_but_not_soft_stops() {
    let log = "\
x [WARN] haproxy[9]: [WARNING] 333/235836 (9) : Stopping frontend GLOBAL in 0 ms.
x [WARN] haproxy[9]: [WARNING] 333/235836 (9) : Proxy GLOBAL stopped (FE: 1 conns, BE: 1 conns).
x [WARN] haproxy[9]: [WARNING]  (9) : Proxy GLOBAL stopped (cumulated conns: FE: 1, BE: 1).
x [WARN] haproxy[9]: [WARNING]  (9) : CLI : Proxy <HTTPCLIENT> stopped (cumulated conns: FE: 0, BE: 0).
x [WARN] haproxy[9]: [WARNING]  (9) : [haproxy.main()] HAProxy was started as root without any 'chroot' directive. A chroot limits
x [WARN] haproxy[9]: [WARNING]  (9) : config : missing timeouts for proxy 'web'.
x [ERROR] haproxy[9]: [ALERT]  (9) : config : parsing [haproxy.cfg:9] : unknown keyword 'x'.
x [INFO] haproxy[9]: [NOTICE]  (9) : 'option forceclose' is DEPRECATED
x [INFO] haproxy[9]: [NOTICE]  (9) : haproxy version is 2.6.12
x [INFO] haproxy[9] serves (1 services)";
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(complaints(log), lines[5..8]);
}

/// Start and serve: a service with two backends in ZooKeeper is served by both, and HAProxy says nothing of
/// what proxymgr gave it: no warning, no alert, nothing deprecated.
#[test]
fn haproxy_serves_and_warns_of_nothing() {
    let Some((_zk, pm, _backends)) = crate::core::a_zookeeper_service_served() else { return };
    // The backends stay up meanwhile: a server going down is a warning too.
    hears_no_complaint(&pm);
}

/// HAProxy warns as it reads the config, before it serves; proxymgr's reader of its stderr writes the lines a
/// moment later. Watched for a second rather than slept through.
fn hears_no_complaint(pm: &support::Proxymgr) {
    support::hold(Duration::from_secs(1), "no complaint from HAProxy in proxymgr's log", || {
        let log = pm.log();
        match complaints(&log)[..] {
            [] => Ok(()),
            ref seen => Err(format!("{seen:#?}")),
        }
    });
}

/// A server whose node goes is put in maintenance, and comes back ready when it returns; no reload.
#[test]
fn a_server_out_and_back_takes_no_reload() {
    crate::hitless::a_server_that_leaves_goes_into_maintenance_without_a_reload();
}

/// A new server serves without a reload: by `add server` from 2.5, in an empty slot on 1.8 and 2.4 (which have no
/// `add server`; `slots.rs`).
#[test]
fn a_new_server_takes_no_reload() {
    crate::hitless::a_new_server_is_served_without_a_reload();
}

/// A new weight goes through the runtime API (`set weight`), with no reload; `show servers state` has it.
#[test]
fn a_weight_change_takes_no_reload() {
    crate::watchers::a_new_weight_takes_no_reload();
}

/// Reloads under load, a connection a request: no request fails.
#[test]
fn reloads_fail_no_connection_close_request() {
    crate::hitless::reloads_fail_no_request_with_connection_close_clients();
}

/// A listen option HAProxy refuses: the config is rejected and reported, traffic flows on, and the next good
/// change goes through.
#[test]
fn a_config_haproxy_rejects_leaves_traffic_flowing() {
    crate::hitless::a_config_haproxy_rejects_leaves_traffic_flowing_and_is_reported();
}

/// A proxymgr killed with SIGKILL under load: its HAProxy serves on, the next proxymgr takes it over, and no
/// request fails.
#[test]
fn a_proxymgr_killed_is_taken_over_without_a_failed_request() {
    crate::faults::a_proxymgr_killed_under_load_hands_its_haproxy_to_the_next_one();
}

/// Issue 16: services share a frontend, routed by host and path through a map, and HAProxy says nothing of the
/// frontend proxymgr renders for it (`map_beg`, `set-var`, `replace-header`, `use_backend %[var(...)]`).
#[test]
fn a_shared_frontend_routes_and_haproxy_warns_of_nothing() {
    let Some((_zk, pm, _backends)) = crate::edge::services_share_a_port_routed() else { return };
    hears_no_complaint(&pm);
}

/// Issue 16: routes that move, arrive and leave under load go through the runtime API (`add map`, `set map`,
/// `del map`): no reload, no failed request.
#[test]
fn routing_changes_take_no_reload() {
    crate::edge::routes_that_move_arrive_and_leave_under_load_fail_no_request_and_take_no_reload();
}

/// Reloads under load with kept-alive connections. No request fails where HAProxy answers the next request on
/// an idle connection rather than closing it under the client: from 2.6, where proxymgr renders `option
/// idle-close-on-response`, and in 1.8's legacy HTTP mode, where the connection's stream waits for that request
/// and a stopping frontend answers it with `Connection: close` (proto_http.c; 0 failed of 381 240 requests
/// in 20 runs of 22 reloads). In between (2.4 here) it is closed when HAProxy stops, and a request may be lost:
/// 0 to 8 failed a run (57 of 520 452 requests in 20 runs), all closed before a response or reset.
#[test]
fn reloads_and_keep_alive_clients() {
    let Some(report) = crate::hitless::reloads_under_load(true) else { return };
    let version = support::haproxy_version();
    if ((1, 9)..(2, 6)).contains(&version) {
        keep_alive_without_idle_close(&report, version);
    } else {
        report.assert_none_failed("across the reloads, keep-alive clients");
    }
}

/// From 1.9 (HTX) to 2.5 there is no `idle-close-on-response`: a stopping HAProxy closes each idle kept-alive
/// connection, and a request a client sends on it just then is lost. What such a version still guarantees, and
/// what is asserted: about one request a client a reload at most (the bound allows for exactly that, 44 here,
/// five times what 2.4 ever lost), each on a connection closed under it, none refused, timed out or answered
/// with an error.
fn keep_alive_without_idle_close(report: &LoadReport, version: (u32, u32)) {
    eprintln!(
        "HAProxy {version:?}, keep-alive clients across the reloads: {} requests ok, {} failed {:?}",
        report.ok, report.failed, report.errors
    );
    assert!(report.ok > 100, "the load loop barely ran: {report:?}");
    let most = crate::hitless::RELOAD_CLIENTS * crate::hitless::RELOADS;
    assert!(report.failed <= most, "more than one failed request a client a reload: {report:?}");
    let cut = |e: &String| {
        ["closed before a response", "closed in the headers", "reset by peer", "Broken pipe"]
            .iter()
            .any(|how| e.contains(how))
    };
    assert!(
        report.errors.iter().all(cut),
        "a request failed otherwise than on a closed connection: {report:?}"
    );
}
