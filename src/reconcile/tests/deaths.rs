//! Stories: HAProxy dies.

use super::*;

#[test]
fn a_dead_haproxy_is_restarted_with_a_backoff_that_doubles() {
    let mut story = Story::new();
    story.serving(0);
    let mut at = 1000;
    for backoff in [200, 400, 800, 1600] {
        story.world.exit = Some((story.world.next_pid, Duration::from_secs(1)));
        assert!(!started(&story.input(at, Input::Child)));
        assert!(!started(&story.tick(at + backoff - 1)), "not before {backoff} ms");
        assert!(started(&story.tick(at + backoff)), "after {backoff} ms");
        at += backoff + 100;
    }
}

#[test]
fn a_haproxy_that_ran_long_is_restarted_at_once_after_a_short_backoff() {
    let mut story = Story::new();
    story.serving(0);
    story.world.exit = Some((101, Duration::from_secs(1)));
    story.input(1000, Input::Child);
    story.tick(1200);
    story.world.exit = Some((102, Duration::from_secs(60)));
    story.input(70_000, Input::Child);
    assert!(started(&story.tick(70_200)), "a healthy run resets the backoff");
}

#[test]
fn a_start_that_cannot_spawn_is_retried_with_backoff() {
    let mut story = Story::new();
    story.world.start = Starts::NoSpawn;
    story.input(0, services(&[("web", 8080)]));
    assert!(started(&story.input(10, servers("web", 0, &[1]))));
    assert_eq!(story.wake(), Some(210));
    story.world.start = Starts::Yes;
    assert!(started(&story.tick(210)));
}

#[test]
fn a_candidate_that_cannot_be_written_is_tried_again_at_the_next_wake_without_backoff() {
    let mut story = Story::new();
    story.world.start = Starts::NoWrite;
    story.input(0, services(&[("web", 8080)]));
    assert!(started(&story.input(10, servers("web", 0, &[1]))));
    assert_eq!(story.wake(), Some(1000), "the state file's wake, not a restart's");
    story.world.start = Starts::Yes;
    assert!(started(&story.tick(1000)));
}
