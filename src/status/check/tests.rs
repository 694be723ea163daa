use super::*;
use crate::status::model::{
    Blocked, Generation, HaproxyView, HoldView, RegistryView, Rejected, Reload, Serving, Session,
};
use std::sync::Arc;

const NOW: f64 = 1_700_000_000.0;

fn server(name: &str, state: Option<ServerState>) -> ServerView {
    ServerView {
        name: name.into(),
        registry: Some(RegistryView { weight: Some(10), origin: None }),
        haproxy: state.map(|state| HaproxyView { name: None, state, weight: Some(10) }),
        difference: None,
    }
}

fn ready(name: &str) -> ServerView {
    server(name, Some(ServerState::Ready))
}

fn service(name: &str, port: u16, servers: Vec<ServerView>) -> Service {
    Service {
        name: name.into(),
        port: Some(port),
        watcher: format!("zookeeper zk1:2181 /services/{name}"),
        watcher_state: WatcherState::Reporting,
        hold: None,
        spec_rejected: false,
        routes: Vec::new(),
        servers,
        registered: Default::default(),
    }
}

/// Everything well: HAProxy serves, the registry is connected, both services have servers in rotation.
fn healthy() -> Status {
    Status {
        version: "0.1.0".into(),
        published: NOW - 1.0,
        started: NOW - 3600.0,
        haproxy: Some(Serving { pid: 4242, version: "2.6.12".into(), since: NOW - 600.0 }),
        generations: vec![Generation { pid: 4242, serving: true, started: Some(NOW - 600.0) }],
        last_reload: Some(Reload {
            at: NOW - 600.0,
            reasons: vec!["new service web".into()],
            result: ReloadResult::Served,
        }),
        rejected: None,
        registry: vec![Session {
            ensemble: "zk1:2181".into(),
            connected: true,
            outage_since: None,
            reconnects: 1,
            expiries: 0,
            last_read: Some(NOW - 3.0),
        }],
        source: "zookeeper zk1:2181 /services".into(),
        last_registry_read: Some(NOW - 3.0),
        services: vec![
            Arc::new(service("api", 8081, vec![ready("10.0.0.1:80"), ready("10.0.0.2:80")])),
            Arc::new(service("web", 8080, vec![ready("10.0.0.3:80"), ready("10.0.0.4:80")])),
        ],
        blocked: Vec::new(),
        counters: Default::default(),
    }
}

fn web(status: &mut Status) -> &mut Service {
    status.services.iter_mut().find(|s| s.name == "web").map(Arc::make_mut).expect("web")
}

fn api(status: &mut Status) -> &mut Service {
    status.services.iter_mut().find(|s| s.name == "api").map(Arc::make_mut).expect("api")
}

fn outage(status: &mut Status) {
    status.registry[0].connected = false;
    status.registry[0].outage_since = Some(NOW - 42.0);
}

fn nothing_in_rotation(status: &mut Status) {
    for server in &mut web(status).servers {
        server.haproxy.as_mut().expect("in HAProxy").state = ServerState::Maintenance;
    }
}

fn quarantine(status: &mut Status) {
    let server = &mut api(status).servers[1];
    server.haproxy = None;
    server.difference = Some(Difference::Quarantined { reason: "bad address".into() });
}

fn hold(status: &mut Status) {
    let web = web(status);
    for name in ["10.0.0.5:80", "10.0.0.6:80"] {
        let mut server = ready(name);
        server.registry = None;
        server.difference = Some(Difference::Held { until: NOW + 120.0 });
        web.servers.push(server);
    }
    web.hold = Some(HoldView { until: NOW + 120.0, kept: vec!["10.0.0.5:80".into(), "10.0.0.6:80".into()] });
}

fn block(status: &mut Status) {
    status
        .blocked
        .push(Blocked { service: "db".into(), reason: "port 8080 is already used by service web".into() });
}

fn web_awaiting(status: &mut Status) {
    let web = web(status);
    web.watcher_state = WatcherState::Awaiting;
    web.servers.clear();
}

fn s(text: &str) -> String {
    text.into()
}

/// `api`'s server quarantined by `quarantine`.
fn bad_address() -> Vec<QuarantinedServer> {
    vec![QuarantinedServer { server: s("10.0.0.2:80"), reason: s("bad address") }]
}

/// `web`'s servers kept by `hold`.
fn kept() -> Vec<String> {
    vec![s("10.0.0.5:80"), s("10.0.0.6:80")]
}

#[test]
fn verdicts() {
    type Change = fn(&mut Status);
    let cases: Vec<(&str, Change, Level, Vec<Problem>)> = vec![
        ("all well", |_| {}, Level::Ok, vec![]),
        ("nothing published", |s| *s = Status::default(), Level::Unknown, vec![Problem::NothingPublished]),
        (
            "a status no longer published",
            |s| s.published = NOW - 61.0,
            Level::Critical,
            vec![Problem::Stale { for_seconds: 61 }],
        ),
        // Not also "no server in rotation" for every service.
        ("no HAProxy", |s| s.haproxy = None, Level::Critical, vec![Problem::NoHaproxy]),
        (
            "no HAProxy yet, just started",
            |s| {
                s.haproxy = None;
                s.started = s.published - 2.0;
            },
            Level::Ok,
            vec![Problem::Starting { for_seconds: 3 }],
        ),
        (
            "a registry outage",
            outage,
            Level::Critical,
            vec![Problem::RegistryOutage { ensemble: s("zk1:2181"), for_seconds: 42 }],
        ),
        (
            "a session never connected: down since the start",
            |s| s.registry[0].connected = false,
            Level::Critical,
            vec![Problem::RegistryOutage { ensemble: s("zk1:2181"), for_seconds: 3600 }],
        ),
        (
            "a rejected config",
            |s| s.rejected = Some(Rejected { at: NOW - 5.0, error: "[ALERT] bad".into() }),
            Level::Critical,
            vec![Problem::ConfigRejected { error: s("[ALERT] bad"), ago_seconds: 5 }],
        ),
        (
            "a failed reload, the old HAProxy serving",
            |s| s.last_reload.as_mut().expect("a reload").result = ReloadResult::Failed,
            Level::Warning,
            vec![Problem::ReloadFailed { ago_seconds: 600 }],
        ),
        (
            "every server in maintenance",
            nothing_in_rotation,
            Level::Critical,
            vec![Problem::NoServerInRotation { service: s("web"), registered: 2 }],
        ),
        (
            "no server in the registry",
            |s| web(s).servers.clear(),
            Level::Critical,
            vec![Problem::NoServerInRotation { service: s("web"), registered: 0 }],
        ),
        (
            "no server in the registry, those it had held out of rotation",
            |s| {
                for server in &mut web(s).servers {
                    server.registry = None;
                    server.haproxy.as_mut().expect("in HAProxy").state = ServerState::Maintenance;
                    server.difference = Some(Difference::Leaving);
                }
            },
            Level::Critical,
            vec![Problem::NoServerInRotation { service: s("web"), registered: 0 }],
        ),
        (
            "a watcher not reported yet, in the first seconds",
            |s| {
                web_awaiting(s);
                s.started = NOW - 10.0;
            },
            Level::Ok,
            vec![],
        ),
        (
            "a watcher not reported past the grace",
            web_awaiting,
            Level::Critical,
            vec![Problem::NeverReported { service: s("web"), for_seconds: 3600 }],
        ),
        (
            "a watcher not reported, the state file's servers in rotation",
            |s| web(s).watcher_state = WatcherState::Awaiting,
            Level::Ok,
            vec![],
        ),
        (
            "a rejected spec",
            |s| web(s).spec_rejected = true,
            Level::Warning,
            vec![Problem::SpecRejected { service: s("web") }],
        ),
        (
            "a quarantined server",
            quarantine,
            Level::Warning,
            vec![Problem::Quarantined { service: s("api"), servers: bad_address() }],
        ),
        (
            "held removals",
            hold,
            Level::Warning,
            vec![Problem::Held { service: s("web"), kept: kept(), until_seconds: 120 }],
        ),
        (
            "held servers without the hold's view: until the latest end",
            |s| {
                hold(s);
                web(s).hold = None;
                web(s).servers[2].difference = Some(Difference::Held { until: NOW + 60.0 });
            },
            Level::Warning,
            vec![Problem::Held { service: s("web"), kept: kept(), until_seconds: 120 }],
        ),
        (
            "a blocked service",
            block,
            Level::Warning,
            vec![Problem::Blocked {
                service: s("db"),
                reason: s("port 8080 is already used by service web"),
            }],
        ),
        (
            "several: worst first, then in order",
            |s| {
                block(s);
                quarantine(s);
                nothing_in_rotation(s);
                outage(s);
            },
            Level::Critical,
            vec![
                Problem::RegistryOutage { ensemble: s("zk1:2181"), for_seconds: 42 },
                Problem::NoServerInRotation { service: s("web"), registered: 2 },
                Problem::Quarantined { service: s("api"), servers: bad_address() },
                Problem::Blocked { service: s("db"), reason: s("port 8080 is already used by service web") },
            ],
        ),
        (
            "warnings alone stay a warning",
            |s| {
                hold(s);
                quarantine(s);
            },
            Level::Warning,
            vec![
                Problem::Quarantined { service: s("api"), servers: bad_address() },
                Problem::Held { service: s("web"), kept: kept(), until_seconds: 120 },
            ],
        ),
    ];
    for (name, change, level, problems) in cases {
        let mut status = healthy();
        change(&mut status);
        let verdict = verdict(&status, NOW);
        assert_eq!((verdict.level, verdict.problems), (level, problems), "{name}");
    }
}

#[test]
fn levels_are_the_exit_codes() {
    let cases = [(Level::Ok, 0, "OK"), (Level::Warning, 1, "WARNING"), (Level::Critical, 2, "CRITICAL")];
    for (level, code, name) in cases.into_iter().chain([(Level::Unknown, 3, "UNKNOWN")]) {
        assert_eq!((level.code(), level.to_string()), (code, name.to_string()));
    }
}

#[test]
fn first_lines() {
    type Change = fn(&mut Status);
    let cases: Vec<(Change, &str)> = vec![
        (
            |_| {},
            "PROXYMGR OK - 2 services, 4 servers in rotation \
             | services=2 servers_in_rotation=4 quarantined=0 held=0",
        ),
        (|s| *s = Status::default(), "PROXYMGR UNKNOWN - nothing published yet: proxymgr is starting"),
        (
            |s| {
                outage(s);
                s.rejected = Some(Rejected { at: NOW, error: "[ALERT] a\n[ALERT] b | c\r\n".into() });
                nothing_in_rotation(s);
                api(s).servers.clear();
            },
            "PROXYMGR CRITICAL - registry zk1:2181 down for 42s; config rejected: [ALERT] a [ALERT] b / c; \
             api: no server in rotation, none registered; web: no server in rotation, 2 registered \
             | services=2 servers_in_rotation=0 quarantined=0 held=0",
        ),
        (
            |s| {
                hold(s);
                quarantine(s);
                block(s);
            },
            "PROXYMGR WARNING - api: 1 server quarantined; web: 2 removed servers held in rotation for 2m \
             more; db: not served: port 8080 is already used by service web \
             | services=2 servers_in_rotation=5 quarantined=1 held=2",
        ),
        (
            |s| {
                web_awaiting(s);
                web(s).name = "w\u{1b}[31meb\nX".into();
            },
            "PROXYMGR CRITICAL - w [31meb X: no server in rotation, its watcher silent for 1h0m since start \
             | services=2 servers_in_rotation=2 quarantined=0 held=0",
        ),
    ];
    for (change, expected) in cases {
        let mut status = healthy();
        change(&mut status);
        assert_eq!(verdict(&status, NOW).first_line(), expected);
    }
}

#[test]
fn a_long_complaint_is_cut() {
    let mut status = healthy();
    status.rejected = Some(Rejected { at: NOW, error: "x".repeat(1000) });
    let line = verdict(&status, NOW).first_line();
    assert!(line.contains(&format!("config rejected: {}... |", "x".repeat(TEXT_LIMIT))), "{line}");
}

#[test]
fn unknown_lines_are_one_line() {
    assert_eq!(unknown_line("a\nb | c"), "PROXYMGR UNKNOWN - a b / c");
    assert_eq!(unknown_line(" \t a \r\n  b\u{1b}\u{7f} "), "PROXYMGR UNKNOWN - a b");
}

#[test]
fn durations() {
    let cases = [(0, "0s"), (42, "42s"), (60, "1m"), (310, "5m10s"), (3600, "1h0m"), (11_520, "3h12m")];
    for (seconds, text) in cases.into_iter().chain([(86_400 * 2 + 3600 * 4 + 5, "2d4h")]) {
        assert_eq!(duration(seconds), text, "{seconds}");
    }
    assert_eq!(super::seconds(-3.0), 0, "clocks a little apart");
    assert_eq!(super::seconds(f64::NAN), 0);
}

#[test]
fn the_table() {
    let mut status = healthy();
    quarantine(&mut status);
    hold(&mut status);
    block(&mut status);
    status.generations.push(Generation { pid: 4100, serving: false, started: Some(NOW - 4000.0) });
    status.registry.push(Session {
        ensemble: "zk2:2181".into(),
        connected: false,
        outage_since: Some(NOW - 42.0),
        ..Default::default()
    });
    web(&mut status).servers[0].registry.as_mut().expect("registered").origin =
        Some("/services/web/n_0001".into());
    web(&mut status).servers[0].difference = Some(Difference::PendingReload);
    web(&mut status).servers[1].haproxy.as_mut().expect("in HAProxy").name = Some("slot3".into());
    web(&mut status).servers[1].difference = Some(Difference::Pending);
    expect_test::expect![[r#"
        proxymgr     0.1.0, up 1h0m, published 1s ago
        HAProxy      pid 4242, HAProxy 2.6.12, serving for 10m
                     pid 4100 finishing its connections (started 1h6m ago)
        Last reload  10m ago, served (new service web)
        Registry     zookeeper zk1:2181 /services, last read 3s ago
                     zk1:2181: connected, 1 reconnect, 0 expiries, last read 3s ago
                     zk2:2181: DOWN for 42s, 0 reconnects, 0 expiries

        SERVICE  PORT  IN ROTATION  QUARANTINED  HELD  WATCHER
        api      8081  1/2          1            0     reporting: zookeeper zk1:2181 /services/api
        web      8080  4/4          0            2     reporting: zookeeper zk1:2181 /services/web

        Not served:
          db: port 8080 is already used by service web

        api:
          SERVER       REGISTRY   HAPROXY         WHY THEY DIFFER
          10.0.0.2:80  weight 10  not in HAProxy  quarantined: bad address

        web:
          removal hold: 2 servers kept in rotation for 2m more
          SERVER       REGISTRY                          HAPROXY                     WHY THEY DIFFER
          10.0.0.3:80  weight 10 (/services/web/n_0001)  ready, weight 10            waits for a reload
          10.0.0.4:80  weight 10                         ready, weight 10, as slot3  being applied
          10.0.0.5:80  not registered                    ready, weight 10            held for 2m more
          10.0.0.6:80  not registered                    ready, weight 10            held for 2m more
    "#]]
    .assert_eq(&table(&status, NOW));
}

#[test]
fn the_table_of_a_proxymgr_starting() {
    expect_test::expect![[r#"
        proxymgr     ?, nothing published yet
        HAProxy      none serving
        Last reload  none since start
        Registry     ?

        No services.
    "#]]
    .assert_eq(&table(&Status::default(), NOW));
}

#[test]
fn routes_another_service_has_or_no_frontend_takes_are_a_warning() {
    use crate::status::{RouteState, RouteView};
    let mut status = healthy();
    let route = |key: &str, state| RouteView { frontend: "https".into(), key: key.into(), state };
    std::sync::Arc::make_mut(&mut status.services[0]).routes = vec![
        route("a.test/", RouteState::Routed),
        route("b.test/", RouteState::Pending),
        route("c.test/", RouteState::Taken { by: "other".into() }),
        RouteView { frontend: "nope".into(), key: "d.test/".into(), state: RouteState::NoFrontend },
    ];
    let verdict = verdict(&status, NOW);
    let name = status.services[0].name.clone();
    assert_eq!(verdict.level, Level::Warning);
    assert_eq!(
        verdict.problems,
        [Problem::Unrouted {
            service: name.clone(),
            routes: vec![
                "https c.test/: routed to service other".into(),
                "nope: no such frontend in proxymgr.yml".into()
            ]
        }]
    );
    assert!(
        verdict.first_line().contains(&format!("{name}: 2 routes not routed")),
        "{}",
        verdict.first_line()
    );
}
