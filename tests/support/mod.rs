//! Test fixtures: a real ZooKeeper (a standalone server or a quorum ensemble), tiny HTTP backends, a TCP relay a
//! test can cut, the proxymgr daemon and bounded load loops, each started on a port picked at run time and
//! cleaned up on `Drop`, plus deadline-bound waits, a headless browser that loads a page (`browser.rs`), and a
//! self-signed certificate with HTTPS requests through curl (`tls.rs`).
//!
//! Ports: every port a test uses comes from `reserve_port()` (a port to give to ZooKeeper, a service, ...) or
//! `reserved_listener()` (a socket already listening, for backends and relays), never from `bind(0)` or a
//! fixed number. They come from 20000 up, outside the kernel's ephemeral range (where outgoing connections get
//! their source ports), in blocks of 100 that a test process locks (`flock` on
//! `/tmp/proxymgr-test-ports/<first>.lock`, held until it exits) so that two processes never share one; within
//! a process no port is handed out twice, and each is checked free by binding it without SO_REUSEADDR or
//! SO_REUSEPORT first. `ports.rs` has the details.
//!
//! Tests that need an external tool start with `if !support::require("haproxy") { return; }`: the tool's absence
//! skips the test with a message, or fails it when `PROXYMGR_TEST_REQUIRE=1` (as `make test` and CI set it), so a
//! missing tool can never make the suite pass silently.
//!
//! Nothing here binds to or connects to anything but 127.0.0.1, and every wait has a deadline.
//! Set `PROXYMGR_TEST_KEEP=1` to keep the fixtures' temporary directories (configs, logs) after a run.

// Not every test binary (the integration tests, the demo) uses every helper.
#![allow(dead_code)]

mod backend;
pub mod browser;
pub mod load;
mod ports;
mod proxymgr;
mod relay;
pub mod tls;
mod zk;

// Re-exports are "unused" in whichever binary (tests, demo) does not use them, like the dead code above.
#[allow(unused_imports)]
pub use backend::{http_get, http_get_host, Answer, Backend};
#[allow(unused_imports)]
pub use ports::{ephemeral_range, reserve_port, reserved_listener, LOCK_DIR};
#[allow(unused_imports)]
pub use proxymgr::{haproxy_command, parse_servers_state, proxymgr_bin, run_proxymgr, Proxymgr};
#[allow(unused_imports)]
pub use relay::Relay;
#[allow(unused_imports)]
pub use zk::{Zk, ZkEnsemble};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the waits below poll their condition.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Whether `port` on 127.0.0.1 can be bound right now (for a fixed port, as the demo's 8080; tests use
/// `reserve_port`).
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// True when `tool` is installed: an executable of that name on `PATH`, for `"zookeeper"` java on `PATH` and
/// `/usr/share/java/zookeeper.jar`, for `"haproxy"` the binary `haproxy()` names, and for `"chromium"` one of
/// `browser::BINARIES` on `PATH`. When it is missing, panics if `PROXYMGR_TEST_REQUIRE=1`, else prints
/// `skipping: <tool> not installed` and returns false.
pub fn require(tool: &str) -> bool {
    let installed = match tool {
        "zookeeper" => find_on_path("java").is_some() && Path::new(zk::ZOOKEEPER_JAR).is_file(),
        "haproxy" => haproxy_installed(),
        "chromium" => browser::binary().is_some(),
        _ => find_on_path(tool).is_some(),
    };
    if installed {
        return true;
    }
    let (tool, remedy) = match (tool, std::env::var_os(HAPROXY_ENV)) {
        ("haproxy", Some(path)) if !path.is_empty() => {
            (format!("{HAPROXY_ENV}={}", path.to_string_lossy()), "tests/matrix/haproxy VERSION prints one")
        }
        _ => (tool.to_string(), "run `make deps`"),
    };
    if std::env::var("PROXYMGR_TEST_REQUIRE").as_deref() == Ok("1") {
        panic!("{tool} is not installed but PROXYMGR_TEST_REQUIRE=1 requires it; {remedy}");
    }
    eprintln!("skipping: {tool} not installed ({remedy}, or set PROXYMGR_TEST_REQUIRE=1 to fail instead)");
    false
}

/// The environment variable that picks the HAProxy binary the tests run (`make test-matrix` sets it).
pub const HAPROXY_ENV: &str = "PROXYMGR_TEST_HAPROXY";

/// The HAProxy the tests run, and the `haproxy.path` of the fixture's proxymgr.yml: `$PROXYMGR_TEST_HAPROXY`
/// (a path, as `tests/matrix/haproxy VERSION` prints it), else `haproxy`, found on `PATH` as proxymgr finds it.
pub fn haproxy() -> PathBuf {
    match std::env::var_os(HAPROXY_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from("haproxy"),
    }
}

/// Whether `haproxy()` is an executable file: the path itself, or a plain name on `PATH`.
fn haproxy_installed() -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = haproxy();
    if path.components().count() == 1 {
        return path.to_str().is_some_and(|name| find_on_path(name).is_some());
    }
    std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The (major, minor) version of `haproxy()`, from the first line of `haproxy -v` (`HAProxy version 2.6.12-1
/// ...`, or `HA-Proxy version 1.8.0 ...` before 1.9). Asked once a test process; panics if it cannot be had.
pub fn haproxy_version() -> (u32, u32) {
    static VERSION: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *VERSION.get_or_init(|| {
        let binary = haproxy();
        let output = std::process::Command::new(&binary)
            .arg("-v")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {} -v: {e}", binary.display()));
        let text = String::from_utf8_lossy(&output.stdout);
        parse_haproxy_version(&text)
            .unwrap_or_else(|| panic!("no version in the output of {} -v: {text:?}", binary.display()))
    })
}

/// `HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/` -> (2, 6).
pub fn parse_haproxy_version(text: &str) -> Option<(u32, u32)> {
    let line =
        text.lines().find(|l| l.starts_with("HAProxy version") || l.starts_with("HA-Proxy version"))?;
    let mut numbers = line.split_whitespace().nth(2)?.split(|c: char| !c.is_ascii_digit());
    Some((numbers.next()?.parse().ok()?, numbers.next()?.parse().ok()?))
}

/// The first executable file named `name` in a directory of `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| {
        std::fs::metadata(candidate)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

/// Waits (up to 20 s) until 8 requests through `port` are answered by exactly the backends named `expected`.
pub fn wait_answers(port: u16, expected: &[&str]) {
    let expected: std::collections::BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
    wait_until(Duration::from_secs(20), &format!("port {port} answered by exactly {expected:?}"), || {
        let seen: std::collections::BTreeSet<String> =
            (0..8).map(|_| http_get(port).unwrap_or_else(|e| format!("error: {e}"))).collect();
        seen == expected
    });
}

/// GET `path` over HTTP/1.0 from `address`: the status code and the body; None when nothing answers (or not
/// within 5 s).
pub fn fetch(address: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    let (status_line, body) = backend::get(address, path, Duration::from_secs(5)).ok()?;
    let code = status_line.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body))
}

/// Polls `f` every 20 ms until it returns true; panics naming `what` if it has not by `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    wait_for(timeout, what, || f().then_some(()))
}

/// Waits up to `timeout` for `child` to exit; one still running then is killed and reaped, and the error says so.
pub fn wait_or_kill(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Result<std::process::ExitStatus, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("still running after {timeout:?}; killed it"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("cannot wait for it: {e}")),
        }
    }
}

/// Polls `f` every 20 ms until it returns `Some`; panics naming `what` if it has not by `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = f() {
            return value;
        }
        let now = Instant::now();
        if now >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}

/// Checks `invariant` every 50 ms for `duration`, the last time at or after its end: panics naming `what` and what
/// the invariant saw the first time it does not hold. The opposite of `wait_until`, and as bounded: for a test
/// whose point is that nothing happens for a while (a fault lasts that long, a change must not follow).
pub fn hold(duration: Duration, what: &str, mut invariant: impl FnMut() -> Result<(), String>) {
    let (start, end) = (Instant::now(), Instant::now() + duration);
    loop {
        if let Err(seen) = invariant() {
            panic!("{what} stopped holding after {:?}: {seen}", start.elapsed());
        }
        if Instant::now() >= end {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One process as `/proc/<pid>/stat` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    pub comm: String,
    /// `R`, `S`, `Z`, ...
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
    /// Clock ticks after boot when the process started: with the pid, it tells a process from a later one that
    /// reused its pid.
    pub start_time: u64,
}

/// Reads `/proc/<pid>/stat`; `None` when the process is gone.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm is in parentheses and may itself contain spaces or parentheses: split at the last ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let mut rest = text[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let pgrp = rest.next()?.parse().ok()?;
    // Field 22 of proc(5); `rest` now starts at field 6.
    let start_time = rest.nth(16)?.parse().ok()?;
    Some(ProcStat { pid, comm, state, ppid, pgrp, start_time })
}

/// Every process currently listed in `/proc`.
pub fn all_processes() -> Vec<ProcStat> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(proc_stat)
        .collect()
}

/// Every descendant of `pid` (children, their children, ...), as they are now.
pub fn descendants(pid: u32) -> Vec<ProcStat> {
    let processes = all_processes();
    let mut found: Vec<ProcStat> = Vec::new();
    let mut parents = vec![pid];
    while let Some(parent) = parents.pop() {
        for process in processes.iter().filter(|p| p.ppid == parent) {
            parents.push(process.pid);
            found.push(process.clone());
        }
    }
    found
}

/// The arguments `pid` was started with (empty for a zombie or a vanished process).
pub fn cmdline(pid: u32) -> Vec<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    bytes
        .split(|b| *b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// The running `haproxy` processes (zombies aside) whose arguments mention `dir` (their config is in it),
/// whoever started them. Sorted.
pub fn haproxy_pids_naming(dir: &Path) -> Vec<u32> {
    let dir = dir.to_string_lossy().into_owned();
    let mut pids: Vec<u32> = all_processes()
        .into_iter()
        .filter(|p| p.comm == "haproxy" && p.state != 'Z')
        .filter(|p| cmdline(p.pid).iter().any(|arg| arg.contains(&dir)))
        .map(|p| p.pid)
        .collect();
    pids.sort_unstable();
    pids
}

/// True while `pid` exists and is not a zombie.
/// The inodes of the sockets listening on `port` (any address, IPv4 or IPv6), from /proc/net/tcp{,6}: one per
/// socket, however many processes hold it, so a socket handed from one process to another keeps its inode.
pub fn listening_inodes(port: u16) -> Vec<u64> {
    let mut inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .flat_map(|table| {
            std::fs::read_to_string(table)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = u16::from_str_radix(fields.get(1)?.rsplit(':').next()?, 16).ok()?;
            (local_port == port && *fields.get(3)? == "0A").then(|| fields.get(9)?.parse().ok())?
        })
        .collect();
    inodes.sort_unstable();
    inodes
}

pub fn pid_alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|stat| stat.state != 'Z')
}

/// Whether fixtures should leave their temporary directories behind (`PROXYMGR_TEST_KEEP=1`).
fn keep_temp_dirs() -> bool {
    std::env::var("PROXYMGR_TEST_KEEP").as_deref() == Ok("1")
}

/// A fresh temporary directory named after the fixture, kept after the run if `PROXYMGR_TEST_KEEP=1`.
fn temp_dir(prefix: &str) -> tempfile::TempDir {
    let mut dir = tempfile::Builder::new().prefix(prefix).tempdir().expect("create a temporary directory");
    if keep_temp_dirs() {
        dir.disable_cleanup(true);
        eprintln!("keeping {}", dir.path().display());
    }
    dir
}

/// The last `max` bytes of `text` (on a char boundary), for failure messages.
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// `path` opened for appending, twice: for a child's stdout and stderr.
pub fn append_log(path: &Path) -> (std::fs::File, std::fs::File) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let log_err = log.try_clone().expect("clone a file handle");
    (log, log_err)
}

/// A ZooKeeper with an empty `/service_config` and a proxymgr following it with the standard test config, plus
/// `extra` lines in its `haproxy` section; None when a tool is missing (the test then skips).
pub fn zk_and_proxymgr(extra: &str) -> Option<(Zk, Proxymgr)> {
    if !require("haproxy") || !require("zookeeper") {
        return None;
    }
    let zk = Zk::start();
    zk.create("/service_config", "");
    let pm = Proxymgr::start_with(|dir| {
        let yaml = Proxymgr::config_yaml(dir, &zk.connect_string());
        yaml.replacen("  bind_address: 127.0.0.1\n", &format!("  bind_address: 127.0.0.1\n{extra}"), 1)
    });
    Some((zk, pm))
}
