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
mod tests {
    use super::*;
    use crate::status::{
        Blocked, CommandLabels, Count, Counters, Generation, HaproxyView, RegistryView, Rejected, Reload,
        ReloadLabels, ReloadResult, Service, Serving, Session,
    };
    use prometheus_parse::{LineInfo, Scrape, Value};
    use std::sync::Arc;

    const NOW: f64 = 2000.0;

    fn server(name: &str, state: Option<ServerState>, difference: Option<Difference>) -> ServerView {
        ServerView {
            name: name.into(),
            registry: Some(RegistryView::default()),
            haproxy: state.map(|state| HaproxyView { name: None, state, weight: None }),
            difference,
        }
    }

    fn service(name: &str, servers: Vec<ServerView>) -> Service {
        Service { name: name.into(), port: 8080, servers, ..Service::default() }
    }

    fn status() -> Status {
        use Difference::{Held, Leaving, Pending, PendingReload, Quarantined};
        use ServerState::{Maintenance, Ready};
        let mut converge_runtime = Histogram::default();
        for seconds in [0.002, 0.02, 0.02, 0.2] {
            converge_runtime.observe(seconds);
        }
        let mut converge_reload = Histogram::default();
        converge_reload.observe(3.0);
        Status {
            version: "0.1.0".into(),
            published: 1990.0,
            started: 1000.0,
            haproxy: Some(Serving { pid: 42, version: "2.6.12".into(), since: 1500.0 }),
            generations: vec![
                Generation { pid: 41, serving: false, started: Some(1200.0) },
                Generation { pid: 42, serving: true, started: Some(1500.0) },
            ],
            last_reload: Some(Reload { at: 1500.0, reasons: vec![], result: ReloadResult::Served }),
            rejected: Some(Rejected { at: 1800.0, error: "[ALERT] ...".into() }),
            registry: vec![
                Session {
                    ensemble: "zk1:2181".into(),
                    connected: true,
                    outage_since: None,
                    reconnects: 2,
                    expiries: 1,
                    last_read: Some(1995.0),
                },
                Session {
                    ensemble: "zk9:2181".into(),
                    connected: false,
                    outage_since: Some(1940.0),
                    reconnects: 0,
                    expiries: 0,
                    last_read: None,
                },
            ],
            source: "zookeeper zk1:2181 /services".into(),
            last_registry_read: Some(1995.5),
            services: [
                service(
                    "web",
                    vec![
                        server("10.0.0.1:80", Some(Ready), None),
                        server("10.0.0.2:80", Some(Ready), Some(Held { until: 2050.0 })),
                        server("10.0.0.3:80", Some(Maintenance), Some(Leaving)),
                        server("10.0.0.4:80", None, Some(Quarantined { reason: "bad option".into() })),
                        server("10.0.0.5:80", None, Some(PendingReload)),
                        server("10.0.0.6:80", Some(Maintenance), Some(Pending)),
                    ],
                ),
                service("api", vec![server("10.0.1.1:80", Some(Maintenance), None)]),
                service("empty", vec![]),
            ]
            .map(Arc::new)
            .to_vec(),
            blocked: vec![Blocked { service: "db".into(), reason: "no port".into() }],
            counters: Counters {
                commands: vec![
                    Count { labels: CommandLabels { kind: "disable".into(), result: "ok".into() }, value: 3 },
                    Count {
                        labels: CommandLabels { kind: "add".into(), result: "refused".into() },
                        value: 1,
                    },
                ],
                reloads: vec![Count {
                    labels: ReloadLabels { reason: "new_service".into(), result: "served".into() },
                    value: 2,
                }],
                rejected_configs: 1,
                drift_corrections: 4,
                converge_runtime,
                converge_reload,
            },
        }
    }

    fn memory(pid: u32) -> Option<u64> {
        (pid == 42).then_some(50_000_000)
    }

    fn scrape(text: &str) -> Scrape {
        Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
    }

    /// The one sample named `name` whose labels include `labels`.
    fn sample<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> &'a Value {
        let found: Vec<_> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            .collect();
        assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
        &found[0].value
    }

    fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
        match sample(scrape, name, labels) {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{name}: {other:?}"),
        }
    }

    fn absent(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> bool {
        !scrape
            .samples
            .iter()
            .any(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
    }

    /// Labels a sample must have.
    type Want = &'static [(&'static str, &'static str)];

    #[test]
    fn every_metric_has_the_value_of_the_status() {
        let text = encode(&status(), NOW, &memory);
        let s = scrape(&text);
        let cases: &[(&str, Want, f64)] = &[
            ("proxymgr_build_info", &[("version", "0.1.0"), ("haproxy_version", "2.6.12")], 1.0),
            ("proxymgr_start_time_seconds", &[], 1000.0),
            ("proxymgr_status_published_timestamp_seconds", &[], 1990.0),
            ("proxymgr_registry_connected", &[("ensemble", "zk1:2181")], 1.0),
            ("proxymgr_registry_connected", &[("ensemble", "zk9:2181")], 0.0),
            ("proxymgr_registry_outage_seconds", &[("ensemble", "zk1:2181")], 0.0),
            ("proxymgr_registry_outage_seconds", &[("ensemble", "zk9:2181")], 60.0),
            ("proxymgr_registry_reconnects_total", &[("ensemble", "zk1:2181")], 2.0),
            ("proxymgr_registry_session_expiries_total", &[("ensemble", "zk1:2181")], 1.0),
            ("proxymgr_registry_session_last_read_timestamp_seconds", &[("ensemble", "zk1:2181")], 1995.0),
            ("proxymgr_registry_last_read_timestamp_seconds", &[], 1995.5),
            ("proxymgr_services", &[], 3.0),
            ("proxymgr_services_blocked", &[], 1.0),
            ("proxymgr_servers", &[("service", "web"), ("state", "in_rotation")], 2.0),
            ("proxymgr_servers", &[("service", "web"), ("state", "maintenance")], 1.0),
            ("proxymgr_servers", &[("service", "web"), ("state", "quarantined")], 1.0),
            ("proxymgr_servers", &[("service", "web"), ("state", "pending")], 2.0),
            ("proxymgr_servers", &[("service", "api"), ("state", "in_rotation")], 0.0),
            ("proxymgr_servers", &[("service", "api"), ("state", "maintenance")], 1.0),
            ("proxymgr_servers", &[("service", "empty"), ("state", "in_rotation")], 0.0),
            ("proxymgr_servers_held", &[("service", "web")], 1.0),
            ("proxymgr_servers_held", &[("service", "api")], 0.0),
            ("proxymgr_runtime_commands_total", &[("kind", "disable"), ("result", "ok")], 3.0),
            ("proxymgr_runtime_commands_total", &[("kind", "add"), ("result", "refused")], 1.0),
            ("proxymgr_reloads_total", &[("reason", "new_service"), ("result", "served")], 2.0),
            ("proxymgr_rejected_configs_total", &[], 1.0),
            ("proxymgr_drift_corrections_total", &[], 4.0),
            ("proxymgr_config_rejected", &[], 1.0),
            ("proxymgr_last_reload_timestamp_seconds", &[], 1500.0),
            ("proxymgr_haproxy_generations", &[], 2.0),
            ("proxymgr_haproxy_resident_memory_bytes", &[("pid", "42"), ("serving", "true")], 5e7),
            ("proxymgr_converge_seconds_count", &[("path", "runtime")], 4.0),
            ("proxymgr_converge_seconds_count", &[("path", "reload")], 1.0),
        ];
        for &(name, labels, want) in cases {
            let got = value(&s, name, labels);
            assert!((got - want).abs() < 1e-9, "{name} {labels:?} is {got}, not {want}\n{text}");
        }
        assert!((value(&s, "proxymgr_converge_seconds_sum", &[("path", "runtime")]) - 0.242).abs() < 1e-9);
        // What is not known is left out rather than written as 0.
        assert!(absent(
            &s,
            "proxymgr_registry_session_last_read_timestamp_seconds",
            &[("ensemble", "zk9:2181")]
        ));
        assert!(absent(&s, "proxymgr_haproxy_resident_memory_bytes", &[("pid", "41")]));
    }

    #[test]
    fn a_histogram_has_cumulative_buckets() {
        let s = scrape(&encode(&status(), NOW, &memory));
        let Value::Histogram(buckets) = sample(&s, "proxymgr_converge_seconds", &[("path", "runtime")])
        else {
            panic!("not a histogram");
        };
        let count = |bound: f64| buckets.iter().find(|b| b.less_than == bound).map(|b| b.count);
        assert_eq!(buckets.len(), crate::status::LATENCY_BOUNDS.len() + 1);
        assert_eq!(count(0.001), Some(0.0));
        assert_eq!(count(0.0025), Some(1.0));
        assert_eq!(count(0.025), Some(3.0));
        assert_eq!(count(0.25), Some(4.0));
        assert_eq!(count(60.0), Some(4.0));
        assert_eq!(count(f64::INFINITY), Some(4.0));
        let Value::Histogram(reload) = sample(&s, "proxymgr_converge_seconds", &[("path", "reload")]) else {
            panic!("not a histogram");
        };
        let reload = |bound: f64| reload.iter().find(|b| b.less_than == bound).map(|b| b.count);
        assert_eq!((reload(2.5), reload(5.0)), (Some(0.0), Some(1.0)));
    }

    #[test]
    fn types_and_help_are_declared() {
        let text = encode(&status(), NOW, &memory);
        for line in [
            "# TYPE proxymgr_servers gauge",
            "# TYPE proxymgr_reloads_total counter",
            "# TYPE proxymgr_converge_seconds histogram",
            "# HELP proxymgr_registry_connected Whether the ZooKeeper session with this ensemble is connected \
             (1) or not (0).",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from\n{text}");
        }
        // An ensemble of several hosts keeps its commas (prometheus-parse would split the label on them).
        let several = Status {
            registry: vec![Session { ensemble: "zk1:2181,zk2:2181/chroot".into(), ..Session::default() }],
            ..status()
        };
        let text = encode(&several, NOW, &memory);
        assert!(
            text.contains("proxymgr_registry_connected{ensemble=\"zk1:2181,zk2:2181/chroot\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn an_empty_status_still_says_what_it_can() {
        let s = scrape(&encode(&Status::default(), NOW, &|_| None));
        assert_eq!(value(&s, "proxymgr_build_info", &[("haproxy_version", "")]), 1.0);
        assert_eq!(value(&s, "proxymgr_services", &[]), 0.0);
        assert_eq!(value(&s, "proxymgr_config_rejected", &[]), 0.0);
        assert_eq!(value(&s, "proxymgr_converge_seconds_count", &[("path", "runtime")]), 0.0);
        for name in [
            "proxymgr_registry_connected",
            "proxymgr_registry_last_read_timestamp_seconds",
            "proxymgr_last_reload_timestamp_seconds",
            "proxymgr_runtime_commands_total",
            "proxymgr_servers",
        ] {
            assert!(absent(&s, name, &[]), "{name}");
        }
    }

    /// Service names come from the registry: a quote, a backslash or a newline in one must neither end its
    /// label nor start a line.
    #[test]
    fn label_values_are_escaped() {
        let name = "we\"b\\x\ny";
        let mut hostile = status();
        hostile.services =
            vec![Arc::new(service(name, vec![server("10.0.0.1:80", Some(ServerState::Ready), None)]))];
        let text = encode(&hostile, NOW, &memory);
        for line in text.lines() {
            let parsed = LineInfo::parse(line);
            let comment = line.starts_with("# HELP ") || line.starts_with("# TYPE ");
            assert!(comment || matches!(parsed, LineInfo::Sample { .. }), "{line:?} is no sample:\n{text}");
        }
        let escaped = r#"we\"b\\x\ny"#;
        assert!(
            text.contains(&format!("proxymgr_servers{{service=\"{escaped}\",state=\"in_rotation\"}} 1\n"))
        );
        // prometheus-parse leaves escapes as they are; undone, they give the name back.
        let s = scrape(&text);
        assert_eq!(value(&s, "proxymgr_servers", &[("service", escaped), ("state", "in_rotation")]), 1.0);
        assert_eq!(unescape(escaped), name);
    }

    /// The text format's three escapes, undone.
    fn unescape(value: &str) -> String {
        let mut text = String::new();
        let mut chars = value.chars();
        while let Some(c) = chars.next() {
            text.push(match (c, c == '\\') {
                (_, true) => match chars.next() {
                    Some('n') => '\n',
                    Some(other) => other,
                    None => '\\',
                },
                (c, false) => c,
            });
        }
        text
    }

    #[test]
    fn servers_fall_in_one_class_each() {
        use Difference as D;
        use ServerClass as C;
        use ServerState as S;
        let quarantined = || Some(D::Quarantined { reason: String::new() });
        let cases = [
            (Some(S::Ready), None, C::InRotation),
            (Some(S::Ready), Some(D::Held { until: 1.0 }), C::InRotation),
            // A change under way on a server in rotation leaves it in rotation until it is applied.
            (Some(S::Ready), Some(D::Pending), C::InRotation),
            (Some(S::Ready), Some(D::PendingReload), C::InRotation),
            (Some(S::Maintenance), None, C::Maintenance),
            (Some(S::Maintenance), Some(D::Leaving), C::Maintenance),
            (Some(S::Maintenance), Some(D::Pending), C::Pending),
            (Some(S::Maintenance), quarantined(), C::Quarantined),
            (None, quarantined(), C::Quarantined),
            (None, Some(D::PendingReload), C::Pending),
            (None, None, C::Pending),
        ];
        for (state, difference, want) in cases {
            let view = server("a:1", state, difference.clone());
            assert_eq!(ServerClass::of(&view), want, "{state:?} {difference:?}");
        }
    }

    #[test]
    fn resident_memory_from_proc_status() {
        assert_eq!(
            vm_rss_bytes("Name:\thaproxy\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\n"),
            Some(1234 * 1024)
        );
        assert_eq!(vm_rss_bytes("Name:\tkthreadd\n"), None, "kernel threads have no VmRSS");
        assert_eq!(vm_rss_bytes("VmRSS:\t12 MB\n"), None);
        assert!(resident_bytes(std::process::id()).is_some_and(|bytes| bytes > 0));
        assert_eq!(resident_bytes(u32::MAX), None);
    }
}
