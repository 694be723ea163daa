//! The drift check: HAProxy's word on its servers (`show servers state`, one backend at a time) and on its
//! shared frontends' routes (`show map`, one frontend at a time) replaces proxymgr's belief where they differ,
//! and servers long out of the registry are deleted.

use super::*;

impl Core {
    /// Compares each backend's servers in HAProxy (`show servers state <backend>`, one backend at a time) with
    /// what proxymgr believes, takes HAProxy's word where they differ, and lets the next converge fix it. Also
    /// removes servers in maintenance that the registry no longer has.
    pub(super) fn check_drift(&mut self, now: Instant) {
        self.next_drift_check = self.config.haproxy.drift_check_interval().map(|d| now + d);
        if !matches!(self.phase, Phase::Idle) || self.busy() {
            return;
        }
        let Some(running) = &self.running else { return };
        let backends: Vec<String> =
            running.services.keys().filter(|name| self.services.map.contains_key(*name)).cloned().collect();
        let maps: Vec<(String, String)> =
            running.routes.iter().map(|(f, r)| (f.clone(), r.map.clone())).collect();
        self.refresh_renders(Scope::All);
        self.work = Work::Drift { pending: backends.len() + maps.len() };
        for backend in backends {
            self.actions.push_back(Action::QueryServers { backend });
        }
        for (frontend, map) in maps {
            self.actions.push_back(Action::QueryMap { frontend, map });
        }
        if matches!(self.work, Work::Drift { pending: 0 }) {
            self.tidy();
        }
    }

    pub(super) fn drift_result(
        &mut self,
        backend: &str,
        result: Result<BTreeMap<String, ServerStatus>, RuntimeError>,
    ) {
        self.drift_answered(|core| match result {
            Ok(actual) => core.take_haproxys_word(backend, &actual),
            Err(e) => log::error!("drift check of service {backend}: {e}"),
        });
    }

    pub(super) fn map_drift_result(
        &mut self,
        frontend: &str,
        result: Result<BTreeMap<String, String>, RuntimeError>,
    ) {
        self.drift_answered(|core| match result {
            Ok(actual) => core.take_haproxys_routes(frontend, actual),
            // A frontend whose listener could not be bound is not in HAProxy's config, nor its map.
            Err(e) => log::debug!("drift check of frontend {frontend}: {e}"),
        });
    }

    /// One answer of a drift check under way, which `take` takes in; the last one ends the check.
    fn drift_answered(&mut self, take: impl FnOnce(&mut Core)) {
        let Work::Drift { pending } = &mut self.work else { return };
        *pending -= 1;
        let done = *pending == 0;
        take(self);
        if done {
            self.tidy();
        }
    }

    /// HAProxy's word on a frontend's routes where it differs from proxymgr's belief; the next converge sets the
    /// map right. An entry whose key proxymgr would never write (one made by hand, holding what could end a
    /// runtime command) is logged and left alone.
    fn take_haproxys_routes(&mut self, frontend: &str, actual: BTreeMap<String, String>) {
        let Some(routes) = self.running.as_mut().and_then(|r| r.routes.get_mut(frontend)) else { return };
        let mut taken = BTreeMap::new();
        for (key, backend) in actual {
            if !crate::route::is_key(&key) {
                log::warn!("drift: frontend {frontend}'s map has an entry proxymgr does not write ({key:?}); left alone");
                continue;
            }
            taken.insert(crate::route::Key::new("", &key), backend);
        }
        if taken == routes.routes {
            return;
        }
        for (key, backend) in &taken {
            match routes.routes.get(key) {
                Some(believed) if believed == backend => {}
                Some(believed) => log::warn!(
                    "drift: frontend {frontend} routes {key:?} to {backend} in HAProxy, expected {believed}"
                ),
                None => log::warn!(
                    "drift: frontend {frontend} routes {key:?} to {backend} in HAProxy, unknown to proxymgr"
                ),
            }
        }
        for key in routes.routes.keys().filter(|k| !taken.contains_key(*k)) {
            log::warn!("drift: frontend {frontend}'s route {key:?} is missing from HAProxy");
        }
        self.observed.counters.drift_corrections += 1;
        routes.routes = taken;
    }

    pub(super) fn take_haproxys_word(&mut self, name: &str, actual: &BTreeMap<String, ServerStatus>) {
        let has_slots = self.caps.slots;
        let Some(spec) = self.services.map.get(name).map(|s| &s.spec) else { return };
        let Some(service) = self.running.as_mut().and_then(|r| r.services.get_mut(name)) else { return };
        let believed = std::mem::take(&mut service.servers);
        let believed_empty = std::mem::take(&mut service.empty_slots);
        for (haproxy_name, status) in actual {
            // A slot's server is the one at its address; an empty slot stays empty while in maintenance.
            let slot = if has_slots { slots::parse(haproxy_name) } else { None };
            if let Some(n) = slot.filter(|n| believed_empty.contains(n) && status.maint) {
                service.empty_slots.insert(n);
                continue;
            }
            let server = match slot {
                Some(_) => format!("{}:{}", status.address, status.port),
                None => haproxy_name.clone(),
            };
            let ready = !status.maint;
            match believed.get(&server) {
                Some(b) if b.slot == slot && b.ready == ready && effective_weight(b.weight, spec) == status.weight => {
                    service.servers.insert(server, b.clone());
                    continue;
                }
                Some(b) => log::warn!(
                    "drift: service {name} server {server} is {} with weight {} in HAProxy ({haproxy_name}), expected {} with weight {}",
                    state(ready),
                    status.weight,
                    state(b.ready),
                    effective_weight(b.weight, spec)
                ),
                None => log::warn!(
                    "drift: service {name} server {server} is in HAProxy ({haproxy_name}, {}), unknown to proxymgr",
                    state(ready)
                ),
            }
            self.observed.counters.drift_corrections += 1;
            // HAProxy's word on its state and weight; its options are what proxymgr last gave it.
            let options = believed.get(&server).map(|b| b.options.clone()).unwrap_or_default();
            let running = RunningServer { weight: Some(status.weight), options, ready, slot };
            service.servers.insert(server, running);
        }
        for server in believed.keys().filter(|s| !service.servers.contains_key(*s)) {
            log::warn!("drift: service {name} server {server} is missing from HAProxy");
            self.observed.counters.drift_corrections += 1;
        }
    }

    /// The drift check is also when servers long out of the registry leave HAProxy for good.
    pub(super) fn tidy(&mut self) {
        self.work = Work::Idle;
        self.dirty_all = true;
        let Some(running) = &self.running else { return };
        let desired = self.desired(Scope::All);
        let deletes: VecDeque<Step> = plan(running, &desired, &self.caps, Scope::Tidy)
            .steps
            .into_iter()
            .filter(|step| matches!(step, Step::Delete { .. }))
            .collect();
        if !deletes.is_empty() {
            let steps = Steps { queue: deletes, sent: None, carried: Carried::default(), after: After::Tidy };
            self.work = Work::Steps(Box::new(steps));
        }
    }
}

fn state(ready: bool) -> &'static str {
    if ready {
        "ready"
    } else {
        "in maintenance"
    }
}
