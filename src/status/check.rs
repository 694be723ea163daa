//! The verdict on a [`Status`] for monitoring, in the Nagios plugin convention (a [`Level`] as the exit code, one
//! line of text, perfdata after `|`), and the table `proxymgr status` prints for a person. Pure: a `Status` and
//! the time in, a level and text out.
//!
//! The one place that decides what is wrong and how bad: the page at `/` lists [`verdict`]'s problems, in its
//! order and at its levels, so an operator reads there what Nagios says. A [`Problem`] therefore carries what
//! the page shows of it (the quarantined servers with HAProxy's reasons, the servers a hold keeps), not only
//! what the first line needs.
//!
//! The levels are an operator's. CRITICAL: clients are failing, or the registry's changes no longer reach
//! HAProxy, so clients will fail as soon as a server goes away; someone should act now. WARNING: proxymgr holds
//! something back on purpose (a refused registration, a held removal, a service it cannot set up), traffic
//! flows, and a person should look during the day. UNKNOWN: there is nothing to judge yet.
//!
//! Text from the registry and from HAProxy (service names, reasons, HAProxy's complaints) is untrusted: it is
//! kept to one line, without control characters (no newline can split the verdict, no escape sequence reaches
//! a terminal) and without `|` (Nagios reads perfdata after the first `|` of any line).

use std::cmp::Reverse;
use std::fmt::{self, Write as _};

use super::model::{
    Difference, ReloadResult, RouteState, ServerState, ServerView, Service, Status, WatcherState,
};

/// How long after proxymgr's start a service whose watcher has not reported yet, and that has no server in
/// rotation, is still taken for one starting up rather than for one without servers. Twice the longest
/// proxymgr's first start waits for the registry (30 s, `STARTUP_WAIT_MAX`): a watcher still silent then is
/// not slow but stuck, and its port refuses every request.
pub const AWAITING_GRACE: f64 = 60.0;

/// How old a status may be before its reconciler is taken for stuck: it publishes at least every 10 s
/// (`HEARTBEAT`), so six missed in a row.
pub const STALE_AFTER: f64 = 60.0;

/// How long after proxymgr's start no HAProxy serving is taken for a start under way: the longest its first
/// start waits for the registry (`STARTUP_WAIT_MAX`). Meanwhile the HAProxy a predecessor left (a restart, an
/// upgrade) serves on, or the ports hold their connections until the first HAProxy takes them.
pub const STARTING_GRACE: f64 = 30.0;

/// The most characters of one untrusted text (HAProxy's complaint, a reason) on the first line: HAProxy may
/// give a screenful, and Nagios keeps a few kilobytes of a plugin's output.
const TEXT_LIMIT: usize = 200;

/// A plugin's state, its exit code as the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Level {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl Level {
    /// The exit code (0 to 3).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// How bad, for "worst first": CRITICAL above UNKNOWN above WARNING, as Nagios' aggregating checks
    /// (check_multi, check_cluster) rank them. Not the exit code, where UNKNOWN is 3.
    fn severity(self) -> u8 {
        match self {
            Level::Ok => 0,
            Level::Warning => 1,
            Level::Unknown => 2,
            Level::Critical => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warning => "WARNING",
            Level::Critical => "CRITICAL",
            Level::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One thing wrong, as monitoring sees it. Times are whole seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The reconciler has published nothing yet: proxymgr is starting. UNKNOWN: nothing is known to be wrong
    /// or right.
    NothingPublished,
    /// The last status was published more than [`STALE_AFTER`] ago: the reconciler, which publishes at least
    /// every 10 s, is stuck (on a call that does not return, say), and nothing reaches HAProxy. CRITICAL; what
    /// else the status says is as old.
    Stale { for_seconds: u64 },
    /// proxymgr started less than [`STARTING_GRACE`] ago and has not started HAProxy yet. OK: a restart or
    /// an upgrade looks like this for a moment, and pages nobody; past the grace it is `NoHaproxy`.
    Starting { for_seconds: u64 },
    /// No HAProxy serves: every service's port refuses connections (or nobody answers on them). CRITICAL.
    NoHaproxy,
    /// A ZooKeeper ensemble is unreachable. CRITICAL: HAProxy serves on with the servers it had, but a server
    /// that goes away meanwhile stays in rotation and its requests fail, and new servers get no traffic; the
    /// longer it lasts, the staler the picture. Nagios' retries (`max_check_attempts`) are where a blip of a
    /// few seconds is let pass, not here.
    RegistryOutage { ensemble: String, for_seconds: u64 },
    /// HAProxy rejected the config proxymgr would serve, `ago_seconds` ago, with `error` (its whole complaint;
    /// the first line cuts it). CRITICAL: the old config serves on, and every change that needs a reload (new
    /// services, new servers HAProxy cannot add at run time) waits until someone fixes what HAProxy complains
    /// about.
    ConfigRejected { error: String, ago_seconds: u64 },
    /// A service has no server in rotation: every request to its port fails. CRITICAL, whether the registry
    /// has no server for it (`registered` is 0) or HAProxy has all of the `registered` out.
    NoServerInRotation { service: String, registered: usize },
    /// A service's watcher has not reported in the [`AWAITING_GRACE`] after proxymgr's start, and it has no
    /// server in rotation (none from the state file either). CRITICAL, as `NoServerInRotation`: its port
    /// refuses every request; the cause to look at is its watcher (its source unreachable, its path wrong).
    NeverReported { service: String, for_seconds: u64 },
    /// The last reload failed for another reason than a rejected config (the new HAProxy died or did not come
    /// up) and is being tried again with backoff. WARNING: the HAProxy before it serves on (when none does,
    /// `NoHaproxy` says so), but the change that needed the reload waits.
    ReloadFailed { ago_seconds: u64 },
    /// HAProxy rejected a service's current spec; the one it served last stands in. WARNING: the service
    /// serves, but not as the registry now says, until its spec is fixed.
    SpecRejected { service: String },
    /// HAProxy refused some of a service's registrations (a bad address, say), held out until they change.
    /// WARNING: the service serves on its other servers; the registrations are to be fixed, and the service
    /// has less capacity than the registry says.
    Quarantined { service: String, servers: Vec<QuarantinedServer> },
    /// Many of a service's servers left the registry at once, and a removal hold keeps them (`kept`, by
    /// name) in rotation for `until_seconds` more. WARNING: either the registry lost them by mistake (the hold
    /// saves the service) or they are really gone (their requests fail until the hold ends); a person should
    /// tell which before it ends.
    Held { service: String, kept: Vec<String>, until_seconds: u64 },
    /// A service of the registry cannot be set up (its port is another service's, or cannot be bound).
    /// WARNING: it never served, so nothing that worked has stopped working, and every other service serves;
    /// its registration is to be fixed.
    Blocked { service: String, reason: String },
    /// Routes a service's spec asks for that are not routed (another service has the key on that frontend, or
    /// proxymgr.yml has no such frontend), each as a person reads it. WARNING: the service serves through its
    /// other routes and its own port, but requests meant for these go elsewhere; its registration is to be fixed.
    Unrouted { service: String, routes: Vec<String> },
}

/// A registration HAProxy refused: the server's `address:port` and HAProxy's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedServer {
    pub server: String,
    pub reason: String,
}

impl Problem {
    pub fn level(&self) -> Level {
        match self {
            Problem::NothingPublished => Level::Unknown,
            Problem::Stale { .. } => Level::Critical,
            Problem::Starting { .. } => Level::Ok,
            Problem::NoHaproxy
            | Problem::RegistryOutage { .. }
            | Problem::ConfigRejected { .. }
            | Problem::NoServerInRotation { .. }
            | Problem::NeverReported { .. } => Level::Critical,
            Problem::ReloadFailed { .. }
            | Problem::SpecRejected { .. }
            | Problem::Quarantined { .. }
            | Problem::Held { .. }
            | Problem::Blocked { .. }
            | Problem::Unrouted { .. } => Level::Warning,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NothingPublished => f.write_str("nothing published yet: proxymgr is starting"),
            Problem::Stale { for_seconds } => {
                write!(f, "status last published {} ago: the reconciler is stuck", duration(*for_seconds))
            }
            Problem::Starting { for_seconds } => {
                write!(f, "starting for {}, HAProxy not started yet", duration(*for_seconds))
            }
            Problem::NoHaproxy => f.write_str("no HAProxy serving"),
            Problem::RegistryOutage { ensemble, for_seconds } => {
                write!(f, "registry {} down for {}", one_line(ensemble), duration(*for_seconds))
            }
            Problem::ConfigRejected { error, .. } => write!(f, "config rejected: {}", short(error)),
            Problem::NoServerInRotation { service, registered: 0 } => {
                write!(f, "{}: no server in rotation, none registered", one_line(service))
            }
            Problem::NoServerInRotation { service, registered } => {
                write!(f, "{}: no server in rotation, {registered} registered", one_line(service))
            }
            Problem::NeverReported { service, for_seconds } => write!(
                f,
                "{}: no server in rotation, its watcher silent for {} since start",
                one_line(service),
                duration(*for_seconds)
            ),
            Problem::ReloadFailed { ago_seconds } => {
                write!(f, "last reload failed {} ago, retrying", duration(*ago_seconds))
            }
            Problem::SpecRejected { service } => {
                write!(f, "{}: spec rejected, the last one served stands in", one_line(service))
            }
            Problem::Quarantined { service, servers } => {
                write!(
                    f,
                    "{}: {} {} quarantined",
                    one_line(service),
                    servers.len(),
                    plural(servers.len() as u64, "server", "servers")
                )
            }
            Problem::Held { service, kept, until_seconds } => write!(
                f,
                "{}: {} removed {} held in rotation for {} more",
                one_line(service),
                kept.len(),
                plural(kept.len() as u64, "server", "servers"),
                duration(*until_seconds)
            ),
            Problem::Blocked { service, reason } => {
                write!(f, "{}: not served: {}", one_line(service), short(reason))
            }
            Problem::Unrouted { service, routes } => write!(
                f,
                "{}: {} {} not routed",
                one_line(service),
                routes.len(),
                plural(routes.len() as u64, "route", "routes")
            ),
        }
    }
}

/// What the first line counts, as Nagios perfdata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub services: usize,
    pub servers_in_rotation: usize,
    pub quarantined: usize,
    pub held: usize,
}

/// The verdict: the worst problem's level (OK without any) and the problems, worst first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub level: Level,
    pub problems: Vec<Problem>,
    /// None when nothing was published.
    pub totals: Option<Totals>,
}

impl Verdict {
    /// `PROXYMGR CRITICAL - registry zk1:2181 down for 42s; web: no server in rotation | services=12 ...`: one
    /// line, whatever the registry and HAProxy said.
    pub fn first_line(&self) -> String {
        let text = if self.problems.is_empty() {
            match self.totals {
                Some(t) => format!(
                    "{} {}, {} {} in rotation",
                    t.services,
                    plural(t.services as u64, "service", "services"),
                    t.servers_in_rotation,
                    plural(t.servers_in_rotation as u64, "server", "servers")
                ),
                None => String::from("nothing to report"),
            }
        } else {
            let texts: Vec<String> = self.problems.iter().map(Problem::to_string).collect();
            texts.join("; ")
        };
        let mut line = format!("PROXYMGR {} - {text}", self.level);
        if let Some(t) = self.totals {
            let _ = write!(
                line,
                " | services={} servers_in_rotation={} quarantined={} held={}",
                t.services, t.servers_in_rotation, t.quarantined, t.held
            );
        }
        line
    }
}

/// `PROXYMGR UNKNOWN - <reason>`, one line: for when there is no `Status` to judge.
pub fn unknown_line(reason: &str) -> String {
    format!("PROXYMGR {} - {}", Level::Unknown, one_line(reason))
}

/// Judges `status` at `now_unix` (Unix seconds).
///
/// While HAProxy does not serve, services are not also called "no server in rotation": `NoHaproxy` says it
/// for all of them. A service whose watcher has not reported and that has no server in rotation counts only
/// once proxymgr has run [`AWAITING_GRACE`], as [`Problem::NeverReported`]; one that has servers in rotation
/// meanwhile (from the state file) is fine. The model has no time per service for when its watcher started,
/// so a service added while proxymgr runs gets no such grace: the check that catches it in its first
/// second says CRITICAL, and Nagios' retries let it pass.
pub fn verdict(status: &Status, now_unix: f64) -> Verdict {
    if status.published <= 0.0 {
        return Verdict { level: Level::Unknown, problems: vec![Problem::NothingPublished], totals: None };
    }
    let since = |at: f64| seconds(now_unix - at);
    let mut problems = Vec::new();
    if now_unix - status.published > STALE_AFTER {
        problems.push(Problem::Stale { for_seconds: since(status.published) });
    }
    match &status.haproxy {
        None if status.published - status.started < STARTING_GRACE => {
            problems.push(Problem::Starting { for_seconds: since(status.started) })
        }
        None => problems.push(Problem::NoHaproxy),
        Some(_) => {}
    }
    for session in status.registry.iter().filter(|s| !s.connected) {
        // A session that never connected has been down since proxymgr started.
        let down_since = session.outage_since.unwrap_or(status.started);
        problems.push(Problem::RegistryOutage {
            ensemble: session.ensemble.clone(),
            for_seconds: since(down_since),
        });
    }
    if let Some(rejected) = &status.rejected {
        problems
            .push(Problem::ConfigRejected { error: rejected.error.clone(), ago_seconds: since(rejected.at) });
    }
    if let Some(reload) = &status.last_reload {
        if reload.result == ReloadResult::Failed && status.haproxy.is_some() {
            problems.push(Problem::ReloadFailed { ago_seconds: since(reload.at) });
        }
    }
    for service in &status.services {
        let name = || service.name.clone();
        if status.haproxy.is_some() && service.in_rotation() == 0 {
            match service.watcher_state {
                WatcherState::Reporting => problems
                    .push(Problem::NoServerInRotation { service: name(), registered: service.in_registry() }),
                WatcherState::Awaiting if now_unix - status.started >= AWAITING_GRACE => problems
                    .push(Problem::NeverReported { service: name(), for_seconds: since(status.started) }),
                WatcherState::Awaiting => {}
            }
        }
        if service.spec_rejected {
            problems.push(Problem::SpecRejected { service: name() });
        }
        let quarantined: Vec<QuarantinedServer> = service
            .quarantined()
            .filter_map(|server| match &server.difference {
                Some(Difference::Quarantined { reason }) => {
                    Some(QuarantinedServer { server: server.name.clone(), reason: reason.clone() })
                }
                _ => None,
            })
            .collect();
        if !quarantined.is_empty() {
            problems.push(Problem::Quarantined { service: name(), servers: quarantined });
        }
        if let Some((kept, until)) = held(service) {
            problems.push(Problem::Held { service: name(), kept, until_seconds: seconds(until - now_unix) });
        }
        let unrouted: Vec<String> = service
            .routes
            .iter()
            .filter_map(|route| {
                let at = format!("{} {}", route.frontend, route.key);
                match &route.state {
                    RouteState::Taken { by } => Some(format!("{at}: routed to service {by}")),
                    RouteState::NoFrontend => {
                        Some(format!("{}: no such frontend in proxymgr.yml", route.frontend))
                    }
                    RouteState::Routed | RouteState::Pending => None,
                }
            })
            .collect();
        if !unrouted.is_empty() {
            problems.push(Problem::Unrouted { service: name(), routes: unrouted });
        }
    }
    for blocked in &status.blocked {
        problems.push(Problem::Blocked { service: blocked.service.clone(), reason: blocked.reason.clone() });
    }
    // Stable: within a level, the order above (HAProxy, registry, config, then services by name).
    problems.sort_by_key(|p| Reverse(p.level().severity()));
    let level = problems.iter().map(Problem::level).max_by_key(|l| l.severity()).unwrap_or(Level::Ok);
    let totals = Totals {
        services: status.services.len(),
        servers_in_rotation: status.services.iter().map(|s| s.in_rotation()).sum(),
        quarantined: status.services.iter().map(|s| s.quarantined().count()).sum(),
        held: status.services.iter().map(|s| held(s).map_or(0, |(kept, _)| kept.len())).sum(),
    };
    Verdict { level, problems, totals: Some(totals) }
}

/// The servers a removal hold keeps in rotation, by name, and until when: the hold's own view, else (should the
/// two ever disagree) the servers marked held, until the latest of their ends.
fn held(service: &Service) -> Option<(Vec<String>, f64)> {
    match &service.hold {
        Some(hold) if !hold.kept.is_empty() => Some((hold.kept.clone(), hold.until)),
        _ => {
            let (mut kept, mut latest) = (Vec::new(), f64::MIN);
            for server in service.held() {
                if let Some(Difference::Held { until }) = server.difference {
                    kept.push(server.name.clone());
                    latest = latest.max(until);
                }
            }
            (!kept.is_empty()).then_some((kept, latest))
        }
    }
}

/// The table for a person: proxymgr, HAProxy, the last reload and the registry, one row per service, and
/// below, for each service with servers whose views differ, those servers with both views.
pub fn table(status: &Status, now_unix: f64) -> String {
    let ago = |at: f64| duration(seconds(now_unix - at));
    let mut out = String::new();
    let mut head: Vec<Vec<String>> = Vec::new();
    let mut row = |label: &str, text: String| head.push(vec![label.to_string(), text]);

    let published = if status.published > 0.0 {
        format!("published {} ago", ago(status.published))
    } else {
        String::from("nothing published yet")
    };
    let version = if status.version.is_empty() { "?" } else { &status.version };
    let up = if status.started > 0.0 { format!(", up {}", ago(status.started)) } else { String::new() };
    row("proxymgr", format!("{}{up}, {published}", one_line(version)));

    match &status.haproxy {
        Some(serving) => row(
            "HAProxy",
            format!(
                "pid {}, HAProxy {}, serving for {}",
                serving.pid,
                one_line(&serving.version),
                ago(serving.since)
            ),
        ),
        None => row("HAProxy", String::from("none serving")),
    }
    for generation in status.generations.iter().filter(|g| !g.serving) {
        let started = generation.started.map(|at| format!(" (started {} ago)", ago(at))).unwrap_or_default();
        row("", format!("pid {} finishing its connections{started}", generation.pid));
    }
    match &status.last_reload {
        Some(reload) => {
            let result = match reload.result {
                ReloadResult::Starting => "starting",
                ReloadResult::Served => "served",
                ReloadResult::Rejected => "rejected by HAProxy",
                ReloadResult::Failed => "failed",
            };
            let reasons: Vec<String> = reload.reasons.iter().map(|r| one_line(r)).collect();
            let why = if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) };
            row("Last reload", format!("{} ago, {result}{why}", ago(reload.at)));
        }
        None => row("Last reload", String::from("none since start")),
    }
    if let Some(rejected) = &status.rejected {
        row("Rejected", format!("{} ago: {}", ago(rejected.at), one_line(&rejected.error)));
    }
    let last_read =
        status.last_registry_read.map(|at| format!(", last read {} ago", ago(at))).unwrap_or_default();
    let source = if status.source.is_empty() { "?" } else { &status.source };
    row("Registry", format!("{}{last_read}", one_line(source)));
    for session in &status.registry {
        let state = if session.connected {
            String::from("connected")
        } else {
            let down_since = session.outage_since.unwrap_or(status.started);
            format!("DOWN for {}", ago(down_since))
        };
        let read = session.last_read.map(|at| format!(", last read {} ago", ago(at))).unwrap_or_default();
        row(
            "",
            format!(
                "{}: {state}, {} {}, {} {}{read}",
                one_line(&session.ensemble),
                session.reconnects,
                plural(session.reconnects, "reconnect", "reconnects"),
                session.expiries,
                plural(session.expiries, "expiry", "expiries"),
            ),
        );
    }
    out.push_str(&columns(&head, ""));
    out.push('\n');

    if status.services.is_empty() {
        out.push_str("No services.\n");
    } else {
        let mut rows = vec![["SERVICE", "PORT", "IN ROTATION", "QUARANTINED", "HELD", "WATCHER"]
            .map(String::from)
            .to_vec()];
        for service in &status.services {
            let state = match service.watcher_state {
                WatcherState::Awaiting => "awaiting",
                WatcherState::Reporting => "reporting",
            };
            rows.push(vec![
                one_line(&service.name),
                service.port.map_or_else(|| "-".to_string(), |p| p.to_string()),
                format!("{}/{}", service.in_rotation(), service.server_count()),
                service.quarantined().count().to_string(),
                service.held().count().to_string(),
                format!("{state}: {}", one_line(&service.watcher)),
            ]);
        }
        out.push_str(&columns(&rows, ""));
    }
    if !status.blocked.is_empty() {
        out.push_str("\nNot served:\n");
        for blocked in &status.blocked {
            let _ = writeln!(out, "  {}: {}", one_line(&blocked.service), one_line(&blocked.reason));
        }
    }

    for service in &status.services {
        let differing: Vec<&ServerView> = service.servers.iter().filter(|s| s.difference.is_some()).collect();
        if differing.is_empty() && !service.spec_rejected && service.hold.is_none() {
            continue;
        }
        let _ = writeln!(out, "\n{}:", one_line(&service.name));
        if service.spec_rejected {
            out.push_str("  its spec was rejected by HAProxy: the last one served stands in\n");
        }
        if let Some(hold) = &service.hold {
            let _ = writeln!(
                out,
                "  removal hold: {} {} kept in rotation for {} more",
                hold.kept.len(),
                plural(hold.kept.len() as u64, "server", "servers"),
                duration(seconds(hold.until - now_unix))
            );
        }
        if differing.is_empty() {
            continue;
        }
        let mut rows = vec![["SERVER", "REGISTRY", "HAPROXY", "WHY THEY DIFFER"].map(String::from).to_vec()];
        for server in differing {
            rows.push(vec![
                one_line(&server.name),
                registry_view(server),
                haproxy_view(server),
                server.difference.as_ref().map(|d| difference(d, now_unix)).unwrap_or_default(),
            ]);
        }
        out.push_str(&columns(&rows, "  "));
    }
    out
}

fn registry_view(server: &ServerView) -> String {
    let Some(registry) = &server.registry else {
        return String::from("not registered");
    };
    let mut text = match registry.weight {
        Some(weight) => format!("weight {weight}"),
        None => String::from("registered"),
    };
    if let Some(origin) = &registry.origin {
        let _ = write!(text, " ({})", one_line(origin));
    }
    text
}

fn haproxy_view(server: &ServerView) -> String {
    let Some(haproxy) = &server.haproxy else {
        return String::from("not in HAProxy");
    };
    let mut text = String::from(match haproxy.state {
        ServerState::Ready => "ready",
        ServerState::Maintenance => "maintenance",
    });
    if let Some(weight) = haproxy.weight {
        let _ = write!(text, ", weight {weight}");
    }
    if let Some(name) = &haproxy.name {
        let _ = write!(text, ", as {}", one_line(name));
    }
    text
}

fn difference(difference: &Difference, now_unix: f64) -> String {
    match difference {
        Difference::Quarantined { reason } => format!("quarantined: {}", one_line(reason)),
        Difference::Held { until } => format!("held for {} more", duration(seconds(until - now_unix))),
        Difference::Leaving => String::from("leaving: finishing its connections"),
        Difference::PendingReload => String::from("waits for a reload"),
        Difference::Pending => String::from("being applied"),
    }
}

/// Rows as columns two spaces apart, each line starting with `indent`; the last column is not padded.
fn columns(rows: &[Vec<String>], indent: &str) -> String {
    let count = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..count)
        .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::from(indent);
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `text` on one line: every run of spaces and control characters (newlines, tabs, escapes) becomes one space,
/// and `|`, which starts perfdata anywhere in a plugin's output (the table is its long output), becomes `/`.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || c.is_whitespace() {
            if !out.is_empty() && !out.ends_with(' ') {
                out.push(' ');
            }
        } else {
            out.push(if c == '|' { '/' } else { c });
        }
    }
    out.truncate(out.trim_end().len());
    out
}

/// `one_line`, cut at [`TEXT_LIMIT`] characters.
fn short(text: &str) -> String {
    let line = one_line(text);
    match line.char_indices().nth(TEXT_LIMIT) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line,
    }
}

/// Whole seconds from a difference of Unix times; 0 for a negative one (clocks a little apart).
fn seconds(difference: f64) -> u64 {
    if difference.is_finite() && difference > 0.0 {
        difference as u64
    } else {
        0
    }
}

/// `42s`, `5m10s`, `3h12m`, `2d4h`.
fn duration(seconds: u64) -> String {
    let (m, s) = (seconds / 60, seconds % 60);
    let (h, d) = (seconds / 3600, seconds / 86400);
    match seconds {
        0..=59 => format!("{s}s"),
        60..=3599 if s == 0 => format!("{m}m"),
        60..=3599 => format!("{m}m{s}s"),
        3600..=86399 => format!("{h}h{}m", m % 60),
        _ => format!("{d}d{}h", h % 24),
    }
}

/// `one` for a count of 1, else `many`.
fn plural<'a>(count: u64, one: &'a str, many: &'a str) -> &'a str {
    if count == 1 {
        one
    } else {
        many
    }
}

#[cfg(test)]
mod tests;
