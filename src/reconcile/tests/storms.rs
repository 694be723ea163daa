//! Stories: reload storms. Clients hold connections to every HAProxy (`World::holds`), so each reload leaves
//! the process it replaced alive as an older generation; how many are alive paces the reloads.

use super::*;

/// Ticks at every wake before `ms`, as the loop would; returns each tick's time and its actions.
fn advance(story: &mut Story, ms: u64) -> Vec<(u64, Vec<Action>)> {
    let mut ticks = Vec::new();
    while let Some(wake) = story.wake().filter(|&wake| wake < ms) {
        ticks.push((wake, story.tick(wake)));
    }
    ticks
}

/// The processes alive in the world: the serving (or starting) one and the older generations.
fn alive(story: &Story) -> usize {
    usize::from(story.world.live.current.is_some()) + story.world.live.old.len()
}

/// `svc0`, `svc1`, ... added one at a time, `web` beside them.
fn with_services(n: usize) -> Input {
    let names: Vec<String> = (0..n).map(|i| format!("svc{i}")).collect();
    let mut list = vec![("web", 8080)];
    list.extend(names.iter().enumerate().map(|(i, name)| (name.as_str(), 9000 + i as u16)));
    services(&list)
}

/// `web` serves at 0 and clients hold connections to every process from then on.
fn holding(yaml: &str) -> Story {
    let mut story = Story::with_config(yaml, BTreeMap::new());
    story.world.holds = true;
    story.serving(0);
    story.tick(600);
    story
}

#[test]
fn a_storm_of_new_services_becomes_a_few_reloads_each_within_the_bound() {
    let mut story = holding(CONFIG);
    // Twenty services, 0.5 s apart (each with its servers 1 ms later): the storm of DESIGN §6.
    let mut events = Vec::new();
    for i in 0..20u64 {
        let at = 1000 + 500 * i;
        events.push((at, with_services(i as usize + 1)));
        events.push((at + 1, servers(&format!("svc{i}"), i + 1, &[1])));
    }
    events.push((20_000, Input::Child));
    let (mut starts, mut most) = (Vec::new(), alive(&story));
    for (at, input) in events {
        let mut batches = advance(&mut story, at);
        batches.push((at, story.input(at, input)));
        for (ms, actions) in batches {
            assert!(!kinds(&actions).contains(&"HardStop"), "no cap, nothing stopped: {actions:?}");
            if started(&actions) {
                starts.push((ms, reasons(&actions).len()));
            }
            most = most.max(alive(&story));
        }
    }
    // The first at once (a quiet load balancer), the next once the interval has grown fourfold (one older
    // generation alive: 2 s), the last when it has grown to its bound (8 s).
    assert_eq!(starts, [(1001, 1), (3001, 4), (11_001, 15)]);
    assert_eq!(most, 4, "the first process and three reloads");
    for i in 0..20u64 {
        let came = 1000 + 500 * i;
        let (reloaded, _) = starts.iter().find(|(ms, _)| *ms > came).copied().unwrap_or_default();
        assert!(reloaded - came <= 8001, "svc{i}, added at {came} ms, waited until {reloaded} ms");
    }
}

#[test]
fn older_generations_that_finish_shorten_the_wait() {
    let mut story = holding(CONFIG);
    story.input(1000, with_services(1));
    assert!(started(&story.input(1001, servers("svc0", 1, &[1]))), "quiet: at once");
    story.tick(1006);
    story.input(1500, with_services(2));
    story.input(1501, servers("svc1", 2, &[1]));
    let waited = advance(&mut story, 2000);
    assert!(
        waited.iter().all(|(_, actions)| !started(actions)),
        "one older generation: due 2 s after the reload"
    );
    story.world.finished = vec![101];
    let actions = story.input(2000, Input::Child);
    assert_eq!(reasons(&actions), [ReloadReason::ServiceAdded("svc1".into())], "it finished: due at once");
}

#[test]
fn the_cap_stops_the_oldest_generations_before_a_reload() {
    let mut story = holding(&format!("{CONFIG}haproxy:\n  max_generations: 3\n"));
    story.input(1000, with_services(1));
    story.input(1001, servers("svc0", 1, &[1]));
    story.input(1500, with_services(2));
    story.input(1501, servers("svc1", 2, &[1]));
    let actions = story.tick(3001);
    assert_eq!(kinds(&actions)[..1], ["Start"], "three alive with it: none stopped");
    story.input(3500, with_services(3));
    story.input(3501, servers("svc2", 3, &[1]));
    assert_eq!(story.world.live.old, [101, 102]);
    let actions = story.tick(11_001);
    assert_eq!(kinds(&actions)[..2], ["HardStop", "Start"], "{actions:?}");
    assert_eq!(actions[0], Action::HardStop { pids: vec![101] }, "the oldest, before the new one starts");
    assert_eq!(alive(&story), 3);
}

#[test]
fn a_cap_of_two_stops_every_older_generation() {
    let mut story = holding(&format!("{CONFIG}haproxy:\n  max_generations: 2\n"));
    story.input(1000, with_services(1));
    let actions = story.input(1001, servers("svc0", 1, &[1]));
    assert_eq!(kinds(&actions)[..1], ["Start"], "the serving one and the new one: two");
    story.tick(1006);
    story.input(1500, with_services(2));
    story.input(1501, servers("svc1", 2, &[1]));
    let actions = story.tick(3001);
    assert_eq!(actions[0], Action::HardStop { pids: vec![101] });
    assert_eq!(story.world.live, Generations { current: Some(103), old: vec![102] });
}
