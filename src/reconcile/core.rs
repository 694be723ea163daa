//! The reconciler's core: every decision proxymgr makes about HAProxy, and nothing else. It holds the desired
//! state (services, their specs and servers), the model of what the serving HAProxy has, and where reloading
//! stands; it does no I/O, reads no clock and starts no thread.
//!
//! In the manner of quinn-proto's `Connection`: [`Core::handle`] takes what happened (an [`Input`]: an event,
//! or the outcome of an action) with the time it happened; [`Core::tick`] does what is due once a batch of
//! inputs is in; [`Core::poll_action`] says what to do next, and [`Core::next_wake`] when to tick again if
//! nothing happens. The loop (`mod.rs`) carries the actions out and feeds their outcomes back at once, so a
//! multi-step piece of work (runtime commands one step at a time, a drift check's queries, a new process's
//! start) completes before the next event is taken.
//!
//! **Architecture Invariant:** the core is pure: every effect is an [`Action`], every fact an [`Input`], and
//! `now` comes in as an argument. The one clock it holds, `measure`, only times its own work for the debug log.

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::config::Config;
use crate::haproxy::command::Command;
use crate::haproxy::process::{Binary, ProcessError};
use crate::haproxy::render::Renderer;
use crate::haproxy::runtime::{RuntimeError, ServerStatus};
use crate::haproxy::Capabilities;
use crate::plan::{
    effective_weight, plan, Desired, ReloadReason, Routes, Running, RunningServer, Scope, Step,
};
use crate::service::{Server, ServiceSpec};
use crate::slots;
use crate::state::{SavedRoutes, SavedService, Snapshot};
use crate::status;

use super::hold::{Holding, Policy};
use super::messages::{Action, CommandFailure, Generations, HandOverFailure, Input, StartFailure};
use super::quarantine::{self, Culprit, Layout, Quarantine, Refused};
use super::services::{changes, Ports, Services};

mod converge;
mod drift;
mod hold;
mod observe;
mod pacing;
mod registry;
mod render;
mod routing;
mod start;

use converge::{After, Carried, Steps};
use observe::Observed;
use registry::Following;
use start::{Launch, Phase};

/// How long the first start waits for the registry's first answer and every watcher's first server set, so that
/// HAProxy starts once with everything instead of once per arriving piece.
pub const STARTUP_WAIT: Duration = Duration::from_secs(3);
/// While the first start waits past STARTUP_WAIT: how long without a new server set ends the wait, and the
/// longest it may take in all.
pub const STARTUP_QUIET: Duration = Duration::from_secs(1);
pub const STARTUP_WAIT_MAX: Duration = Duration::from_secs(30);
/// How long a new service's reload waits for its watcher's first server set.
pub const FIRST_REPORT_WAIT: Duration = Duration::from_secs(1);
/// How often a service that could not be set up (its port taken) is tried again.
pub const BLOCKED_RETRY: Duration = Duration::from_secs(5);
pub const RESTART_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
/// A process that served this long is healthy: its crash restarts it at once.
pub const HEALTHY_RUN: Duration = Duration::from_secs(30);
/// The least time between two writes of the state file while servers churn.
pub const STATE_WRITE_INTERVAL: Duration = Duration::from_secs(1);
/// The least time between two rewrites of haproxy.cfg for runtime changes.
pub const FILE_WRITE_INTERVAL: Duration = Duration::from_millis(200);
/// How often a starting HAProxy is asked whether it serves yet, and for how long.
pub const START_POLL: Duration = Duration::from_millis(5);
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How the reconciler ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Asked to stop (SIGTERM, SIGINT): HAProxy stopped gracefully.
    Stopped,
    /// A part of the daemon died; HAProxy was stopped and the supervisor should restart proxymgr.
    Failed,
    /// Asked to hand over (SIGUSR2): HAProxy serves on, its pids in the state file, and the listeners wait
    /// for the next proxymgr.
    HandedOver,
}

/// Work that spans several actions. While any is under way, converging waits (`busy`).
enum Work {
    Idle,
    /// A plan's steps, sent one at a time: a refusal decides whether the rest goes.
    Steps(Box<Steps>),
    /// A drift check waiting for this many backends' `show servers state`.
    Drift {
        pending: usize,
    },
    /// The process just started exited before it served; `haproxy -c` judges its config.
    Judging {
        pid: u32,
        how: String,
        ran: Duration,
    },
}

pub struct Core {
    config: Config,
    caps: Capabilities,
    renderer: Renderer,
    /// Times the core's own work for the debug log; decides nothing.
    measure: fn() -> Instant,
    /// The generation of the `service_config` source followed; an older one's report is ignored.
    source: u64,
    /// The registry's last whole set, as it sent it.
    registry: Option<BTreeMap<String, ServiceSpec>>,
    services: Services,
    /// The removal holds under way, by when they end.
    holding: Holding,
    /// The listener of every address bound, why the others could not be, and the frontends' addresses.
    ports: Ports,
    /// The addresses the serving process's config binds.
    serving_ports: BTreeSet<SocketAddr>,
    /// The shared frontends' desired routes, and the joins and keys left out of them.
    routes: Routes,
    route_refusals: Vec<super::routes::Refusal>,
    following: Option<Following>,
    retry_blocked_at: Option<Instant>,
    /// The serving process's state, as far as proxymgr made it; None while none serves.
    running: Option<Running>,
    phase: Phase,
    launch: Option<Launch>,
    work: Work,
    /// Whether a converge was put off while work was under way.
    deferred: bool,
    last_reload: Option<Instant>,
    /// Since when changes have waited that no reload has taken up yet.
    pending_since: Option<Instant>,
    /// The HAProxy processes alive, as the executor last reported them.
    live: Generations,
    /// When each process this proxymgr started did: the cap's log says how old a generation it stops is.
    born: BTreeMap<u32, Instant>,
    /// The skeleton (head and listen sections) HAProxy last rejected: not tried again until it changes.
    rejected: Option<String>,
    /// Services whose dynamic servers HAProxy refused, with the server options it refused them under.
    no_dynamic: BTreeMap<String, Vec<String>>,
    /// Servers and service specs HAProxy will not take, held out until they change.
    quarantine: Quarantine,
    /// Each service's spec as the serving process has it: what a service whose new spec HAProxy rejects keeps.
    served_specs: BTreeMap<String, ServiceSpec>,
    /// Whether haproxy.cfg on disk lags behind runtime changes, and when it may be written next.
    file_stale: bool,
    /// Whether the last converge wanted a reload: the file then waits for it (or for the rejected config to
    /// change), as it may hold only what HAProxy accepted.
    wants_reload: bool,
    file_due: Instant,
    /// The head (global, defaults) as rendered; None once the config changed.
    head: Option<String>,
    /// Services whose servers or spec changed since the last plan; all of them when `dirty_all`.
    dirty: BTreeSet<String>,
    dirty_all: bool,
    /// Whether services may have come or gone since the last plan.
    reshaped: bool,
    next_drift_check: Option<Instant>,
    restart_due: Option<Instant>,
    backoff: Backoff,
    started: Instant,
    /// The state file's services, until the registry answers or the start wait is over.
    saved: Option<BTreeMap<String, SavedService>>,
    /// Whether the state changed since the state file was last written, and when it may be written next.
    state_dirty: bool,
    /// Whether a snapshot was handed out and its outcome is not in yet.
    saving: bool,
    state_due: Instant,
    /// When a watcher last reported a server set.
    last_report: Instant,
    /// The latest `now` seen.
    now: Instant,
    actions: VecDeque<Action>,
    /// Whether a hand-over was asked for and its outcome is not in yet: nothing else is taken meanwhile.
    handing_over: bool,
    outcome: Option<Outcome>,
    /// What the core shows of itself (`observe.rs`).
    observed: Observed,
    /// HAProxy's version as `haproxy -v` gives it, for the status.
    binary_version: String,
}

impl Core {
    /// A core for `config` and the HAProxy `binary`, with the state file's services, at `now`. Its first action
    /// follows the `service_config` source.
    pub fn new(
        config: Config,
        binary: &Binary,
        saved: BTreeMap<String, SavedService>,
        now: Instant,
        measure: fn() -> Instant,
    ) -> Core {
        let next_drift_check = config.haproxy.drift_check_interval().map(|d| now + d);
        let mut actions = VecDeque::new();
        actions.push_back(Action::FollowSource { source: config.service_config.clone(), generation: 0 });
        let ports = Ports {
            bind_address: config.haproxy.bind_address,
            fds: BTreeMap::new(),
            errors: BTreeMap::new(),
            frontends: config.haproxy.frontends.clone(),
            names: config.haproxy.section_names(),
        };
        Core {
            caps: Capabilities::of_binary(binary),
            config,
            renderer: Renderer::default(),
            measure,
            source: 0,
            registry: None,
            services: Services::default(),
            holding: Holding::default(),
            ports,
            serving_ports: BTreeSet::new(),
            routes: Routes::new(),
            route_refusals: Vec::new(),
            following: None,
            retry_blocked_at: None,
            running: None,
            phase: Phase::Idle,
            launch: None,
            work: Work::Idle,
            deferred: false,
            last_reload: None,
            pending_since: None,
            live: Generations::default(),
            born: BTreeMap::new(),
            rejected: None,
            no_dynamic: BTreeMap::new(),
            quarantine: Quarantine::default(),
            served_specs: BTreeMap::new(),
            file_stale: false,
            wants_reload: false,
            file_due: now,
            head: None,
            dirty: BTreeSet::new(),
            dirty_all: true,
            reshaped: true,
            next_drift_check,
            restart_due: None,
            backoff: RESTART_BACKOFF,
            started: now,
            saved: Some(saved).filter(|s| !s.is_empty()),
            state_dirty: false,
            saving: false,
            state_due: now,
            last_report: now,
            now,
            actions,
            handing_over: false,
            outcome: None,
            observed: Observed::default(),
            binary_version: binary.version_text.clone(),
        }
    }

    /// How the core ended, once it did (after its `Stop` action).
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome.filter(|_| self.actions.is_empty())
    }

    /// The next thing to do. A step's commands come one at a time: the next once the last one's outcome is in.
    pub fn poll_action(&mut self) -> Option<Action> {
        if let Some(action) = self.actions.pop_front() {
            return Some(action);
        }
        let Work::Steps(steps) = &mut self.work else { return None };
        if steps.sent.is_some() {
            return None;
        }
        let step = steps.queue.pop_front()?;
        let commands = step.commands(&self.caps);
        steps.sent = Some(step);
        Some(Action::Run(commands))
    }

    /// When to tick next if nothing happens before.
    pub fn next_wake(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            return None;
        }
        let now = self.now;
        let startup = self
            .before_first_start()
            .then(|| {
                let quiet = (self.last_report + STARTUP_QUIET).max(self.started + STARTUP_WAIT);
                quiet.min(self.started + STARTUP_WAIT_MAX)
            })
            .filter(|&due| due > now);
        // The wait ends for the last service set up; one whose watcher never reports is waited for no longer.
        let awaiting = self
            .services
            .awaiting
            .last()
            .map(|(since, _)| *since + FIRST_REPORT_WAIT)
            .filter(|&due| due > now);
        let phase = match &self.phase {
            Phase::Idle => None,
            Phase::Waiting { since } => Some(self.reload_due(*since)),
            Phase::Starting(starting) => Some(starting.next_poll),
        };
        let state = (self.state_dirty && self.can_save()).then_some(self.state_due);
        let file = (self.file_stale && !self.wants_reload).then_some(self.file_due);
        [
            startup,
            awaiting,
            phase,
            self.restart_due,
            self.retry_blocked_at,
            self.next_drift_check,
            self.holding.next_end(),
            state,
            file,
            self.publish_due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Takes what happened at `now`.
    pub fn handle(&mut self, input: Input, now: Instant) {
        self.now = now;
        if self.outcome.is_some() {
            return;
        }
        if self.handing_over {
            if let Input::HandedOver(result) = input {
                self.handed_over(result);
            }
            return;
        }
        self.state_dirty |= matches!(input, Input::Services { .. } | Input::Servers { .. } | Input::Child);
        if matches!(input, Input::Services { .. } | Input::Servers { .. } | Input::ConfigRead(_)) {
            self.pending_since.get_or_insert(now);
        }
        if matches!(input, Input::Services { .. } | Input::Servers { .. }) {
            self.observed.reported(now);
        }
        // Whether the state file was written shows nowhere.
        if !matches!(input, Input::StateSaved(_)) {
            self.observe_change();
        }
        self.observed.stale_after(&input);
        match input {
            Input::Session { ensemble, news } => self.observed.session(ensemble, news, now),
            Input::Services { source, services } => {
                if source == self.source {
                    self.registry = Some(services);
                    self.follow_registry_again(now);
                }
            }
            Input::Servers { service, generation, servers } => {
                self.servers(service, generation, servers, now)
            }
            Input::Terminate => {
                log::info!("asked to stop");
                self.stop(Outcome::Stopped);
            }
            Input::ThreadDied { thread, reason } => {
                log::error!(
                    "thread {thread} died: {reason}; stopping so that the supervisor restarts proxymgr"
                );
                self.stop(Outcome::Failed);
            }
            Input::HandOver => self.hand_over(),
            // Only awaited while handing over (above).
            Input::HandedOver(_) => {}
            Input::Hangup => self.actions.push_back(Action::ReadConfig),
            Input::Child => self.actions.push_back(Action::Reap),
            Input::Bound(results) => {
                for (at, result) in results {
                    let frontend = self.ports.frontends.iter().find(|(_, f)| f.bind == at).map(|(n, _)| n);
                    match result {
                        Ok(fd) => {
                            if let Some(name) = frontend {
                                if self.ports.errors.contains_key(&at) {
                                    log::info!("frontend {name}: listening on {at}");
                                }
                                // The head holds the frontends: rendered again with this one.
                                self.head = None;
                            }
                            self.ports.fds.insert(at, fd);
                            self.ports.errors.remove(&at);
                        }
                        Err(e) => {
                            if let Some(name) = frontend.filter(|_| !self.ports.errors.contains_key(&at)) {
                                log::error!(
                                    "frontend {name}: {e}; left out of haproxy.cfg, trying again every {:?}",
                                    BLOCKED_RETRY
                                );
                            }
                            self.ports.errors.insert(at, e.to_string());
                        }
                    }
                }
                self.follow(now);
            }
            Input::ConfigRead(read) => {
                let (config, binary) = *read;
                self.reconfigure(config, binary, now);
            }
            Input::Started { pid } => self.started(pid, now),
            Input::StartFailed(failure) => {
                if let Some(launch) = self.launch.take() {
                    self.observed.reloaded(&launch.reasons, status::ReloadResult::Failed, None, now);
                }
                if let StartFailure::Spawn { .. } = failure {
                    self.schedule_restart(now);
                }
            }
            Input::Serving(result) => self.confirm(result, now),
            Input::Exited { pid, how, ran } => {
                if matches!(&self.phase, Phase::Starting(s) if s.pid == pid) {
                    self.work = Work::Judging { pid, how, ran };
                    self.actions.push_back(Action::Check);
                } else {
                    self.crashed(pid, &how, ran, now);
                }
            }
            Input::Checked(result) => self.judged(result, now),
            Input::Ran(result) => self.ran(result, now),
            Input::ServersState { backend, result } => self.drift_result(&backend, result),
            Input::MapEntries { frontend, result } => self.map_drift_result(&frontend, result),
            Input::Generations(live) => self.generations(live),
            Input::StateSaved(accepted) => {
                self.saving = false;
                self.state_dirty &= !accepted;
                self.state_due = now + STATE_WRITE_INTERVAL;
            }
        }
        self.resume(now);
        // Here too, not only at the tick: an outcome that comes after it must not leave a publication overdue.
        self.publish(now);
    }

    /// A batch of inputs is in, or a wake came: does what is due.
    pub fn tick(&mut self, now: Instant) {
        self.now = now;
        if self.outcome.is_some() {
            return;
        }
        let due = |at: Option<Instant>| at.is_some_and(|at| at <= now);
        // What the tick may change of the services as published: who is set up, what is served, a hold's end.
        if due(self.retry_blocked_at) || due(self.holding.next_end()) || self.saved.is_some() {
            self.observed.all_stale();
            self.observe_change();
        }
        if self.retry_blocked_at.is_some_and(|at| at <= now) {
            // Set again if some service is still blocked; what came from the state file is not retried.
            self.retry_blocked_at = None;
            self.follow_registry_again(now);
        }
        if self.next_drift_check.is_some_and(|at| at <= now) {
            self.check_drift(now);
        }
        self.serve_saved_state(now);
        self.end_holds(now);
        self.converge(now);
        self.save_state(now);
        self.publish(now);
    }

    /// The desired state as the planner reads it, borrowed from the services (see `Services::desired`).
    fn desired<'a>(&'a self, scope: Scope<'a>) -> Desired<'a> {
        let head = self.head.as_deref().unwrap_or_default();
        let defaults = &self.config.haproxy.defaults;
        self.services.desired(head, defaults, &self.routes, &self.no_dynamic, &self.quarantine, scope)
    }

    fn busy(&self) -> bool {
        self.following.is_some() || self.launch.is_some() || !matches!(self.work, Work::Idle)
    }

    /// Work that held a converge up has ended: converge now.
    fn resume(&mut self, now: Instant) {
        if self.busy() || self.outcome.is_some() {
            return;
        }
        if std::mem::take(&mut self.deferred) {
            self.converge(now);
        }
        self.save_state(now);
    }

    /// SIGUSR2: whatever was under way is left to the next proxymgr, which reads the registry afresh.
    fn hand_over(&mut self) {
        log::info!("asked to hand over to the next proxymgr (SIGUSR2)");
        self.actions.clear();
        self.handing_over = true;
        // Before the registry answered and the state file's services were served, those are the file's own.
        let snapshot = if self.can_save() {
            self.snapshot()
        } else {
            Snapshot { services: self.saved.clone().unwrap_or_default(), routes: self.saved_routes() }
        };
        self.actions.push_back(Action::HandOver { state_file: self.config.state_file.clone(), snapshot });
    }

    fn handed_over(&mut self, result: Result<(), HandOverFailure>) {
        self.handing_over = false;
        match result {
            Ok(()) => self.outcome = Some(Outcome::HandedOver),
            Err(e) => {
                log::error!(
                    "{e}; stopping HAProxy instead of handing it over: the next proxymgr could not find it"
                );
                self.stop(Outcome::Stopped);
            }
        }
    }

    fn stop(&mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
        // The services stay for a start without the registry; what came from the file alone is not rewritten.
        let save = self.registry.is_some().then(|| (self.config.state_file.clone(), self.snapshot()));
        self.actions.push_back(Action::Stop { timeout: self.config.haproxy.stop_timeout(), save });
    }
}
