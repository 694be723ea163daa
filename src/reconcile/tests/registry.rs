//! Stories: the registry.

use super::*;

#[test]
fn a_service_whose_port_another_has_is_not_set_up() {
    let mut story = Story::new();
    story.serving(0);
    let actions = story.input(1000, services(&[("web", 8080), ("second", 8080)]));
    assert!(!kinds(&actions).contains(&"Watch"), "{actions:?}");
    assert_eq!(story.wake(), Some(6000), "tried again in 5 s");
}

#[test]
fn a_port_that_cannot_be_bound_is_tried_again_every_five_seconds() {
    let mut story = Story::new();
    story.world.taken.insert(8081);
    story.serving(0);
    let actions = story.input(1000, services(&[("web", 8080), ("api", 8081)]));
    assert_eq!(kinds(&actions), ["Bind", "SaveState"], "{actions:?}");
    story.world.taken.clear();
    let actions = story.tick(6000);
    assert_eq!(kinds(&actions)[..2], ["Bind", "Watch"], "{actions:?}");
}

#[test]
fn an_empty_server_set_keeps_the_last_servers() {
    let mut story = Story::new();
    story.serving(0);
    let actions = story.input(1000, servers("web", 0, &[]));
    assert!(commands(&actions).is_empty(), "{actions:?}");
}

#[test]
fn a_stopped_watchers_late_report_is_ignored() {
    let mut story = Story::new();
    story.serving(0);
    assert!(commands(&story.input(1000, servers("web", 7, &[9]))).is_empty());
}

#[test]
fn sighup_switches_sources_and_ignores_the_old_ones_reports() {
    let mut story = Story::new();
    story.serving(0);
    assert_eq!(kinds(&story.input(1000, Input::Hangup)), ["ReadConfig"]);
    let yaml = "service_config:\n  type: directory\n  path: /etc/proxymgr/services\n";
    let config = Config::parse(Path::new("proxymgr.yml"), yaml).unwrap();
    let actions = story.input(1001, Input::ConfigRead(Box::new((config, binary()))));
    let [Action::FollowSource { source: ServiceConfigSource::Directory { .. }, generation: 1 }, Action::UseHaproxy { .. }, ..] =
        &actions[..]
    else {
        panic!("{actions:?}")
    };
    story.tick(1600);
    assert!(story.input(2000, services_from(0, &[])).iter().all(|a| !matches!(a, Action::Unwatch { .. })));
    assert_eq!(kinds(&story.input(2100, services_from(1, &[])))[0], "Unwatch");
}

#[test]
fn sighup_with_new_global_lines_reloads() {
    let mut story = Story::new();
    story.serving(0);
    story.tick(600);
    let yaml = format!("{CONFIG}haproxy:\n  global:\n    - maxconn 1001\n");
    let config = Config::parse(Path::new("proxymgr.yml"), &yaml).unwrap();
    let actions = story.input(1000, Input::ConfigRead(Box::new((config, binary()))));
    assert_eq!(reasons(&actions), [ReloadReason::HeadChanged]);
}
