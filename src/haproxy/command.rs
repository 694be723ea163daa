//! The runtime commands proxymgr sends HAProxy, and what HAProxy's refusals of them mean. Pure: the planner
//! builds [`Command`]s, the socket (`runtime.rs`) sends them, and the reconciler's core decides on a typed
//! [`Refusal`] rather than on HAProxy's sentences.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Ready,
    Maint,
}

/// Every change proxymgr makes at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    SetState {
        backend: String,
        server: String,
        state: State,
    },
    /// The pre-1.6 form of `SetState`.
    EnableServer {
        backend: String,
        server: String,
        enable: bool,
    },
    SetWeight {
        backend: String,
        server: String,
        weight: u16,
    },
    /// `arguments` is everything after the server's name: address and options, as on a `server` line.
    AddServer {
        backend: String,
        server: String,
        arguments: String,
    },
    EnableHealth {
        backend: String,
        server: String,
    },
    DelServer {
        backend: String,
        server: String,
    },
    /// `set server <b>/<s> addr <address> port <port>` (1.8): where a slot's server is.
    SetAddr {
        backend: String,
        server: String,
        address: String,
        port: u16,
    },
    /// A route of a frontend's map (`map` as haproxy.cfg names its file): a new key, a key to another backend,
    /// a key gone. Keys and backends hold no white space, `;` or `\` (`route.rs`, `service::check_name`).
    AddMap {
        map: String,
        key: String,
        backend: String,
    },
    SetMap {
        map: String,
        key: String,
        backend: String,
    },
    DelMap {
        map: String,
        key: String,
    },
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::SetState { backend, server, state: State::Ready } => {
                write!(f, "set server {backend}/{server} state ready")
            }
            Command::SetState { backend, server, state: State::Maint } => {
                write!(f, "set server {backend}/{server} state maint")
            }
            Command::EnableServer { backend, server, enable: true } => {
                write!(f, "enable server {backend}/{server}")
            }
            Command::EnableServer { backend, server, enable: false } => {
                write!(f, "disable server {backend}/{server}")
            }
            Command::SetWeight { backend, server, weight } => {
                write!(f, "set weight {backend}/{server} {weight}")
            }
            Command::AddServer { backend, server, arguments } => {
                write!(f, "add server {backend}/{server} {arguments}")
            }
            Command::EnableHealth { backend, server } => write!(f, "enable health {backend}/{server}"),
            Command::DelServer { backend, server } => write!(f, "del server {backend}/{server}"),
            Command::SetAddr { backend, server, address, port } => {
                write!(f, "set server {backend}/{server} addr {address} port {port}")
            }
            Command::AddMap { map, key, backend } => write!(f, "add map {map} {key} {backend}"),
            Command::SetMap { map, key, backend } => write!(f, "set map {map} {key} {backend}"),
            Command::DelMap { map, key } => write!(f, "del map {map} {key}"),
        }
    }
}

impl Command {
    /// Whether HAProxy's `reply` (trimmed) says the command worked; anything else is a refusal.
    pub fn accepts(&self, reply: &str) -> bool {
        match self {
            Command::AddServer { .. } => reply == "New server registered.",
            Command::DelServer { .. } => reply == "Server deleted.",
            // "IP changed from '127.0.0.1' to '10.0.0.1', port changed from '1' to '80' by 'stats socket
            // command'", or "no need to change the addr, ..."; a refusal of the port follows the address's part
            // ("..., problem converting port ...", "..., can't change <port> ...").
            Command::SetAddr { .. } => {
                (reply.starts_with("IP changed from") || reply.starts_with("no need to change the addr"))
                    && (reply.contains("port changed from") || reply.contains("no need to change the port"))
            }
            _ => reply.is_empty(),
        }
    }
}

/// Why HAProxy refused a command, read from its reply (HAProxy 1.8 to 3.x word these alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The backend takes no dynamic server at all (its balance algorithm: `static-rr`, `source`, `uri`, ...):
    /// "Backend must use a dynamic load balancing to support dynamic servers."
    BackendNotDynamic,
    /// An option a dynamic server does not take (`cookie`, `track`, `resolvers`, ...).
    NotForDynamic {
        keyword: String,
    },
    /// An option HAProxy does not know.
    UnknownKeyword {
        keyword: String,
    },
    NoSuchBackend,
    NoSuchServer,
    /// `del server` of a server that still has connections: it stays in maintenance until they end.
    StillInUse,
    /// Anything else; the reply says what.
    Other,
}

impl Refusal {
    /// Reads HAProxy's reply to a refused command.
    pub fn parse(reply: &str) -> Refusal {
        if reply.contains("Backend must use a dynamic load balancing") {
            return Refusal::BackendNotDynamic;
        }
        if let Some(keyword) = quoted_before(reply, "option is not accepted for dynamic server") {
            return Refusal::NotForDynamic { keyword };
        }
        if let Some(keyword) = quoted_after(reply, "unknown keyword '") {
            return Refusal::UnknownKeyword { keyword };
        }
        if reply.contains("No such backend") {
            return Refusal::NoSuchBackend;
        }
        if reply.contains("No such server") {
            return Refusal::NoSuchServer;
        }
        if reply.contains("still has connections") {
            return Refusal::StillInUse;
        }
        Refusal::Other
    }

    /// Whether it holds for every server of the backend, not only for the one refused: asking again for the next
    /// server of the backend is then pointless.
    pub fn backend_wide(&self) -> bool {
        matches!(self, Refusal::BackendNotDynamic | Refusal::NoSuchBackend)
    }
}

/// `'cookie' option is not accepted ...` -> `cookie`.
fn quoted_before(reply: &str, marker: &str) -> Option<String> {
    let before = &reply[..reply.find(marker)?];
    let end = before.rfind('\'')?;
    let start = before[..end].rfind('\'')?;
    Some(before[start + 1..end].to_string())
}

/// `unknown keyword 'chekc'` -> `chekc`.
fn quoted_after(reply: &str, marker: &str) -> Option<String> {
    let after = &reply[reply.find(marker)? + marker.len()..];
    Some(after[..after.find('\'')?].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_as_haproxy_reads_them() {
        let (b, s) = ("web".to_string(), "127.0.0.1:9001".to_string());
        let cases = [
            (
                Command::SetState { backend: b.clone(), server: s.clone(), state: State::Maint },
                "set server web/127.0.0.1:9001 state maint",
            ),
            (
                Command::SetState { backend: b.clone(), server: s.clone(), state: State::Ready },
                "set server web/127.0.0.1:9001 state ready",
            ),
            (
                Command::EnableServer { backend: b.clone(), server: s.clone(), enable: false },
                "disable server web/127.0.0.1:9001",
            ),
            (
                Command::SetWeight { backend: b.clone(), server: s.clone(), weight: 5 },
                "set weight web/127.0.0.1:9001 5",
            ),
            (
                Command::AddServer {
                    backend: b.clone(),
                    server: s.clone(),
                    arguments: "127.0.0.1:9001 check".into(),
                },
                "add server web/127.0.0.1:9001 127.0.0.1:9001 check",
            ),
            (
                Command::EnableHealth { backend: b.clone(), server: s.clone() },
                "enable health web/127.0.0.1:9001",
            ),
            (Command::DelServer { backend: b.clone(), server: s }, "del server web/127.0.0.1:9001"),
            (
                Command::SetAddr { backend: b, server: "slot3".into(), address: "::1".into(), port: 80 },
                "set server web/slot3 addr ::1 port 80",
            ),
        ];
        for (command, text) in cases {
            assert_eq!(command.to_string(), text);
        }
    }

    #[test]
    fn replies_that_say_a_command_worked() {
        let set_addr = Command::SetAddr {
            backend: "web".into(),
            server: "slot1".into(),
            address: "10.0.0.1".into(),
            port: 80,
        };
        let state = Command::SetState { backend: "web".into(), server: "slot1".into(), state: State::Ready };
        let cases = [
            (&set_addr, "IP changed from '127.0.0.1' to '10.0.0.1', port changed from '1' to '80' by 'stats socket command'", true),
            (&set_addr, "no need to change the addr, port changed from '1' to '80' by 'stats socket command'", true),
            (&set_addr, "IP changed from '127.0.0.1' to '10.0.0.1', no need to change the port by 'stats socket command'", true),
            (&set_addr, "Invalid addr '10.0.0.x' by 'stats socket command'", false),
            (&set_addr, "IP changed from '127.0.0.1' to '10.0.0.1', problem converting port '8x' to an int by 'stats socket command'", false),
            (&set_addr, "No such server.", false),
            (&state, "", true),
            (&state, "No such server.", false),
        ];
        for (command, reply, works) in cases {
            assert_eq!(command.accepts(reply), works, "{command}: {reply}");
        }
    }

    #[test]
    fn refusals_as_haproxy_words_them() {
        let cases = [
            (
                "Backend must use a dynamic load balancing to support dynamic servers.",
                Refusal::BackendNotDynamic,
            ),
            (
                "[ALERT]    (4242) : config : 'cookie' option is not accepted for dynamic server",
                Refusal::NotForDynamic { keyword: "cookie".into() },
            ),
            (
                "[ALERT]    (4242) : config : unknown keyword 'chekc'; did you mean 'check' maybe ?",
                Refusal::UnknownKeyword { keyword: "chekc".into() },
            ),
            ("No such backend.", Refusal::NoSuchBackend),
            ("No such server.", Refusal::NoSuchServer),
            ("Server still has connections attached to it, cannot remove it.", Refusal::StillInUse),
            ("Unknown command.", Refusal::Other),
        ];
        for (reply, refusal) in cases {
            assert_eq!(Refusal::parse(reply), refusal, "{reply}");
        }
        assert!(Refusal::BackendNotDynamic.backend_wide());
        assert!(!Refusal::NotForDynamic { keyword: "cookie".into() }.backend_wide());
    }
}
