//! The reconciler: the one thread that owns the desired state (services, their specs and servers), the
//! listeners, the HAProxy processes, the runtime socket and haproxy.cfg, and brings the serving HAProxy in line
//! with the registry.
//!
//! It takes [`Event`]s from one channel, drains whatever is queued so that a burst becomes one piece of work,
//! and then converges: the planner compares the serving process's state with the desired one; server changes go
//! through the runtime API at once, and whatever needs a reload waits a short window for other changes to join
//! it (never less than `reload_interval` after the previous one), then is checked by HAProxy, installed and
//! started with `-sf`. Until the new process answers on the socket, nothing else is sent to it.
//!
//! **Architecture Invariant:** no other thread touches HAProxy, the listeners or haproxy.cfg; the others only
//! send events.

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{never, select, Receiver};

use crate::config::Config;
use crate::event::{Event, Signal};
use crate::haproxy::listeners::Listeners;
use crate::haproxy::process::{describe, Binary, Processes};
use crate::haproxy::render::Renderer;
use crate::haproxy::runtime::Runtime;
use crate::haproxy::{self, Candidate, Capabilities, ConfigWriter, InstallError};
use crate::plan::{effective_weight, plan, Desired, DesiredService, Running, RunningServer, Step};
use crate::registry;
use crate::service::{Server, ServiceSpec};
use crate::state::{self, SavedService, State};
use crate::watcher::{self, Watcher};

/// How long the first start waits for the registry's first answer and every watcher's first server set, so that
/// HAProxy starts once with everything instead of once per arriving piece.
const STARTUP_WAIT: Duration = Duration::from_secs(3);
/// While the first start waits past STARTUP_WAIT: how long without a new server set ends the wait, and the
/// longest it may take in all.
const STARTUP_QUIET: Duration = Duration::from_secs(1);
const STARTUP_WAIT_MAX: Duration = Duration::from_secs(30);
/// How long a new service's reload waits for its watcher's first server set.
const FIRST_REPORT_WAIT: Duration = Duration::from_secs(1);
/// How often a service that could not be set up (its port taken) is tried again.
const BLOCKED_RETRY: Duration = Duration::from_secs(5);
const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(200);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A process that served this long is healthy: its crash restarts it at once.
const HEALTHY_RUN: Duration = Duration::from_secs(30);
/// The least time between two writes of the state file while servers churn.
const STATE_WRITE_INTERVAL: Duration = Duration::from_secs(1);
/// The least time between two rewrites of haproxy.cfg for runtime changes.
const FILE_WRITE_INTERVAL: Duration = Duration::from_millis(200);
/// How often a starting HAProxy is asked whether it serves yet, and for how long.
const START_POLL: Duration = Duration::from_millis(5);
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How the reconciler ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Asked to stop (SIGTERM, SIGINT): HAProxy stopped gracefully.
    Stopped,
    /// A part of the daemon died; HAProxy was stopped and the supervisor should restart proxymgr.
    Failed,
}

struct Service {
    spec: ServiceSpec,
    /// Shared with state-file snapshots.
    servers: Arc<Vec<Server>>,
    watcher: Watcher,
    /// Set while its watcher has not reported yet.
    awaiting_since: Option<Instant>,
    /// Its `listen` skeleton and its server lines as rendered; empty once what they come from changed. The
    /// lines fill through a shared borrow, while the desired state borrows the services.
    skeleton: Option<String>,
    lines: OnceCell<String>,
}

/// Where reloading stands.
enum Phase {
    Idle,
    /// A change needs a reload, due then.
    Waiting {
        due: Instant,
    },
    /// A new process was started on `candidate`, which becomes haproxy.cfg once it answers on the socket with
    /// its pid.
    Starting {
        pid: u32,
        state: Running,
        ports: BTreeSet<u16>,
        since: Instant,
        candidate: Candidate,
        skeleton: String,
        fds: Vec<RawFd>,
    },
}

pub struct Reconciler {
    config_file: PathBuf,
    config: Config,
    binary: Binary,
    caps: Capabilities,
    events: Receiver<Event>,
    watchers: watcher::Context,
    renderer: Renderer,
    /// The thread following `service_config`.
    source: registry::Source,
    /// The registry's last whole set, as it sent it.
    registry: Option<BTreeMap<String, ServiceSpec>>,
    /// The services being served (or about to be), each with a running watcher.
    services: BTreeMap<String, Service>,
    /// The services whose watcher has not reported yet, by when they were set up (each is its service's
    /// `awaiting_since`): kept apart so that no event costs a walk through every service.
    awaiting: BTreeSet<(Instant, String)>,
    /// Services of the registry that could not be set up, with the reason (logged once).
    blocked: BTreeMap<String, String>,
    retry_blocked_at: Option<Instant>,
    next_generation: u64,
    listeners: Listeners,
    processes: Processes,
    runtime: Runtime,
    /// The serving process's state, as far as proxymgr made it; None while none serves.
    running: Option<Running>,
    phase: Phase,
    last_reload: Option<Instant>,
    /// The skeleton (head and listen sections) HAProxy last rejected: not tried again until it changes.
    rejected: Option<String>,
    /// Services whose dynamic servers HAProxy refused, with the server options it refused them under.
    no_dynamic: BTreeMap<String, Vec<String>>,
    /// Whether haproxy.cfg on disk lags behind runtime changes, and when it may be written next.
    file_stale: bool,
    file_due: Instant,
    /// The head (global, defaults) as rendered; None once the config changed.
    head: Option<String>,
    /// Services whose servers or spec changed since the last plan; all of them when `dirty_all`.
    dirty: BTreeSet<String>,
    dirty_all: bool,
    /// Whether services may have come or gone since the last plan: it must compare every service's presence
    /// and skeleton (cheap), if not every service's servers.
    reshaped: bool,
    next_drift_check: Option<Instant>,
    restart_due: Option<Instant>,
    restart_backoff: Duration,
    started: Instant,
    /// The state file's services, until the registry answers or the start wait is over.
    saved: Option<BTreeMap<String, SavedService>>,
    /// Whether the state changed since the state file was last written, and when it may be written next.
    state_dirty: bool,
    state_due: Instant,
    state_writer: state::Writer,
    config_writer: ConfigWriter,
    /// When a watcher last reported a server set.
    last_report: Instant,
}

impl Reconciler {
    pub fn new(
        config_file: PathBuf,
        config: Config,
        binary: Binary,
        events: Receiver<Event>,
        watchers: watcher::Context,
    ) -> Reconciler {
        let runtime = Runtime::new(&config.haproxy.socket_path);
        let next_drift_check = config.haproxy.drift_check_interval().map(|d| Instant::now() + d);
        let saved = State::load(&config.state_file).unwrap_or_default();
        let mut processes = Processes::default();
        let orphans: Vec<u32> =
            saved.haproxy_pids.iter().copied().filter(|&pid| state::is_haproxy(pid)).collect();
        if !orphans.is_empty() {
            log::warn!("taking over haproxy {orphans:?}, left running by an earlier proxymgr");
            processes.adopt(orphans);
        }
        let source = registry::start(&config.service_config, 0, &watchers);
        let state_writer = state::Writer::start(watchers.events.clone());
        let config_writer = ConfigWriter::start(watchers.events.clone());
        haproxy::remove_stale_candidates(&config.haproxy.config_path);
        Reconciler {
            source,
            config_file,
            caps: Capabilities::of(binary.version),
            config,
            binary,
            events,
            watchers,
            renderer: Renderer::default(),
            registry: None,
            services: BTreeMap::new(),
            awaiting: BTreeSet::new(),
            blocked: BTreeMap::new(),
            retry_blocked_at: None,
            next_generation: 0,
            listeners: Listeners::default(),
            processes,
            runtime,
            running: None,
            phase: Phase::Idle,
            last_reload: None,
            rejected: None,
            no_dynamic: BTreeMap::new(),
            file_stale: false,
            file_due: Instant::now(),
            head: None,
            dirty: BTreeSet::new(),
            dirty_all: true,
            reshaped: true,
            next_drift_check,
            restart_due: None,
            restart_backoff: RESTART_BACKOFF_MIN,
            started: Instant::now(),
            saved: Some(saved.services).filter(|s| !s.is_empty()),
            state_dirty: false,
            state_due: Instant::now(),
            state_writer,
            config_writer,
            last_report: Instant::now(),
        }
    }

    pub fn run(mut self) -> Outcome {
        loop {
            let timer = self.next_wake().map(crossbeam_channel::at).unwrap_or_else(never);
            let mut outcome = select! {
                recv(self.events) -> event => match event {
                    Ok(event) => self.handle(event),
                    // Every sender is gone: nothing can ever happen again.
                    Err(_) => Some(Outcome::Failed),
                },
                recv(timer) -> _ => None,
            };
            while outcome.is_none() {
                match self.events.try_recv() {
                    Ok(event) => outcome = self.handle(event),
                    Err(_) => break,
                }
            }
            if let Some(outcome) = outcome {
                return self.shutdown(outcome);
            }
            if self.retry_blocked_at.is_some_and(|at| at <= Instant::now()) {
                self.apply_registry();
            }
            if self.next_drift_check.is_some_and(|at| at <= Instant::now()) {
                self.check_drift();
            }
            self.serve_saved_state();
            self.converge();
            self.save_state();
        }
    }

    /// At start, while the registry does not answer: serve what the state file says was served.
    fn serve_saved_state(&mut self) {
        if self.registry.is_some() {
            self.saved = None;
            return;
        }
        if self.started.elapsed() < STARTUP_WAIT {
            return;
        }
        let Some(saved) = self.saved.take() else { return };
        log::warn!(
            "the registry has not answered in {STARTUP_WAIT:?}; serving {} service(s) from the state file until it does",
            saved.len()
        );
        self.registry = Some(saved.iter().map(|(name, s)| (name.clone(), s.spec.clone())).collect());
        self.apply_registry();
        for (name, saved) in saved {
            if let Some(service) = self.services.get_mut(&name) {
                if let Some(since) = service.awaiting_since.take() {
                    service.servers = saved.servers;
                    service.lines = OnceCell::new();
                    self.awaiting.remove(&(since, name));
                }
            }
        }
        // What came from the file is not news from the registry: the file keeps it as it was.
        self.registry = None;
    }

    /// Writes the state file when the state changed, at most once a second.
    fn save_state(&mut self) {
        if !self.state_dirty
            || Instant::now() < self.state_due
            || (self.registry.is_none() && self.services.is_empty())
        {
            return;
        }
        if self.state_writer.save(&self.config.state_file, self.state()) {
            self.state_dirty = false;
        }
        self.state_due = Instant::now() + STATE_WRITE_INTERVAL;
    }

    /// A snapshot for the state file: the specs are copied, the server sets shared.
    fn state(&self) -> State {
        let services = self.services.iter().map(|(name, s)| {
            (name.clone(), SavedService { spec: s.spec.clone(), servers: s.servers.clone() })
        });
        State { haproxy_pids: self.processes.pids(), services: services.collect() }
    }

    fn handle(&mut self, event: Event) -> Option<Outcome> {
        self.state_dirty |=
            matches!(event, Event::Services { .. } | Event::Servers { .. } | Event::Signal(Signal::Child));
        match event {
            Event::Services { source, services } => {
                if source == self.source.generation {
                    self.registry = Some(services);
                    self.apply_registry();
                }
            }
            Event::Servers { service, generation, servers } => {
                if let Some(s) =
                    self.services.get_mut(&service).filter(|s| s.watcher.generation == generation)
                {
                    if let Some(since) = s.awaiting_since.take() {
                        self.awaiting.remove(&(since, service.clone()));
                    }
                    if servers.is_empty() && !s.servers.is_empty() && !s.spec.allow_empty {
                        log::warn!(
                            "service {service}: its watcher reports no servers; keeping the last {} \
                             (\"allow_empty\": true serves none)",
                            s.servers.len()
                        );
                        return None;
                    }
                    log::info!(
                        "service {service}: {} server(s): {}",
                        servers.len(),
                        changes(&s.servers, &servers)
                    );
                    s.servers = servers;
                    s.lines = OnceCell::new();
                    self.last_report = Instant::now();
                    self.dirty.insert(service);
                }
            }
            Event::Signal(Signal::Terminate) => {
                log::info!("asked to stop");
                return Some(Outcome::Stopped);
            }
            Event::Signal(Signal::Reload) => self.reload_config(),
            Event::Signal(Signal::Child) => self.reap(),
            Event::ThreadDied { thread, reason } => {
                log::error!(
                    "thread {thread} died: {reason}; stopping so that the supervisor restarts proxymgr"
                );
                return Some(Outcome::Failed);
            }
        }
        None
    }

    /// Makes `services` follow the registry's set: removes what is gone, sets up what is new or changed.
    fn apply_registry(&mut self) {
        let Some(registry) = self.registry.clone() else { return };
        self.retry_blocked_at = None;
        // Services may have come or gone: the next plan looks at every one.
        self.reshaped = true;
        let awaiting = &mut self.awaiting;
        self.services.retain(|name, service| {
            let keep = registry.contains_key(name);
            if !keep {
                log::info!("service {name}: removed");
                if let Some(since) = service.awaiting_since {
                    awaiting.remove(&(since, name.clone()));
                }
            }
            keep
        });
        self.blocked.retain(|name, _| registry.contains_key(name));
        // Services already served keep their ports against newcomers.
        let (known, new): (Vec<_>, Vec<_>) =
            registry.iter().partition(|(name, _)| self.services.contains_key(*name));
        for (name, spec) in known.into_iter().chain(new) {
            match self.set_up(name, spec) {
                Ok(()) => {
                    if self.blocked.remove(name).is_some() {
                        log::info!("service {name}: set up");
                    }
                }
                Err(reason) => {
                    if self.blocked.get(name) != Some(&reason) {
                        let what = if self.services.contains_key(name) {
                            "keeping its last spec"
                        } else {
                            "not served"
                        };
                        log::error!("service {name}: {reason}; {what}, trying again every {BLOCKED_RETRY:?}");
                        self.blocked.insert(name.clone(), reason);
                    }
                }
            }
        }
        if !self.blocked.is_empty() {
            self.retry_blocked_at = Some(Instant::now() + BLOCKED_RETRY);
        }
    }

    fn set_up(&mut self, name: &str, spec: &ServiceSpec) -> Result<(), String> {
        if self.services.get(name).is_some_and(|s| &s.spec == spec) {
            return Ok(());
        }
        if let Some((other, _)) =
            self.services.iter().find(|(n, s)| n.as_str() != name && s.spec.port == spec.port)
        {
            return Err(format!("port {} is already used by service {other}", spec.port));
        }
        self.listeners.open(self.config.haproxy.bind_address, spec.port).map_err(|e| e.to_string())?;
        let generation = self.next_generation;
        match self.services.get_mut(name) {
            Some(service) => {
                log::info!("service {name}: spec changed");
                if service.spec.watcher != spec.watcher {
                    // The old servers stay until the new watcher reports: better stale than empty.
                    service.watcher = watcher::start(name, &spec.watcher, generation, &self.watchers);
                    self.next_generation += 1;
                }
                service.spec = spec.clone();
                service.skeleton = None;
                service.lines = OnceCell::new();
                self.dirty.insert(name.to_string());
            }
            None => {
                log::info!("service {name}: added on port {}", spec.port);
                let watcher = watcher::start(name, &spec.watcher, generation, &self.watchers);
                self.next_generation += 1;
                let now = Instant::now();
                self.awaiting.insert((now, name.to_string()));
                let service = Service {
                    spec: spec.clone(),
                    servers: Arc::default(),
                    watcher,
                    awaiting_since: Some(now),
                    skeleton: None,
                    lines: OnceCell::new(),
                };
                self.services.insert(name.to_string(), service);
            }
        }
        Ok(())
    }

    /// Whether a new service still waits for its first server set (bounded by FIRST_REPORT_WAIT, or STARTUP_WAIT
    /// before anything was started), so that its reload waits too.
    fn awaiting(&self) -> bool {
        if self.running.is_none() && self.last_reload.is_none() {
            let complete = self.registry.is_some() && self.awaiting.is_empty();
            let elapsed = self.started.elapsed();
            // Past the first wait, a registry still being read (1000 services of 50 servers take seconds) is
            // waited for while its watchers make progress: one start with everything beats a start with half
            // and thousands of runtime additions.
            return !complete
                && (elapsed < STARTUP_WAIT
                    || (elapsed < STARTUP_WAIT_MAX && self.last_report.elapsed() < STARTUP_QUIET));
        }
        // Some service waits while the one set up last does.
        self.awaiting.last().is_some_and(|(since, _)| since.elapsed() < FIRST_REPORT_WAIT)
    }

    fn next_wake(&self) -> Option<Instant> {
        let now = Instant::now();
        let startup = (self.running.is_none() && self.last_reload.is_none())
            .then(|| {
                let quiet = (self.last_report + STARTUP_QUIET).max(self.started + STARTUP_WAIT);
                quiet.min(self.started + STARTUP_WAIT_MAX)
            })
            .filter(|&due| due > now);
        // The wait ends for the last service set up; one whose watcher never reports is waited for no longer.
        let awaiting =
            self.awaiting.last().map(|(since, _)| *since + FIRST_REPORT_WAIT).filter(|&due| due > now);
        let phase = match self.phase {
            Phase::Idle => None,
            Phase::Waiting { due } => Some(due),
            Phase::Starting { .. } => Some(Instant::now() + START_POLL),
        };
        let state = self.state_dirty.then_some(self.state_due);
        let file = self.file_stale.then_some(self.file_due);
        [
            startup,
            awaiting,
            phase,
            self.restart_due,
            self.retry_blocked_at,
            self.next_drift_check,
            state,
            file,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Renders what changed since the last render and the planner needs: the head and each service's skeleton.
    fn refresh_renders(&mut self, scope: Option<&BTreeSet<String>>) {
        if self.head.is_none() {
            self.head = Some(self.renderer.head(&self.config.haproxy, &self.caps));
        }
        let render = |name: &String, service: &mut Service| {
            if service.skeleton.is_none() {
                // Every service in `services` had its listener opened by `set_up`.
                let fd = self.listeners.fd(service.spec.port).unwrap_or(-1);
                service.skeleton =
                    Some(self.renderer.listen(name, fd, &service.spec, &self.config.haproxy, &self.caps));
            }
        };
        match scope {
            Some(names) => {
                for name in names {
                    if let Some(service) = self.services.get_mut(name) {
                        render(name, service);
                    }
                }
            }
            None => {
                for (name, service) in &mut self.services {
                    render(name, service);
                }
            }
        }
    }

    /// Everything in haproxy.cfg but the server lines, as rendered: what HAProxy must accept before a reload.
    fn skeleton(&self) -> String {
        let mut text = self.head.clone().unwrap_or_default();
        for service in self.services.values() {
            text.push_str(service.skeleton.as_deref().unwrap_or_default());
        }
        text
    }

    /// The whole haproxy.cfg: the head, then each service's skeleton and server lines. Server lines are
    /// rendered here, not when servers change: only the file needs them, and it is written after HAProxy got
    /// the change.
    fn config_text(&mut self) -> String {
        self.refresh_renders(None);
        let mut text = self.head.clone().unwrap_or_default();
        for service in self.services.values() {
            text.push_str(service.skeleton.as_deref().unwrap_or_default());
            text.push_str(self.lines(service));
        }
        text
    }

    /// A service's server lines, rendered if they are not yet.
    fn lines<'s>(&self, service: &'s Service) -> &'s str {
        service.lines.get_or_init(|| self.renderer.servers(&service.spec, &service.servers))
    }

    /// Whether the desired skeleton is the one HAProxy last rejected: it is not tried again until it changes
    /// (else every event, the check's own exit included, would run the check again).
    fn rejects_again(&mut self) -> bool {
        if self.rejected.is_none() {
            return false;
        }
        self.refresh_renders(None);
        self.rejected.as_ref() == Some(&self.skeleton())
    }

    /// What a reload to the desired state needs.
    fn prepare_reload(&mut self) -> Reload {
        let text = self.config_text();
        let desired =
            desired(self.head.as_deref().unwrap_or_default(), &self.services, &self.no_dynamic, None);
        let (mut fds, mut ports) = (Vec::new(), BTreeSet::new());
        for service in desired.services.values() {
            if let Some(fd) = self.listeners.fd(service.spec.port) {
                fds.push(fd);
                ports.insert(service.spec.port);
            }
        }
        Reload { text, skeleton: self.skeleton(), fds, ports, state: desired.running() }
    }

    /// Forgets every rendered piece (the config or the HAProxy binary changed).
    fn forget_renders(&mut self) {
        self.head = None;
        for service in self.services.values_mut() {
            service.skeleton = None;
            service.lines = OnceCell::new();
        }
        self.dirty_all = true;
    }

    /// Brings HAProxy (its runtime state first, its config by reload when it must) in line with the desired state.
    fn converge(&mut self) {
        if !self.confirm_start() {
            return;
        }
        let awaiting = self.awaiting();
        if self.running.is_none() {
            // Nothing serves: start as soon as the first state is complete, or the restart backoff is over.
            let backoff = self.restart_due.is_some_and(|due| Instant::now() < due);
            if !awaiting && !backoff && !self.rejects_again() {
                let reload = self.prepare_reload();
                self.reload(reload, &["first start".to_string()]);
            }
            return;
        }
        // Only the services whose servers changed are looked at, unless something may have changed for every one
        // of them (a new process, a drift check), or the last plan wanted a reload (while one waits or HAProxy
        // rejected it, its reasons must be judged again, whatever else changes): at 1000 services a walk through
        // every server is most of a change's cost. When services came or went, every service's presence and
        // skeleton are compared too, which is cheap.
        let servers_all = std::mem::take(&mut self.dirty_all) || matches!(self.phase, Phase::Waiting { .. });
        let reshaped = std::mem::take(&mut self.reshaped);
        let complete = servers_all || reshaped;
        let dirty = std::mem::take(&mut self.dirty);
        let (partial, scope) = ((!complete).then_some(&dirty), (!servers_all).then_some(&dirty));
        let started = Instant::now();
        self.refresh_renders(partial);
        let render_time = started.elapsed();
        let plan_started = Instant::now();
        let head = self.head.as_deref().unwrap_or_default();
        let desired = desired(head, &self.services, &self.no_dynamic, partial);
        let Some(mut running) = self.running.take() else { return };
        let plan = plan(&running, &desired, &self.caps, false, scope);
        let plan_time = plan_started.elapsed();
        let outcome = carry_out(&mut self.runtime, &self.caps, &mut running, &plan.steps);
        self.running = Some(running);
        // The changed services' server lines, for the file: after HAProxy got the change, not before.
        let lines_started = Instant::now();
        match scope {
            Some(names) => names.iter().filter_map(|name| self.services.get(name)).for_each(|s| {
                self.lines(s);
            }),
            None => self.services.values().for_each(|s| {
                self.lines(s);
            }),
        }
        let render_time = render_time + lines_started.elapsed();
        log::debug!(
            "converge: {} step(s), plan {} µs, render {} µs, services {} changed",
            plan.steps.len(),
            plan_time.as_micros(),
            render_time.as_micros(),
            scope.map_or_else(|| "all".to_string(), |s| s.len().to_string())
        );
        let mut reasons = plan.reload;
        self.file_stale |= outcome.applied > 0;
        for service in &outcome.refused {
            let options = desired.services.get(service.as_str()).map(|s| s.spec.server_options.clone());
            self.no_dynamic.insert(service.clone(), options.unwrap_or_default());
            reasons.push(format!("service {service}: HAProxy refused a dynamic server"));
        }
        reasons.extend(outcome.failure);
        // Plan everything next time while anything wants a reload (or failed, and was not done).
        self.dirty_all = !reasons.is_empty();
        if reasons.is_empty() {
            self.phase = Phase::Idle;
            if self.file_stale && Instant::now() >= self.file_due {
                let text = self.config_text();
                self.write_file(text);
            }
            return;
        }
        if awaiting || self.rejected.as_ref() == Some(&self.skeleton()) {
            // Not now: the next change, or the end of the wait for a first server set, brings us back.
            self.phase = Phase::Idle;
            return;
        }
        let now = Instant::now();
        match self.phase {
            Phase::Idle => {
                let earliest = self.last_reload.map_or(now, |at| at + self.config.haproxy.reload_interval());
                let due = (now + self.config.haproxy.reload_window()).max(earliest);
                log::debug!("reload due in {:?}: {}", due - now, reasons.join("; "));
                self.phase = Phase::Waiting { due };
            }
            Phase::Waiting { due } if now >= due => {
                reasons.dedup();
                let reload = self.prepare_reload();
                self.reload(reload, &reasons);
            }
            Phase::Waiting { .. } | Phase::Starting { .. } => {}
        }
    }

    /// While a new process starts, waits for it to answer on the socket; returns whether it serves (or none was
    /// starting).
    fn confirm_start(&mut self) -> bool {
        let Phase::Starting { pid, since, .. } = &self.phase else { return true };
        let (pid, since) = (*pid, *since);
        match self.runtime.serving_pid() {
            Ok(serving) if serving == pid => {
                log::info!("haproxy[{pid}] serves ({} ms after its start)", since.elapsed().as_millis());
            }
            _ if since.elapsed() < START_TIMEOUT => {
                self.runtime.reconnect();
                return false;
            }
            result => {
                let why = result.map_or_else(|e| e.to_string(), |other| format!("pid {other} answers"));
                log::warn!("haproxy[{pid}] did not answer on its socket within {START_TIMEOUT:?} ({why}); assuming it serves");
            }
        }
        let Phase::Starting { state, ports, candidate, .. } = std::mem::replace(&mut self.phase, Phase::Idle)
        else {
            return true;
        };
        // HAProxy serves it: now it is haproxy.cfg.
        self.config_writer.accept(candidate);
        self.rejected = None;
        self.file_stale = false;
        self.running = Some(state);
        // What changed while it started was not planned against it.
        self.dirty_all = true;
        // Listeners neither the new process's config nor the desired state binds close now.
        let desired_ports: BTreeSet<u16> = self.services.values().map(|s| s.spec.port).collect();
        self.listeners.retain(|port| desired_ports.contains(&port) || ports.contains(&port));
        true
    }

    /// haproxy.cfg must always equal the desired state, so that a restart loses nothing done at run time. Only
    /// server lines changed since HAProxy accepted the skeleton, so no check is needed. Written at most every
    /// FILE_WRITE_INTERVAL while servers churn, by the config writer's thread: the file is 2.7 MB at 1000
    /// services of 50 servers, and syncing it takes milliseconds.
    fn write_file(&mut self, text: String) {
        self.config_writer.write(&self.config.haproxy.config_path, text);
        self.file_stale = false;
        self.file_due = Instant::now() + FILE_WRITE_INTERVAL;
    }

    /// Installs the desired config (HAProxy checks it first) and starts a new process on it, which tells the
    /// serving ones to finish once it serves.
    fn reload(&mut self, reload: Reload, reasons: &[String]) {
        self.phase = Phase::Idle;
        let Reload { text, skeleton, fds, ports, state } = reload;
        let candidate = match Candidate::write(&self.config.haproxy.config_path, &text) {
            Ok(candidate) => candidate,
            Err(e) => return log::error!("{e}; HAProxy keeps its running config"),
        };
        let socket = &self.config.haproxy.socket_path;
        if let Err(e) = haproxy::prepare_socket_dir(socket) {
            log::error!("cannot create the directory of haproxy.socket_path {}: {e}", socket.display());
        }
        if let Err(e) = self.listeners.listen_all() {
            log::error!("{e}");
        }
        let old = self.processes.pids();
        match self.processes.start(&self.binary, candidate.path(), &fds) {
            Ok(pid) if old.is_empty() => log::info!("haproxy[{pid}] started ({})", reasons.join("; ")),
            Ok(pid) => log::info!("haproxy[{pid}] started, replacing {old:?} ({})", reasons.join("; ")),
            Err(e) => {
                log::error!("cannot start {}: {e}", self.binary.path.display());
                self.schedule_restart();
                return;
            }
        }
        self.last_reload = Some(Instant::now());
        self.runtime.reconnect();
        // The new pid must reach the state file before anything else: a proxymgr killed now must be able to
        // take it over.
        self.state_dirty = true;
        self.state_due = Instant::now();
        let pid = self.processes.pids()[0];
        self.phase = Phase::Starting { pid, state, ports, since: Instant::now(), candidate, skeleton, fds };
    }

    /// Compares each backend's servers in HAProxy (`show servers state <backend>`, one backend at a time) with
    /// what proxymgr believes, takes HAProxy's word where they differ, and lets the next converge fix it. Also
    /// removes servers in maintenance that the registry no longer has.
    fn check_drift(&mut self) {
        self.next_drift_check = self.config.haproxy.drift_check_interval().map(|d| Instant::now() + d);
        if !matches!(self.phase, Phase::Idle) {
            return;
        }
        let Some(mut running) = self.running.take() else { return };
        self.refresh_renders(None);
        let desired =
            desired(self.head.as_deref().unwrap_or_default(), &self.services, &self.no_dynamic, None);
        for (name, service) in running.services.iter_mut() {
            let Some(spec) = desired.services.get(name.as_str()).map(|d| d.spec) else { continue };
            let actual = match self.runtime.servers_state(name) {
                Ok(actual) => actual,
                Err(e) => {
                    log::error!("drift check of service {name}: {e}");
                    continue;
                }
            };
            let believed = std::mem::take(&mut service.servers);
            for (server, status) in &actual {
                let ready = !status.maint;
                match believed.get(server) {
                    Some(b) if b.ready == ready && effective_weight(b.weight, spec) == status.weight => {
                        service.servers.insert(server.clone(), b.clone());
                        continue;
                    }
                    Some(b) => log::warn!(
                        "drift: service {name} server {server} is {} with weight {} in HAProxy, expected {} with weight {}",
                        state(ready),
                        status.weight,
                        state(b.ready),
                        effective_weight(b.weight, spec)
                    ),
                    None => log::warn!("drift: service {name} server {server} is in HAProxy ({}), unknown to proxymgr", state(ready)),
                }
                // HAProxy's word on its state and weight; its options are what proxymgr last gave it.
                let options = believed.get(server).map(|b| b.options.clone()).unwrap_or_default();
                let found = RunningServer { weight: Some(status.weight), options, ready };
                service.servers.insert(server.clone(), found);
            }
            for server in believed.keys().filter(|s| !actual.contains_key(*s)) {
                log::warn!("drift: service {name} server {server} is missing from HAProxy");
            }
        }
        // The drift check is also when servers long out of the registry leave HAProxy for good.
        let deletes: Vec<Step> = plan(&running, &desired, &self.caps, true, None)
            .steps
            .into_iter()
            .filter(|step| matches!(step, Step::Delete { .. }))
            .collect();
        for step in deletes {
            // One at a time: a server that still has connections stays until the next check.
            let outcome = carry_out(&mut self.runtime, &self.caps, &mut running, std::slice::from_ref(&step));
            if let Some(failure) = outcome.failure {
                log::debug!("{failure}; it stays in maintenance for now");
            }
        }
        self.dirty_all = true;
        self.running = Some(running);
    }

    fn reap(&mut self) {
        let Some(exited) = self.processes.reap() else { return };
        let how = exited.status.map(describe).unwrap_or_else(|| "status unknown".into());
        if matches!(self.phase, Phase::Starting { pid, .. } if pid == exited.pid) && self.start_failed() {
            return;
        }
        if exited.ran >= HEALTHY_RUN {
            self.restart_backoff = RESTART_BACKOFF_MIN;
        }
        log::error!(
            "haproxy[{}] exited unexpectedly ({how}) after {:.1}s; starting it again in {:?}",
            exited.pid,
            exited.ran.as_secs_f64(),
            self.restart_backoff
        );
        // An older process may still serve (a new one that failed never told it to stop), but its state is not
        // what proxymgr believes: start afresh from the desired state.
        self.running = None;
        self.phase = Phase::Idle;
        self.schedule_restart();
    }

    /// The process just started exited before it served. When `haproxy -c` rejects its config too, that config
    /// is kept aside and not tried again until it changes, and the process it was to replace serves on (true).
    /// Else it failed for another reason: its config, which HAProxy accepts, becomes haproxy.cfg, and the
    /// caller restarts HAProxy on it with backoff (false).
    fn start_failed(&mut self) -> bool {
        let Phase::Starting { candidate, skeleton, fds, .. } =
            std::mem::replace(&mut self.phase, Phase::Idle)
        else {
            return false;
        };
        match self.binary.check(candidate.path(), &fds) {
            Err(reason) => {
                let e = candidate.reject(&reason);
                match e {
                    InstallError::Rejected { .. } => {
                        log::error!("{e}; HAProxy keeps its running config until the next change")
                    }
                    InstallError::Write { .. } => log::error!("{e}; HAProxy keeps its running config"),
                }
                self.rejected = Some(skeleton);
                self.processes.restore();
                // The serving process's state is what it was; the pids are back to what they were.
                self.dirty_all = true;
                self.state_dirty = true;
                true
            }
            Ok(()) => {
                self.config_writer.accept(candidate);
                false
            }
        }
    }

    fn schedule_restart(&mut self) {
        self.restart_due = Some(Instant::now() + self.restart_backoff);
        self.restart_backoff = (self.restart_backoff * 2).min(RESTART_BACKOFF_MAX);
    }

    /// SIGHUP: re-reads proxymgr.yml. An invalid file changes nothing; a valid one replaces the `haproxy` section
    /// (the next converge reloads if the rendered config changed).
    fn reload_config(&mut self) {
        log::info!("SIGHUP: re-reading {}", self.config_file.display());
        let config = match Config::load(&self.config_file) {
            Ok(config) => config,
            Err(e) => return log::error!("{e}; keeping the running configuration"),
        };
        let binary = match Binary::locate(&config.haproxy.path) {
            Ok(binary) => binary,
            Err(e) => return log::error!("{e}; keeping the running configuration"),
        };
        if config.service_config != self.config.service_config {
            // The new source's first whole set replaces the old one's; until it comes, what is served stays.
            log::info!("service_config: {} -> {}", self.config.service_config, config.service_config);
            self.source = registry::start(&config.service_config, self.source.generation + 1, &self.watchers);
            self.config.service_config = config.service_config;
        }
        self.config.state_file = config.state_file;
        if config.haproxy.socket_path != self.config.haproxy.socket_path {
            self.runtime = Runtime::new(&config.haproxy.socket_path);
        }
        self.caps = Capabilities::of(binary.version);
        self.binary = binary;
        self.config.haproxy = config.haproxy;
        self.forget_renders();
        self.next_drift_check = self.config.haproxy.drift_check_interval().map(|d| Instant::now() + d);
    }

    fn shutdown(mut self, outcome: Outcome) -> Outcome {
        let mut last = self.state();
        self.config_writer.flush(Duration::from_secs(2));
        // Watchers stop when their handles drop.
        self.services.clear();
        // A soft-stopping HAProxy waits for every session to end, the admin socket's included.
        self.runtime.reconnect();
        let timeout = self.config.haproxy.stop_timeout();
        log::info!("stopping haproxy {:?} (soft stop, up to {timeout:?})", self.processes.pids());
        self.processes.stop(timeout);
        // The services stay for a start without the registry; the pids go, as nothing runs any more.
        if self.registry.is_some() {
            last.haproxy_pids = self.processes.pids();
            if let Err(e) = last.save(&self.config.state_file) {
                log::error!("state_file {}: cannot write: {e}", self.config.state_file.display());
            }
        }
        outcome
    }
}

/// The desired state, borrowed from the services and their rendered pieces: of every service, or of those in
/// `scope` alone.
fn desired<'a>(
    head: &'a str,
    services: &'a BTreeMap<String, Service>,
    no_dynamic: &BTreeMap<String, Vec<String>>,
    scope: Option<&BTreeSet<String>>,
) -> Desired<'a> {
    let of = |name: &'a String, s: &'a Service| {
        let desired = DesiredService {
            skeleton: s.skeleton.as_deref().unwrap_or_default(),
            spec: &s.spec,
            servers: s.servers.as_slice(),
            dynamic: no_dynamic.get(name) != Some(&s.spec.server_options),
        };
        (name.as_str(), desired)
    };
    let services = match scope {
        Some(names) => {
            names.iter().filter_map(|name| services.get_key_value(name)).map(|(n, s)| of(n, s)).collect()
        }
        None => services.iter().map(|(n, s)| of(n, s)).collect(),
    };
    Desired { head, services, complete: scope.is_none() }
}

/// What a reload needs, taken from the desired state before it starts.
struct Reload {
    text: String,
    skeleton: String,
    fds: Vec<RawFd>,
    ports: BTreeSet<u16>,
    state: Running,
}

/// What carrying out a plan's steps came to.
#[derive(Default)]
struct Carried {
    applied: usize,
    /// Services whose dynamic servers HAProxy refused.
    refused: Vec<String>,
    /// Why the rest was not carried out.
    failure: Option<String>,
}

/// Sends each step's commands and records in `running` what HAProxy did. Stops at the first failure, but for a
/// refused dynamic server, which only that service's new servers fall back from.
fn carry_out(runtime: &mut Runtime, caps: &Capabilities, running: &mut Running, steps: &[Step]) -> Carried {
    let mut carried = Carried::default();
    'steps: for step in steps {
        for command in step.commands(caps) {
            let started = Instant::now();
            match runtime.run(&command) {
                Ok(()) => log::info!("haproxy: {command} ({} µs)", started.elapsed().as_micros()),
                Err(e) if e.refuses_dynamic_servers() => {
                    let service = step.service().to_string();
                    log::warn!("service {service}: {e}; its new servers take a reload until its server options change");
                    carried.refused.push(service);
                    continue 'steps;
                }
                Err(e) => {
                    if !matches!(step, Step::Delete { .. }) {
                        log::error!("{e}; falling back to a reload");
                    }
                    carried.failure = Some(format!("runtime command failed: {e}"));
                    break 'steps;
                }
            }
        }
        running.apply(step);
        carried.applied += 1;
    }
    carried
}

fn state(ready: bool) -> &'static str {
    if ready {
        "ready"
    } else {
        "in maintenance"
    }
}

/// What changed between two sorted server sets, for the log: `+name` for a new server, `-name` for one gone,
/// `~name` for one whose weight or options changed.
fn changes(old: &[Server], new: &[Server]) -> String {
    let (mut old, mut new) = (old.iter().peekable(), new.iter().peekable());
    let mut out = Vec::new();
    fn key(s: &Server) -> (&str, u16) {
        (&s.address, s.port)
    }
    loop {
        match (old.peek().copied(), new.peek().copied()) {
            (None, None) => break,
            (Some(a), Some(b)) if key(a) == key(b) => {
                if a != b {
                    out.push(format!("~{}", b.endpoint()));
                }
                old.next();
                new.next();
            }
            (Some(a), Some(b)) if key(a) < key(b) => {
                out.push(format!("-{}", a.endpoint()));
                old.next();
            }
            (Some(a), None) => {
                out.push(format!("-{}", a.endpoint()));
                old.next();
            }
            (_, Some(b)) => {
                out.push(format!("+{}", b.endpoint()));
                new.next();
            }
        }
    }
    if out.is_empty() {
        "no change".into()
    } else {
        out.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_what_came_went_and_changed() {
        let server = |port: u16, weight: Option<u16>| Server {
            weight,
            ..Server::new("10.0.0.1", port.into()).unwrap()
        };
        let old = [server(1, None), server(2, None), server(3, None)];
        let new = [server(2, Some(5)), server(3, None), server(4, None)];
        assert_eq!(changes(&old, &new), "-10.0.0.1:1, ~10.0.0.1:2, +10.0.0.1:4");
        assert_eq!(changes(&[], &old[..1]), "+10.0.0.1:1");
        assert_eq!(changes(&old, &old), "no change");
    }
}
