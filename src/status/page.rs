//! The page at `/`: a [`Status`] as HTML for a person, what is wrong first. Server-rendered with tinytemplate,
//! inline CSS, no JavaScript. Pure: `render(status, now)` returns the page; times are shown as ages from `now`
//! (`3m12s ago`, `in 4m00s`), with the UTC time in each `<time>` element's `datetime` and `title`.
//!
//! What is wrong, and how bad, is not decided here: the page shows [`check::verdict`], the judgement
//! `proxymgr status` gives Nagios, so an operator reads the same on both.
//!
//! Everything from the registry and from HAProxy (service and server names, origins, reasons, HAProxy's error
//! text) is untrusted: it reaches the page only through tinytemplate's `{value}`, which HTML-escapes `<`, `>`,
//! `&`, `"` and `'`, so it can be neither markup nor break out of a quoted attribute. No unescaping formatter is
//! used here.
//!
//! The parts, in order, and what tests can find them by:
//! - `id="summary"`: one line. When nothing is wrong, class `ok` (`OK: 2 services, 5 servers in rotation`);
//!   else the verdict's level and how many problems it names (`CRITICAL: 3 problems`), class `problems` and
//!   the level in lowercase (`problems critical`; `problems ok` while a start is under way).
//! - `id="problems"`: present only when something is wrong: the verdict's problems in its order, worst first.
//!   One `<li class="problem KIND" data-level="LEVEL">` each (one per server for a quarantine), LEVEL its level
//!   in lowercase (`critical`, `unknown`, `warning`, `ok`), with `data-service="NAME"` and a link
//!   `<a class="name" href="#service-NAME">` when it concerns a service. KIND is one of `nothing-published`,
//!   `stale` (the status is over a minute old: the reconciler is stuck), `starting` (no HAProxy yet, within the start's grace), `no-haproxy`, `outage` (a registry session down),
//!   `rejected` (HAProxy rejected the config; its error in a `<pre class="error">`), `no-server` (a service
//!   with no server in rotation), `never-reported` (one whose watcher has not reported past the grace),
//!   `reload-failed`, `spec-rejected`, `quarantined` (a server HAProxy refused, with its reason), `held` (a
//!   removal hold under way, the servers it keeps and when it ends), `blocked`.
//! - `id="haproxy"`: the serving HAProxy (pid, version, since) and the older processes finishing their
//!   connections.
//! - `id="reload"`: the last reload (when, reasons, result as class `result-served`, `result-starting`,
//!   `result-rejected` or `result-failed`).
//! - `id="registry"`: the source and a table of registry sessions, one `<tr class="session up|down"
//!   data-ensemble="...">` each.
//! - `id="services"`: one `<section class="service" id="service-NAME" data-service="NAME">` per service (class
//!   `service has-problems` for those a problem names; they come first, then the others, each group by name)
//!   with its port, watcher and watcher state (`class="watcher-state awaiting|reporting"`), and a table of its
//!   servers, the registry's view beside HAProxy's: one `<tr class="server DIFF" data-server="ADDRESS:PORT">`
//!   each, its class `server` alone when the views agree, else DIFF is `quarantined`, `held`, `leaving`,
//!   `pending-reload` or `pending`; in the row, HAProxy's state is a `<td class="ready|maintenance">` and the
//!   difference's text a `<td class="difference">`. Beyond `LISTED_SERVERS` servers in all, only the servers
//!   whose views differ are rows, and a `<p class="unlisted">` says how many more each service has.

use std::collections::BTreeSet;

use serde::Serialize;
use tinytemplate::TinyTemplate;

use super::check::{self, Level, Problem, QuarantinedServer};
use super::model::{
    Difference, ReloadResult, ServerState, ServerView, Service, Session, Status, WatcherState,
};

/// The page for `status` as it stands at `now_unix` (Unix seconds).
pub fn render(status: &Status, now_unix: f64) -> String {
    let page = Page::new(status, now_unix);
    let mut templates = TinyTemplate::new();
    // The templates are constants of this file; the unit tests render every one of them.
    templates.add_template("page", PAGE).expect("the page template parses");
    templates.add_template("when", WHEN).expect("the when template parses");
    templates.render("page", &page).expect("the page renders: every field the template names is there")
}

/// The class that names a problem's kind on the page.
fn kind(problem: &Problem) -> &'static str {
    match problem {
        Problem::NothingPublished => "nothing-published",
        Problem::Stale { .. } => "stale",
        Problem::Starting { .. } => "starting",
        Problem::NoHaproxy => "no-haproxy",
        Problem::RegistryOutage { .. } => "outage",
        Problem::ConfigRejected { .. } => "rejected",
        Problem::NoServerInRotation { .. } => "no-server",
        Problem::NeverReported { .. } => "never-reported",
        Problem::ReloadFailed { .. } => "reload-failed",
        Problem::SpecRejected { .. } => "spec-rejected",
        Problem::Quarantined { .. } => "quarantined",
        Problem::Held { .. } => "held",
        Problem::Blocked { .. } => "blocked",
        Problem::Unrouted { .. } => "unrouted",
    }
}

/// The service a problem concerns, if one.
fn concerns(problem: &Problem) -> Option<&str> {
    match problem {
        Problem::NothingPublished
        | Problem::Stale { .. }
        | Problem::Starting { .. }
        | Problem::NoHaproxy
        | Problem::RegistryOutage { .. }
        | Problem::ConfigRejected { .. }
        | Problem::ReloadFailed { .. } => None,
        Problem::NoServerInRotation { service, .. }
        | Problem::NeverReported { service, .. }
        | Problem::SpecRejected { service }
        | Problem::Quarantined { service, .. }
        | Problem::Held { service, .. }
        | Problem::Blocked { service, .. }
        | Problem::Unrouted { service, .. } => Some(service),
    }
}

/// A level as a class: `ok`, `warning`, `critical`, `unknown`.
fn level_class(level: Level) -> &'static str {
    match level {
        Level::Ok => "ok",
        Level::Warning => "warning",
        Level::Critical => "critical",
        Level::Unknown => "unknown",
    }
}

/// What the list says of `problem`, without the service's name (the page puts it first): one text per list
/// item (one per quarantined server, else one), each with its long detail shown as it is below the line
/// (HAProxy's error), empty when it has none.
fn texts(problem: &Problem) -> Vec<(String, String)> {
    let line = |text: String| vec![(text, String::new())];
    let ago = |seconds: u64| format!("{} ago", span(seconds as f64));
    match problem {
        Problem::NothingPublished => line("nothing published yet: proxymgr is starting".to_string()),
        Problem::Stale { for_seconds } => line(format!(
            "this status was published {}: the reconciler, which publishes at least every 10 s, is stuck, and \
             what follows is as old",
            ago(*for_seconds)
        )),
        Problem::Starting { for_seconds } => line(format!(
            "proxymgr started {} and has not started HAProxy yet: a restart or an upgrade looks like this for a \
             moment",
            ago(*for_seconds)
        )),
        Problem::NoHaproxy => line("no HAProxy serves".to_string()),
        Problem::RegistryOutage { ensemble, for_seconds } => {
            line(format!("registry session {ensemble} down for {}", span(*for_seconds as f64)))
        }
        Problem::ConfigRejected { error, ago_seconds } => vec![(
            format!("HAProxy rejected the config {}; the last config it took serves on", ago(*ago_seconds)),
            error.clone(),
        )],
        Problem::NoServerInRotation { registered: 0, .. } => {
            line("no server in rotation: the registry lists none".to_string())
        }
        Problem::NoServerInRotation { registered, .. } => line(format!(
            "no server in rotation: the registry lists {}, HAProxy has none of them in rotation",
            count(*registered, "server", "servers")
        )),
        Problem::NeverReported { for_seconds, .. } => line(format!(
            "no server in rotation: its watcher has not reported in the {} since proxymgr started",
            span(*for_seconds as f64)
        )),
        Problem::ReloadFailed { ago_seconds } => {
            line(format!("the last reload, {}, failed; it is tried again with backoff", ago(*ago_seconds)))
        }
        Problem::SpecRejected { .. } => {
            line("HAProxy rejected its current spec; the spec served last stands in for it".to_string())
        }
        Problem::Quarantined { servers, .. } => servers
            .iter()
            .map(|QuarantinedServer { server, reason }| {
                (format!("server {server} quarantined: {reason}"), String::new())
            })
            .collect(),
        Problem::Held { kept, until_seconds, .. } => line(format!(
            "removal hold keeps {} in rotation, ends in {}: {}",
            count(kept.len(), "server", "servers"),
            span(*until_seconds as f64),
            kept.join(", ")
        )),
        Problem::Blocked { reason, .. } => line(format!("not served: {reason}")),
        Problem::Unrouted { routes, .. } => {
            routes.iter().map(|route| (format!("not routed: {route}"), String::new())).collect()
        }
    }
}

fn route_part(route: &crate::status::RouteView) -> RoutePart {
    use crate::status::RouteState;
    let (state, text) = match &route.state {
        RouteState::Routed => ("routed", "routed".to_string()),
        RouteState::Pending => ("pending", "pending: comes with the next change HAProxy takes".to_string()),
        RouteState::Taken { by } => ("taken", format!("not routed: service {by} has it")),
        RouteState::NoFrontend => ("no-frontend", "not routed: no such frontend in proxymgr.yml".to_string()),
    };
    RoutePart { route: format!("{} {}", route.frontend, route.key), state, text }
}

/// The page's context: every text already formed, so the template only places and escapes it.
#[derive(Serialize)]
struct Page {
    title: String,
    version: String,
    published: When,
    started: When,
    /// `ok`, or `problems` and the verdict's level (`problems critical`).
    summary_class: String,
    summary: String,
    problems: Vec<ProblemPart>,
    haproxy: Option<HaproxyPart>,
    older: Vec<GenerationPart>,
    reload: Option<ReloadPart>,
    source: String,
    last_registry_read: Option<When>,
    sessions: Vec<SessionPart>,
    services: Vec<ServicePart>,
}

/// A time: `text` its age or its distance ahead (`3m12s ago`, `in 4m00s`), `iso` and `utc` the moment.
#[derive(Serialize)]
struct When {
    text: String,
    iso: String,
    utc: String,
}

#[derive(Serialize)]
struct ProblemPart {
    kind: &'static str,
    /// Its level, as a class.
    level: &'static str,
    /// Empty when it concerns no service.
    service: String,
    /// Whether the service has a section on the page to link to (a blocked one has none).
    linked: bool,
    text: String,
    detail: String,
}

#[derive(Serialize)]
struct HaproxyPart {
    pid: u32,
    version: String,
    since: When,
}

#[derive(Serialize)]
struct GenerationPart {
    pid: u32,
    /// Empty when a predecessor of this proxymgr started it.
    started: Option<When>,
}

#[derive(Serialize)]
struct ReloadPart {
    at: When,
    reasons: Vec<String>,
    result: &'static str,
    result_text: &'static str,
}

#[derive(Serialize)]
struct SessionPart {
    ensemble: String,
    up: bool,
    /// `connected`, `down for 3m12s` or `not connected`.
    state: String,
    reconnects: u64,
    expiries: u64,
    last_read: Option<When>,
}

#[derive(Serialize)]
struct ServicePart {
    name: String,
    has_problems: bool,
    /// `port 8080`, or what it has instead.
    port: String,
    watcher: String,
    watcher_state: &'static str,
    watcher_state_text: &'static str,
    in_rotation: String,
    hold: Option<HoldPart>,
    /// Its routes of shared frontends, each `frontend key: state`.
    routes: Vec<RoutePart>,
    servers: Vec<ServerPart>,
    /// What says the servers left out of the table (those whose two views agree, when there are too many to
    /// list); empty when none is.
    unlisted: String,
}

/// The most servers the page lists in all: beyond it, only those whose two views differ are (a page of 50 000
/// rows helps nobody, and would cost the daemon tens of megabytes to render); `/status` has every one.
pub const LISTED_SERVERS: usize = 2000;

#[derive(Serialize)]
struct RoutePart {
    route: String,
    /// `routed`, `pending`, `taken` or `no-frontend`: the class, and what the page says.
    state: &'static str,
    text: String,
}

#[derive(Serialize)]
struct HoldPart {
    until: When,
    kept: String,
}

#[derive(Serialize)]
struct ServerPart {
    name: String,
    /// The difference's class, empty when the views agree.
    class: &'static str,
    in_registry: bool,
    registry_weight: String,
    origin: String,
    in_haproxy: bool,
    haproxy_name: String,
    state: &'static str,
    haproxy_weight: String,
    difference: String,
}

impl Page {
    fn new(status: &Status, now: f64) -> Page {
        let verdict = check::verdict(status, now);
        let troubled: BTreeSet<&str> = verdict.problems.iter().filter_map(concerns).collect();
        let all = status.services.iter().map(|s| s.server_count()).sum::<usize>() <= LISTED_SERVERS;
        let (summary, summary_class) = match (verdict.problems.len(), verdict.totals) {
            (0, Some(totals)) => (
                format!(
                    "OK: {}, {} in rotation",
                    count(totals.services, "service", "services"),
                    count(totals.servers_in_rotation, "server", "servers")
                ),
                "ok".to_string(),
            ),
            (problems, _) => (
                format!("{}: {}", verdict.level, count(problems, "problem", "problems")),
                format!("problems {}", level_class(verdict.level)),
            ),
        };
        let title = format!("proxymgr: {}", if verdict.problems.is_empty() { "OK" } else { &summary });

        let served: BTreeSet<&str> = status.services.iter().map(|s| s.name.as_str()).collect();
        let served = &served;
        let problem_parts = verdict
            .problems
            .iter()
            .flat_map(|problem| {
                let name = concerns(problem);
                texts(problem).into_iter().map(move |(text, detail)| ProblemPart {
                    kind: kind(problem),
                    level: level_class(problem.level()),
                    service: name.unwrap_or_default().to_string(),
                    linked: name.is_some_and(|name| served.contains(name)),
                    text,
                    detail,
                })
            })
            .collect();

        let mut services: Vec<&Service> = status.services.iter().map(|s| &**s).collect();
        services.sort_by_key(|s| (!troubled.contains(&s.name.as_str()), &s.name));

        Page {
            title,
            version: status.version.clone(),
            published: When::new(status.published, now),
            started: When::new(status.started, now),
            summary_class,
            summary,
            problems: problem_parts,
            haproxy: status.haproxy.as_ref().map(|serving| HaproxyPart {
                pid: serving.pid,
                version: serving.version.clone(),
                since: When::new(serving.since, now),
            }),
            older: status
                .generations
                .iter()
                .filter(|g| !g.serving)
                .map(|g| GenerationPart { pid: g.pid, started: g.started.map(|t| When::new(t, now)) })
                .collect(),
            reload: status.last_reload.as_ref().map(|reload| ReloadPart {
                at: When::new(reload.at, now),
                reasons: reload.reasons.clone(),
                result: match reload.result {
                    ReloadResult::Starting => "result-starting",
                    ReloadResult::Served => "result-served",
                    ReloadResult::Rejected => "result-rejected",
                    ReloadResult::Failed => "result-failed",
                },
                result_text: match reload.result {
                    ReloadResult::Starting => "starting: the new process does not serve yet",
                    ReloadResult::Served => "served: the new process serves",
                    ReloadResult::Rejected => {
                        "rejected: HAProxy refused the config; the old process serves on"
                    }
                    ReloadResult::Failed => {
                        "failed: the new process did not come up; tried again with backoff"
                    }
                },
            }),
            source: status.source.clone(),
            last_registry_read: status.last_registry_read.map(|t| When::new(t, now)),
            sessions: status.registry.iter().map(|s| SessionPart::new(s, now)).collect(),
            services: services
                .into_iter()
                .map(|s| ServicePart::new(s, troubled.contains(&s.name.as_str()), all, now))
                .collect(),
        }
    }
}

impl When {
    fn new(at: f64, now: f64) -> When {
        let iso = iso_utc(at);
        let utc = iso.replace('T', " ").replace('Z', " UTC");
        When { text: relative(at, now), iso, utc }
    }
}

impl SessionPart {
    fn new(session: &Session, now: f64) -> SessionPart {
        let up = session.connected;
        let state = match (up, session.outage_since) {
            (true, _) => "connected".to_string(),
            (false, Some(since)) => format!("down for {}", span(now - since)),
            (false, None) => "not connected".to_string(),
        };
        SessionPart {
            ensemble: session.ensemble.clone(),
            up,
            state,
            reconnects: session.reconnects,
            expiries: session.expiries,
            last_read: session.last_read.map(|t| When::new(t, now)),
        }
    }
}

impl ServicePart {
    /// With every server in the table, or (`all` false) only those whose two views differ.
    fn new(service: &Service, has_problems: bool, all: bool, now: f64) -> ServicePart {
        let (watcher_state, watcher_state_text) = match service.watcher_state {
            WatcherState::Awaiting => ("awaiting", "awaiting its first report"),
            WatcherState::Reporting => ("reporting", "reporting"),
        };
        ServicePart {
            name: service.name.clone(),
            has_problems,
            port: service.port.map_or_else(|| "no port of its own".to_string(), |p| format!("port {p}")),
            watcher: service.watcher.clone(),
            watcher_state,
            watcher_state_text,
            in_rotation: format!(
                "{} of {} in rotation",
                service.in_rotation(),
                count(service.server_count(), "server", "servers")
            ),
            hold: service
                .hold
                .as_ref()
                .map(|hold| HoldPart { until: When::new(hold.until, now), kept: hold.kept.join(", ") }),
            routes: service.routes.iter().map(route_part).collect(),
            servers: service
                .all_servers()
                .filter(|s| all || s.difference.is_some())
                .map(|s| ServerPart::new(&s, now))
                .collect(),
            unlisted: match service.all_servers().filter(|s| !all && s.difference.is_none()).count() {
                0 => String::new(),
                n => format!(
                    "{} whose two views agree, not listed: the page lists every server only up to {LISTED_SERVERS} \
                     in all (/status has every one).",
                    count(n, "more server", "more servers")
                ),
            },
        }
    }
}

impl ServerPart {
    fn new(server: &ServerView, now: f64) -> ServerPart {
        let weight = |w: Option<u16>| w.map_or_else(|| "-".to_string(), |w| w.to_string());
        let (class, difference) = match &server.difference {
            None => ("", String::new()),
            Some(Difference::Quarantined { reason }) => ("quarantined", format!("quarantined: {reason}")),
            Some(Difference::Held { until }) => (
                "held",
                format!("held: kept in rotation by a removal hold that ends {}", relative(*until, now)),
            ),
            Some(Difference::Leaving) => (
                "leaving",
                "leaving: out of rotation, finishing its connections until the next reload".into(),
            ),
            Some(Difference::PendingReload) => {
                ("pending-reload", "pending reload: waits for a reload".into())
            }
            Some(Difference::Pending) => ("pending", "pending: a change under way".into()),
        };
        let registry = server.registry.as_ref();
        let haproxy = server.haproxy.as_ref();
        ServerPart {
            name: server.name.clone(),
            class,
            in_registry: registry.is_some(),
            registry_weight: registry.map_or_else(String::new, |r| weight(r.weight)),
            origin: registry.and_then(|r| r.origin.clone()).unwrap_or_default(),
            in_haproxy: haproxy.is_some(),
            haproxy_name: haproxy
                .map_or_else(String::new, |h| h.name.clone().unwrap_or_else(|| server.name.clone())),
            state: match haproxy.map(|h| h.state) {
                None => "",
                Some(ServerState::Ready) => "ready",
                Some(ServerState::Maintenance) => "maintenance",
            },
            haproxy_weight: haproxy.map_or_else(String::new, |h| weight(h.weight)),
            difference,
        }
    }
}

/// `n` with the noun that fits it: `1 server`, `3 servers`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A span of seconds as a person reads it: `0s`, `42s`, `3m12s`, `2h05m`, `3d04h`. Negative or not a number
/// reads as `0s`.
fn span(seconds: f64) -> String {
    let s = if seconds.is_finite() && seconds > 0.0 { seconds as u64 } else { 0 };
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// `at` from `now`: `3m12s ago`, or `in 4m00s` when it is ahead.
fn relative(at: f64, now: f64) -> String {
    if at > now {
        format!("in {}", span(at - now))
    } else {
        format!("{} ago", span(now - at))
    }
}

/// Unix seconds as `2024-05-01T12:04:00Z` (to the second, rounded down).
fn iso_utc(unix: f64) -> String {
    let seconds = if unix.is_finite() { unix.floor() as i64 } else { 0 };
    let (days, time) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", time / 3600, time % 3600 / 60, time % 60)
}

/// The proleptic Gregorian date `days` after 1970-01-01: Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

/// A `<time>` element for a [`When`].
const WHEN: &str = r#"<time datetime="{iso}" title="{utc}">{text}</time>"#;

/// The page. Braces of CSS are written `\{` (tinytemplate's escape for a literal brace).
const PAGE: &str = r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body \{ font: 15px/1.45 system-ui, -apple-system, "Segoe UI", "Liberation Sans", sans-serif; color: #1d2330;
  background: #f6f7f9; margin: 0 auto; padding: 1rem 1.5rem 3rem; max-width: 72rem; }
h1 \{ font-size: 1.35rem; margin: .4rem 0; }
h1 small, .meta \{ font-weight: normal; color: #5b6475; font-size: .9rem; }
h2 \{ font-size: 1.1rem; margin: 1.6rem 0 .5rem; border-bottom: 1px solid #d5d9e0; padding-bottom: .2rem; }
h3 \{ font-size: 1rem; margin: 0 0 .3rem; }
code, pre, .mono \{ font-family: ui-monospace, "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: .88rem; }
#summary \{ font-size: 1.15rem; font-weight: 600; padding: .6rem .9rem; border-radius: 6px; margin: .8rem 0; }
#summary.problems \{ background: #fdeaea; color: #8a1c1c; border: 1px solid #f0b4b4; }
#summary.warning \{ background: #fdf3e1; color: #7a4b00; border-color: #ecd9b5; }
#summary.unknown \{ background: #eceff3; color: #3b4250; border-color: #c9ced8; }
#summary.ok \{ background: #e3f5e6; color: #185c27; border: 1px solid #a9dcb3; }
#problems ul \{ list-style: none; padding: 0; margin: 0; }
.problem \{ background: #fff; border: 1px solid #e3c3c3; border-left: 5px solid #c62828; border-radius: 4px;
  padding: .45rem .7rem; margin: 0 0 .4rem; }
.problem[data-level="warning"] \{ border-left-color: #d98a00; border-color: #ecd9b5; }
.problem[data-level="unknown"] \{ border-left-color: #7a8294; border-color: #d5d9e0; }
.problem[data-level="ok"] \{ border-left-color: #2e7d32; border-color: #a9dcb3; }
.problem .name \{ font-weight: 600; }
.kind \{ display: inline-block; min-width: 7.5rem; color: #5b6475; font-size: .8rem; text-transform: uppercase;
  letter-spacing: .03em; }
pre.error \{ background: #2b2f38; color: #f3f3f3; padding: .5rem .7rem; border-radius: 4px; overflow-x: auto;
  white-space: pre-wrap; margin: .4rem 0 0; }
dl \{ display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: 0; }
dt \{ color: #5b6475; }
dd \{ margin: 0; }
table \{ border-collapse: collapse; background: #fff; width: 100%; margin: .3rem 0; }
th, td \{ border: 1px solid #d5d9e0; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th \{ background: #eceff3; font-weight: 600; font-size: .85rem; }
th.group \{ text-align: center; }
td.num \{ text-align: right; }
.service \{ background: #fff; border: 1px solid #d5d9e0; border-radius: 6px; padding: .7rem .9rem; margin: 0 0 .9rem; }
.service.has-problems \{ border-left: 5px solid #c62828; }
.service table \{ margin-top: .5rem; }
tr.quarantined td \{ background: #fff4e0; }
tr.held td, tr.leaving td \{ background: #f1f1f6; }
tr.pending td, tr.pending-reload td \{ background: #eef5fd; }
.no \{ color: #8a1c1c; }
.maintenance \{ color: #8a1c1c; font-weight: 600; }
td.down, p.down \{ color: #8a1c1c; font-weight: 600; }
.result-served \{ color: #185c27; }
.result-rejected, .result-failed \{ color: #8a1c1c; font-weight: 600; }
.nowrap \{ white-space: nowrap; }
.origin \{ display: block; color: #5b6475; font-size: .8rem; }
.watcher-state.awaiting \{ color: #8a1c1c; }
</style>
</head>
<body>
<header>
<h1>proxymgr <small>{version}</small></h1>
<p class="meta">published {{ call when with published }}, up since {{ call when with started }}</p>
</header>
<p id="summary" class="{summary_class}">{summary}</p>
{{ if problems }}<section id="problems">
<h2>Problems</h2>
<ul>
{{ for problem in problems }}<li class="problem {problem.kind}" data-level="{problem.level}"{{ if problem.service }} data-service="{problem.service}"{{ endif }}><span class="kind">{problem.kind}</span> {{ if problem.service }}{{ if problem.linked }}<a class="name" href="#service-{problem.service}">{problem.service}</a>{{ else }}<span class="name">{problem.service}</span>{{ endif }}: {{ endif }}{problem.text}{{ if problem.detail }}
<pre class="error">{problem.detail}</pre>{{ endif }}</li>
{{ endfor }}</ul>
</section>
{{ endif }}<section id="haproxy">
<h2>HAProxy</h2>
{{ if haproxy }}<dl>
<dt>pid</dt><dd class="pid">{haproxy.pid}</dd>
<dt>version</dt><dd class="version">{haproxy.version}</dd>
<dt>serving since</dt><dd>{{ call when with haproxy.since }}</dd>
{{ if older }}<dt>finishing connections</dt><dd>{{ for generation in older }}{{ if @index }}, {{ endif }}<span class="generation">pid {generation.pid}{{ if generation.started }}, started {{ call when with generation.started }}{{ endif }}</span>{{ endfor }}</dd>
{{ endif }}</dl>
{{ else }}<p class="down">No HAProxy serves.</p>
{{ endif }}</section>
<section id="reload">
<h2>Last reload</h2>
{{ if reload }}<dl>
<dt>when</dt><dd>{{ call when with reload.at }}</dd>
<dt>result</dt><dd class="{reload.result}">{reload.result_text}</dd>
<dt>reasons</dt><dd>{{ if reload.reasons }}<ul class="reasons">{{ for reason in reload.reasons }}<li>{reason}</li>{{ endfor }}</ul>{{ else }}none given{{ endif }}</dd>
</dl>
{{ else }}<p>None since proxymgr started.</p>
{{ endif }}</section>
<section id="registry">
<h2>Registry</h2>
<dl>
<dt>source</dt><dd class="mono">{source}</dd>
<dt>last read</dt><dd>{{ if last_registry_read }}{{ call when with last_registry_read }}{{ else }}never{{ endif }}</dd>
</dl>
{{ if sessions }}<table class="sessions">
<thead><tr><th>ensemble</th><th>state</th><th>reconnects</th><th>expiries</th><th>last read</th></tr></thead>
<tbody>
{{ for session in sessions }}<tr class="session {{ if session.up }}up{{ else }}down{{ endif }}" data-ensemble="{session.ensemble}"><td class="mono">{session.ensemble}</td><td class="{{ if session.up }}up{{ else }}down{{ endif }}">{session.state}</td><td class="num">{session.reconnects}</td><td class="num">{session.expiries}</td><td>{{ if session.last_read }}{{ call when with session.last_read }}{{ else }}never{{ endif }}</td></tr>
{{ endfor }}</tbody>
</table>
{{ endif }}</section>
<section id="services">
<h2>Services</h2>
{{ if services }}{{ for service in services }}<section class="service{{ if service.has_problems }} has-problems{{ endif }}" id="service-{service.name}" data-service="{service.name}">
<h3>{service.name} <small class="meta">{service.port}, {service.in_rotation}</small></h3>
<dl>
<dt>watcher</dt><dd class="mono">{service.watcher}</dd>
<dt>watcher state</dt><dd class="watcher-state {service.watcher_state}">{service.watcher_state_text}</dd>
{{ if service.hold }}<dt>removal hold</dt><dd class="hold">keeps {service.hold.kept} in rotation, ends {{ call when with service.hold.until }}</dd>
{{ endif }}{{ if service.routes }}<dt>routes</dt><dd><ul class="routes">{{ for route in service.routes }}<li class="route {route.state}"><span class="mono">{route.route}</span> {route.text}</li>{{ endfor }}</ul></dd>
{{ endif }}</dl>
{{ if service.servers }}<table class="servers">
<thead>
<tr><th rowspan="2">server</th><th class="group" colspan="2">registry</th><th class="group" colspan="3">HAProxy</th><th rowspan="2">difference</th></tr>
<tr><th>present</th><th>weight</th><th>name</th><th>state</th><th>weight</th></tr>
</thead>
<tbody>
{{ for server in service.servers }}<tr class="server{{ if server.class }} {server.class}{{ endif }}" data-server="{server.name}"><td class="mono nowrap">{server.name}</td>{{ if server.in_registry }}<td>yes{{ if server.origin }}<span class="origin mono">{server.origin}</span>{{ endif }}</td><td class="num">{server.registry_weight}</td>{{ else }}<td class="no">no</td><td></td>{{ endif }}{{ if server.in_haproxy }}<td class="mono nowrap">{server.haproxy_name}</td><td class="{server.state}">{server.state}</td><td class="num">{server.haproxy_weight}</td>{{ else }}<td class="no" colspan="3">not in HAProxy</td>{{ endif }}<td class="difference">{server.difference}</td></tr>
{{ endfor }}</tbody>
</table>
{{ endif }}{{ if service.unlisted }}<p class="unlisted">{service.unlisted}</p>
{{ else }}{{ if service.servers }}{{ else }}<p>No server in either view.</p>
{{ endif }}{{ endif }}</section>
{{ endfor }}{{ else }}<p>No services.</p>
{{ endif }}</section>
</body>
</html>
"##;

#[cfg(test)]
mod tests;
