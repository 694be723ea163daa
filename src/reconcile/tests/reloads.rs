//! Stories: reloads.

use super::*;

#[test]
fn a_change_on_a_quiet_load_balancer_reloads_at_once_and_what_follows_is_coalesced() {
    let mut story = Story::new();
    story.serving(0);
    story.tick(600);
    story.input(1000, services(&[("web", 8080), ("api", 8081)]));
    let actions = story.input(1010, servers("api", 1, &[1]));
    assert_eq!(reasons(&actions), [ReloadReason::ServiceAdded("api".into())], "no reload for 0.5 s: at once");
    story.tick(1015);
    let moved = Server { options: vec!["backup".into()], ..server(1) };
    let input =
        Input::Servers { service: "web".into(), generation: 0, servers: Arc::new(vec![moved, server(2)]) };
    assert!(!started(&story.input(1030, input)));
    story.input(1100, services(&[("web", 8080), ("api", 8081), ("db", 8082)]));
    assert!(!started(&story.input(1110, servers("db", 2, &[1]))));
    assert_eq!(story.wake(), Some(1510), "what follows a reload waits until 0.5 s after it");
    assert_eq!(
        reasons(&story.tick(1510)),
        [
            ReloadReason::ServiceAdded("db".into()),
            ReloadReason::ServerOptionsChanged { service: "web".into(), server: "10.0.0.1:1".into() }
        ]
    );
}

#[test]
fn a_reload_waits_while_a_new_service_awaits_its_watcher() {
    let mut story = Story::new();
    story.serving(0);
    story.tick(600);
    story.input(1000, services(&[("web", 8080), ("api", 8081), ("db", 8082)]));
    assert!(!started(&story.input(1010, servers("api", 1, &[1]))), "db's first server set is awaited");
    let actions = story.input(1040, servers("db", 2, &[1]));
    assert_eq!(
        reasons(&actions),
        [ReloadReason::ServiceAdded("api".into()), ReloadReason::ServiceAdded("db".into())]
    );
}

#[test]
fn the_window_is_not_pushed_back_by_later_changes() {
    let mut story = Story::new();
    story.serving(0);
    story.input(500, services(&[("web", 8080), ("api", 8081)]));
    assert!(started(&story.input(501, servers("api", 1, &[1]))));
    story.tick(506);
    story.input(980, services(&[("web", 8080), ("api", 8081), ("db", 8082)]));
    story.input(981, servers("db", 2, &[1]));
    for ms in [1000, 1020] {
        story.input(ms, servers("db", 2, &[1, ms as u16]));
    }
    assert!(!started(&story.tick(1029)));
    assert!(started(&story.tick(1030)), "due 50 ms after the first change (at 980), whatever came after");
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
    assert!(started(&story.tick(2000)), "once the wait is over, a quiet load balancer reloads at once");
}

#[test]
fn a_removed_service_stops_its_watcher_and_reloads() {
    let mut story = Story::new();
    story.serving(0);
    story.tick(600);
    let actions = story.input(1000, services(&[]));
    assert_eq!(kinds(&actions), ["Unwatch", "SaveState", "Start", "SaveState"]);
    assert_eq!(reasons(&actions), [ReloadReason::ServiceRemoved("web".into())]);
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
    assert_eq!(
        reasons(&story.input(1000, input)),
        [ReloadReason::ServerOptionsChanged { service: "web".into(), server: "10.0.0.1:1".into() }]
    );
}
