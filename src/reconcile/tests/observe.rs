//! Stories: what the core shows of itself (the status it publishes, its counts).

use super::*;
use crate::event::SessionNews;
use crate::status::{Difference, ReloadResult, ServerState, Status};

impl Story {
    fn status(&self, ms: u64) -> Status {
        self.core.status(self.at(ms))
    }

    /// Every wake up to `ms`, and the actions they asked for.
    fn run_until(&mut self, ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        while let Some(wake) = self.wake().filter(|&wake| wake <= ms) {
            actions.extend(self.tick(wake));
        }
        actions
    }
}

fn published(actions: &[Action]) -> Vec<&Status> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Publish(status) => Some(status.as_ref()),
            _ => None,
        })
        .collect()
}

fn differences(status: &Status, service: &str) -> Vec<(String, Option<Difference>)> {
    let service = status.services.iter().find(|s| s.name == service).expect("the service");
    let mut all: Vec<_> = service.all_servers().map(|s| (s.name.clone(), s.difference.clone())).collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

#[test]
fn a_serving_service_shows_both_views_agreeing_and_its_first_start() {
    let mut story = Story::new();
    story.serving(0);
    let status = story.status(10);
    assert_eq!(status.haproxy.as_ref().map(|h| (h.pid, h.version.as_str())), Some((101, "2.6.12")));
    let web = &status.services[0];
    assert_eq!((web.name.as_str(), web.port, web.in_rotation()), ("web", Some(8080), 2));
    assert!(web.all_servers().all(|s| s.registry.is_some() && s.difference.is_none()), "{web:?}");
    assert_eq!((web.servers.len(), web.registered.len()), (0, 2), "both agree: kept small");
    let reload = status.last_reload.expect("the first start");
    assert_eq!((reload.reasons, reload.result), (vec!["first start".to_string()], ReloadResult::Served));
    assert_eq!(status.counters.reloads.len(), 1);
    assert_eq!(status.counters.reloads[0].labels.reason, "first_start");
    assert_eq!(status.counters.converge_reload.count, 0, "a first start brings no registry change");
}

#[test]
fn a_server_that_left_shows_leaving_and_the_change_is_timed() {
    let mut story = Story::new();
    story.serving(0);
    story.tick(600);
    story.input(1000, servers("web", 0, &[1]));
    let status = story.status(1000);
    assert_eq!(
        differences(&status, "web"),
        [("10.0.0.1:1".into(), None), ("10.0.0.1:2".into(), Some(Difference::Leaving))]
    );
    let two = &status.services[0].servers[0];
    assert_eq!(two.name, "10.0.0.1:2");
    assert!(two.registry.is_none() && two.haproxy.as_ref().unwrap().state == ServerState::Maintenance);
    let commands = &status.counters.commands;
    assert_eq!(commands.len(), 1);
    assert_eq!((commands[0].labels.kind.as_str(), commands[0].labels.result.as_str()), ("disable", "ok"));
    assert_eq!(status.counters.converge_runtime.count, 1);
}

#[test]
fn a_new_service_is_timed_on_the_reload_path() {
    let mut story = Story::new();
    story.serving(0);
    story.tick(600);
    story.input(1000, services(&[("web", 8080), ("api", 8081)]));
    story.input(1001, servers("api", 1, &[1]));
    story.tick(1006);
    let status = story.status(1006);
    assert_eq!(status.counters.converge_reload.count, 1, "{:?}", status.counters);
    let reasons: Vec<&str> = status.counters.reloads.iter().map(|c| c.labels.reason.as_str()).collect();
    assert_eq!(reasons, ["first_start", "service_added"]);
}

#[test]
fn a_rejected_config_shows_until_a_config_serves() {
    let mut story = rejected_story();
    story.input(1080, Input::Child);
    let status = story.status(1080);
    let rejected = status.rejected.expect("shown");
    assert!(rejected.error.contains("unknown keyword 'x'"), "{rejected:?}");
    assert_eq!(status.counters.rejected_configs, 1);
    assert_eq!(status.last_reload.map(|r| r.result), Some(ReloadResult::Rejected));
    assert_eq!(status.haproxy.map(|h| h.pid), Some(101), "the old process serves on");
}

#[test]
fn registry_sessions_show_outages_and_count_reconnects_and_expiries() {
    let mut story = Story::new();
    let news = |ensemble: &str, news| Input::Session { ensemble: ensemble.into(), news };
    story.input(10, news("zk:2181", SessionNews::Connected));
    story.input(20, news("zk:2181", SessionNews::Read));
    story.input(1000, news("zk:2181", SessionNews::Lost));
    let down = story.status(1500);
    let session = &down.registry[0];
    assert!(!session.connected && session.outage_since.is_some(), "{session:?}");
    assert!((session.outage_since.unwrap() - session.last_read.unwrap() - 0.98).abs() < 1e-6, "{session:?}");
    story.input(12000, news("zk:2181", SessionNews::Renewed));
    story.input(12010, news("zk:2181", SessionNews::Connected));
    let up = story.status(12010);
    let session = &up.registry[0];
    assert!(session.connected && session.outage_since.is_none());
    assert_eq!((session.reconnects, session.expiries), (1, 1));
    story.input(13000, news("zk:2181", SessionNews::Closed));
    assert!(story.status(13000).registry.is_empty(), "a closed session is no longer shown");
    // Reads that finish just after a connection is lost do not end the outage: only the session's Connected
    // does (zk sends it for a first connection its listener missed, once calls work).
    story.input(14000, news("zk2:2181", SessionNews::Connected));
    story.input(15000, news("zk2:2181", SessionNews::Lost));
    story.input(15001, news("zk2:2181", SessionNews::Read));
    let session = &story.status(15001).registry[0];
    assert!(!session.connected && session.outage_since.is_some(), "{session:?}");
}

#[test]
fn held_and_quarantined_servers_show_why() {
    let mut story = Story::new();
    story.input(0, services(&[("web", 8080)]));
    story.input(0, servers("web", 0, &[1, 2, 3, 4]));
    story.tick(5);
    // Held: three of four servers leave the registry at once; one of them stays to keep web at 50 %.
    story.input(1000, servers("web", 0, &[1]));
    let status = story.status(1000);
    let web = &status.services[0];
    let kept = web.hold.as_ref().expect("a hold");
    assert_eq!(kept.kept, ["10.0.0.1:2"]);
    assert_eq!(
        differences(&status, "web")[1..],
        [
            ("10.0.0.1:2".into(), Some(Difference::Held { until: kept.until })),
            ("10.0.0.1:3".into(), Some(Difference::Leaving)),
            ("10.0.0.1:4".into(), Some(Difference::Leaving)),
        ]
    );
    assert_eq!(web.held().count(), 1);
    assert_eq!(web.in_rotation(), 2, "the one the registry has and the one held");
    // Quarantined: add server refuses a registration for an option of its own.
    let typo = Refusal::UnknownKeyword { keyword: "chekc".into() };
    story.world.refuse = vec![("add server web/10.0.0.1:5", Some(typo))];
    let chekc = Server { options: vec!["chekc".into()], ..server(5) };
    story.input(
        1100,
        Input::Servers { service: "web".into(), generation: 0, servers: Arc::new(vec![server(1), chekc]) },
    );
    let status = story.status(1100);
    let five = status.services[0].all_servers().find(|s| s.name == "10.0.0.1:5").expect("shown");
    assert!(five.registry.is_some() && five.haproxy.is_none(), "{five:?}");
    assert!(
        matches!(&five.difference, Some(Difference::Quarantined { reason }) if reason.contains("chekc")),
        "{five:?}"
    );
}

#[test]
fn the_status_is_published_at_once_then_at_most_every_interval() {
    let yaml = format!("{CONFIG}status: 127.0.0.1:9271\n");
    let mut story = Story::with_config(&yaml, BTreeMap::new());
    let first = story.input(0, services(&[("web", 8080)]));
    assert_eq!(published(&first).len(), 1, "{first:?}");
    let second = story.input(1, servers("web", 0, &[1, 2]));
    assert!(published(&second).is_empty(), "{second:?}");
    let wake = story.wake().unwrap();
    assert_eq!(wake, 6, "the new process is asked whether it serves");
    story.tick(wake);
    let wake = story.wake().unwrap();
    assert_eq!(wake, 500, "then the publication waits out the interval");
    let serving = story.tick(wake);
    assert_eq!(published(&serving)[0].services[0].in_rotation(), 2);
    let soon = story.input(600, servers("web", 0, &[1]));
    assert!(published(&soon).is_empty(), "too soon after the last: {soon:?}");
    let wake = story.wake().unwrap();
    assert_eq!(wake, 1000, "a wake publishes it");
    let later = story.tick(wake);
    let status = published(&later);
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].services[0].in_rotation(), 1);
    assert!(published(&story.tick(2000)).is_empty(), "nothing changed since");
}

#[test]
fn a_server_change_builds_only_its_service_anew() {
    let yaml = format!("{CONFIG}status: 127.0.0.1:9271\n");
    let mut story = Story::with_config(&yaml, BTreeMap::new());
    story.input(0, services(&[("web", 8080), ("api", 8081)]));
    // Set up in order of name: api's watcher is generation 0, web's 1.
    story.input(1, servers("api", 0, &[1, 2]));
    story.input(1, servers("web", 1, &[1, 2]));
    let first = published(&story.run_until(5000)).last().copied().expect("published").clone();
    assert_eq!(first.services[1].in_rotation(), 2);
    story.input(6000, servers("web", 1, &[1]));
    let later = story.run_until(7000);
    let second = published(&later)[0];
    let [api, web] = [0, 1].map(|i| (&first.services[i], &second.services[i]));
    assert!(Arc::ptr_eq(api.0, api.1), "api did not change: the same view");
    assert!(!Arc::ptr_eq(web.0, web.1), "web did");
    assert_eq!((web.0.in_rotation(), web.1.in_rotation()), (2, 1));
    // A reload may change every service: all are built anew.
    story.input(8000, services(&[("web", 8080), ("api", 8081), ("db", 8082)]));
    story.input(8001, servers("db", 2, &[1]));
    let actions = story.run_until(10000);
    let third = published(&actions).last().copied().expect("published").clone();
    assert_eq!(third.services.len(), 3);
    assert!(!Arc::ptr_eq(&third.services[0], api.1), "built anew after a reload");
}

#[test]
fn a_quiet_reconciler_publishes_a_heartbeat_that_rebuilds_nothing() {
    let yaml = format!("{CONFIG}status: 127.0.0.1:9271\n");
    let mut story = Story::with_config(&yaml, BTreeMap::new());
    story.input(0, services(&[("web", 8080)]));
    story.input(1, servers("web", 0, &[1, 2]));
    let last = published(&story.run_until(5000)).last().copied().expect("published").clone();
    let at_ms = ((last.published - 1_800_000_000.0) * 1000.0).round() as u64;
    assert_eq!(story.wake(), Some(at_ms + 10_000), "the next wake is the heartbeat");
    let beat = story.tick(at_ms + 10_000);
    let beat = published(&beat);
    assert_eq!(beat.len(), 1, "{beat:?}");
    assert!((beat[0].published - last.published - 10.0).abs() < 1e-6, "a new time");
    assert!(Arc::ptr_eq(&beat[0].services[0], &last.services[0]), "nothing rebuilt");
}

#[test]
fn a_new_haproxy_binary_read_on_sighup_is_the_version_shown() {
    let mut story = Story::new();
    story.serving(0);
    let config = Config::parse(Path::new("proxymgr.yml"), CONFIG).unwrap();
    let newer = Binary { version: (2, 8), version_text: "2.8.5".into(), ..binary() };
    story.input(1000, Input::ConfigRead(Box::new((config, newer))));
    assert_eq!(story.status(1000).haproxy.map(|h| h.version), Some("2.8.5".to_string()));
}
