//! Issue 12, the field: registrations HAProxy will not take are held out alone; servers added at run time equal
//! those a reload brings.

use std::fs;
use std::path::Path;

use crate::support::{self, reserve_port, wait_answers, wait_until, Backend, Proxymgr, Zk};

const SETTLE: std::time::Duration = std::time::Duration::from_secs(20);

fn blob(zk: &Zk, service: &str, port: u16) -> String {
    format!(
        r#"{{"type":"zookeeper","server":"{}","path":"/services/{service}","port":{port},
            "listen_options":["mode http"],"server_options":["check inter 500"]}}"#,
        zk.connect_string()
    )
}

/// A Nerve registration of `host:port` with `options` as its `haproxy_server_options`.
fn nerve(host: &str, port: u16, options: &str) -> String {
    format!(r#"{{"host":"{host}","port":{port},"name":"x","haproxy_server_options":"{options}"}}"#)
}

/// How many lines of the log hold every one of `words`.
fn lines_with(pm: &Proxymgr, words: &[&str]) -> usize {
    pm.log().lines().filter(|l| words.iter().all(|w| l.contains(w))).count()
}

#[test]
fn a_registration_haproxy_refuses_is_held_out_and_everything_else_carries_on() {
    let Some((zk, pm)) = support::zk_and_proxymgr("") else { return };
    let (a, b, c, d) = (Backend::start("a"), Backend::start("b"), Backend::start("c"), Backend::start("d"));
    let web = reserve_port();
    // A typo in a registration that is there from the start: the first candidate fails on its line.
    zk.create("/services/web/a", &nerve("127.0.0.1", a.port(), ""));
    zk.create("/services/web/typo", &nerve("127.0.0.1", b.port(), "chekc"));
    zk.create("/service_config/web", &blob(&zk, "web", web));
    wait_answers(web, &["a"]);
    pm.wait_log("HAProxy rejected the new config", SETTLE);
    let held = ["/services/web/typo", "unknown keyword 'chekc'", "held out"];
    wait_until(SETTLE, "the typo is logged with its node", || lines_with(&pm, &held) == 1);
    let pids = pm.haproxy_pids();

    // A service added later is served (before, every candidate carried the bad line).
    let api = reserve_port();
    zk.create("/services/api/c", &nerve("127.0.0.1", c.port(), ""));
    zk.create("/service_config/api", &blob(&zk, "api", api));
    wait_answers(api, &["c"]);

    // A typo arriving at run time: refused by `add server`, held out, no reload; a good server next to it is
    // added at run time, as the backend is not marked.
    wait_until(SETTLE, "one HAProxy serves", || pm.haproxy_pids().len() == 1);
    let pids_api = pm.haproxy_pids();
    assert_ne!(pids_api, pids, "api took a reload");
    zk.create("/services/api/typo", &nerve("127.0.0.1", d.port(), "inter 1s bakcup"));
    let late = ["/services/api/typo", "bakcup", "held out"];
    wait_until(SETTLE, "the run-time typo is logged with its node", || lines_with(&pm, &late) == 1);
    zk.create("/services/api/d", &nerve("127.0.0.1", d.port(), ""));
    zk.delete("/services/api/typo");
    wait_answers(api, &["c", "d"]);
    assert_eq!(pm.haproxy_pids(), pids_api, "no reload for either");

    // The typo is fixed: its server is tried again and served.
    zk.set("/services/web/typo", &nerve("127.0.0.1", b.port(), "check"));
    wait_answers(web, &["a", "b"]);
    assert_eq!(lines_with(&pm, &held), 1, "logged once: {}", pm.log());
    assert!(!pm.haproxy_cfg().contains("chekc"), "{}", pm.haproxy_cfg());
}

#[test]
fn a_host_name_reaches_haproxy_by_reload_and_one_that_does_not_resolve_fails_nothing() {
    if !support::require("haproxy") || !support::require("zookeeper") || !support::require("unshare") {
        return;
    }
    // Declared before proxymgr, so that it outlives proxymgr's mount of the hosts file.
    let scratch =
        tempfile::Builder::new().prefix("proxymgr-field-").tempdir().expect("a temporary directory");
    let hosts = scratch.path().join("hosts");
    fs::write(&hosts, "127.0.0.1 localhost\n127.0.0.1 pm-b.test\n").expect("write the hosts file");
    let zk = Zk::start();
    zk.create("/service_config", "");
    let pm = Proxymgr::start_with_hosts(&hosts, |dir| Proxymgr::config_yaml(dir, &zk.connect_string()));
    let (a, b, c) = (Backend::start("a"), Backend::start("b"), Backend::start("c"));
    let web = reserve_port();
    zk.create("/services/web/a", &nerve("127.0.0.1", a.port(), ""));
    zk.create("/service_config/web", &blob(&zk, "web", web));
    wait_answers(web, &["a"]);

    // A name HAProxy resolves as it starts: by reload, as `add server` would leave it without an address.
    zk.create("/services/web/b", &nerve("pm-b.test", b.port(), ""));
    wait_answers(web, &["a", "b"]);
    pm.wait_log(&format!("new server pm-b.test:{} (not one to add at run time)", b.port()), SETTLE);

    // A name that resolves nowhere (a decommissioned machine) starts in maintenance; the config loads.
    zk.create("/services/web/gone", &nerve("gone.invalid", c.port(), ""));
    let gone = format!("server gone.invalid:{0} gone.invalid:{0}", c.port());
    wait_until(SETTLE, "the reload with it is served", || pm.haproxy_cfg().contains(&gone));
    assert!(
        pm.haproxy_cfg().contains(&format!("{gone} check inter 500 init-addr libc,none")),
        "{}",
        pm.haproxy_cfg()
    );
    wait_answers(web, &["a", "b"]);
    let api = reserve_port();
    zk.create("/services/api/c", &nerve("127.0.0.1", c.port(), ""));
    zk.create("/service_config/api", &blob(&zk, "api", api));
    wait_answers(api, &["c"]);
    assert!(!Path::new(&pm.dir().join("haproxy.cfg.rejected")).exists(), "nothing was rejected");
}

/// A row of one of HAProxy's tables (a `# ` header, then rows of `separator`-split fields) by the names of its
/// header: the first row `this` picks, or none.
fn row<'a>(
    mut lines: impl Iterator<Item = &'a str>,
    separator: char,
    this: impl Fn(&[&str]) -> bool,
) -> std::collections::BTreeMap<String, String> {
    let header: Vec<&str> =
        lines.next().unwrap_or_default().trim_start_matches("# ").split(separator).collect();
    let row = lines.map(|l| l.split(separator).collect::<Vec<_>>()).find(|f| this(f));
    header.iter().zip(row.unwrap_or_default()).map(|(h, v)| (h.to_string(), v.to_string())).collect()
}

/// `show stat`'s fields of `backend`'s server `server`.
fn stat(pm: &Proxymgr, backend: &str, server: &str) -> std::collections::BTreeMap<String, String> {
    let reply = pm.haproxy_command("show stat").unwrap_or_default();
    row(reply.lines(), ',', |f| f.len() > 1 && f[0] == backend && f[1] == server)
}

/// `show servers state`'s fields of `backend`'s server `server` (after the format's version line).
fn state(pm: &Proxymgr, backend: &str, server: &str) -> std::collections::BTreeMap<String, String> {
    let reply = pm.haproxy_command(&format!("show servers state {backend}")).unwrap_or_default();
    row(reply.lines().skip(1), ' ', |f| f.get(3) == Some(&server))
}

/// What a server is, from both of HAProxy's views, leaving out what names it or changes by itself.
fn server_fields(pm: &Proxymgr, backend: &str, server: &str) -> Vec<(String, String)> {
    let stat = stat(pm, backend, server);
    let state = state(pm, backend, server);
    let pick = |map: &std::collections::BTreeMap<String, String>, keys: &[&str]| {
        keys.iter()
            .map(|k| (k.to_string(), map.get(*k).cloned().unwrap_or_else(|| "(none)".into())))
            .collect::<Vec<_>>()
    };
    let mut fields = pick(&stat, &["slim", "weight", "check_rise", "check_fall", "mode"]);
    fields.extend(pick(&state, &["srv_uweight", "srv_iweight", "srv_admin_state", "srv_use_ssl"]));
    fields
}

#[test]
fn a_server_added_at_run_time_equals_one_a_reload_brings() {
    if !support::require("haproxy") || !support::require("zookeeper") {
        return;
    }
    let zk = Zk::start();
    zk.create("/service_config", "");
    let pm = Proxymgr::start_with(|dir| {
        let last = "    - \"timeout server 10s\"\n";
        let with = format!("{last}    - \"default-server inter 1s fall 2 maxconn 7\"\n");
        Proxymgr::config_yaml(dir, &zk.connect_string()).replacen(last, &with, 1)
    });
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let web = reserve_port();
    zk.create("/services/web/a", &nerve("127.0.0.1", a.port(), "weight 3"));
    zk.create("/service_config/web", &blob(&zk, "web", web));
    wait_answers(web, &["a"]);
    wait_until(SETTLE, "one HAProxy serves", || pm.haproxy_pids().len() == 1);
    let pids = pm.haproxy_pids();
    // b at run time, with the same registration as a, which came by reload.
    zk.create("/services/web/b", &nerve("127.0.0.1", b.port(), "weight 3"));
    wait_answers(web, &["a", "b"]);
    assert_eq!(pm.haproxy_pids(), pids, "b came at run time");
    let (name_a, name_b) = (format!("127.0.0.1:{}", a.port()), format!("127.0.0.1:{}", b.port()));
    let reloaded = server_fields(&pm, "web", &name_a);
    assert!(reloaded.contains(&("slim".into(), "7".into())), "default-server applies: {reloaded:?}");
    assert!(reloaded.contains(&("check_fall".into(), "2".into())), "{reloaded:?}");
    assert_eq!(server_fields(&pm, "web", &name_b), reloaded, "b added at run time equals a");

    // And b itself after a reload (another service added) is what it was.
    let runtime = server_fields(&pm, "web", &name_b);
    let api = reserve_port();
    zk.create("/services/api/a", &nerve("127.0.0.1", a.port(), ""));
    zk.create("/service_config/api", &blob(&zk, "api", api));
    wait_answers(api, &["a"]);
    wait_until(SETTLE, "the new process alone serves", || {
        let now = pm.haproxy_pids();
        now.len() == 1 && now != pids
    });
    assert_eq!(server_fields(&pm, "web", &name_b), runtime, "b reloaded equals b added at run time");
}
