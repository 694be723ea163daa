//! Table tests of the reconciler's core. Each case is a story: inputs at given milliseconds after the start,
//! then the actions the core asks for. A small scripted world answers the actions that have an outcome (a
//! start gets the next pid, a runtime command goes through unless the story says otherwise), so a story reads
//! like what happens on a load balancer, and no HAProxy, ZooKeeper, thread or clock is involved.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::core::{Core, Outcome};
use super::messages::{Action, CommandFailure, Input, StartFailure};
use crate::config::{Config, ServiceConfigSource};
use crate::haproxy::command::{Command, Refusal, State};
use crate::haproxy::process::Binary;
use crate::haproxy::runtime::ServerStatus;
use crate::plan::ReloadReason;
use crate::service::{Server, ServiceSpec, WatcherSpec};
use crate::state::SavedService;

const CONFIG: &str = "service_config:\n  type: zookeeper\n  servers: 127.0.0.1:2181\n";

/// How the scripted world answers the core's actions.
struct World {
    next_pid: u32,
    /// Whether a new process answers on the socket with its pid.
    answers: bool,
    /// Commands (as HAProxy reads them, by prefix) that fail, and how.
    refuse: Vec<(&'static str, Option<Refusal>)>,
    /// `haproxy -c`'s verdict on a candidate.
    check: Result<(), String>,
    /// What the next `Reap` finds.
    exit: Option<(u32, Duration)>,
    /// Ports another program holds.
    taken: BTreeSet<u16>,
    start: Result<(), StartFailure>,
    /// `show servers state` per backend.
    servers_state: BTreeMap<String, BTreeMap<String, ServerStatus>>,
}

impl Default for World {
    fn default() -> World {
        World {
            next_pid: 100,
            answers: true,
            refuse: vec![],
            check: Ok(()),
            exit: None,
            taken: BTreeSet::new(),
            start: Ok(()),
            servers_state: BTreeMap::new(),
        }
    }
}

impl World {
    fn answer(&mut self, action: &Action) -> Option<Input> {
        Some(match action {
            Action::Bind { ports, .. } => Input::Bound(
                ports
                    .iter()
                    .map(|&p| {
                        (
                            p,
                            if self.taken.contains(&p) {
                                Err("Address already in use".into())
                            } else {
                                Ok(1000 + p as i32)
                            },
                        )
                    })
                    .collect(),
            ),
            Action::Start { .. } => match self.start.clone() {
                Ok(()) => {
                    self.next_pid += 1;
                    Input::Started { pid: self.next_pid }
                }
                Err(failure) => Input::StartFailed(failure),
            },
            Action::AskServing { pid } => {
                Input::Serving(if self.answers { Ok(*pid) } else { Err("connection refused".into()) })
            }
            Action::Run(commands) => {
                let failed = commands.iter().find_map(|command| {
                    let text = command.to_string();
                    self.refuse.iter().find(|(prefix, _)| text.starts_with(prefix)).map(|(_, refusal)| {
                        CommandFailure {
                            command: command.clone(),
                            refusal: refusal.clone(),
                            message: format!("refused {text}"),
                        }
                    })
                });
                Input::Ran(failed.map_or(Ok(()), Err))
            }
            Action::Reap => {
                let (pid, ran) = self.exit.take()?;
                Input::Exited { pid, how: "exit status 1".into(), ran }
            }
            Action::Check => Input::Checked(self.check.clone()),
            Action::QueryServers { backend } => Input::ServersState {
                backend: backend.clone(),
                result: self
                    .servers_state
                    .get(backend)
                    .cloned()
                    .ok_or_else(|| "No such backend.".to_string()),
            },
            Action::SaveState { .. } => Input::StateSaved(true),
            _ => return None,
        })
    }
}

struct Story {
    core: Core,
    world: World,
    t0: Instant,
}

impl Story {
    fn new() -> Story {
        Story::with_saved(BTreeMap::new())
    }

    fn with_saved(saved: BTreeMap<String, SavedService>) -> Story {
        Story::with_config(CONFIG, saved)
    }

    fn with_config(yaml: &str, saved: BTreeMap<String, SavedService>) -> Story {
        let config = Config::parse(Path::new("proxymgr.yml"), yaml).unwrap();
        let t0 = Instant::now();
        let core = Core::new(config, &binary(), saved, t0, Instant::now);
        let mut story = Story { core, world: World::default(), t0 };
        let first = story.drain(0);
        assert!(matches!(&first[..], [Action::FollowSource { generation: 0, .. }]), "{first:?}");
        story
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// `input` at `ms`, then the batch's tick: every action the core asked for, outcomes answered by the world.
    fn input(&mut self, ms: u64, input: Input) -> Vec<Action> {
        self.core.handle(input, self.at(ms));
        let mut actions = self.drain(ms);
        actions.extend(self.tick(ms));
        actions
    }

    /// A wake at `ms` with nothing new.
    fn tick(&mut self, ms: u64) -> Vec<Action> {
        self.core.tick(self.at(ms));
        let actions = self.drain(ms);
        // A wake at or before now would make the loop spin: after a batch, every wake lies ahead.
        if let Some(wake) = self.wake() {
            assert!(wake > ms, "at {ms} ms the next wake is {wake} ms: {actions:?}");
        }
        actions
    }

    fn drain(&mut self, ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        while let Some(action) = self.core.poll_action() {
            if let Some(outcome) = self.world.answer(&action) {
                self.core.handle(outcome, self.at(ms));
            }
            actions.push(action);
        }
        actions
    }

    /// Milliseconds from the start to the core's next wake.
    fn wake(&self) -> Option<u64> {
        self.core.next_wake().map(|at| (at - self.t0).as_millis() as u64)
    }

    /// The registry sends `web` on 8080 and its watcher two servers; HAProxy starts at `ms` and serves 5 ms
    /// later, when it is first asked.
    fn serving(&mut self, ms: u64) {
        self.input(ms, services(&[("web", 8080)]));
        let actions = self.input(ms, servers("web", 0, &[1, 2]));
        assert_eq!(kinds(&actions), ["Start", "SaveState"], "{actions:?}");
        assert_eq!(self.wake(), Some(ms + 5));
        let actions = self.tick(ms + 5);
        assert_eq!(kinds(&actions), ["AskServing", "Accept", "CloseListeners"], "{actions:?}");
    }
}

fn binary() -> Binary {
    Binary { path: "/usr/sbin/haproxy".into(), version: (2, 6), version_text: "2.6.12".into() }
}

fn spec(port: u16) -> ServiceSpec {
    ServiceSpec {
        port,
        listen_options: vec!["mode http".into()],
        server_options: vec!["check".into()],
        watcher: WatcherSpec::Zookeeper { server: "127.0.0.1:2181".into(), path: "/services/web".into() },
        allow_empty: false,
    }
}

fn services(list: &[(&str, u16)]) -> Input {
    services_from(0, list)
}

fn services_from(source: u64, list: &[(&str, u16)]) -> Input {
    Input::Services {
        source,
        services: list.iter().map(|&(name, port)| (name.to_string(), spec(port))).collect(),
    }
}

fn server(port: u16) -> Server {
    Server::new("10.0.0.1", port.into()).unwrap()
}

fn servers(service: &str, generation: u64, ports: &[u16]) -> Input {
    Input::Servers {
        service: service.into(),
        generation,
        servers: Arc::new(ports.iter().map(|&p| server(p)).collect()),
    }
}

/// The variant names of `actions`, in order: what a story's expectations compare.
fn kinds(actions: &[Action]) -> Vec<&'static str> {
    actions
        .iter()
        .map(|action| match action {
            Action::Bind { .. } => "Bind",
            Action::Watch { .. } => "Watch",
            Action::Unwatch { .. } => "Unwatch",
            Action::FollowSource { .. } => "FollowSource",
            Action::ReadConfig => "ReadConfig",
            Action::UseHaproxy { .. } => "UseHaproxy",
            Action::Run(_) => "Run",
            Action::QueryServers { .. } => "QueryServers",
            Action::WriteConfig { .. } => "WriteConfig",
            Action::Start { .. } => "Start",
            Action::AskServing { .. } => "AskServing",
            Action::Reap => "Reap",
            Action::Check => "Check",
            Action::Accept => "Accept",
            Action::Reject { .. } => "Reject",
            Action::CloseListeners { .. } => "CloseListeners",
            Action::SaveState { .. } => "SaveState",
            Action::Stop { .. } => "Stop",
        })
        .collect()
}

/// The runtime commands among `actions`, as HAProxy reads them.
fn commands(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Run(commands) => Some(commands.iter().map(Command::to_string)),
            _ => None,
        })
        .flatten()
        .collect()
}

fn reasons(actions: &[Action]) -> Vec<ReloadReason> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Start { reasons, .. } => Some(reasons.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn started(actions: &[Action]) -> bool {
    kinds(actions).contains(&"Start")
}

// ---- the first start ----

#[test]
fn the_first_start_waits_for_the_registry_and_every_watcher() {
    let mut story = Story::new();
    assert!(story.tick(1000).is_empty(), "nothing before the registry answers");
    let actions = story.input(1500, services(&[("web", 8080), ("api", 8081)]));
    assert_eq!(kinds(&actions), ["Bind", "Watch", "Watch", "SaveState"], "{actions:?}");
    assert!(!started(&story.input(1600, servers("web", 1, &[1]))), "api's watcher has not reported");
    let actions = story.input(1700, servers("api", 0, &[2]));
    assert_eq!(reasons(&actions), [ReloadReason::FirstStart]);
}

#[test]
fn a_silent_watcher_holds_the_first_start_for_the_startup_wait_only() {
    let mut story = Story::new();
    story.input(10, services(&[("web", 8080)]));
    assert!(!started(&story.tick(2999)));
    assert_eq!(story.wake(), Some(3000));
    assert!(started(&story.tick(3000)));
}

#[test]
fn the_first_start_waits_on_while_watchers_keep_reporting() {
    let mut story = Story::new();
    story.input(10, services(&[("a", 8080), ("b", 8081), ("c", 8082)]));
    story.input(2500, servers("a", 0, &[1]));
    assert!(!started(&story.tick(3000)), "a reported 0.5 s ago: more may come");
    story.input(3400, servers("b", 1, &[1]));
    assert!(!started(&story.tick(4000)));
    assert_eq!(story.wake(), Some(4400), "one quiet second after the last report");
    assert!(started(&story.tick(4400)));
}

#[test]
fn the_first_start_waits_thirty_seconds_at_most() {
    let mut story = Story::new();
    story.input(10, services(&[("a", 8080), ("b", 8081)]));
    for ms in (500..30_000).step_by(500) {
        assert!(!started(&story.input(ms, servers("a", 0, &[ms as u16]))), "at {ms} ms");
    }
    assert!(started(&story.tick(30_000)));
}

#[test]
fn a_new_process_gets_nothing_before_it_answers_with_its_pid() {
    let mut story = Story::new();
    story.world.answers = false;
    story.input(0, services(&[("web", 8080)]));
    let actions = story.input(10, servers("web", 0, &[1]));
    assert_eq!(kinds(&actions), ["Start", "SaveState"]);
    assert_eq!(kinds(&story.tick(15)), ["AskServing"]);
    let actions = story.input(17, servers("web", 0, &[1, 2]));
    assert_eq!(kinds(&actions), ["AskServing"], "no runtime command to a process that is not serving");
    assert_eq!(story.wake(), Some(22), "asked again every 5 ms");
    story.world.answers = true;
    let actions = story.tick(22);
    assert_eq!(kinds(&actions)[..3], ["AskServing", "Accept", "CloseListeners"]);
    assert_eq!(
        commands(&actions),
        [
            "add server web/10.0.0.1:2 10.0.0.1:2 check",
            "enable health web/10.0.0.1:2",
            "set server web/10.0.0.1:2 state ready"
        ]
    );
}

#[test]
fn a_process_that_never_answers_is_taken_to_serve_after_thirty_seconds() {
    let mut story = Story::new();
    story.world.answers = false;
    story.input(0, services(&[("web", 8080)]));
    story.input(10, servers("web", 0, &[1]));
    assert!(!kinds(&story.tick(29_000)).contains(&"Accept"));
    assert!(kinds(&story.tick(30_010)).contains(&"Accept"));
}

// ---- runtime changes ----

#[test]
fn a_server_that_leaves_goes_to_maintenance_without_a_reload() {
    let mut story = Story::new();
    story.serving(0);
    let actions = story.input(1000, servers("web", 0, &[1]));
    assert_eq!(commands(&actions), ["set server web/10.0.0.1:2 state maint"]);
    assert!(!started(&actions));
}

#[test]
fn a_new_server_is_added_at_run_time() {
    let mut story = Story::new();
    story.serving(0);
    let actions = story.input(1000, servers("web", 0, &[1, 2, 3]));
    assert_eq!(
        commands(&actions),
        [
            "add server web/10.0.0.1:3 10.0.0.1:3 check",
            "enable health web/10.0.0.1:3",
            "set server web/10.0.0.1:3 state ready"
        ]
    );
    assert!(!started(&actions));
}

#[test]
fn haproxy_cfg_follows_runtime_changes_at_most_every_200_ms() {
    let mut story = Story::new();
    story.serving(0);
    assert!(kinds(&story.input(1000, servers("web", 0, &[1]))).contains(&"WriteConfig"));
    assert!(!kinds(&story.input(1050, servers("web", 0, &[1, 2]))).contains(&"WriteConfig"));
    assert_eq!(story.wake(), Some(1200));
    let actions = story.tick(1200);
    let Some(Action::WriteConfig { text }) = actions.iter().find(|a| matches!(a, Action::WriteConfig { .. }))
    else {
        panic!("{actions:?}")
    };
    assert!(text.contains("server 10.0.0.1:2 10.0.0.1:2"), "{text}");
}

#[test]
fn a_refused_runtime_command_falls_back_to_a_reload() {
    let mut story = Story::new();
    story.serving(0);
    story.world.refuse = vec![("set server", None)];
    let actions = story.input(1000, servers("web", 0, &[1]));
    assert!(!started(&actions), "the reload waits its window");
    let actions = story.tick(1050);
    assert!(matches!(&reasons(&actions)[..], [ReloadReason::RuntimeFailed(_)]), "{actions:?}");
}

#[test]
fn a_refused_dynamic_server_makes_the_service_reload_for_new_servers() {
    let mut story = Story::new();
    story.serving(0);
    story.world.refuse = vec![("add server", Some(Refusal::BackendNotDynamic))];
    let actions = story.input(1000, servers("web", 0, &[1, 2, 3]));
    assert_eq!(commands(&actions)[0], "add server web/10.0.0.1:3 10.0.0.1:3 check", "{actions:?}");
    // When the reload is due, its reasons are judged again: the refused server is new to HAProxy.
    assert_eq!(
        reasons(&story.tick(1050)),
        [ReloadReason::NoDynamicServers { service: "web".into(), server: "10.0.0.1:3".into() }]
    );
    story.tick(1060);
    story.world.refuse.clear();
    // Until its server options change, a new server of web is not tried at run time.
    let actions = story.input(2000, servers("web", 0, &[1, 2, 3, 4]));
    assert!(commands(&actions).is_empty(), "{actions:?}");
    let actions = story.tick(2050);
    assert_eq!(
        reasons(&actions),
        [ReloadReason::NoDynamicServers { service: "web".into(), server: "10.0.0.1:4".into() }]
    );
}

#[test]
fn a_failed_command_stops_the_rest_of_the_plan() {
    let mut story = Story::new();
    story.serving(0);
    story.world.refuse = vec![("set server web/10.0.0.1:1", None)];
    let actions = story.input(1000, servers("web", 0, &[3]));
    assert_eq!(commands(&actions), ["set server web/10.0.0.1:1 state maint"], "nothing after the failure");
}

// ---- reloads ----

#[test]
fn reloads_are_coalesced_within_the_window() {
    let mut story = Story::new();
    story.serving(0);
    story.tick(600);
    story.input(1000, services(&[("web", 8080), ("api", 8081)]));
    story.input(1010, servers("api", 1, &[1]));
    assert_eq!(story.wake(), Some(1060), "the window (50 ms) opens with the first change");
    let moved = Server { options: vec!["backup".into()], ..server(1) };
    let input =
        Input::Servers { service: "web".into(), generation: 0, servers: Arc::new(vec![moved, server(2)]) };
    assert!(!started(&story.input(1030, input)));
    let actions = story.tick(1060);
    assert_eq!(
        reasons(&actions),
        [
            ReloadReason::ServiceAdded("api".into()),
            ReloadReason::ServerOptionsChanged { service: "web".into(), server: "10.0.0.1:1".into() }
        ]
    );
}

#[test]
fn a_reload_waits_while_a_new_service_awaits_its_watcher() {
    let mut story = Story::new();
    story.serving(0);
    story.tick(600);
    story.input(1000, services(&[("web", 8080), ("api", 8081)]));
    story.input(1010, servers("api", 1, &[1]));
    story.input(1030, services(&[("web", 8080), ("api", 8081), ("db", 8082)]));
    assert!(!started(&story.tick(1060)), "db's first server set is awaited");
    story.input(1040, servers("db", 2, &[1]));
    let actions = story.tick(1090);
    assert_eq!(
        reasons(&actions),
        [ReloadReason::ServiceAdded("api".into()), ReloadReason::ServiceAdded("db".into())]
    );
}

#[test]
fn the_window_is_not_pushed_back_by_later_changes() {
    let mut story = Story::new();
    story.serving(0);
    story.tick(600);
    story.input(1000, services(&[("web", 8080), ("api", 8081)]));
    story.input(1001, servers("api", 1, &[1]));
    for ms in [1020, 1040] {
        story.input(ms, servers("api", 1, &[1, ms as u16]));
    }
    assert!(started(&story.tick(1051)), "due 50 ms after the first change, whatever came after");
}

#[test]
fn reloads_are_at_least_the_interval_apart() {
    let mut story = Story::new();
    story.serving(0);
    story.input(100, services(&[("web", 8080), ("api", 8081)]));
    story.input(110, servers("api", 1, &[1]));
    assert_eq!(story.wake(), Some(500), "0.5 s after the last reload, not 50 ms after the change");
    assert!(!started(&story.tick(400)));
    assert!(started(&story.tick(500)));
}

#[test]
fn a_new_services_reload_waits_a_second_at_most_for_its_watcher() {
    let mut story = Story::new();
    story.serving(0);
    story.input(1000, services(&[("web", 8080), ("api", 8081)]));
    assert!(!started(&story.tick(1500)), "api's watcher has not reported yet");
    assert_eq!(story.wake(), Some(2000));
    assert_eq!(kinds(&story.tick(2000)), Vec::<&str>::new(), "the window opens once the wait is over");
    assert!(started(&story.tick(2050)));
}

#[test]
fn a_removed_service_stops_its_watcher_and_reloads() {
    let mut story = Story::new();
    story.serving(0);
    story.tick(600);
    let actions = story.input(1000, services(&[]));
    assert_eq!(kinds(&actions), ["Unwatch", "SaveState"]);
    assert_eq!(reasons(&story.tick(1050)), [ReloadReason::ServiceRemoved("web".into())]);
}

#[test]
fn a_changed_server_option_takes_a_reload() {
    let mut story = Story::new();
    story.serving(0);
    story.tick(600);
    let input = Input::Servers {
        service: "web".into(),
        generation: 0,
        servers: Arc::new(vec![Server { options: vec!["backup".into()], ..server(1) }, server(2)]),
    };
    story.input(1000, input);
    assert_eq!(
        reasons(&story.tick(1050)),
        [ReloadReason::ServerOptionsChanged { service: "web".into(), server: "10.0.0.1:1".into() }]
    );
}

// ---- rejected configs ----

/// `web` serves; then `api` is added with a config HAProxy rejects.
fn rejected_story() -> Story {
    let mut story = Story::new();
    story.serving(0);
    story.tick(600);
    story.input(1000, services(&[("web", 8080), ("api", 8081)]));
    story.input(1001, servers("api", 1, &[1]));
    assert!(started(&story.tick(1051)));
    story.world.exit = Some((102, Duration::from_millis(30)));
    story.world.check = Err("[ALERT] parsing [haproxy.cfg:12]: unknown keyword".into());
    story
}

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
    story.input(4000, services(&[("web", 8080), ("api", 8082)]));
    assert_eq!(
        reasons(&story.tick(4050)),
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
    story.world.check = Ok(());
    let actions = story.input(1080, Input::Child);
    assert_eq!(kinds(&actions)[..3], ["Reap", "Check", "Accept"], "{actions:?}");
    assert_eq!(story.wake(), Some(1280), "0.2 s of backoff");
    assert_eq!(reasons(&story.tick(1280)), [ReloadReason::FirstStart]);
}

// ---- HAProxy dies ----

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
    story.world.start = Err(StartFailure::Spawn("permission denied".into()));
    story.input(0, services(&[("web", 8080)]));
    assert!(started(&story.input(10, servers("web", 0, &[1]))));
    assert_eq!(story.wake(), Some(210));
    story.world.start = Ok(());
    assert!(started(&story.tick(210)));
}

#[test]
fn a_candidate_that_cannot_be_written_is_tried_again_at_the_next_wake_without_backoff() {
    let mut story = Story::new();
    story.world.start = Err(StartFailure::Write("read-only file system".into()));
    story.input(0, services(&[("web", 8080)]));
    assert!(started(&story.input(10, servers("web", 0, &[1]))));
    assert_eq!(story.wake(), Some(1000), "the state file's wake, not a restart's");
    story.world.start = Ok(());
    assert!(started(&story.tick(1000)));
}

// ---- the state file ----

fn saved_web() -> BTreeMap<String, SavedService> {
    [("web".to_string(), SavedService { spec: spec(8080), servers: Arc::new(vec![server(7)]) })].into()
}

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

// ---- the registry ----

#[test]
fn a_service_whose_port_another_has_is_not_set_up() {
    let mut story = Story::new();
    story.serving(0);
    let actions = story.input(1000, services(&[("web", 8080), ("second", 8080)]));
    assert!(!kinds(&actions).contains(&"Watch"), "{actions:?}");
    assert_eq!(story.wake(), Some(6000), "tried again in 5 s");
}

#[test]
fn a_port_that_cannot_be_bound_is_tried_again_every_five_seconds() {
    let mut story = Story::new();
    story.world.taken.insert(8081);
    story.serving(0);
    let actions = story.input(1000, services(&[("web", 8080), ("api", 8081)]));
    assert_eq!(kinds(&actions), ["Bind", "SaveState"], "{actions:?}");
    story.world.taken.clear();
    let actions = story.tick(6000);
    assert_eq!(kinds(&actions)[..2], ["Bind", "Watch"], "{actions:?}");
}

#[test]
fn an_empty_server_set_keeps_the_last_servers() {
    let mut story = Story::new();
    story.serving(0);
    let actions = story.input(1000, servers("web", 0, &[]));
    assert!(commands(&actions).is_empty(), "{actions:?}");
}

#[test]
fn a_stopped_watchers_late_report_is_ignored() {
    let mut story = Story::new();
    story.serving(0);
    assert!(commands(&story.input(1000, servers("web", 7, &[9]))).is_empty());
}

#[test]
fn sighup_switches_sources_and_ignores_the_old_ones_reports() {
    let mut story = Story::new();
    story.serving(0);
    assert_eq!(kinds(&story.input(1000, Input::Hangup)), ["ReadConfig"]);
    let yaml = "service_config:\n  type: directory\n  path: /etc/proxymgr/services\n";
    let config = Config::parse(Path::new("proxymgr.yml"), yaml).unwrap();
    let actions = story.input(1001, Input::ConfigRead(Box::new((config, binary()))));
    let [Action::FollowSource { source: ServiceConfigSource::Directory { .. }, generation: 1 }, Action::UseHaproxy { .. }, ..] =
        &actions[..]
    else {
        panic!("{actions:?}")
    };
    story.tick(1600);
    assert!(story.input(2000, services_from(0, &[])).iter().all(|a| !matches!(a, Action::Unwatch { .. })));
    assert_eq!(kinds(&story.input(2100, services_from(1, &[])))[0], "Unwatch");
}

#[test]
fn sighup_with_new_global_lines_reloads() {
    let mut story = Story::new();
    story.serving(0);
    story.tick(600);
    let yaml = format!("{CONFIG}haproxy:\n  global:\n    - maxconn 1001\n");
    let config = Config::parse(Path::new("proxymgr.yml"), &yaml).unwrap();
    story.input(1000, Input::ConfigRead(Box::new((config, binary()))));
    assert_eq!(reasons(&story.tick(1050)), [ReloadReason::HeadChanged]);
}

// ---- drift ----

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

// ---- stopping ----

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

// ---- idling ----

#[test]
fn an_idle_core_wakes_only_for_the_drift_check() {
    let mut story = Story::new();
    story.serving(0);
    story.tick(1000);
    assert_eq!(story.wake(), Some(30_000));
    let _ = State::Ready;
}

// ---- wakes that must not lie in the past (each would make the loop spin) ----

#[test]
fn a_spawn_failure_during_a_reload_leaves_no_wake_behind() {
    let mut story = Story::new();
    story.serving(0);
    story.tick(600);
    story.input(1000, services(&[("web", 8080), ("api", 8081)]));
    story.input(1001, servers("api", 1, &[1]));
    story.world.start = Err(StartFailure::Spawn("out of memory".into()));
    assert!(started(&story.tick(1051)));
    story.world.start = Ok(());
    assert!(!started(&story.tick(1251)), "the old process serves; the reload waits its window again");
    assert!(started(&story.tick(1301)));
}

#[test]
fn a_child_before_the_registry_answers_leaves_no_wake_behind() {
    let mut story = Story::new();
    assert!(story.input(100, Input::Child).iter().all(|a| matches!(a, Action::Reap)));
    assert_eq!(story.wake(), Some(3000), "the start wait's end, not the state file's");
}

#[test]
fn a_blocked_service_of_the_state_file_leaves_no_wake_behind() {
    let mut story = Story::with_saved(saved_web());
    story.world.taken.insert(8080);
    story.tick(3000);
    story.tick(8000);
    story.tick(13_000);
}

#[test]
fn a_stale_file_waits_without_waking_while_a_config_is_rejected() {
    let mut story = rejected_story();
    story.input(1080, Input::Child);
    story.input(2000, servers("web", 0, &[1]));
    story.tick(2200);
}
