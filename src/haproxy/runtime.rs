//! HAProxy's runtime API over the admin socket: sends the [`Command`]s of `command.rs`, each reply checked (a
//! refusal typed as a [`Refusal`]), and the two queries it needs (`show info` for the serving pid, `show servers
//! state` for one backend; never `show stat`, 11 MB at 50k servers).
//!
//! One connection in `prompt` mode is kept and reused (50-70 µs a command instead of 60-90 µs on a fresh one);
//! any error drops it, and the next command connects again. After a reload the connection must be dropped:
//! it reaches the old process.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::command::{Command, Refusal};

const TIMEOUT: Duration = Duration::from_secs(2);
/// A reply longer than this is not one we asked for.
const MAX_REPLY: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("HAProxy socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("HAProxy refused `{command}`: {reply}")]
    Refused { command: String, reply: String, refusal: Refusal },
    #[error("HAProxy's reply to `{command}` makes no sense: {reply:?}")]
    Garbled { command: String, reply: String },
}

/// One server as `show servers state` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    pub name: String,
    pub address: String,
    pub port: u16,
    /// In maintenance for any reason (forced, inherited, from the config, resolution).
    pub maint: bool,
    pub weight: u16,
}

pub struct Runtime {
    path: PathBuf,
    connection: Option<BufReader<UnixStream>>,
}

impl Runtime {
    pub fn new(path: &Path) -> Runtime {
        Runtime { path: path.to_path_buf(), connection: None }
    }

    /// Forgets the kept connection: after a reload it reaches the old process.
    pub fn reconnect(&mut self) {
        self.connection = None;
    }

    pub fn run(&mut self, command: &Command) -> Result<(), RuntimeError> {
        let text = command.to_string();
        let reply = self.send(&text)?;
        if command.accepts(reply.trim()) {
            Ok(())
        } else {
            let reply = reply.trim().to_string();
            Err(RuntimeError::Refused { command: text, refusal: Refusal::parse(&reply), reply })
        }
    }

    /// The pid of the process that answers on the socket.
    pub fn serving_pid(&mut self) -> Result<u32, RuntimeError> {
        let reply = self.send("show info")?;
        reply
            .lines()
            .find_map(|l| l.strip_prefix("Pid: "))
            .and_then(|pid| pid.trim().parse().ok())
            .ok_or(RuntimeError::Garbled { command: "show info".into(), reply })
    }

    /// Every server of one backend, by name.
    pub fn servers_state(&mut self, backend: &str) -> Result<BTreeMap<String, ServerStatus>, RuntimeError> {
        let command = format!("show servers state {backend}");
        let reply = self.send(&command)?;
        parse_servers_state(&reply).map_err(|()| {
            if reply.trim().is_empty() || reply.starts_with('1') {
                RuntimeError::Garbled { command: command.clone(), reply: reply.clone() }
            } else {
                let reply = reply.trim().to_string();
                RuntimeError::Refused { command: command.clone(), refusal: Refusal::parse(&reply), reply }
            }
        })
    }

    /// Every entry of a map (`show map <map>`: the map file's path as haproxy.cfg names it), key to value.
    pub fn map_entries(&mut self, map: &str) -> Result<BTreeMap<String, String>, RuntimeError> {
        let command = format!("show map {map}");
        let reply = self.send(&command)?;
        parse_map(&reply).map_err(|()| {
            let reply = reply.trim().to_string();
            RuntimeError::Refused { command: command.clone(), refusal: Refusal::parse(&reply), reply }
        })
    }

    fn send(&mut self, command: &str) -> Result<String, RuntimeError> {
        let reused = self.connection.is_some();
        let mut result = self.attempt(command);
        // HAProxy closes a connection idle for its CLI timeout (`stats timeout`, 10 s by default; seen on 2.4 and
        // 2.6 as a broken pipe at the next command): that one is tried once more on a new connection. HAProxy read
        // nothing of the command on a connection it had closed, so nothing is done twice.
        if reused && result.as_ref().is_err_and(closed_by_haproxy) {
            result = self.attempt(command);
        }
        result.map_err(|source| RuntimeError::Io { path: self.path.clone(), source })
    }

    /// One exchange; a connection that failed is not used again.
    fn attempt(&mut self, command: &str) -> io::Result<String> {
        let result = self.exchange(command);
        if result.is_err() {
            self.connection = None;
        }
        result
    }

    fn exchange(&mut self, command: &str) -> io::Result<String> {
        if self.connection.is_none() {
            let stream = UnixStream::connect(&self.path)?;
            stream.set_read_timeout(Some(TIMEOUT))?;
            stream.set_write_timeout(Some(TIMEOUT))?;
            let mut connection = BufReader::new(stream);
            connection.get_mut().write_all(b"prompt\n")?;
            read_reply(&mut connection)?;
            self.connection = Some(connection);
        }
        let connection = self.connection.as_mut().expect("connected above");
        connection.get_mut().write_all(format!("{command}\n").as_bytes())?;
        read_reply(connection)
    }
}

/// Whether an error on a connection is HAProxy having closed it.
fn closed_by_haproxy(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
    )
}

/// In prompt mode every reply ends with the prompt, `\n> `.
fn read_reply(connection: &mut BufReader<UnixStream>) -> io::Result<String> {
    let mut reply = Vec::new();
    loop {
        let available = connection.fill_buf()?;
        if available.is_empty() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "HAProxy closed the connection"));
        }
        let n = available.len();
        reply.extend_from_slice(available);
        connection.consume(n);
        if reply.ends_with(b"\n> ") {
            reply.truncate(reply.len() - 3);
            return Ok(String::from_utf8_lossy(&reply).into_owned());
        }
        if reply.len() > MAX_REPLY {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "reply too long"));
        }
    }
}

/// The bits of `srv_admin_state` that put a server in maintenance: forced (0x01), inherited (0x02), resolution
/// (0x20), hostname (0x80); HAProxy's own `SRV_ADMF_MAINT` and more. Not 0x04, `disabled` in the config: that bit
/// stays when the server is set ready at run time (a filled slot, HAProxy 1.8 to 2.4), and a server disabled in
/// the config has 0x01 as well.
const ADMIN_MAINT: u32 = 0xa3;

/// `show servers state` format 1: a version line, a `#` header naming the columns, one line per server.
/// `show map`'s reply: a line per entry, `<reference> <key> <value>` (the reference `0x` and hex digits); a line
/// of another shape is HAProxy's refusal (`Unknown map identifier ...`).
fn parse_map(reply: &str) -> Result<BTreeMap<String, String>, ()> {
    let mut entries = BTreeMap::new();
    for line in reply.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some(reference), Some(key), Some(value)) if reference.starts_with("0x") => {
                entries.insert(key.to_string(), value.to_string());
            }
            _ => return Err(()),
        }
    }
    Ok(entries)
}

fn parse_servers_state(reply: &str) -> Result<BTreeMap<String, ServerStatus>, ()> {
    let mut lines = reply.lines().filter(|l| !l.trim().is_empty());
    if lines.next().map(str::trim) != Some("1") {
        return Err(());
    }
    let header: Vec<&str> = lines.next().and_then(|h| h.strip_prefix("# ")).ok_or(())?.split(' ').collect();
    let column = |name: &str| header.iter().position(|c| *c == name).ok_or(());
    let (name, addr, admin, weight, port) = (
        column("srv_name")?,
        column("srv_addr")?,
        column("srv_admin_state")?,
        column("srv_uweight")?,
        column("srv_port")?,
    );
    let mut servers = BTreeMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split(' ').collect();
        let field = |i: usize| fields.get(i).copied().ok_or(());
        // SRV_ADMF_FMAINT 0x01, IMAINT 0x02, CMAINT 0x04, RMAINT 0x20, HMAINT 0x80.
        let admin: u32 = field(admin)?.parse().map_err(|_| ())?;
        let status = ServerStatus {
            name: field(name)?.to_string(),
            address: field(addr)?.to_string(),
            port: field(port)?.parse().map_err(|_| ())?,
            maint: admin & ADMIN_MAINT != 0,
            weight: field(weight)?.parse().map_err(|_| ())?,
        };
        servers.insert(status.name.clone(), status);
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for HAProxy's CLI (the real one closes an idle connection only after 10 s): it answers each
    /// connection's `prompt` and its first command, then closes it, as HAProxy does at its CLI timeout.
    #[test]
    fn a_connection_haproxy_closed_is_replaced_and_the_command_sent_again() {
        use std::os::unix::net::UnixListener;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cli.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..2 {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                for _ in 0..2 {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    seen.push(line.trim().to_string());
                    writer.write_all(b"\n> ").unwrap();
                }
            }
            seen
        });
        let mut runtime = Runtime::new(&path);
        let command = Command::SetWeight { backend: "web".into(), server: "slot1".into(), weight: 3 };
        runtime.run(&command).unwrap();
        // The stand-in closed that connection: the next command goes out on a new one.
        runtime.run(&command).unwrap();
        let seen = server.join().unwrap();
        let sent = "set weight web/slot1 3";
        assert_eq!(seen, ["prompt", sent, "prompt", sent]);
    }

    #[test]
    fn show_map_as_haproxy_prints_it() {
        let reply = "0x55d1c9a0b2e0 api.test/v1/ api\n0x55d1c9a0b360 *.api.test/ web\n\n";
        let entries = parse_map(reply).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries["*.api.test/"], "web");
        assert_eq!(parse_map("").unwrap().len(), 0, "an empty map");
        assert!(parse_map("Unknown map identifier. Please use #<id> or <file>.\n").is_err());
    }

    #[test]
    fn servers_state_as_haproxy_2_6_prints_it() {
        let reply = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n\
            2 web 1 127.0.0.1:9001 127.0.0.1 0 1 1 1 1 8 2 0 14 0 0 0 - 9001 - 0 0 - - 0\n\
            2 web 2 127.0.0.1:9002 127.0.0.1 2 0 7 1 0 1 0 2 6 0 0 0 - 9002 - 0 0 - - 0\n\n";
        let servers = parse_servers_state(reply).unwrap();
        assert_eq!(servers.len(), 2);
        assert!(servers["127.0.0.1:9001"].maint);
        let ready = &servers["127.0.0.1:9002"];
        assert_eq!(
            (ready.maint, ready.weight, ready.port, ready.address.as_str()),
            (false, 7, 9002, "127.0.0.1")
        );
        // HAProxy 2.4: a slot `disabled` in the config and set ready at run time keeps 0x04, and serves.
        let filled = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port\n\
            2 web 2 slot2 127.0.0.1 2 4 7 10 3 6 3 4 6 0 0 0 - 18081\n\
            2 web 3 slot3 127.0.0.1 0 5 10 10 3 1 0 0 14 0 0 0 - 1\n";
        let servers = parse_servers_state(filled).unwrap();
        assert!(!servers["slot2"].maint);
        assert!(servers["slot3"].maint);
        assert!(parse_servers_state("No such backend.\n").is_err());
        assert!(parse_servers_state("1\n# be_id\n2 web\n").is_err());
    }
}
