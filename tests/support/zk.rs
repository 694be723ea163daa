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

use super::{free_port, tail, temp_dir, wait_for};

pub(super) const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";

/// How long a ZooKeeper server may take to serve; it takes 0.4–0.75 s on an idle machine.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The session timeout of the fixture's own clients. With `tickTime=500` the server accepts 1 s to 10 s.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// A serial collector and the C1 compiler only start the server ~20% faster and lighter, which matters when
/// tests run one server each on two cores.
const JAVA_OPTS: &[&str] = &["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xmx256m"];

/// A ZooKeeper server listening on 127.0.0.1 at a free port, with its data in a temporary directory.
/// Dropping it closes the fixture's client, kills the server and removes the directory.
pub struct Zk {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    /// One client for the convenience methods, created on first use and closed before the server stops.
    client: Mutex<Option<ZooKeeper>>,
}

impl Zk {
    /// Starts a server and waits (up to 20 s) until it serves.
    pub fn start() -> Zk {
        let mut zk =
            Zk { dir: temp_dir("proxymgr-zk-"), port: free_port(), child: None, client: Mutex::new(None) };
        zk.spawn();
        zk
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

    /// Replaces the data of the existing node `path`.
    pub fn set(&self, path: &str, data: &str) {
        self.with_client(|zk| {
            zk.set_data(path, data.as_bytes().to_vec(), None).unwrap_or_else(|e| panic!("set {path}: {e:?}"));
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
        // admin.enableServer=false: else an admin server listens on 0.0.0.0:8080.
        // forceSync=no: the tests never outlive the machine's page cache, and writes get much cheaper.
        // maxClientCnxns=0: every client is on 127.0.0.1, so the default 60 per address could bite a benchmark.
        let config = format!(
            "tickTime=500\n\
             dataDir={data}\n\
             clientPort={port}\n\
             clientPortAddress=127.0.0.1\n\
             admin.enableServer=false\n\
             4lw.commands.whitelist=srvr,ruok,cons,stat,mntr,wchs\n\
             forceSync=no\n\
             maxClientCnxns=0\n",
            data = data.display(),
            port = self.port,
        );
        fs::write(&cfg, config).unwrap_or_else(|e| panic!("write {}: {e}", cfg.display()));
        let log_path = self.dir().join("zookeeper.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("open {}: {e}", log_path.display()));
        let log_err = log.try_clone().expect("clone a file handle");
        let child = Command::new("java")
            .args(JAVA_OPTS)
            .arg("-cp")
            .arg(format!("/etc/zookeeper/conf:{ZOOKEEPER_JAR}"))
            .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own process group: a Ctrl-C at the terminal (make demo) must not kill the server before the
            // demo has stopped proxymgr.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start java (ZooKeeper): {e}"));
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
