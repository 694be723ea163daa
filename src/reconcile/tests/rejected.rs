//! Stories: rejected configs.

use super::*;

#[test]
fn a_rejected_candidate_is_kept_aside_and_the_old_process_serves_on() {
    let mut story = rejected_story();
    let actions = story.input(1080, Input::Child);
    assert_eq!(kinds(&actions)[..3], ["Reap", "Check", "Reject"], "{actions:?}");
    assert!(!kinds(&actions).contains(&"Start"));
}

#[test]
fn a_rejected_config_is_not_tried_again_until_it_changes() {
    let mut story = rejected_story();
    story.input(1080, Input::Child);
    assert!(!started(&story.tick(2000)));
    assert!(
        !started(&story.input(2100, servers("api", 1, &[1, 2]))),
        "a server change leaves the skeleton as it is"
    );
    assert!(!started(&story.tick(3000)));
    assert_eq!(
        reasons(&story.input(4000, services(&[("web", 8080), ("api", 8082)]))),
        [ReloadReason::ServiceAdded("api".into())],
        "a new skeleton is tried"
    );
}

#[test]
fn server_changes_go_on_at_run_time_while_a_config_is_rejected() {
    let mut story = rejected_story();
    story.input(1080, Input::Child);
    let actions = story.input(2000, servers("web", 0, &[1]));
    assert_eq!(commands(&actions), ["set server web/10.0.0.1:2 state maint"]);
}

#[test]
fn a_start_that_fails_for_another_reason_is_retried_with_backoff() {
    let mut story = rejected_story();
    story.world.check = None;
    let actions = story.input(1080, Input::Child);
    assert_eq!(kinds(&actions)[..3], ["Reap", "Check", "Accept"], "{actions:?}");
    assert_eq!(story.wake(), Some(1280), "0.2 s of backoff");
    assert_eq!(reasons(&story.tick(1280)), [ReloadReason::FirstStart]);
}
