//! Stories: runtime changes.

use super::*;

#[test]
fn a_server_that_leaves_goes_to_maintenance_without_a_reload() {
    let mut story = Story::new();
    story.serving(0);
    let actions = story.input(1000, servers("web", 0, &[1]));
    assert_eq!(commands(&actions), ["set server web/10.0.0.1:2 state maint"]);
    assert!(!started(&actions));
}

#[test]
fn a_new_server_is_added_at_run_time() {
    let mut story = Story::new();
    story.serving(0);
    let actions = story.input(1000, servers("web", 0, &[1, 2, 3]));
    assert_eq!(
        commands(&actions),
        [
            "add server web/10.0.0.1:3 10.0.0.1:3 check",
            "enable health web/10.0.0.1:3",
            "set server web/10.0.0.1:3 state ready"
        ]
    );
    assert!(!started(&actions));
}

#[test]
fn haproxy_cfg_follows_runtime_changes_at_most_every_200_ms() {
    let mut story = Story::new();
    story.serving(0);
    assert!(kinds(&story.input(1000, servers("web", 0, &[1]))).contains(&"WriteConfig"));
    assert!(!kinds(&story.input(1050, servers("web", 0, &[1, 2]))).contains(&"WriteConfig"));
    assert_eq!(story.wake(), Some(1200));
    let actions = story.tick(1200);
    let Some(Action::WriteConfig { text, .. }) =
        actions.iter().find(|a| matches!(a, Action::WriteConfig { .. }))
    else {
        panic!("{actions:?}")
    };
    assert!(text.contains("server 10.0.0.1:2 10.0.0.1:2"), "{text}");
}

#[test]
fn a_refused_runtime_command_falls_back_to_a_reload() {
    let mut story = Story::new();
    story.serving(0);
    story.world.refuse = vec![("set server", None)];
    let actions = story.input(1000, servers("web", 0, &[1]));
    assert!(matches!(&reasons(&actions)[..], [ReloadReason::RuntimeFailed(_)]), "{actions:?}");
}

#[test]
fn a_refused_dynamic_server_makes_the_service_reload_for_new_servers() {
    let mut story = Story::new();
    story.serving(0);
    story.world.refuse = vec![("add server", Some(Refusal::BackendNotDynamic))];
    let actions = story.input(1000, servers("web", 0, &[1, 2, 3]));
    assert_eq!(commands(&actions)[0], "add server web/10.0.0.1:3 10.0.0.1:3 check", "{actions:?}");
    // A quiet load balancer reloads at once, for the refusal.
    assert_eq!(reasons(&actions), [ReloadReason::DynamicRefused("web".into())]);
    story.tick(1010);
    story.world.refuse.clear();
    // Until its server options change, a new server of web is not tried at run time.
    let actions = story.input(2000, servers("web", 0, &[1, 2, 3, 4]));
    assert!(commands(&actions).is_empty(), "{actions:?}");
    assert_eq!(
        reasons(&actions),
        [ReloadReason::NoDynamicServers { service: "web".into(), server: "10.0.0.1:4".into() }]
    );
}

#[test]
fn a_failed_command_stops_the_rest_of_the_plan() {
    let mut story = Story::new();
    story.serving(0);
    story.world.refuse = vec![("set server web/10.0.0.1:1", None)];
    let actions = story.input(1000, servers("web", 0, &[3]));
    assert_eq!(commands(&actions), ["set server web/10.0.0.1:1 state maint"], "nothing after the failure");
}
