//! The page at `/`: a [`Status`] as HTML for a person, what is wrong first. Server-rendered with tinytemplate,
//! inline CSS, no JavaScript. Pure: `render(status, now)` returns the page; times are shown as ages from `now`
//! (`3m12s ago`, `in 4m00s`), with the UTC time in each `<time>` element's `datetime` and `title`.
//!
//! Everything from the registry and from HAProxy (service and server names, origins, reasons, HAProxy's error
//! text) is untrusted: it reaches the page only through tinytemplate's `{value}`, which HTML-escapes `<`, `>`,
//! `&`, `"` and `'`, so it can be neither markup nor break out of a quoted attribute. No unescaping formatter is
//! used here.
//!
//! The parts, in order, and what tests can find them by:
//! - `id="summary"`: one line, class `ok` or `problems` (`OK: 2 services, 5 servers in rotation` or
//!   `3 problems`).
//! - `id="problems"`: present only when something is wrong; one `<li class="problem KIND">` each, most severe
//!   first, with `data-service="NAME"` and a link `<a class="name" href="#service-NAME">` when it concerns a
//!   service. KIND is one of `no-haproxy`, `outage` (a registry session down), `rejected` (HAProxy rejected the
//!   config; its error in a `<pre class="error">`), `spec-rejected`, `reload-failed`, `no-server` (a service
//!   with no server in rotation), `blocked`, `quarantined`, `held` (a removal hold under way).
//! - `id="haproxy"`: the serving HAProxy (pid, version, since) and the older processes finishing their
//!   connections.
//! - `id="reload"`: the last reload (when, reasons, result as class `result-served`, `result-starting`,
//!   `result-rejected` or `result-failed`).
//! - `id="registry"`: the source and a table of registry sessions, one `<tr class="session up|down"
//!   data-ensemble="...">` each.
//! - `id="services"`: one `<section class="service" id="service-NAME" data-service="NAME">` per service (class
//!   `service has-problems` for those with one; they come first, then the others, each group by name) with its
//!   port, watcher and watcher state (`class="watcher-state awaiting|reporting"`), and a table of its servers,
//!   the registry's view beside HAProxy's: one `<tr class="server DIFF" data-server="ADDRESS:PORT">` each, its
//!   class `server` alone when the views agree, else DIFF is `quarantined`, `held`, `leaving`, `pending-reload`
//!   or `pending`; in the row, HAProxy's state is a `<td class="ready|maintenance">` and the difference's text
//!   a `<td class="difference">`. Beyond `LISTED_SERVERS` servers in all, only the servers whose views differ
//!   are rows, and a `<p class="unlisted">` says how many more each service has.

use serde::Serialize;
use tinytemplate::TinyTemplate;

use super::model::{
    Difference, Reload, ReloadResult, ServerState, ServerView, Service, Session, Status, WatcherState,
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

/// Something wrong, as the problems list names it. The variants are in the order the list shows them: the
/// ones that fail requests or stop proxymgr from following the registry first.
#[derive(Debug, Clone, PartialEq)]
enum Problem<'a> {
    /// No HAProxy serves.
    NoHaproxy,
    /// A registry session is down; `since` is None when the session never connected.
    Outage { ensemble: &'a str, since: Option<f64> },
    /// HAProxy rejected the config proxymgr would serve.
    Rejected { at: f64, error: &'a str },
    /// HAProxy rejected this service's current spec; the one served last stands in.
    SpecRejected { service: &'a str },
    /// The last reload failed for another reason than a rejected config.
    ReloadFailed { at: f64 },
    /// A service has no server in rotation.
    NoServer { service: &'a str, why: NoServerWhy },
    /// A service of the registry is not served.
    Blocked { service: &'a str, reason: &'a str },
    /// HAProxy refused a server, held out of rotation.
    Quarantined { service: &'a str, server: &'a str, reason: &'a str },
    /// A removal hold keeps servers the registry no longer has in rotation.
    Held { service: &'a str, until: f64, kept: &'a [String] },
}

/// Why a service has no server in rotation, as far as the status tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoServerWhy {
    /// Its watcher has not reported a set yet.
    Awaiting,
    /// The registry lists none.
    NoneRegistered,
    /// The registry lists some, none of which HAProxy has in rotation.
    NoneReady,
}

/// Every problem in `status`, most severe first (the order of [`Problem`]'s variants), each kind in the order
/// of the status' lists.
fn problems(status: &Status) -> Vec<Problem<'_>> {
    let mut found = Vec::new();
    if status.haproxy.is_none() {
        found.push(Problem::NoHaproxy);
    }
    for session in status.registry.iter().filter(|s| !s.connected || s.outage_since.is_some()) {
        found.push(Problem::Outage { ensemble: &session.ensemble, since: session.outage_since });
    }
    if let Some(rejected) = &status.rejected {
        found.push(Problem::Rejected { at: rejected.at, error: &rejected.error });
    }
    for service in status.services.iter().filter(|s| s.spec_rejected) {
        found.push(Problem::SpecRejected { service: &service.name });
    }
    if let Some(Reload { at, result: ReloadResult::Failed, .. }) = &status.last_reload {
        found.push(Problem::ReloadFailed { at: *at });
    }
    for service in status.services.iter().filter(|s| s.in_rotation() == 0) {
        let why = if service.watcher_state == WatcherState::Awaiting {
            NoServerWhy::Awaiting
        } else if service.all_servers().all(|s| s.registry.is_none()) {
            NoServerWhy::NoneRegistered
        } else {
            NoServerWhy::NoneReady
        };
        found.push(Problem::NoServer { service: &service.name, why });
    }
    for blocked in &status.blocked {
        found.push(Problem::Blocked { service: &blocked.service, reason: &blocked.reason });
    }
    for service in &status.services {
        for server in service.quarantined() {
            if let Some(Difference::Quarantined { reason }) = &server.difference {
                found.push(Problem::Quarantined { service: &service.name, server: &server.name, reason });
            }
        }
    }
    for service in &status.services {
        if let Some(hold) = &service.hold {
            found.push(Problem::Held { service: &service.name, until: hold.until, kept: &hold.kept });
        }
    }
    found
}

impl Problem<'_> {
    /// The class that names the kind on the page.
    fn kind(&self) -> &'static str {
        match self {
            Problem::NoHaproxy => "no-haproxy",
            Problem::Outage { .. } => "outage",
            Problem::Rejected { .. } => "rejected",
            Problem::SpecRejected { .. } => "spec-rejected",
            Problem::ReloadFailed { .. } => "reload-failed",
            Problem::NoServer { .. } => "no-server",
            Problem::Blocked { .. } => "blocked",
            Problem::Quarantined { .. } => "quarantined",
            Problem::Held { .. } => "held",
        }
    }

    /// The service it concerns, if one.
    fn service(&self) -> Option<&str> {
        match self {
            Problem::NoHaproxy
            | Problem::Outage { .. }
            | Problem::Rejected { .. }
            | Problem::ReloadFailed { .. } => None,
            Problem::SpecRejected { service }
            | Problem::NoServer { service, .. }
            | Problem::Blocked { service, .. }
            | Problem::Quarantined { service, .. }
            | Problem::Held { service, .. } => Some(service),
        }
    }

    /// What the list says, without the service's name (the page puts it first) and without a long detail.
    fn text(&self, now: f64) -> String {
        match self {
            Problem::NoHaproxy => "no HAProxy serves".to_string(),
            Problem::Outage { ensemble, since: Some(since) } => {
                format!("registry session {ensemble} down for {}", span(now - since))
            }
            Problem::Outage { ensemble, since: None } => format!("registry session {ensemble} not connected"),
            Problem::Rejected { at, .. } => {
                format!(
                    "HAProxy rejected the config {}; the last config it took serves on",
                    relative(*at, now)
                )
            }
            Problem::SpecRejected { .. } => {
                "HAProxy rejected its current spec; the spec served last stands in for it".to_string()
            }
            Problem::ReloadFailed { at } => {
                format!("the last reload, {}, failed; it is tried again with backoff", relative(*at, now))
            }
            Problem::NoServer { why, .. } => match why {
                NoServerWhy::Awaiting => {
                    "no server in rotation: its watcher has not reported yet".to_string()
                }
                NoServerWhy::NoneRegistered => "no server in rotation: the registry lists none".to_string(),
                NoServerWhy::NoneReady => "no server in rotation".to_string(),
            },
            Problem::Blocked { reason, .. } => format!("not served: {reason}"),
            Problem::Quarantined { server, reason, .. } => format!("server {server} quarantined: {reason}"),
            Problem::Held { until, kept, .. } => format!(
                "removal hold keeps {} in rotation, ends {}: {}",
                count(kept.len(), "server", "servers"),
                relative(*until, now),
                kept.join(", ")
            ),
        }
    }

    /// A long text shown as it is, below the line (HAProxy's error).
    fn detail(&self) -> &str {
        match self {
            Problem::Rejected { error, .. } => error,
            _ => "",
        }
    }
}

/// The page's context: every text already formed, so the template only places and escapes it.
#[derive(Serialize)]
struct Page {
    title: String,
    version: String,
    published: When,
    started: When,
    ok: bool,
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
    port: u16,
    watcher: String,
    watcher_state: &'static str,
    watcher_state_text: &'static str,
    in_rotation: String,
    hold: Option<HoldPart>,
    servers: Vec<ServerPart>,
    /// What says the servers left out of the table (those whose two views agree, when there are too many to
    /// list); empty when none is.
    unlisted: String,
}

/// The most servers the page lists in all: beyond it, only those whose two views differ are (a page of 50 000
/// rows helps nobody, and would cost the daemon tens of megabytes to render); `/status` has every one.
pub const LISTED_SERVERS: usize = 2000;

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
        let problems = problems(status);
        let troubled: Vec<&str> = problems.iter().filter_map(Problem::service).collect();
        let all = status.services.iter().map(|s| s.server_count()).sum::<usize>() <= LISTED_SERVERS;
        let ok = problems.is_empty();
        let summary = if ok {
            let servers: usize = status.services.iter().map(|s| s.in_rotation()).sum();
            format!(
                "OK: {}, {} in rotation",
                count(status.services.len(), "service", "services"),
                count(servers, "server", "servers")
            )
        } else {
            count(problems.len(), "problem", "problems")
        };
        let title = format!("proxymgr: {}", if ok { "OK" } else { &summary });

        let served: Vec<&str> = status.services.iter().map(|s| s.name.as_str()).collect();
        let problem_parts = problems
            .iter()
            .map(|problem| ProblemPart {
                kind: problem.kind(),
                service: problem.service().unwrap_or_default().to_string(),
                linked: problem.service().is_some_and(|name| served.contains(&name)),
                text: problem.text(now),
                detail: problem.detail().to_string(),
            })
            .collect();

        let mut services: Vec<&Service> = status.services.iter().map(|s| &**s).collect();
        services.sort_by_key(|s| (!troubled.contains(&s.name.as_str()), &s.name));

        Page {
            title,
            version: status.version.clone(),
            published: When::new(status.published, now),
            started: When::new(status.started, now),
            ok,
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
        let up = session.connected && session.outage_since.is_none();
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
            port: service.port,
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
#summary.ok \{ background: #e3f5e6; color: #185c27; border: 1px solid #a9dcb3; }
#summary.problems \{ background: #fdeaea; color: #8a1c1c; border: 1px solid #f0b4b4; }
#problems ul \{ list-style: none; padding: 0; margin: 0; }
.problem \{ background: #fff; border: 1px solid #e3c3c3; border-left: 5px solid #c62828; border-radius: 4px;
  padding: .45rem .7rem; margin: 0 0 .4rem; }
.problem.held, .problem.quarantined, .problem.spec-rejected \{ border-left-color: #d98a00; border-color: #ecd9b5; }
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
<p id="summary" class="{{ if ok }}ok{{ else }}problems{{ endif }}">{summary}</p>
{{ if problems }}<section id="problems">
<h2>Problems</h2>
<ul>
{{ for problem in problems }}<li class="problem {problem.kind}"{{ if problem.service }} data-service="{problem.service}"{{ endif }}><span class="kind">{problem.kind}</span> {{ if problem.service }}{{ if problem.linked }}<a class="name" href="#service-{problem.service}">{problem.service}</a>{{ else }}<span class="name">{problem.service}</span>{{ endif }}: {{ endif }}{problem.text}{{ if problem.detail }}
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
<h3>{service.name} <small class="meta">port {service.port}, {service.in_rotation}</small></h3>
<dl>
<dt>watcher</dt><dd class="mono">{service.watcher}</dd>
<dt>watcher state</dt><dd class="watcher-state {service.watcher_state}">{service.watcher_state_text}</dd>
{{ if service.hold }}<dt>removal hold</dt><dd class="hold">keeps {service.hold.kept} in rotation, ends {{ call when with service.hold.until }}</dd>
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
