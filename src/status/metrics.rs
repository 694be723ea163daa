//! `/metrics`: a [`Status`] in Prometheus' text format (version 0.0.4). Pure but for [`resident_bytes`], which
//! the server passes in as `memory` and which is the only function here that reads anything.
//!
//! [`families`] says what each metric is, from the status alone; the `prometheus-client` crate (the Prometheus
//! project's Rust client) writes them: the `# HELP`/`# TYPE` lines, the `_total` suffix of counters, the
//! cumulative buckets of histograms and the escaping of label values (`"`, `\`, a newline), which come from
//! outside: service names from the registry (`service::check_name` limits them today; this does not rely on
//! it), ensembles from proxymgr.yml. The metrics are encoded from values the status already holds, through
//! a [`Collector`] built for each scrape, rather than kept in the crate's atomic metrics: the reconciler's
//! counts live in the `Status` it publishes, and one source of truth is enough.
//!
//! Names follow Prometheus' conventions: the `proxymgr_` prefix, base units (`_seconds`, `_bytes`),
//! `_timestamp_seconds` for Unix times, `_total` for counters, and a timestamp left out rather than written
//! as 0 while there is none.

use std::collections::HashMap;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{Difference, Histogram, ServerState, ServerView, Status};

/// The states `proxymgr_servers` counts a service's servers by. Each server is in exactly one, so they add
/// up to the servers either view has. `InRotation` is what HAProxy has in rotation, whatever the registry
/// says, so that `proxymgr_servers{state="in_rotation"} == 0` means no server takes traffic; servers a removal
/// hold keeps in rotation are among them, and counted again by `proxymgr_servers_held`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerClass {
    /// In rotation in the serving HAProxy.
    InRotation,
    /// In HAProxy, in maintenance: out of the registry and finishing its connections, or out by HAProxy's
    /// own state.
    Maintenance,
    /// Refused by HAProxy and held out until its registration changes.
    Quarantined,
    /// On its way in: not in HAProxy yet, or in maintenance there while a change or a reload brings it in.
    Pending,
}

impl ServerClass {
    const ALL: [ServerClass; 4] =
        [ServerClass::InRotation, ServerClass::Maintenance, ServerClass::Quarantined, ServerClass::Pending];

    pub fn of(server: &ServerView) -> ServerClass {
        ServerClass::of_parts(server.haproxy.as_ref().map(|h| h.state), server.difference.as_ref())
    }

    /// A server's class from HAProxy's state for it and why the views differ.
    fn of_parts(state: Option<ServerState>, difference: Option<&Difference>) -> ServerClass {
        match (state, difference) {
            (Some(ServerState::Ready), _) => ServerClass::InRotation,
            (_, Some(Difference::Quarantined { .. })) => ServerClass::Quarantined,
            (_, Some(Difference::Pending | Difference::PendingReload)) => ServerClass::Pending,
            (Some(ServerState::Maintenance), _) => ServerClass::Maintenance,
            // The model's word for a server HAProxy lacks: it has not got it *yet*.
            (None, _) => ServerClass::Pending,
        }
    }

    fn label(self) -> &'static str {
        match self {
            ServerClass::InRotation => "in_rotation",
            ServerClass::Maintenance => "maintenance",
            ServerClass::Quarantined => "quarantined",
            ServerClass::Pending => "pending",
        }
    }
}

/// `status` as the text of `/metrics`. `now_unix` is the time of the scrape (for outages under way);
/// `memory(pid)` gives a HAProxy process's resident bytes, None when it cannot be read.
pub fn encode(status: &Status, now_unix: f64, memory: &dyn Fn(u32) -> Option<u64>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Families(families(status, now_unix, memory))));
    let mut text = String::new();
    // The encoder fails only when its writer does, and a String never does.
    prometheus_text::encode(&mut text, &registry).expect("encoding into a String does not fail");
    text
}

/// A process's resident memory in bytes (`VmRSS` in /proc/PID/status); None when it cannot be read, as
/// when the process is gone.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    vm_rss_bytes(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// `VmRSS:     1234 kB` (the kernel always writes kB) -> 1234 × 1024.
fn vm_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let mut words = line.split_whitespace();
    let kilobytes: u64 = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(kilobytes * 1024)
}

/// Label names and values of one sample.
type Labels = Vec<(&'static str, String)>;

/// One metric: its name as exposed (less the `_total` the crate adds to counters), what it means, its
/// samples.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    samples: Samples,
}

/// A family's samples, all of one type.
#[derive(Debug)]
enum Samples {
    /// Gauges with whole values: counts of things now, 0 or 1 for yes or no.
    Count(Vec<(Labels, u64)>),
    /// Gauges in seconds: durations and Unix times.
    Seconds(Vec<(Labels, f64)>),
    Counter(Vec<(Labels, u64)>),
    Histogram(Vec<(Labels, Histogram)>),
}

impl Samples {
    fn is_empty(&self) -> bool {
        match self {
            Samples::Count(s) | Samples::Counter(s) => s.is_empty(),
            Samples::Seconds(s) => s.is_empty(),
            Samples::Histogram(s) => s.is_empty(),
        }
    }

    fn metric_type(&self) -> MetricType {
        match self {
            Samples::Count(_) | Samples::Seconds(_) => MetricType::Gauge,
            Samples::Counter(_) => MetricType::Counter,
            Samples::Histogram(_) => MetricType::Histogram,
        }
    }
}

/// A route's state's place among `proxymgr_routes`' labels.
fn route_index(state: &crate::status::RouteState) -> usize {
    use crate::status::RouteState;
    match state {
        RouteState::Routed => 0,
        RouteState::Pending => 1,
        RouteState::Taken { .. } => 2,
        RouteState::NoFrontend => 3,
    }
}

fn family(name: &'static str, help: &'static str, samples: Samples) -> Family {
    Family { name, help, samples }
}

fn one<V>(value: V) -> Vec<(Labels, V)> {
    vec![(Vec::new(), value)]
}

fn flag(yes: bool) -> u64 {
    u64::from(yes)
}

/// Every metric of `status`, in the order `/metrics` shows them.
fn families(status: &Status, now_unix: f64, memory: &dyn Fn(u32) -> Option<u64>) -> Vec<Family> {
    let haproxy_version = status.haproxy.as_ref().map(|h| h.version.clone()).unwrap_or_default();
    let ensemble = |name: &str| vec![("ensemble", name.to_string())];
    let sessions = &status.registry;
    let per_service = |f: &dyn Fn(&super::Service) -> Vec<(Labels, u64)>| -> Vec<(Labels, u64)> {
        status.services.iter().flat_map(|s| f(s)).collect()
    };
    let counters = &status.counters;
    vec![
        family(
            "proxymgr_build_info",
            "proxymgr's version and the serving HAProxy's (empty while none serves); always 1.",
            Samples::Count(vec![(
                vec![("version", status.version.clone()), ("haproxy_version", haproxy_version)],
                1,
            )]),
        ),
        family(
            "proxymgr_start_time_seconds",
            "When this proxymgr started (Unix seconds).",
            Samples::Seconds(one(status.started)),
        ),
        family(
            "proxymgr_status_published_timestamp_seconds",
            "When the reconciler published the status these metrics come from (Unix seconds); it stops \
             moving if the reconciler stalls.",
            Samples::Seconds(one(status.published)),
        ),
        family(
            "proxymgr_registry_connected",
            "Whether the ZooKeeper session with this ensemble is connected (1) or not (0).",
            Samples::Count(sessions.iter().map(|s| (ensemble(&s.ensemble), flag(s.connected))).collect()),
        ),
        family(
            "proxymgr_registry_outage_seconds",
            "How long the session with this ensemble has been down; 0 while connected.",
            Samples::Seconds(
                sessions
                    .iter()
                    .map(|s| {
                        let down_since = s.outage_since.filter(|_| !s.connected);
                        (ensemble(&s.ensemble), down_since.map_or(0.0, |since| (now_unix - since).max(0.0)))
                    })
                    .collect(),
            ),
        ),
        family(
            "proxymgr_registry_reconnects",
            "Outages of the session with this ensemble that ended.",
            Samples::Counter(sessions.iter().map(|s| (ensemble(&s.ensemble), s.reconnects)).collect()),
        ),
        family(
            "proxymgr_registry_session_expiries",
            "Sessions with this ensemble that expired (or were given up) and were started anew.",
            Samples::Counter(sessions.iter().map(|s| (ensemble(&s.ensemble), s.expiries)).collect()),
        ),
        family(
            "proxymgr_registry_session_last_read_timestamp_seconds",
            "When a read on the session with this ensemble last succeeded (Unix seconds).",
            Samples::Seconds(
                sessions.iter().filter_map(|s| Some((ensemble(&s.ensemble), s.last_read?))).collect(),
            ),
        ),
        family(
            "proxymgr_registry_last_read_timestamp_seconds",
            "When the registry source or a watcher last reported a set (Unix seconds).",
            Samples::Seconds(status.last_registry_read.map(one).unwrap_or_default()),
        ),
        family(
            "proxymgr_services",
            "Services served.",
            Samples::Count(one(status.services.len() as u64)),
        ),
        family(
            "proxymgr_services_blocked",
            "Services of the registry that are not served (see /status for why).",
            Samples::Count(one(status.blocked.len() as u64)),
        ),
        family(
            "proxymgr_servers",
            "A service's servers by state, each in one: in_rotation (in rotation in HAProxy, held ones \
             too), maintenance, quarantined (refused by HAProxy), pending (on its way in).",
            Samples::Count(per_service(&|service| {
                let mut counts = [0u64; ServerClass::ALL.len()];
                for server in &service.servers {
                    counts[ServerClass::of(server) as usize] += 1;
                }
                // The registered servers' parts, without making a view of each (50 000 of them at 1000 × 50).
                for (state, difference) in service.registered.parts() {
                    counts[ServerClass::of_parts(state, difference.as_ref()) as usize] += 1;
                }
                ServerClass::ALL
                    .iter()
                    .map(|&class| {
                        let count = counts[class as usize];
                        let labels = vec![("service", service.name.clone()), ("state", class.label().into())];
                        (labels, count)
                    })
                    .collect()
            })),
        ),
        family(
            "proxymgr_servers_held",
            "A service's servers gone from the registry that a removal hold keeps in rotation (also counted \
             as in_rotation).",
            Samples::Count(per_service(&|service| {
                vec![(vec![("service", service.name.clone())], service.held().count() as u64)]
            })),
        ),
        family(
            "proxymgr_routes",
            "The routes of shared frontends a service's spec asks for, by state: routed, pending (coming with \
             a runtime change or a reload), taken (another service has the key), no_frontend (proxymgr.yml \
             has no such frontend). Given for services that join frontends.",
            Samples::Count(per_service(&|service| {
                if service.routes.is_empty() {
                    return Vec::new();
                }
                let mut counts = [0u64; 4];
                for route in &service.routes {
                    counts[route_index(&route.state)] += 1;
                }
                ["routed", "pending", "taken", "no_frontend"]
                    .iter()
                    .zip(counts)
                    .map(|(state, count)| (vec![("service", service.name.clone()), ("state", (*state).into())], count))
                    .collect()
            })),
        ),
        family(
            "proxymgr_converge_seconds",
            "From a registry change reaching proxymgr to HAProxy applying it, by the runtime API or by a \
             reload (until the new process served).",
            Samples::Histogram(vec![
                (vec![("path", "runtime".into())], counters.converge_runtime.clone()),
                (vec![("path", "reload".into())], counters.converge_reload.clone()),
            ]),
        ),
        family(
            "proxymgr_runtime_commands",
            "Runtime API commands sent, by kind and result (ok, refused by HAProxy, failed on the socket).",
            Samples::Counter(
                counters
                    .commands
                    .iter()
                    .map(|c| {
                        let labels = vec![("kind", c.labels.kind.clone()), ("result", c.labels.result.clone())];
                        (labels, c.value)
                    })
                    .collect(),
            ),
        ),
        family(
            "proxymgr_reloads",
            "Reloads, by reason (several when there was more than one) and result.",
            Samples::Counter(
                counters
                    .reloads
                    .iter()
                    .map(|c| {
                        let labels =
                            vec![("reason", c.labels.reason.clone()), ("result", c.labels.result.clone())];
                        (labels, c.value)
                    })
                    .collect(),
            ),
        ),
        family(
            "proxymgr_rejected_configs",
            "Configs HAProxy rejected.",
            Samples::Counter(one(counters.rejected_configs)),
        ),
        family(
            "proxymgr_drift_corrections",
            "Server states HAProxy had otherwise than proxymgr made them, corrected after a drift check.",
            Samples::Counter(one(counters.drift_corrections)),
        ),
        family(
            "proxymgr_config_rejected",
            "Whether the config proxymgr would serve is one HAProxy rejected (1), the previous one serving on.",
            Samples::Count(one(flag(status.rejected.is_some()))),
        ),
        family(
            "proxymgr_last_reload_timestamp_seconds",
            "When the last reload started its new HAProxy (Unix seconds).",
            Samples::Seconds(status.last_reload.as_ref().map(|r| one(r.at)).unwrap_or_default()),
        ),
        family(
            "proxymgr_haproxy_generations",
            "HAProxy processes alive: the serving one and the older ones finishing their connections.",
            Samples::Count(one(status.generations.len() as u64)),
        ),
        family(
            "proxymgr_haproxy_resident_memory_bytes",
            "Resident memory of each HAProxy process alive.",
            Samples::Count(
                status
                    .generations
                    .iter()
                    .filter_map(|g| {
                        let labels = vec![("pid", g.pid.to_string()), ("serving", g.serving.to_string())];
                        Some((labels, memory(g.pid)?))
                    })
                    .collect(),
            ),
        ),
    ]
}

/// The families of one scrape, handed to the crate's encoder as a collector.
#[derive(Debug)]
struct Families(Vec<Family>);

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Exemplars are not used: this names their type for the crate's generic methods.
        type NoExemplars<V> = Option<&'static Exemplar<NoLabelSet, V>>;
        for family in self.0.iter().filter(|f| !f.samples.is_empty()) {
            let mut metric =
                encoder.encode_descriptor(family.name, family.help, None, family.samples.metric_type())?;
            match &family.samples {
                Samples::Count(samples) => {
                    for (labels, value) in samples {
                        metric.encode_family(labels)?.encode_gauge(value)?;
                    }
                }
                Samples::Seconds(samples) => {
                    for (labels, value) in samples {
                        metric.encode_family(labels)?.encode_gauge(value)?;
                    }
                }
                Samples::Counter(samples) => {
                    for (labels, value) in samples {
                        metric.encode_family(labels)?.encode_counter(value, NoExemplars::<u64>::None)?;
                    }
                }
                Samples::Histogram(samples) => {
                    for (labels, histogram) in samples {
                        // The crate takes each bucket's own count and writes them cumulative itself.
                        let bounds = histogram.bounds.iter().copied().chain([f64::INFINITY]);
                        let buckets: Vec<(f64, u64)> = bounds.zip(histogram.counts.iter().copied()).collect();
                        metric.encode_family(labels)?.encode_histogram(
                            histogram.sum,
                            histogram.count,
                            &buckets,
                            None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
                        )?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
