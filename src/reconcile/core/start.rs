//! Starting HAProxy: a reload asked of the executor, the wait until the new process answers on its socket, a
//! process that died (restarted with backoff), and a config HAProxy rejects (kept aside, not tried again until
//! it changes).

use super::*;
use crate::status::ReloadResult;

/// Where reloading stands.
pub(super) enum Phase {
    Idle,
    /// Changes need a reload, and have waited for it since then; when it is due is `reload_due`'s word, as the
    /// older generations alive come and go.
    Waiting {
        since: Instant,
    },
    /// A new process started on the candidate, which becomes haproxy.cfg once it answers with its pid.
    Starting(Box<Starting>),
}

pub(super) struct Starting {
    pub(super) pid: u32,
    /// What it runs, once it serves.
    pub(super) state: Running,
    pub(super) specs: BTreeMap<String, ServiceSpec>,
    /// Whom the lines of its config belong to.
    pub(super) layout: Layout,
    pub(super) ports: BTreeSet<SocketAddr>,
    pub(super) skeleton: String,
    pub(super) since: Instant,
    pub(super) next_poll: Instant,
    pub(super) asked: bool,
    pub(super) reasons: Vec<ReloadReason>,
    /// Since when the registry changes it brings waited; None for a start that brings none (the first).
    pub(super) changes_since: Option<Instant>,
}

/// A start asked of the executor, until it says whether the process runs.
pub(super) struct Launch {
    /// Whom the lines of its config belong to.
    pub(super) layout: Layout,
    /// Which slot each server is in, by service (where HAProxy has slots).
    pub(super) slots: BTreeMap<String, slots::Layout>,
    pub(super) ports: BTreeSet<SocketAddr>,
    pub(super) skeleton: String,
    pub(super) reasons: Vec<ReloadReason>,
    pub(super) changes_since: Option<Instant>,
}

impl Core {
    /// Asks for a new process on the whole desired config, which tells the serving ones to finish once it serves.
    pub(super) fn reload(&mut self, reasons: Vec<ReloadReason>) {
        self.phase = Phase::Idle;
        let first = reasons.contains(&ReloadReason::FirstStart);
        let changes_since = self.pending_since.take().filter(|_| !first);
        self.enforce_cap();
        let slots = self.slot_layouts(true);
        let (text, layout) = self.candidate_text(&slots);
        let (mut fds, mut ports) = (Vec::new(), BTreeSet::new());
        let services = self.services.listen_at(self.ports.bind_address);
        let frontends = self.config.haproxy.frontends.values().map(|f| f.bind);
        for at in frontends.chain(services) {
            if let Some(&fd) = self.ports.fds.get(&at) {
                if ports.insert(at) {
                    fds.push(fd);
                }
            }
        }
        let launch_reasons = reasons.clone();
        let skeleton = self.skeleton();
        self.launch = Some(Launch { layout, slots, ports, skeleton, reasons: launch_reasons, changes_since });
        let maps = self.map_files();
        self.actions.push_back(Action::Start { text, fds, maps, reasons });
    }

    pub(super) fn started(&mut self, pid: u32, now: Instant) {
        let Some(Launch { layout, slots, ports, skeleton, reasons, changes_since }) = self.launch.take()
        else {
            return;
        };
        self.observed.reloading(&reasons, now);
        // What it runs, modelled once it started rather than before: 8-10 ms at 1000 services × 50 servers that
        // HAProxy spends starting on the other core meanwhile. Nothing changed since `reload`: a start's outcome
        // comes back before any other input.
        let state = self.desired(Scope::All).running(&slots);
        let specs = self.services.map.iter().map(|(name, s)| (name.clone(), s.spec.clone())).collect();
        self.last_reload = Some(now);
        self.born.insert(pid, now);
        self.restart_due = None;
        let next_poll = now + START_POLL;
        let starting = Starting {
            pid,
            state,
            specs,
            layout,
            ports,
            skeleton,
            since: now,
            next_poll,
            asked: false,
            reasons,
            changes_since,
        };
        self.phase = Phase::Starting(Box::new(starting));
        // The new pid must reach the state file before anything else: a proxymgr killed now must be able to
        // take it over.
        self.state_dirty = true;
        self.state_due = now;
        self.save_state(now);
    }

    /// While a new process starts: whether it answers on the socket yet.
    pub(super) fn confirm(&mut self, serving: Result<u32, RuntimeError>, now: Instant) {
        let Phase::Starting(starting) = &mut self.phase else { return };
        starting.asked = false;
        let (pid, elapsed) = (starting.pid, now.saturating_duration_since(starting.since));
        match serving {
            Ok(serving) if serving == pid => {
                log::info!("haproxy[{pid}] serves ({} ms after its start)", elapsed.as_millis());
            }
            _ if elapsed < START_TIMEOUT => return,
            result => {
                let why = result.map_or_else(|e| e.to_string(), |other| format!("pid {other} answers"));
                log::warn!("haproxy[{pid}] did not answer on its socket within {START_TIMEOUT:?} ({why}); assuming it serves");
            }
        }
        let Phase::Starting(starting) = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
        // HAProxy serves it: now it is haproxy.cfg.
        self.observed.reloaded(&starting.reasons, ReloadResult::Served, starting.changes_since, now);
        self.actions.push_back(Action::Accept);
        self.rejected = None;
        self.file_stale = false;
        if self.caps.slots {
            let empty = starting.state.services.iter().map(|(name, s)| (name.as_str(), s.empty_slots.len()));
            log::info!("haproxy[{pid}]: new servers: {}", slots::summary(empty));
        }
        self.running = Some(starting.state);
        self.observed.all_stale();
        self.served_specs = starting.specs;
        // What changed while it started was not planned against it.
        self.dirty_all = true;
        // Listeners neither the new process's config nor the desired state binds close now.
        self.serving_ports = starting.ports;
        self.close_unused_listeners();
        self.converge(now);
    }

    /// Closes the listeners that neither the serving process's config, nor the desired state, nor a start under
    /// way binds.
    pub(super) fn close_unused_listeners(&mut self) {
        let mut keep = self.services.listen_at(self.ports.bind_address);
        keep.extend(self.config.haproxy.frontends.values().map(|f| f.bind));
        keep.extend(self.serving_ports.iter().copied());
        keep.extend(self.launch.iter().flat_map(|l| l.ports.iter().copied()));
        if let Phase::Starting(starting) = &self.phase {
            keep.extend(starting.ports.iter().copied());
        }
        self.ports.fds.retain(|at, _| keep.contains(at));
        self.actions.push_back(Action::CloseListeners { keep });
    }

    /// The serving process died, or one that started exited before it served and HAProxy accepts its config.
    pub(super) fn crashed(&mut self, pid: u32, how: &str, ran: Duration, now: Instant) {
        if ran >= HEALTHY_RUN {
            self.backoff.reset();
        }
        log::error!(
            "haproxy[{pid}] exited unexpectedly ({how}) after {:.1}s; starting it again in {:?}",
            ran.as_secs_f64(),
            self.backoff.peek()
        );
        // An older process may still serve (a new one that failed never told it to stop), but its state is not
        // what proxymgr believes: start afresh from the desired state.
        self.running = None;
        self.observed.all_stale();
        self.phase = Phase::Idle;
        self.schedule_restart(now);
    }

    pub(super) fn schedule_restart(&mut self, now: Instant) {
        self.restart_due = Some(now + self.backoff.fail());
    }

    /// Holds out whom HAProxy's alerts on a rejected candidate name: the servers on the lines named, the
    /// services whose options are at fault. Returns whether anyone new was, so that trying again can help.
    fn quarantine_culprits(&mut self, starting: &Starting, alerts: &str, now: Instant) -> bool {
        let services = &self.services.map;
        let shared = |service: &str| match services.get(service) {
            Some(s) => self.shared_options(&s.spec),
            None => Vec::new(),
        };
        let own = |service: &str, server: &str| {
            let servers = services.get(service).map(|s| s.servers.as_slice()).unwrap_or_default();
            let server = servers.iter().find(|s| s.name() == server);
            server.map(|s| s.options.iter().map(String::as_str).collect()).unwrap_or_default()
        };
        let culprits = quarantine::blame(&starting.layout, alerts, shared, own);
        let mut progress = false;
        let mut respec = false;
        for (culprit, reason) in culprits {
            match culprit {
                Culprit::Server { service, server } => {
                    let Some(s) = self.services.map.get(&service) else { continue };
                    let Some(found) = s.servers.iter().find(|s| s.name() == server).cloned() else {
                        continue;
                    };
                    if self.quarantine.hold(&service, &s.spec, &found, true, &reason) {
                        let origin = found.origin.as_deref().map(|o| format!(" ({o})")).unwrap_or_default();
                        log::error!(
                            "service {service}: server {server}{origin}: HAProxy rejects it: {reason}; \
                             held out until its registration changes"
                        );
                        progress = true;
                    }
                    self.admit(&service);
                    self.dirty.insert(service);
                }
                Culprit::Service(service) => {
                    let Some(spec) = starting.specs.get(&service) else { continue };
                    if !self.quarantine.reject(&service, spec) {
                        continue;
                    }
                    let keeps = match self.served_specs.get(&service) {
                        Some(good) if good != spec => "keeps the spec HAProxy serves",
                        _ => "is left out",
                    };
                    log::error!(
                        "service {service}: HAProxy rejects its options: {reason}; it {keeps} until its \
                         definition changes"
                    );
                    progress = true;
                    respec = true;
                }
            }
        }
        if respec {
            // The registry's set, or while it is silent the state file's services being served.
            let base = match &self.registry {
                Some(registry) => registry.clone(),
                None => self.services.map.iter().map(|(name, s)| (name.clone(), s.spec.clone())).collect(),
            };
            let view = self.quarantine.specs(base, &self.served_specs);
            self.follow_registry(view, None, now);
        }
        progress
    }

    /// `haproxy -c`'s word on the config of a process that exited before it served. Rejected: the config is kept
    /// aside and not tried again until it changes, and the process it was to replace serves on. Accepted: the
    /// process failed for another reason; its config becomes haproxy.cfg, and HAProxy starts again with backoff.
    pub(super) fn judged(&mut self, result: Result<(), ProcessError>, now: Instant) {
        // A rejected config holds out servers and specs, anywhere.
        self.observed.all_stale();
        let Work::Judging { pid, how, ran } = std::mem::replace(&mut self.work, Work::Idle) else { return };
        let Phase::Starting(starting) = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
        match result {
            Err(reason) => {
                self.observed.reloaded(&starting.reasons, ReloadResult::Rejected, None, now);
                self.observed.rejected(reason.to_string(), now);
                self.actions.push_back(Action::Reject { reason: reason.to_string() });
                // The serving process's state is what it was; the pids are back to what they were.
                self.dirty_all = true;
                self.state_dirty = true;
                let alerts = match &reason {
                    ProcessError::Rejected { reason, .. } => reason.as_str(),
                    _ => "",
                };
                if !self.quarantine_culprits(&starting, alerts, now) {
                    // Nobody to hold out (the head is at fault, or HAProxy named no line): not tried again
                    // until the config changes.
                    self.rejected = Some(starting.skeleton);
                }
                // The start made every listener listen: one of a new service it held out would queue
                // connections nobody accepts until the next reload.
                self.close_unused_listeners();
            }
            Ok(()) => {
                self.observed.reloaded(&starting.reasons, ReloadResult::Failed, None, now);
                self.actions.push_back(Action::Accept);
                self.crashed(pid, &how, ran, now);
            }
        }
    }
}
