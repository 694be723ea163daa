//! The reconciler: the one thread that owns the desired state (services, their specs and servers), the
//! listeners, the HAProxy processes and haproxy.cfg, and brings the running HAProxy in line with the registry.
//!
//! It takes [`Event`]s from one channel, drains whatever is queued so that a burst becomes one piece of work,
//! and then converges: render, install (HAProxy checks the file first), start or reload.
//!
//! **Architecture Invariant:** no other thread touches HAProxy, the listeners or haproxy.cfg; the others only
//! send events.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::{never, select, Receiver};

use crate::config::Config;
use crate::event::{Event, Signal};
use crate::haproxy::listeners::Listeners;
use crate::haproxy::process::{describe, Binary, Processes};
use crate::haproxy::render::Renderer;
use crate::haproxy::{self, InstallError};
use crate::service::{Server, ServiceSpec};
use crate::watcher::{self, Watcher};

/// How long the first start waits for the registry's first answer and every watcher's first server set, so that
/// HAProxy starts once with everything instead of once per arriving piece.
const STARTUP_WAIT: Duration = Duration::from_secs(3);
/// How long a new service waits for its watcher's first server set before it is served without servers.
const FIRST_REPORT_WAIT: Duration = Duration::from_secs(1);
/// How often a service that could not be set up (its port taken) is tried again.
const BLOCKED_RETRY: Duration = Duration::from_secs(5);
const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(200);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A process that served this long is healthy: its crash restarts it at once.
const HEALTHY_RUN: Duration = Duration::from_secs(30);

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
    servers: Vec<Server>,
    watcher: Watcher,
    /// Set while its watcher has not reported yet.
    awaiting_since: Option<Instant>,
}

/// A rendered config, with the listeners it binds: a process gets exactly these, since an inherited listener
/// it does not use would keep a removed service's port open for as long as that process runs.
#[derive(Clone, PartialEq)]
struct Rendered {
    text: String,
    ports: BTreeSet<u16>,
    fds: Vec<RawFd>,
}

pub struct Reconciler {
    config_file: PathBuf,
    config: Config,
    binary: Binary,
    events: Receiver<Event>,
    watchers: watcher::Context,
    renderer: Renderer,
    /// The registry's last whole set, as it sent it.
    registry: Option<BTreeMap<String, ServiceSpec>>,
    /// The services being served (or about to be), each with a running watcher.
    services: BTreeMap<String, Service>,
    /// Services of the registry that could not be set up, with the reason (logged once).
    blocked: BTreeMap<String, String>,
    retry_blocked_at: Option<Instant>,
    next_generation: u64,
    listeners: Listeners,
    processes: Processes,
    /// haproxy.cfg as on disk (HAProxy accepted it), and what the serving process runs.
    installed: Option<Rendered>,
    running: Option<Rendered>,
    /// The last text HAProxy rejected: not tried again until something changes.
    rejected: Option<String>,
    restart_due: Option<Instant>,
    restart_backoff: Duration,
    started: Instant,
}

impl Reconciler {
    pub fn new(
        config_file: PathBuf,
        config: Config,
        binary: Binary,
        events: Receiver<Event>,
        watchers: watcher::Context,
    ) -> Reconciler {
        Reconciler {
            config_file,
            config,
            binary,
            events,
            watchers,
            renderer: Renderer::default(),
            registry: None,
            services: BTreeMap::new(),
            blocked: BTreeMap::new(),
            retry_blocked_at: None,
            next_generation: 0,
            listeners: Listeners::default(),
            processes: Processes::default(),
            installed: None,
            running: None,
            rejected: None,
            restart_due: None,
            restart_backoff: RESTART_BACKOFF_MIN,
            started: Instant::now(),
        }
    }

    pub fn run(mut self) -> Outcome {
        loop {
            let timer = self.next_wake().map(crossbeam_channel::at).unwrap_or_else(never);
            let outcome = select! {
                recv(self.events) -> event => match event {
                    Ok(event) => self.handle(event),
                    // Every sender is gone: nothing can ever happen again.
                    Err(_) => Some(Outcome::Failed),
                },
                recv(timer) -> _ => {
                    if self.retry_blocked_at.is_some_and(|at| at <= Instant::now()) {
                        self.apply_registry();
                    }
                    None
                },
            };
            let mut outcome = outcome;
            while outcome.is_none() {
                match self.events.try_recv() {
                    Ok(event) => outcome = self.handle(event),
                    Err(_) => break,
                }
            }
            if let Some(outcome) = outcome {
                return self.shutdown(outcome);
            }
            self.converge();
        }
    }

    fn handle(&mut self, event: Event) -> Option<Outcome> {
        match event {
            Event::Services(specs) => {
                self.registry = Some(specs);
                self.apply_registry();
            }
            Event::Servers { service, generation, servers } => {
                if let Some(s) =
                    self.services.get_mut(&service).filter(|s| s.watcher.generation == generation)
                {
                    log::info!("service {service}: {} server(s): {}", servers.len(), list(&servers));
                    s.servers = servers;
                    s.awaiting_since = None;
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
        self.services.retain(|name, _| {
            let keep = registry.contains_key(name);
            if !keep {
                log::info!("service {name}: removed");
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
            }
            None => {
                log::info!("service {name}: added on port {}", spec.port);
                let watcher = watcher::start(name, &spec.watcher, generation, &self.watchers);
                self.next_generation += 1;
                let service = Service {
                    spec: spec.clone(),
                    servers: Vec::new(),
                    watcher,
                    awaiting_since: Some(Instant::now()),
                };
                self.services.insert(name.to_string(), service);
            }
        }
        Ok(())
    }

    /// Whether the desired state is complete enough to be worth a start or reload.
    fn settled(&self) -> bool {
        if self.started.elapsed() >= STARTUP_WAIT {
            return !self
                .services
                .values()
                .any(|s| s.awaiting_since.is_some_and(|t| t.elapsed() < FIRST_REPORT_WAIT));
        }
        self.registry.is_some() && self.services.values().all(|s| s.awaiting_since.is_none())
    }

    fn next_wake(&self) -> Option<Instant> {
        let startup = (self.installed.is_none()).then_some(self.started + STARTUP_WAIT);
        let awaiting =
            self.services.values().filter_map(|s| s.awaiting_since).map(|t| t + FIRST_REPORT_WAIT).min();
        [startup, awaiting, self.restart_due, self.retry_blocked_at].into_iter().flatten().min()
    }

    fn render(&self) -> Rendered {
        let mut text = self.renderer.head(&self.config.haproxy);
        let (mut ports, mut fds) = (BTreeSet::new(), Vec::new());
        for (name, service) in &self.services {
            // Every service in `services` had its listener opened by `set_up`.
            if let Some(fd) = self.listeners.fd(service.spec.port) {
                text.push_str(&self.renderer.listen(name, fd, &service.spec, &service.servers));
                ports.insert(service.spec.port);
                fds.push(fd);
            }
        }
        Rendered { text, ports, fds }
    }

    /// Brings haproxy.cfg and the HAProxy processes in line with the desired state.
    fn converge(&mut self) {
        if !self.settled() {
            return;
        }
        let desired = self.render();
        let is_new = self.installed.as_ref().map(|r| &r.text) != Some(&desired.text);
        if is_new && self.rejected.as_ref() != Some(&desired.text) {
            match haproxy::install(
                &self.binary,
                &self.config.haproxy.config_path,
                &desired.text,
                &desired.fds,
            ) {
                Ok(()) => {
                    log::debug!("installed {}", self.config.haproxy.config_path.display());
                    self.installed = Some(desired);
                    self.rejected = None;
                }
                Err(e) => {
                    match &e {
                        InstallError::Rejected { .. } => log::error!("{e}; HAProxy keeps its running config"),
                        InstallError::Write { .. } => log::error!("{e}; HAProxy keeps its running config"),
                    }
                    self.rejected = Some(desired.text);
                }
            }
        }
        let Some(installed) = self.installed.clone() else { return };
        let serving = self.processes.is_serving();
        if serving && self.running.as_ref() == Some(&installed) {
            return;
        }
        if self.restart_due.is_some_and(|due| Instant::now() < due) {
            return;
        }
        self.restart_due = None;
        let old = self.processes.pids();
        let socket = &self.config.haproxy.socket_path;
        if let Err(e) = haproxy::prepare_socket_dir(socket) {
            log::error!("cannot create the directory of haproxy.socket_path {}: {e}", socket.display());
        }
        match self.processes.start(&self.binary, &self.config.haproxy.config_path, &installed.fds) {
            Ok(pid) if old.is_empty() => log::info!("haproxy[{pid}] started"),
            Ok(pid) => log::info!("haproxy[{pid}] started, replacing {old:?}"),
            Err(e) => {
                log::error!("cannot start {}: {e}", self.binary.path.display());
                self.schedule_restart();
                return;
            }
        }
        self.running = Some(installed);
        let running = &self.running;
        let desired_ports: BTreeSet<u16> = self.services.values().map(|s| s.spec.port).collect();
        self.listeners.retain(|port| {
            desired_ports.contains(&port) || running.as_ref().is_some_and(|r| r.ports.contains(&port))
        });
    }

    fn reap(&mut self) {
        if let Some(exited) = self.processes.reap() {
            let how = exited.status.map(describe).unwrap_or_else(|| "status unknown".into());
            if exited.ran >= HEALTHY_RUN {
                self.restart_backoff = RESTART_BACKOFF_MIN;
            }
            log::error!(
                "haproxy[{}] exited unexpectedly ({how}) after {:.1}s; starting it again in {:?}",
                exited.pid,
                exited.ran.as_secs_f64(),
                self.restart_backoff
            );
            self.running = None;
            self.schedule_restart();
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
            log::warn!(
                "service_config changed ({} -> {}); that takes a restart of proxymgr, keeping {}",
                self.config.service_config,
                config.service_config,
                self.config.service_config
            );
        }
        self.binary = binary;
        self.config.haproxy = config.haproxy;
    }

    fn shutdown(mut self, outcome: Outcome) -> Outcome {
        // Watchers stop when their handles drop.
        self.services.clear();
        let timeout = self.config.haproxy.stop_timeout();
        log::info!("stopping haproxy {:?} (soft stop, up to {timeout:?})", self.processes.pids());
        self.processes.stop(timeout);
        outcome
    }
}

fn list(servers: &[Server]) -> String {
    let names: Vec<String> = servers.iter().map(Server::endpoint).collect();
    names.join(", ")
}
