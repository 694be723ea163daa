//! The planner: given what the serving HAProxy has ([`Running`]) and what it should have ([`Desired`]), which
//! runtime changes bring it there, and whether only a reload can. Pure: no I/O, tested table-style.
//!
//! The rule (DESIGN.md §2): servers leave, return, arrive and change weight through the runtime API; a
//! service added or removed, or a changed `listen` skeleton (port, listen or server options) or head
//! (global, defaults), takes a reload. So does a new server where HAProxy cannot add one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write};

use crate::haproxy::command::{Command, State};
use crate::haproxy::Capabilities;
use crate::route::Key;
use crate::service::{Server, ServiceSpec};
use crate::slots;

/// HAProxy's weight for a server whose line names none.
const DEFAULT_WEIGHT: u16 = 1;

/// What one HAProxy process has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Running {
    pub head: String,
    pub services: BTreeMap<String, RunningService>,
    /// Each shared frontend's routes (its map).
    pub routes: Routes,
}

/// The routes of one shared frontend: its map file, as haproxy.cfg names it, and each key's backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrontendRoutes {
    pub map: String,
    pub routes: BTreeMap<Key, String>,
}

impl FrontendRoutes {
    pub fn new(map: String) -> FrontendRoutes {
        FrontendRoutes { map, routes: BTreeMap::new() }
    }
}

/// Every shared frontend's routes, by frontend.
pub type Routes = BTreeMap<String, FrontendRoutes>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunningService {
    pub skeleton: String,
    /// By server name. A server that left the registry stays here, in maintenance, until the next reload or
    /// until `del server` takes it out.
    pub servers: BTreeMap<String, RunningServer>,
    /// Its empty slots, where HAProxy has no `add server` (`slots.rs`).
    pub empty_slots: BTreeSet<u32>,
}

/// What the planner compares of a server HAProxy has (its address and port are its name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningServer {
    pub weight: Option<u16>,
    pub options: Vec<String>,
    pub ready: bool,
    /// The slot it is in, whose name HAProxy knows it by; None when HAProxy knows it by its address.
    pub slot: Option<u32>,
}

impl RunningServer {
    pub fn of(server: &Server, ready: bool) -> RunningServer {
        RunningServer { weight: server.weight, options: server.options.clone(), ready, slot: None }
    }
}

/// What HAProxy should have, borrowed from the reconciler's state (nothing is copied per change). It holds
/// every service, or, for [`Scope::Changed`], only those the scope names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired<'a> {
    pub head: &'a str,
    /// The config's `defaults` lines: their `default-server` line goes into `add server` too.
    pub defaults: &'a [String],
    pub services: BTreeMap<&'a str, DesiredService<'a>>,
    /// Every frontend's routes, whatever the scope (a routing change costs a comparison of maps, no walk).
    pub routes: &'a Routes,
}

impl Default for Desired<'_> {
    fn default() -> Self {
        static NO_ROUTES: Routes = BTreeMap::new();
        Desired { head: "", defaults: &[], services: BTreeMap::new(), routes: &NO_ROUTES }
    }
}

/// What a plan compares, so that a plan costs what the changed services cost, not a walk through every one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'s> {
    /// Every service: its presence, its skeleton, its servers (after a new process, or while a reload is due).
    All,
    /// Every service's presence and skeleton (services came or went), the servers of those named only.
    Reshaped(&'s BTreeSet<String>),
    /// Only the services named (those whose servers or spec changed); `Desired` need hold no others.
    Changed(&'s BTreeSet<String>),
    /// As `All`, and every server in maintenance that the registry no longer has is deleted (the drift check).
    Tidy,
}

impl Scope<'_> {
    /// Whether `desired` holds every service, so that a service missing from it was removed.
    pub fn complete(&self) -> bool {
        !matches!(self, Scope::Changed(_))
    }

    fn servers_of(&self, service: &str) -> bool {
        match self {
            Scope::All | Scope::Tidy => true,
            Scope::Reshaped(names) | Scope::Changed(names) => names.contains(service),
        }
    }
}

/// Why a reload is needed. The log's words come from here; decisions and tests use the values.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReloadReason {
    /// Nothing serves yet (or any more: the serving process died).
    FirstStart,
    HeadChanged,
    ServiceAdded(String),
    ServiceRemoved(String),
    /// Its port, listen options or server options changed.
    Reshaped(String),
    ServerOptionsChanged {
        service: String,
        server: String,
    },
    /// A new server where this backend takes no dynamic server.
    NoDynamicServers {
        service: String,
        server: String,
    },
    /// A new server where this HAProxy cannot add one at run time.
    TooOldToAdd {
        service: String,
        server: String,
    },
    /// A new server where HAProxy has slots but this backend has none left.
    NoSlotLeft {
        service: String,
        server: String,
    },
    /// A new server that goes by reload: named by a host name (a server added at run time is not resolved),
    /// or refused by `add server` for an option HAProxy takes only from a config.
    ByReload {
        service: String,
        server: String,
    },
    /// HAProxy refused a dynamic server of this service: its new servers take a reload from now on.
    DynamicRefused(String),
    /// A runtime command failed (the socket, or a refusal): a reload brings HAProxy to the desired state instead.
    RuntimeFailed(String),
}

impl ReloadReason {
    /// The service it is about, if one: judging it again needs that service's servers planned (and every
    /// service's presence and skeleton, which is cheap), not every server.
    pub fn service(&self) -> Option<&str> {
        match self {
            ReloadReason::ServiceAdded(service)
            | ReloadReason::ServiceRemoved(service)
            | ReloadReason::Reshaped(service)
            | ReloadReason::DynamicRefused(service)
            | ReloadReason::ServerOptionsChanged { service, .. }
            | ReloadReason::NoDynamicServers { service, .. }
            | ReloadReason::TooOldToAdd { service, .. }
            | ReloadReason::NoSlotLeft { service, .. }
            | ReloadReason::ByReload { service, .. } => Some(service),
            ReloadReason::FirstStart | ReloadReason::HeadChanged | ReloadReason::RuntimeFailed(_) => None,
        }
    }
}

impl ReloadReason {
    /// Its kind, as a metric's label.
    pub fn kind(&self) -> &'static str {
        match self {
            ReloadReason::FirstStart => "first_start",
            ReloadReason::HeadChanged => "head_changed",
            ReloadReason::ServiceAdded(_) => "service_added",
            ReloadReason::ServiceRemoved(_) => "service_removed",
            ReloadReason::Reshaped(_) => "service_reshaped",
            ReloadReason::ServerOptionsChanged { .. } => "server_options_changed",
            ReloadReason::NoDynamicServers { .. } => "no_dynamic_servers",
            ReloadReason::TooOldToAdd { .. } => "too_old_to_add",
            ReloadReason::NoSlotLeft { .. } => "no_slot_left",
            ReloadReason::ByReload { .. } => "by_reload",
            ReloadReason::DynamicRefused(_) => "dynamic_refused",
            ReloadReason::RuntimeFailed(_) => "runtime_failed",
        }
    }
}

impl fmt::Display for ReloadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadReason::FirstStart => write!(f, "first start"),
            ReloadReason::HeadChanged => write!(f, "global, defaults, frontends or extra sections changed"),
            ReloadReason::ServiceAdded(name) => write!(f, "service {name} added"),
            ReloadReason::ServiceRemoved(name) => write!(f, "service {name} removed"),
            ReloadReason::Reshaped(name) => write!(f, "service {name}: port or options changed"),
            ReloadReason::ServerOptionsChanged { service, server } => {
                write!(f, "service {service}: the options of server {server} changed")
            }
            ReloadReason::NoDynamicServers { service, server } => {
                write!(f, "service {service}: new server {server} (HAProxy refuses dynamic servers here)")
            }
            ReloadReason::TooOldToAdd { service, server } => {
                write!(f, "service {service}: new server {server} (HAProxy too old to add it)")
            }
            ReloadReason::NoSlotLeft { service, server } => {
                write!(f, "service {service}: new server {server} (no empty slot left)")
            }
            ReloadReason::ByReload { service, server } => {
                write!(f, "service {service}: new server {server} (not one to add at run time)")
            }
            ReloadReason::DynamicRefused(service) => {
                write!(f, "service {service}: HAProxy refused a dynamic server")
            }
            ReloadReason::RuntimeFailed(error) => write!(f, "runtime command failed: {error}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DesiredService<'a> {
    pub skeleton: &'a str,
    pub spec: &'a ServiceSpec,
    /// Sorted and unique by name.
    pub servers: &'a [Server],
    /// False once HAProxy refused a dynamic server for this service (its balance algorithm, an option dynamic
    /// servers do not take): its new servers then take a reload.
    pub dynamic: bool,
    /// Its servers that go by reload, not `add server`: HAProxy refused them for an option it takes only from a
    /// config.
    pub by_reload: &'a BTreeSet<String>,
}

impl Desired<'_> {
    /// The process a reload to this state starts: every server in the file, all of them ready, in the slots
    /// `layouts` gives them (by service; none where HAProxy has `add server`).
    pub fn running(&self, layouts: &BTreeMap<String, slots::Layout>) -> Running {
        let services = self.services.iter().map(|(&name, d)| {
            let layout = layouts.get(name);
            let servers = d.servers.iter().map(|s| {
                let name = s.name();
                let slot = layout.and_then(|l| l.taken.get(&name).copied());
                (name, RunningServer { slot, ..RunningServer::of(s, true) })
            });
            let service = RunningService {
                skeleton: d.skeleton.to_string(),
                servers: servers.collect(),
                empty_slots: layout.map(|l| l.empty.clone()).unwrap_or_default(),
            };
            (name.to_string(), service)
        });
        Running { head: self.head.to_string(), services: services.collect(), routes: self.routes.clone() }
    }
}

/// One change to one server, made of one or more runtime commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Out of the registry: into maintenance (the original's promise: no reload).
    Disable {
        service: String,
        server: String,
        slot: Option<u32>,
    },
    /// Back in the registry while HAProxy still has it.
    Enable {
        service: String,
        server: Server,
        slot: Option<u32>,
    },
    Reweight {
        service: String,
        server: Server,
        weight: u16,
        slot: Option<u32>,
    },
    /// New to HAProxy: `add server`, health checks on if its options check, then ready.
    Add {
        service: String,
        server: Server,
        arguments: String,
        health: bool,
    },
    /// New to HAProxy, into an empty slot (or the slot of a server that left the registry and waits in
    /// maintenance, `replaces`): its address and port, its weight where the slot has another, then ready.
    Fill {
        service: String,
        server: Server,
        slot: u32,
        /// None when the slot has it already (a backend with a static balance algorithm takes no other).
        weight: Option<u16>,
        replaces: Option<String>,
    },
    /// Out of the registry and in maintenance: removed from HAProxy for good, if it has no connections left.
    Delete {
        service: String,
        server: String,
    },
    /// A key of a frontend's map is added, sent to another backend, or removed.
    Route {
        frontend: String,
        map: String,
        key: Key,
        change: RouteChange,
    },
}

/// What becomes of one key of a frontend's map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteChange {
    Add { backend: String },
    Move { from: String, to: String },
    Remove { backend: String },
}

impl Step {
    /// Its kind, as a metric's label.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Disable { .. } => "disable",
            Step::Enable { .. } => "enable",
            Step::Reweight { .. } => "weight",
            Step::Add { .. } => "add",
            Step::Fill { .. } => "fill",
            Step::Delete { .. } => "delete",
            Step::Route { .. } => "route",
        }
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Why a reload is needed; empty when none is.
    pub reload: Vec<ReloadReason>,
}

/// What takes a reload (a service added, removed or reshaped) is judged on every service when the scope is
/// complete, on those `desired` holds when not; servers are compared where the scope says.
pub fn plan(running: &Running, desired: &Desired, caps: &Capabilities, scope: Scope) -> Plan {
    let mut plan = Plan::default();
    if running.head != desired.head {
        plan.reload.push(ReloadReason::HeadChanged);
    }
    let pairs = if scope.complete() {
        pair_all(running, desired, &mut plan)
    } else {
        let mut pairs = Vec::with_capacity(desired.services.len());
        for (&name, want) in &desired.services {
            match running.services.get(name) {
                Some(have) => pairs.push((name, have, want)),
                None => plan.reload.push(ReloadReason::ServiceAdded(name.to_string())),
            }
        }
        pairs
    };
    for &(name, have, want) in &pairs {
        if have.skeleton != want.skeleton {
            plan.reload.push(ReloadReason::Reshaped(name.to_string()));
        }
    }
    // Server changes go through at once even when a reload is coming (or HAProxy rejected it): the running
    // backend serves until then.
    let tidy = scope == Scope::Tidy;
    for (name, have, want) in pairs {
        if scope.servers_of(name) {
            plan_servers(&mut plan, name, have, want, desired.defaults, caps, tidy);
        }
    }
    plan_routes(&mut plan, running, desired);
    plan
}

/// The routes that change, frontend by frontend: the keys gone first, then the new and moved ones. A key
/// waits for the reload its backend takes while the serving process lacks that backend or has it with another
/// skeleton (not yet HTTP, say); a frontend the serving process lacks, or has with another map, comes with the
/// reload its head takes.
fn plan_routes(plan: &mut Plan, running: &Running, desired: &Desired) {
    if running.routes == *desired.routes {
        return;
    }
    let ready = |backend: &str| {
        running.services.get(backend).is_some_and(|have| {
            desired.services.get(backend).map_or(true, |want| want.skeleton == have.skeleton)
        })
    };
    for (frontend, want) in desired.routes {
        let Some(have) = running.routes.get(frontend).filter(|have| have.map == want.map) else { continue };
        let step = |key: &Key, change| Step::Route {
            frontend: frontend.clone(),
            map: want.map.clone(),
            key: key.clone(),
            change,
        };
        for (key, backend) in &have.routes {
            if !want.routes.contains_key(key) {
                plan.steps.push(step(key, RouteChange::Remove { backend: backend.clone() }));
            }
        }
        for (key, backend) in &want.routes {
            let change = match have.routes.get(key) {
                Some(current) if current == backend => continue,
                _ if !ready(backend) => continue,
                Some(current) => RouteChange::Move { from: current.clone(), to: backend.clone() },
                None => RouteChange::Add { backend: backend.clone() },
            };
            plan.steps.push(step(key, change));
        }
    }
}
/// Pairs every running service with its desired one; the services only one side has take a reload.
fn pair_all<'r, 'd, 'a>(
    running: &'r Running,
    desired: &'d Desired<'a>,
    plan: &mut Plan,
) -> Vec<(&'d str, &'r RunningService, &'d DesiredService<'a>)> {
    // Both maps are sorted by name: one walk through each pairs them, with no lookup per service.
    let mut have = running.services.iter().map(|(name, s)| (name.as_str(), s)).peekable();
    let mut pairs = Vec::with_capacity(desired.services.len());
    let mut added = Vec::new();
    for (&name, want) in &desired.services {
        while let Some((gone, _)) = have.next_if(|(other, _)| *other < name) {
            plan.reload.push(ReloadReason::ServiceRemoved(gone.to_string()));
        }
        match have.next_if(|(other, _)| *other == name) {
            Some((_, have)) => pairs.push((name, have, want)),
            None => added.push(ReloadReason::ServiceAdded(name.to_string())),
        }
    }
    plan.reload.extend(have.map(|(gone, _)| ReloadReason::ServiceRemoved(gone.to_string())));
    plan.reload.extend(added);
    pairs
}

fn plan_servers(
    plan: &mut Plan,
    service: &str,
    have: &RunningService,
    want: &DesiredService,
    defaults: &[String],
    caps: &Capabilities,
    tidy: bool,
) {
    // Every server is looked up by its name, written into one buffer: this runs for every server of every
    // service after a reload, 50 000 of them at 1000 services.
    let mut name = String::new();
    let mut found = 0;
    let first_step = plan.steps.len();
    let default_weight = effective_weight(None, want.spec);
    let by_reload = |server: &Server| !want.by_reload.is_empty() && want.by_reload.contains(&server.name());
    // Slots for newcomers, taken in order: the empty ones, then those of servers that left the registry and wait
    // in maintenance (found only when a newcomer needs one).
    let mut empty_slots = have.empty_slots.iter().copied();
    let mut vacated: Option<Vec<(u32, String, Option<u16>)>> = None;
    for server in want.servers {
        name.clear();
        let _ = write!(name, "{}:{}", server.address, server.port);
        let current = have.servers.get(name.as_str());
        found += usize::from(current.is_some());
        let weight = server.weight.unwrap_or(default_weight);
        match current {
            Some(current) if current.options != server.options => plan
                .reload
                .push(ReloadReason::ServerOptionsChanged { service: service.into(), server: name.clone() }),
            Some(current) => {
                let slot = current.slot;
                if !current.ready {
                    plan.steps.push(Step::Enable { service: service.into(), server: server.clone(), slot });
                }
                if current.weight.unwrap_or(default_weight) != weight {
                    plan.steps.push(Step::Reweight {
                        service: service.into(),
                        server: server.clone(),
                        weight,
                        slot,
                    });
                }
            }
            None if caps.add_server && want.dynamic && (by_reload(server) || !server.has_ip()) => {
                plan.reload.push(ReloadReason::ByReload { service: service.into(), server: name.clone() })
            }
            None if caps.add_server && want.dynamic => {
                let arguments = crate::haproxy::render::add_arguments(defaults, want.spec, server);
                let health =
                    want.spec.server_options.iter().any(|o| o.split_whitespace().any(|w| w == "check"));
                plan.steps.push(Step::Add {
                    service: service.into(),
                    server: server.clone(),
                    arguments,
                    health,
                });
            }
            None if caps.add_server => plan
                .reload
                .push(ReloadReason::NoDynamicServers { service: service.into(), server: name.clone() }),
            None if caps.slots && !slots::fits(server) => {
                plan.reload.push(ReloadReason::ByReload { service: service.into(), server: name.clone() })
            }
            None if caps.slots => {
                // An empty slot has the weight of the service's server options; a vacated one its server's.
                let (slot, replaces, slot_weight) = match empty_slots.next() {
                    Some(slot) => (Some(slot), None, default_weight),
                    None => {
                        let vacated = vacated.get_or_insert_with(|| vacated_slots(have, want));
                        match vacated.pop() {
                            Some((slot, gone, was)) => {
                                (Some(slot), Some(gone), was.unwrap_or(default_weight))
                            }
                            None => (None, None, default_weight),
                        }
                    }
                };
                match slot {
                    Some(slot) => plan.steps.push(Step::Fill {
                        service: service.into(),
                        server: server.clone(),
                        slot,
                        weight: (weight != slot_weight).then_some(weight),
                        replaces,
                    }),
                    None => plan
                        .reload
                        .push(ReloadReason::NoSlotLeft { service: service.into(), server: name.clone() }),
                }
            }
            None => {
                plan.reload.push(ReloadReason::TooOldToAdd { service: service.into(), server: name.clone() })
            }
        }
    }
    if found == have.servers.len() {
        return;
    }
    // Some server HAProxy has is no longer wanted: it goes out first.
    let wanted: BTreeSet<String> = want.servers.iter().map(Server::name).collect();
    let mut out = Vec::new();
    for (name, server) in &have.servers {
        if wanted.contains(name) {
            continue;
        }
        if server.ready {
            out.push(Step::Disable { service: service.into(), server: name.clone(), slot: server.slot });
        } else if tidy && caps.add_server {
            out.push(Step::Delete { service: service.into(), server: name.clone() });
        }
    }
    plan.steps.splice(first_step..first_step, out);
}

/// The slots of servers that left the registry and already wait in maintenance (not those leaving in this
/// plan: their connections get a while to finish), with the server and its weight, the lowest slot last.
fn vacated_slots(have: &RunningService, want: &DesiredService) -> Vec<(u32, String, Option<u16>)> {
    let wanted: BTreeSet<String> = want.servers.iter().map(Server::name).collect();
    let mut vacated: Vec<(u32, String, Option<u16>)> = have
        .servers
        .iter()
        .filter(|(name, s)| !s.ready && !wanted.contains(*name))
        .filter_map(|(name, s)| Some((s.slot?, name.clone(), s.weight)))
        .collect();
    vacated.sort_by(|a, b| b.cmp(a));
    vacated
}

/// The weight HAProxy gives `server`: its own, else a `weight N` among the service's server options, else 1.
pub fn effective_weight(weight: Option<u16>, spec: &ServiceSpec) -> u16 {
    weight.unwrap_or_else(|| {
        let words: Vec<&str> = spec.server_options.iter().flat_map(|o| o.split_whitespace()).collect();
        let option = words.windows(2).rev().find(|w| w[0] == "weight").and_then(|w| w[1].parse().ok());
        option.unwrap_or(DEFAULT_WEIGHT)
    })
}

impl Step {
    pub fn service(&self) -> &str {
        match self {
            Step::Disable { service, .. }
            | Step::Enable { service, .. }
            | Step::Reweight { service, .. }
            | Step::Add { service, .. }
            | Step::Fill { service, .. }
            | Step::Delete { service, .. } => service,
            Step::Route { change, .. } => match change {
                RouteChange::Add { backend } | RouteChange::Remove { backend } => backend,
                RouteChange::Move { to, .. } => to,
            },
        }
    }

    /// The runtime commands that make this step, in order.
    pub fn commands(&self, caps: &Capabilities) -> Vec<Command> {
        let state = |backend: &str, server: String, ready: bool| {
            let backend = backend.to_string();
            if caps.set_server_state {
                let state = if ready { State::Ready } else { State::Maint };
                Command::SetState { backend, server, state }
            } else {
                Command::EnableServer { backend, server, enable: ready }
            }
        };
        let named = |server: String, slot: &Option<u32>| slot.map_or(server, slots::name);
        match self {
            Step::Disable { service, server, slot } => {
                vec![state(service, named(server.clone(), slot), false)]
            }
            Step::Enable { service, server, slot } => vec![state(service, named(server.name(), slot), true)],
            Step::Reweight { service, server, weight, slot } => {
                vec![Command::SetWeight {
                    backend: service.clone(),
                    server: named(server.name(), slot),
                    weight: *weight,
                }]
            }
            Step::Add { service, server, arguments, health } => {
                let mut commands = vec![Command::AddServer {
                    backend: service.clone(),
                    server: server.name(),
                    arguments: arguments.clone(),
                }];
                if *health {
                    commands.push(Command::EnableHealth { backend: service.clone(), server: server.name() });
                }
                commands.push(state(service, server.name(), true));
                commands
            }
            Step::Fill { service, server, slot, weight, .. } => {
                let (backend, name) = (service.clone(), slots::name(*slot));
                // The slot is in maintenance (empty, or its server left): nothing reaches it before it is ready.
                let mut commands = vec![Command::SetAddr {
                    backend: backend.clone(),
                    server: name.clone(),
                    address: server.address.clone(),
                    port: server.port,
                }];
                if let Some(weight) = *weight {
                    commands.push(Command::SetWeight { backend, server: name.clone(), weight });
                }
                commands.push(state(service, name, true));
                commands
            }
            Step::Delete { service, server } => {
                vec![Command::DelServer { backend: service.clone(), server: server.clone() }]
            }
            Step::Route { map, key, change, .. } => {
                let (map, key) = (map.clone(), key.to_string());
                vec![match change {
                    RouteChange::Add { backend } => Command::AddMap { map, key, backend: backend.clone() },
                    RouteChange::Move { to, .. } => Command::SetMap { map, key, backend: to.clone() },
                    RouteChange::Remove { .. } => Command::DelMap { map, key },
                }]
            }
        }
    }
}

impl Running {
    /// Records a step HAProxy carried out.
    pub fn apply(&mut self, step: &Step) {
        if let Step::Route { frontend, key, change, .. } = step {
            if let Some(routes) = self.routes.get_mut(frontend) {
                match change {
                    RouteChange::Add { backend } | RouteChange::Move { to: backend, .. } => {
                        routes.routes.insert(key.clone(), backend.clone());
                    }
                    RouteChange::Remove { .. } => {
                        routes.routes.remove(key);
                    }
                }
            }
            return;
        }
        let Some(service) = self.services.get_mut(step.service()) else { return };
        match step {
            Step::Disable { server, .. } => {
                if let Some(s) = service.servers.get_mut(server) {
                    s.ready = false;
                }
            }
            Step::Enable { server, slot, .. } | Step::Reweight { server, slot, .. } => {
                let ready = matches!(step, Step::Enable { .. })
                    || service.servers.get(&server.name()).is_some_and(|s| s.ready);
                let running = RunningServer { slot: *slot, ..RunningServer::of(server, ready) };
                service.servers.insert(server.name(), running);
            }
            Step::Add { server, .. } => {
                service.servers.insert(server.name(), RunningServer::of(server, true));
            }
            Step::Fill { server, slot, replaces, .. } => {
                service.empty_slots.remove(slot);
                if let Some(gone) = replaces {
                    service.servers.remove(gone);
                }
                let running = RunningServer { slot: Some(*slot), ..RunningServer::of(server, true) };
                service.servers.insert(server.name(), running);
            }
            Step::Delete { server, .. } => {
                service.servers.remove(server);
            }
            Step::Route { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests;
