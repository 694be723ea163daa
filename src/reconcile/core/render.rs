//! The pieces of haproxy.cfg, rendered when what they come from changed and cached until then.

use super::*;
use crate::reconcile::services::Service;

impl Core {
    /// Renders what changed since the last render and the planner needs: the head and each service's skeleton.
    pub(super) fn refresh_renders(&mut self, scope: Scope) {
        if self.head.is_none() {
            self.head = Some(self.renderer.head(&self.config.haproxy, &self.caps, &self.frontend_fds()));
        }
        let (renderer, ports, config, caps) = (&self.renderer, &self.ports, &self.config.haproxy, &self.caps);
        let render = |name: &String, service: &mut Service| {
            if service.skeleton.is_none() {
                // Every service set up had its listener bound.
                let fd = service
                    .spec
                    .listen_at(ports.bind_address)
                    .map(|at| ports.fds.get(&at).copied().unwrap_or(-1));
                service.skeleton = Some(renderer.listen(name, fd, &service.spec, config, caps));
            }
        };
        match scope {
            Scope::Changed(names) => {
                for name in names {
                    if let Some(service) = self.services.map.get_mut(name) {
                        render(name, service);
                    }
                }
            }
            _ => self.services.map.iter_mut().for_each(|(name, service)| render(name, service)),
        }
    }

    /// The listener of each frontend bound; one that is not is left out of haproxy.cfg until it is.
    pub(super) fn frontend_fds(&self) -> BTreeMap<String, RawFd> {
        let frontends = self.config.haproxy.frontends.iter();
        frontends.filter_map(|(name, f)| Some((name.clone(), *self.ports.fds.get(&f.bind)?))).collect()
    }

    /// Everything in haproxy.cfg but the server lines, as rendered: what HAProxy must accept before a reload.
    pub(super) fn skeleton(&self) -> String {
        let mut text = self.head.clone().unwrap_or_default();
        for service in self.services.map.values() {
            text.push_str(service.skeleton.as_deref().unwrap_or_default());
        }
        text
    }

    /// The whole haproxy.cfg: the head, then each service's skeleton and server lines. Server lines are
    /// rendered here, not when servers change: only the file needs them, and it is written after HAProxy got
    /// the change.
    pub(super) fn config_text(&mut self) -> String {
        let slots = self.slot_layouts(false);
        self.compose(None, &slots)
    }

    /// The whole haproxy.cfg for a candidate, with its servers in `slots`, and with whom each of its lines
    /// belongs to: HAProxy's complaints name lines.
    pub(super) fn candidate_text(&mut self, slots: &BTreeMap<String, slots::Layout>) -> (String, Layout) {
        let mut layout = Layout::default();
        let text = self.compose(Some(&mut layout), slots);
        (text, layout)
    }

    fn compose(
        &mut self,
        mut layout: Option<&mut Layout>,
        slots: &BTreeMap<String, slots::Layout>,
    ) -> String {
        self.refresh_renders(Scope::All);
        let mut text = self.head.clone().unwrap_or_default();
        if let Some(layout) = layout.as_deref_mut() {
            layout.head(&text);
        }
        for (name, service) in &self.services.map {
            let skeleton = service.skeleton.as_deref().unwrap_or_default();
            text.push_str(skeleton);
            let slots = slots.get(name);
            match slots {
                // Rendered each time: the slots change with the serving process, not only with the servers.
                Some(slots) => text.push_str(&self.renderer.servers(
                    &service.spec,
                    &service.servers,
                    &self.config.haproxy.defaults,
                    &self.caps,
                    Some(slots),
                )),
                None => text.push_str(self.lines(service)),
            }
            if let Some(layout) = layout.as_deref_mut() {
                let template_lines = slots.map_or(0, |s| s.empty_runs().len());
                layout.service(name, skeleton, &service.servers, template_lines);
            }
        }
        text
    }

    /// Which slot each server is in, by service, where HAProxy has slots rather than `add server` (`slots.rs`);
    /// empty where it has `add server`. For a new process (`fresh`), each server keeps the slot the serving
    /// process has it in or gets a free one, with new spare slots; otherwise they are the serving process's.
    pub(super) fn slot_layouts(&self, fresh: bool) -> BTreeMap<String, slots::Layout> {
        if !self.caps.slots {
            return BTreeMap::new();
        }
        let running = self.running.as_ref();
        let layouts = self.services.map.iter().map(|(name, service)| {
            let serving = running.and_then(|r| r.services.get(name));
            let held = |server: &str| serving.and_then(|s| s.servers.get(server)).and_then(|s| s.slot);
            let layout = match serving {
                Some(serving) if !fresh => {
                    let occupied = serving.servers.values().filter_map(|s| s.slot);
                    slots::serving(
                        &service.servers,
                        held,
                        serving.empty_slots.iter().copied().chain(occupied),
                    )
                }
                _ => slots::layout(&service.servers, held),
            };
            (name.clone(), layout)
        });
        layouts.collect()
    }

    /// A service's server lines (where HAProxy has `add server`), rendered if they are not yet.
    pub(super) fn lines<'s>(&self, service: &'s Service) -> &'s str {
        service.lines.get_or_init(|| {
            self.renderer.servers(
                &service.spec,
                &service.servers,
                &self.config.haproxy.defaults,
                &self.caps,
                None,
            )
        })
    }

    /// The option lines every server of a service gets: its `default-server` lines' (those of `defaults`,
    /// then its own) and its server options.
    pub(super) fn shared_options<'s>(&'s self, spec: &'s ServiceSpec) -> Vec<&'s str> {
        let defaults =
            crate::haproxy::render::default_server(&self.config.haproxy.defaults, &spec.listen_options);
        defaults.chain(spec.server_options.iter().map(String::as_str)).collect()
    }

    /// Whether the desired skeleton is the one HAProxy last rejected: it is not tried again until it changes
    /// (else every event, the check's own exit included, would run the check again).
    pub(super) fn rejects_again(&mut self) -> bool {
        if self.rejected.is_none() {
            return false;
        }
        self.refresh_renders(Scope::All);
        self.rejected.as_ref() == Some(&self.skeleton())
    }

    /// Forgets every rendered piece (the config or the HAProxy binary changed).
    pub(super) fn forget_renders(&mut self) {
        self.head = None;
        for service in self.services.map.values_mut() {
            service.skeleton = None;
            service.lines = OnceCell::new();
        }
        self.dirty_all = true;
    }

    /// haproxy.cfg must always equal the desired state, so that a restart loses nothing done at run time. Only
    /// server lines changed since HAProxy accepted the skeleton, so no check is needed. Written at most every
    /// FILE_WRITE_INTERVAL while servers churn.
    pub(super) fn write_file(&mut self, now: Instant) {
        let text = self.config_text();
        let maps = self.map_files();
        self.actions.push_back(Action::WriteConfig { text, maps });
        self.file_stale = false;
        self.file_due = now + FILE_WRITE_INTERVAL;
    }
}
