//! Stories: the state file.

use super::*;

#[test]
fn a_silent_registry_is_replaced_by_the_state_file_after_three_seconds() {
    let mut story = Story::with_saved(saved_web());
    assert!(story.tick(2999).is_empty());
    let actions = story.tick(3000);
    assert_eq!(kinds(&actions)[..3], ["Bind", "Watch", "Start"], "{actions:?}");
    let Some(Action::Start { text, .. }) = actions.iter().find(|a| matches!(a, Action::Start { .. })) else {
        panic!()
    };
    assert!(text.contains("server 10.0.0.1:7 10.0.0.1:7"), "the saved servers are served: {text}");
}

#[test]
fn a_registry_that_answers_in_time_overrides_the_state_file() {
    let mut story = Story::with_saved(saved_web());
    story.input(1000, services(&[("api", 8081)]));
    let actions = story.input(1100, servers("api", 0, &[1]));
    let Some(Action::Start { text, .. }) = actions.iter().find(|a| matches!(a, Action::Start { .. })) else {
        panic!("{actions:?}")
    };
    assert!(text.contains("listen api") && !text.contains("listen web"), "{text}");
    assert!(!kinds(&story.tick(3000)).contains(&"Bind"), "the state file is not served any more");
}

#[test]
fn the_state_file_is_written_at_most_once_a_second() {
    let mut story = Story::new();
    story.serving(0);
    assert!(!kinds(&story.input(500, servers("web", 0, &[1]))).contains(&"SaveState"));
    assert_eq!(kinds(&story.tick(1000)), ["SaveState"]);
}
