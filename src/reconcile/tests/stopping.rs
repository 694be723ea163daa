//! Stories: stopping, and handing over to the next proxymgr (a restart or an upgrade).

use super::*;

#[test]
fn sigterm_stops_haproxy_and_saves_the_state() {
    let mut story = Story::new();
    story.serving(0);
    let actions = story.input(1000, Input::Terminate);
    let [Action::Stop { save: Some((_, saved)), .. }] = &actions[..] else { panic!("{actions:?}") };
    assert_eq!(saved.services["web"].servers.len(), 2);
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

#[test]
fn sigusr2_leaves_haproxy_serving_for_the_next_proxymgr() {
    let mut story = Story::new();
    story.serving(0);
    let actions = story.input(1000, Input::HandOver);
    let [Action::HandOver { state_file, snapshot }] = &actions[..] else { panic!("{actions:?}") };
    assert_eq!(state_file, &crate::config::Config::parse(Path::new("p.yml"), CONFIG).unwrap().state_file);
    assert_eq!(snapshot.services["web"].servers.len(), 2, "the services served go into the state file");
    assert_eq!(story.core.outcome(), Some(Outcome::HandedOver), "no Stop: HAProxy serves on");
    assert!(story.input(1100, servers("web", 0, &[1])).is_empty(), "nothing after the hand-over");
    assert!(story.input(1200, Input::Terminate).is_empty(), "nor a stop");
    assert_eq!(story.wake(), None);
}

#[test]
fn a_hand_over_drops_the_work_under_way_and_takes_nothing_until_it_is_made() {
    let mut story = Story::new();
    story.serving(0);
    // A reload waits (the last one was a moment ago) when the hand-over is asked for: the next proxymgr reads
    // the registry afresh, so nothing of it is carried out here.
    story.core.handle(servers("web", 0, &[1, 2, 3]), story.at(100));
    story.core.handle(Input::HandOver, story.at(100));
    story.core.handle(servers("web", 0, &[1]), story.at(100));
    let actions = story.drain(100);
    assert_eq!(kinds(&actions), ["HandOver"]);
    assert_eq!(story.core.outcome(), Some(Outcome::HandedOver));
}

#[test]
fn a_state_file_that_cannot_be_written_turns_the_hand_over_into_a_stop() {
    // The next proxymgr would not find the HAProxy left serving, and two would serve side by side.
    let mut story = Story::new();
    story.serving(0);
    story.world.hands_over = false;
    let actions = story.input(1000, Input::HandOver);
    assert_eq!(kinds(&actions), ["HandOver", "Stop"]);
    assert_eq!(story.core.outcome(), Some(Outcome::Stopped));
}

#[test]
fn a_hand_over_before_the_registry_answered_keeps_the_state_files_services() {
    let mut story = Story::with_saved(saved_web());
    let actions = story.input(100, Input::HandOver);
    let [Action::HandOver { snapshot, .. }] = &actions[..] else { panic!("{actions:?}") };
    assert_eq!(&snapshot.services, &saved_web(), "not an empty set in their place");
}
