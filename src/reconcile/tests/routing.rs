//! Stories: shared frontends and their routes.

use super::*;
use crate::route::Join;

const EDGE: &str = "service_config:\n  type: zookeeper\n  servers: 127.0.0.1:2181\nstate_file: /var/lib/p/state.json\nhaproxy:\n  frontends:\n    web: {bind: \"0.0.0.0:80\"}\n";

/// `name` as a backend of the frontend `web`, routed for `hosts`.
fn joined(name: &str, hosts: &[&str]) -> (String, ServiceSpec) {
    let join = Join { hosts: hosts.iter().map(|h| h.to_string()).collect(), paths: vec![], default: false };
    (name.to_string(), ServiceSpec { port: None, frontends: [("web".to_string(), join)].into(), ..spec(0) })
}

fn registry(list: &[(String, ServiceSpec)]) -> Input {
    Input::Services { source: 0, services: list.iter().cloned().collect() }
}

/// `api` and `www` on the frontend `web`, each with a server; HAProxy serves them.
fn edge() -> Story {
    let mut story = Story::with_config(EDGE, BTreeMap::new());
    let actions = story.input(0, registry(&[joined("api", &["api.test"]), joined("www", &["www.test"])]));
    let Some(Action::Bind { addresses }) = actions.first() else { panic!("{actions:?}") };
    assert_eq!(addresses, &["0.0.0.0:80".parse().unwrap()], "the frontend's listener is bound first");
    story.input(0, servers("api", 0, &[1]));
    let actions = story.input(0, servers("www", 1, &[2]));
    let Some(Action::Start { text, maps, fds, .. }) =
        actions.iter().find(|a| matches!(a, Action::Start { .. }))
    else {
        panic!("{actions:?}")
    };
    assert!(text.contains("frontend web\n  bind fd@1080\n") && text.contains("\nbackend api\n"), "{text}");
    assert_eq!(fds, &[1080], "the frontend's listener is passed, and no service has a port");
    assert_eq!(maps.len(), 1);
    assert_eq!(maps[0].0, Path::new("/var/lib/p/maps/web.map"));
    assert!(maps[0].1.ends_with("api.test/ api\nwww.test/ www\n"), "{}", maps[0].1);
    story.tick(5);
    story
}

#[test]
fn a_host_moved_added_or_removed_changes_the_map_at_run_time() {
    let mut story = edge();
    let actions = story
        .input(1000, registry(&[joined("api", &["api.test", "new.test"]), joined("www", &["api2.test"])]));
    assert_eq!(
        commands(&actions),
        [
            "del map /var/lib/p/maps/web.map www.test/",
            "add map /var/lib/p/maps/web.map api2.test/ www",
            "add map /var/lib/p/maps/web.map new.test/ api",
        ]
    );
    assert!(!started(&actions), "{actions:?}");
    let actions = story.input(1100, registry(&[joined("api", &["api.test"]), joined("www", &["new.test"])]));
    assert_eq!(
        commands(&actions),
        ["del map /var/lib/p/maps/web.map api2.test/", "set map /var/lib/p/maps/web.map new.test/ www"]
    );
    assert!(!started(&actions));
    // The map file follows, with haproxy.cfg.
    let actions = story.tick(1300);
    let Some(Action::WriteConfig { maps, .. }) =
        actions.iter().find(|a| matches!(a, Action::WriteConfig { .. }))
    else {
        panic!("{actions:?}")
    };
    assert!(maps[0].1.ends_with("api.test/ api\nnew.test/ www\n"), "{}", maps[0].1);
}

#[test]
fn a_new_backend_takes_a_reload_and_its_routes_come_with_it() {
    let mut story = edge();
    let list = [joined("api", &["api.test"]), joined("www", &["www.test"]), joined("new", &["new.test"])];
    let actions = story.input(1000, registry(&list));
    assert_eq!(commands(&actions), Vec::<String>::new(), "no route to a backend HAProxy lacks");
    let actions = story.input(1000, servers("new", 2, &[3]));
    let Some(Action::Start { maps, .. }) = actions.iter().find(|a| matches!(a, Action::Start { .. })) else {
        panic!("{actions:?}")
    };
    assert!(maps[0].1.contains("new.test/ new\n"), "{}", maps[0].1);
    assert_eq!(reasons(&actions), [ReloadReason::ServiceAdded("new".into())]);
}

#[test]
fn a_host_two_services_claim_stays_with_the_one_that_had_it() {
    let mut story = edge();
    // `aaa` sorts first, but `api` routes api.test already.
    let list = [
        joined("aaa", &["api.test", "aaa.test"]),
        joined("api", &["api.test"]),
        joined("www", &["www.test"]),
    ];
    story.input(1000, registry(&list));
    let actions = story.input(1000, servers("aaa", 2, &[3]));
    let Some(Action::Start { maps, .. }) = actions.iter().find(|a| matches!(a, Action::Start { .. })) else {
        panic!("{actions:?}")
    };
    assert!(maps[0].1.contains("aaa.test/ aaa\napi.test/ api\n"), "{}", maps[0].1);
}

#[test]
fn default_servers_serve_while_the_registry_has_none() {
    let mut story = Story::new();
    let fallback = Server::new("10.9.9.9", 80).unwrap();
    let web = ServiceSpec { default_servers: vec![fallback.clone()], ..spec(8080) };
    story.input(0, Input::Services { source: 0, services: [("web".to_string(), web)].into() });
    let actions = story.input(0, servers("web", 0, &[]));
    assert!(start_text(&actions).contains("server 10.9.9.9:80 10.9.9.9:80"), "{}", start_text(&actions));
    story.tick(5);
    // The registry's servers replace them as soon as it has any.
    let actions = story.input(1000, servers("web", 0, &[1]));
    assert_eq!(
        commands(&actions),
        [
            "set server web/10.9.9.9:80 state maint",
            "add server web/10.0.0.1:1 10.0.0.1:1 check",
            "enable health web/10.0.0.1:1",
            "set server web/10.0.0.1:1 state ready",
        ]
    );
    // And come back when it has none again.
    let actions = story.input(2000, servers("web", 0, &[]));
    assert_eq!(
        commands(&actions),
        ["set server web/10.0.0.1:1 state maint", "set server web/10.9.9.9:80 state ready"]
    );
}

#[test]
fn a_service_named_as_a_frontend_is_not_set_up() {
    let mut story = Story::with_config(EDGE, BTreeMap::new());
    let actions = story.input(0, registry(&[joined("web", &["web.test"]), joined("api", &["api.test"])]));
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Watch { service, .. } if service == "web")),
        "{actions:?}"
    );
    assert!(
        actions.iter().any(|a| matches!(a, Action::Watch { service, .. } if service == "api")),
        "{actions:?}"
    );
}

#[test]
fn a_new_frontend_on_sighup_is_bound_and_served_by_reload() {
    let mut story = edge();
    let yaml = format!("{EDGE}    admin: {{bind: \"127.0.0.1:81\"}}\n");
    let config = Config::parse(Path::new("proxymgr.yml"), &format!("{yaml}status: off\n")).unwrap();
    let actions = story.input(1000, Input::ConfigRead(Box::new((config, binary()))));
    let Some(Action::Bind { addresses }) = actions.iter().find(|a| matches!(a, Action::Bind { .. })) else {
        panic!("{actions:?}")
    };
    assert_eq!(addresses, &["127.0.0.1:81".parse().unwrap()]);
    let start = start_text(&actions);
    assert!(start.contains("frontend admin\n  bind fd@1081\n"), "{start}");
    assert_eq!(reasons(&actions), [ReloadReason::HeadChanged]);
}

#[test]
fn new_default_servers_stand_in_at_once_while_the_registry_has_none() {
    let mut story = Story::new();
    let with = |port: u16| {
        let web = ServiceSpec {
            default_servers: vec![Server::new("10.9.9.9", port.into()).unwrap()],
            ..spec(8080)
        };
        Input::Services { source: 0, services: [("web".to_string(), web)].into() }
    };
    story.input(0, with(80));
    story.input(0, servers("web", 0, &[]));
    story.tick(5);
    let actions = story.input(1000, with(81));
    assert_eq!(
        commands(&actions),
        [
            "set server web/10.9.9.9:80 state maint",
            "add server web/10.9.9.9:81 10.9.9.9:81 check",
            "enable health web/10.9.9.9:81",
            "set server web/10.9.9.9:81 state ready",
        ]
    );
}

#[test]
fn a_key_two_services_claim_stays_with_the_one_the_state_file_names_across_a_restart() {
    let list = [joined("aaa", &["x.test"]), joined("zzz", &["x.test"])];
    let start = |routes| {
        let mut story = Story::with_binary(EDGE, BTreeMap::new(), &binary(), routes);
        story.input(0, registry(&list));
        story.input(0, servers("aaa", 0, &[1]));
        let actions = story.input(0, servers("zzz", 1, &[2]));
        let Some(Action::Start { maps, .. }) = actions.iter().find(|a| matches!(a, Action::Start { .. }))
        else {
            panic!("{actions:?}")
        };
        maps[0].1.lines().last().unwrap().to_string()
    };
    assert_eq!(start(BTreeMap::new()), "x.test/ aaa", "with no state file, the first by name");
    let saved = [("web".to_string(), [("x.test/".to_string(), "zzz".to_string())].into())].into();
    assert_eq!(start(saved), "x.test/ zzz", "the state file says zzz had it");
}

#[test]
fn the_state_file_names_who_has_each_key() {
    let mut story = edge();
    let mut actions =
        story.input(1000, registry(&[joined("api", &["api.test"]), joined("www", &["new.test"])]));
    actions.extend(story.tick(2000));
    let Some(Action::SaveState { snapshot, .. }) =
        actions.iter().find(|a| matches!(a, Action::SaveState { .. }))
    else {
        panic!("{actions:?}")
    };
    let expected: crate::state::SavedRoutes = [(
        "web".to_string(),
        [("api.test/".to_string(), "api".to_string()), ("new.test/".to_string(), "www".to_string())].into(),
    )]
    .into();
    assert_eq!(snapshot.routes, expected);
}

#[test]
fn the_drift_check_reads_each_map_and_sets_right_what_was_changed_by_hand() {
    let mut story = edge();
    // By hand: api.test removed, a route proxymgr never made added, and an entry no join could make.
    let map = "/var/lib/p/maps/web.map".to_string();
    let by_hand = [("www.test/", "www"), ("evil.test/", "api"), ("a;b", "api")];
    story.world.maps.insert(map, by_hand.iter().map(|(k, b)| (k.to_string(), b.to_string())).collect());
    for (backend, port) in [("api", 1), ("www", 2)] {
        let state = ServerStatus {
            name: format!("10.0.0.1:{port}"),
            address: "10.0.0.1".into(),
            port,
            weight: 1,
            maint: false,
        };
        story.world.servers_state.insert(backend.into(), [(format!("10.0.0.1:{port}"), state)].into());
    }
    let actions = story.tick(30_000);
    assert!(kinds(&actions).contains(&"QueryMap"), "{actions:?}");
    assert_eq!(
        commands(&actions),
        ["del map /var/lib/p/maps/web.map evil.test/", "add map /var/lib/p/maps/web.map api.test/ api"]
    );
}
