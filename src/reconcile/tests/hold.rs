//! Stories: a mass removal is held (`reconcile/hold.rs`): the servers kept stay in rotation through the
//! runtime API, in haproxy.cfg and in the state file, until the hold ends; then they leave like any server.

use super::*;

/// Holds of 2 s, and no drift check to wake for.
const HOLD_CONFIG: &str = "service_config:\n  type: zookeeper\n  servers: 127.0.0.1:2181\n\
                           haproxy:\n  drift_check_interval: 0\nremoval_hold:\n  hold_time: 2\n";

const SIX: &[u16] = &[1, 2, 3, 4, 5, 6];

/// `web` serves six servers from 0 ms, with holds of 2 s; its blob holds removals or not.
fn six_servers(hold_removals: bool) -> Story {
    let mut story = Story::with_config(HOLD_CONFIG, BTreeMap::new());
    story.input(0, web(hold_removals));
    assert!(started(&story.input(0, servers("web", 0, SIX))));
    assert_eq!(kinds(&story.tick(5)), ["AskServing", "Accept", "CloseListeners"]);
    story
}

fn web(hold_removals: bool) -> Input {
    let spec = ServiceSpec { hold_removals, ..spec(8080) };
    Input::Services { source: 0, services: [("web".to_string(), spec)].into() }
}

fn maint(ports: &[u16]) -> Vec<String> {
    ports.iter().map(|p| format!("set server web/10.0.0.1:{p} state maint")).collect()
}

/// The ports of web's servers in the state file saved among `actions`, if it was.
fn saved(actions: &[Action]) -> Option<Vec<u16>> {
    actions.iter().find_map(|a| match a {
        Action::SaveState { snapshot, .. } => {
            Some(snapshot.services["web"].servers.iter().map(|s| s.port).collect())
        }
        _ => None,
    })
}

/// The servers of the haproxy.cfg written among `actions`, if it was.
fn in_file(actions: &[Action]) -> Option<Vec<u16>> {
    actions.iter().find_map(|a| match a {
        Action::WriteConfig { text, .. } => {
            Some(SIX.iter().copied().filter(|p| text.contains(&format!("server 10.0.0.1:{p} "))).collect())
        }
        _ => None,
    })
}

#[test]
fn a_mass_removal_keeps_half_in_rotation_until_the_hold_ends() {
    let mut story = six_servers(true);
    let actions = story.input(1000, servers("web", 0, &[6]));
    assert_eq!(commands(&actions), maint(&[3, 4, 5]), "1 and 2 are kept, beside 6");
    assert!(!started(&actions));
    assert_eq!(in_file(&actions), Some(vec![1, 2, 6]), "haproxy.cfg has what HAProxy runs");
    assert_eq!(saved(&actions), Some(vec![1, 2, 6]), "and so has the state file");
    story.tick(1200);
    story.tick(2000);
    assert_eq!(story.wake(), Some(3000), "the hold's end");
    let actions = story.tick(3000);
    assert_eq!(commands(&actions), maint(&[1, 2]));
    assert!(!started(&actions));
    assert_eq!(in_file(&actions), Some(vec![6]));
    assert_eq!(saved(&actions), Some(vec![6]));
}

#[test]
fn a_service_that_opted_out_loses_them_at_once() {
    let mut story = six_servers(false);
    let actions = story.input(1000, servers("web", 0, &[6]));
    assert_eq!(commands(&actions), maint(&[1, 2, 3, 4, 5]));
    assert_eq!(story.wake(), None, "no hold to end");
}

#[test]
fn opting_out_during_a_hold_ends_it_at_once() {
    let mut story = six_servers(true);
    story.input(1000, servers("web", 0, &[6]));
    let actions = story.input(1500, web(false));
    assert_eq!(commands(&actions), maint(&[1, 2]));
    assert!(!started(&actions), "the blob's key changes nothing HAProxy reads");
}

#[test]
fn holds_turned_off_by_sighup_end_at_once() {
    let mut story = six_servers(true);
    story.input(1000, servers("web", 0, &[6]));
    let yaml = HOLD_CONFIG.replace("hold_time: 2", "threshold_percent: 0");
    let config = Config::parse(Path::new("proxymgr.yml"), &yaml).unwrap();
    let actions = story.input(1500, Input::ConfigRead(Box::new((config, binary()))));
    assert_eq!(commands(&actions), maint(&[1, 2]), "{actions:?}");
    assert!(!started(&story.tick(1600)), "nothing HAProxy reads changed");
}

#[test]
fn servers_back_during_a_hold_end_it_early() {
    let mut story = six_servers(true);
    story.input(1000, servers("web", 0, &[6]));
    let actions = story.input(1500, servers("web", 0, &[3, 4, 6]));
    let ready = ["set server web/10.0.0.1:3 state ready", "set server web/10.0.0.1:4 state ready"];
    assert_eq!(commands(&actions), [maint(&[1, 2]), ready.map(String::from).to_vec()].concat());
    story.tick(1700);
    assert!(commands(&story.tick(3000)).is_empty(), "no hold left to end");
}

#[test]
fn a_service_removed_during_a_hold_leaves_no_wake_for_it() {
    let mut story = six_servers(true);
    story.input(100, services_from(0, &[("web", 8080), ("api", 8081)]));
    let actions = [story.input(101, servers("api", 1, &[1])), story.tick(500)].concat();
    assert!(started(&actions));
    story.tick(505);
    story.input(1000, servers("web", 0, &[6]));
    let actions = [story.input(1500, services_from(0, &[("api", 8081)])), story.tick(1550)].concat();
    assert!(started(&actions), "web's removal takes a reload, as ever");
    story.tick(1555);
    story.tick(2600);
    assert_ne!(story.wake(), Some(3000));
}

#[test]
fn an_empty_report_keeps_every_server_and_with_allow_empty_the_hold_keeps_half() {
    let mut story = six_servers(true);
    let actions = story.input(1000, servers("web", 0, &[]));
    assert!(commands(&actions).is_empty(), "an empty set is a registry fault: all six stay");
    let spec = ServiceSpec { allow_empty: true, ..spec(8080) };
    story.input(1100, Input::Services { source: 0, services: [("web".to_string(), spec)].into() });
    let actions = story.input(1200, servers("web", 0, &[]));
    assert_eq!(commands(&actions), maint(&[4, 5, 6]));
    story.tick(2000);
    assert_eq!(commands(&story.tick(3200)), maint(&[1, 2, 3]));
}
