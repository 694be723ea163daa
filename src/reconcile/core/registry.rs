//! The core's side of the registry: following its set of services (binding their ports first), the
//! servers watchers report, the state file (serving it while the registry is silent, and writing it), and
//! SIGHUP's new config.

use super::*;

/// A registry set being followed, while its ports are bound.
pub(super) struct Following {
    pub(super) registry: BTreeMap<String, ServiceSpec>,
    /// Servers from the state file for the services it sets up.
    pub(super) restore: Option<BTreeMap<String, SavedService>>,
}

impl Core {
    /// Follows a registry set (or the state file's, with the servers to `restore`): binds the ports it needs
    /// first, then sets its services up.
    pub(super) fn follow_registry(
        &mut self,
        registry: BTreeMap<String, ServiceSpec>,
        restore: Option<BTreeMap<String, SavedService>>,
        now: Instant,
    ) {
        self.retry_blocked_at = None;
        let bind_address = self.ports.bind_address;
        let services = registry.values().filter_map(|s| s.listen_at(bind_address));
        let frontends = self.ports.frontends.values().map(|f| f.bind);
        let mut missing: Vec<SocketAddr> =
            frontends.chain(services).filter(|at| !self.ports.fds.contains_key(at)).collect();
        missing.sort_unstable();
        missing.dedup();
        self.following = Some(Following { registry, restore });
        if missing.is_empty() {
            self.follow(now);
        } else {
            self.actions.push_back(Action::Bind { addresses: missing });
        }
    }

    /// Follows the registry's last set again, as HAProxy is to get it (specs it rejected left as they were).
    pub(super) fn follow_registry_again(&mut self, now: Instant) {
        if let Some(registry) = &self.registry {
            let registry = self.quarantine.specs(registry.clone(), &self.served_specs);
            self.follow_registry(registry, None, now);
        }
    }

    pub(super) fn follow(&mut self, now: Instant) {
        let Some(Following { registry, restore }) = self.following.take() else { return };
        // Services may have come or gone: the next plan looks at every one.
        self.reshaped = true;
        let changed = self.services.follow(&registry, &self.ports, now, &mut self.actions);
        let services = &self.services;
        self.quarantine.retain(|name| services.map.contains_key(name));
        for name in &changed {
            // Its server options may have changed: what was held out under the old ones is tried again.
            self.admit(name);
            // Its default servers may have: they stand in for a registry that has none.
            if let Some(s) = self.services.map.get(name).filter(|s| s.registry_empty) {
                if !s.spec.default_servers.is_empty()
                    && s.reported.as_slice() != s.spec.default_servers.as_slice()
                {
                    let generation = s.generation;
                    self.servers(name.clone(), generation, Arc::default(), now);
                }
            }
        }
        self.dirty.extend(changed);
        for (name, saved) in restore.into_iter().flatten() {
            let Some(service) = self.services.map.get_mut(&name) else { continue };
            if service.awaiting_since.is_some() {
                service.reported = saved.servers;
                self.admit(&name);
                self.services.reported(&name);
            }
        }
        self.routes_changed();
        if !self.services.blocked.is_empty() || self.frontends_unbound() {
            self.retry_blocked_at = Some(now + BLOCKED_RETRY);
        }
    }

    /// Whether a frontend of proxymgr.yml has no listener yet (it is left out of haproxy.cfg until it has).
    fn frontends_unbound(&self) -> bool {
        self.ports.frontends.values().any(|f| !self.ports.fds.contains_key(&f.bind))
    }

    pub(super) fn servers(
        &mut self,
        service: String,
        generation: u64,
        servers: Arc<Vec<Server>>,
        now: Instant,
    ) {
        let Some(s) = self.services.map.get_mut(&service).filter(|s| s.generation == generation) else {
            return;
        };
        // Synapse's `default_servers`: served while the registry has none.
        s.registry_empty = servers.is_empty();
        let defaults = &s.spec.default_servers;
        let servers = if servers.is_empty() && !defaults.is_empty() {
            if s.reported.as_slice() != defaults.as_slice() {
                log::warn!(
                    "service {service}: its watcher reports no servers; serving its {} default server(s)",
                    defaults.len()
                );
            }
            Arc::new(defaults.clone())
        } else {
            servers
        };
        let allow_empty = s.spec.allow_empty;
        let last = s.reported.len();
        if servers.is_empty() && last > 0 && !allow_empty {
            self.services.reported(&service);
            log::warn!(
                "service {service}: its watcher reports no servers; keeping the last {last} \
                 (\"allow_empty\": true serves none)"
            );
            return;
        }
        let policy = Policy::of(&self.config.removal_hold, s.spec.hold_removals);
        let servers = self.holding.report(&service, &mut s.hold, generation, servers, policy, now);
        log::info!("service {service}: {} server(s): {}", servers.len(), changes(&s.reported, &servers));
        s.reported = servers;
        self.admit(&service);
        self.services.reported(&service);
        self.last_report = now;
        self.dirty.insert(service);
    }

    /// Sets a service's servers to those reported but the ones quarantined; those whose registration changed
    /// are tried again.
    pub(super) fn admit(&mut self, name: &str) {
        let Some(s) = self.services.map.get_mut(name) else { return };
        let (servers, again) = self.quarantine.admit(name, &s.spec, &s.reported);
        for server in again {
            log::info!("service {name}: server {server} changed or left; no longer held out");
        }
        s.servers = servers;
        s.lines = OnceCell::new();
    }

    /// At start, while the registry does not answer: serve what the state file says was served.
    pub(super) fn serve_saved_state(&mut self, now: Instant) {
        if self.registry.is_some() {
            self.saved = None;
            return;
        }
        if now.saturating_duration_since(self.started) < STARTUP_WAIT {
            return;
        }
        let Some(saved) = self.saved.take() else { return };
        log::warn!(
            "the registry has not answered in {STARTUP_WAIT:?}; serving {} service(s) from the state file until it does",
            saved.len()
        );
        let specs = saved.iter().map(|(name, s)| (name.clone(), s.spec.clone())).collect();
        // What comes from the file is not news from the registry: `registry` stays None, and the file keeps it.
        self.follow_registry(specs, Some(saved), now);
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        let services = self.services.map.iter().map(|(name, s)| {
            (name.clone(), SavedService { spec: s.spec.clone(), servers: s.servers.clone() })
        });
        Snapshot { services: services.collect(), routes: self.saved_routes() }
    }

    /// Writes the state file when the state changed, at most once a second.
    pub(super) fn save_state(&mut self, now: Instant) {
        if self.busy() || self.saving || !self.state_dirty || now < self.state_due || !self.can_save() {
            return;
        }
        let path = self.config.state_file.clone();
        self.saving = true;
        self.actions.push_back(Action::SaveState { path, snapshot: self.snapshot() });
    }

    /// Whether there is anything to save: before the registry answered, only services from the state file are
    /// worth writing back.
    pub(super) fn can_save(&self) -> bool {
        self.registry.is_some() || !self.services.map.is_empty()
    }

    pub(super) fn before_first_start(&self) -> bool {
        self.running.is_none() && self.last_reload.is_none()
    }

    /// Whether a new service still waits for its first server set (bounded by FIRST_REPORT_WAIT, or STARTUP_WAIT
    /// before anything was started), so that its reload waits too.
    pub(super) fn awaiting(&self, now: Instant) -> bool {
        if self.before_first_start() {
            let complete = self.registry.is_some() && self.services.awaiting.is_empty();
            let elapsed = now.saturating_duration_since(self.started);
            // Past the first wait, a registry still being read (1000 services of 50 servers take seconds) is
            // waited for while its watchers make progress: one start with everything beats a start with half
            // and thousands of runtime additions.
            let quiet = now.saturating_duration_since(self.last_report) >= STARTUP_QUIET;
            return !complete && (elapsed < STARTUP_WAIT || (elapsed < STARTUP_WAIT_MAX && !quiet));
        }
        // Some service waits while the one set up last does.
        self.services
            .awaiting
            .last()
            .is_some_and(|(since, _)| now.saturating_duration_since(*since) < FIRST_REPORT_WAIT)
    }

    /// SIGHUP's config, valid: replaces the `haproxy` section (the next converge reloads if the rendered config
    /// changed) and `removal_hold`, and switches `service_config` sources when it changed.
    pub(super) fn reconfigure(&mut self, config: Config, binary: Binary, now: Instant) {
        if config.service_config != self.config.service_config {
            // The new source's first whole set replaces the old one's; until it comes, what is served stays.
            log::info!("service_config: {} -> {}", self.config.service_config, config.service_config);
            self.source += 1;
            let source = config.service_config.clone();
            self.actions.push_back(Action::FollowSource { source, generation: self.source });
            self.config.service_config = config.service_config;
        }
        self.config.state_file = config.state_file;
        // Holds under way that it turns off end at the next tick.
        self.config.removal_hold = config.removal_hold;
        self.caps = Capabilities::of_binary(&binary);
        self.binary_version = binary.version_text.clone();
        self.actions.push_back(Action::UseHaproxy { binary, haproxy: Box::new(config.haproxy.clone()) });
        self.config.haproxy = config.haproxy;
        let (haproxy, ports) = (&self.config.haproxy, &mut self.ports);
        let names = haproxy.section_names();
        if ports.frontends != haproxy.frontends
            || ports.bind_address != haproxy.bind_address
            || ports.names != names
        {
            ports.bind_address = haproxy.bind_address;
            ports.frontends = haproxy.frontends.clone();
            ports.names = names;
            // New addresses are bound, and the services checked against them, as the registry's set is followed
            // again.
            self.follow_registry_again(now);
        }
        self.forget_renders();
        self.routes_changed();
        self.next_drift_check = self.config.haproxy.drift_check_interval().map(|d| now + d);
    }
}
