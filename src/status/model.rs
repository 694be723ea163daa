//! What proxymgr shows of itself: the [`Status`] the reconciler publishes, served as `/status` (JSON), read
//! back by `proxymgr status`, and the source of `/metrics` and the page at `/`. Plain data, both ways
//! through serde; times are Unix seconds (`f64`) as the reconciler's clock put them when it published.
//!
//! Per server it holds both views: what the registry says ([`RegistryView`]) beside what the serving HAProxy
//! has ([`HaproxyView`]), and, where they differ, why ([`Difference`]).

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::service::Server;

/// The whole picture at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// proxymgr's own version.
    pub version: String,
    /// When the reconciler published this (Unix seconds).
    pub published: f64,
    /// When this proxymgr started (Unix seconds).
    pub started: f64,
    /// The HAProxy serving, if one does.
    pub haproxy: Option<Serving>,
    /// Every HAProxy process alive: the serving one and the older ones finishing their connections.
    pub generations: Vec<Generation>,
    pub last_reload: Option<Reload>,
    /// The last config HAProxy rejected, while it is still the one proxymgr would serve (None once a config
    /// served since).
    pub rejected: Option<Rejected>,
    /// The registry sessions (one per ZooKeeper ensemble followed; none for a directory source).
    pub registry: Vec<Session>,
    /// Where the services come from (`zookeeper zk1:2181 /services`, `directory /etc/proxymgr/services`).
    pub source: String,
    /// When a registry source or a watcher last reported a set (Unix seconds).
    pub last_registry_read: Option<f64>,
    /// By name. Each is shared with the statuses published before it until it changes, so that a publication
    /// at 1000 services × 50 servers builds only the services that changed.
    pub services: Vec<Arc<Service>>,
    /// Services of the registry that are not served, with why.
    pub blocked: Vec<Blocked>,
    /// Counts since this proxymgr started, for `/metrics`.
    pub counters: Counters,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Serving {
    pub pid: u32,
    /// HAProxy's version, as `haproxy -v` gives it (`2.6.12`).
    pub version: String,
    /// When it started serving (Unix seconds).
    pub since: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    pub pid: u32,
    /// Whether it is the one serving; the others finish their connections.
    pub serving: bool,
    /// When proxymgr started it (Unix seconds); None for one a predecessor started.
    pub started: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reload {
    /// When the new process was started (Unix seconds).
    pub at: f64,
    /// Why, in the log's words (`new service web`, `server 10.0.0.1:80 of web has a host name`).
    pub reasons: Vec<String>,
    pub result: ReloadResult,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadResult {
    /// Under way: started, not serving yet.
    #[default]
    Starting,
    /// The new process serves.
    Served,
    /// HAProxy rejected the config; the old process serves on.
    Rejected,
    /// The new process failed for another reason (it died, timed out); it is started again with backoff.
    Failed,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    pub at: f64,
    /// HAProxy's complaint (its `[ALERT]` lines).
    pub error: String,
}

/// One registry session: a ZooKeeper ensemble.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub ensemble: String,
    pub connected: bool,
    /// Since when it has been down (Unix seconds), during an outage.
    pub outage_since: Option<f64>,
    /// Outages that ended, since proxymgr started.
    pub reconnects: u64,
    /// Sessions that expired (or were given up) and were started anew.
    pub expiries: u64,
    /// When a read on it last succeeded (Unix seconds).
    pub last_read: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Service {
    pub name: String,
    /// Its own port; None for a service reached through shared frontends alone.
    pub port: Option<u16>,
    /// Its watcher and what it follows (`zookeeper zk1:2181 /services/web/servers`, `dns db.internal:5432`).
    pub watcher: String,
    pub watcher_state: WatcherState,
    /// The removal hold under way, if one is.
    pub hold: Option<HoldView>,
    /// Whether HAProxy rejected this service's current spec and the one it served last stands in for it.
    pub spec_rejected: bool,
    /// The routes of shared frontends its spec asks for, and what became of each.
    #[serde(default)]
    pub routes: Vec<RouteView>,
    /// The servers either view has: as the daemon publishes them, those quarantined or held, or that the
    /// registry no longer has, by name; the others are in `registered`. Read back from JSON, every server.
    pub servers: Vec<ServerView>,
    /// The other servers of the registry, kept small: at 1000 services × 50 servers a view of each would be
    /// tens of megabytes the daemon keeps. In the JSON they follow `servers` as views like theirs.
    #[serde(skip)]
    pub registered: Registered,
}

/// Servers of the registry whose difference, if any, says nothing more than its kind (in rotation as the
/// registry says, or on their way there): the registry's set (shared with the reconciler, not copied), and for
/// each such server its place in it and what HAProxy has of it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registered {
    pub registry: Option<Arc<Vec<Server>>>,
    pub servers: Vec<RegisteredServer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisteredServer {
    /// Its place in the registry's set.
    pub index: u32,
    pub haproxy: Option<InHaproxy>,
    /// `Pending` or `PendingReload`; None when the two views agree.
    pub pending: Option<Pending>,
}

/// What HAProxy has of a registered server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InHaproxy {
    /// The slot HAProxy knows it by (HAProxy 1.8 and 2.4); None when by its address.
    pub slot: Option<u32>,
    pub ready: bool,
    pub weight: u16,
}

/// The differences that say nothing more than their kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    Pending,
    PendingReload,
}

impl Pending {
    /// The kind of `difference`, if it says nothing more than its kind.
    pub fn of(difference: &Difference) -> Option<Pending> {
        match difference {
            Difference::Pending => Some(Pending::Pending),
            Difference::PendingReload => Some(Pending::PendingReload),
            Difference::Quarantined { .. } | Difference::Held { .. } | Difference::Leaving => None,
        }
    }

    pub fn difference(self) -> Difference {
        match self {
            Pending::Pending => Difference::Pending,
            Pending::PendingReload => Difference::PendingReload,
        }
    }
}

impl InHaproxy {
    pub fn state(self) -> ServerState {
        if self.ready {
            ServerState::Ready
        } else {
            ServerState::Maintenance
        }
    }

    pub fn view(self) -> HaproxyView {
        HaproxyView {
            name: self.slot.map(crate::slots::name),
            state: self.state(),
            weight: Some(self.weight),
        }
    }
}

impl RegistryView {
    pub fn of(server: &Server) -> RegistryView {
        RegistryView { weight: server.weight, origin: server.origin.clone() }
    }
}

impl Registered {
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Each as a view, made as it is asked for.
    pub fn views(&self) -> impl Iterator<Item = ServerView> + '_ {
        let registry = self.registry.as_deref().map_or(&[][..], Vec::as_slice);
        self.servers.iter().filter_map(move |registered| {
            let server = registry.get(registered.index as usize)?;
            Some(ServerView {
                name: server.name(),
                registry: Some(RegistryView::of(server)),
                haproxy: registered.haproxy.map(InHaproxy::view),
                difference: registered.pending.map(Pending::difference),
            })
        })
    }

    /// Each one's state in HAProxy (None when HAProxy has it not) and why the two views differ.
    pub fn parts(&self) -> impl Iterator<Item = (Option<ServerState>, Option<Difference>)> + '_ {
        self.servers.iter().map(|s| (s.haproxy.map(InHaproxy::state), s.pending.map(Pending::difference)))
    }

    /// How many HAProxy has in rotation.
    pub fn in_rotation(&self) -> usize {
        self.servers.iter().filter(|s| s.haproxy.is_some_and(|h| h.ready)).count()
    }
}

impl Serialize for Service {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        /// `servers`, then the views of `registered`, as one sequence.
        struct All<'a>(&'a Service);
        impl Serialize for All<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(
                    self.0.servers.iter().map(Cow::Borrowed).chain(self.0.registered.views().map(Cow::Owned)),
                )
            }
        }
        let mut out = serializer.serialize_struct("Service", 8)?;
        out.serialize_field("name", &self.name)?;
        out.serialize_field("port", &self.port)?;
        out.serialize_field("watcher", &self.watcher)?;
        out.serialize_field("watcher_state", &self.watcher_state)?;
        out.serialize_field("hold", &self.hold)?;
        out.serialize_field("spec_rejected", &self.spec_rejected)?;
        out.serialize_field("routes", &self.routes)?;
        out.serialize_field("servers", &All(self))?;
        out.end()
    }
}

/// A route of a shared frontend a service's spec asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteView {
    pub frontend: String,
    /// `host/path`, `*.domain/path` or `/path` (any host), as the frontend's map has it.
    pub key: String,
    pub state: RouteState,
}

/// What became of a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteState {
    /// HAProxy routes it to this service.
    Routed,
    /// Not yet: it comes with a runtime change or with the reload that adds the service's backend.
    Pending,
    /// Another service has this key on this frontend.
    Taken { by: String },
    /// proxymgr.yml has no frontend by that name.
    NoFrontend,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatcherState {
    /// Its watcher has not reported a server set yet.
    #[default]
    Awaiting,
    /// Its watcher reported.
    Reporting,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HoldView {
    /// Until when (Unix seconds).
    pub until: f64,
    /// The removed servers kept in rotation.
    pub kept: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerView {
    /// `address:port`.
    pub name: String,
    /// What the registry says; None (left out) when the registry no longer has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryView>,
    /// What the serving HAProxy has; None (left out) when it has not got it (yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub haproxy: Option<HaproxyView>,
    /// Why the two differ; None (left out) when they agree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difference: Option<Difference>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegistryView {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    /// Where the registry holds it (a ZooKeeper node's path), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HaproxyView {
    /// HAProxy's name for it where that is not its `address:port`: its slot, on HAProxy 1.8 and 2.4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub state: ServerState,
    pub weight: Option<u16>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    /// In rotation.
    #[default]
    Ready,
    /// In maintenance: out of rotation.
    Maintenance,
}

/// Why the registry's view and HAProxy's differ for a server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Difference {
    /// HAProxy refused it; held out until its registration or its service's server options change.
    Quarantined { reason: String },
    /// Gone from the registry, kept in rotation by a removal hold until `until` (Unix seconds).
    Held { until: f64 },
    /// Gone from the registry: out of rotation, finishing its connections until the next reload.
    Leaving,
    /// Waits for a reload (a new server a slot or `add server` cannot take, or a change of its options).
    PendingReload,
    /// Not applied yet: a change under way.
    Pending,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Blocked {
    pub service: String,
    pub reason: String,
}

/// Counts and latencies since proxymgr started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// Runtime commands sent, by kind (`disable`, `enable`, `weight`, `add`, `fill`, `delete`) and result.
    pub commands: Vec<Count<CommandLabels>>,
    /// Reloads, by reason kind and result.
    pub reloads: Vec<Count<ReloadLabels>>,
    /// Configs HAProxy rejected.
    pub rejected_configs: u64,
    /// Server states HAProxy had otherwise than proxymgr made them, corrected after a drift check.
    pub drift_corrections: u64,
    /// Seconds from a registry change reaching proxymgr to HAProxy applying it, by the runtime API.
    pub converge_runtime: Histogram,
    /// The same, for changes that took a reload (until the new process served).
    pub converge_reload: Histogram,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CommandLabels {
    pub kind: String,
    /// `ok`, `refused` (HAProxy said no) or `failed` (the socket failed).
    pub result: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReloadLabels {
    /// The reason's kind (`new_service`, `no_slot_left`, ...; `several` when a reload had more than one).
    pub reason: String,
    /// `served`, `rejected` or `failed`.
    pub result: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count<L> {
    pub labels: L,
    pub value: u64,
}

/// A histogram with fixed buckets, as Prometheus keeps one: `counts[i]` observations were at most
/// `bounds[i]` (not cumulative); `counts` has one more entry, for those above the last bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

/// Seconds: from a few milliseconds (a runtime change) to a minute (a reload held back by many generations).
pub const LATENCY_BOUNDS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::new(LATENCY_BOUNDS)
    }
}

impl Histogram {
    pub fn new(bounds: &[f64]) -> Histogram {
        Histogram { bounds: bounds.to_vec(), counts: vec![0; bounds.len() + 1], sum: 0.0, count: 0 }
    }

    pub fn observe(&mut self, value: f64) {
        let bucket = self.bounds.iter().position(|&bound| value <= bound).unwrap_or(self.bounds.len());
        self.counts[bucket] += 1;
        self.sum += value;
        self.count += 1;
    }
}

impl Service {
    /// Servers in rotation in HAProxy.
    pub fn in_rotation(&self) -> usize {
        let listed =
            self.servers.iter().filter(|s| s.haproxy.as_ref().is_some_and(|h| h.state == ServerState::Ready));
        listed.count() + self.registered.in_rotation()
    }

    /// Servers the registry lists.
    pub fn in_registry(&self) -> usize {
        self.servers.iter().filter(|s| s.registry.is_some()).count() + self.registered.len()
    }

    /// How many servers either view has.
    pub fn server_count(&self) -> usize {
        self.servers.len() + self.registered.len()
    }

    /// Every server either view has: those quarantined or held or gone from the registry first.
    pub fn all_servers(&self) -> impl Iterator<Item = Cow<'_, ServerView>> {
        self.servers.iter().map(Cow::Borrowed).chain(self.registered.views().map(Cow::Owned))
    }

    pub fn quarantined(&self) -> impl Iterator<Item = &ServerView> {
        self.servers.iter().filter(|s| matches!(s.difference, Some(Difference::Quarantined { .. })))
    }

    pub fn held(&self) -> impl Iterator<Item = &ServerView> {
        self.servers.iter().filter(|s| matches!(s.difference, Some(Difference::Held { .. })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_servers_are_kept_small_and_shown_whole() {
        let registry =
            Arc::new(vec![Server::new("10.0.0.1", 80).unwrap(), Server::new("10.0.0.2", 80).unwrap()]);
        let leaving = ServerView {
            name: "10.0.0.3:80".into(),
            haproxy: Some(HaproxyView { name: None, state: ServerState::Maintenance, weight: Some(1) }),
            difference: Some(Difference::Leaving),
            ..ServerView::default()
        };
        let service = Service {
            name: "web".into(),
            servers: vec![leaving.clone()],
            registered: Registered {
                registry: Some(registry),
                servers: vec![
                    RegisteredServer {
                        index: 1,
                        haproxy: Some(InHaproxy { slot: Some(3), ready: true, weight: 1 }),
                        pending: None,
                    },
                    RegisteredServer { index: 0, haproxy: None, pending: Some(Pending::PendingReload) },
                ],
            },
            ..Service::default()
        };
        assert_eq!((service.server_count(), service.in_rotation(), service.in_registry()), (3, 1, 2));
        let json = serde_json::to_value(&service).unwrap();
        assert_eq!(
            json["servers"][1],
            serde_json::json!({"name": "10.0.0.2:80", "registry": {}, "haproxy": {"name": "slot3", "state": "ready", "weight": 1}}),
        );
        assert_eq!(
            json["servers"][2],
            serde_json::json!({"name": "10.0.0.1:80", "registry": {}, "difference": {"kind": "pending_reload"}}),
        );
        let back: Service = serde_json::from_value(json).unwrap();
        assert_eq!(back.servers.len(), 3, "read back, every server is a view");
        assert_eq!(back.servers[0], leaving);
        assert_eq!((back.server_count(), back.in_rotation(), back.in_registry()), (3, 1, 2));
    }

    #[test]
    fn a_histogram_counts_each_value_in_the_first_bucket_that_holds_it() {
        let mut histogram = Histogram::new(&[0.01, 0.1, 1.0]);
        for value in [0.002, 0.01, 0.05, 0.5, 3.0] {
            histogram.observe(value);
        }
        assert_eq!(histogram.counts, [2, 1, 1, 1]);
        assert_eq!(histogram.count, 5);
        assert!((histogram.sum - 3.562).abs() < 1e-9);
    }
}
