//! The two things under test behind one interface: proxymgr (the release binary, through the test fixture) and
//! the reload baseline. The scenarios only see a `Target`.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::baseline::Baseline;
use crate::support::{Proxymgr, Zk};

/// `global` and `defaults` lines both modes render (proxymgr's test config's).
pub const GLOBAL: &[&str] = &["maxconn 1000"];
pub const DEFAULTS: &[&str] =
    &["mode http", "timeout connect 2s", "timeout client 10s", "timeout server 10s"];

/// A shared HTTP frontend (issue 16) on 127.0.0.1:`port`: proxymgr gets it under `haproxy.frontends`, the
/// baseline renders it as Synapse's `shared_frontend`. `options` are lines inside it, after `mode http`.
#[derive(Debug, Clone)]
pub struct Frontend {
    pub name: String,
    pub port: u16,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    Proxymgr,
    Reload,
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Mode::Proxymgr => "proxymgr",
            Mode::Reload => "reload baseline",
        }
    }
}

pub enum Target {
    Proxymgr(Box<Proxymgr>),
    Reload(Baseline),
}

impl Target {
    /// Starts `mode` against `zk`; does not wait.
    pub fn start(mode: Mode, zk: &Zk) -> Target {
        Target::start_with_frontends(mode, zk, &[])
    }

    /// Starts `mode` against `zk` with shared `frontends`; does not wait.
    pub fn start_with_frontends(mode: Mode, zk: &Zk, frontends: &[Frontend]) -> Target {
        match mode {
            Mode::Proxymgr => Target::Proxymgr(Box::new(Proxymgr::start_with(|dir| {
                with_frontends(&proxymgr_yaml(dir, zk), frontends)
            }))),
            Mode::Reload => {
                Target::Reload(Baseline::start(&zk.connect_string(), GLOBAL, DEFAULTS, frontends))
            }
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir().join("haproxy.sock")
    }

    /// The directory of the target's haproxy.cfg (and of the candidates proxymgr starts HAProxy on).
    pub fn dir(&self) -> &Path {
        match self {
            Target::Proxymgr(pm) => pm.dir(),
            Target::Reload(b) => b.dir(),
        }
    }

    /// The target's HAProxy processes alive now, serving or finishing their connections, with their summed
    /// resident memory (`VmRSS`, kB; pages they share, such as the binary's, counted once a process).
    pub fn haproxy_census(&self) -> (usize, u64) {
        let pids = crate::support::haproxy_pids_naming(self.dir());
        let rss = pids.iter().filter_map(|pid| status_kb(&format!("/proc/{pid}/status"), "VmRSS:")).sum();
        (pids.len(), rss)
    }

    /// HAProxy processes started so far (the first start included).
    pub fn reloads_started(&self) -> usize {
        match self {
            Target::Proxymgr(pm) => pm.log().matches("] started").count(),
            Target::Reload(b) => b.shared.reloads_started.load(Ordering::SeqCst),
        }
    }

    /// HAProxy processes that went on to serve.
    pub fn reloads_served(&self) -> usize {
        match self {
            Target::Proxymgr(pm) => pm.log().matches("] serves (").count(),
            Target::Reload(b) => b.shared.reloads_served.load(Ordering::SeqCst),
        }
    }

    /// Waits (up to 60 s) until the target has handled what it was told: the baseline's loop is idle. proxymgr
    /// answers at once: its changes are never queued behind a reload.
    pub fn wait_idle(&self) {
        if let Target::Reload(b) = self {
            let deadline = Instant::now() + Duration::from_secs(60);
            while b.shared.busy.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// (user + system CPU seconds, what they are of): proxymgr's process, or the baseline's thread (HAProxy
    /// excluded in both).
    pub fn cpu_seconds(&self) -> Option<f64> {
        let path = match self {
            Target::Proxymgr(pm) => format!("/proc/{}/stat", pm.pid()),
            Target::Reload(b) => format!("/proc/self/task/{}/stat", b.shared.tid.load(Ordering::SeqCst)),
        };
        cpu_seconds(&path)
    }

    /// proxymgr's log, or nothing.
    pub fn log(&self) -> String {
        match self {
            Target::Proxymgr(pm) => pm.log(),
            Target::Reload(_) => String::new(),
        }
    }

    /// `VmHWM` (peak RSS) and `VmRSS` of proxymgr, in kB.
    pub fn memory_kb(&self) -> Option<(u64, u64)> {
        let Target::Proxymgr(pm) = self else { return None };
        let status = format!("/proc/{}/status", pm.pid());
        Some((status_kb(&status, "VmHWM:")?, status_kb(&status, "VmRSS:")?))
    }

    /// Why the target failed, if it did (proxymgr exited; the baseline's loop gave up).
    pub fn failure(&mut self) -> Option<String> {
        match self {
            Target::Proxymgr(pm) => {
                if pm.is_running() {
                    None
                } else {
                    Some(format!("proxymgr exited: {:?}", pm.try_status()))
                }
            }
            Target::Reload(b) => b.error(),
        }
    }
}

/// The fixture's standard config, defaults for every reload and drift setting.
fn proxymgr_yaml(dir: &std::path::Path, zk: &Zk) -> String {
    let yaml = Proxymgr::config_yaml(dir, &zk.connect_string());
    // The fixture's global/defaults lines are GLOBAL and DEFAULTS; keep the two in step.
    assert!(
        yaml.contains("\"maxconn 1000\"") && yaml.contains("\"timeout server 10s\""),
        "the fixture's proxymgr.yml no longer has the global/defaults lines the baseline renders: update target.rs"
    );
    // BENCH_STATUS=off: without the status endpoint, to see what it costs.
    match std::env::var("BENCH_STATUS").as_deref() {
        Ok("off") => format!("{yaml}status: off\n"),
        _ => yaml,
    }
}

/// `yaml` with `frontends` under its `haproxy:` key (issue 16's `haproxy.frontends`); `map_dir` is left at its
/// default, `maps/` beside the fixture's `state_file`.
fn with_frontends(yaml: &str, frontends: &[Frontend]) -> String {
    if frontends.is_empty() {
        return yaml.to_string();
    }
    let mut block = String::from("haproxy:\n  frontends:\n");
    for frontend in frontends {
        block.push_str(&format!("    {}:\n      bind: 127.0.0.1:{}\n", frontend.name, frontend.port));
        if !frontend.options.is_empty() {
            block.push_str("      options:\n");
            for line in &frontend.options {
                // A JSON string is a YAML double-quoted scalar.
                block.push_str(&format!("        - {}\n", serde_json::Value::from(line.as_str())));
            }
        }
    }
    assert!(yaml.starts_with("haproxy:\n"), "the fixture's proxymgr.yml no longer starts with `haproxy:`");
    yaml.replacen("haproxy:\n", &block, 1)
}

/// A `kB` field (`VmRSS:`, say) of a `/proc/<pid>/status` file.
fn status_kb(path: &str, name: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    status.lines().find_map(|l| l.strip_prefix(name))?.split_whitespace().next()?.parse().ok()
}

/// utime + stime of `/proc/.../stat`, in seconds (USER_HZ is 100 on Linux).
pub fn cpu_seconds(path: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}
