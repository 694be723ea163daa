//! Stories: slots, where HAProxy has no `add server` (1.8 to 2.4).

use super::*;

const V24: (u32, u32) = (2, 4);

/// A slot filled with a server of the service's weight (the slot's own).
fn fill(slot: u32, port: u16) -> [String; 2] {
    [
        format!("set server web/slot{slot} addr 10.0.0.1 port {port}"),
        format!("set server web/slot{slot} state ready"),
    ]
}

/// `web` with servers 1 and 2 served by a HAProxy 2.4 that started at 0 ms; the config it started on.
fn serving_on_24() -> (Story, String) {
    let mut story = Story::on(V24);
    story.input(0, services(&[("web", 8080)]));
    let text = start_text(&story.input(0, servers("web", 0, &[1, 2]))).to_string();
    assert_eq!(kinds(&story.tick(5)), ["AskServing", "Accept", "CloseListeners"]);
    (story, text)
}

#[test]
fn servers_are_rendered_in_slots_with_spare_ones() {
    let (_, text) = serving_on_24();
    let lines = "  server slot1 10.0.0.1:1 check\n  server slot2 10.0.0.1:2 check\n  \
                 server-template slot 3-6 127.0.0.1:1 check disabled\n";
    assert!(text.ends_with(lines), "{text}");
}

#[test]
fn a_new_server_fills_an_empty_slot_and_the_file_follows_without_a_reload() {
    let (mut story, _) = serving_on_24();
    let actions = story.input(1000, servers("web", 0, &[1, 2, 3]));
    assert_eq!(commands(&actions), fill(3, 3));
    assert!(!started(&actions));
    let written = actions.iter().chain(&story.tick(1200)).find_map(|a| match a {
        Action::WriteConfig { text, .. } => Some(text.clone()),
        _ => None,
    });
    let written = written.expect("haproxy.cfg is rewritten");
    assert!(written.contains("  server slot3 10.0.0.1:3 check\n  server-template slot 4-6 "), "{written}");
    // Out and back again by the slot's name.
    assert_eq!(
        commands(&story.input(2000, servers("web", 0, &[2, 3]))),
        ["set server web/slot1 state maint"]
    );
    assert_eq!(
        commands(&story.input(3000, servers("web", 0, &[1, 2, 3]))),
        ["set server web/slot1 state ready"]
    );
}

#[test]
fn a_server_keeps_its_slot_across_a_reload() {
    let (mut story, _) = serving_on_24();
    story.input(1000, servers("web", 0, &[2, 3]));
    story.input(1000, services(&[("web", 8080), ("api", 8081)]));
    let actions = story.input(1001, servers("api", 1, &[1]));
    let text = start_text(&actions);
    // 1 left (its slot is empty in the new config), 3 filled slot 3 and stays there.
    assert!(
        text.contains(
            "  server slot2 10.0.0.1:2 check\n  server slot3 10.0.0.1:3 check\n  server-template slot 1-1 "
        ),
        "{text}"
    );
    story.tick(1006);
    // The new process's slots are known: the next newcomer takes the lowest empty one.
    assert_eq!(commands(&story.input(2000, servers("web", 0, &[2, 3, 4]))), fill(1, 4));
}

#[test]
fn when_the_slots_run_out_a_reload_brings_new_ones() {
    let (mut story, _) = serving_on_24();
    let actions = story.input(1000, servers("web", 0, &[1, 2, 3, 4, 5, 6, 7]));
    let fills: Vec<String> = [fill(3, 3), fill(4, 4), fill(5, 5), fill(6, 6)].concat();
    assert_eq!(commands(&actions), fills, "the four spare slots first");
    let reason = ReloadReason::NoSlotLeft { service: "web".into(), server: "10.0.0.1:7".into() };
    assert_eq!(reasons(&actions), [reason]);
    let text = start_text(&actions);
    assert!(text.contains("  server slot7 10.0.0.1:7 check\n  server-template slot 8-11 "), "{text}");
}

#[test]
fn the_drift_check_reads_slots_by_their_address() {
    let (mut story, _) = serving_on_24();
    let status = |slot: u32, address: &str, port: u16, maint: bool| {
        let name = format!("slot{slot}");
        (name.clone(), ServerStatus { name, address: address.into(), port, maint, weight: 1 })
    };
    // As proxymgr left it, but an empty slot someone put in service.
    let state: BTreeMap<String, ServerStatus> = [
        status(1, "10.0.0.1", 1, false),
        status(2, "10.0.0.1", 2, false),
        status(3, "127.0.0.1", 1, false),
        status(4, "127.0.0.1", 1, true),
        status(5, "127.0.0.1", 1, true),
        status(6, "127.0.0.1", 1, true),
    ]
    .into();
    story.world.servers_state.insert("web".into(), state);
    let actions = story.tick(30_000);
    assert_eq!(commands(&actions), ["set server web/slot3 state maint"], "{actions:?}");
    // Slot 3 went back into maintenance: a newcomer may take it.
    assert_eq!(commands(&story.input(31_000, servers("web", 0, &[1, 2, 7, 8, 9, 10]))).len(), 8);
}
