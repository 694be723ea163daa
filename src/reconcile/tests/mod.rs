//! Table tests of the reconciler's core. Each case is a story: inputs at given milliseconds after the start,
//! then the actions the core asks for. A small scripted world answers the actions that have an outcome (a
//! start gets the next pid, a runtime command goes through unless the story says otherwise), so a story reads
//! like what happens on a load balancer, and no HAProxy, ZooKeeper, thread or clock is involved.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::core::{Core, Outcome};
use super::messages::{Action, CommandFailure, Generations, HandOverFailure, Input, StartFailure};
use crate::config::{Config, ServiceConfigSource};
use crate::haproxy::command::{Command, Refusal};
use crate::haproxy::listeners::ListenerError;
use crate::haproxy::process::{Binary, ProcessError};
use crate::haproxy::runtime::{RuntimeError, ServerStatus};
use crate::haproxy::InstallError;
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
    /// `haproxy -c`'s verdict on a candidate: None accepts it, else HAProxy's complaint.
    check: Option<&'static str>,
    /// What the next `Reap` finds.
    exit: Option<(u32, Duration)>,
    /// Ports another program holds.
    taken: BTreeSet<u16>,
    start: Starts,
    /// `show servers state` per backend.
    servers_state: BTreeMap<String, BTreeMap<String, ServerStatus>>,
    /// `show map` per map file: a map not here is unknown to HAProxy.
    maps: BTreeMap<String, BTreeMap<String, String>>,
    /// Whether clients hold connections to every process, so a replaced one lives on as an older generation
    /// (until a `Reap` finds it in `finished`, or it is stopped hard); else it ends as soon as it is replaced.
    holds: bool,
    /// The live processes, as the executor would report them, and what it reported last.
    live: Generations,
    reported: Generations,
    /// The process the one started last replaces, until that one serves.
    previous: Option<u32>,
    /// Older generations the next `Reap` finds ended.
    finished: Vec<u32>,
    /// Whether a hand-over can write the state file.
    hands_over: bool,
}

impl Default for World {
    fn default() -> World {
        World {
            next_pid: 100,
            answers: true,
            refuse: vec![],
            check: None,
            exit: None,
            taken: BTreeSet::new(),
            start: Starts::Yes,
            servers_state: BTreeMap::new(),
            maps: BTreeMap::new(),
            holds: false,
            live: Generations::default(),
            reported: Generations::default(),
            previous: None,
            finished: vec![],
            hands_over: true,
        }
    }
}

/// Whether a new HAProxy starts.
#[derive(Clone, Copy)]
enum Starts {
    Yes,
    /// The process cannot be spawned.
    NoSpawn,
    /// The candidate config cannot be written.
    NoWrite,
}

fn io(kind: std::io::ErrorKind) -> std::io::Error {
    std::io::Error::from(kind)
}

impl World {
    /// What the action does to the live processes.
    fn track(&mut self, action: &Action, outcome: Option<&Input>) {
        let live = &mut self.live;
        match (action, outcome) {
            (Action::Start { .. }, Some(Input::Started { pid })) => {
                self.previous = live.current.replace(*pid);
                live.old.extend(self.previous.filter(|_| self.holds));
            }
            (Action::Reap, exited) => {
                if let Some(Input::Exited { pid, .. }) = exited {
                    live.current = live.current.filter(|current| current != pid);
                }
                live.old.retain(|pid| !self.finished.contains(pid));
                self.finished.clear();
            }
            (Action::Reject { .. }, _) if live.current.is_none() => {
                live.current = self.previous.take();
                live.old.retain(|pid| Some(*pid) != live.current);
            }
            (Action::HardStop { pids }, _) => live.old.retain(|pid| !pids.contains(pid)),
            _ => {}
        }
    }

    /// The live processes, when they changed since last asked (the executor's `generations_changed`).
    fn generations_changed(&mut self) -> Option<Input> {
        (self.live != self.reported).then(|| {
            self.reported = self.live.clone();
            Input::Generations(self.live.clone())
        })
    }

    fn answer(&mut self, action: &Action) -> Option<Input> {
        Some(match action {
            Action::Bind { addresses } => Input::Bound(
                addresses
                    .iter()
                    .map(|&at| {
                        let p = at.port();
                        (
                            at,
                            if self.taken.contains(&p) {
                                Err(ListenerError {
                                    addr: at,
                                    fd: None,
                                    source: io(std::io::ErrorKind::AddrInUse),
                                })
                            } else {
                                Ok(1000 + p as i32)
                            },
                        )
                    })
                    .collect(),
            ),
            Action::Start { .. } => match self.start {
                Starts::Yes => {
                    self.next_pid += 1;
                    Input::Started { pid: self.next_pid }
                }
                Starts::NoSpawn => Input::StartFailed(StartFailure::Spawn {
                    path: "/usr/sbin/haproxy".into(),
                    source: io(std::io::ErrorKind::PermissionDenied),
                }),
                Starts::NoWrite => Input::StartFailed(StartFailure::Write(InstallError::Write {
                    path: "/etc/haproxy/haproxy.cfg".into(),
                    source: io(std::io::ErrorKind::PermissionDenied),
                })),
            },
            Action::AskServing { pid } => Input::Serving(if self.answers {
                Ok(*pid)
            } else {
                Err(RuntimeError::Io {
                    path: "/run/haproxy.sock".into(),
                    source: io(std::io::ErrorKind::ConnectionRefused),
                })
            }),
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
            Action::Check => Input::Checked(match self.check {
                None => Ok(()),
                Some(reason) => {
                    Err(ProcessError::Rejected { reason: reason.into(), status: "exit status 1".into() })
                }
            }),
            Action::QueryServers { backend } => Input::ServersState {
                backend: backend.clone(),
                result: self.servers_state.get(backend).cloned().ok_or_else(|| RuntimeError::Refused {
                    command: format!("show servers state {backend}"),
                    reply: "No such backend.".into(),
                    refusal: Refusal::NoSuchBackend,
                }),
            },
            Action::QueryMap { frontend, map } => Input::MapEntries {
                frontend: frontend.clone(),
                result: self.maps.get(map).cloned().ok_or_else(|| RuntimeError::Refused {
                    command: format!("show map {map}"),
                    reply: "Unknown map identifier. Please use #<id> or <file>.".into(),
                    refusal: Refusal::Other,
                }),
            },
            Action::SaveState { .. } => Input::StateSaved(true),
            Action::HandOver { state_file, .. } => Input::HandedOver(if self.hands_over {
                Ok(())
            } else {
                Err(HandOverFailure::StateFile {
                    path: state_file.clone(),
                    reason: "read-only file system".into(),
                })
            }),
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
        Story::with_binary(yaml, saved, &binary(), BTreeMap::new())
    }

    /// On HAProxy `major.minor` (the others are on 2.6).
    fn on(version: (u32, u32)) -> Story {
        let binary = Binary { version, version_text: format!("{}.{}.0", version.0, version.1), ..binary() };
        Story::with_binary(CONFIG, BTreeMap::new(), &binary, BTreeMap::new())
    }

    /// With `yaml` as proxymgr.yml; its status endpoint is off unless `yaml` says otherwise, so that the
    /// stories of other concerns see no `Publish`.
    /// With the state file's services `saved` and its routes `routes` as well.
    fn with_binary(
        yaml: &str,
        saved: BTreeMap<String, SavedService>,
        binary: &Binary,
        routes: crate::state::SavedRoutes,
    ) -> Story {
        let yaml =
            if yaml.contains("\nstatus:") { yaml.to_string() } else { format!("{yaml}\nstatus: off\n") };
        let config = Config::parse(Path::new("proxymgr.yml"), &yaml).unwrap();
        let t0 = Instant::now();
        let mut core = Core::new(config, binary, saved, t0, Instant::now).with_routes(routes);
        core.set_epoch(t0, std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
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
            let outcome = self.world.answer(&action);
            self.world.track(&action, outcome.as_ref());
            if let Some(outcome) = outcome {
                self.core.handle(outcome, self.at(ms));
            }
            if let Some(generations) = self.world.generations_changed() {
                self.core.handle(generations, self.at(ms));
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
    Binary {
        path: "/usr/sbin/haproxy".into(),
        version: (2, 6),
        version_text: "2.6.12".into(),
        prometheus_exporter: true,
    }
}

fn spec(port: u16) -> ServiceSpec {
    ServiceSpec {
        port: Some(port),
        listen_options: vec!["mode http".into()],
        server_options: vec!["check".into()],
        watcher: WatcherSpec::Zookeeper { server: "127.0.0.1:2181".into(), path: "/services/web".into() },
        ..ServiceSpec::example()
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
            Action::QueryMap { .. } => "QueryMap",
            Action::WriteConfig { .. } => "WriteConfig",
            Action::Start { .. } => "Start",
            Action::AskServing { .. } => "AskServing",
            Action::Reap => "Reap",
            Action::HardStop { .. } => "HardStop",
            Action::Check => "Check",
            Action::Accept => "Accept",
            Action::Reject { .. } => "Reject",
            Action::CloseListeners { .. } => "CloseListeners",
            Action::SaveState { .. } => "SaveState",
            Action::Stop { .. } => "Stop",
            Action::HandOver { .. } => "HandOver",
            Action::Publish(_) => "Publish",
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

/// The config of the HAProxy `actions` start.
fn start_text(actions: &[Action]) -> &str {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Start { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no start in {actions:?}"))
}

fn started(actions: &[Action]) -> bool {
    kinds(actions).contains(&"Start")
}

fn saved_web() -> BTreeMap<String, SavedService> {
    [("web".to_string(), SavedService { spec: spec(8080), servers: Arc::new(vec![server(7)]) })].into()
}

/// `web` serves; then `api` is added with a config HAProxy rejects.
fn rejected_story() -> Story {
    let mut story = Story::new();
    story.serving(0);
    story.tick(600);
    story.input(1000, services(&[("web", 8080), ("api", 8081)]));
    assert!(started(&story.input(1001, servers("api", 1, &[1]))), "a quiet load balancer reloads at once");
    story.world.exit = Some((102, Duration::from_millis(30)));
    // A line of the head: the operator's proxymgr.yml, with no registration to hold out.
    story.world.check = Some("[ALERT] parsing [haproxy.cfg:3] : unknown keyword 'x' in 'global' section");
    story
}

mod deaths;
mod drift;
mod first_start;
mod hold;
mod observe;
mod quarantine;
mod registry;
mod rejected;
mod reloads;
mod routing;
mod runtime;
mod slots;
mod state_file;
mod stopping;
mod storms;
mod wakes;
