//! Stories: the first start.

use super::*;

#[test]
fn the_first_start_waits_for_the_registry_and_every_watcher() {
    let mut story = Story::new();
    assert!(story.tick(1000).is_empty(), "nothing before the registry answers");
    let actions = story.input(1500, services(&[("web", 8080), ("api", 8081)]));
    assert_eq!(kinds(&actions), ["Bind", "Watch", "Watch", "SaveState"], "{actions:?}");
    assert!(!started(&story.input(1600, servers("web", 1, &[1]))), "api's watcher has not reported");
    let actions = story.input(1700, servers("api", 0, &[2]));
    assert_eq!(reasons(&actions), [ReloadReason::FirstStart]);
}

#[test]
fn a_silent_watcher_holds_the_first_start_for_the_startup_wait_only() {
    let mut story = Story::new();
    story.input(10, services(&[("web", 8080)]));
    assert!(!started(&story.tick(2999)));
    assert_eq!(story.wake(), Some(3000));
    assert!(started(&story.tick(3000)));
}

#[test]
fn the_first_start_waits_on_while_watchers_keep_reporting() {
    let mut story = Story::new();
    story.input(10, services(&[("a", 8080), ("b", 8081), ("c", 8082)]));
    story.input(2500, servers("a", 0, &[1]));
    assert!(!started(&story.tick(3000)), "a reported 0.5 s ago: more may come");
    story.input(3400, servers("b", 1, &[1]));
    assert!(!started(&story.tick(4000)));
    assert_eq!(story.wake(), Some(4400), "one quiet second after the last report");
    assert!(started(&story.tick(4400)));
}

#[test]
fn the_first_start_waits_thirty_seconds_at_most() {
    let mut story = Story::new();
    story.input(10, services(&[("a", 8080), ("b", 8081)]));
    for ms in (500..30_000).step_by(500) {
        assert!(!started(&story.input(ms, servers("a", 0, &[ms as u16]))), "at {ms} ms");
    }
    assert!(started(&story.tick(30_000)));
}

#[test]
fn a_new_process_gets_nothing_before_it_answers_with_its_pid() {
    let mut story = Story::new();
    story.world.answers = false;
    story.input(0, services(&[("web", 8080)]));
    let actions = story.input(10, servers("web", 0, &[1]));
    assert_eq!(kinds(&actions), ["Start", "SaveState"]);
    assert_eq!(kinds(&story.tick(15)), ["AskServing"]);
    let actions = story.input(17, servers("web", 0, &[1, 2]));
    assert_eq!(kinds(&actions), ["AskServing"], "no runtime command to a process that is not serving");
    assert_eq!(story.wake(), Some(22), "asked again every 5 ms");
    story.world.answers = true;
    let actions = story.tick(22);
    assert_eq!(kinds(&actions)[..3], ["AskServing", "Accept", "CloseListeners"]);
    assert_eq!(
        commands(&actions),
        [
            "add server web/10.0.0.1:2 10.0.0.1:2 check",
            "enable health web/10.0.0.1:2",
            "set server web/10.0.0.1:2 state ready"
        ]
    );
}

#[test]
fn a_process_that_never_answers_is_taken_to_serve_after_thirty_seconds() {
    let mut story = Story::new();
    story.world.answers = false;
    story.input(0, services(&[("web", 8080)]));
    story.input(10, servers("web", 0, &[1]));
    assert!(!kinds(&story.tick(29_000)).contains(&"Accept"));
    assert!(kinds(&story.tick(30_010)).contains(&"Accept"));
}
