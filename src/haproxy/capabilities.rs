//! What each HAProxy version can do, as far as proxymgr cares: one table ([`FEATURES`]), from which a version's
//! [`Capabilities`], the lines proxymgr logs at start and the README's table all come. Pure.
//!
//! The versions are those the tests run (`make test`'s matrix, issue 14): 1.8 is the oldest proxymgr is tested
//! on; older ones (1.5 to 1.7) start, with less.

#[cfg(test)]
use std::fmt::Write;

use super::process::Binary;
use crate::config::HaproxyConfig;

/// One thing HAProxy has from a version on, and what proxymgr does with it and without it.
pub struct Feature {
    pub since: (u32, u32),
    /// What HAProxy has, as its manual names it.
    pub haproxy: &'static str,
    /// What proxymgr does with it.
    pub with: &'static str,
    /// What proxymgr does on a HAProxy without it.
    pub without: &'static str,
}

const SET_SERVER_STATE: usize = 0;
const HARD_STOP_AFTER: usize = 1;
const INIT_ADDR: usize = 2;
const SLOTS: usize = 3;
const PROMETHEUS_EXPORTER: usize = 4;
const ADD_SERVER: usize = 5;
const IDLE_CLOSE: usize = 6;
const SHARED_FRONTENDS: usize = 7;

pub const FEATURES: [Feature; 8] = [
    Feature {
        since: (1, 6),
        haproxy: "`set server <b>/<s> state ready|maint`, `show servers state`",
        with: "a server out of the registry goes into maintenance and back at run time; the drift check reads HAProxy's state",
        without: "`enable server`/`disable server`",
    },
    Feature {
        since: (1, 7),
        haproxy: "`hard-stop-after` (global)",
        with: "rendered from `haproxy.hard_stop_after`: an old generation ends after it",
        without: "old generations end when their connections do, or at the cap on generations",
    },
    Feature {
        since: (1, 7),
        haproxy: "`init-addr` (server)",
        with: "a server named by a host name that does not resolve starts in maintenance",
        without: "such a server makes HAProxy refuse the config",
    },
    Feature {
        since: (1, 8),
        haproxy: "`server-template`, `set server <b>/<s> addr <ip> port <port>`",
        with: "new servers fill spare slots at run time, no reload (where `add server` is missing)",
        without: "every new server takes a reload",
    },
    Feature {
        since: (2, 0),
        haproxy: "`http-request use-service prometheus-exporter` (in builds with the exporter)",
        with: "rendered when `haproxy.prometheus_exporter` is set: HAProxy's own metrics at `/metrics` there",
        without: "not rendered; proxymgr warns at start when `haproxy.prometheus_exporter` is set",
    },
    Feature {
        since: (2, 5),
        haproxy: "`add server`, `del server`, `enable health` (not experimental)",
        with: "new servers are added at run time; servers long gone are deleted at the drift check",
        without: "slots (1.8 to 2.4); servers gone wait in maintenance until a newcomer takes their slot or the next reload",
    },
    Feature {
        since: (2, 6),
        haproxy: "`option idle-close-on-response`",
        with: "rendered in HTTP services: keep-alive clients lose no request at a reload",
        without: "not rendered: an idle keep-alive connection may be closed at a reload as its client sends on it",
    },
    Feature {
        since: (1, 6),
        haproxy: "`http-request set-var`, `replace-header`; `map_beg`; `add map`, `set map`, `del map`, `show map`",
        with: "shared frontends (`haproxy.frontends`) route by host and path through maps changed at run time",
        without: "frontends not rendered (proxymgr warns at start): services are reached on their own ports only",
    },
];

/// The HAProxy versions `make test` runs the version-dependent tests on (the README's table's columns).
#[cfg(test)]
pub const TESTED: [(u32, u32); 7] = [(1, 8), (2, 4), (2, 6), (2, 8), (3, 0), (3, 2), (3, 4)];

/// What the HAProxy version at hand can do, as far as proxymgr cares (from [`FEATURES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// `set server <b>/<s> state ready|maint` (1.6); before it, `enable/disable server`.
    pub set_server_state: bool,
    /// `hard-stop-after` (1.7).
    pub hard_stop_after: bool,
    /// A server's `init-addr` (1.7).
    pub init_addr: bool,
    /// `server-template` and `set server ... addr ... port` (1.8): spare slots for new servers, where
    /// `add_server` is missing (`slots.rs`).
    pub slots: bool,
    /// `add server` without experimental mode, `del server` (2.5).
    pub add_server: bool,
    /// `option idle-close-on-response` (2.6).
    pub idle_close_on_response: bool,
    /// `http-request use-service prometheus-exporter` (2.0), where HAProxy was built with it.
    pub prometheus_exporter: bool,
    /// What shared frontends route with: `http-request set-var` and `replace-header`, map lookups and their
    /// runtime commands (1.6).
    pub shared_frontends: bool,
}

impl Capabilities {
    pub const fn of(version: (u32, u32)) -> Capabilities {
        let add_server = has(version, ADD_SERVER);
        Capabilities {
            set_server_state: has(version, SET_SERVER_STATE),
            hard_stop_after: has(version, HARD_STOP_AFTER),
            init_addr: has(version, INIT_ADDR),
            slots: has(version, SLOTS) && !add_server,
            add_server,
            idle_close_on_response: has(version, IDLE_CLOSE),
            prometheus_exporter: has(version, PROMETHEUS_EXPORTER),
            shared_frontends: has(version, SHARED_FRONTENDS),
        }
    }

    /// What `binary` can do: its version's capabilities, less the exporter where it was built without it.
    pub fn of_binary(binary: &Binary) -> Capabilities {
        let version = Capabilities::of(binary.version);
        Capabilities {
            prometheus_exporter: version.prometheus_exporter && binary.prometheus_exporter,
            ..version
        }
    }

    /// What `config` asks of HAProxy that this version lacks and so goes unrendered, a line each, for a warning
    /// at start.
    pub fn unmet(&self, config: &HaproxyConfig) -> Vec<String> {
        let mut unmet = Vec::new();
        if let Some(address) = config.prometheus_exporter.filter(|_| !self.prometheus_exporter) {
            unmet.push(format!(
                "haproxy.prometheus_exporter ({address}) is not rendered: HAProxy has no Prometheus exporter \
                 (before 2.0, or built without USE_PROMEX: `haproxy -vv` lists no prometheus-exporter service)"
            ));
        }
        if !config.frontends.is_empty() && !self.shared_frontends {
            let names: Vec<&str> = config.frontends.keys().map(String::as_str).collect();
            unmet.push(format!(
                "haproxy.frontends ({}) are not rendered: HAProxy before 1.6 has no `http-request set-var` to \
                 route with; services are reached on their own ports only",
                names.join(", ")
            ));
        }
        unmet
    }

    /// How new servers reach HAProxy, in a few words for the log.
    pub fn new_servers(&self) -> &'static str {
        if self.add_server {
            "new servers: add server at run time"
        } else if self.slots {
            "new servers: runtime slots"
        } else {
            "new servers: reload"
        }
    }
}

/// What proxymgr does on `version`, a line per feature, for the log at start.
pub fn summary(version: (u32, u32)) -> Vec<String> {
    FEATURES
        .iter()
        .map(|f| {
            let (has, does) = if at_least(version, f.since) { ("yes", f.with) } else { ("no", f.without) };
            format!("{} ({}.{}+): {has}: {does}", f.haproxy, f.since.0, f.since.1)
        })
        .collect()
}

/// The README's table: a row per feature, a column per tested version.
#[cfg(test)]
pub fn markdown() -> String {
    let mut text = String::from("| HAProxy has | since |");
    for (major, minor) in TESTED {
        let _ = write!(text, " {major}.{minor} |");
    }
    text.push_str(" proxymgr with it | without it |\n|---|---|");
    text.push_str(&"---|".repeat(TESTED.len()));
    text.push_str("---|---|\n");
    for f in &FEATURES {
        let _ = write!(text, "| {} | {}.{} |", f.haproxy.replace('|', "\\|"), f.since.0, f.since.1);
        for version in TESTED {
            text.push_str(if at_least(version, f.since) { " ✓ |" } else { " - |" });
        }
        let _ = writeln!(text, " {} | {} |", f.with, f.without);
    }
    text
}

const fn has(version: (u32, u32), feature: usize) -> bool {
    at_least(version, FEATURES[feature].since)
}

const fn at_least((major, minor): (u32, u32), (want_major, want_minor): (u32, u32)) -> bool {
    major > want_major || (major == want_major && minor >= want_minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_by_version() {
        let table = [
            ((1, 5), [false, false, false, false, false, false, false, false]),
            ((1, 7), [true, true, true, false, false, false, false, true]),
            ((1, 8), [true, true, true, true, false, false, false, true]),
            ((2, 0), [true, true, true, true, false, false, true, true]),
            ((2, 4), [true, true, true, true, false, false, true, true]),
            ((2, 5), [true, true, true, false, true, false, true, true]),
            ((2, 6), [true, true, true, false, true, true, true, true]),
            ((3, 4), [true, true, true, false, true, true, true, true]),
        ];
        for (version, [state, hard_stop, init_addr, slots, add, idle, exporter, frontends]) in table {
            let caps = Capabilities::of(version);
            let want = Capabilities {
                set_server_state: state,
                hard_stop_after: hard_stop,
                init_addr,
                slots,
                add_server: add,
                idle_close_on_response: idle,
                prometheus_exporter: exporter,
                shared_frontends: frontends,
            };
            assert_eq!(caps, want, "{version:?}");
        }
        assert_eq!(Capabilities::of((2, 4)).new_servers(), "new servers: runtime slots");
        assert_eq!(Capabilities::of((3, 0)).new_servers(), "new servers: add server at run time");
        assert_eq!(Capabilities::of((1, 7)).new_servers(), "new servers: reload");
    }

    #[test]
    fn the_summary_says_what_this_version_gets() {
        let lines = summary((2, 4));
        assert_eq!(lines.len(), FEATURES.len());
        assert!(lines[SLOTS].contains(": yes: new servers fill spare slots"), "{lines:?}");
        assert!(lines[ADD_SERVER].contains(": no: slots"), "{lines:?}");
    }

    #[test]
    fn an_exporter_asked_of_a_haproxy_without_one_is_unmet() {
        let asked = HaproxyConfig {
            prometheus_exporter: Some(([127, 0, 0, 1], 8405).into()),
            ..HaproxyConfig::default()
        };
        let unmet = Capabilities::of((1, 8)).unmet(&asked);
        assert_eq!(
            unmet,
            ["haproxy.prometheus_exporter (127.0.0.1:8405) is not rendered: HAProxy has no Prometheus exporter \
              (before 2.0, or built without USE_PROMEX: `haproxy -vv` lists no prometheus-exporter service)"]
        );
        assert!(Capabilities::of((2, 0)).unmet(&asked).is_empty());
        let binary = |version, prometheus_exporter| Binary {
            path: "/usr/sbin/haproxy".into(),
            version,
            version_text: String::new(),
            prometheus_exporter,
        };
        assert_eq!(
            Capabilities::of_binary(&binary((2, 6), false)).unmet(&asked).len(),
            1,
            "built without it"
        );
        assert!(Capabilities::of_binary(&binary((2, 6), true)).unmet(&asked).is_empty());
        assert_eq!(Capabilities::of_binary(&binary((1, 8), true)).unmet(&asked).len(), 1, "too old");
        assert!(Capabilities::of((1, 8)).unmet(&HaproxyConfig::default()).is_empty(), "not asked");
    }

    #[test]
    fn frontends_asked_of_a_haproxy_before_1_6_are_unmet() {
        let frontend = crate::config::Frontend {
            bind: ([127, 0, 0, 1], 80).into(),
            bind_options: None,
            options: vec![],
        };
        let asked =
            HaproxyConfig { frontends: [("web".to_string(), frontend)].into(), ..HaproxyConfig::default() };
        let unmet = Capabilities::of((1, 5)).unmet(&asked);
        assert_eq!(unmet.len(), 1);
        assert!(unmet[0].starts_with("haproxy.frontends (web) are not rendered"), "{unmet:?}");
        assert!(Capabilities::of((1, 8)).unmet(&asked).is_empty());
    }

    /// The README shows the same table as the code: a change to one without the other fails here.
    #[test]
    fn the_readme_has_this_table() {
        let readme = include_str!("../../README.md");
        let table = markdown();
        assert!(readme.contains(&table), "README.md lacks the capability table; it should read:\n{table}");
    }
}
