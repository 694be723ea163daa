//! Routing keys, pure: how a service joins a shared frontend (`Join`: host names, path prefixes, default), each
//! checked, and the keys of HAProxy's map they become.
//!
//! A frontend routes through one map file (`<map_dir>/<frontend>.map`) matched with `map_beg`, which HAProxy keeps
//! in a prefix tree and answers with the longest matching key. The frontend looks a request up three times, each
//! only if the one before found nothing: as `<host><path>` (the Host header lower-cased, without its port), as
//! `*.<host without its first label><path>`, and as `<path>`. So an exact host beats a wildcard, a wildcard beats
//! any host, and within each the longest path prefix wins, whatever the order the keys were added in at run time.
//! A Host header that is not a host name (HAProxy lets `www.test/admin` through) is looked up as no host at all:
//! else a client could put a path prefix in it and reach a backend meant for that prefix alone.
//!
//! Everything here comes from the registry: a key never holds what would end a map line or a runtime command
//! (white space, `#`, `;`, `\`, quotes, control characters).

use std::fmt;

/// How one service joins one frontend.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Join {
    /// Exact (`api.example.com`) or wildcard (`*.example.com`, one label, as a TLS certificate's); none: any host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Path prefixes, each starting with `/`; none: `/`.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Also the route of any host and path no other route takes (any host, `/`).
    #[serde(default)]
    pub default: bool,
}

/// Why a join's key was refused. The caller names the service and the frontend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("hosts[{index}]: {host:?} is not a host name (letters, digits, '-' and '.', or '*.' and one)")]
    Host { index: usize, host: String },
    #[error("paths[{index}]: {path:?} is not a path prefix (it starts with '/', at most 1024 characters, no white space, '#', ';', '\\', quotes or control characters)")]
    Path { index: usize, path: String },
    #[error("names neither hosts, paths nor default: it would route nothing")]
    Empty,
}

/// The longest path prefix taken: a map line must stay well below HAProxy's line length.
const MAX_PATH: usize = 1024;

impl Join {
    /// Normalizes (host names lower-cased) and checks every key; the first refused is the error.
    pub fn checked(mut self) -> Result<Join, KeyError> {
        if self.hosts.is_empty() && self.paths.is_empty() && !self.default {
            return Err(KeyError::Empty);
        }
        for (index, host) in self.hosts.iter_mut().enumerate() {
            *host = host.to_ascii_lowercase();
            if !is_host_pattern(host) {
                return Err(KeyError::Host { index, host: host.clone() });
            }
        }
        for (index, path) in self.paths.iter().enumerate() {
            if !is_path_prefix(path) {
                return Err(KeyError::Path { index, path: path.clone() });
            }
        }
        Ok(self)
    }

    /// Every key this join routes, with the key in the blob it comes from (`hosts[1]`, `paths[0]`, `default`) for
    /// the log: hosts × paths (`/` when it names none), or the paths on any host; and `/` on any host if default.
    pub fn keys(&self) -> Vec<(Key, String)> {
        let root = ["/".to_string()];
        let paths: &[String] = if self.paths.is_empty() { &root } else { &self.paths };
        let mut keys = Vec::new();
        if self.hosts.is_empty() {
            for (p, path) in paths.iter().enumerate() {
                if !self.paths.is_empty() {
                    keys.push((Key::new("", path), format!("paths[{p}]")));
                }
            }
        }
        for (h, host) in self.hosts.iter().enumerate() {
            for path in paths {
                keys.push((Key::new(host, path), format!("hosts[{h}]")));
            }
        }
        if self.default {
            keys.push((Key::new("", "/"), "default".to_string()));
        }
        keys
    }
}

/// One key of a frontend's map: `<host pattern><path prefix>`, the host empty for any host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Key(String);

impl Key {
    pub fn new(host: &str, path: &str) -> Key {
        Key(format!("{host}{path}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `key` is one a join could make (what HAProxy's map holds besides is someone else's).
pub fn is_key(key: &str) -> bool {
    match key.find('/') {
        Some(0) => is_path_prefix(key),
        Some(at) => is_host_pattern(&key[..at]) && is_path_prefix(&key[at..]),
        None => false,
    }
}

/// A host name (labels of letters, digits and `-`, not starting or ending with `-`, joined by `.`), or `*.` and
/// one with at least one label.
fn is_host_pattern(host: &str) -> bool {
    let name = host.strip_prefix("*.").unwrap_or(host);
    !name.is_empty()
        && host.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// A path prefix: `/` first, then printable ASCII but what would end a map line or a runtime command.
fn is_path_prefix(path: &str) -> bool {
    path.starts_with('/')
        && path.len() <= MAX_PATH
        && path.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'#' | b';' | b'\\' | b'"' | b'\''))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(hosts: &[&str], paths: &[&str], default: bool) -> Join {
        Join {
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            paths: paths.iter().map(|s| s.to_string()).collect(),
            default,
        }
    }

    #[test]
    fn keys_are_hosts_by_paths_then_the_default() {
        let table: &[(Join, &[&str])] = &[
            (join(&["api.example.com"], &[], false), &["api.example.com/"]),
            (
                join(&["a.test", "*.b.test"], &["/v1/", "/v2"], false),
                &["a.test/v1/", "a.test/v2", "*.b.test/v1/", "*.b.test/v2"],
            ),
            (join(&[], &["/static/"], false), &["/static/"]),
            (join(&[], &[], true), &["/"]),
            (join(&["Web.Test"], &[], true), &["web.test/", "/"]),
        ];
        for (join, expected) in table {
            let keys: Vec<String> =
                join.clone().checked().unwrap().keys().iter().map(|(k, _)| k.to_string()).collect();
            assert_eq!(keys, *expected, "{join:?}");
        }
    }

    #[test]
    fn each_key_names_where_it_comes_from() {
        let keys = join(&["a.test", "b.test"], &["/x/"], true).checked().unwrap().keys();
        let origins: Vec<&str> = keys.iter().map(|(_, o)| o.as_str()).collect();
        assert_eq!(origins, ["hosts[0]", "hosts[1]", "default"]);
        let keys = join(&[], &["/x/", "/y/"], false).keys();
        let origins: Vec<&str> = keys.iter().map(|(_, o)| o.as_str()).collect();
        assert_eq!(origins, ["paths[0]", "paths[1]"]);
    }

    #[test]
    fn bad_keys_are_refused_by_their_place() {
        let long = format!("/{}", "a".repeat(MAX_PATH));
        let table: &[(Join, KeyError)] = &[
            (join(&[], &[], false), KeyError::Empty),
            (join(&["exa mple.com"], &[], false), KeyError::Host { index: 0, host: "exa mple.com".into() }),
            (
                join(&["ok.test", "bad_.test"], &[], false),
                KeyError::Host { index: 1, host: "bad_.test".into() },
            ),
            (join(&["*"], &[], false), KeyError::Host { index: 0, host: "*".into() }),
            (join(&["*.*.test"], &[], false), KeyError::Host { index: 0, host: "*.*.test".into() }),
            (join(&["a..test"], &[], false), KeyError::Host { index: 0, host: "a..test".into() }),
            (join(&["-a.test"], &[], false), KeyError::Host { index: 0, host: "-a.test".into() }),
            (join(&["a.test:443"], &[], false), KeyError::Host { index: 0, host: "a.test:443".into() }),
            (join(&["a.test\nb"], &[], false), KeyError::Host { index: 0, host: "a.test\nb".into() }),
            (join(&[], &["v1/"], false), KeyError::Path { index: 0, path: "v1/".into() }),
            (join(&[], &["/a b"], false), KeyError::Path { index: 0, path: "/a b".into() }),
            (join(&[], &["/ok", "/a;b"], false), KeyError::Path { index: 1, path: "/a;b".into() }),
            (join(&[], &["/a#b"], false), KeyError::Path { index: 0, path: "/a#b".into() }),
            (join(&[], &["/a\\"], false), KeyError::Path { index: 0, path: "/a\\".into() }),
            (join(&[], &["/é"], false), KeyError::Path { index: 0, path: "/é".into() }),
            (join(&[], &[&long], false), KeyError::Path { index: 0, path: long.clone() }),
        ];
        for (join, expected) in table {
            assert_eq!(join.clone().checked().as_ref(), Err(expected), "{join:?}");
        }
    }

    #[test]
    fn keys_a_join_could_make_are_told_from_others() {
        for key in ["a.test/", "*.a.test/v1/", "/static/", "/"] {
            assert!(is_key(key), "{key}");
        }
        for key in ["a.test", "A.test/", "a;b", "a.test/x;y", "", "*/x", "a b/"] {
            assert!(!is_key(key), "{key}");
        }
    }

    #[test]
    fn good_keys_pass_and_hosts_are_lower_cased() {
        let checked = join(&["API.Example.COM", "*.x-1.test", "localhost"], &["/", "/a/b.c?d=%20"], false)
            .checked()
            .unwrap();
        assert_eq!(checked.hosts, ["api.example.com", "*.x-1.test", "localhost"]);
    }
}
