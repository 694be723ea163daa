//! Registrations HAProxy will not take, kept out so that they hold nothing else up. Pure: the core asks what a
//! refusal or a rejected config says about whom, and keeps the answers here.
//!
//! A server is **quarantined** alone when HAProxy refuses it: `add server` refused it for a reason of its own
//! (an unknown keyword in its options), or a candidate config failed on its line (HAProxy's alerts name the
//! file and line, so one check finds every culprit of a parsing pass, not one reload per server). It is left
//! out of the runtime and of haproxy.cfg until its registration or its service's server options change.
//! A server `add server` refuses for a reason a reload would not (an option dynamic servers do not take) goes
//! **by reload** instead. A service whose own options fail a candidate keeps the spec HAProxy last served (or
//! stays out, if it never served) until its definition changes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::haproxy::command::Refusal;
use crate::service::{Server, ServiceSpec};

/// Who a line of a rendered config belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// `global` and `defaults`: the operator's proxymgr.yml, nobody to quarantine.
    Head,
    /// A service's `listen` section without its servers: its listen options.
    Listen(String),
    /// A `server` line: the service and the server's name.
    Server(String, String),
}

/// Which lines of a rendered config belong to whom. It costs a few entries a service, not one a server: a
/// service's server lines are one a server, in the order of the set it keeps (shared, not copied).
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// Each part with its first line (1-based), in order.
    parts: Vec<(usize, Part)>,
    /// The line after the last part.
    end: usize,
}

#[derive(Debug, Clone)]
enum Part {
    Head,
    Listen(String),
    Servers(String, Arc<Vec<Server>>),
}

impl Layout {
    /// Appends the head, of `text`'s lines.
    pub fn head(&mut self, text: &str) {
        self.push(Part::Head, text.matches('\n').count());
    }

    /// Appends a service's listen section, of `text`'s lines, then its server lines, one for each of `servers`,
    /// then `empty_slots` lines of empty slots (`server-template`), which have the service's server options.
    pub fn service(&mut self, name: &str, text: &str, servers: &Arc<Vec<Server>>, empty_slots: usize) {
        self.push(Part::Listen(name.to_string()), text.matches('\n').count());
        self.push(Part::Servers(name.to_string(), servers.clone()), servers.len());
        self.push(Part::Listen(name.to_string()), empty_slots);
    }

    fn push(&mut self, part: Part, lines: usize) {
        if lines == 0 {
            return;
        }
        self.end = self.end.max(1);
        self.parts.push((self.end, part));
        self.end += lines;
    }

    /// Whether a service's listen section is laid out here.
    pub fn has_service(&self, name: &str) -> bool {
        self.parts.iter().any(|(_, part)| matches!(part, Part::Listen(n) if n == name))
    }

    /// The piece line `line` (1-based) belongs to.
    pub fn piece(&self, line: usize) -> Option<Piece> {
        if line >= self.end {
            return None;
        }
        let at = self.parts.partition_point(|(start, _)| *start <= line).checked_sub(1)?;
        let (start, part) = &self.parts[at];
        Some(match part {
            Part::Head => Piece::Head,
            Part::Listen(name) => Piece::Listen(name.clone()),
            Part::Servers(name, servers) => Piece::Server(name.clone(), servers.get(line - start)?.name()),
        })
    }
}

/// Who HAProxy's complaint is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Culprit {
    /// The service's own options (listen options, or its server options on every server line).
    Service(String),
    Server {
        service: String,
        server: String,
    },
}

/// What a refused `add server` says about the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// About the backend (its balance algorithm, or an option every server of it has that dynamic servers do
    /// not take): its new servers take a reload.
    Backend,
    /// About this server's own options, which HAProxy takes only from a config: it goes by reload.
    ByReload,
    /// This server is bad (an option HAProxy does not know): a reload would fail on it too.
    Server,
}

/// Classifies HAProxy's refusal of `server`'s `add server`. `shared` are the option lines every server of the
/// service gets (its `default-server` lines and its server options).
pub fn refused(refusal: &Refusal, shared: &[&str], server: &Server) -> Refused {
    let own = |keyword: &str| server.options.iter().any(|line| has_word(line, keyword));
    let shared = |keyword: &str| shared.iter().any(|line| has_word(line, keyword));
    match refusal {
        refusal if refusal.backend_wide() => Refused::Backend,
        Refusal::NotForDynamic { keyword } if own(keyword) && !shared(keyword) => Refused::ByReload,
        Refusal::NotForDynamic { .. } => Refused::Backend,
        Refusal::UnknownKeyword { keyword } if shared(keyword) && !own(keyword) => Refused::Backend,
        Refusal::UnknownKeyword { .. } => Refused::Server,
        // Not understood: a reload says, and its config names the line at fault if there is one.
        _ => Refused::ByReload,
    }
}

/// The line an alert names: `[file:42]`.
fn line_named(alert: &str) -> Option<usize> {
    let mut rest = alert;
    while let Some(open) = rest.find('[') {
        let close = open + rest[open..].find(']')?;
        let inside = &rest[open + 1..close];
        if let Some(line) = inside.rsplit_once(':').and_then(|(_, n)| n.parse().ok()) {
            return Some(line);
        }
        rest = &rest[close + 1..];
    }
    None
}

/// The section an alert that names no line is about, as HAProxy's checks after parsing word it: `Proxy 'web':
/// unable to find required use_backend`, `backend 'web' needs at least 1 server in balance mode`.
fn section_named(alert: &str) -> Option<&str> {
    ["Proxy '", "proxy '", "listen '", "backend '", "frontend '"].iter().find_map(|marker| {
        let after = &alert[alert.find(marker)? + marker.len()..];
        Some(&after[..after.find('\'')?])
    })
}

/// Who each of HAProxy's alerts on a rejected config (joined by ` | `) laid out as `layout` is about. An alert that names a line: the line's server,
/// unless the alert quotes a word of the service's shared server options (and not of the server's own), which
/// makes it the service's; a line of a listen section is its service's. One that names no line but a section
/// (HAProxy's checks after parsing): that service's. The head is the operator's: no culprit.
pub fn blame<'a>(
    layout: &Layout,
    alerts: &str,
    shared: impl Fn(&str) -> Vec<&'a str>,
    server_options: impl Fn(&str, &str) -> Vec<&'a str>,
) -> Vec<(Culprit, String)> {
    let mut culprits: Vec<(Culprit, String)> = Vec::new();
    for alert in alerts.split(" | ").map(str::trim) {
        let piece = match line_named(alert) {
            Some(line) => layout.piece(line),
            None => {
                section_named(alert).filter(|name| layout.has_service(name)).map(|n| Piece::Listen(n.into()))
            }
        };
        let culprit = match &piece {
            None | Some(Piece::Head) => continue,
            Some(Piece::Listen(service)) => Culprit::Service(service.clone()),
            Some(Piece::Server(service, server)) => {
                let own = server_options(service, server);
                let shared = shared(service);
                let has = |lines: &[&str], word: &str| lines.iter().any(|l| has_word(l, word));
                let first_option = quoted(alert).find(|w| has(&own, w) || has(&shared, w));
                match first_option {
                    Some(word) if has(&shared, word) && !has(&own, word) => Culprit::Service(service.clone()),
                    _ => Culprit::Server { service: service.clone(), server: server.clone() },
                }
            }
        };
        match culprits.iter_mut().find(|(c, _)| *c == culprit) {
            Some((_, reasons)) => {
                reasons.push_str(" | ");
                reasons.push_str(alert);
            }
            None => culprits.push((culprit, alert.to_string())),
        }
    }
    culprits
}

fn has_word(line: &str, word: &str) -> bool {
    line.split_whitespace().any(|w| w == word)
}

/// The words HAProxy quotes in an alert: `'chekc'`.
fn quoted(alert: &str) -> impl Iterator<Item = &str> {
    alert.split('\'').skip(1).step_by(2)
}

/// A server held out, as it was when HAProxy refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    server: Server,
    /// Its service's server options then.
    shared: Vec<String>,
    out: bool,
    /// HAProxy's words, for what proxymgr shows of itself.
    reason: String,
}

/// The servers held out or sent by reload, and the service specs HAProxy rejected.
#[derive(Debug, Default)]
pub struct Quarantine {
    servers: BTreeMap<String, BTreeMap<String, Entry>>,
    /// Per service, the names of its servers that go by reload.
    by_reload: BTreeMap<String, BTreeSet<String>>,
    /// The spec HAProxy rejected, per service.
    specs: BTreeMap<String, ServiceSpec>,
}

static NONE: BTreeSet<String> = BTreeSet::new();

impl Quarantine {
    /// Holds `server` of `service` out (`out`) or sends it by reload, for HAProxy's `reason`, until it or the
    /// service's server options change. Returns false when it already was.
    pub fn hold(
        &mut self,
        service: &str,
        spec: &ServiceSpec,
        server: &Server,
        out: bool,
        reason: &str,
    ) -> bool {
        let entry = Entry {
            server: server.clone(),
            shared: spec.server_options.clone(),
            out,
            reason: reason.to_string(),
        };
        let name = server.name();
        if !out {
            self.by_reload.entry(service.to_string()).or_default().insert(name.clone());
        }
        let entries = self.servers.entry(service.to_string()).or_default();
        let before = entries.insert(name, entry.clone());
        before.map_or(true, |b| (b.server, b.shared, b.out) != (entry.server, entry.shared, entry.out))
    }

    /// The servers of `service` held out, by name, with HAProxy's reason.
    pub fn held_out(&self, service: &str) -> impl Iterator<Item = (&str, &str)> {
        let entries = self.servers.get(service).into_iter().flatten();
        entries.filter(|(_, e)| e.out).map(|(name, e)| (name.as_str(), e.reason.as_str()))
    }

    /// Whether HAProxy rejected some service's current spec.
    pub fn any_spec_rejected(&self) -> bool {
        !self.specs.is_empty()
    }

    /// Whether HAProxy rejected `service`'s current spec (the one it served last stands in for it).
    pub fn spec_rejected(&self, service: &str) -> bool {
        self.specs.contains_key(service)
    }

    /// `reported` without the servers held out, and forgetting those that changed (or left): they are tried
    /// again. Returns the servers to serve, and the servers tried again.
    pub fn admit(
        &mut self,
        service: &str,
        spec: &ServiceSpec,
        reported: &Arc<Vec<Server>>,
    ) -> (Arc<Vec<Server>>, Vec<String>) {
        let Some(entries) = self.servers.get_mut(service) else { return (reported.clone(), Vec::new()) };
        let mut again = Vec::new();
        entries.retain(|name, entry| {
            let same = entry.shared == spec.server_options && reported.contains(&entry.server);
            if !same {
                again.push(name.clone());
            }
            same
        });
        if let Some(names) = self.by_reload.get_mut(service) {
            names.retain(|name| entries.contains_key(name));
        }
        let out = |s: &Server| entries.get(&s.name()).is_some_and(|e| e.out && e.server == *s);
        let servers = if reported.iter().any(out) {
            Arc::new(reported.iter().filter(|s| !out(s)).cloned().collect())
        } else {
            reported.clone()
        };
        if entries.is_empty() {
            self.servers.remove(service);
            self.by_reload.remove(service);
        }
        (servers, again)
    }

    /// The names of `service`'s servers that go by reload.
    pub fn by_reload(&self, service: &str) -> &BTreeSet<String> {
        self.by_reload.get(service).unwrap_or(&NONE)
    }

    /// HAProxy rejected `spec` of `service`. Returns false when it already had.
    pub fn reject(&mut self, service: &str, spec: &ServiceSpec) -> bool {
        self.specs.insert(service.to_string(), spec.clone()).as_ref() != Some(spec)
    }

    /// The registry's set as HAProxy is to get it: a spec HAProxy rejected is replaced by `served`, the one it
    /// last served, or left out if there is none. A service whose definition changed is tried again.
    pub fn specs(
        &mut self,
        mut registry: BTreeMap<String, ServiceSpec>,
        served: &BTreeMap<String, ServiceSpec>,
    ) -> BTreeMap<String, ServiceSpec> {
        self.specs.retain(|name, rejected| {
            let same = registry.get(name) == Some(rejected);
            if !same && registry.contains_key(name) {
                log::info!("service {name}: its definition changed; trying it again");
            }
            same
        });
        for (name, rejected) in &self.specs {
            // The spec served is no way out when it is the one rejected (a new HAProxy binary, say).
            match served.get(name).filter(|good| *good != rejected) {
                Some(good) => registry.insert(name.clone(), good.clone()),
                None => registry.remove(name),
            };
        }
        registry
    }

    /// Forgets the servers of services gone.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.servers.retain(|name, _| keep(name));
        self.by_reload.retain(|name, _| keep(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::WatcherSpec;

    fn server(port: u16, options: &[&str]) -> Server {
        Server {
            options: options.iter().map(|o| o.to_string()).collect(),
            ..Server::new("10.0.0.1", port.into()).unwrap()
        }
    }

    fn spec(server_options: &[&str]) -> ServiceSpec {
        ServiceSpec {
            port: Some(80),
            listen_options: vec![],
            server_options: server_options.iter().map(|o| o.to_string()).collect(),
            watcher: WatcherSpec::Zookeeper { server: "127.0.0.1:2181".into(), path: "/services/web".into() },
            ..ServiceSpec::example()
        }
    }

    #[test]
    fn refusals_of_add_server_by_whom_they_are_about() {
        let nfd = |k: &str| Refusal::NotForDynamic { keyword: k.into() };
        let unknown = |k: &str| Refusal::UnknownKeyword { keyword: k.into() };
        let shared = ["check inter 2s", "cookie-ish"];
        let cases = [
            (Refusal::BackendNotDynamic, &[][..], Refused::Backend),
            (Refusal::NoSuchBackend, &[], Refused::Backend),
            (nfd("cookie"), &["cookie s1"][..], Refused::ByReload),
            (nfd("inter"), &[], Refused::Backend),
            (nfd("track"), &[], Refused::Backend),
            (unknown("chekc"), &["chekc"], Refused::Server),
            (unknown("inter"), &[], Refused::Backend),
            (unknown("whatever"), &[], Refused::Server),
            (Refusal::Other, &["backup"], Refused::ByReload),
        ];
        for (refusal, own, want) in cases {
            assert_eq!(refused(&refusal, &shared, &server(1, own)), want, "{refusal:?} with {own:?}");
        }
    }

    #[test]
    fn alerts_with_the_lines_they_name() {
        let alerts = "[ALERT]    (7) : config : [/etc/h.cfg:10] : 'server a/x' : unknown keyword 'chekc' | \
                      [ALERT] 123/456 (7) : parsing [/etc/h.cfg:15] : balance only supports 'roundrobin' | \
                      [ALERT]    (7) : config : Fatal errors found in configuration.";
        let lines: Vec<Option<usize>> = alerts.split(" | ").map(line_named).collect();
        assert_eq!(lines, [Some(10), Some(15), None]);
        assert_eq!(line_named("haproxy: cannot open [x]"), None);
    }

    #[test]
    fn lines_belong_to_the_head_a_listen_section_or_a_server() {
        let mut layout = Layout::default();
        layout.head("global\n  x\n");
        layout.service(
            "web",
            "\nlisten web\n  bind fd@3\n",
            &Arc::new(vec![server(1, &[]), server(2, &[])]),
            1,
        );
        layout.service("api", "", &Arc::default(), 0);
        let pieces: Vec<_> = (0..10).map(|l| layout.piece(l)).collect();
        let (head, web) = (Some(Piece::Head), Some(Piece::Listen("web".into())));
        let srv = |s: &str| Some(Piece::Server("web".into(), s.into()));
        let (one, two) = (srv("10.0.0.1:1"), srv("10.0.0.1:2"));
        // The last line of web is its empty slots' `server-template`: the service's server options.
        assert_eq!(
            pieces,
            [None, head.clone(), head, web.clone(), web.clone(), web.clone(), one, two, web, None]
        );
    }

    #[test]
    fn a_complaint_about_a_server_line_blames_the_server_unless_it_quotes_the_services_options() {
        let mut layout = Layout::default();
        layout.head("global\n");
        layout.service(
            "web",
            "listen web\n  balance x\n",
            &Arc::new(vec![server(1, &[]), server(2, &[])]),
            0,
        );
        let shared = |_: &str| vec!["chekc inter 1s"];
        let own =
            |_: &str, server: &str| if server == "10.0.0.1:1" { vec!["backup", "check"] } else { vec![] };
        let blamed =
            |alert: &str| blame(&layout, alert, shared, own).into_iter().map(|(c, _)| c).collect::<Vec<_>>();
        let a = Culprit::Server { service: "web".into(), server: "10.0.0.1:1".into() };
        let web = Culprit::Service("web".into());
        assert_eq!(blamed("[f:1] : bad global"), []);
        assert_eq!(blamed("config : Fatal errors found in configuration."), []);
        assert_eq!(
            blamed("config : Proxy 'web': unable to find required use_backend: 'x'."),
            vec![web.clone()]
        );
        assert_eq!(blamed("config : backend 'other' needs at least 1 server"), [], "not a service of ours");
        assert_eq!(blamed("[f:3] : unknown balance 'x'"), vec![web.clone()]);
        assert_eq!(blamed("[f:4] : 'server web/a' : unknown keyword 'backupp'"), vec![a.clone()]);
        assert_eq!(
            blamed("[f:4] : 'server web/a' : unknown keyword 'chekc'; did you mean 'check' maybe ?"),
            vec![web],
            "the typo is the service's; HAProxy's suggestion is not looked at"
        );
        assert_eq!(blamed("[f:4] : 'server web/a' : weight of server a is not within 0 and 256"), vec![a]);
        let both = blame(&layout, "[f:4] : x | [f:4] : y | [f:5] : z", shared, own);
        assert_eq!(both.len(), 2, "one culprit once, with every alert about it: {both:?}");
        assert_eq!(both[0].1, "[f:4] : x | [f:4] : y");
    }

    #[test]
    fn a_held_server_stays_out_until_it_or_its_services_options_change() {
        let mut q = Quarantine::default();
        let web = spec(&["check"]);
        let (good, bad) = (server(1, &[]), server(2, &["chekc"]));
        let reported = Arc::new(vec![good.clone(), bad.clone()]);
        assert!(q.hold("web", &web, &bad, true, "refused"));
        assert!(!q.hold("web", &web, &bad, true, "refused"), "held already");
        assert_eq!(
            q.held_out("web").collect::<Vec<_>>(),
            [("10.0.0.1:2", "refused")],
            "shown with the reason"
        );
        let (servers, again) = q.admit("web", &web, &reported);
        assert_eq!((servers.as_slice(), again.len()), (&[good.clone()][..], 0));
        let fixed = Arc::new(vec![good.clone(), server(2, &["check"])]);
        let (servers, again) = q.admit("web", &web, &fixed);
        assert!(Arc::ptr_eq(&servers, &fixed) && again == ["10.0.0.1:2"], "its registration changed");
        q.hold("web", &web, &bad, true, "refused");
        let (servers, _) = q.admit("web", &spec(&["check", "inter 1s"]), &reported);
        assert_eq!(servers.len(), 2, "the service's server options changed");
        // By reload: served, and named for the planner, until it changes.
        q.hold("web", &web, &bad, false, "refused");
        assert!(q.by_reload("web").contains("10.0.0.1:2"));
        assert_eq!(q.admit("web", &web, &reported).0.len(), 2);
        q.admit("web", &web, &Arc::new(vec![good]));
        assert!(q.by_reload("web").is_empty());
    }

    #[test]
    fn a_rejected_spec_gives_way_to_the_one_served_or_to_nothing() {
        let mut q = Quarantine::default();
        let (good, bad, fixed) = (spec(&["check"]), spec(&["chekc"]), spec(&["check", "inter 1s"]));
        let registry = |web: &ServiceSpec| {
            BTreeMap::from([("web".to_string(), web.clone()), ("api".to_string(), good.clone())])
        };
        let served = BTreeMap::from([("web".to_string(), good.clone())]);
        q.reject("web", &bad);
        q.reject("api", &good);
        let view = q.specs(registry(&bad), &served);
        assert_eq!(view.get("web"), Some(&good), "web keeps the spec served");
        assert_eq!(view.get("api"), None, "api never served another: left out");
        assert_eq!(q.specs(registry(&fixed), &served).get("web"), Some(&fixed), "a new definition is tried");
        q.reject("web", &good);
        assert_eq!(q.specs(registry(&good), &served).get("web"), None, "the spec served itself was rejected");
    }
}
