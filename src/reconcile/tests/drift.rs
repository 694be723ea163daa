//! Stories: drift.

use super::*;

fn status(server: u16, maint: bool, weight: u16) -> (String, ServerStatus) {
    let name = server_name(server);
    (name.clone(), ServerStatus { name, address: "10.0.0.1".into(), port: server, maint, weight })
}

fn server_name(port: u16) -> String {
    format!("10.0.0.1:{port}")
}

#[test]
fn the_drift_check_takes_haproxys_word_and_repairs_it() {
    let mut story = Story::new();
    story.serving(0);
    story.world.servers_state.insert("web".into(), [status(1, true, 1), status(2, false, 1)].into());
    let actions = story.tick(30_000);
    assert_eq!(kinds(&actions)[0], "QueryServers");
    assert_eq!(commands(&actions), ["set server web/10.0.0.1:1 state ready"]);
    assert_eq!(story.wake(), Some(60_000));
}

#[test]
fn the_drift_check_deletes_servers_long_gone() {
    let mut story = Story::new();
    story.serving(0);
    story.input(1000, servers("web", 0, &[1]));
    story.world.servers_state.insert("web".into(), [status(1, false, 1), status(2, true, 1)].into());
    story.world.refuse = vec![("del server", Some(Refusal::StillInUse))];
    let actions = story.tick(30_000);
    assert_eq!(commands(&actions), ["del server web/10.0.0.1:2"]);
    assert!(!started(&story.tick(30_100)), "a server still in use waits for the next check; no reload");
    story.world.refuse.clear();
    assert_eq!(commands(&story.tick(60_000)), ["del server web/10.0.0.1:2"]);
}

#[test]
fn a_backend_haproxy_does_not_know_is_logged_and_skipped() {
    let mut story = Story::new();
    story.serving(0);
    let actions = story.tick(30_000);
    assert_eq!(kinds(&actions), ["QueryServers"]);
}
