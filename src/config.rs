//! `proxymgr.yml`: the daemon's own configuration, parsed strictly and validated once.
//!
//! The keys and defaults are the original ProxyMgr's (`haproxy.path`, `config_path`, `socket_path`, `global`,
//! `defaults`; `service_config.type`, `servers`, `path`) plus a few of ours, each documented in
//! `proxymgr.yml.example`. Unknown keys and wrong types are errors that name the key: a typo in a load
//! balancer's config should stop the start, not be ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::option::{char_name, check_option, starts_section, stray_character, Place};
use serde::Deserialize;

/// Why a proxymgr.yml was refused. Every variant names the file, and the key where there is one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read { file: PathBuf, source: std::io::Error },
    #[error("{file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error("{file}: {key}: {reason}")]
    Invalid { file: PathBuf, key: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub haproxy: HaproxyConfig,
    pub service_config: ServiceConfigSource,
    /// The last known services, servers and HAProxy pids, so that a start while the registry is unreachable
    /// serves what was served, and a start after a crash takes over the HAProxy left behind.
    #[serde(default = "default_state_file")]
    pub state_file: PathBuf,
    #[serde(default)]
    pub removal_hold: RemovalHold,
    /// The read-only HTTP endpoint (`/`, `/status`, `/metrics`): an address and port, or `off`.
    #[serde(default)]
    pub status: StatusListen,
}

/// Where the status endpoint listens: on `127.0.0.1:9271` unless proxymgr.yml says otherwise; `off` turns it
/// off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct StatusListen(pub Option<std::net::SocketAddr>);

/// The status endpoint's port when proxymgr.yml names none.
pub const DEFAULT_STATUS_PORT: u16 = 9271;

impl Default for StatusListen {
    fn default() -> Self {
        StatusListen(Some(std::net::SocketAddr::from(([127, 0, 0, 1], DEFAULT_STATUS_PORT))))
    }
}

impl TryFrom<String> for StatusListen {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        if matches!(text.as_str(), "off" | "false" | "no") {
            return Ok(StatusListen(None));
        }
        text.parse().map(|address| StatusListen(Some(address))).map_err(|_| {
            format!("status: {text:?} is neither address:port (127.0.0.1:{DEFAULT_STATUS_PORT}) nor off")
        })
    }
}

fn default_state_file() -> PathBuf {
    PathBuf::from("/var/lib/proxymgr/state.json")
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HaproxyConfig {
    /// The HAProxy binary: a path, or a name looked up in `PATH`.
    pub path: PathBuf,
    pub config_path: PathBuf,
    /// The admin socket proxymgr renders into `global` and talks to at run time.
    pub socket_path: PathBuf,
    /// The address proxymgr binds every service's port on.
    pub bind_address: IpAddr,
    pub global: Vec<String>,
    pub defaults: Vec<String>,
    /// Seconds a stopping HAProxy may take to finish its connections before it is killed.
    pub stop_timeout: f64,
    /// Seconds an old HAProxy may keep serving its connections after a reload (`hard-stop-after`); 0 for ever.
    pub hard_stop_after: f64,
    /// Seconds a change that needs a reload waits for others to join it.
    pub reload_window: f64,
    /// Seconds at least between the starts of two reloads.
    pub reload_interval: f64,
    /// Seconds between two comparisons of HAProxy's server states with the desired ones; 0 never.
    pub drift_check_interval: f64,
    /// The most HAProxy processes alive at once, the serving one and the older ones still finishing their
    /// connections; a reload that would pass it stops the oldest at once, cutting their connections. 0: no cap.
    pub max_generations: u32,
    /// Where HAProxy serves its own Prometheus exporter (`/metrics`, HAProxy 2.0+ built with it); None: not
    /// rendered.
    pub prometheus_exporter: Option<std::net::SocketAddr>,
    /// Shared HTTP(S) frontends by name: services join them with routing keys (`route.rs`).
    pub frontends: BTreeMap<String, Frontend>,
    /// Where each frontend's map file is written (`<map_dir>/<frontend>.map`); `maps` beside `state_file` when
    /// proxymgr.yml names none (`Config::parse` fills it in).
    pub map_dir: Option<PathBuf>,
    /// Sections rendered as written after everything else, by header line (Synapse's `extra_sections`).
    pub extra_sections: BTreeMap<String, Vec<String>>,
}

/// One shared frontend: where it listens (bound by proxymgr, passed to HAProxy as an inherited fd), its bind
/// options and its lines. It is HTTP: it routes by host and path.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Frontend {
    pub bind: SocketAddr,
    #[serde(default)]
    pub bind_options: Option<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

impl Default for HaproxyConfig {
    fn default() -> Self {
        // The original's defaults, but for `bind_address` and `stop_timeout`, which are ours.
        HaproxyConfig {
            path: PathBuf::from("haproxy"),
            config_path: PathBuf::from("/etc/haproxy/haproxy.cfg"),
            socket_path: PathBuf::from("/var/lib/haproxy.sock"),
            bind_address: IpAddr::from([0, 0, 0, 0]),
            global: [
                "user haproxy",
                "group haproxy",
                "maxconn 4096",
                "log 127.0.0.1 local0",
                "log 127.0.0.1 local1 notice",
            ]
            .map(String::from)
            .to_vec(),
            defaults: [
                "log global",
                "option dontlognull",
                "maxconn 2000",
                "retries 3",
                "timeout connect 5s",
                "timeout client 1m",
                "timeout server 1m",
                "option redispatch",
                "balance roundrobin",
            ]
            .map(String::from)
            .to_vec(),
            stop_timeout: 10.0,
            hard_stop_after: 60.0,
            reload_window: 0.05,
            reload_interval: 0.5,
            drift_check_interval: 30.0,
            max_generations: 0,
            prometheus_exporter: None,
            frontends: BTreeMap::new(),
            map_dir: None,
            extra_sections: BTreeMap::new(),
        }
    }
}

/// How a mass removal of servers is held (`reconcile/hold.rs`): when a change would leave a service with fewer
/// than `threshold_percent` of the servers it had within the last `hold_time` seconds, enough of the removed
/// ones stay in rotation to keep it at the threshold, for `hold_time` seconds. Either at 0 turns holds off.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemovalHold {
    pub threshold_percent: u32,
    pub hold_time: f64,
}

impl Default for RemovalHold {
    fn default() -> Self {
        // Envoy's panic threshold is 50 % too.
        RemovalHold { threshold_percent: 50, hold_time: 60.0 }
    }
}

impl RemovalHold {
    pub fn hold_time(&self) -> Duration {
        seconds(self.hold_time).unwrap_or_default()
    }
}

/// Where the services come from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawSource")]
pub enum ServiceConfigSource {
    Zookeeper {
        /// The ensemble, `host:port[,host:port...]`.
        servers: String,
        /// The node whose children are the services.
        path: String,
    },
    /// A directory holding one JSON file per service.
    Directory { path: PathBuf },
}

/// `service_config` as written. A plain struct rather than a tagged enum, so that a wrong type names its key
/// (serde_norway loses the path inside internally tagged enums).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    /// ZooKeeper when left out: the original's only type, and what its examples leave implied.
    #[serde(rename = "type", default)]
    kind: SourceKind,
    servers: Option<String>,
    path: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "lowercase")]
enum SourceKind {
    #[default]
    Zookeeper,
    Directory,
}

impl TryFrom<RawSource> for ServiceConfigSource {
    type Error = String;

    fn try_from(raw: RawSource) -> Result<Self, String> {
        match raw.kind {
            SourceKind::Zookeeper => Ok(ServiceConfigSource::Zookeeper {
                servers: raw
                    .servers
                    .ok_or("service_config.servers: missing, the ZooKeeper ensemble (host:port,...)")?,
                path: raw.path.unwrap_or_else(default_service_config_path),
            }),
            SourceKind::Directory => {
                if raw.servers.is_some() {
                    return Err("service_config.servers: a directory service_config takes only `path`".into());
                }
                let path = raw.path.ok_or("service_config.path: missing, the directory of service files")?;
                Ok(ServiceConfigSource::Directory { path: path.into() })
            }
        }
    }
}

fn default_service_config_path() -> String {
    "/service_config".to_string()
}

impl Config {
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file)
            .map_err(|source| ConfigError::Read { file: file.into(), source })?;
        Config::parse(file, &text)
    }

    /// Parses and validates; `file` only names the source in errors.
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let mut config: Config = serde_norway::from_str(text)
            .map_err(|e| ConfigError::Parse { file: file.into(), message: e.to_string() })?;
        if config.haproxy.map_dir.is_none() {
            let beside = config.state_file.parent().unwrap_or(Path::new("/")).join("maps");
            config.haproxy.map_dir = Some(beside);
        }
        config.validate().map_err(|(key, reason)| ConfigError::Invalid { file: file.into(), key, reason })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        if !self.state_file.is_absolute() {
            return Err((
                "state_file".into(),
                format!("must be an absolute path, not {}", self.state_file.display()),
            ));
        }
        let h = &self.haproxy;
        for (key, path) in [("haproxy.config_path", &h.config_path), ("haproxy.socket_path", &h.socket_path)]
        {
            if !path.is_absolute() {
                return Err((key.into(), format!("must be an absolute path, not {}", path.display())));
            }
        }
        for (key, value) in [
            ("haproxy.stop_timeout", h.stop_timeout),
            ("haproxy.hard_stop_after", h.hard_stop_after),
            ("haproxy.reload_window", h.reload_window),
            ("haproxy.reload_interval", h.reload_interval),
            ("haproxy.drift_check_interval", h.drift_check_interval),
            ("removal_hold.hold_time", self.removal_hold.hold_time),
        ] {
            seconds(value).map_err(|reason| (key.to_string(), reason))?;
        }
        if self.removal_hold.threshold_percent > 100 {
            let reason = format!("{} is not a percentage (0 to 100)", self.removal_hold.threshold_percent);
            return Err(("removal_hold.threshold_percent".into(), reason));
        }
        if h.max_generations == 1 {
            return Err((
                "haproxy.max_generations".into(),
                "must be 0 (no cap) or at least 2: the serving HAProxy serves until the new one does".into(),
            ));
        }
        if h.socket_path.to_str().map_or(true, |p| p.contains(char::is_whitespace)) {
            return Err((
                "haproxy.socket_path".into(),
                "must be UTF-8 with no white space (it goes on a config line)".into(),
            ));
        }
        if let Some(exporter) = h.prometheus_exporter {
            check_exporter(exporter, self.status.0)
                .map_err(|reason| ("haproxy.prometheus_exporter".to_string(), reason))?;
        }
        if h.path.as_os_str().is_empty() {
            return Err(("haproxy.path".into(), "must not be empty".into()));
        }
        for (section, lines) in [("haproxy.global", &h.global), ("haproxy.defaults", &h.defaults)] {
            for (i, line) in lines.iter().enumerate() {
                check_config_line(line).map_err(|reason| (format!("{section}[{i}]"), reason))?;
            }
        }
        check_edge(h, self.status.0)?;
        match &self.service_config {
            ServiceConfigSource::Zookeeper { servers, path } => {
                check_ensemble(servers).map_err(|reason| ("service_config.servers".to_string(), reason))?;
                check_znode_path(path).map_err(|reason| ("service_config.path".to_string(), reason))?;
            }
            ServiceConfigSource::Directory { path } => {
                if !path.is_absolute() {
                    let reason = format!("must be an absolute path, not {}", path.display());
                    return Err(("service_config.path".into(), reason));
                }
            }
        }
        Ok(())
    }
}

impl HaproxyConfig {
    /// The names of the sections proxymgr.yml adds: the frontends', and the extra sections' (the word after
    /// the keyword of each header that has one).
    pub fn section_names(&self) -> std::collections::BTreeSet<String> {
        let extra = self.extra_sections.keys().filter_map(|header| header.split_whitespace().nth(1));
        self.frontends.keys().map(String::as_str).chain(extra).map(String::from).collect()
    }

    /// Where the frontends' map files go.
    pub fn map_dir(&self) -> PathBuf {
        self.map_dir.clone().unwrap_or_else(|| PathBuf::from("/var/lib/proxymgr/maps"))
    }

    /// The map file of the frontend `name`.
    pub fn map_path(&self, frontend: &str) -> PathBuf {
        self.map_dir().join(format!("{frontend}.map"))
    }

    pub fn stop_timeout(&self) -> Duration {
        seconds(self.stop_timeout).unwrap_or(Duration::from_secs(10))
    }

    pub fn reload_window(&self) -> Duration {
        seconds(self.reload_window).unwrap_or_default()
    }

    pub fn reload_interval(&self) -> Duration {
        seconds(self.reload_interval).unwrap_or_default()
    }

    /// None when drift checks are off.
    pub fn drift_check_interval(&self) -> Option<Duration> {
        seconds(self.drift_check_interval).ok().filter(|d| !d.is_zero())
    }
}

/// Durations in proxymgr.yml are whole or fractional seconds.
fn seconds(value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value).map_err(|_| format!("{value} is not a duration in seconds"))
}

/// A line that goes into haproxy.cfg verbatim: one line of text, nothing that could start another.
pub fn check_config_line(line: &str) -> Result<(), String> {
    if let Some((at, c)) = stray_character(line) {
        return Err(format!("{line:?} contains {} at byte {at}; a line of haproxy.cfg cannot", char_name(c)));
    }
    if line.trim().is_empty() {
        return Err("is empty".into());
    }
    Ok(())
}

/// The name of the frontend that serves HAProxy's Prometheus exporter (`haproxy.prometheus_exporter`); no
/// service or frontend may take it (`service::check_name`, `check_edge`).
pub const EXPORTER_NAME: &str = "proxymgr-prometheus";

/// Whether two listening addresses take the same port: the same address, or either on every address.
pub fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// HAProxy's rule for a section's name: 1 to 100 letters, digits, `-`, `_`, `.` and `:`.
pub fn check_section_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 100 {
        return Err(format!("name {name:?} must be 1 to 100 characters long"));
    }
    match name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))) {
        Some(c) => Err(format!(
            "name {name:?} contains {c:?}; HAProxy takes only letters, digits, '-', '_', '.' and ':'"
        )),
        None => Ok(()),
    }
}

/// The frontends, the map directory and the extra sections.
fn check_edge(h: &HaproxyConfig, status: Option<SocketAddr>) -> Result<(), (String, String)> {
    let map_dir = h.map_dir();
    // It goes into a converter's argument (`map_beg(<dir>/<frontend>.map)`), where `,` and `)` would end it.
    let plain = |p: &str| {
        p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | '@'))
    };
    if !map_dir.is_absolute() || !map_dir.to_str().is_some_and(plain) {
        let reason = format!(
            "must be an absolute path of letters, digits and / . _ - + @ (it goes on a config line), not {}",
            map_dir.display()
        );
        return Err(("haproxy.map_dir".into(), reason));
    }
    let mut bound: Vec<(SocketAddr, String)> = Vec::new();
    status.into_iter().for_each(|s| bound.push((s, "status".into())));
    h.prometheus_exporter.into_iter().for_each(|e| bound.push((e, "haproxy.prometheus_exporter".into())));
    for (name, frontend) in &h.frontends {
        let key = format!("haproxy.frontends.{name}");
        check_section_name(name).map_err(|reason| (key.clone(), reason))?;
        if name == EXPORTER_NAME {
            return Err((key, "is proxymgr's own name (the frontend of haproxy.prometheus_exporter)".into()));
        }
        if frontend.bind.port() == 0 {
            return Err((format!("{key}.bind"), format!("{} names no port", frontend.bind)));
        }
        if let Some((_, other)) = bound.iter().find(|(at, _)| overlap(*at, frontend.bind)) {
            return Err((format!("{key}.bind"), format!("{} is taken by {other}", frontend.bind)));
        }
        bound.push((frontend.bind, key.clone()));
        if let Some(options) = &frontend.bind_options {
            check_option(options, Place::Bind).map_err(|e| (format!("{key}.bind_options"), e.to_string()))?;
        }
        for (i, line) in frontend.options.iter().enumerate() {
            check_option(line, Place::Listen)
                .map_err(|e| (format!("{key}.options[{i}]"), format!("{line:?} {e}")))?;
        }
    }
    for (header, lines) in &h.extra_sections {
        let key = format!("haproxy.extra_sections.{header:?}");
        check_config_line(header).map_err(|reason| (key.clone(), reason))?;
        match starts_section(header) {
            Some("global" | "defaults") => {
                return Err((
                    key,
                    "global and defaults lines go in haproxy.global and haproxy.defaults".into(),
                ))
            }
            Some(_) => {}
            None => {
                return Err((
                    key,
                    "does not start a section (listen, frontend, backend, userlist, ...)".into(),
                ))
            }
        }
        for (i, line) in lines.iter().enumerate() {
            check_config_line(line).map_err(|reason| (format!("{key}[{i}]"), reason))?;
            if let Some(section) = starts_section(line) {
                let reason = format!("{line:?} starts a {section} section: give it a header of its own");
                return Err((format!("{key}[{i}]"), reason));
            }
        }
    }
    Ok(())
}

/// HAProxy's exporter binds `exporter` itself: it needs a port, and not the one proxymgr's status endpoint
/// listens on (both would bind, with SO_REUSEPORT, and share the connections).
fn check_exporter(
    exporter: std::net::SocketAddr,
    status: Option<std::net::SocketAddr>,
) -> Result<(), String> {
    if exporter.port() == 0 {
        return Err(format!("{exporter} names no port"));
    }
    let overlap = |a: IpAddr, b: IpAddr| a == b || a.is_unspecified() || b.is_unspecified();
    if let Some(status) = status.filter(|s| s.port() == exporter.port() && overlap(s.ip(), exporter.ip())) {
        return Err(format!(
            "{exporter} is where proxymgr's status endpoint listens ({status}, the key status)"
        ));
    }
    Ok(())
}

/// `host:port[,host:port...]`, optionally followed by a chroot path as ZooKeeper allows.
pub fn check_ensemble(servers: &str) -> Result<(), String> {
    let hosts = servers.split('/').next().unwrap_or_default();
    if hosts.is_empty() {
        return Err("must name at least one host:port".into());
    }
    for member in hosts.split(',') {
        let (host, port) =
            member.trim().rsplit_once(':').ok_or_else(|| format!("member {member:?} is not host:port"))?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("member {member:?} is not host:port"));
        }
    }
    Ok(())
}

/// An absolute znode path with no empty, `.` or `..` segments and no trailing slash.
pub fn check_znode_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with /"));
    }
    if path == "/" {
        return Ok(());
    }
    if path[1..].split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") || path.contains('\0') {
        return Err(format!("{path:?} is not a valid znode path"));
    }
    Ok(())
}

impl fmt::Display for ServiceConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceConfigSource::Zookeeper { servers, path } => write!(f, "zookeeper {servers}{path}"),
            ServiceConfigSource::Directory { path } => write!(f, "directory {}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("proxymgr.yml"), text).map_err(|e| e.to_string())
    }

    const MINIMAL: &str = "service_config:\n  type: zookeeper\n  servers: 127.0.0.1:2181\n";

    #[test]
    fn minimal_config_takes_the_originals_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.haproxy.path, PathBuf::from("haproxy"));
        assert_eq!(c.haproxy.config_path, PathBuf::from("/etc/haproxy/haproxy.cfg"));
        assert_eq!(c.haproxy.socket_path, PathBuf::from("/var/lib/haproxy.sock"));
        assert_eq!(c.haproxy.defaults.last().unwrap(), "balance roundrobin");
        assert_eq!(
            c.service_config,
            ServiceConfigSource::Zookeeper {
                servers: "127.0.0.1:2181".into(),
                path: "/service_config".into()
            }
        );
    }

    #[test]
    fn the_status_endpoint_is_an_address_and_port_or_off() {
        let minimal = "service_config:\n  servers: zk:2181\n";
        let status = |text: &str| parse(&format!("{minimal}{text}")).map(|c| c.status.0);
        let at = |a: &str| Ok(Some(a.parse().unwrap()));
        let table: Vec<(&str, Result<Option<std::net::SocketAddr>, String>)> = vec![
            ("", at("127.0.0.1:9271")),
            ("status: off\n", Ok(None)),
            ("status: 127.0.0.1:9300\n", at("127.0.0.1:9300")),
            ("status: \"[::1]:9271\"\n", at("[::1]:9271")),
        ];
        for (text, expected) in table {
            assert_eq!(status(text), expected, "{text:?}");
        }
        for bad in ["status: 9271\n", "status: localhost:9271\n", "status: true\n"] {
            let error = status(bad).unwrap_err();
            assert!(error.contains("status"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn frontends_and_extra_sections_are_checked_by_key() {
        let head =
            "service_config: {type: directory, path: /s}\nstate_file: /var/lib/p/state.json\nhaproxy:\n";
        let good = format!(
            "{head}  frontends:\n    https: {{bind: \"0.0.0.0:443\", bind_options: ssl crt /e.pem, options: [option forwardfor]}}\n  extra_sections:\n    listen stats: [bind :8404, stats enable]\n"
        );
        let config = parse(&good).unwrap();
        assert_eq!(config.haproxy.map_path("https"), PathBuf::from("/var/lib/p/maps/https.map"));
        assert_eq!(config.haproxy.extra_sections["listen stats"], ["bind :8404", "stats enable"]);
        let cases = [
            (
                "  frontends: {https: {bind: \"0.0.0.0:0\"}}\n",
                "haproxy.frontends.https.bind: 0.0.0.0:0 names no port",
            ),
            (
                "  frontends: {https: {bind: \"127.0.0.1:9271\"}}\n",
                "haproxy.frontends.https.bind: 127.0.0.1:9271 is taken by status",
            ),
            (
                "  frontends: {a: {bind: \"0.0.0.0:80\"}, b: {bind: \"127.0.0.1:80\"}}\n",
                "haproxy.frontends.b.bind: 127.0.0.1:80 is taken by haproxy.frontends.a",
            ),
            ("  frontends: {\"a b\": {bind: \"0.0.0.0:80\"}}\n", "haproxy.frontends.a b: name"),
            (
                "  frontends: {a: {bind: \"0.0.0.0:80\", options: [bind :81]}}\n",
                "haproxy.frontends.a.options[0]",
            ),
            (
                "  frontends: {a: {bind: \"0.0.0.0:80\", options: [listen x]}}\n",
                "haproxy.frontends.a.options[0]",
            ),
            ("  frontends: {a: {bind: \"0.0.0.0:80\", bogus: 1}}\n", "unknown field `bogus`"),
            (
                "  frontends: {a: {bind: \"0.0.0.0:80\", bind_options: \"ssl # x\"}}\n",
                "haproxy.frontends.a.bind_options",
            ),
            ("  map_dir: maps\n", "haproxy.map_dir: must be an absolute"),
            ("  map_dir: /var/lib/p,x\n", "haproxy.map_dir: must be an absolute"),
            ("  map_dir: \"/var/lib/p maps\"\n", "haproxy.map_dir: must be an absolute"),
            ("  extra_sections: {stats: [x]}\n", "does not start a section"),
            ("  extra_sections: {defaults: [mode http]}\n", "global and defaults lines go in"),
            (
                "  extra_sections: {listen x: [mode http, backend y]}\n",
                "[1]: \"backend y\" starts a backend section",
            ),
            ("  extra_sections: {listen x: [\"mode\\nhttp\"]}\n", "[0]"),
        ];
        for (yaml, expected) in cases {
            let error = parse(&format!("{head}{yaml}")).unwrap_err();
            assert!(error.contains(expected), "{yaml}: {error}");
        }
    }

    #[test]
    fn the_example_file_documents_the_defaults() {
        let example = parse(include_str!("../proxymgr.yml.example")).unwrap();
        // The map directory is filled in beside the state file.
        let maps = Some(PathBuf::from("/var/lib/proxymgr/maps"));
        assert_eq!(example.haproxy, HaproxyConfig { map_dir: maps, ..HaproxyConfig::default() });
        assert_eq!(example.removal_hold, RemovalHold::default());
        assert_eq!(example.status, StatusListen::default());
        assert_eq!(
            example.service_config,
            ServiceConfigSource::Zookeeper {
                servers: "localhost:2181".into(),
                path: "/service_config".into()
            }
        );
    }

    #[test]
    fn the_originals_example_parses() {
        let c = parse(
            "---\nhaproxy:\n  config_path: /etc/haproxy/haproxy.cfg\n  socket_path: /var/run/haproxy/stats.sock\n\n\
             service_config:\n  type: zookeeper\n  servers: localhost:2181\n  path: /service_config\n",
        )
        .unwrap();
        assert_eq!(c.haproxy.socket_path, PathBuf::from("/var/run/haproxy/stats.sock"));
    }

    #[test]
    fn errors_name_the_file_and_key() {
        let cases = [
            ("haproxy:\n  globl: []\n", "unknown field `globl`"),
            (&format!("{MINIMAL}haproxy:\n  global: [1, [2]]\n"), "haproxy.global[1]"),
            (
                &format!("{MINIMAL}haproxy:\n  config_path: relative.cfg\n"),
                "haproxy.config_path: must be an absolute",
            ),
            (&format!("{MINIMAL}haproxy:\n  defaults: [\"mode http\\nlisten x\"]\n"), "haproxy.defaults[0]"),
            (
                &format!("{MINIMAL}haproxy:\n  global: [\"maxconn 10\\u2028stats socket /x\"]\n"),
                "haproxy.global[0]: \"maxconn 10\\u{2028}stats socket /x\" contains a line separator (U+2028)",
            ),
            (&format!("{MINIMAL}haproxy:\n  bind_address: nowhere\n"), "haproxy.bind_address"),
            (&format!("{MINIMAL}haproxy:\n  stop_timeout: -1\n"), "haproxy.stop_timeout"),
            (&format!("{MINIMAL}haproxy:\n  max_generations: 1\n"), "haproxy.max_generations: must be 0"),
            (&format!("{MINIMAL}haproxy:\n  max_generations: -2\n"), "max_generations"),
            ("service_config:\n  type: etcd\n", "unknown variant `etcd`"),
            ("service_config:\n  type: zookeeper\n", "service_config.servers: missing"),
            (
                "service_config:\n  type: zookeeper\n  servers: 2181\n",
                "service_config.servers: member \"2181\" is not host:port",
            ),
            ("service_config:\n  type: zookeeper\n  servers: a:1\n  server: x\n", "unknown field `server`"),
            ("service_config:\n  type: zookeeper\n  servers: nohostport\n", "service_config.servers"),
            ("service_config:\n  type: zookeeper\n  servers: a:1\n  path: rel\n", "service_config.path"),
            ("service_config:\n  type: directory\n", "service_config.path: missing"),
            ("service_config:\n  type: directory\n  path: rel\n", "service_config.path: must be an absolute"),
            ("service_config:\n  type: directory\n  path: /d\n  servers: a:1\n", "takes only `path`"),
            ("haproxy: {}\n", "missing field `service_config`"),
            (
                &format!("{MINIMAL}removal_hold:\n  threshold_percent: 150\n"),
                "removal_hold.threshold_percent: 150",
            ),
            (&format!("{MINIMAL}removal_hold:\n  threshold_percent: -1\n"), "removal_hold.threshold_percent"),
            (&format!("{MINIMAL}removal_hold:\n  hold_time: -1\n"), "removal_hold.hold_time: -1"),
            (&format!("{MINIMAL}removal_hold:\n  hold: 60\n"), "unknown field `hold`"),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.starts_with("proxymgr.yml: "), "{err}");
            assert!(
                err.contains(expected),
                "error for {text:?} was {err:?}, expected it to contain {expected:?}"
            );
        }
    }

    #[test]
    fn service_config_type_defaults_to_zookeeper() {
        let zookeeper = |servers: &str, path: &str| ServiceConfigSource::Zookeeper {
            servers: servers.into(),
            path: path.into(),
        };
        let cases = [
            ("service_config:\n  servers: a:1\n", Ok(zookeeper("a:1", "/service_config"))),
            ("service_config:\n  servers: a:1,b:2\n  path: /sc\n", Ok(zookeeper("a:1,b:2", "/sc"))),
            ("service_config:\n  type: zookeeper\n  servers: a:1\n", Ok(zookeeper("a:1", "/service_config"))),
            (
                "service_config:\n  type: directory\n  path: /d\n",
                Ok(ServiceConfigSource::Directory { path: "/d".into() }),
            ),
            // A directory says so: without its type, a path alone is a ZooKeeper source without servers.
            ("service_config:\n  path: /d\n", Err("service_config.servers: missing")),
            ("service_config: {}\n", Err("service_config.servers: missing")),
        ];
        for (text, expected) in cases {
            match (parse(text), expected) {
                (Ok(config), Ok(source)) => assert_eq!(config.service_config, source, "{text:?}"),
                (Err(err), Err(fragment)) => assert!(err.contains(fragment), "{text:?}: {err}"),
                (got, expected) => panic!("{text:?}: {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn a_removal_hold_takes_part_of_its_keys() {
        let c = parse(&format!("{MINIMAL}removal_hold:\n  hold_time: 2.5\n")).unwrap();
        assert_eq!(c.removal_hold, RemovalHold { threshold_percent: 50, hold_time: 2.5 });
        assert_eq!(c.removal_hold.hold_time(), Duration::from_millis(2500));
        assert_eq!(parse(MINIMAL).unwrap().removal_hold, RemovalHold::default());
    }

    #[test]
    fn the_prometheus_exporter_takes_an_address_and_port() {
        let exporter = |text: &str| parse(&format!("{MINIMAL}{text}")).map(|c| c.haproxy.prometheus_exporter);
        let at = |text: &str| Ok(Some(text.parse::<std::net::SocketAddr>().unwrap()));
        let cases = [
            ("", Ok(None)),
            ("haproxy:\n  prometheus_exporter: ~\n", Ok(None)),
            ("haproxy:\n  prometheus_exporter: 127.0.0.1:8405\n", at("127.0.0.1:8405")),
            ("haproxy:\n  prometheus_exporter: \"[::1]:8405\"\n", at("[::1]:8405")),
            // Beside the status endpoint: another address, or the endpoint off.
            ("haproxy:\n  prometheus_exporter: 127.0.0.2:9271\n", at("127.0.0.2:9271")),
            ("status: off\nhaproxy:\n  prometheus_exporter: 0.0.0.0:9271\n", at("0.0.0.0:9271")),
        ];
        for (text, want) in cases {
            assert_eq!(exporter(text), want, "{text:?}");
        }
        let refused = [
            ("haproxy:\n  prometheus_exporter: 8405\n", "haproxy.prometheus_exporter"),
            ("haproxy:\n  prometheus_exporter: localhost:8405\n", "haproxy.prometheus_exporter"),
            (
                "haproxy:\n  prometheus_exporter: 127.0.0.1:0\n",
                "haproxy.prometheus_exporter: 127.0.0.1:0 names no port",
            ),
            (
                "haproxy:\n  prometheus_exporter: 0.0.0.0:9271\n",
                "haproxy.prometheus_exporter: 0.0.0.0:9271 is where proxymgr's status endpoint listens",
            ),
            (
                "status: \"[::]:9300\"\nhaproxy:\n  prometheus_exporter: 10.0.0.1:9300\n",
                "status endpoint listens ([::]:9300",
            ),
        ];
        for (text, fragment) in refused {
            let err = exporter(text).unwrap_err();
            assert!(err.contains(fragment), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_directory_service_config() {
        let c = parse("service_config:\n  type: directory\n  path: /etc/proxymgr/services\n").unwrap();
        assert_eq!(
            c.service_config,
            ServiceConfigSource::Directory { path: "/etc/proxymgr/services".into() }
        );
    }

    #[test]
    fn ensembles_and_paths() {
        assert!(check_ensemble("a:1,b:2,127.0.0.1:2181").is_ok());
        assert!(check_ensemble("a:1/chroot").is_ok());
        assert!(check_ensemble("a:0").is_err());
        assert!(check_ensemble("").is_err());
        assert!(check_znode_path("/a/b").is_ok());
        assert!(check_znode_path("/a//b").is_err());
        assert!(check_znode_path("/a/").is_err());
        assert!(check_znode_path("/a/../b").is_err());
    }
}
