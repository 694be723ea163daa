//! A service's JSON blob -> [`ServiceSpec`], and a server node's JSON -> [`Server`], both validated.
//!
//! Everything here is data that arrives from the registry at run time, so nothing panics: a bad blob becomes a
//! [`SpecError`] that the caller logs with the node's path, and the rest of the system carries on.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::{check_config_line, check_ensemble, check_znode_path};

/// The largest blob we parse; ZooKeeper allows 1 MiB, a service description is a few hundred bytes.
pub const MAX_BLOB_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

/// What one service is: its listen port and options, and how to find its servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub port: u16,
    pub listen_options: Vec<String>,
    pub server_options: Vec<String>,
    pub watcher: WatcherSpec,
}

/// How a service's servers are found. Each variant is one kind of watcher thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatcherSpec {
    /// Children of `path` on the ensemble `server`, each holding `{"address": .., "port": ..}`.
    Zookeeper { server: String, path: String },
}

pub const WATCHER_TYPES: &[&str] = &["zookeeper"];

/// The blob as written; every key any watcher takes is here so that unknown keys are refused by name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    #[serde(rename = "type")]
    kind: String,
    port: i64,
    #[serde(default)]
    listen_options: Vec<String>,
    #[serde(default)]
    server_options: Vec<String>,
    server: Option<String>,
    path: Option<String>,
}

impl ServiceSpec {
    pub fn parse(data: &[u8]) -> Result<ServiceSpec, SpecError> {
        let raw: RawSpec = parse_json(data)?;
        let port = check_port(raw.port)?;
        for (key, options) in
            [("listen_options", &raw.listen_options), ("server_options", &raw.server_options)]
        {
            for (i, option) in options.iter().enumerate() {
                check_config_line(option).map_err(|reason| SpecError(format!("{key}[{i}]: {reason}")))?;
            }
        }
        let watcher = match raw.kind.as_str() {
            "zookeeper" => {
                let server =
                    raw.server.ok_or_else(|| SpecError("zookeeper watcher needs `server`".into()))?;
                check_ensemble(&server).map_err(|r| SpecError(format!("server: {r}")))?;
                let path = raw.path.ok_or_else(|| SpecError("zookeeper watcher needs `path`".into()))?;
                check_znode_path(&path).map_err(|r| SpecError(format!("path: {r}")))?;
                WatcherSpec::Zookeeper { server, path }
            }
            other => {
                return Err(SpecError(format!(
                    "unknown watcher type {other:?}, known types: {}",
                    WATCHER_TYPES.join(", ")
                )))
            }
        };
        Ok(ServiceSpec {
            port,
            listen_options: raw.listen_options,
            server_options: raw.server_options,
            watcher,
        })
    }
}

/// HAProxy's rule for proxy and server names: letters, digits, `-`, `_`, `.` and `:`.
pub fn check_name(name: &str) -> Result<(), SpecError> {
    if name.is_empty() || name.len() > 100 {
        return Err(SpecError(format!("name {name:?} must be 1 to 100 characters long")));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(SpecError(format!(
            "name {name:?} contains {c:?}; HAProxy takes only letters, digits, '-', '_', '.' and ':'"
        )));
    }
    Ok(())
}

/// One backend server of a service. Its identity is `name()`, address and port; the weight is a property
/// HAProxy can change at run time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Server {
    pub address: String,
    pub port: u16,
    /// HAProxy's weight (0-256); None leaves HAProxy's default.
    pub weight: Option<u16>,
}

#[derive(Deserialize)]
struct RawServer {
    address: String,
    port: i64,
}

impl Server {
    /// A server node as the original wrote it: `{"address": "1.2.3.4", "port": 8080}`. Other keys are allowed
    /// (registration tools add their own).
    pub fn parse(data: &[u8]) -> Result<Server, SpecError> {
        let raw: RawServer = parse_json(data)?;
        Server::new(&raw.address, raw.port)
    }

    pub fn new(address: &str, port: i64) -> Result<Server, SpecError> {
        let port = check_port(port)?;
        let valid = !address.is_empty()
            && address.len() <= 255
            && address.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '_'));
        if !valid {
            return Err(SpecError(format!("address {address:?} is not an IP address or host name")));
        }
        Ok(Server { address: address.to_string(), port, weight: None })
    }

    /// The stable name both the running HAProxy and every rendered config know this server by.
    pub fn name(&self) -> String {
        format!("{}:{}", self.address, self.port)
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

fn check_port(port: i64) -> Result<u16, SpecError> {
    u16::try_from(port)
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| SpecError(format!("port {port} is out of range 1-65535")))
}

fn parse_json<'a, T: Deserialize<'a>>(data: &'a [u8]) -> Result<T, SpecError> {
    if data.len() > MAX_BLOB_BYTES {
        return Err(SpecError(format!("{} bytes is over the limit of {MAX_BLOB_BYTES}", data.len())));
    }
    let text = std::str::from_utf8(data).map_err(|_| SpecError("data is not UTF-8 text".into()))?;
    serde_json::from_str(text).map_err(|e| SpecError(format!("invalid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = r#"{"type":"zookeeper","server":"127.0.0.1:2181","path":"/services/web","port":8080,
        "listen_options":["mode http"],"server_options":["check inter 2000"]}"#;

    #[test]
    fn the_originals_blob_parses() {
        let spec = ServiceSpec::parse(WEB.as_bytes()).unwrap();
        assert_eq!(spec.port, 8080);
        assert_eq!(spec.listen_options, ["mode http"]);
        assert_eq!(spec.server_options, ["check inter 2000"]);
        assert_eq!(
            spec.watcher,
            WatcherSpec::Zookeeper { server: "127.0.0.1:2181".into(), path: "/services/web".into() }
        );
    }

    #[test]
    fn bad_blobs_are_refused_with_the_reason() {
        let zk = r#""type":"zookeeper","server":"a:1","path":"/s""#;
        let cases = [
            ("{".to_string(), "invalid JSON"),
            ("\u{0}\u{1}binary".to_string(), "invalid JSON"),
            (format!("{{{zk}}}"), "missing field `port`"),
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
            (
                r#"{"type":"etcd","port":80}"#.to_string(),
                "unknown watcher type \"etcd\", known types: zookeeper",
            ),
            (r#"{"type":"zookeeper","port":80,"path":"/s"}"#.to_string(), "needs `server`"),
            (r#"{"type":"zookeeper","port":80,"server":"a:1"}"#.to_string(), "needs `path`"),
            (r#"{"type":"zookeeper","port":80,"server":"a:1","path":"s"}"#.to_string(), "path:"),
            (format!("{{{zk},\"port\":80,\"x\":\"{}\"}}", "a".repeat(MAX_BLOB_BYTES)), "over the limit"),
        ];
        for (blob, expected) in cases {
            let err = ServiceSpec::parse(blob.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(expected), "error for {blob:.80} was {err:?}, expected {expected:?}");
        }
    }

    #[test]
    fn names_haproxy_takes() {
        for good in ["web", "web-1", "a_b.c:d", "X9"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "we b", "a/b", "a\nb", "é", &"a".repeat(101)] {
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
