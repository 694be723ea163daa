//! `Proxymgr`: the built daemon running against a config in a temporary directory, and helpers to run its CLI and
//! talk to the HAProxy it starts.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{
    all_processes, cmdline, descendants, pid_alive, proc_stat, tail, temp_dir, wait_until, ProcStat,
};

/// How long `stop` waits after SIGTERM before it kills.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// How long `run_proxymgr` lets a CLI invocation run.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// The proxymgr binary: cargo's `CARGO_BIN_EXE_proxymgr` in integration tests, else `$PROXYMGR_BIN` (set by
/// `make demo`), else `target/debug/proxymgr` under `$CARGO_TARGET_DIR` or the package.
pub fn proxymgr_bin() -> PathBuf {
    if let Some(bin) = option_env!("CARGO_BIN_EXE_proxymgr") {
        return PathBuf::from(bin);
    }
    if let Some(bin) = std::env::var_os("PROXYMGR_BIN") {
        return PathBuf::from(bin);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("debug/proxymgr")
}

/// A running `proxymgr -c <dir>/proxymgr.yml -d`, its stdout and stderr appended to `<dir>/proxymgr.log`, in a
/// process group of its own. Dropping it stops it (SIGTERM, then SIGKILL after 15 s), kills any process it
/// started that outlived it (HAProxy) and removes the directory.
pub struct Proxymgr {
    dir: tempfile::TempDir,
    child: Child,
    status: Option<ExitStatus>,
    /// proxymgr's descendants as `stop` found them before signalling it. They are reparented when proxymgr
    /// exits, and proxymgr puts HAProxy in a process group of its own, so this list is how leftovers are found.
    descendants: Vec<ProcStat>,
    /// Makes the command that runs proxymgr (before `-c <config> -d`), for `start_again`.
    command: Box<dyn Fn(&Path) -> Command + Send + Sync>,
    /// Earlier proxymgr processes of this fixture (`start_again`): their process groups may hold leftovers.
    earlier: Vec<u32>,
}

impl Proxymgr {
    /// Starts proxymgr with `yaml` as its config. Does not wait for anything: wait for what the test needs.
    pub fn start(yaml: &str) -> Proxymgr {
        Proxymgr::start_with(|_dir| yaml.to_string())
    }

    /// Starts proxymgr with the config `config(dir)` returns, `dir` being the fixture's temporary directory, so
    /// the config can put HAProxy's files there: `Proxymgr::start_with(|dir| Proxymgr::config_yaml(dir, &zk))`.
    pub fn start_with(config: impl FnOnce(&Path) -> String) -> Proxymgr {
        Proxymgr::launch(config, |bin: &Path| Command::new(bin))
    }

    /// Like `start_with`, but proxymgr (and the HAProxy it starts) runs in a private mount namespace with
    /// `hosts` bind-mounted over `/etc/hosts`, so the names a test writes there resolve for proxymgr only and the
    /// machine's `/etc/hosts` is untouched. Tests using it start with `support::require("unshare")`.
    ///
    /// `hosts` must exist. The mount pins its inode: rewrite it in place (`fs::write`, which truncates), never
    /// by renaming another file over it, or proxymgr keeps seeing the old contents. As root this is
    /// `unshare --mount`; as another user it adds `--user --map-root-user` (needs unprivileged user namespaces).
    /// `unshare` and `sh` exec, so the fixture's pid is still proxymgr's.
    pub fn start_with_hosts(hosts: &Path, config: impl FnOnce(&Path) -> String) -> Proxymgr {
        assert!(hosts.is_file(), "{} must exist to be bind-mounted over /etc/hosts", hosts.display());
        let hosts = hosts.canonicalize().unwrap_or_else(|e| panic!("canonicalize {}: {e}", hosts.display()));
        Proxymgr::launch(config, move |bin| {
            let mut command = Command::new("unshare");
            if effective_uid() != Some(0) {
                command.args(["--user", "--map-root-user"]);
            }
            // A new mount namespace is private (util-linux's default propagation), so the mount stays in it.
            command
                .args(["--mount", "sh", "-c", r#"mount --bind "$1" /etc/hosts && shift && exec "$@""#, "sh"])
                .arg(&hosts)
                .arg(bin);
            command
        })
    }

    /// Writes the config, opens the log and spawns `command(proxymgr_bin())` with `-c <config> -d` appended.
    fn launch(
        config: impl FnOnce(&Path) -> String,
        command: impl Fn(&Path) -> Command + Send + Sync + 'static,
    ) -> Proxymgr {
        let dir = temp_dir("proxymgr-");
        let config_path = dir.path().join("proxymgr.yml");
        let mut yaml = config(dir.path());
        // The status endpoint gets a port of its own: two tests must never read each other's status (nor
        // fight for the default port).
        if !yaml.starts_with("status:") && !yaml.contains("\nstatus:") {
            if !yaml.ends_with('\n') {
                yaml.push('\n');
            }
            yaml.push_str(&format!("status: 127.0.0.1:{}\n", super::reserve_port()));
        }
        fs::write(&config_path, yaml).unwrap_or_else(|e| panic!("write {}: {e}", config_path.display()));
        let child = spawn(dir.path(), &command);
        Proxymgr {
            dir,
            child,
            status: None,
            descendants: Vec::new(),
            command: Box::new(command),
            earlier: Vec::new(),
        }
    }

    /// Kills proxymgr alone with SIGKILL (a crash: the HAProxy it runs is left behind, serving) and reaps it.
    /// Returns its exit status. `start_again` starts its successor.
    pub fn kill9(&mut self) -> ExitStatus {
        if let Some(status) = self.try_status() {
            return status;
        }
        let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGKILL);
        let status = self.child.wait().expect("wait for proxymgr");
        self.status = Some(status);
        status
    }

    /// Starts proxymgr again in the same directory with the same `proxymgr.yml` (edit it first to change it),
    /// its output appended to the same log, after the previous process exited (`stop` or `kill9`). Whatever the
    /// previous one left running stays: that is what a successor finds after a crash.
    pub fn start_again(&mut self) {
        assert!(self.try_status().is_some(), "proxymgr still runs; stop or kill9 it first");
        self.earlier.push(self.pid());
        self.child = spawn(self.dir.path(), &self.command);
        self.status = None;
        self.descendants = Vec::new();
    }

    /// The config file proxymgr reads: `<dir>/proxymgr.yml`.
    pub fn config_path(&self) -> PathBuf {
        self.dir().join("proxymgr.yml")
    }

    /// Where its status endpoint listens, as its proxymgr.yml says (`launch` gives each one a port of its own);
    /// None when it is off.
    pub fn status_address(&self) -> Option<std::net::SocketAddr> {
        let yaml = fs::read_to_string(self.config_path()).unwrap_or_default();
        let line = yaml.lines().find_map(|l| l.strip_prefix("status:"))?;
        line.trim().trim_matches('"').parse().ok()
    }

    /// GET `path` from its status endpoint: the status code and the body; None while nothing answers.
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        super::fetch(self.status_address()?, path)
    }

    /// `/status`, parsed; None while nothing answers or the body is not JSON.
    pub fn status_json(&self) -> Option<serde_json::Value> {
        let (code, body) = self.http_get("/status")?;
        (code == 200).then(|| serde_json::from_str(&body).ok()).flatten()
    }

    /// Waits until `/status` satisfies `check`, and returns it. Panics at the deadline with the last one seen.
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut last = None;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.status_json() {
                if check(&status) {
                    return status;
                }
                last = Some(status);
            }
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting for /status to show {what}; the last one: {last:#?}\nlog:\n{}", tail(&self.log(), 4000));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `proxymgr status -c <its proxymgr.yml>`: the exit code and what it printed.
    pub fn status_command(&self) -> (i32, String) {
        let config = self.config_path();
        let output = run_proxymgr(&["status", "-c", &config.display().to_string()]);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        (output.status.code().unwrap_or(-1), text)
    }

    /// The pids of every running `haproxy` process whose arguments mention this fixture's directory (its
    /// config), whoever its parent: the ones this proxymgr runs and any an earlier one left behind. Sorted.
    pub fn haproxy_pids_in_dir(&self) -> Vec<u32> {
        super::haproxy_pids_naming(self.dir())
    }

    /// The standard test `proxymgr.yml`: the HAProxy `support::haproxy()` names, its config and socket in `dir`,
    /// loopback only, services read from `/service_config` in the ZooKeeper at `zk` (`Zk::connect_string`).
    pub fn config_yaml(dir: &Path, zk: &str) -> String {
        let (dir, haproxy) = (dir.display(), super::haproxy());
        let haproxy = haproxy.display();
        format!(
            r#"haproxy:
  path: {haproxy}
  config_path: {dir}/haproxy.cfg
  socket_path: {dir}/haproxy.sock
  bind_address: 127.0.0.1
  global:
    - "maxconn 1000"
  defaults:
    - "mode http"
    - "timeout connect 2s"
    - "timeout client 10s"
    - "timeout server 10s"
state_file: {dir}/state.json
service_config:
  type: zookeeper
  servers: {zk}
  path: /service_config
"#
        )
    }

    /// The temporary directory holding `proxymgr.yml`, `proxymgr.log` and, with `config_yaml`, HAProxy's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything proxymgr has written to stdout and stderr so far.
    pub fn log(&self) -> String {
        let path = self.dir().join("proxymgr.log");
        fs::read(path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
    }

    /// Waits until the log contains `needle`. Panics, quoting the log, at the deadline or if proxymgr exits
    /// without having written it.
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return;
            }
            // Exited (a zombie until `stop` or `wait_exit` reaps it); it may have written the line just before.
            if !pid_alive(self.pid()) {
                if self.log().contains(needle) {
                    return;
                }
                panic!("proxymgr exited without logging {needle:?}; its log:\n{}", tail(&self.log(), 8000));
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for proxymgr to log {needle:?}; its log:\n{}",
                    tail(&self.log(), 8000)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The haproxy.cfg at `<dir>/haproxy.cfg` (where `config_yaml` puts it), empty if there is none yet. A new
    /// config becomes haproxy.cfg only once the HAProxy started on it answers on its socket, a few ms after its
    /// port serves: while a candidate (`.haproxy.cfg.*`) waits beside it, this waits too (up to 5 s).
    pub fn haproxy_cfg(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        let pending = || {
            fs::read_dir(self.dir()).is_ok_and(|entries| {
                entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with(".haproxy.cfg."))
            })
        };
        while pending() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        fs::read_to_string(self.dir().join("haproxy.cfg")).unwrap_or_default()
    }

    /// The servers of `service` as `show servers state` has them (none if HAProxy does not answer), each named by
    /// its address and port: on HAProxy 1.8 to 2.4 HAProxy knows most of them by their slots (`slot3`).
    pub fn servers_state(&self, service: &str) -> Vec<ServerRow> {
        let reply = self.haproxy_command(&format!("show servers state {service}")).unwrap_or_default();
        parse_servers_state(&reply).unwrap_or_default()
    }

    /// HAProxy's name for the server `server` (`address:port`) of `service`: its slot's on HAProxy 1.8 to 2.4.
    pub fn haproxy_name(&self, service: &str, server: &str) -> Option<String> {
        self.servers_state(service).into_iter().find(|s| s.name == server).map(|s| s.haproxy_name)
    }

    /// Sends `command` to HAProxy's runtime socket at `<dir>/haproxy.sock` (where `config_yaml` puts it).
    pub fn haproxy_command(&self, command: &str) -> io::Result<String> {
        haproxy_command(&self.dir().join("haproxy.sock"), command)
    }

    /// The pids of the running `haproxy` processes whose parent is this proxymgr, sorted.
    pub fn haproxy_pids(&self) -> Vec<u32> {
        let pid = self.pid();
        let mut pids: Vec<u32> = all_processes()
            .into_iter()
            .filter(|p| p.ppid == pid && p.comm == "haproxy" && p.state != 'Z')
            .map(|p| p.pid)
            .collect();
        pids.sort_unstable();
        pids
    }

    /// Sends `signal` (SIGHUP to re-read the config, say) to proxymgr.
    pub fn signal(&self, signal: Signal) {
        if self.status.is_none() {
            let _ = kill(Pid::from_raw(self.pid() as i32), signal);
        }
    }

    /// The exit status if proxymgr has exited, without waiting.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Waits for proxymgr to exit on its own; panics, quoting the log, if it still runs after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match self.wait_exit_within(timeout) {
            Some(status) => status,
            None => panic!("proxymgr still runs after {timeout:?}; its log:\n{}", tail(&self.log(), 8000)),
        }
    }

    /// Stops proxymgr: SIGTERM, then, if it has not exited within 15 s, SIGKILL for it and what it started.
    /// Returns its exit status; calling it again returns the same status. After a graceful exit, whatever it
    /// left running stays until `Drop`, so a test can see it with `survivors`.
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(status) = self.try_status() {
            return status;
        }
        self.descendants = descendants(self.pid());
        let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGTERM);
        if let Some(status) = self.wait_exit_within(STOP_TIMEOUT) {
            return status;
        }
        eprintln!("proxymgr did not exit within {STOP_TIMEOUT:?} of SIGTERM; killing it");
        let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGKILL);
        let status = self.child.wait().expect("wait for proxymgr");
        self.status = Some(status);
        // A proxymgr that had to be killed stopped nothing; its exit status tells the test so.
        self.kill_leftovers();
        status
    }

    fn wait_exit_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the processes proxymgr started that outlived it (HAProxy, say) and waits until they are gone.
    /// They are reparented when proxymgr exits and proxymgr puts HAProxy in a process group of its own, so
    /// three ways find them: those `stop` saw before signalling it that still run (same pid and start time);
    /// processes whose arguments name a file in this fixture's unique directory (an HAProxy left by a proxymgr
    /// that crashed before `stop`); and whatever is left in proxymgr's process group, or in an earlier one's
    /// after `start_again` (Linux does not reuse a pid while a process group still carries it as its id, so every
    /// process in such a group is one of them started).
    fn kill_leftovers(&self) {
        let pgid = self.pid();
        let dir = self.dir().to_string_lossy().into_owned();
        let mut leftovers = self.survivors();
        leftovers.extend(
            all_processes()
                .into_iter()
                .filter(|p| p.state != 'Z' && p.pid != pgid)
                .filter(|p| {
                    p.pgrp == pgid
                        || self.earlier.contains(&p.pgrp)
                        || cmdline(p.pid).iter().any(|arg| arg.contains(&dir))
                })
                .map(|p| p.pid),
        );
        leftovers.sort_unstable();
        leftovers.dedup();
        if leftovers.is_empty() {
            return;
        }
        eprintln!("proxymgr left processes {leftovers:?} running; killing them");
        for pid in &leftovers {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
        // They were reparented, so they are not ours to reap: wait until they are zombies or gone.
        wait_until(Duration::from_secs(5), "proxymgr's leftover processes to die", || {
            leftovers.iter().all(|pid| !pid_alive(*pid))
        });
    }

    /// The processes proxymgr had started when `stop` signalled it that still run (empty before `stop`), so a
    /// test can check that it stops its HAProxy: `pm.stop(); assert_eq!(pm.survivors(), [])`.
    pub fn survivors(&self) -> Vec<u32> {
        self.descendants
            .iter()
            .filter(|seen| {
                proc_stat(seen.pid).is_some_and(|now| now.start_time == seen.start_time && now.state != 'Z')
            })
            .map(|seen| seen.pid)
            .collect()
    }
}

impl Drop for Proxymgr {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- proxymgr log ({}) ---\n{}", self.dir().display(), tail(&self.log(), 8000));
        }
        self.stop();
        self.kill_leftovers();
    }
}

/// Opens `<dir>/proxymgr.log` for appending and spawns `command(proxymgr_bin()) -c <dir>/proxymgr.yml -d`.
fn spawn(dir: &Path, command: &dyn Fn(&Path) -> Command) -> Child {
    let config_path = dir.join("proxymgr.yml");
    let (log, log_err) = super::append_log(&dir.join("proxymgr.log"));
    let bin = proxymgr_bin();
    let mut command = command(&bin);
    command
        .arg("-c")
        .arg(&config_path)
        .arg("-d")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Its own process group: the fixture can then find and kill every HAProxy it left behind, and a
        // Ctrl-C at the terminal (make demo) reaches the demo, which stops proxymgr in order.
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("start {:?}: {e} (is it built?)", command.get_program()))
}

/// Sends one command to the HAProxy runtime socket at `socket` (2 s timeouts) and returns the reply.
pub fn haproxy_command(socket: &Path, command: &str) -> io::Result<String> {
    let timeout = Duration::from_secs(2);
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // Without `prompt` HAProxy answers one command and closes the connection.
    stream.write_all(format!("{}\n", command.trim_end()).as_bytes())?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}

/// This process's effective uid, from `/proc/self/status` (`Uid:` real, effective, saved, filesystem).
fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Runs the proxymgr binary with `args` (for CLI tests) and collects its output; panics if it runs for more
/// than 30 s.
pub fn run_proxymgr(args: &[&str]) -> Output {
    let bin = proxymgr_bin();
    let mut child = Command::new(&bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e} (is it built?)", bin.display()));
    // Drain both pipes in threads so a chatty child cannot block on a full pipe while we wait.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for proxymgr") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`proxymgr {}` still ran after {RUN_TIMEOUT:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() }
}

/// The servers in a reply to `show servers state`, each named by its address and port; None if it is not one
/// (its version line and the header naming the columns come first).
pub fn parse_servers_state(reply: &str) -> Option<Vec<ServerRow>> {
    let mut lines = reply.lines();
    if lines.next()?.trim() != "1" {
        return None;
    }
    let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(' ').collect();
    let column = |name: &str| header.iter().position(|c| *c == name);
    let (port, admin) = (column("srv_port")?, column("srv_admin_state")?);
    let rows = lines.filter_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let admin_state: u32 = fields.get(admin)?.parse().ok()?;
        Some(ServerRow {
            name: format!("{}:{}", fields.get(4)?, fields.get(port)?),
            haproxy_name: fields.get(3)?.to_string(),
            // 0x04 (`disabled` in the config) stays on a slot filled and set ready at run time, and HAProxy does
            // not count it as maintenance.
            admin_state: admin_state & !0x04,
            uweight: fields.get(7)?.to_string(),
        })
    });
    Some(rows.collect())
}

/// One server of [`Proxymgr::servers_state`].
#[derive(Debug, Clone)]
pub struct ServerRow {
    /// `address:port`.
    pub name: String,
    pub haproxy_name: String,
    /// `srv_admin_state` without 0x04: 0 in rotation, 1 forced into maintenance, ...
    pub admin_state: u32,
    pub uweight: String,
}
