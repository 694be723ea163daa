//! The HAProxy binary and the processes run from it: version check, config check, start with inherited listeners,
//! reload with `-sf`, reaping, and the graceful stop.
//!
//! **Architecture Invariant:** only this module forks, and every child it starts is reaped here: `Processes`
//! owns every HAProxy pid, the one serving (`current`) and the ones finishing their connections (`old`).

use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::RawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// HAProxy older than this cannot take inherited sockets (`bind fd@N`) or a runtime API worth the name.
const MIN_VERSION: (u32, u32) = (1, 5);

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("haproxy.path: {0} not found (neither a file nor on PATH)")]
    NotFound(PathBuf),
    #[error("haproxy.path: {0} is not an executable file")]
    NotExecutable(PathBuf),
    #[error("haproxy.path: cannot run {path}: {source}")]
    Run { path: PathBuf, source: io::Error },
    #[error("haproxy.path: {path} -v printed no version we understand: {output:?}")]
    NoVersion { path: PathBuf, output: String },
    #[error("haproxy.path: {path} is HAProxy {version}; proxymgr needs 1.5 or newer")]
    TooOld { path: PathBuf, version: String },
    /// `haproxy -c` could not run at all.
    #[error("cannot run {path}: {source}")]
    Check { path: PathBuf, source: io::Error },
    /// `haproxy -c` rejects the config: its `[ALERT]` lines (or all it said), and how it exited.
    #[error("{reason} ({status})")]
    Rejected { reason: String, status: String },
}

/// The HAProxy binary proxymgr runs, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary {
    pub path: PathBuf,
    pub version: (u32, u32),
    pub version_text: String,
    /// Whether it was built with the Prometheus exporter (`USE_PROMEX`): `-vv` lists it among its services.
    pub prometheus_exporter: bool,
}

impl Binary {
    /// Finds `path` (a file, or a name on PATH), runs `-vv` and refuses versions older than 1.5.
    pub fn locate(path: &Path) -> Result<Binary, ProcessError> {
        let resolved = resolve(path).ok_or_else(|| {
            if path.exists() {
                ProcessError::NotExecutable(path.to_path_buf())
            } else {
                ProcessError::NotFound(path.to_path_buf())
            }
        })?;
        let output = Command::new(&resolved)
            .arg("-vv")
            .stdin(Stdio::null())
            .output()
            .map_err(|source| ProcessError::Run { path: resolved.clone(), source })?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (version, version_text) = parse_version(&text)
            .ok_or_else(|| ProcessError::NoVersion { path: resolved.clone(), output: text.clone() })?;
        if version < MIN_VERSION {
            return Err(ProcessError::TooOld { path: resolved, version: version_text });
        }
        let prometheus_exporter = text.contains("prometheus-exporter");
        Ok(Binary { path: resolved, version, version_text, prometheus_exporter })
    }

    /// `haproxy -c -f cfg` with the listeners passed, as a start would have them (without them HAProxy refuses
    /// `bind fd@N`: "Socket operation on non-socket"). Returns HAProxy's complaint when it rejects the file.
    pub fn check(&self, config: &Path, fds: &[RawFd]) -> Result<(), ProcessError> {
        let mut command = self.command(config, fds);
        command.arg("-c").stdout(Stdio::piped()).stderr(Stdio::piped());
        let output =
            command.output().map_err(|source| ProcessError::Check { path: self.path.clone(), source })?;
        if output.status.success() {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stdout));
        // The [ALERT] lines say what is wrong; the [NOTICE] and [WARNING] ones around them are noise here.
        let alerts: Vec<&str> = text.lines().filter(|l| l.contains("[ALERT]")).map(str::trim).collect();
        let reason = if alerts.is_empty() { text.trim().to_string() } else { alerts.join(" | ") };
        Err(ProcessError::Rejected { reason, status: describe(output.status) })
    }

    /// A command running this binary on `config` in the foreground, inheriting `fds`.
    fn command(&self, config: &Path, fds: &[RawFd]) -> Command {
        let mut command = Command::new(&self.path);
        command.arg("-f").arg(config).arg("-db").stdin(Stdio::null());
        // Its own process group: a Ctrl-C at proxymgr's terminal is for proxymgr, which stops HAProxy gently.
        command.process_group(0);
        super::listeners::inherit(&mut command, fds.to_vec());
        command
    }
}

fn resolve(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable =
        |p: &Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if path.components().count() > 1 || path.is_absolute() {
        return executable(path).then(|| path.to_path_buf());
    }
    let search = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin".into());
    // Daemons often start with a PATH that lacks sbin, where Debian puts haproxy.
    std::env::split_paths(&search)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(path))
        .find(|candidate| executable(candidate))
}

/// `HAProxy version 2.6.12-1+deb12u1 2023/12/16 - https://haproxy.org/` -> ((2, 6), "2.6.12-1+deb12u1").
/// Versions before 1.8 say `HA-Proxy version 1.5.18 2016/05/10`.
fn parse_version(text: &str) -> Option<((u32, u32), String)> {
    let line =
        text.lines().find(|l| l.starts_with("HAProxy version") || l.starts_with("HA-Proxy version"))?;
    let word = line.split_whitespace().nth(2)?;
    let mut numbers = word.split(|c: char| !c.is_ascii_digit());
    let major = numbers.next()?.parse().ok()?;
    let minor = numbers.next()?.parse().ok()?;
    Some(((major, minor), word.to_string()))
}

pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => {
            let name = Signal::try_from(signal).map(|s| s.as_str()).unwrap_or("unknown signal");
            format!("killed by {name}")
        }
        _ => status.to_string(),
    }
}

struct Running {
    child: Child,
    started: Instant,
}

impl Running {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// A process that ended while it was the serving one (or about to be).
pub struct Exited {
    pub pid: u32,
    /// None when waiting for it failed.
    pub status: Option<ExitStatus>,
    pub ran: Duration,
}

/// The HAProxy processes alive, as the reconciler's core learns of them: the one started last (serving, or
/// starting) and the older generations still finishing their connections, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generations {
    pub current: Option<u32>,
    pub old: Vec<u32>,
}

/// Every HAProxy process proxymgr started and has not reaped yet.
#[derive(Default)]
pub struct Processes {
    current: Option<Running>,
    old: Vec<Running>,
    /// HAProxy processes a proxymgr that died left behind: not our children, so they cannot be reaped, only
    /// told to finish (by the next start's `-sf`) and watched until they are gone.
    orphans: Vec<u32>,
    /// The process the one started last replaces, until that one serves.
    previous: Option<u32>,
}

impl Processes {
    /// Starts a new HAProxy on `config` with `fds`, telling every live one to finish (`-sf`) once it serves. The
    /// old processes stop only after the new one is up, so a new one that fails leaves them serving.
    pub fn start(&mut self, binary: &Binary, config: &Path, fds: &[RawFd]) -> io::Result<u32> {
        let mut command = binary.command(config, fds);
        let old = self.pids();
        if !old.is_empty() {
            command.arg("-sf").args(old.iter().map(u32::to_string));
        }
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn()?;
        let pid = child.id();
        if let Some(out) = child.stdout.take() {
            forward_output(pid, out);
        }
        if let Some(err) = child.stderr.take() {
            forward_output(pid, err);
        }
        self.previous = self.current.as_ref().map(Running::pid);
        if let Some(previous) = self.current.replace(Running { child, started: Instant::now() }) {
            self.old.push(previous);
        }
        Ok(pid)
    }

    /// After the process started last exited before it served: the one it was to replace serves on (it was
    /// told nothing: a HAProxy sends `-sf` only once it has started).
    pub fn restore(&mut self) {
        if self.current.is_some() {
            return;
        }
        let Some(pid) = self.previous.take() else { return };
        if let Some(i) = self.old.iter().position(|old| old.pid() == pid) {
            self.current = Some(self.old.remove(i));
        }
    }

    /// Takes over processes an earlier proxymgr left running.
    pub fn adopt(&mut self, orphans: Vec<u32>) {
        self.orphans = orphans;
    }

    /// Every live pid, the serving one first.
    pub fn pids(&self) -> Vec<u32> {
        self.current.iter().chain(&self.old).map(Running::pid).chain(self.orphans.iter().copied()).collect()
    }

    /// The live processes by generation; those an earlier proxymgr left are the oldest.
    pub fn generations(&self) -> Generations {
        Generations {
            current: self.current.as_ref().map(Running::pid),
            old: self.orphans.iter().copied().chain(self.old.iter().map(Running::pid)).collect(),
        }
    }

    /// Stops these older generations at once: SIGTERM is HAProxy's hard stop (as `-st`), which closes every
    /// connection the process still serves and exits. The serving process is never among them; they are reaped
    /// as usual once they exit.
    pub fn hard_stop(&mut self, pids: &[u32]) {
        let old = self.generations().old;
        let pids: Vec<u32> = pids.iter().copied().filter(|pid| old.contains(pid)).collect();
        signal_all(&pids, Signal::SIGTERM);
    }

    /// Reaps whatever has ended. Returns the serving process if it was among them: nobody asked it to stop.
    pub fn reap(&mut self) -> Option<Exited> {
        self.orphans.retain(|&pid| {
            let alive = crate::state::is_haproxy(pid);
            if !alive {
                log::info!("haproxy[{pid}] (left by an earlier proxymgr) finished");
            }
            alive
        });
        self.old.retain_mut(|old| match old.child.try_wait() {
            Ok(Some(status)) => {
                log::info!("haproxy[{}] finished ({})", old.pid(), describe(status));
                false
            }
            Ok(None) => true,
            Err(e) => {
                log::error!("haproxy[{}]: cannot wait for it: {e}", old.pid());
                false
            }
        });
        let current = self.current.as_mut()?;
        let status = match current.child.try_wait() {
            Ok(Some(status)) => Some(status),
            Ok(None) => return None,
            Err(e) => {
                log::error!("haproxy[{}]: cannot wait for it: {e}", current.pid());
                None
            }
        };
        let current = self.current.take()?;
        Some(Exited { pid: current.pid(), status, ran: current.started.elapsed() })
    }

    /// Soft-stops every process (SIGUSR1: stop listening, finish the connections), waits up to `timeout`, then
    /// kills what is left. Returns once every process is reaped.
    pub fn stop(&mut self, timeout: Duration) {
        self.old.extend(self.current.take());
        signal_all(&self.pids(), Signal::SIGUSR1);
        let deadline = Instant::now() + timeout;
        while !self.pids().is_empty() && Instant::now() < deadline {
            self.reap();
            std::thread::sleep(Duration::from_millis(20));
        }
        if !self.pids().is_empty() {
            log::warn!("haproxy {:?} still running after {timeout:?}; killing", self.pids());
            signal_all(&self.pids(), Signal::SIGKILL);
            self.orphans.clear();
            for old in &mut self.old {
                let _ = old.child.wait();
            }
            self.old.clear();
        }
    }
}

fn signal_all(pids: &[u32], signal: Signal) {
    for &pid in pids {
        if let Err(e) = kill(Pid::from_raw(pid as i32), signal) {
            log::debug!("haproxy[{pid}]: {signal}: {e}");
        }
    }
}

/// HAProxy's output (it runs with `-db`, so its alerts and warnings go to stderr) goes into proxymgr's log.
fn forward_output(pid: u32, stream: impl Read + Send + 'static) {
    let spawned = std::thread::Builder::new().name(format!("haproxy[{pid}]")).spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if line.contains("[ALERT]") {
                log::error!("haproxy[{pid}]: {line}");
            } else if line.contains("[WARNING]") {
                log::warn!("haproxy[{pid}]: {line}");
            } else {
                log::info!("haproxy[{pid}]: {line}");
            }
        }
    });
    if let Err(e) = spawned {
        log::error!("haproxy[{pid}]: cannot start a thread for its output: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let v =
            parse_version("HAProxy version 2.6.12-1+deb12u1 2023/12/16 - https://haproxy.org/\nStatus: ...");
        assert_eq!(v, Some(((2, 6), "2.6.12-1+deb12u1".into())));
        assert_eq!(parse_version("HA-Proxy version 1.4.24 2013/06/17").unwrap().0, (1, 4));
        assert_eq!(parse_version("nginx version: nginx/1.22.1"), None);
    }

    #[test]
    fn a_missing_binary_is_named() {
        let err = Binary::locate(Path::new("/nonexistent/haproxy")).unwrap_err().to_string();
        assert_eq!(err, "haproxy.path: /nonexistent/haproxy not found (neither a file nor on PATH)");
        let err = Binary::locate(Path::new("no-such-haproxy-binary")).unwrap_err().to_string();
        assert!(err.contains("no-such-haproxy-binary not found"), "{err}");
    }
}
