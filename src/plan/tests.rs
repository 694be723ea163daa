//! The planner's table tests.

use super::*;
use crate::service::WatcherSpec;

const V26: Capabilities = Capabilities::of((2, 6));
const V15: Capabilities = Capabilities::of((1, 5));

fn server(port: u16, weight: Option<u16>) -> Server {
    Server { weight, ..Server::new("10.0.0.1", port as i64).unwrap() }
}

fn spec(options: &[&str]) -> ServiceSpec {
    ServiceSpec {
        port: Some(80),
        listen_options: vec![],
        server_options: options.iter().map(|s| s.to_string()).collect(),
        watcher: WatcherSpec::Zookeeper { server: "z:1".into(), path: "/s".into() },
        ..ServiceSpec::example()
    }
}

/// Tests leak what a `Desired` borrows: the reconciler's state, in the daemon.
fn leak<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

fn desired(servers: &[Server]) -> Desired<'static> {
    let service = DesiredService {
        skeleton: "listen web",
        spec: leak(spec(&["check"])),
        servers: leak(servers.to_vec()),
        dynamic: true,
        by_reload: leak(BTreeSet::new()),
    };
    Desired { head: "head", defaults: &[], services: [("web", service)].into(), ..Desired::default() }
}

fn with_options(mut desired: Desired<'static>, options: &[&str]) -> Desired<'static> {
    desired.services.get_mut("web").unwrap().spec = leak(spec(options));
    desired
}

/// The running state: `ready` servers and servers in maintenance.
fn running(ready: &[Server], maint: &[Server]) -> Running {
    let mut running = desired(ready).running(&BTreeMap::new());
    let web = running.services.get_mut("web").unwrap();
    for s in maint {
        web.servers.insert(s.name(), RunningServer::of(s, false));
    }
    running
}

struct Case {
    what: &'static str,
    running: Running,
    desired: Desired<'static>,
    caps: Capabilities,
    tidy: bool,
    commands: &'static [&'static str],
    reload: Vec<ReloadReason>,
}

fn case(
    what: &'static str,
    running: Running,
    desired: Desired<'static>,
    commands: &'static [&'static str],
) -> Case {
    Case { what, running, desired, caps: V26, tidy: false, commands, reload: vec![] }
}

#[test]
fn the_table() {
    let (a, b, c) = (|| server(1, None), || server(2, None), || server(3, None));
    let a5 = || server(1, Some(5));
    let cases = [
        case("nothing changed", running(&[a(), b()], &[]), desired(&[a(), b()]), &[]),
        case(
            "a server leaves",
            running(&[a(), b()], &[]),
            desired(&[a()]),
            &["set server web/10.0.0.1:2 state maint"],
        ),
        case(
            "it returns",
            running(&[a()], &[b()]),
            desired(&[a(), b()]),
            &["set server web/10.0.0.1:2 state ready"],
        ),
        case(
            "a brand-new server",
            running(&[a()], &[]),
            desired(&[a(), c()]),
            &[
                "add server web/10.0.0.1:3 10.0.0.1:3 check",
                "enable health web/10.0.0.1:3",
                "set server web/10.0.0.1:3 state ready",
            ],
        ),
        case("a weight changes", running(&[a()], &[]), desired(&[a5()]), &["set weight web/10.0.0.1:1 5"]),
        case(
            "back to the default weight",
            running(&[a5()], &[]),
            desired(&[a()]),
            &["set weight web/10.0.0.1:1 1"],
        ),
        case(
            "the default weight comes from the server options",
            running(&[a5()], &[]),
            with_options(desired(&[a()]), &["check", "weight 5"]),
            &[],
        ),
        case(
            "a returning server with a new weight",
            running(&[], &[a()]),
            desired(&[a5()]),
            &["set server web/10.0.0.1:1 state ready", "set weight web/10.0.0.1:1 5"],
        ),
        Case {
            tidy: true,
            ..case("tidy deletes", running(&[a()], &[b()]), desired(&[a()]), &["del server web/10.0.0.1:2"])
        },
        case("without tidy it stays", running(&[a()], &[b()]), desired(&[a()]), &[]),
        case(
            "a new server's own options go on its line",
            running(&[a()], &[]),
            desired(&[a(), Server { options: vec!["backup".into()], ..c() }]),
            &[
                "add server web/10.0.0.1:3 10.0.0.1:3 check backup",
                "enable health web/10.0.0.1:3",
                "set server web/10.0.0.1:3 state ready",
            ],
        ),
        Case {
            reload: vec![ReloadReason::ServerOptionsChanged {
                service: "web".into(),
                server: "10.0.0.1:1".into(),
            }],
            ..case(
                "a server's own options changed",
                running(&[a()], &[]),
                desired(&[Server { options: vec!["backup".into()], ..a() }]),
                &[],
            )
        },
        Case {
            caps: V15,
            tidy: true,
            ..case(
                "HAProxy 1.5 disables",
                running(&[a(), b()], &[]),
                desired(&[a()]),
                &["disable server web/10.0.0.1:2"],
            )
        },
        Case {
            caps: V15,
            ..case(
                "HAProxy 1.5 enables",
                running(&[a()], &[b()]),
                desired(&[a(), b()]),
                &["enable server web/10.0.0.1:2"],
            )
        },
        Case {
            caps: V15,
            reload: vec![ReloadReason::TooOldToAdd { service: "web".into(), server: "10.0.0.1:3".into() }],
            ..case("HAProxy 1.5 reloads for a new server", running(&[a()], &[]), desired(&[a(), c()]), &[])
        },
    ];
    for Case { what, running, desired, caps, tidy, commands, reload } in cases {
        let plan = plan(&running, &desired, &caps, if tidy { Scope::Tidy } else { Scope::All });
        let got: Vec<String> =
            plan.steps.iter().flat_map(|s| s.commands(&caps)).map(|c| c.to_string()).collect();
        assert_eq!(got, commands, "{what}: commands");
        assert_eq!(plan.reload, reload, "{what}: reload");
    }
}

#[test]
fn what_takes_a_reload() {
    let a = server(1, None);
    let base = desired(std::slice::from_ref(&a));
    let running = base.running(&BTreeMap::new());
    let mut head = base.clone();
    head.head = "other head";
    let mut skeleton = desired(&[a.clone(), server(2, None)]);
    skeleton.services.get_mut("web").unwrap().skeleton = "listen web port 81";
    let mut added = base.clone();
    added.services.insert("api", base.services["web"]);
    let mut removed = base.clone();
    removed.services.clear();
    let mut refused = desired(&[a, server(2, None)]);
    refused.services.get_mut("web").unwrap().dynamic = false;
    for (what, desired, reason) in [
        ("head", head, ReloadReason::HeadChanged),
        ("skeleton", skeleton.clone(), ReloadReason::Reshaped("web".into())),
        ("added", added, ReloadReason::ServiceAdded("api".into())),
        ("removed", removed, ReloadReason::ServiceRemoved("web".into())),
        (
            "refused",
            refused,
            ReloadReason::NoDynamicServers { service: "web".into(), server: "10.0.0.1:2".into() },
        ),
    ] {
        assert_eq!(plan(&running, &desired, &V26, Scope::All).reload, vec![reason], "{what}");
    }
    // Out of scope, a service's servers are not compared; what takes a reload still is, on every service
    // while `desired` is complete, on those it holds when not.
    let nothing = BTreeSet::new();
    let scoped = plan(&running, &skeleton, &V26, Scope::Reshaped(&nothing));
    assert!(scoped.steps.is_empty() && scoped.reload.len() == 1, "{scoped:?}");
    let partial = Desired { services: BTreeMap::new(), ..skeleton.clone() };
    assert_eq!(plan(&running, &partial, &V26, Scope::Changed(&nothing)), Plan::default());
    let web = BTreeSet::from(["web".to_string()]);
    let scoped = plan(&running, &skeleton, &V26, Scope::Changed(&web));
    assert!(scoped.steps.len() == 1 && scoped.reload.len() == 1, "{scoped:?}");
    let only_api = Desired { services: [("api", base.services["web"])].into(), ..base.clone() };
    let api = BTreeSet::from(["api".to_string()]);
    assert_eq!(
        plan(&running, &only_api, &V26, Scope::Changed(&api)).reload,
        [ReloadReason::ServiceAdded("api".into())]
    );
    // A changed skeleton still lets server changes through at once.
    let plan = plan(&running, &skeleton, &V26, Scope::All);
    assert!(matches!(&plan.steps[..], [Step::Add { .. }]), "{plan:?}");
}

#[test]
fn applying_the_steps_reaches_the_desired_state() {
    let (a, b, c) = (server(1, None), server(2, Some(3)), server(3, None));
    let mut running = running(&[a.clone(), server(2, None)], std::slice::from_ref(&c));
    let desired = desired(&[b.clone(), c.clone(), server(4, None)]);
    let first = plan(&running, &desired, &V26, Scope::All);
    for step in &first.steps {
        running.apply(step);
    }
    let want = desired.running(&BTreeMap::new());
    let ready: Vec<_> = running.services["web"]
        .servers
        .iter()
        .filter(|(_, s)| s.ready)
        .map(|(n, s)| (n.clone(), s.clone()))
        .collect();
    let want_ready: Vec<_> = want.services["web"].servers.clone().into_iter().collect();
    assert_eq!(ready, want_ready);
    assert_eq!(
        plan(&running, &desired, &V26, Scope::All),
        Plan::default(),
        "a second plan has nothing to do"
    );
    let tidy = plan(&running, &desired, &V26, Scope::Tidy);
    assert_eq!(tidy.steps, vec![Step::Delete { service: "web".into(), server: a.name() }]);
}

#[test]
fn a_server_added_at_run_time_gets_what_default_server_gives_a_reloaded_one() {
    let running = running(&[server(1, None)], &[]);
    let mut desired = desired(&[server(1, None), server(2, Some(5))]);
    let defaults = ["mode tcp".to_string(), "default-server inter 1s fall 2 maxconn 7".to_string()];
    desired.defaults = leak(defaults.to_vec());
    let mut spec = desired.services["web"].spec.clone();
    spec.listen_options = vec!["  default-server  rise 3".into(), "default-servers x".into()];
    desired.services.get_mut("web").unwrap().spec = leak(spec);
    let plan = plan(&running, &desired, &V26, Scope::All);
    let Some(Step::Add { arguments, .. }) = plan.steps.first() else { panic!("{plan:?}") };
    assert_eq!(
        arguments, "10.0.0.1:2 inter 1s fall 2 maxconn 7 rise 3 weight 5 check",
        "defaults' default-server, then the service's, then the server's own: later words override earlier ones"
    );
}

#[test]
fn servers_named_by_host_names_or_held_for_reload_are_not_added_at_run_time() {
    let running = running(&[server(1, None)], &[]);
    let named = Server::new("web2.example", 80).unwrap();
    let mut desired = desired(&[server(1, None), server(3, None), named]);
    desired.services.get_mut("web").unwrap().by_reload = leak(BTreeSet::from([server(3, None).name()]));
    let plan = plan(&running, &desired, &V26, Scope::All);
    assert!(plan.steps.is_empty(), "{plan:?}");
    assert_eq!(
        plan.reload,
        [
            ReloadReason::ByReload { service: "web".into(), server: "10.0.0.1:3".into() },
            ReloadReason::ByReload { service: "web".into(), server: "web2.example:80".into() },
        ]
    );
}

const V24: Capabilities = Capabilities::of((2, 4));

/// A running state with slots (HAProxy 1.8 to 2.4): servers ready and in maintenance with their slots, and the
/// empty slots.
fn slotted(ready: &[(Server, u32)], maint: &[(Server, u32)], empty: &[u32]) -> Running {
    let mut running = desired(&[]).running(&BTreeMap::new());
    let web = running.services.get_mut("web").unwrap();
    for (servers, ready) in [(ready, true), (maint, false)] {
        for (s, slot) in servers {
            web.servers.insert(s.name(), RunningServer { slot: Some(*slot), ..RunningServer::of(s, ready) });
        }
    }
    web.empty_slots = empty.iter().copied().collect();
    running
}

#[test]
fn slots_take_new_servers_where_haproxy_cannot_add_them() {
    let (a, b, c, d) = (server(1, None), server(2, None), server(3, None), server(4, Some(7)));
    let fill = |slot: u32, port: u16, weight: Option<u16>| -> Vec<String> {
        let mut commands = vec![format!("set server web/slot{slot} addr 10.0.0.1 port {port}")];
        commands.extend(weight.map(|w| format!("set weight web/slot{slot} {w}")));
        commands.push(format!("set server web/slot{slot} state ready"));
        commands
    };
    let named = Server::new("db.example", 5).unwrap();
    let own = Server { options: vec!["backup".into()], ..server(5, None) };
    let no_slot = |s: &Server| ReloadReason::NoSlotLeft { service: "web".into(), server: s.name() };
    let by_reload = |s: &Server| ReloadReason::ByReload { service: "web".into(), server: s.name() };
    type SlotCase = (&'static str, Running, Desired<'static>, Vec<String>, Vec<ReloadReason>);
    let cases: Vec<SlotCase> = vec![
        (
            "a newcomer fills the lowest empty slot, with its weight where the slot has another",
            slotted(&[(a.clone(), 1)], &[], &[3, 2]),
            desired(&[a.clone(), c.clone(), d.clone()]),
            [fill(2, 3, None), fill(3, 4, Some(7))].concat(),
            vec![],
        ),
        (
            "with no empty slot, it takes the slot of a server gone into maintenance before, and its weight",
            slotted(&[(a.clone(), 1)], &[(server(2, Some(9)), 2)], &[]),
            desired(&[a.clone(), c.clone()]),
            fill(2, 3, Some(1)),
            vec![],
        ),
        (
            "a server leaving in the same plan keeps its slot for now: a reload",
            slotted(&[(a.clone(), 1), (b.clone(), 2)], &[], &[]),
            desired(&[a.clone(), c.clone()]),
            vec!["set server web/slot2 state maint".into()],
            vec![no_slot(&c)],
        ),
        (
            "out, back and weight by the slot's name",
            slotted(&[(a.clone(), 1), (server(4, None), 4)], &[(b.clone(), 2)], &[3]),
            desired(&[b.clone(), d.clone()]),
            vec![
                "set server web/slot1 state maint".into(),
                "set server web/slot2 state ready".into(),
                "set weight web/slot4 7".into(),
            ],
            vec![],
        ),
        (
            "a host name or options of its own take a reload",
            slotted(&[(a.clone(), 1)], &[], &[2, 3]),
            desired(&[a.clone(), named.clone(), own.clone()]),
            vec![],
            vec![by_reload(&named), by_reload(&own)],
        ),
    ];
    for (what, running, desired, commands, reload) in cases {
        let plan = plan(&running, &desired, &V24, Scope::All);
        let got: Vec<String> =
            plan.steps.iter().flat_map(|s| s.commands(&V24)).map(|c| c.to_string()).collect();
        assert_eq!(got, commands, "{what}: commands");
        assert_eq!(plan.reload, reload, "{what}: reload");
    }
}

#[test]
fn filled_slots_are_the_desired_state() {
    let (a, b, c) = (server(1, None), server(2, None), server(3, Some(4)));
    let mut running = slotted(&[(a.clone(), 1)], &[(b.clone(), 2)], &[3]);
    let desired = desired(&[a.clone(), c.clone(), server(4, None)]);
    for step in plan(&running, &desired, &V24, Scope::All).steps {
        running.apply(&step);
    }
    let web = &running.services["web"];
    assert!(web.empty_slots.is_empty(), "{web:?}");
    let slots: Vec<(String, Option<u32>, bool)> =
        web.servers.iter().map(|(name, s)| (name.clone(), s.slot, s.ready)).collect();
    let want =
        [(a.name(), Some(1), true), (c.name(), Some(3), true), (server(4, None).name(), Some(2), true)];
    assert_eq!(slots, want, "b gave its slot up to the second newcomer");
    assert_eq!(plan(&running, &desired, &V24, Scope::All), Plan::default());
}

/// A frontend `web` with its map at `/m/web.map` and these `(key, backend)` routes.
fn routes(map: &str, entries: &[(&str, &str)]) -> Routes {
    let routes = entries.iter().map(|(k, b)| (Key::new("", k), b.to_string())).collect();
    [("web".to_string(), FrontendRoutes { map: map.to_string(), routes })].into()
}

#[test]
fn routes_change_through_the_map_without_a_reload() {
    let desired_with =
        |entries: &[(&str, &str)]| Desired { routes: leak(routes("/m/web.map", entries)), ..desired(&[]) };
    let running_with =
        |entries: &[(&str, &str)]| Running { routes: routes("/m/web.map", entries), ..running(&[], &[]) };
    // (what, running, desired, commands): "web" is the one backend both have.
    type Entries = &'static [(&'static str, &'static str)];
    let table: &[(&str, Entries, Entries, &[&str])] = &[
        ("nothing changed", &[("a.test/", "web")], &[("a.test/", "web")], &[]),
        ("a new key", &[], &[("a.test/", "web")], &["add map /m/web.map a.test/ web"]),
        ("a key gone", &[("a.test/", "web")], &[], &["del map /m/web.map a.test/"]),
        (
            "keys gone go first",
            &[("b.test/", "web")],
            &[("a.test/", "web")],
            &["del map /m/web.map b.test/", "add map /m/web.map a.test/ web"],
        ),
        (
            "a key moved to a backend HAProxy lacks waits for its reload",
            &[("a.test/", "web")],
            &[("a.test/", "api")],
            &[],
        ),
        ("a new key of a backend HAProxy lacks waits for its reload", &[], &[("a.test/", "api")], &[]),
    ];
    for (what, have, want, commands) in table {
        let plan = plan(&running_with(have), &desired_with(want), &V26, Scope::All);
        let sent: Vec<String> =
            plan.steps.iter().flat_map(|s| s.commands(&V26)).map(|c| c.to_string()).collect();
        assert_eq!(sent, *commands, "{what}");
        assert_eq!(plan.reload, [], "{what}: routes take no reload");
    }
}

#[test]
fn a_key_moves_between_backends_and_is_recorded_when_applied() {
    let mut running = running(&[], &[]);
    let api = running.services["web"].clone();
    running.services.insert("api".into(), RunningService { skeleton: "listen api".into(), ..api.clone() });
    running.routes = routes("/m/web.map", &[("a.test/", "web")]);
    let mut want = desired(&[]);
    let api_spec = DesiredService { skeleton: "listen api", ..want.services["web"] };
    want.services.insert("api", api_spec);
    want.routes = leak(routes("/m/web.map", &[("a.test/", "api")]));
    let plan = plan(&running, &want, &V26, Scope::All);
    let sent: Vec<String> = plan.steps.iter().flat_map(|s| s.commands(&V26)).map(|c| c.to_string()).collect();
    assert_eq!(sent, ["set map /m/web.map a.test/ api"]);
    assert_eq!(plan.steps[0].service(), "api");
    assert_eq!(plan.steps[0].kind(), "route");
    plan.steps.iter().for_each(|s| running.apply(s));
    assert_eq!(running.routes, *want.routes);
}

#[test]
fn a_backend_waiting_for_its_new_skeleton_gets_no_route_before_its_reload() {
    // HAProxy has `web`, but as the TCP section it was before it joined the frontend.
    let running = Running { routes: routes("/m/web.map", &[]), ..running(&[], &[]) };
    let mut want = desired(&[]);
    want.services.get_mut("web").unwrap().skeleton = "backend web\n  mode http";
    want.routes = leak(routes("/m/web.map", &[("a.test/", "web")]));
    let plan = plan(&running, &want, &V26, Scope::All);
    assert_eq!(plan.steps, []);
    assert_eq!(plan.reload, [ReloadReason::Reshaped("web".into())]);
}

#[test]
fn a_frontend_haproxy_has_with_another_map_gets_its_routes_by_reload() {
    let running = Running { routes: routes("/old/web.map", &[]), ..running(&[], &[]) };
    let want = Desired {
        head: "new head",
        routes: leak(routes("/m/web.map", &[("a.test/", "web")])),
        ..desired(&[])
    };
    let plan = plan(&running, &want, &V26, Scope::All);
    assert_eq!(plan.steps, []);
    assert_eq!(plan.reload, [ReloadReason::HeadChanged]);
}
