//! The desired state: every service being served (or about to be), its spec, the servers its watcher last
//! reported, and its pieces of haproxy.cfg as rendered. Pure: setting a service up asks for its watcher through
//! an [`Action`]; its listener must already be bound (the core asks for that first).

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

use crate::config::overlap;
use crate::plan::{Desired, DesiredService, Scope};
use crate::service::{Server, ServiceSpec};

use super::hold::Hold;
use super::messages::Action;
use super::quarantine::Quarantine;

pub struct Service {
    pub spec: ServiceSpec,
    /// As its watcher reported them, with the removed ones a removal hold keeps (`hold`).
    pub reported: Arc<Vec<Server>>,
    /// What HAProxy is to have: those but the ones quarantined (the same `Arc` when none is); shared with
    /// state-file snapshots.
    pub servers: Arc<Vec<Server>>,
    /// Whether a mass removal is held back, and what the registry said.
    pub hold: Hold,
    /// Its watcher's: a report of an older watcher is ignored.
    pub generation: u64,
    /// Set while its watcher has not reported yet.
    pub awaiting_since: Option<Instant>,
    /// Whether its watcher's last report had no server: its `default_servers`, if any, are served.
    pub registry_empty: bool,
    /// Its `listen` skeleton and its server lines as rendered; empty once what they come from changed. The
    /// lines fill through a shared borrow, while the desired state borrows the services.
    pub skeleton: Option<String>,
    pub lines: OnceCell<String>,
}

/// Why a service of the registry is not set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// Another service has its port (on its address, or on every address).
    PortUsed { at: SocketAddr, by: String },
    /// A frontend of proxymgr.yml has its port.
    FrontendPort { at: SocketAddr, frontend: String },
    /// A section of proxymgr.yml (a frontend, an extra section) has its name.
    NameTaken,
    /// Its listener cannot be bound (another program has the port, say).
    Bind(String),
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocked::PortUsed { at, by } => write!(f, "port {} is already used by service {by}", at.port()),
            Blocked::FrontendPort { at, frontend } => {
                write!(f, "{at} is where the frontend {frontend} of proxymgr.yml listens")
            }
            Blocked::NameTaken => {
                write!(f, "its name is a section's of proxymgr.yml (a frontend or an extra section)")
            }
            Blocked::Bind(reason) => write!(f, "{reason}"),
        }
    }
}

/// The listeners as the core knows them: what a service's port is checked against.
pub struct Ports {
    /// `haproxy.bind_address`: where a service's port listens unless its blob names an address.
    pub bind_address: IpAddr,
    /// Every listener bound, by address.
    pub fds: BTreeMap<SocketAddr, RawFd>,
    /// Why each address that could not be bound could not.
    pub errors: BTreeMap<SocketAddr, String>,
    /// proxymgr.yml's frontends, whose ports no service may take.
    pub frontends: BTreeMap<String, crate::config::Frontend>,
    /// The names of proxymgr.yml's sections (frontends, extra sections), which no service may take.
    pub names: BTreeSet<String>,
}

#[derive(Default)]
pub struct Services {
    pub map: BTreeMap<String, Service>,
    /// The services whose watcher has not reported yet, by when they were set up (each is its service's
    /// `awaiting_since`): kept apart so that no event costs a walk through every service.
    pub awaiting: BTreeSet<(Instant, String)>,
    /// Services of the registry that could not be set up, with the reason (logged once).
    pub blocked: BTreeMap<String, Blocked>,
    next_generation: u64,
}

impl Services {
    /// Makes the services follow the registry's set: removes what is gone, sets up what is new or changed.
    /// `ports` holds the listener of every address that could be bound and why the others could not, and
    /// what else claims ports.
    /// Returns the services already served whose spec changed.
    pub fn follow(
        &mut self,
        registry: &BTreeMap<String, ServiceSpec>,
        ports: &Ports,
        now: Instant,
        actions: &mut VecDeque<Action>,
    ) -> Vec<String> {
        let mut changed = Vec::new();
        let awaiting = &mut self.awaiting;
        self.map.retain(|name, service| {
            let keep = registry.contains_key(name);
            if !keep {
                log::info!("service {name}: removed");
                if let Some(since) = service.awaiting_since {
                    awaiting.remove(&(since, name.clone()));
                }
                actions.push_back(Action::Unwatch { service: name.clone() });
            }
            keep
        });
        self.blocked.retain(|name, _| registry.contains_key(name));
        // Services already served keep their ports against newcomers.
        let (known, new): (Vec<_>, Vec<_>) =
            registry.iter().partition(|(name, _)| self.map.contains_key(*name));
        for (name, spec) in known.into_iter().chain(new) {
            match self.set_up(name, spec, ports, now, actions) {
                Ok(spec_changed) => {
                    if spec_changed {
                        changed.push(name.clone());
                    }
                    if self.blocked.remove(name).is_some() {
                        log::info!("service {name}: set up");
                    }
                }
                Err(reason) => {
                    if self.blocked.get(name) != Some(&reason) {
                        let what =
                            if self.map.contains_key(name) { "keeping its last spec" } else { "not served" };
                        log::error!(
                            "service {name}: {reason}; {what}, trying again every {:?}",
                            super::core::BLOCKED_RETRY
                        );
                        self.blocked.insert(name.clone(), reason);
                    }
                }
            }
        }
        changed
    }

    fn set_up(
        &mut self,
        name: &str,
        spec: &ServiceSpec,
        ports: &Ports,
        now: Instant,
        actions: &mut VecDeque<Action>,
    ) -> Result<bool, Blocked> {
        if ports.names.contains(name) {
            return Err(Blocked::NameTaken);
        }
        if self.map.get(name).is_some_and(|s| &s.spec == spec) {
            return Ok(false);
        }
        if let Some(at) = spec.listen_at(ports.bind_address) {
            let theirs = |s: &Service| s.spec.listen_at(ports.bind_address).is_some_and(|a| overlap(a, at));
            if let Some((other, _)) = self.map.iter().find(|(n, s)| n.as_str() != name && theirs(s)) {
                return Err(Blocked::PortUsed { at, by: other.clone() });
            }
            if let Some((frontend, _)) = ports.frontends.iter().find(|(_, f)| overlap(f.bind, at)) {
                return Err(Blocked::FrontendPort { at, frontend: frontend.clone() });
            }
            if !ports.fds.contains_key(&at) {
                let reason = ports.errors.get(&at).cloned();
                return Err(Blocked::Bind(reason.unwrap_or_else(|| format!("{at} is not bound"))));
            }
        }
        let generation = self.next_generation;
        let watch = |actions: &mut VecDeque<Action>| {
            actions.push_back(Action::Watch {
                service: name.to_string(),
                spec: spec.watcher.clone(),
                generation,
            })
        };
        match self.map.get_mut(name) {
            Some(service) => {
                log::info!("service {name}: spec changed");
                if service.spec.watcher != spec.watcher {
                    // The old servers stay until the new watcher reports: better stale than empty.
                    watch(actions);
                    service.generation = generation;
                    self.next_generation += 1;
                }
                service.spec = spec.clone();
                service.skeleton = None;
                service.lines = OnceCell::new();
                return Ok(true);
            }
            None => {
                match spec.listen_at(ports.bind_address) {
                    Some(at) => log::info!("service {name}: added on {at}"),
                    None => log::info!("service {name}: added, as a backend of its frontends"),
                }
                watch(actions);
                self.next_generation += 1;
                self.awaiting.insert((now, name.to_string()));
                let service = Service {
                    spec: spec.clone(),
                    reported: Arc::default(),
                    servers: Arc::default(),
                    generation,
                    awaiting_since: Some(now),
                    registry_empty: false,
                    hold: Hold::default(),
                    skeleton: None,
                    lines: OnceCell::new(),
                };
                self.map.insert(name.to_string(), service);
            }
        }
        Ok(false)
    }

    /// A service's watcher reported for the first time (or it was given servers from the state file).
    pub fn reported(&mut self, name: &str) {
        if let Some(since) = self.map.get_mut(name).and_then(|s| s.awaiting_since.take()) {
            self.awaiting.remove(&(since, name.to_string()));
        }
    }

    /// The desired state, borrowed from the services and their rendered pieces: of every service, or, for
    /// `Scope::Changed`, of those it names alone.
    pub fn desired<'a>(
        &'a self,
        head: &'a str,
        defaults: &'a [String],
        routes: &'a crate::plan::Routes,
        no_dynamic: &BTreeMap<String, Vec<String>>,
        quarantine: &'a Quarantine,
        scope: Scope,
    ) -> Desired<'a> {
        let of = |name: &'a String, s: &'a Service| {
            let desired = DesiredService {
                skeleton: s.skeleton.as_deref().unwrap_or_default(),
                spec: &s.spec,
                servers: s.servers.as_slice(),
                dynamic: no_dynamic.get(name) != Some(&s.spec.server_options),
                by_reload: quarantine.by_reload(name),
            };
            (name.as_str(), desired)
        };
        let services = match scope {
            Scope::Changed(names) => {
                names.iter().filter_map(|name| self.map.get_key_value(name)).map(|(n, s)| of(n, s)).collect()
            }
            _ => self.map.iter().map(|(n, s)| of(n, s)).collect(),
        };
        Desired { head, defaults, services, routes }
    }

    /// The addresses every service listens on.
    pub fn listen_at(&self, bind_address: IpAddr) -> BTreeSet<SocketAddr> {
        self.map.values().filter_map(|s| s.spec.listen_at(bind_address)).collect()
    }
}

/// What changed between two sorted server sets, for the log: `+name` for a new server, `-name` for one gone,
/// `~name` for one whose weight or options changed.
pub fn changes(old: &[Server], new: &[Server]) -> String {
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
