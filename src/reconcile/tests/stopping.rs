//! Stories: stopping.

use super::*;

#[test]
fn sigterm_stops_haproxy_and_saves_the_state() {
    let mut story = Story::new();
    story.serving(0);
    let actions = story.input(1000, Input::Terminate);
    let [Action::Stop { save: Some((_, saved)), .. }] = &actions[..] else { panic!("{actions:?}") };
    assert_eq!(saved["web"].servers.len(), 2);
    assert_eq!(story.core.outcome(), Some(Outcome::Stopped));
    assert!(story.input(1100, servers("web", 0, &[1])).is_empty(), "nothing after the stop");
    assert_eq!(story.wake(), None);
}

#[test]
fn a_dead_thread_stops_everything_with_a_failure() {
    let mut story = Story::new();
    story.serving(0);
    let actions = story.input(1000, Input::ThreadDied { thread: "zk".into(), reason: "panic".into() });
    assert_eq!(kinds(&actions), ["Stop"]);
    assert_eq!(story.core.outcome(), Some(Outcome::Failed));
}

#[test]
fn a_stop_before_the_registry_answered_keeps_the_state_file_as_it_is() {
    let mut story = Story::with_saved(saved_web());
    let actions = story.input(100, Input::Terminate);
    assert!(matches!(&actions[..], [Action::Stop { save: None, .. }]), "{actions:?}");
}
