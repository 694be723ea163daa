//! What the core shows of itself: it counts what it does (runtime commands, reloads, rejected configs, drift
//! corrections, how long changes take to reach HAProxy), follows the registry sessions' news, and now and then
//! asks the loop to publish a [`Status`] built from its state: every service with, per server, the registry's
//! view beside HAProxy's and why they differ. None of it decides anything.

use std::time::SystemTime;

use super::*;
use crate::event::SessionNews;
use crate::service::WatcherSpec;
use crate::status::{
    self, Blocked, CommandLabels, Count, Difference, HoldView, InHaproxy, Pending, Registered,
    RegisteredServer, RegistryView, Reload, ReloadLabels, ReloadResult, ServerView, Session, Status,
    WatcherState,
};

/// The least time between two publications while things change: at 1000 services × 50 servers a `Status`
/// takes a few milliseconds to build, which a storm of changes must not pay for each change.
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(500);
/// The longest between two publications when nothing changes: the status's `published` time then says that
/// the reconciler is alive, and a reconciler stuck somewhere shows as a status growing old (`check.rs`).
pub const HEARTBEAT: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(super) struct Observed {
    /// The registry sessions, by ensemble.
    sessions: BTreeMap<String, SessionSeen>,
    pub(super) counters: status::Counters,
    last_reload: Option<(Instant, Vec<String>, ReloadResult)>,
    /// The last config HAProxy rejected, and when.
    last_rejected: Option<(Instant, String)>,
    /// When the serving process began serving.
    serving_since: Option<Instant>,
    /// Since when registry changes have waited that no converge took up yet.
    changed_since: Option<Instant>,
    /// When a source or watcher last reported.
    last_report: Option<Instant>,
    /// Whether anything changed since the last publication, when the next may go, and when the last went.
    dirty: bool,
    publish_due: Option<Instant>,
    published: Option<Instant>,
    /// A moment on both clocks, to show the core's instants as Unix times.
    epoch: Option<(Instant, SystemTime)>,
    /// Each service as last published, and those changed since (all of them with `all_stale`).
    views: BTreeMap<String, Arc<status::Service>>,
    stale: BTreeSet<String>,
    all_stale: bool,
}

#[derive(Default)]
struct SessionSeen {
    connected: bool,
    outage_since: Option<Instant>,
    reconnects: u64,
    expiries: u64,
    last_read: Option<Instant>,
}

impl Observed {
    /// A registry session's news at `now`.
    pub(super) fn session(&mut self, ensemble: String, news: SessionNews, now: Instant) {
        if news == SessionNews::Closed {
            self.sessions.remove(&ensemble);
            return;
        }
        let seen = self.sessions.entry(ensemble).or_default();
        match news {
            SessionNews::Connected => {
                if seen.outage_since.take().is_some() {
                    seen.reconnects += 1;
                }
                seen.connected = true;
            }
            SessionNews::Lost => {
                seen.connected = false;
                seen.outage_since.get_or_insert(now);
            }
            SessionNews::Renewed => seen.expiries += 1,
            SessionNews::Read => seen.last_read = Some(now),
            SessionNews::Closed => {}
        }
    }

    /// What `input` may change of the services as published: one service (a server set, a backend's state),
    /// or all of them (the registry's services, proxymgr.yml, listeners bound, a stop); the outcomes that change
    /// what HAProxy has say so themselves (a runtime command its service; a new serving process, a crash and a
    /// rejected config all), and the rest (a start under way, its polls, pids, the state file, sessions) changes
    /// only what is built afresh each time.
    pub(super) fn stale_after(&mut self, input: &Input) {
        match input {
            Input::Servers { service, .. } => self.stale(service),
            Input::ServersState { backend, .. } => self.stale(backend),
            Input::Services { .. }
            | Input::ConfigRead(_)
            | Input::Bound(_)
            | Input::Terminate
            | Input::HandOver
            | Input::ThreadDied { .. } => self.all_stale = true,
            Input::Ran(_)
            | Input::Checked(_)
            | Input::MapEntries { .. }
            | Input::Serving(_)
            | Input::Exited { .. }
            | Input::Started { .. }
            | Input::StartFailed(_)
            | Input::StateSaved(_)
            | Input::Session { .. }
            | Input::Generations(_)
            | Input::HandedOver(_)
            | Input::Hangup
            | Input::Child => {}
        }
    }

    pub(super) fn stale(&mut self, service: &str) {
        if !self.all_stale {
            self.stale.insert(service.to_string());
        }
    }

    pub(super) fn all_stale(&mut self) {
        self.all_stale = true;
    }

    /// A source or watcher reported a set at `now`.
    pub(super) fn reported(&mut self, now: Instant) {
        self.last_report = Some(now);
        self.changed_since.get_or_insert(now);
    }

    /// A converge begins: the changes waiting until now are the ones it applies.
    pub(super) fn take_changed_since(&mut self) -> Option<Instant> {
        self.changed_since.take()
    }

    /// A step's commands went through, or HAProxy refused one, or the socket failed.
    pub(super) fn ran(&mut self, step: &Step, result: &Result<(), CommandFailure>) {
        let result = match result {
            Ok(()) => "ok",
            Err(CommandFailure { refusal: Some(_), .. }) => "refused",
            Err(_) => "failed",
        };
        let labels = CommandLabels { kind: step.kind().into(), result: result.into() };
        count(&mut self.counters.commands, labels);
    }

    /// A new process was started for `reasons` at `now`.
    pub(super) fn reloading(&mut self, reasons: &[ReloadReason], now: Instant) {
        let shown = reasons.iter().map(ToString::to_string).collect();
        self.last_reload = Some((now, shown, ReloadResult::Starting));
    }

    /// How the last reload ended: for `reasons`, with the changes it applied waiting since `since`.
    pub(super) fn reloaded(
        &mut self,
        reasons: &[ReloadReason],
        result: ReloadResult,
        since: Option<Instant>,
        now: Instant,
    ) {
        if let Some((_, _, last)) = &mut self.last_reload {
            *last = result;
        }
        let mut kinds: Vec<&str> = reasons.iter().map(ReloadReason::kind).collect();
        kinds.dedup();
        let reason = match kinds.as_slice() {
            [one] => one,
            [] => "none",
            _ => "several",
        };
        let result_label = match result {
            ReloadResult::Served => "served",
            ReloadResult::Rejected => "rejected",
            ReloadResult::Failed | ReloadResult::Starting => "failed",
        };
        count(
            &mut self.counters.reloads,
            ReloadLabels { reason: reason.into(), result: result_label.into() },
        );
        match result {
            ReloadResult::Served => {
                self.serving_since = Some(now);
                if let Some(since) = since {
                    self.counters.converge_reload.observe(now.saturating_duration_since(since).as_secs_f64());
                }
            }
            ReloadResult::Rejected => self.counters.rejected_configs += 1,
            ReloadResult::Failed | ReloadResult::Starting => {}
        }
    }

    pub(super) fn rejected(&mut self, error: String, now: Instant) {
        self.last_rejected = Some((now, error));
    }

    /// Changes waiting since `since` reached HAProxy by the runtime API at `now`.
    pub(super) fn applied(&mut self, since: Instant, now: Instant) {
        self.counters.converge_runtime.observe(now.saturating_duration_since(since).as_secs_f64());
    }

    pub(super) fn set_epoch(&mut self, at: Instant, wall: SystemTime) {
        self.epoch = Some((at, wall));
    }

    /// `at` as Unix seconds.
    fn unix(&self, at: Instant) -> f64 {
        let Some((epoch, wall)) = self.epoch else { return 0.0 };
        let wall = wall.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        if at >= epoch {
            wall + (at - epoch).as_secs_f64()
        } else {
            wall - (epoch - at).as_secs_f64()
        }
    }
}

fn count<L: PartialEq>(counts: &mut Vec<Count<L>>, labels: L) {
    match counts.iter_mut().find(|c| c.labels == labels) {
        Some(c) => c.value += 1,
        None => counts.push(Count { labels, value: 1 }),
    }
}

impl Core {
    /// From the loop: the wall clock's time at `at`, to show instants as Unix times.
    pub fn set_epoch(&mut self, at: Instant, wall: SystemTime) {
        self.observed.set_epoch(at, wall);
    }

    /// Something changed: a publication is due.
    pub(super) fn observe_change(&mut self) {
        self.observed.dirty = true;
    }

    /// When a publication is due: at once after a change, unless the last went less than
    /// [`PUBLISH_INTERVAL`] ago; a [`HEARTBEAT`] after the last while nothing changes; never with the status
    /// endpoint off.
    pub(super) fn publish_due(&self) -> Option<Instant> {
        let o = &self.observed;
        self.config.status.0?;
        match o.published {
            _ if o.dirty => Some(o.publish_due.unwrap_or(self.now)),
            Some(last) => Some(last + HEARTBEAT),
            None => Some(self.now),
        }
    }

    /// Publishes the status if one is due.
    pub(super) fn publish(&mut self, now: Instant) {
        if self.publish_due().map_or(true, |due| due > now) {
            return;
        }
        self.observed.dirty = false;
        self.observed.publish_due = Some(now + PUBLISH_INTERVAL);
        self.observed.published = Some(now);
        let started = (self.measure)();
        let o = &self.observed;
        let reuse = |name: &str| {
            let fresh = !o.all_stale && !o.stale.contains(name);
            fresh.then(|| o.views.get(name).cloned()).flatten()
        };
        let status = self.build_status(now, reuse);
        let built = ((self.measure)() - started).as_micros();
        let o = &mut self.observed;
        let rebuilt = if o.all_stale { status.services.len() } else { o.stale.len() };
        log::debug!("status: {rebuilt} of {} service(s) built anew in {built} µs", status.services.len());
        o.views = status.services.iter().map(|s| (s.name.clone(), s.clone())).collect();
        o.stale.clear();
        o.all_stale = false;
        self.actions.push_back(Action::Publish(Arc::new(status)));
    }

    /// Everything proxymgr shows of itself, at `now`, built afresh (the stories' view of it).
    #[cfg(test)]
    pub fn status(&self, now: Instant) -> Status {
        self.build_status(now, |_| None)
    }

    /// The status at `now`, with the services `reuse` gives as they are.
    fn build_status(&self, now: Instant, reuse: impl Fn(&str) -> Option<Arc<status::Service>>) -> Status {
        let o = &self.observed;
        let unix = |at: Instant| o.unix(at);
        let haproxy = self.live.current.filter(|_| self.running.is_some()).map(|pid| status::Serving {
            pid,
            version: self.binary_version.clone(),
            since: o.serving_since.map_or(0.0, unix),
        });
        let generations = self.live.current.iter().map(|&pid| (pid, true));
        let generations = generations
            .chain(self.live.old.iter().map(|&pid| (pid, false)))
            .map(|(pid, serving)| status::Generation {
                pid,
                serving,
                started: self.born.get(&pid).map(|&t| unix(t)),
            })
            .collect();
        let sessions = o.sessions.iter().map(|(ensemble, s)| Session {
            ensemble: ensemble.clone(),
            connected: s.connected,
            outage_since: s.outage_since.map(unix),
            reconnects: s.reconnects,
            expiries: s.expiries,
            last_read: s.last_read.map(unix),
        });
        let last_read = o.sessions.values().filter_map(|s| s.last_read).chain(o.last_report).max();
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            published: unix(now),
            started: unix(self.started),
            haproxy,
            generations,
            last_reload: o.last_reload.as_ref().map(|(at, reasons, result)| Reload {
                at: unix(*at),
                reasons: reasons.clone(),
                result: *result,
            }),
            rejected: o
                .last_rejected
                .as_ref()
                .filter(|_| self.rejected.is_some() || self.quarantine.any_spec_rejected())
                .map(|(at, error)| status::Rejected { at: unix(*at), error: error.clone() }),
            registry: sessions.collect(),
            source: self.config.service_config.to_string(),
            last_registry_read: last_read.map(unix),
            services: self
                .services
                .map
                .iter()
                .map(|(name, s)| reuse(name).unwrap_or_else(|| Arc::new(self.service_status(name, s))))
                .collect(),
            blocked: self
                .services
                .blocked
                .iter()
                .map(|(service, why)| Blocked { service: service.clone(), reason: why.to_string() })
                .collect(),
            counters: o.counters.clone(),
        }
    }

    /// One service as shown: each server whose two views differ, or that the registry no longer has, as a
    /// view; the others (most of them, most of the time) as a place in the registry's set, shared.
    fn service_status(&self, name: &str, s: &super::super::services::Service) -> status::Service {
        let unix = |at: Instant| self.observed.unix(at);
        let empty = Arc::default();
        let registry: &Arc<Vec<Server>> = s.hold.registry().unwrap_or(&empty);
        let kept: BTreeSet<String> = s.hold.kept().iter().map(Server::name).collect();
        let quarantined: BTreeMap<&str, &str> = self.quarantine.held_out(name).collect();
        let by_reload = self.quarantine.by_reload(name);
        let running = self.running.as_ref().and_then(|r| r.services.get(name));
        let until = s.hold.until();
        // What HAProxy has of a server, and why the two views differ.
        let judge = |server: &str, known: Option<&Server>| {
            let served = running.and_then(|r| r.servers.get(server));
            let difference = difference(Facts {
                registry: known,
                held: kept.contains(server).then_some(()).and(until).map(unix),
                quarantined: quarantined.get(server).copied(),
                by_reload: by_reload.contains(server),
                haproxy: served,
                spec: &s.spec,
            });
            let in_haproxy = served.map(|h| InHaproxy {
                slot: h.slot,
                ready: h.ready,
                weight: effective_weight(h.weight, &s.spec),
            });
            (in_haproxy, difference)
        };
        // Those the registry no longer has (held, leaving, or on their way out) are what is left of this once
        // the registry's own are taken out.
        let mut gone: BTreeSet<String> = s.reported.iter().map(Server::name).collect();
        gone.extend(running.into_iter().flat_map(|r| r.servers.keys().cloned()));
        let mut listed = Vec::new();
        let mut registered = Vec::with_capacity(registry.len());
        for (index, known) in registry.iter().enumerate() {
            let name = known.name();
            gone.remove(&name);
            let (haproxy, difference) = judge(&name, Some(known));
            // A difference with more to say than its kind (quarantined, held) needs a whole view.
            match difference.as_ref().map(Pending::of) {
                Some(None) => listed.push(ServerView {
                    name,
                    registry: Some(RegistryView::of(known)),
                    haproxy: haproxy.map(InHaproxy::view),
                    difference,
                }),
                pending => registered.push(RegisteredServer {
                    index: index as u32,
                    haproxy,
                    pending: pending.flatten(),
                }),
            }
        }
        for server in gone {
            let (haproxy, difference) = judge(&server, None);
            listed.push(ServerView {
                name: server,
                registry: None,
                haproxy: haproxy.map(InHaproxy::view),
                difference,
            });
        }
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        status::Service {
            name: name.to_string(),
            port: s.spec.port,
            watcher: describe(&s.spec.watcher),
            watcher_state: if s.awaiting_since.is_some() {
                WatcherState::Awaiting
            } else {
                WatcherState::Reporting
            },
            hold: until.map(|until| HoldView { until: unix(until), kept: kept.iter().cloned().collect() }),
            spec_rejected: self.quarantine.spec_rejected(name),
            routes: self.route_views(name, &s.spec),
            servers: listed,
            registered: Registered { registry: Some(registry.clone()), servers: registered },
        }
    }
}

/// What is known of one server, to tell why the registry's view and HAProxy's differ.
pub(super) struct Facts<'a> {
    /// The registry's registration, if it has one.
    pub(super) registry: Option<&'a Server>,
    /// Until when (Unix seconds) a removal hold keeps it, if one does.
    pub(super) held: Option<f64>,
    /// HAProxy's reason, if it is held out.
    pub(super) quarantined: Option<&'a str>,
    /// Whether it goes by reload.
    pub(super) by_reload: bool,
    /// What the serving HAProxy has.
    pub(super) haproxy: Option<&'a RunningServer>,
    pub(super) spec: &'a ServiceSpec,
}

/// Why the registry's view and HAProxy's differ for a server; None when they agree.
pub(super) fn difference(facts: Facts) -> Option<Difference> {
    if let Some(reason) = facts.quarantined {
        return Some(Difference::Quarantined { reason: reason.to_string() });
    }
    let pending = || if facts.by_reload { Difference::PendingReload } else { Difference::Pending };
    match (facts.registry, facts.haproxy) {
        (None, _) if facts.held.is_some() => Some(Difference::Held { until: facts.held.unwrap_or_default() }),
        (None, Some(h)) if !h.ready => Some(Difference::Leaving),
        (None, Some(_)) => Some(Difference::Pending),
        (None, None) => None,
        (Some(_), None) => Some(pending()),
        (Some(r), Some(h)) => {
            let agree = h.ready
                && effective_weight(h.weight, facts.spec) == effective_weight(r.weight, facts.spec)
                && h.options == r.options;
            (!agree).then(pending)
        }
    }
}

/// A watcher as the status shows it: its kind and what it follows.
fn describe(watcher: &WatcherSpec) -> String {
    match watcher {
        WatcherSpec::Zookeeper { server, path } => format!("zookeeper {server}{path}"),
        WatcherSpec::Campanjazk { server, path, port } => format!("campanjazk {server}{path} port {port}"),
        WatcherSpec::Dns { backends, .. } => {
            let names: Vec<String> = backends.iter().map(|b| format!("{}:{}", b.name, b.port)).collect();
            format!("dns {}", names.join(","))
        }
        WatcherSpec::File { file, .. } => format!("file {}", file.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn why_the_two_views_differ() {
        let spec = ServiceSpec {
            port: Some(80),
            listen_options: vec![],
            server_options: vec![],
            watcher: WatcherSpec::File { file: "/f".into(), interval: Duration::from_secs(5) },
            ..ServiceSpec::example()
        };
        let server = Server::new("10.0.0.1", 80).unwrap();
        let heavy = Server { weight: Some(5), ..server.clone() };
        let ready = RunningServer::of(&server, true);
        let maint = RunningServer::of(&server, false);
        let facts = |registry, haproxy| Facts {
            registry,
            held: None,
            quarantined: None,
            by_reload: false,
            haproxy,
            spec: &spec,
        };
        let table: Vec<(&str, Facts, Option<Difference>)> = vec![
            ("agree", facts(Some(&server), Some(&ready)), None),
            ("new, under way", facts(Some(&server), None), Some(Difference::Pending)),
            (
                "new, by reload",
                Facts { by_reload: true, ..facts(Some(&server), None) },
                Some(Difference::PendingReload),
            ),
            ("back, not enabled yet", facts(Some(&server), Some(&maint)), Some(Difference::Pending)),
            ("new weight, under way", facts(Some(&heavy), Some(&ready)), Some(Difference::Pending)),
            ("gone, in maintenance", facts(None, Some(&maint)), Some(Difference::Leaving)),
            ("gone, still ready", facts(None, Some(&ready)), Some(Difference::Pending)),
            (
                "gone, held",
                Facts { held: Some(9.0), ..facts(None, Some(&ready)) },
                Some(Difference::Held { until: 9.0 }),
            ),
            (
                "refused",
                Facts { quarantined: Some("unknown keyword"), ..facts(Some(&server), None) },
                Some(Difference::Quarantined { reason: "unknown keyword".into() }),
            ),
        ];
        for (case, facts, expected) in table {
            assert_eq!(difference(facts), expected, "{case}");
        }
    }
}
