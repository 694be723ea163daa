//! A service's JSON blob -> [`ServiceSpec`], and a server node's JSON -> [`Server`], both validated.
//!
//! Everything here is data that arrives from the registry at run time, so nothing panics: a bad blob becomes a
//! [`SpecError`] that the caller logs with the node's path, and the rest of the system carries on. Option lines
//! go into haproxy.cfg (and server options into runtime commands) as written, so each is checked with
//! `option::check_option` for its place.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{check_ensemble, check_section_name, check_znode_path};
use crate::option::{check_option, OptionError, Place};
use crate::route::Join;

/// The largest blob we parse; ZooKeeper allows 1 MiB, a service description is a few hundred bytes.
pub const MAX_BLOB_BYTES: usize = 64 * 1024;

/// Why a service blob or a server node was refused. The caller names the node (or file) it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Bad JSON, a missing or unknown key, a port, name or address out of range: the reason in words.
    #[error("{0}")]
    Invalid(String),
    /// More bytes than a definition may have.
    #[error("{size} bytes is over the limit of {MAX_BLOB_BYTES}")]
    TooLarge { size: u64 },
    /// The definition could not be read (a file of the `directory` source): the system's words.
    #[error("cannot read it: {0}")]
    Unreadable(String),
    /// A `directory` source's entry that is not a regular file (never opened: a FIFO would block).
    #[error("is {0}, not a file")]
    NotAFile(&'static str),
    /// An option line refused: where it is (`listen_options[1]`, `haproxy_server_options`), the line, and why.
    #[error("{key} {}: {reason}", excerpt(line))]
    Option { key: String, line: String, reason: OptionError },
}

/// What one service is: its listen port and options, and how to find its servers. (Serialized only into the
/// state file; the registry's blobs are read through `RawSpec`.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Its dedicated port; None for a service only reached through shared frontends (then it is a `backend`).
    pub port: Option<u16>,
    /// The address of its dedicated port; None: `haproxy.bind_address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_address: Option<IpAddr>,
    /// Options of its dedicated port's `bind` line (`ssl crt ...`), after `bind fd@N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_options: Option<String>,
    /// The shared frontends of proxymgr.yml it joins, by name, and how.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub frontends: BTreeMap<String, Join>,
    /// Served while its watcher reports no server (Synapse's `default_servers`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_servers: Vec<Server>,
    pub listen_options: Vec<String>,
    pub server_options: Vec<String>,
    pub watcher: WatcherSpec,
    /// Whether an empty server set from the watcher is served as such. By default (the original's behaviour) it
    /// keeps the last known servers: an empty set is far more often a registry fault than a real state.
    pub allow_empty: bool,
    /// Whether a mass removal of its servers is held (`removal_hold` in proxymgr.yml); `"hold_removals": false`
    /// in the blob applies every removal at once. (A state file written before the key existed holds them.)
    #[serde(default = "yes")]
    pub hold_removals: bool,
}

fn yes() -> bool {
    true
}

/// How a service's servers are found. Each variant is one kind of watcher thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WatcherSpec {
    /// Children of `path` on the ensemble `server`, each holding `{"address": .., "port": ..}` (the original's)
    /// or a Nerve registration `{"host": .., "port": .., "weight": .., "haproxy_server_options": ..}`.
    Zookeeper { server: String, path: String },
    /// Children of `path` whose names are hosts, all serving on `port`.
    Campanjazk { server: String, path: String, port: u16 },
    /// Every address each name resolves to, re-resolved every `interval`.
    Dns { backends: Vec<DnsBackend>, interval: Duration },
    /// `host:port` lines of a file, re-read when it changes and every `interval`.
    File { file: PathBuf, interval: Duration },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsBackend {
    pub name: String,
    pub port: u16,
}

pub const WATCHER_TYPES: &[&str] = &["zookeeper", "campanjazk", "dns", "file"];

/// The original re-resolved and re-read every 5 s.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// The blob as written; every key any watcher takes is here so that unknown keys are refused by name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    #[serde(rename = "type")]
    kind: String,
    port: Option<i64>,
    bind_address: Option<String>,
    bind_options: Option<String>,
    #[serde(default)]
    frontends: BTreeMap<String, Join>,
    /// Each one a server node as the registry holds it, parsed by `Server::parse`.
    default_servers: Option<serde_json::Value>,
    #[serde(default)]
    listen_options: Vec<String>,
    #[serde(default)]
    server_options: Vec<String>,
    #[serde(default)]
    allow_empty: bool,
    #[serde(default = "yes")]
    hold_removals: bool,
    server: Option<String>,
    path: Option<String>,
    remote_port: Option<i64>,
    backends: Option<Vec<RawDnsBackend>>,
    file: Option<PathBuf>,
    interval: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDnsBackend {
    name: String,
    port: i64,
}

impl ServiceSpec {
    pub fn parse(data: &[u8]) -> Result<ServiceSpec, SpecError> {
        let raw: RawSpec = parse_json(data)?;
        let port = match raw.port {
            Some(port) => Some(check_port(port)?),
            None if raw.frontends.is_empty() => {
                return Err(SpecError::Invalid("needs `port`, or `frontends` to join".into()))
            }
            None => None,
        };
        check_options(&raw.listen_options, &raw.server_options)?;
        let bind_address =
            match raw.bind_address {
                Some(_) if port.is_none() => {
                    return Err(SpecError::Invalid("bind_address: the service has no `port` to bind".into()))
                }
                Some(text) => Some(text.parse::<IpAddr>().map_err(|_| {
                    SpecError::Invalid(format!("bind_address: {text:?} is not an IP address"))
                })?),
                None => None,
            };
        let bind_options = raw.bind_options.filter(|o| !o.trim().is_empty());
        if let Some(options) = &bind_options {
            if port.is_none() {
                return Err(SpecError::Invalid("bind_options: the service has no `port` to bind".into()));
            }
            check_option_at("bind_options".into(), options, Place::Bind)?;
        }
        let mut frontends = BTreeMap::new();
        for (frontend, join) in raw.frontends {
            check_frontend_name(&frontend)
                .map_err(|reason| SpecError::Invalid(format!("frontends.{frontend}: {reason}")))?;
            let join = join.checked().map_err(|e| SpecError::Invalid(format!("frontends.{frontend}.{e}")))?;
            frontends.insert(frontend, join);
        }
        if !frontends.is_empty() {
            if let Some(i) = raw.listen_options.iter().position(|o| is_mode_tcp(o)) {
                return Err(SpecError::Invalid(format!(
                    "listen_options[{i}]: a service that joins frontends is HTTP; `mode tcp` cannot route by host"
                )));
            }
        }
        let raw_defaults = match raw.default_servers {
            None => Vec::new(),
            Some(serde_json::Value::Array(list)) => list,
            Some(_) => return Err(SpecError::Invalid("default_servers: must be a list of servers".into())),
        };
        let mut default_servers = Vec::new();
        for (i, value) in raw_defaults.iter().enumerate() {
            let server = Server::parse(value.to_string().as_bytes())
                .map_err(|e| SpecError::Invalid(format!("default_servers[{i}]: {e}")))?;
            default_servers.push(server);
        }
        default_servers.sort();
        default_servers.dedup_by(|a, b| a.name() == b.name());
        let kind = raw.kind.as_str();
        // A key of another watcher type is a mistake worth naming (a dns blob with `file` does nothing).
        let given = [
            ("server", raw.server.is_some(), &["zookeeper", "campanjazk"][..]),
            ("path", raw.path.is_some(), &["zookeeper", "campanjazk"]),
            ("remote_port", raw.remote_port.is_some(), &["campanjazk"]),
            ("backends", raw.backends.is_some(), &["dns"]),
            ("file", raw.file.is_some(), &["file"]),
            ("interval", raw.interval.is_some(), &["dns", "file"]),
        ];
        if WATCHER_TYPES.contains(&kind) {
            if let Some((key, _, _)) = given.iter().find(|(_, given, types)| *given && !types.contains(&kind))
            {
                return Err(SpecError::Invalid(format!("`{key}` is not a key of the {kind} watcher")));
            }
        }
        let watcher = match kind {
            "zookeeper" | "campanjazk" => {
                let server =
                    raw.server.ok_or_else(|| SpecError::Invalid(format!("{kind} watcher needs `server`")))?;
                check_ensemble(&server).map_err(|r| SpecError::Invalid(format!("server: {r}")))?;
                let path =
                    raw.path.ok_or_else(|| SpecError::Invalid(format!("{kind} watcher needs `path`")))?;
                check_znode_path(&path).map_err(|r| SpecError::Invalid(format!("path: {r}")))?;
                if kind == "zookeeper" {
                    WatcherSpec::Zookeeper { server, path }
                } else {
                    let port = match (raw.remote_port, port) {
                        (Some(remote), _) => check_port(remote)?,
                        (None, Some(port)) => port,
                        (None, None) => {
                            return Err(SpecError::Invalid(
                                "campanjazk watcher needs `remote_port` where the service has no `port`"
                                    .into(),
                            ))
                        }
                    };
                    WatcherSpec::Campanjazk { server, path, port }
                }
            }
            "dns" => {
                let raw_backends =
                    raw.backends.ok_or_else(|| SpecError::Invalid("dns watcher needs `backends`".into()))?;
                if raw_backends.is_empty() {
                    return Err(SpecError::Invalid("backends: names no host".into()));
                }
                let mut backends = Vec::new();
                for (i, b) in raw_backends.into_iter().enumerate() {
                    let port =
                        check_port(b.port).map_err(|e| SpecError::Invalid(format!("backends[{i}]: {e}")))?;
                    check_address(&b.name).map_err(|e| SpecError::Invalid(format!("backends[{i}]: {e}")))?;
                    backends.push(DnsBackend { name: b.name, port });
                }
                WatcherSpec::Dns { backends, interval: interval(raw.interval)? }
            }
            "file" => {
                let file = raw.file.ok_or_else(|| SpecError::Invalid("file watcher needs `file`".into()))?;
                if !file.is_absolute() {
                    return Err(SpecError::Invalid(format!(
                        "file: {} must be an absolute path",
                        file.display()
                    )));
                }
                WatcherSpec::File { file, interval: interval(raw.interval)? }
            }
            other => {
                return Err(SpecError::Invalid(format!(
                    "unknown watcher type {other:?}, known types: {}",
                    WATCHER_TYPES.join(", ")
                )))
            }
        };
        Ok(ServiceSpec {
            port,
            bind_address,
            bind_options,
            frontends,
            default_servers,
            listen_options: raw.listen_options,
            server_options: raw.server_options,
            watcher,
            allow_empty: raw.allow_empty,
            hold_removals: raw.hold_removals,
        })
    }
}

fn interval(seconds: Option<f64>) -> Result<Duration, SpecError> {
    match seconds {
        None => Ok(DEFAULT_INTERVAL),
        Some(s) if s.is_finite() && (0.05..=86400.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(SpecError::Invalid(format!("interval: {s} is not between 0.05 and 86400 seconds"))),
    }
}

/// HAProxy's rule for proxy and server names: letters, digits, `-`, `_`, `.` and `:`; and not the name of
/// proxymgr's own frontend, which HAProxy would refuse beside a service's `listen` of the same name.
pub fn check_name(name: &str) -> Result<(), SpecError> {
    if name == crate::config::EXPORTER_NAME {
        return Err(SpecError::Invalid(format!(
            "name {name:?} is proxymgr's own (the frontend of haproxy.prometheus_exporter)"
        )));
    }
    check_section_name(name).map_err(SpecError::Invalid)
}

/// A frontend's name as a blob may give it: HAProxy's rule for names (whether proxymgr.yml has it is the
/// reconciler's to say: it changes on SIGHUP).
fn check_frontend_name(name: &str) -> Result<(), String> {
    check_section_name(name).map_err(|_| format!("{name:?} is not a frontend name"))
}

#[cfg(test)]
impl ServiceSpec {
    /// A spec for tests to start from: port 80, a zookeeper watcher, no options, joins or default servers, the
    /// removal hold on; each test sets what it is about.
    pub fn example() -> ServiceSpec {
        ServiceSpec {
            port: Some(80),
            bind_address: None,
            bind_options: None,
            frontends: BTreeMap::new(),
            default_servers: Vec::new(),
            listen_options: Vec::new(),
            server_options: Vec::new(),
            watcher: WatcherSpec::Zookeeper { server: "127.0.0.1:2181".into(), path: "/services/web".into() },
            allow_empty: false,
            hold_removals: true,
        }
    }
}

/// Whether a listen option sets TCP mode.
fn is_mode_tcp(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    words.len() >= 2 && words[0].eq_ignore_ascii_case("mode") && words[1].eq_ignore_ascii_case("tcp")
}

impl ServiceSpec {
    /// Where its dedicated port listens, `haproxy.bind_address` unless it names its own; None without one.
    pub fn listen_at(&self, default: IpAddr) -> Option<SocketAddr> {
        self.port.map(|port| SocketAddr::new(self.bind_address.unwrap_or(default), port))
    }
}

/// Every option line of a service, each for its place.
fn check_options(listen_options: &[String], server_options: &[String]) -> Result<(), SpecError> {
    for (key, options, place) in
        [("listen_options", listen_options, Place::Listen), ("server_options", server_options, Place::Server)]
    {
        for (i, option) in options.iter().enumerate() {
            check_option_at(format!("{key}[{i}]"), option, place)?;
        }
    }
    Ok(())
}

/// What reaches haproxy.cfg from a spec and its servers that were not parsed here (the state file's, which an
/// older proxymgr wrote, or anyone who could write the file): the same checks as a blob's and a node's.
pub fn check_saved(spec: &ServiceSpec, servers: &[Server]) -> Result<(), SpecError> {
    if let Some(port) = spec.port {
        check_port(port.into())?;
    }
    check_options(&spec.listen_options, &spec.server_options)?;
    if let Some(options) = &spec.bind_options {
        check_option_at("bind_options".into(), options, Place::Bind)?;
    }
    for (frontend, join) in &spec.frontends {
        check_frontend_name(frontend)
            .map_err(|reason| SpecError::Invalid(format!("frontends.{frontend}: {reason}")))?;
        join.clone().checked().map_err(|e| SpecError::Invalid(format!("frontends.{frontend}.{e}")))?;
    }
    for server in servers.iter().chain(&spec.default_servers) {
        check_address(&server.address)?;
        for option in &server.options {
            check_option_at(format!("server {}", server.endpoint()), option, Place::Server)?;
        }
    }
    Ok(())
}

/// [`check_option`] for the line at `key` of a blob or node.
fn check_option_at(key: String, line: &str, place: Place) -> Result<(), SpecError> {
    check_option(line, place).map_err(|reason| SpecError::Option { key, line: line.to_string(), reason })
}

/// A line as an error quotes it: escaped, and cut short past 100 characters.
fn excerpt(line: &str) -> String {
    match line.char_indices().nth(100) {
        Some((end, _)) => format!("{:?}...", &line[..end]),
        None => format!("{line:?}"),
    }
}

/// One backend server of a service. Its identity is `name()`, address and port; the weight is a property
/// HAProxy can change at run time, its own options are not.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Server {
    pub address: String,
    pub port: u16,
    /// HAProxy's weight (0-256); None leaves it to the server options or HAProxy's default.
    pub weight: Option<u16>,
    /// Options of this server alone (Nerve's `haproxy_server_options`), after the service's on its line.
    pub options: Vec<String>,
    /// Where the registry holds it (a ZooKeeper node's path), for the log. Not in the state file, which it
    /// would make a third larger at 50 000 servers, written as a new HAProxy starts.
    #[serde(skip)]
    pub origin: Option<String>,
}

/// A server node in either format: the original's `address`, or Nerve's `host`.
#[derive(Deserialize)]
struct RawServer {
    address: Option<String>,
    host: Option<String>,
    port: Option<i64>,
    weight: Option<i64>,
    haproxy_server_options: Option<String>,
}

impl Server {
    /// A server node: the original's `{"address": "1.2.3.4", "port": 8080}`, or the registration SmartStack's
    /// Nerve writes, `{"host": .., "port": .., "name": .., "weight": .., "haproxy_server_options": ..}`. Other keys
    /// are allowed (registration tools add their own).
    pub fn parse(data: &[u8]) -> Result<Server, SpecError> {
        let raw: RawServer = parse_json(data)?;
        let address = match (raw.address, raw.host) {
            (Some(address), _) => address,
            (None, Some(host)) => host,
            (None, None) => return Err(SpecError::Invalid("has neither `address` nor `host`".into())),
        };
        let port = raw.port.ok_or_else(|| SpecError::Invalid("has no `port`".into()))?;
        let mut server = Server::new(&address, port)?;
        if let Some(weight) = raw.weight {
            server.weight = Some(
                u16::try_from(weight)
                    .ok()
                    .filter(|w| *w <= 256)
                    .ok_or_else(|| SpecError::Invalid(format!("weight {weight} is out of range 0-256")))?,
            );
        }
        if let Some(options) = raw.haproxy_server_options.filter(|o| !o.trim().is_empty()) {
            check_option_at("haproxy_server_options".into(), &options, Place::Server)?;
            server.options.push(options);
        }
        Ok(server)
    }

    pub fn new(address: &str, port: i64) -> Result<Server, SpecError> {
        let port = check_port(port)?;
        check_address(address)?;
        Ok(Server { address: address.to_string(), port, weight: None, options: Vec::new(), origin: None })
    }

    /// `host:port`, `[v6]:port`, or a bare IPv6 address with a port after its last colon is not accepted: the
    /// brackets are what keep the port apart.
    pub fn parse_endpoint(text: &str) -> Result<Server, SpecError> {
        let bad = || SpecError::Invalid(format!("{text:?} is not host:port"));
        let (host, port) = match text.strip_prefix('[') {
            Some(rest) => rest.split_once("]:").ok_or_else(bad)?,
            None => {
                let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
                if host.contains(':') {
                    return Err(SpecError::Invalid(format!(
                        "{text:?}: write an IPv6 address as [address]:port"
                    )));
                }
                (host, port)
            }
        };
        let port: i64 = port.parse().map_err(|_| bad())?;
        Server::new(host, port)
    }

    /// The stable name both the running HAProxy and every rendered config know this server by.
    pub fn name(&self) -> String {
        format!("{}:{}", self.address, self.port)
    }

    /// Whether it is named by an IP address, not a host name.
    pub fn has_ip(&self) -> bool {
        self.address.parse::<std::net::IpAddr>().is_ok()
    }

    /// The address as a `server` line takes it; IPv6 needs brackets to keep the port apart.
    pub fn endpoint(&self) -> String {
        if self.address.contains(':') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.endpoint())
    }
}

/// An IP address or a host name: what HAProxy takes on a server line, and nothing that could end it.
pub fn check_address(address: &str) -> Result<(), SpecError> {
    let valid = !address.is_empty()
        && address.len() <= 255
        && address.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '_'));
    if valid {
        Ok(())
    } else {
        Err(SpecError::Invalid(format!("address {address:?} is not an IP address or host name")))
    }
}

fn check_port(port: i64) -> Result<u16, SpecError> {
    u16::try_from(port)
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| SpecError::Invalid(format!("port {port} is out of range 1-65535")))
}

fn parse_json<'a, T: Deserialize<'a>>(data: &'a [u8]) -> Result<T, SpecError> {
    if data.len() > MAX_BLOB_BYTES {
        return Err(SpecError::TooLarge { size: data.len() as u64 });
    }
    let text = std::str::from_utf8(data).map_err(|_| SpecError::Invalid("data is not UTF-8 text".into()))?;
    serde_json::from_str(text).map_err(|e| SpecError::Invalid(format!("invalid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = r#"{"type":"zookeeper","server":"127.0.0.1:2181","path":"/services/web","port":8080,
        "listen_options":["mode http"],"server_options":["check inter 2000"]}"#;

    #[test]
    fn the_originals_blob_parses() {
        let spec = ServiceSpec::parse(WEB.as_bytes()).unwrap();
        assert_eq!(spec.port, Some(8080));
        assert_eq!(spec.listen_options, ["mode http"]);
        assert_eq!(spec.server_options, ["check inter 2000"]);
        assert_eq!(
            spec.watcher,
            WatcherSpec::Zookeeper { server: "127.0.0.1:2181".into(), path: "/services/web".into() }
        );
        assert!(spec.hold_removals, "mass removals are held by default");
        let opted_out = WEB.replace("\"port\":8080", "\"port\":8080,\"hold_removals\":false");
        assert!(!ServiceSpec::parse(opted_out.as_bytes()).unwrap().hold_removals);
    }

    #[test]
    fn a_state_file_from_before_hold_removals_holds_them() {
        let spec = ServiceSpec::parse(WEB.as_bytes()).unwrap();
        let saved = serde_json::to_string(&spec).unwrap().replace(",\"hold_removals\":true", "");
        assert!(!saved.contains("hold_removals"), "{saved}");
        assert_eq!(serde_json::from_str::<ServiceSpec>(&saved).unwrap(), spec);
    }

    #[test]
    fn a_service_joins_frontends_binds_its_own_address_and_has_default_servers() {
        let blob = r#"{"type":"zookeeper","server":"a:1","path":"/s","bind_address":"127.0.0.2","port":443,
            "bind_options":"ssl crt /etc/ssl/api.pem","frontends":{"https":{"hosts":["API.test"],"paths":["/v1/"]}},
            "default_servers":[{"host":"10.0.0.2","port":80},{"address":"10.0.0.1","port":80,"weight":5}]}"#;
        let spec = ServiceSpec::parse(blob.as_bytes()).unwrap();
        assert_eq!(spec.listen_at("0.0.0.0".parse().unwrap()), Some("127.0.0.2:443".parse().unwrap()));
        assert_eq!(spec.bind_options.as_deref(), Some("ssl crt /etc/ssl/api.pem"));
        assert_eq!(spec.frontends["https"].hosts, ["api.test"], "host names are lower-cased");
        let defaults: Vec<String> = spec.default_servers.iter().map(Server::name).collect();
        assert_eq!(defaults, ["10.0.0.1:80", "10.0.0.2:80"]);
        assert_eq!(spec.default_servers[0].weight, Some(5));
        check_saved(&spec, &[]).unwrap();
        // A backend alone: no port of its own.
        let backend = r#"{"type":"dns","backends":[{"name":"a.test","port":80}],"frontends":{"https":{"default":true}}}"#;
        let spec = ServiceSpec::parse(backend.as_bytes()).unwrap();
        assert_eq!((spec.port, spec.listen_at("0.0.0.0".parse().unwrap())), (None, None));
        // The state file keeps what the blob said, and an older one (no new keys) still loads.
        let saved: ServiceSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(saved, spec);
    }

    #[test]
    fn bad_blobs_are_refused_with_the_reason() {
        let zk = r#""type":"zookeeper","server":"a:1","path":"/s""#;
        let cases = [
            ("{".to_string(), "invalid JSON"),
            ("\u{0}\u{1}binary".to_string(), "invalid JSON"),
            (format!("{{{zk}}}"), "needs `port`, or `frontends` to join"),
            (format!("{{{zk},\"port\":0}}"), "port 0 is out of range"),
            (format!("{{{zk},\"port\":65536}}"), "port 65536 is out of range"),
            (format!("{{{zk},\"port\":\"80\"}}"), "invalid type"),
            (
                format!("{{{zk},\"port\":80,\"listen_options\":[\"mode http\\nlisten evil\"]}}"),
                "listen_options[0]",
            ),
            (format!("{{{zk},\"port\":80,\"server_options\":[\"check\\r\"]}}"), "server_options[0]"),
            (format!("{{{zk},\"port\":80,\"server_options\":\"check\"}}"), "invalid type"),
            (format!("{{{zk},\"port\":80,\"bogus\":1}}"), "unknown field `bogus`"),
            (format!("{{{zk},\"port\":80,\"hold_removals\":\"no\"}}"), "invalid type"),
            (
                r#"{"type":"etcd","port":80}"#.to_string(),
                "unknown watcher type \"etcd\", known types: zookeeper",
            ),
            (r#"{"type":"zookeeper","port":80,"path":"/s"}"#.to_string(), "needs `server`"),
            (r#"{"type":"zookeeper","port":80,"server":"a:1"}"#.to_string(), "needs `path`"),
            (r#"{"type":"zookeeper","port":80,"server":"a:1","path":"s"}"#.to_string(), "path:"),
            (format!("{{{zk},\"port\":80,\"x\":\"{}\"}}", "a".repeat(MAX_BLOB_BYTES)), "over the limit"),
            (format!("{{{zk},\"frontends\":{{\"web\":{{\"hosts\":[\"exa mple.com\"]}}}}}}"), "frontends.web.hosts[0]: \"exa mple.com\" is not a host name"),
            (format!("{{{zk},\"frontends\":{{\"web\":{{\"paths\":[\"v1\"]}}}}}}"), "frontends.web.paths[0]: \"v1\" is not a path prefix"),
            (format!("{{{zk},\"frontends\":{{\"web\":{{}}}}}}"), "frontends.web.names neither hosts, paths nor default"),
            (format!("{{{zk},\"frontends\":{{\"w b\":{{\"default\":true}}}}}}"), "frontends.w b: \"w b\" is not a frontend name"),
            (format!("{{{zk},\"frontends\":{{\"web\":{{\"default\":true,\"x\":1}}}}}}"), "unknown field `x`"),
            (format!("{{{zk},\"frontends\":{{\"web\":{{\"default\":true}}}},\"listen_options\":[\"mode tcp\"]}}"), "listen_options[0]: a service that joins frontends is HTTP"),
            (format!("{{{zk},\"frontends\":{{\"web\":{{\"default\":true}}}},\"bind_address\":\"127.0.0.2\"}}"), "bind_address: the service has no `port`"),
            (format!("{{{zk},\"port\":80,\"bind_address\":\"localhost\"}}"), "bind_address: \"localhost\" is not an IP address"),
            (format!("{{{zk},\"port\":80,\"bind_options\":\"ssl\\ncrt x\"}}"), "bind_options"),
            (format!("{{{zk},\"port\":80,\"bind_options\":\"ssl # x\"}}"), "bind_options"),
            (format!("{{{zk},\"port\":80,\"default_servers\":[{{\"host\":\"a b\",\"port\":1}}]}}"), "default_servers[0]: address"),
            (format!("{{{zk},\"port\":80,\"default_servers\":[{{\"host\":\"a\"}}]}}"), "default_servers[0]: has no `port`"),
            (format!("{{{zk},\"port\":80,\"default_servers\":{{\"host\":\"a\",\"port\":1}}}}"), "default_servers: must be a list"),
            (r#"{"type":"campanjazk","server":"a:1","path":"/s","frontends":{"web":{"default":true}}}"#.to_string(), "needs `remote_port`"),
        ];
        for (blob, expected) in cases {
            let err = ServiceSpec::parse(blob.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(expected), "error for {blob:.80} was {err:?}, expected {expected:?}");
        }
    }

    #[test]
    fn a_refused_option_is_named_with_its_line() {
        let blob = r#"{"type":"zookeeper","server":"a:1","path":"/s","port":80,
            "listen_options":["mode http","global","stats socket /tmp/x.sock mode 666 level admin"]}"#;
        let err = ServiceSpec::parse(blob.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "listen_options[1] \"global\": starts a `global` section, which would take the lines after it out of \
             the service's listen section"
        );
        let nerve = br#"{"host":"10.0.0.5","port":3000,"haproxy_server_options":"check\u2028listen x"}"#;
        assert_eq!(
            Server::parse(nerve).unwrap_err().to_string(),
            "haproxy_server_options \"check\\u{2028}listen x\": contains a line separator (U+2028) at byte 5; \
             an option must be one line of text"
        );
        assert_eq!(excerpt(&"a".repeat(150)), format!("{:?}...", "a".repeat(100)));
    }

    #[test]
    fn every_watcher_type_parses() {
        let campanja = r#"{"type":"campanjazk","server":"z:1","path":"/h","port":80,"remote_port":9001}"#;
        let spec = ServiceSpec::parse(campanja.as_bytes()).unwrap();
        assert_eq!(
            spec.watcher,
            WatcherSpec::Campanjazk { server: "z:1".into(), path: "/h".into(), port: 9001 }
        );
        let default_port = r#"{"type":"campanjazk","server":"z:1","path":"/h","port":80}"#;
        assert!(matches!(
            ServiceSpec::parse(default_port.as_bytes()).unwrap().watcher,
            WatcherSpec::Campanjazk { port: 80, .. }
        ));
        let dns = r#"{"type":"dns","port":80,"backends":[{"name":"a.example","port":81},{"name":"10.0.0.1","port":82}]}"#;
        let spec = ServiceSpec::parse(dns.as_bytes()).unwrap();
        let WatcherSpec::Dns { backends, interval } = spec.watcher else { panic!("{spec:?}") };
        assert_eq!((backends.len(), backends[0].name.as_str(), backends[1].port), (2, "a.example", 82));
        assert_eq!(interval, Duration::from_secs(5), "the original's default");
        let file = r#"{"type":"file","port":80,"file":"/etc/s.txt","interval":0.5}"#;
        assert_eq!(
            ServiceSpec::parse(file.as_bytes()).unwrap().watcher,
            WatcherSpec::File { file: "/etc/s.txt".into(), interval: Duration::from_millis(500) }
        );
        let cases = [
            (r#"{"type":"dns","port":80}"#, "dns watcher needs `backends`"),
            (r#"{"type":"dns","port":80,"backends":[]}"#, "backends: names no host"),
            (
                r#"{"type":"dns","port":80,"backends":[{"name":"a b","port":1}]}"#,
                "backends[0]: address \"a b\"",
            ),
            (r#"{"type":"dns","port":80,"backends":[{"name":"a","port":0}]}"#, "backends[0]: port 0"),
            (
                r#"{"type":"dns","port":80,"backends":[{"name":"a","port":1}],"interval":0}"#,
                "interval: 0 is not",
            ),
            (r#"{"type":"file","port":80,"file":"rel.txt"}"#, "must be an absolute path"),
            (
                r#"{"type":"file","port":80,"file":"/a","path":"/x"}"#,
                "`path` is not a key of the file watcher",
            ),
            (
                r#"{"type":"campanjazk","server":"z:1","path":"/h","port":80,"remote_port":70000}"#,
                "port 70000",
            ),
            (
                r#"{"type":"zookeeper","server":"z:1","path":"/h","port":80,"remote_port":1}"#,
                "`remote_port` is not a key",
            ),
        ];
        for (blob, expected) in cases {
            let err = ServiceSpec::parse(blob.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(expected), "error for {blob} was {err:?}, expected {expected:?}");
        }
    }

    #[test]
    fn nerve_registrations() {
        let nerve =
            br#"{"host":"10.0.0.5","port":3000,"name":"web","weight":10,"haproxy_server_options":"backup"}"#;
        let s = Server::parse(nerve).unwrap();
        assert_eq!(
            (s.name(), s.weight, s.options.clone()),
            ("10.0.0.5:3000".into(), Some(10), vec!["backup".into()])
        );
        assert_eq!(Server::parse(br#"{"host":"10.0.0.5","port":3000,"name":"web"}"#).unwrap().weight, None);
        for (bad, expected) in [
            (&br#"{"port":3000,"name":"web"}"#[..], "neither `address` nor `host`"),
            (br#"{"host":"10.0.0.5","port":3000,"weight":300}"#, "weight 300 is out of range"),
            (
                br#"{"host":"10.0.0.5","port":3000,"haproxy_server_options":"backup\nlisten x"}"#,
                "haproxy_server_options",
            ),
        ] {
            let err = Server::parse(bad).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn endpoints() {
        assert_eq!(Server::parse_endpoint("10.0.0.1:80").unwrap().endpoint(), "10.0.0.1:80");
        assert_eq!(Server::parse_endpoint("[::1]:80").unwrap().name(), "::1:80");
        assert_eq!(Server::parse_endpoint("db.local:5432").unwrap().address, "db.local");
        for bad in ["nonsense", "::1:80", "a:", "a:0", "[::1]80", "a b:80"] {
            assert!(Server::parse_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_haproxy_takes() {
        for good in ["web", "web-1", "a_b.c:d", "X9"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "we b", "a/b", "a\nb", "é", &"a".repeat(101), "proxymgr-prometheus"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn server_nodes() {
        let s = Server::parse(br#"{"address":"127.0.0.1","port":9001}"#).unwrap();
        assert_eq!((s.name(), s.endpoint()), ("127.0.0.1:9001".into(), "127.0.0.1:9001".into()));
        let v6 = Server::parse(br#"{"address":"::1","port":9001,"extra":true}"#).unwrap();
        assert_eq!(v6.endpoint(), "[::1]:9001");
        for bad in [
            &br#"{"address":"1.2.3.4"}"#[..],
            br#"{"address":"1.2.3.4 backup","port":1}"#,
            br#"{"address":"","port":1}"#,
            br#"{"address":"a","port":70000}"#,
            br#"not json"#,
        ] {
            assert!(Server::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
