//! Stories: wakes: an idle core, and wakes that must not lie in the past (each would make the loop spin).

use super::*;

#[test]
fn an_idle_core_wakes_only_for_the_drift_check() {
    let mut story = Story::new();
    story.serving(0);
    story.tick(1000);
    assert_eq!(story.wake(), Some(30_000));
}

#[test]
fn a_spawn_failure_during_a_reload_leaves_no_wake_behind() {
    let mut story = Story::new();
    story.serving(0);
    story.tick(600);
    story.input(1000, services(&[("web", 8080), ("api", 8081)]));
    story.world.start = Starts::NoSpawn;
    assert!(started(&story.input(1001, servers("api", 1, &[1]))));
    story.world.start = Starts::Yes;
    assert_eq!(story.wake(), Some(1201), "the restart backoff");
    assert!(!started(&story.tick(1200)), "the old process serves meanwhile");
    assert!(started(&story.tick(1201)));
}

#[test]
fn a_child_before_the_registry_answers_leaves_no_wake_behind() {
    let mut story = Story::new();
    assert!(story.input(100, Input::Child).iter().all(|a| matches!(a, Action::Reap)));
    assert_eq!(story.wake(), Some(3000), "the start wait's end, not the state file's");
}

#[test]
fn a_blocked_service_of_the_state_file_leaves_no_wake_behind() {
    let mut story = Story::with_saved(saved_web());
    story.world.taken.insert(8080);
    story.tick(3000);
    story.tick(8000);
    story.tick(13_000);
}

#[test]
fn a_stale_file_waits_without_waking_while_a_config_is_rejected() {
    let mut story = rejected_story();
    story.input(1080, Input::Child);
    story.input(2000, servers("web", 0, &[1]));
    story.tick(2200);
}
