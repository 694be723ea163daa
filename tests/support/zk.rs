//! `Zk`: a standalone ZooKeeper server in a temporary directory, for one test.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use zookeeper::{Acl, CreateMode, ZkError, ZooKeeper, ZooKeeperExt};

use super::{reserve_port, tail, temp_dir, wait_for};

pub(super) const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";

/// How long a ZooKeeper server may take to serve; it takes 0.4–0.75 s on an idle machine.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The session timeout of the fixture's own clients. With `tickTime=500` the server accepts 1 s to 10 s.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// A serial collector and the C1 compiler only start the server ~20% faster and lighter, which matters when
/// tests run one server each on two cores.
const JAVA_OPTS: &[&str] = &["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xmx256m"];

/// A ZooKeeper server listening on 127.0.0.1 at a reserved port (`reserve_port`: its own across `restart`, as
/// no one else is given it), with its data in a temporary directory.
/// Dropping it closes the fixture's client, kills the server and removes the directory.
pub struct Zk {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    /// One client for the convenience methods, created on first use and closed before the server stops.
    client: Mutex<Option<ZooKeeper>>,
    /// Changes the test asked for to the standard `zoo.cfg`, applied at every (re)start.
    customize: Box<dyn Fn(&mut String) + Send + Sync>,
}

impl Zk {
    /// Starts a server and waits (up to 20 s) until it serves.
    pub fn start() -> Zk {
        Zk::start_with(|_cfg| {})
    }

    /// Starts a server whose `zoo.cfg` is the standard one as `customize` changes it (it gets the whole text and
    /// may append lines, say); the change holds across `restart`. `Zk::start_with(|cfg| cfg.push_str("x=1\n"))`.
    pub fn start_with(customize: impl Fn(&mut String) + Send + Sync + 'static) -> Zk {
        let mut zk = Zk {
            dir: temp_dir("proxymgr-zk-"),
            port: reserve_port(),
            child: None,
            client: Mutex::new(None),
            customize: Box::new(customize),
        };
        zk.spawn();
        zk
    }

    /// A server that lets no session outlive 2 s without a connection (`maxSessionTimeout=2000`; whatever a
    /// client asks for is clamped to 1-2 s), so a test expires a session by cutting a relay for a few seconds.
    pub fn start_fast_expiry() -> Zk {
        Zk::start_with(|cfg| cfg.push_str("maxSessionTimeout=2000\n"))
    }

    /// `127.0.0.1:PORT`, the form both proxymgr's config and the `zookeeper` crate take.
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temporary directory holding `zoo.cfg`, `data/` and `zookeeper.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's stdout and stderr. The Debian jar logs through a no-op SLF4J binding, so this holds little
    /// more than JVM errors.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir().join("zookeeper.log")).unwrap_or_default()
    }

    /// The java process's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Sends a four-letter command (`srvr`, `ruok`, `cons`, `stat`, `mntr` and `wchs` are enabled) and returns the
    /// reply, or `None` if the server does not answer within a second.
    pub fn four_letter(&self, command: &str) -> Option<String> {
        four_letter(self.port, command)
    }

    /// A new client with its own session, returned once a call on it succeeds.
    pub fn client(&self) -> ZooKeeper {
        let client = ZooKeeper::connect(&self.connect_string(), SESSION_TIMEOUT, |_event| {})
            .unwrap_or_else(|e| panic!("connect to ZooKeeper at {}: {e:?}", self.connect_string()));
        // Calls made while the client is still connecting queue until it connects; a call that fails
        // (ConnectionLoss when the connection attempt is abandoned) is retried until the deadline.
        wait_for(START_TIMEOUT, "a ZooKeeper client to connect", || client.exists("/", false).ok());
        client
    }

    /// Creates `path` holding `data`, and any missing parent (empty). Panics if `path` exists.
    pub fn create(&self, path: &str, data: &str) {
        self.with_client(|zk| {
            if let Some((parent, _)) = path.rsplit_once('/') {
                if !parent.is_empty() {
                    zk.ensure_path(parent).unwrap_or_else(|e| panic!("create parents of {path}: {e:?}"));
                }
            }
            zk.create(path, data.as_bytes().to_vec(), Acl::open_unsafe().clone(), CreateMode::Persistent)
                .unwrap_or_else(|e| panic!("create {path}: {e:?}"));
        })
    }

    /// Creates `path` holding `data` as it is (not UTF-8, say), and any missing parent. Panics if `path` exists.
    pub fn create_bytes(&self, path: &str, data: &[u8]) {
        self.with_client(|zk| {
            if let Some((parent, _)) = path.rsplit_once('/') {
                if !parent.is_empty() {
                    zk.ensure_path(parent).unwrap_or_else(|e| panic!("create parents of {path}: {e:?}"));
                }
            }
            zk.create(path, data.to_vec(), Acl::open_unsafe().clone(), CreateMode::Persistent)
                .unwrap_or_else(|e| panic!("create {path}: {e:?}"));
        })
    }

    /// Replaces the data of the existing node `path`.
    pub fn set(&self, path: &str, data: &str) {
        self.set_bytes(path, data.as_bytes())
    }

    /// Replaces the data of the existing node `path` with `data` as it is.
    pub fn set_bytes(&self, path: &str, data: &[u8]) {
        self.with_client(|zk| {
            zk.set_data(path, data.to_vec(), None).unwrap_or_else(|e| panic!("set {path}: {e:?}"));
        })
    }

    /// `set` if `path` exists, else `create`.
    pub fn put(&self, path: &str, data: &str) {
        if self.exists(path) {
            self.set(path, data)
        } else {
            self.create(path, data)
        }
    }

    /// The data of `path` as text, or `None` if there is no such node.
    pub fn get(&self, path: &str) -> Option<String> {
        self.with_client(|zk| match zk.get_data(path, false) {
            Ok((data, _stat)) => Some(String::from_utf8_lossy(&data).into_owned()),
            Err(ZkError::NoNode) => None,
            Err(e) => panic!("get {path}: {e:?}"),
        })
    }

    pub fn exists(&self, path: &str) -> bool {
        self.with_client(|zk| {
            zk.exists(path, false).unwrap_or_else(|e| panic!("exists {path}: {e:?}")).is_some()
        })
    }

    /// Deletes `path` and everything below it. Panics if `path` does not exist.
    pub fn delete(&self, path: &str) {
        self.with_client(|zk| zk.delete_recursive(path).unwrap_or_else(|e| panic!("delete {path}: {e:?}")))
    }

    /// The names of `path`'s children, sorted.
    pub fn children(&self, path: &str) -> Vec<String> {
        let mut children = self.with_client(|zk| {
            zk.get_children(path, false).unwrap_or_else(|e| panic!("children of {path}: {e:?}"))
        });
        children.sort();
        children
    }

    /// Creates the ephemeral node `path` (parents as in `create`) in a session of its own and returns that
    /// session's client: the node lives until the client is dropped or its session expires.
    pub fn create_ephemeral(&self, path: &str, data: &str) -> ZooKeeper {
        if let Some((parent, _)) = path.rsplit_once('/') {
            if !parent.is_empty() && !self.exists(parent) {
                self.create(parent, "");
            }
        }
        let client = self.client();
        client
            .create(path, data.as_bytes().to_vec(), Acl::open_unsafe().clone(), CreateMode::Ephemeral)
            .unwrap_or_else(|e| panic!("create ephemeral {path}: {e:?}"));
        client
    }

    /// Kills the server (SIGKILL: a crash, not a shutdown) and waits for it. The data directory stays, so
    /// `restart` brings back the same tree. Clients' sessions survive if the server returns within their timeout.
    pub fn stop(&mut self) {
        // Close the fixture's own session while the server can still answer the close.
        drop(self.client.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if it runs and starts it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Stops the server, deletes its data and starts it again on the same port: to clients this is a server that
    /// lost everything, sessions included.
    pub fn restart_empty(&mut self) {
        self.stop();
        let data = self.dir().join("data");
        fs::remove_dir_all(&data).unwrap_or_else(|e| panic!("remove {}: {e}", data.display()));
        self.spawn();
    }

    /// Runs `f` with the fixture's client, connecting it first if needed.
    fn with_client<T>(&self, f: impl FnOnce(&ZooKeeper) -> T) -> T {
        assert!(self.child.is_some(), "the ZooKeeper server is stopped");
        let mut guard = self.client.lock().unwrap_or_else(|e| e.into_inner());
        let client = match guard.take() {
            Some(client) => client,
            None => self.client(),
        };
        let client = guard.insert(client);
        f(client)
    }

    /// Writes `zoo.cfg` and starts the server, waiting until it serves.
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "the ZooKeeper server already runs");
        let data = self.dir().join("data");
        fs::create_dir_all(&data).unwrap_or_else(|e| panic!("create {}: {e}", data.display()));
        let cfg = self.dir().join("zoo.cfg");
        let mut config = zoo_cfg(&data, self.port);
        (self.customize)(&mut config);
        fs::write(&cfg, config).unwrap_or_else(|e| panic!("write {}: {e}", cfg.display()));
        let child = spawn_java(
            "org.apache.zookeeper.server.ZooKeeperServerMain",
            &cfg,
            &self.dir().join("zookeeper.log"),
        );
        self.child = Some(child);

        // `ruok` answers before the server serves; `srvr` reports the mode only once it does.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                panic!(
                    "ZooKeeper exited during startup ({status}); its output:\n{}",
                    tail(&self.log(), 4000)
                );
            }
            if four_letter(self.port, "srvr").is_some_and(|reply| reply.contains("Mode: standalone")) {
                return;
            }
            if Instant::now() >= deadline {
                self.stop();
                panic!(
                    "ZooKeeper did not serve on port {} within {START_TIMEOUT:?}; its output:\n{}",
                    self.port,
                    tail(&self.log(), 4000)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Zk {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            if !log.trim().is_empty() {
                eprintln!("--- ZooKeeper output ({}) ---\n{}", self.dir().display(), tail(&log, 4000));
            }
        }
        self.stop();
    }
}

/// Sends a four-letter command to the server on `port` and reads the reply until it closes the connection.
fn four_letter(port: u16, command: &str) -> Option<String> {
    let timeout = Duration::from_secs(1);
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    // The server replies and closes the connection; no half-close, which it may take as the client leaving.
    stream.write_all(command.as_bytes()).ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    Some(reply)
}

/// How long `ZkEnsemble` waits for a leader and its followers; three JVMs on two cores take 3-6 s.
const ENSEMBLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a `ZkEnsemble` convenience call retries while the ensemble has no quorum or its client fails over.
const ENSEMBLE_CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// One server of a `ZkEnsemble`.
struct Member {
    /// `myid`, 1-based, as in `server.<id>=`.
    id: usize,
    client_port: u16,
    peer_port: u16,
    election_port: u16,
    child: Option<Child>,
}

/// A ZooKeeper ensemble (`QuorumPeerMain`) of a few servers on 127.0.0.1, each with its own data directory under
/// one temporary directory, `tickTime=500`, `initLimit=10`, `syncLimit=5`. Members are numbered from 0 in the
/// methods (their `myid` is one more). Dropping it closes the fixture's client, kills every member and removes
/// the directory.
pub struct ZkEnsemble {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    /// One client on the whole ensemble for the convenience methods, created on first use.
    client: Mutex<Option<ZooKeeper>>,
}

impl ZkEnsemble {
    /// Starts `size` members and waits (up to 30 s) until one is the leader and every other one its follower.
    pub fn start(size: usize) -> ZkEnsemble {
        assert!(size >= 3, "an ensemble of {size} is not one; use Zk");
        // The ports are reserved (`reserve_port`), so no test takes one; a program outside the tests still could
        // before ZooKeeper binds it: a member that dies of a taken port starts the whole ensemble again on new
        // ones (three attempts at most).
        for attempt in 1.. {
            let ensemble = ZkEnsemble::spawn_all(size);
            match ensemble.try_wait_ready() {
                Ok(()) => return ensemble,
                Err(why) if attempt < 3 && why.contains("Address already in use") => {
                    eprintln!("ZooKeeper ensemble: a port was taken (attempt {attempt}); starting again");
                }
                Err(why) => panic!("{why}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// Starts `size` members on fresh ports, without waiting.
    fn spawn_all(size: usize) -> ZkEnsemble {
        let members = (1..=size)
            .map(|id| Member {
                id,
                client_port: reserve_port(),
                peer_port: reserve_port(),
                election_port: reserve_port(),
                child: None,
            })
            .collect();
        let mut ensemble =
            ZkEnsemble { dir: temp_dir("proxymgr-zk-ensemble-"), members, client: Mutex::new(None) };
        for i in 0..size {
            ensemble.spawn(i);
        }
        ensemble
    }

    /// Every member: `127.0.0.1:P1,127.0.0.1:P2,...`, for proxymgr's config and a watcher's `server`.
    pub fn connect_string(&self) -> String {
        let members: Vec<String> = (0..self.size()).map(|i| self.member_connect_string(i)).collect();
        members.join(",")
    }

    /// Member `i` alone: `127.0.0.1:<its client port>`.
    pub fn member_connect_string(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].client_port)
    }

    pub fn client_port(&self, i: usize) -> u16 {
        self.members[i].client_port
    }

    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// The temporary directory holding `<myid>/zoo.cfg`, `<myid>/data/` and `<myid>/zookeeper.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Member `i`'s stdout and stderr.
    pub fn log(&self, i: usize) -> String {
        fs::read_to_string(self.member_dir(i).join("zookeeper.log")).unwrap_or_default()
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// The member's mode as `srvr` reports it (`leader`, `follower`), or `None` while it does not serve (no
    /// quorum, stopped, starting).
    pub fn mode(&self, i: usize) -> Option<String> {
        let reply = four_letter(self.members[i].client_port, "srvr")?;
        let line = reply.lines().find_map(|line| line.strip_prefix("Mode: "))?;
        Some(line.trim().to_string())
    }

    /// The index of the member that leads, waiting (up to 30 s) for an election to end.
    pub fn leader(&self) -> usize {
        wait_for(ENSEMBLE_TIMEOUT, "a ZooKeeper ensemble member to lead", || {
            (0..self.size()).find(|&i| self.is_running(i) && self.mode(i).as_deref() == Some("leader"))
        })
    }

    /// Waits (up to 30 s) until exactly one running member leads and every other running one follows.
    pub fn wait_ready(&self) {
        self.try_wait_ready().unwrap_or_else(|why| panic!("{why}"))
    }

    /// `wait_ready`, saying why not (a member exited, with its output; or the deadline passed).
    fn try_wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + ENSEMBLE_TIMEOUT;
        loop {
            self.exited()?;
            let modes: Vec<(usize, Option<String>)> =
                (0..self.size()).filter(|&i| self.is_running(i)).map(|i| (i, self.mode(i))).collect();
            let leaders = modes.iter().filter(|(_, m)| m.as_deref() == Some("leader")).count();
            let followers = modes.iter().filter(|(_, m)| m.as_deref() == Some("follower")).count();
            if leaders == 1 && leaders + followers == modes.len() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the ZooKeeper ensemble has no leader with every running member following after \
                     {ENSEMBLE_TIMEOUT:?}: {modes:?}; member logs:\n{}",
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills member `i` (SIGKILL, a crash) and waits for it. Its data stays, so `start_member(i)` brings it back.
    pub fn stop_member(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on the same ports and data. If that makes a majority of members run, waits until
    /// the ensemble serves (`wait_ready`); else only until the member answers `srvr` (it cannot serve alone).
    pub fn start_member(&mut self, i: usize) {
        self.spawn(i);
        let running = (0..self.size()).filter(|&m| self.is_running(m)).count();
        if running * 2 > self.size() {
            self.wait_ready();
        } else {
            let port = self.members[i].client_port;
            wait_for(ENSEMBLE_TIMEOUT, "a restarted ensemble member to answer srvr", || {
                self.check_alive();
                four_letter(port, "srvr")
            });
        }
    }

    /// Creates `path` holding `data`, and any missing parent (empty). Panics if `path` exists.
    pub fn create(&self, path: &str, data: &str) {
        self.call(&format!("create {path}"), |zk| {
            if let Some((parent, _)) = path.rsplit_once('/') {
                if !parent.is_empty() {
                    zk.ensure_path(parent)?;
                }
            }
            match zk.create(
                path,
                data.as_bytes().to_vec(),
                Acl::open_unsafe().clone(),
                CreateMode::Persistent,
            ) {
                // A retry after a lost connection may find what the first attempt created.
                Err(ZkError::NodeExists) => match zk.get_data(path, false) {
                    Ok((existing, _)) if existing == data.as_bytes() => Ok(()),
                    _ => Err(ZkError::NodeExists),
                },
                other => other.map(|_| ()),
            }
        })
    }

    /// Replaces the data of the existing node `path`.
    pub fn set(&self, path: &str, data: &str) {
        self.call(&format!("set {path}"), |zk| zk.set_data(path, data.as_bytes().to_vec(), None).map(|_| ()))
    }

    /// `set` if `path` exists, else `create`.
    pub fn put(&self, path: &str, data: &str) {
        if self.exists(path) {
            self.set(path, data)
        } else {
            self.create(path, data)
        }
    }

    pub fn exists(&self, path: &str) -> bool {
        self.call(&format!("exists {path}"), |zk| zk.exists(path, false).map(|stat| stat.is_some()))
    }

    /// Deletes `path` and everything below it. Panics if `path` does not exist.
    pub fn delete(&self, path: &str) {
        self.call(&format!("delete {path}"), |zk| zk.delete_recursive(path))
    }

    /// Runs `f` with the fixture's client on the whole ensemble, retrying (up to 20 s, with a new client when the
    /// session is gone) while the ensemble has no quorum or the client moves to another member.
    fn call<T>(&self, what: &str, mut f: impl FnMut(&ZooKeeper) -> Result<T, ZkError>) -> T {
        let deadline = Instant::now() + ENSEMBLE_CALL_TIMEOUT;
        let mut guard = self.client.lock().unwrap_or_else(|e| e.into_inner());
        // When the current client started failing: one that fails for seconds may have given its session up
        // (the crate then answers ConnectionLoss for ever), so it is replaced.
        let mut failing_since: Option<Instant> = None;
        loop {
            let client = match guard.take() {
                Some(client) => client,
                None => ZooKeeper::connect(&self.connect_string(), SESSION_TIMEOUT, |_event| {})
                    .unwrap_or_else(|e| panic!("connect to {}: {e:?}", self.connect_string())),
            };
            match f(&client) {
                Ok(value) => {
                    *guard = Some(client);
                    return value;
                }
                Err(e) if Instant::now() < deadline && retryable(e) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if e == ZkError::SessionExpired || since.elapsed() > Duration::from_secs(3) {
                        failing_since = None;
                        drop(client);
                    } else {
                        *guard = Some(client);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("ZooKeeper ensemble {}: {what}: {e:?}", self.connect_string()),
            }
        }
    }

    fn member_dir(&self, i: usize) -> std::path::PathBuf {
        self.dir().join(self.members[i].id.to_string())
    }

    /// Panics, with the member's output, if a member the fixture started has exited on its own.
    fn check_alive(&self) {
        self.exited().unwrap_or_else(|why| panic!("{why}"))
    }

    /// Err, with its output, when a member that should run exited on its own.
    fn exited(&self) -> Result<(), String> {
        for (i, member) in self.members.iter().enumerate() {
            let Some(child) = member.child.as_ref() else { continue };
            if !super::pid_alive(child.id()) {
                return Err(format!(
                    "ZooKeeper ensemble member {i} exited on its own; its output:\n{}",
                    tail(&self.log(i), 4000)
                ));
            }
        }
        Ok(())
    }

    /// Every member's output tail, for failure messages.
    fn logs(&self) -> String {
        (0..self.size())
            .map(|i| format!("--- member {i} ---\n{}", tail(&self.log(i), 2000)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Writes member `i`'s `zoo.cfg` and `myid` and starts it, without waiting.
    fn spawn(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "ensemble member {i} already runs");
        let dir = self.member_dir(i);
        let data = dir.join("data");
        fs::create_dir_all(&data).unwrap_or_else(|e| panic!("create {}: {e}", data.display()));
        let myid = data.join("myid");
        fs::write(&myid, format!("{}\n", self.members[i].id))
            .unwrap_or_else(|e| panic!("write {}: {e}", myid.display()));
        let servers: String = self
            .members
            .iter()
            .map(|m| format!("server.{}=127.0.0.1:{}:{}\n", m.id, m.peer_port, m.election_port))
            .collect();
        // As `Zk`, plus the quorum: initLimit and syncLimit in ticks, one `server.N` line per member.
        let config =
            format!("{}initLimit=10\nsyncLimit=5\n{servers}", zoo_cfg(&data, self.members[i].client_port));
        let cfg = dir.join("zoo.cfg");
        fs::write(&cfg, config).unwrap_or_else(|e| panic!("write {}: {e}", cfg.display()));
        let child =
            spawn_java("org.apache.zookeeper.server.quorum.QuorumPeerMain", &cfg, &dir.join("zookeeper.log"));
        self.members[i].child = Some(child);
    }
}

impl Drop for ZkEnsemble {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- ZooKeeper ensemble output ({}) ---\n{}", self.dir().display(), self.logs());
        }
        // Without a quorum the close would wait for nothing: drop the client first, as Zk does.
        drop(self.client.lock().unwrap_or_else(|e| e.into_inner()).take());
        for i in 0..self.size() {
            self.stop_member(i);
        }
    }
}

/// Errors a call on an ensemble may see while it elects a leader or the client moves to another member.
fn retryable(e: ZkError) -> bool {
    matches!(
        e,
        ZkError::ConnectionLoss | ZkError::SessionExpired | ZkError::OperationTimeout | ZkError::SessionMoved
    )
}

/// Runs a ZooKeeper server class on `cfg`, its output appended to `log`. Its own process group: a Ctrl-C at the
/// terminal (make demo) must not kill the server before the demo has stopped proxymgr.
fn spawn_java(main_class: &str, cfg: &Path, log: &Path) -> Child {
    let (out, err) = super::append_log(log);
    Command::new("java")
        .args(JAVA_OPTS)
        .arg("-cp")
        .arg(format!("/etc/zookeeper/conf:{ZOOKEEPER_JAR}"))
        .arg(main_class)
        .arg(cfg)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("start java ({main_class} on {}): {e}", cfg.display()))
}

/// The zoo.cfg lines every test server shares: loopback only, its data in `data`, clients on `port`.
/// admin.enableServer=false: else an admin server listens on 0.0.0.0:8080. forceSync=no: the tests never outlive
/// the machine's page cache, and writes get much cheaper. maxClientCnxns=0: every client is on 127.0.0.1, so the
/// default 60 per address could bite a benchmark.
fn zoo_cfg(data: &Path, port: u16) -> String {
    format!(
        "tickTime=500\n\
         dataDir={data}\n\
         clientPort={port}\n\
         clientPortAddress=127.0.0.1\n\
         admin.enableServer=false\n\
         4lw.commands.whitelist=srvr,ruok,cons,stat,mntr,wchs\n\
         forceSync=no\n\
         maxClientCnxns=0\n",
        data = data.display(),
    )
}
