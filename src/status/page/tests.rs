use std::sync::Arc;

use super::*;
use crate::status::model::{
    Blocked, Generation, HaproxyView, HoldView, RegistryView, Rejected, Reload, Serving, Session,
};

/// 2024-05-01 12:00:00 UTC.
const NOW: f64 = 1_714_564_800.0;

fn server(
    name: &str,
    registry: bool,
    haproxy: Option<ServerState>,
    difference: Option<Difference>,
) -> ServerView {
    ServerView {
        name: name.to_string(),
        registry: registry
            .then(|| RegistryView { weight: Some(10), origin: Some(format!("/services/x/servers/{name}")) }),
        haproxy: haproxy.map(|state| HaproxyView { name: None, state, weight: Some(10) }),
        difference,
    }
}

fn service(name: &str, port: u16, servers: Vec<ServerView>) -> Service {
    Service {
        name: name.to_string(),
        port: Some(port),
        watcher: format!("zookeeper zk1:2181 /services/{name}/servers"),
        watcher_state: WatcherState::Reporting,
        hold: None,
        spec_rejected: false,
        routes: Vec::new(),
        servers,
        registered: Default::default(),
    }
}

/// A proxymgr with things wrong: a registry session down for 3m12s, a config HAProxy rejected 40 s ago, a
/// quarantined server in `api`, a removal hold in `web` keeping one server for 4 more minutes; `assets` is fine.
fn troubled() -> Status {
    let mut web = service(
        "web",
        8080,
        vec![
            server("10.0.0.1:80", true, Some(ServerState::Ready), None),
            server(
                "10.0.0.2:80",
                false,
                Some(ServerState::Ready),
                Some(Difference::Held { until: NOW + 240.0 }),
            ),
        ],
    );
    web.hold = Some(HoldView { until: NOW + 240.0, kept: vec!["10.0.0.2:80".to_string()] });
    let api = service(
        "api",
        8081,
        vec![
            server("10.0.1.1:80", true, Some(ServerState::Ready), None),
            server(
                "db-host.invalid:80",
                true,
                Some(ServerState::Maintenance),
                Some(Difference::Quarantined {
                    reason: "could not resolve address 'db-host.invalid'".to_string(),
                }),
            ),
        ],
    );
    let assets = service("assets", 8082, vec![server("10.0.2.1:80", true, Some(ServerState::Ready), None)]);
    Status {
        version: "0.1.0".to_string(),
        published: NOW - 1.0,
        started: NOW - 7200.0,
        haproxy: Some(Serving { pid: 4242, version: "2.6.12".to_string(), since: NOW - 600.0 }),
        generations: vec![
            Generation { pid: 4242, serving: true, started: Some(NOW - 600.0) },
            Generation { pid: 4100, serving: false, started: None },
        ],
        last_reload: Some(Reload {
            at: NOW - 40.0,
            reasons: vec!["new service api".to_string()],
            result: ReloadResult::Rejected,
        }),
        rejected: Some(Rejected {
            at: NOW - 40.0,
            error: "[ALERT] (1) : config : parsing [haproxy.cfg:12] : unknown keyword 'bogus'".to_string(),
        }),
        registry: vec![
            Session {
                ensemble: "zk1:2181".to_string(),
                connected: false,
                outage_since: Some(NOW - 192.0),
                reconnects: 2,
                expiries: 0,
                last_read: Some(NOW - 200.0),
            },
            Session {
                ensemble: "zk2:2181".to_string(),
                connected: true,
                outage_since: None,
                reconnects: 0,
                expiries: 1,
                last_read: Some(NOW - 5.0),
            },
        ],
        source: "zookeeper zk1:2181 /services".to_string(),
        last_registry_read: Some(NOW - 5.0),
        // By name, as the reconciler publishes them.
        services: vec![Arc::new(api), Arc::new(assets), Arc::new(web)],
        blocked: vec![],
        counters: Default::default(),
    }
}

/// A proxymgr with nothing wrong.
fn healthy() -> Status {
    let mut status = troubled();
    status.rejected = None;
    status.registry.truncate(0);
    status.source = "directory /etc/proxymgr/services".to_string();
    status.last_reload.as_mut().unwrap().result = ReloadResult::Served;
    status.services = vec![Arc::new(service(
        "web",
        8080,
        vec![
            server("10.0.0.1:80", true, Some(ServerState::Ready), None),
            server("10.0.0.3:80", true, Some(ServerState::Ready), None),
        ],
    ))];
    status
}

/// Where `needle` first is in `page`; panics naming it when it is not there.
fn at(page: &str, needle: &str) -> usize {
    page.find(needle).unwrap_or_else(|| panic!("{needle:?} is not on the page:\n{page}"))
}

#[test]
fn the_problems_come_first_with_their_specific_texts() {
    let page = render(&troubled(), NOW);
    assert!(page.contains(r#"<p id="summary" class="problems critical">CRITICAL: 4 problems</p>"#), "{page}");
    assert!(page.contains("<title>proxymgr: CRITICAL: 4 problems</title>"), "{page}");
    let problems = at(&page, r#"<section id="problems">"#);
    assert!(at(&page, r#"id="summary""#) < problems);
    for later in [r#"<section id="haproxy">"#, r#"<section id="reload">"#, r#"<section id="registry">"#] {
        assert!(problems < at(&page, later), "the problems are not before {later}");
    }
    let expected = [
        r#"<li class="problem outage" data-level="critical"><span class="kind">outage</span> registry session zk1:2181 down for 3m12s</li>"#,
        "HAProxy rejected the config 40s ago; the last config it took serves on\n<pre class=\"error\">[ALERT] (1) : \
         config : parsing [haproxy.cfg:12] : unknown keyword &#39;bogus&#39;</pre>",
        r#"<li class="problem quarantined" data-level="warning" data-service="api">"#,
        "server db-host.invalid:80 quarantined: could not resolve address &#39;db-host.invalid&#39;",
        r#"<li class="problem held" data-level="warning" data-service="web">"#,
        "removal hold keeps 1 server in rotation, ends in 4m00s: 10.0.0.2:80",
    ];
    let mut last = problems;
    for text in expected {
        let found = at(&page, text);
        assert!(found > last, "{text:?} is not after the problem before it");
        last = found;
    }
    assert!(last < at(&page, r#"<section id="haproxy">"#));
}

#[test]
fn the_services_with_problems_come_first_then_by_name() {
    let page = render(&troubled(), NOW);
    let api = at(&page, r#"<section class="service has-problems" id="service-api" data-service="api">"#);
    let web = at(&page, r#"<section class="service has-problems" id="service-web" data-service="web">"#);
    let assets = at(&page, r#"<section class="service" id="service-assets" data-service="assets">"#);
    assert!(api < web && web < assets, "api {api}, web {web}, assets {assets}");
}

#[test]
fn each_server_shows_both_views_and_their_difference() {
    let page = render(&troubled(), NOW);
    let quarantined = at(&page, r#"<tr class="server quarantined" data-server="db-host.invalid:80">"#);
    let row = &page[quarantined..quarantined + at(&page[quarantined..], "</tr>")];
    for cell in [
        "<td>yes<span class=\"origin mono\">/services/x/servers/db-host.invalid:80</span></td><td class=\"num\">10</td>",
        r#"<td class="maintenance">maintenance</td>"#,
        r#"<td class="difference">quarantined: could not resolve"#,
    ] {
        assert!(row.contains(cell), "{cell:?} not in {row}");
    }
    let held = at(&page, r#"<tr class="server held" data-server="10.0.0.2:80">"#);
    let row = &page[held..held + at(&page[held..], "</tr>")];
    assert!(row.contains(r#"<td class="no">no</td><td></td>"#), "{row}");
    assert!(row.contains("held: kept in rotation by a removal hold that ends in 4m00s"), "{row}");
    assert!(page.contains(r#"<tr class="server" data-server="10.0.0.1:80">"#));
}

#[test]
fn haproxy_the_reload_and_the_sessions_are_shown_with_ages() {
    let page = render(&troubled(), NOW);
    for text in [
        r#"<dd class="pid">4242</dd>"#,
        r#"<dd class="version">2.6.12</dd>"#,
        r#"<time datetime="2024-05-01T11:50:00Z" title="2024-05-01 11:50:00 UTC">10m00s ago</time>"#,
        r#"<span class="generation">pid 4100</span>"#,
        r#"<dd class="result-rejected">rejected:"#,
        "<li>new service api</li>",
        r#"<tr class="session down" data-ensemble="zk1:2181">"#,
        r#"<td class="down">down for 3m12s</td>"#,
        r#"<tr class="session up" data-ensemble="zk2:2181">"#,
        r#"published <time datetime="2024-05-01T11:59:59Z" title="2024-05-01 11:59:59 UTC">1s ago</time>"#,
    ] {
        at(&page, text);
    }
}

#[test]
fn a_healthy_proxymgr_says_ok_and_lists_no_problems() {
    let page = render(&healthy(), NOW);
    assert!(
        page.contains(r#"<p id="summary" class="ok">OK: 1 service, 2 servers in rotation</p>"#),
        "{page}"
    );
    assert!(page.contains("<title>proxymgr: OK</title>"));
    assert!(!page.contains(r#"id="problems""#));
    assert!(!page.contains("class=\"problem"));
}

#[test]
fn untrusted_names_and_texts_are_escaped() {
    let hostile = r#"<script>alert(1)</script>"'&"#;
    let escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;";
    let mut status = troubled();
    let mut evil = service(
        hostile,
        9000,
        vec![server(
            hostile,
            true,
            Some(ServerState::Maintenance),
            Some(Difference::Quarantined { reason: hostile.to_string() }),
        )],
    );
    evil.watcher = hostile.to_string();
    evil.servers[0].haproxy.as_mut().unwrap().name = Some(hostile.to_string());
    status.services.push(Arc::new(evil));
    status.blocked.push(Blocked { service: hostile.to_string(), reason: hostile.to_string() });
    status.rejected.as_mut().unwrap().error = hostile.to_string();
    status.registry[0].ensemble = hostile.to_string();
    status.source = hostile.to_string();
    status.last_reload.as_mut().unwrap().reasons = vec![hostile.to_string()];
    status.haproxy.as_mut().unwrap().version = hostile.to_string();
    keep_in_web_hold(&mut status, hostile);

    let page = render(&status, NOW);
    assert!(!page.contains("<script"), "{page}");
    assert!(!page.contains("alert(1)</"), "{page}");
    // Every place it went, escaped: attribute values (data-service, data-server, id, href) and text.
    for text in [
        format!(r#"data-service="{escaped}""#),
        format!(r#"data-server="{escaped}""#),
        format!(r#"id="service-{escaped}""#),
        format!(r##"href="#service-{escaped}""##),
        format!(r#"<pre class="error">{escaped}</pre>"#),
        format!("not served: {escaped}"),
        format!("<li>{escaped}</li>"),
    ] {
        at(&page, &text);
    }
    // The page has no markup but its own: every `<` starts one of the template's tags.
    let tags: std::collections::BTreeSet<&str> =
        page.split('<').skip(1).map(|rest| rest.split([' ', '>', '\n']).next().unwrap_or_default()).collect();
    let allowed = [
        "!DOCTYPE", "html", "head", "meta", "title", "style", "body", "header", "h1", "small", "p",
        "section", "h2", "ul", "li", "span", "a", "pre", "dl", "dt", "dd", "time", "table", "thead", "tr",
        "th", "tbody", "td", "h3",
    ];
    for tag in tags {
        let name = tag.trim_start_matches('/');
        assert!(allowed.contains(&name), "unexpected tag <{tag}> on the page");
    }
}

/// Puts `name` among the servers `web`'s removal hold keeps.
fn keep_in_web_hold(status: &mut Status, name: &str) {
    let web = status.services.iter_mut().find(|s| s.name == "web").map(Arc::make_mut).expect("web");
    web.hold.as_mut().expect("web's hold").kept.push(name.to_string());
}

/// The problems list's items as (kind, level, service, text), the text as the page has it (escaped, without
/// the service's name and without the detail below it).
fn listed(page: &str) -> Vec<(String, String, String, String)> {
    let attribute = |item: &str, name: &str| {
        item.split_once(&format!(" {name}=\""))
            .and_then(|(_, rest)| rest.split_once('"'))
            .map_or_else(String::new, |(value, _)| value.to_string())
    };
    page.split(r#"<li class="problem "#)
        .skip(1)
        .map(|item| {
            let item = &item[..at(item, "</li>")];
            let kind = item.split_once('"').expect("the class ends").0.to_string();
            let (level, service) = (attribute(item, "data-level"), attribute(item, "data-service"));
            let text = item.split_once("</span> ").expect("after the kind").1;
            // With a service, its name comes first: `<a class="name" ..>NAME</a>: ` or `<span ..>NAME</span>: `.
            let text = match service.as_str() {
                "" => text,
                name => [format!("{name}</a>: "), format!("{name}</span>: ")]
                    .iter()
                    .find_map(|end| text.split_once(end.as_str()).map(|(_, rest)| rest))
                    .expect("the service's name before the text"),
            };
            let text = text.split_once("\n<pre").map_or(text, |(line, _)| line);
            (kind, level, service, text.to_string())
        })
        .collect()
}

/// `troubled`, and more: a failed reload; `api` with no server in HAProxy and a second quarantined; `assets`
/// with its spec rejected and no server; `new`, whose watcher has not reported; `old`, blocked.
fn much_wrong(status: &mut Status) {
    status.last_reload.as_mut().unwrap().result = ReloadResult::Failed;
    let api = Arc::make_mut(&mut status.services[0]);
    api.servers.iter_mut().for_each(|s| s.haproxy = None);
    api.servers.push(server(
        "10.0.1.9:80",
        true,
        None,
        Some(Difference::Quarantined { reason: "weight out of range".to_string() }),
    ));
    let assets = Arc::make_mut(&mut status.services[1]);
    assets.spec_rejected = true;
    assets.servers.clear();
    let mut awaiting = service("new", 9000, vec![]);
    awaiting.watcher_state = WatcherState::Awaiting;
    status.services.push(Arc::new(awaiting));
    status.blocked.push(Blocked { service: "old".to_string(), reason: "port 80 is taken".to_string() });
}

/// The page lists check's verdict, not a judgement of its own: the same problems in the same order (one item
/// per quarantined server), with the page's texts, and the verdict's level in the summary. The cases where the
/// page used to judge otherwise are among them: no HAProxy within the start's grace is a start under way, and
/// while no HAProxy serves, neither a service without servers nor a failed reload is listed.
#[test]
fn the_page_lists_checks_problems_in_checks_order() {
    type Change = fn(&mut Status);
    type Item = (&'static str, &'static str, &'static str, &'static str);
    let outage: Item = ("outage", "critical", "", "registry session zk1:2181 down for 3m12s");
    let rejected: Item = (
        "rejected",
        "critical",
        "",
        "HAProxy rejected the config 40s ago; the last config it took serves on",
    );
    let quarantined: Item = (
        "quarantined",
        "warning",
        "api",
        "server db-host.invalid:80 quarantined: could not resolve address &#39;db-host.invalid&#39;",
    );
    let held: Item =
        ("held", "warning", "web", "removal hold keeps 1 server in rotation, ends in 4m00s: 10.0.0.2:80");
    let cases: Vec<(&str, Change, &str, Vec<Item>)> = vec![
        (
            "HAProxy serving, much wrong: critical first, each level in check's order",
            much_wrong as Change,
            r#"class="problems critical">CRITICAL: 10 problems"#,
            vec![
                outage,
                rejected,
                (
                    "no-server",
                    "critical",
                    "api",
                    "no server in rotation: the registry lists 3 servers, HAProxy has none of them in rotation",
                ),
                ("no-server", "critical", "assets", "no server in rotation: the registry lists none"),
                (
                    "never-reported",
                    "critical",
                    "new",
                    "no server in rotation: its watcher has not reported in the 2h00m since proxymgr started",
                ),
                ("reload-failed", "warning", "", "the last reload, 40s ago, failed; it is tried again with backoff"),
                quarantined,
                ("quarantined", "warning", "api", "server 10.0.1.9:80 quarantined: weight out of range"),
                (
                    "spec-rejected",
                    "warning",
                    "assets",
                    "HAProxy rejected its current spec; the spec served last stands in for it",
                ),
                held,
                ("blocked", "warning", "old", "not served: port 80 is taken"),
            ],
        ),
        (
            "no HAProxy past the start's grace: not also no server, not a failed reload",
            |status| {
                much_wrong(status);
                status.haproxy = None;
            },
            r#"class="problems critical">CRITICAL: 7 problems"#,
            vec![
                ("no-haproxy", "critical", "", "no HAProxy serves"),
                outage,
                rejected,
                quarantined,
                ("quarantined", "warning", "api", "server 10.0.1.9:80 quarantined: weight out of range"),
                (
                    "spec-rejected",
                    "warning",
                    "assets",
                    "HAProxy rejected its current spec; the spec served last stands in for it",
                ),
                held,
                ("blocked", "warning", "old", "not served: port 80 is taken"),
            ],
        ),
        (
            "no HAProxy within the start's grace: a start under way, below the warnings",
            |status| {
                status.haproxy = None;
                status.started = NOW - 10.0;
                status.registry.clear();
                status.rejected = None;
            },
            r#"class="problems warning">WARNING: 3 problems"#,
            vec![
                quarantined,
                held,
                (
                    "starting",
                    "ok",
                    "",
                    "proxymgr started 10s ago and has not started HAProxy yet: a restart or an upgrade looks like \
                     this for a moment",
                ),
            ],
        ),
        (
            "a start under way alone is OK",
            |status| {
                *status = healthy();
                status.haproxy = None;
                status.started = NOW - 10.0;
            },
            r#"class="problems ok">OK: 1 problem"#,
            vec![(
                "starting",
                "ok",
                "",
                "proxymgr started 10s ago and has not started HAProxy yet: a restart or an upgrade looks like this \
                 for a moment",
            )],
        ),
        (
            "nothing published",
            |status| *status = Status { version: "0.1.0".to_string(), ..Default::default() },
            r#"class="problems unknown">UNKNOWN: 1 problem"#,
            vec![("nothing-published", "unknown", "", "nothing published yet: proxymgr is starting")],
        ),
    ];
    for (name, change, summary, expected) in cases {
        let mut status = troubled();
        change(&mut status);
        let page = render(&status, NOW);
        assert!(page.contains(&format!(r#"<p id="summary" {summary}</p>"#)), "{name}: {page}");
        let items = listed(&page);
        let want: Vec<(String, String, String, String)> = expected
            .iter()
            .map(|(kind, level, service, text)| {
                (kind.to_string(), level.to_string(), service.to_string(), text.to_string())
            })
            .collect();
        assert_eq!(items, want, "{name}");
        // Check's own problems, in its order, are the items' (a quarantine's servers one item each).
        let verdict = check::verdict(&status, NOW);
        let mut from_check: Vec<(&str, String)> = Vec::new();
        for problem in &verdict.problems {
            let times = match problem {
                Problem::Quarantined { servers, .. } => servers.len(),
                _ => 1,
            };
            let name = concerns(problem).unwrap_or_default().to_string();
            from_check.extend(std::iter::repeat((kind(problem), name)).take(times));
        }
        let on_page: Vec<(&str, String)> = items.iter().map(|(k, _, s, _)| (k.as_str(), s.clone())).collect();
        assert_eq!(on_page, from_check, "{name}");
    }
}

#[test]
fn a_problem_links_to_its_service_when_the_page_has_its_section() {
    let mut status = troubled();
    Arc::make_mut(&mut status.services[1]).spec_rejected = true;
    status.blocked.push(Blocked { service: "old".to_string(), reason: "port 80 is taken".to_string() });
    let page = render(&status, NOW);
    at(
        &page,
        r##"<li class="problem spec-rejected" data-level="warning" data-service="assets"><span class="kind">spec-rejected</span> <a class="name" href="#service-assets">assets</a>: HAProxy rejected its current spec"##,
    );
    // A blocked service has no section to link to.
    at(
        &page,
        r#"<li class="problem blocked" data-level="warning" data-service="old"><span class="kind">blocked</span> <span class="name">old</span>: not served"#,
    );
}

#[test]
fn spans_read_as_a_person_says_them() {
    let cases = [
        (-5.0, "0s"),
        (f64::NAN, "0s"),
        (0.0, "0s"),
        (0.9, "0s"),
        (42.0, "42s"),
        (59.99, "59s"),
        (60.0, "1m00s"),
        (192.0, "3m12s"),
        (3599.0, "59m59s"),
        (3600.0, "1h00m"),
        (7500.0, "2h05m"),
        (86_399.0, "23h59m"),
        (86_400.0, "1d00h"),
        (3.0 * 86_400.0 + 4.0 * 3600.0 + 59.0, "3d04h"),
    ];
    for (seconds, expected) in cases {
        assert_eq!(span(seconds), expected, "{seconds}");
    }
    assert_eq!(relative(NOW - 192.0, NOW), "3m12s ago");
    assert_eq!(relative(NOW + 240.0, NOW), "in 4m00s");
    assert_eq!(relative(NOW, NOW), "0s ago");
}

#[test]
fn unix_seconds_read_as_utc() {
    let cases = [
        (0.0, "1970-01-01T00:00:00Z"),
        (-1.0, "1969-12-31T23:59:59Z"),
        (951_782_400.0, "2000-02-29T00:00:00Z"),
        (NOW, "2024-05-01T12:00:00Z"),
        (NOW + 0.999, "2024-05-01T12:00:00Z"),
        (4_102_444_799.0, "2099-12-31T23:59:59Z"),
    ];
    for (unix, expected) in cases {
        assert_eq!(iso_utc(unix), expected, "{unix}");
    }
}

/// The branches `troubled` and `healthy` leave out render too (tinytemplate finds a missing field only when it
/// renders the branch that names it).
#[test]
fn every_branch_of_the_template_renders() {
    let mut status = troubled();
    status.generations[1].started = Some(NOW - 3600.0);
    status.registry[1].last_read = None;
    Arc::make_mut(&mut status.services[1]).servers = vec![
        server("10.0.2.2:80", false, Some(ServerState::Maintenance), Some(Difference::Leaving)),
        server("10.0.2.3:80", true, None, Some(Difference::PendingReload)),
        server("10.0.2.4:80", true, None, Some(Difference::Pending)),
    ];
    Arc::make_mut(&mut status.services[1]).servers[1].registry.as_mut().unwrap().origin = None;
    Arc::make_mut(&mut status.services[2]).servers.clear();
    Arc::make_mut(&mut status.services[2]).watcher_state = WatcherState::Awaiting;
    let page = render(&status, NOW);
    for text in [
        r#"<span class="generation">pid 4100, started <time datetime="2024-05-01T11:00:00Z""#,
        r#"<td>never</td></tr>"#,
        r#"<tr class="server leaving" data-server="10.0.2.2:80">"#,
        "leaving: out of rotation, finishing its connections until the next reload",
        r#"<tr class="server pending-reload" data-server="10.0.2.3:80"><td class="mono nowrap">10.0.2.3:80</td><td>yes</td>"#,
        r#"<td class="no" colspan="3">not in HAProxy</td><td class="difference">pending reload: waits for a reload</td>"#,
        r#"<tr class="server pending" data-server="10.0.2.4:80">"#,
        "<p>No server in either view.</p>",
        r#"<dd class="watcher-state awaiting">awaiting its first report</dd>"#,
    ] {
        at(&page, text);
    }

    let bare = Status { version: "0.1.0".to_string(), ..Default::default() };
    let page = render(&bare, NOW);
    for text in [
        r#"<p id="summary" class="problems unknown">UNKNOWN: 1 problem</p>"#,
        r#"<li class="problem nothing-published" data-level="unknown"><span class="kind">nothing-published</span> nothing published yet: proxymgr is starting</li>"#,
        r#"<p class="down">No HAProxy serves.</p>"#,
        "<p>None since proxymgr started.</p>",
        "<dt>last read</dt><dd>never</dd>",
        "<p>No services.</p>",
    ] {
        at(&page, text);
    }
    assert!(!page.contains("<table class=\"sessions\">"));

    for (result, class) in [
        (ReloadResult::Starting, "result-starting"),
        (ReloadResult::Served, "result-served"),
        (ReloadResult::Rejected, "result-rejected"),
        (ReloadResult::Failed, "result-failed"),
    ] {
        let mut status = healthy();
        status.last_reload = Some(Reload { at: NOW - 3.0, reasons: vec![], result });
        let page = render(&status, NOW);
        at(&page, &format!(r#"<dd class="{class}">"#));
        at(&page, "<dt>reasons</dt><dd>none given</dd>");
    }
}

#[test]
fn beyond_the_listed_servers_only_those_whose_views_differ_are_listed() {
    let mut status = healthy();
    let many = |prefix: &str| -> Vec<ServerView> {
        (0..LISTED_SERVERS / 2 + 1)
            .map(|i| {
                server(&format!("{prefix}.{}.{}:80", i / 250, i % 250), true, Some(ServerState::Ready), None)
            })
            .collect()
    };
    let mut web = service("web", 8080, many("10.1"));
    web.servers[7].difference = Some(Difference::Pending);
    status.services = vec![Arc::new(service("api", 8081, many("10.2"))), Arc::new(web)];
    let page = render(&status, NOW);
    assert_eq!(page.matches("<tr class=\"server").count(), 1, "only the one that differs");
    assert!(page.contains("data-server=\"10.1.0.7:80\""));
    assert!(page.contains("1001 more servers whose two views agree, not listed"), "api's line");
    assert!(page.contains("1000 more servers whose two views agree, not listed"), "web's line");
    let few = render(&healthy(), NOW);
    assert!(!few.contains("not listed") && few.matches("<tr class=\"server").count() == 2, "{few}");
}
