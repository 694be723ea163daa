use super::*;
use crate::status::{
    Blocked, CommandLabels, Count, Counters, Generation, HaproxyView, RegistryView, Rejected, Reload,
    ReloadLabels, ReloadResult, Service, Serving, Session,
};
use prometheus_parse::{LineInfo, Scrape, Value};
use std::sync::Arc;

const NOW: f64 = 2000.0;

fn server(name: &str, state: Option<ServerState>, difference: Option<Difference>) -> ServerView {
    ServerView {
        name: name.into(),
        registry: Some(RegistryView::default()),
        haproxy: state.map(|state| HaproxyView { name: None, state, weight: None }),
        difference,
    }
}

fn service(name: &str, servers: Vec<ServerView>) -> Service {
    Service { name: name.into(), port: Some(8080), servers, ..Service::default() }
}

fn status() -> Status {
    use Difference::{Held, Leaving, Pending, PendingReload, Quarantined};
    use ServerState::{Maintenance, Ready};
    let mut converge_runtime = Histogram::default();
    for seconds in [0.002, 0.02, 0.02, 0.2] {
        converge_runtime.observe(seconds);
    }
    let mut converge_reload = Histogram::default();
    converge_reload.observe(3.0);
    Status {
        version: "0.1.0".into(),
        published: 1990.0,
        started: 1000.0,
        haproxy: Some(Serving { pid: 42, version: "2.6.12".into(), since: 1500.0 }),
        generations: vec![
            Generation { pid: 41, serving: false, started: Some(1200.0) },
            Generation { pid: 42, serving: true, started: Some(1500.0) },
        ],
        last_reload: Some(Reload { at: 1500.0, reasons: vec![], result: ReloadResult::Served }),
        rejected: Some(Rejected { at: 1800.0, error: "[ALERT] ...".into() }),
        registry: vec![
            Session {
                ensemble: "zk1:2181".into(),
                connected: true,
                outage_since: None,
                reconnects: 2,
                expiries: 1,
                last_read: Some(1995.0),
            },
            Session {
                ensemble: "zk9:2181".into(),
                connected: false,
                outage_since: Some(1940.0),
                reconnects: 0,
                expiries: 0,
                last_read: None,
            },
        ],
        source: "zookeeper zk1:2181 /services".into(),
        last_registry_read: Some(1995.5),
        services: [
            service(
                "web",
                vec![
                    server("10.0.0.1:80", Some(Ready), None),
                    server("10.0.0.2:80", Some(Ready), Some(Held { until: 2050.0 })),
                    server("10.0.0.3:80", Some(Maintenance), Some(Leaving)),
                    server("10.0.0.4:80", None, Some(Quarantined { reason: "bad option".into() })),
                    server("10.0.0.5:80", None, Some(PendingReload)),
                    server("10.0.0.6:80", Some(Maintenance), Some(Pending)),
                ],
            ),
            service("api", vec![server("10.0.1.1:80", Some(Maintenance), None)]),
            service("empty", vec![]),
        ]
        .map(Arc::new)
        .to_vec(),
        blocked: vec![Blocked { service: "db".into(), reason: "no port".into() }],
        counters: Counters {
            commands: vec![
                Count { labels: CommandLabels { kind: "disable".into(), result: "ok".into() }, value: 3 },
                Count { labels: CommandLabels { kind: "add".into(), result: "refused".into() }, value: 1 },
            ],
            reloads: vec![Count {
                labels: ReloadLabels { reason: "new_service".into(), result: "served".into() },
                value: 2,
            }],
            rejected_configs: 1,
            drift_corrections: 4,
            converge_runtime,
            converge_reload,
        },
    }
}

fn memory(pid: u32) -> Option<u64> {
    (pid == 42).then_some(50_000_000)
}

fn scrape(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The one sample named `name` whose labels include `labels`.
fn sample<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> &'a Value {
    let found: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    &found[0].value
}

fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match sample(scrape, name, labels) {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{name}: {other:?}"),
    }
}

fn absent(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> bool {
    !scrape.samples.iter().any(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
}

/// Labels a sample must have.
type Want = &'static [(&'static str, &'static str)];

#[test]
fn every_metric_has_the_value_of_the_status() {
    let text = encode(&status(), NOW, &memory);
    let s = scrape(&text);
    let cases: &[(&str, Want, f64)] = &[
        ("proxymgr_build_info", &[("version", "0.1.0"), ("haproxy_version", "2.6.12")], 1.0),
        ("proxymgr_start_time_seconds", &[], 1000.0),
        ("proxymgr_status_published_timestamp_seconds", &[], 1990.0),
        ("proxymgr_registry_connected", &[("ensemble", "zk1:2181")], 1.0),
        ("proxymgr_registry_connected", &[("ensemble", "zk9:2181")], 0.0),
        ("proxymgr_registry_outage_seconds", &[("ensemble", "zk1:2181")], 0.0),
        ("proxymgr_registry_outage_seconds", &[("ensemble", "zk9:2181")], 60.0),
        ("proxymgr_registry_reconnects_total", &[("ensemble", "zk1:2181")], 2.0),
        ("proxymgr_registry_session_expiries_total", &[("ensemble", "zk1:2181")], 1.0),
        ("proxymgr_registry_session_last_read_timestamp_seconds", &[("ensemble", "zk1:2181")], 1995.0),
        ("proxymgr_registry_last_read_timestamp_seconds", &[], 1995.5),
        ("proxymgr_services", &[], 3.0),
        ("proxymgr_services_blocked", &[], 1.0),
        ("proxymgr_servers", &[("service", "web"), ("state", "in_rotation")], 2.0),
        ("proxymgr_servers", &[("service", "web"), ("state", "maintenance")], 1.0),
        ("proxymgr_servers", &[("service", "web"), ("state", "quarantined")], 1.0),
        ("proxymgr_servers", &[("service", "web"), ("state", "pending")], 2.0),
        ("proxymgr_servers", &[("service", "api"), ("state", "in_rotation")], 0.0),
        ("proxymgr_servers", &[("service", "api"), ("state", "maintenance")], 1.0),
        ("proxymgr_servers", &[("service", "empty"), ("state", "in_rotation")], 0.0),
        ("proxymgr_servers_held", &[("service", "web")], 1.0),
        ("proxymgr_servers_held", &[("service", "api")], 0.0),
        ("proxymgr_runtime_commands_total", &[("kind", "disable"), ("result", "ok")], 3.0),
        ("proxymgr_runtime_commands_total", &[("kind", "add"), ("result", "refused")], 1.0),
        ("proxymgr_reloads_total", &[("reason", "new_service"), ("result", "served")], 2.0),
        ("proxymgr_rejected_configs_total", &[], 1.0),
        ("proxymgr_drift_corrections_total", &[], 4.0),
        ("proxymgr_config_rejected", &[], 1.0),
        ("proxymgr_last_reload_timestamp_seconds", &[], 1500.0),
        ("proxymgr_haproxy_generations", &[], 2.0),
        ("proxymgr_haproxy_resident_memory_bytes", &[("pid", "42"), ("serving", "true")], 5e7),
        ("proxymgr_converge_seconds_count", &[("path", "runtime")], 4.0),
        ("proxymgr_converge_seconds_count", &[("path", "reload")], 1.0),
    ];
    for &(name, labels, want) in cases {
        let got = value(&s, name, labels);
        assert!((got - want).abs() < 1e-9, "{name} {labels:?} is {got}, not {want}\n{text}");
    }
    assert!((value(&s, "proxymgr_converge_seconds_sum", &[("path", "runtime")]) - 0.242).abs() < 1e-9);
    // What is not known is left out rather than written as 0.
    assert!(absent(&s, "proxymgr_registry_session_last_read_timestamp_seconds", &[("ensemble", "zk9:2181")]));
    assert!(absent(&s, "proxymgr_haproxy_resident_memory_bytes", &[("pid", "41")]));
}

#[test]
fn a_histogram_has_cumulative_buckets() {
    let s = scrape(&encode(&status(), NOW, &memory));
    let Value::Histogram(buckets) = sample(&s, "proxymgr_converge_seconds", &[("path", "runtime")]) else {
        panic!("not a histogram");
    };
    let count = |bound: f64| buckets.iter().find(|b| b.less_than == bound).map(|b| b.count);
    assert_eq!(buckets.len(), crate::status::LATENCY_BOUNDS.len() + 1);
    assert_eq!(count(0.001), Some(0.0));
    assert_eq!(count(0.0025), Some(1.0));
    assert_eq!(count(0.025), Some(3.0));
    assert_eq!(count(0.25), Some(4.0));
    assert_eq!(count(60.0), Some(4.0));
    assert_eq!(count(f64::INFINITY), Some(4.0));
    let Value::Histogram(reload) = sample(&s, "proxymgr_converge_seconds", &[("path", "reload")]) else {
        panic!("not a histogram");
    };
    let reload = |bound: f64| reload.iter().find(|b| b.less_than == bound).map(|b| b.count);
    assert_eq!((reload(2.5), reload(5.0)), (Some(0.0), Some(1.0)));
}

#[test]
fn types_and_help_are_declared() {
    let text = encode(&status(), NOW, &memory);
    for line in [
        "# TYPE proxymgr_servers gauge",
        "# TYPE proxymgr_reloads_total counter",
        "# TYPE proxymgr_converge_seconds histogram",
        "# HELP proxymgr_registry_connected Whether the ZooKeeper session with this ensemble is connected \
         (1) or not (0).",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} missing from\n{text}");
    }
    // An ensemble of several hosts keeps its commas (prometheus-parse would split the label on them).
    let several = Status {
        registry: vec![Session { ensemble: "zk1:2181,zk2:2181/chroot".into(), ..Session::default() }],
        ..status()
    };
    let text = encode(&several, NOW, &memory);
    assert!(
        text.contains("proxymgr_registry_connected{ensemble=\"zk1:2181,zk2:2181/chroot\"} 0\n"),
        "{text}"
    );
}

#[test]
fn an_empty_status_still_says_what_it_can() {
    let s = scrape(&encode(&Status::default(), NOW, &|_| None));
    assert_eq!(value(&s, "proxymgr_build_info", &[("haproxy_version", "")]), 1.0);
    assert_eq!(value(&s, "proxymgr_services", &[]), 0.0);
    assert_eq!(value(&s, "proxymgr_config_rejected", &[]), 0.0);
    assert_eq!(value(&s, "proxymgr_converge_seconds_count", &[("path", "runtime")]), 0.0);
    for name in [
        "proxymgr_registry_connected",
        "proxymgr_registry_last_read_timestamp_seconds",
        "proxymgr_last_reload_timestamp_seconds",
        "proxymgr_runtime_commands_total",
        "proxymgr_servers",
    ] {
        assert!(absent(&s, name, &[]), "{name}");
    }
}

/// Service names come from the registry: a quote, a backslash or a newline in one must neither end its
/// label nor start a line.
#[test]
fn label_values_are_escaped() {
    let name = "we\"b\\x\ny";
    let mut hostile = status();
    hostile.services =
        vec![Arc::new(service(name, vec![server("10.0.0.1:80", Some(ServerState::Ready), None)]))];
    let text = encode(&hostile, NOW, &memory);
    for line in text.lines() {
        let parsed = LineInfo::parse(line);
        let comment = line.starts_with("# HELP ") || line.starts_with("# TYPE ");
        assert!(comment || matches!(parsed, LineInfo::Sample { .. }), "{line:?} is no sample:\n{text}");
    }
    let escaped = r#"we\"b\\x\ny"#;
    assert!(text.contains(&format!("proxymgr_servers{{service=\"{escaped}\",state=\"in_rotation\"}} 1\n")));
    // prometheus-parse leaves escapes as they are; undone, they give the name back.
    let s = scrape(&text);
    assert_eq!(value(&s, "proxymgr_servers", &[("service", escaped), ("state", "in_rotation")]), 1.0);
    assert_eq!(unescape(escaped), name);
}

/// The text format's three escapes, undone.
fn unescape(value: &str) -> String {
    let mut text = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        text.push(match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => '\n',
                Some(other) => other,
                None => '\\',
            },
            (c, false) => c,
        });
    }
    text
}

#[test]
fn servers_fall_in_one_class_each() {
    use Difference as D;
    use ServerClass as C;
    use ServerState as S;
    let quarantined = || Some(D::Quarantined { reason: String::new() });
    let cases = [
        (Some(S::Ready), None, C::InRotation),
        (Some(S::Ready), Some(D::Held { until: 1.0 }), C::InRotation),
        // A change under way on a server in rotation leaves it in rotation until it is applied.
        (Some(S::Ready), Some(D::Pending), C::InRotation),
        (Some(S::Ready), Some(D::PendingReload), C::InRotation),
        (Some(S::Maintenance), None, C::Maintenance),
        (Some(S::Maintenance), Some(D::Leaving), C::Maintenance),
        (Some(S::Maintenance), Some(D::Pending), C::Pending),
        (Some(S::Maintenance), quarantined(), C::Quarantined),
        (None, quarantined(), C::Quarantined),
        (None, Some(D::PendingReload), C::Pending),
        (None, None, C::Pending),
    ];
    for (state, difference, want) in cases {
        let view = server("a:1", state, difference.clone());
        assert_eq!(ServerClass::of(&view), want, "{state:?} {difference:?}");
    }
}

#[test]
fn resident_memory_from_proc_status() {
    assert_eq!(vm_rss_bytes("Name:\thaproxy\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\n"), Some(1234 * 1024));
    assert_eq!(vm_rss_bytes("Name:\tkthreadd\n"), None, "kernel threads have no VmRSS");
    assert_eq!(vm_rss_bytes("VmRSS:\t12 MB\n"), None);
    assert!(resident_bytes(std::process::id()).is_some_and(|bytes| bytes > 0));
    assert_eq!(resident_bytes(u32::MAX), None);
}

#[test]
fn routes_are_counted_by_state_for_services_that_join_frontends() {
    use crate::status::{RouteState, RouteView};
    let mut status = status();
    let route = |state| RouteView { frontend: "https".into(), key: "a.test/".into(), state };
    let first = std::sync::Arc::make_mut(&mut status.services[0]);
    first.routes = vec![route(RouteState::Routed), route(RouteState::Routed), route(RouteState::NoFrontend)];
    let name = first.name.clone();
    let s = scrape(&encode(&status, NOW, &memory));
    for (state, expected) in [("routed", 2.0), ("pending", 0.0), ("taken", 0.0), ("no_frontend", 1.0)] {
        assert_eq!(
            value(&s, "proxymgr_routes", &[("service", &name), ("state", state)]),
            expected,
            "{state}"
        );
    }
    let other = status.services[1].name.clone();
    assert!(
        absent(&s, "proxymgr_routes", &[("service", &other), ("state", "routed")]),
        "no joins, no routes"
    );
}
