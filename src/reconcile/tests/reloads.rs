//! Stories: reloads.

use super::*;

#[test]
fn reloads_are_coalesced_within_the_window() {
    let mut story = Story::new();
    story.serving(0);
    story.tick(600);
    story.input(1000, services(&[("web", 8080), ("api", 8081)]));
    story.input(1010, servers("api", 1, &[1]));
    assert_eq!(story.wake(), Some(1060), "the window (50 ms) opens with the first change");
    let moved = Server { options: vec!["backup".into()], ..server(1) };
    let input =
        Input::Servers { service: "web".into(), generation: 0, servers: Arc::new(vec![moved, server(2)]) };
    assert!(!started(&story.input(1030, input)));
    let actions = story.tick(1060);
    assert_eq!(
        reasons(&actions),
        [
            ReloadReason::ServiceAdded("api".into()),
            ReloadReason::ServerOptionsChanged { service: "web".into(), server: "10.0.0.1:1".into() }
        ]
    );
}

#[test]
fn a_reload_waits_while_a_new_service_awaits_its_watcher() {
    let mut story = Story::new();
    story.serving(0);
    story.tick(600);
    story.input(1000, services(&[("web", 8080), ("api", 8081)]));
    story.input(1010, servers("api", 1, &[1]));
    story.input(1030, services(&[("web", 8080), ("api", 8081), ("db", 8082)]));
    assert!(!started(&story.tick(1060)), "db's first server set is awaited");
    story.input(1040, servers("db", 2, &[1]));
    let actions = story.tick(1090);
    assert_eq!(
        reasons(&actions),
        [ReloadReason::ServiceAdded("api".into()), ReloadReason::ServiceAdded("db".into())]
    );
}

#[test]
fn the_window_is_not_pushed_back_by_later_changes() {
    let mut story = Story::new();
    story.serving(0);
    story.tick(600);
    story.input(1000, services(&[("web", 8080), ("api", 8081)]));
    story.input(1001, servers("api", 1, &[1]));
    for ms in [1020, 1040] {
        story.input(ms, servers("api", 1, &[1, ms as u16]));
    }
    assert!(started(&story.tick(1051)), "due 50 ms after the first change, whatever came after");
}

#[test]
fn reloads_are_at_least_the_interval_apart() {
    let mut story = Story::new();
    story.serving(0);
    story.input(100, services(&[("web", 8080), ("api", 8081)]));
    story.input(110, servers("api", 1, &[1]));
    assert_eq!(story.wake(), Some(500), "0.5 s after the last reload, not 50 ms after the change");
    assert!(!started(&story.tick(400)));
    assert!(started(&story.tick(500)));
}

#[test]
fn a_new_services_reload_waits_a_second_at_most_for_its_watcher() {
    let mut story = Story::new();
    story.serving(0);
    story.input(1000, services(&[("web", 8080), ("api", 8081)]));
    assert!(!started(&story.tick(1500)), "api's watcher has not reported yet");
    assert_eq!(story.wake(), Some(2000));
    assert_eq!(kinds(&story.tick(2000)), Vec::<&str>::new(), "the window opens once the wait is over");
    assert!(started(&story.tick(2050)));
}

#[test]
fn a_removed_service_stops_its_watcher_and_reloads() {
    let mut story = Story::new();
    story.serving(0);
    story.tick(600);
    let actions = story.input(1000, services(&[]));
    assert_eq!(kinds(&actions), ["Unwatch", "SaveState"]);
    assert_eq!(reasons(&story.tick(1050)), [ReloadReason::ServiceRemoved("web".into())]);
}

#[test]
fn a_changed_server_option_takes_a_reload() {
    let mut story = Story::new();
    story.serving(0);
    story.tick(600);
    let input = Input::Servers {
        service: "web".into(),
        generation: 0,
        servers: Arc::new(vec![Server { options: vec!["backup".into()], ..server(1) }, server(2)]),
    };
    story.input(1000, input);
    assert_eq!(
        reasons(&story.tick(1050)),
        [ReloadReason::ServerOptionsChanged { service: "web".into(), server: "10.0.0.1:1".into() }]
    );
}
