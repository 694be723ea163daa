//! Stories: registrations HAProxy will not take are held out alone.

use super::*;

fn with_options(port: u16, options: &[&str]) -> Server {
    Server { options: options.iter().map(|o| o.to_string()).collect(), ..server(port) }
}

fn reported(service: &str, generation: u64, list: Vec<Server>) -> Input {
    Input::Servers { service: service.into(), generation, servers: Arc::new(list) }
}

/// The 1-based number of the first line of `text` that starts with `prefix`.
fn line_of(text: &str, prefix: &str) -> usize {
    text.lines().position(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix:?} in {text}")) + 1
}

/// HAProxy's alert on `line` of a candidate, as `haproxy -c` words it.
fn alert(line: usize, what: &str) -> &'static str {
    Box::leak(
        format!("[ALERT]    (7) : config : [/etc/haproxy/haproxy.cfg.new:{line}] : {what}").into_boxed_str(),
    )
}

#[test]
fn a_server_add_server_refuses_for_its_own_options_is_held_out_alone() {
    let mut story = Story::new();
    story.serving(0);
    let typo = Refusal::UnknownKeyword { keyword: "chekc".into() };
    story.world.refuse = vec![("add server web/10.0.0.1:3", Some(typo))];
    let actions =
        story.input(1000, reported("web", 0, vec![server(1), server(2), with_options(3, &["chekc"])]));
    assert_eq!(commands(&actions)[0], "add server web/10.0.0.1:3 10.0.0.1:3 check chekc");
    assert!(!started(&story.tick(1050)), "no reload: a reload would fail on it too");
    // Its backend takes dynamic servers still.
    let actions = story
        .input(2000, reported("web", 0, vec![server(1), server(2), with_options(3, &["chekc"]), server(4)]));
    assert_eq!(commands(&actions)[0], "add server web/10.0.0.1:4 10.0.0.1:4 check", "{actions:?}");
    let actions = [actions, story.tick(2050)].concat();
    assert!(!started(&actions));
    let Some(Action::WriteConfig { text, .. }) =
        actions.iter().find(|a| matches!(a, Action::WriteConfig { .. }))
    else {
        panic!("haproxy.cfg is written: {actions:?}")
    };
    assert!(
        text.contains("10.0.0.1:4") && !text.contains("10.0.0.1:3"),
        "held out of haproxy.cfg too: {text}"
    );
    // Its registration changes: it is tried again.
    story.world.refuse.clear();
    let fixed = vec![server(1), server(2), with_options(3, &["backup"]), server(4)];
    let actions = story.input(3000, reported("web", 0, fixed));
    assert_eq!(commands(&actions)[0], "add server web/10.0.0.1:3 10.0.0.1:3 check backup", "{actions:?}");
}

#[test]
fn a_server_with_an_option_dynamic_servers_do_not_take_goes_by_reload() {
    let mut story = Story::new();
    story.serving(0);
    let cookie = Refusal::NotForDynamic { keyword: "cookie".into() };
    story.world.refuse = vec![("add server web/10.0.0.1:3", Some(cookie))];
    let list = vec![server(1), server(2), with_options(3, &["cookie s3"])];
    // A quiet load balancer reloads at once.
    let actions = story.input(1000, reported("web", 0, list.clone()));
    assert_eq!(
        reasons(&actions),
        [ReloadReason::ByReload { service: "web".into(), server: "10.0.0.1:3".into() }]
    );
    assert!(start_text(&actions).contains("server 10.0.0.1:3 10.0.0.1:3 check cookie s3"));
    story.tick(1005);
    // The backend is not marked: a plain new server is added at run time.
    story.world.refuse.clear();
    let actions = story.input(2000, reported("web", 0, [list, vec![server(4)]].concat()));
    assert_eq!(commands(&actions)[0], "add server web/10.0.0.1:4 10.0.0.1:4 check", "{actions:?}");
}

#[test]
fn a_server_named_by_a_host_name_goes_by_reload_and_may_not_resolve() {
    let mut story = Story::new();
    story.serving(0);
    let named = Server::new("web3.example", 80).unwrap();
    let actions = story.input(1000, reported("web", 0, vec![server(1), server(2), named]));
    assert_eq!(
        reasons(&actions),
        [ReloadReason::ByReload { service: "web".into(), server: "web3.example:80".into() }],
        "a server added at run time is not resolved"
    );
    assert!(
        start_text(&actions).contains("server web3.example:80 web3.example:80 check init-addr libc,none"),
        "a name that does not resolve starts in maintenance instead of failing the config"
    );
}

#[test]
fn a_candidate_that_fails_on_server_lines_starts_again_without_them() {
    let mut story = Story::new();
    story.serving(0);
    story.tick(600);
    story.input(1000, services(&[("web", 8080), ("api", 8081)]));
    let list = vec![server(1), with_options(2, &["chekc"]), with_options(3, &["weight 999"])];
    let actions = story.input(1001, reported("api", 1, list));
    let text = start_text(&actions);
    let (two, three) = (line_of(text, "  server 10.0.0.1:2 "), line_of(text, "  server 10.0.0.1:3 "));
    story.world.exit = Some((102, Duration::from_millis(30)));
    // One check names every bad line of a pass: one retry, not one a server.
    let both = format!(
        "{} | {}",
        alert(two, "'server api/10.0.0.1:2' : unknown keyword 'chekc'; did you mean 'check' maybe ?"),
        alert(three, "'server api/10.0.0.1:3' : weight of server 10.0.0.1:3 is not within 0 and 256 (999)..")
    );
    story.world.check = Some(Box::leak(both.into_boxed_str()));
    let actions = story.input(1002, Input::Child);
    assert_eq!(kinds(&actions)[..3], ["Reap", "Check", "Reject"], "{actions:?}");
    story.world.check = None;
    // It starts again once the least time between reloads is over.
    let actions = story.tick(story.wake().unwrap());
    let text = start_text(&actions);
    assert!(text.contains("listen api") && text.contains("server 10.0.0.1:1 10.0.0.1:1 check\n"), "{text}");
    let api = &text[text.find("listen api").unwrap()..text.find("listen web").unwrap()];
    assert!(!api.contains("10.0.0.1:2") && !api.contains("10.0.0.1:3"), "{text}");
}

#[test]
fn a_new_service_whose_options_fail_stays_out_and_the_others_reload() {
    let mut story = Story::new();
    story.serving(0);
    story.tick(600);
    story.input(1000, services(&[("web", 8080), ("api", 8081), ("db", 8082)]));
    story.input(1001, servers("api", 1, &[1]));
    let actions = story.input(1001, servers("db", 2, &[1]));
    let text = start_text(&actions);
    let api = line_of(text, "listen api") + 2;
    story.world.exit = Some((102, Duration::from_millis(30)));
    story.world.check = Some(alert(api, "unknown keyword 'mode'"));
    let actions = story.input(1002, Input::Child);
    assert!(kinds(&actions).contains(&"Unwatch"), "api is left out: {actions:?}");
    story.world.check = None;
    let wake = story.wake().unwrap();
    let text = start_text(&story.tick(wake)).to_string();
    assert!(text.contains("listen db") && !text.contains("listen api"), "{text}");
    story.tick(wake + 5);
    // Its definition changes: it is tried again.
    let mut registry: BTreeMap<String, ServiceSpec> =
        [("web", 8080), ("api", 8081), ("db", 8082)].iter().map(|&(n, p)| (n.to_string(), spec(p))).collect();
    registry.get_mut("api").unwrap().listen_options = vec!["mode tcp".into()];
    let actions = story.input(2000, Input::Services { source: 0, services: registry });
    assert!(kinds(&actions).contains(&"Watch"), "{actions:?}");
}

#[test]
fn a_service_whose_new_options_fail_keeps_the_spec_haproxy_serves() {
    let mut story = Story::new();
    story.serving(0);
    story.tick(600);
    let mut changed = spec(8080);
    changed.listen_options.push("balance chekc".into());
    let registry = [("web".to_string(), changed)].into();
    let actions = story.input(1000, Input::Services { source: 0, services: registry });
    let text = start_text(&actions);
    story.world.exit = Some((102, Duration::from_millis(30)));
    story.world.check = Some(alert(line_of(text, "  balance chekc"), "unknown balance 'chekc'"));
    story.input(1001, Input::Child);
    story.world.check = None;
    // The spec served is what web has: nothing to reload for, and its servers change at run time still.
    assert!(!started(&story.tick(2000)));
    let actions = story.input(3000, servers("web", 0, &[1, 2, 3]));
    assert_eq!(commands(&actions)[0], "add server web/10.0.0.1:3 10.0.0.1:3 check", "{actions:?}");
}
