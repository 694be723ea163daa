//! Everything proxymgr does to HAProxy: render its config, hold its listeners, run its processes.
//!
//! A [`Candidate`] is the one way a new config reaches the disk: written beside the target, HAProxy is started
//! on it (with the listeners passed and `-sf` the serving processes), and it is moved into place once that
//! process serves. The start is the check: HAProxy parses the file once, not twice (a `haproxy -c` first cost a
//! third of a second at 1000 services). Only when that process exits before it serves does `haproxy -c` tell
//! a rejected config (kept aside as `haproxy.cfg.rejected`) from a start that failed for another reason. A
//! config HAProxy rejects never becomes haproxy.cfg.

pub mod capabilities;
pub mod command;
pub mod handover;
pub mod instance;
pub mod listeners;
pub mod process;
pub mod render;
pub mod runtime;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub use capabilities::Capabilities;

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("HAProxy rejected the new config (kept as {kept}): {reason}")]
    Rejected { kept: PathBuf, reason: String },
}

/// A config written beside `path` for a new HAProxy to start on; removed if dropped undecided.
pub struct Candidate {
    file: tempfile::TempPath,
    path: PathBuf,
}

impl Candidate {
    /// Not synced to disk yet: HAProxy reads it from the page cache, and a sync (5-20 ms for 2.7 MB) would only
    /// delay the new process; `accept` syncs it before it replaces haproxy.cfg.
    pub fn write(path: &Path, text: &str) -> Result<Candidate, InstallError> {
        let write_error = |source| InstallError::Write { path: path.to_path_buf(), source };
        let file = candidate(path, text).map_err(write_error)?.into_temp_path();
        Ok(Candidate { file, path: path.to_path_buf() })
    }

    /// Where the candidate is, for HAProxy's `-f`.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// HAProxy serves it: it becomes `path`, on disk first.
    pub fn accept(self) -> Result<(), InstallError> {
        let path = self.path;
        let synced = std::fs::File::open(&self.file).and_then(|file| file.sync_all());
        synced.map_err(|source| InstallError::Write { path: path.clone(), source })?;
        self.file.persist(&path).map_err(|e| InstallError::Write { path, source: e.error })
    }

    /// HAProxy would not start on it, for `reason` (`Binary::check`'s): it is kept as `path.rejected`, and the
    /// error names that file.
    pub fn reject(self, reason: &str) -> InstallError {
        let kept = rejected_path(&self.path);
        // The file that explains the error is worth more than tidiness; its line numbers match the message.
        let reason = reason.replace(&self.file.display().to_string(), &kept.display().to_string());
        match self.file.persist(&kept) {
            Ok(()) => InstallError::Rejected { kept, reason },
            Err(e) => InstallError::Write { path: kept, source: e.error },
        }
    }
}

/// Atomically replaces `path` with `text` without asking HAProxy: only for a file whose listen sections HAProxy
/// accepted through `install` and whose server lines it just accepted at run time.
pub fn write(path: &Path, text: &str) -> Result<(), InstallError> {
    let write_error = |source| InstallError::Write { path: path.to_path_buf(), source };
    std::fs::create_dir_all(dir_of(path)).map_err(write_error)?;
    let file = candidate(path, text).map_err(write_error)?;
    file.as_file().sync_all().map_err(write_error)?;
    file.persist(path).map_err(|e| write_error(e.error))?;
    Ok(())
}

/// Writes haproxy.cfg on a thread of its own, in the order the reconciler asks: a 2.7 MB file synced to disk
/// takes 5-20 ms, which the reconciler would otherwise spend not handling changes. Of writes queued back to
/// back only the last is done; an accepted candidate is never skipped or reordered.
pub struct ConfigWriter {
    /// None when the thread could not be created: the jobs are then done on the caller's thread.
    jobs: Option<crossbeam_channel::Sender<Job>>,
}

enum Job {
    /// Runtime changes HAProxy accepted: whole files (haproxy.cfg and the maps), unchecked (see `write`).
    Write(Vec<(PathBuf, String)>),
    /// HAProxy serves this candidate: it becomes haproxy.cfg.
    Accept(Candidate),
    /// Everything before is done.
    Flush(crossbeam_channel::Sender<()>),
}

impl ConfigWriter {
    pub fn start(events: crossbeam_channel::Sender<crate::event::Event>) -> ConfigWriter {
        let (jobs, inbox) = crossbeam_channel::unbounded::<Job>();
        let spawned = crate::threads::spawn("config-file".into(), events, move || {
            while let Ok(first) = inbox.recv() {
                let mut queue: Vec<Job> = std::iter::once(first).chain(inbox.try_iter()).collect();
                // A write followed by another write is superseded by it.
                let mut i = 0;
                while i + 1 < queue.len() {
                    if matches!((&queue[i], &queue[i + 1]), (Job::Write(_), Job::Write(_))) {
                        queue.remove(i);
                    } else {
                        i += 1;
                    }
                }
                for job in queue {
                    run(job);
                }
            }
        });
        ConfigWriter { jobs: spawned.map(|_| jobs) }
    }

    pub fn write(&self, files: Vec<(PathBuf, String)>) {
        self.send(Job::Write(files));
    }

    pub fn accept(&self, candidate: Candidate) {
        self.send(Job::Accept(candidate));
    }

    fn send(&self, job: Job) {
        match &self.jobs {
            Some(jobs) => {
                if let Err(job) = jobs.send(job) {
                    run(job.into_inner());
                }
            }
            None => run(job),
        }
    }

    /// Waits (up to `timeout`) until what was asked before is done: at shutdown, so that the file on disk is the
    /// last one asked for.
    pub fn flush(&self, timeout: std::time::Duration) {
        let (done, wait) = crossbeam_channel::bounded(1);
        if self.jobs.as_ref().is_some_and(|jobs| jobs.send(Job::Flush(done)).is_ok()) {
            let _ = wait.recv_timeout(timeout);
        }
    }
}

fn run(job: Job) {
    let started = std::time::Instant::now();
    match job {
        Job::Write(files) => {
            for (path, text) in files {
                match write(&path, &text) {
                    Ok(()) => log::debug!(
                        "{} rewritten for runtime changes ({} bytes, {} µs)",
                        path.display(),
                        text.len(),
                        started.elapsed().as_micros()
                    ),
                    Err(e) => log::error!("{e}"),
                }
            }
        }
        Job::Accept(candidate) => {
            if let Err(e) = candidate.accept() {
                log::error!("{e}");
            }
        }
        Job::Flush(done) => {
            let _ = done.send(());
        }
    }
}

/// How the files written beside haproxy.cfg before they replace it (or are kept aside) begin.
const CANDIDATE_PREFIX: &str = ".haproxy.cfg.";

/// The directory `path` is in (`.` for a bare file name).
fn dir_of(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Removes the candidates (`.haproxy.cfg.*`) a proxymgr killed mid-start left beside `path`; nothing runs on
/// them any more that needs them (a HAProxy reads its config only when it starts).
pub fn remove_stale_candidates(path: &Path) {
    let Ok(entries) = std::fs::read_dir(dir_of(path)) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(CANDIDATE_PREFIX) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => log::info!("removed {}, left by an earlier proxymgr", entry.path().display()),
                Err(e) => log::warn!("cannot remove {}: {e}", entry.path().display()),
            }
        }
    }
}

/// `text` in a new file beside `path`, ready to be renamed over it once synced.
fn candidate(path: &Path, text: &str) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = dir_of(path);
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::Builder::new().prefix(CANDIDATE_PREFIX).tempfile_in(dir)?;
    file.write_all(text.as_bytes())?;
    // Readable like any other file in /etc; the admin socket, not this file, is what needs guarding.
    file.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
    Ok(file)
}

pub fn rejected_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".rejected");
    path.with_file_name(name)
}

/// Why `--check` failed: the keys of proxymgr.yml whose sections HAProxy complains of (`haproxy.frontends.web`;
/// all the head's when its complaint names no line), and its complaint.
#[derive(Debug)]
pub struct HeadRejected {
    pub keys: String,
    pub reason: String,
}

/// `proxymgr --check`: whether HAProxy accepts the head `config` renders to (global, defaults, the frontends and
/// the extra sections); HAProxy's complaint when it does not. The frontends are checked on loopback listeners
/// of the kernel's choosing with empty maps, as their own addresses may be taken by the HAProxy serving now.
pub fn check_head(
    config: &crate::config::HaproxyConfig,
    binary: &process::Binary,
) -> Result<(), HeadRejected> {
    let io = |reason: String| HeadRejected { keys: "haproxy".into(), reason };
    check_head_text(config, binary)
        .map_err(io)?
        .map_err(|(text, path, reason)| HeadRejected { keys: blame(config, &text, &path, &reason), reason })
}

/// The head checked: Err for what kept it from being checked, Ok(Err) with the text, its file and HAProxy's
/// complaint when HAProxy rejects it.
#[allow(clippy::type_complexity)]
fn check_head_text(
    config: &crate::config::HaproxyConfig,
    binary: &process::Binary,
) -> Result<Result<(), (String, PathBuf, String)>, String> {
    let maps = tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let mut config = config.clone();
    config.map_dir = Some(maps.path().to_path_buf());
    let mut listeners = Vec::new();
    let mut fds = std::collections::BTreeMap::new();
    for name in config.frontends.keys() {
        std::fs::write(config.map_path(name), "").map_err(|e| format!("cannot write an empty map: {e}"))?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("cannot bind a loopback listener to check frontend {name} on: {e}"))?;
        fds.insert(name.clone(), std::os::fd::AsRawFd::as_raw_fd(&listener));
        listeners.push(listener);
    }
    let text = render::Renderer::default().head(&config, &Capabilities::of_binary(binary), &fds);
    let fds: Vec<_> = fds.into_values().collect();
    let file = tempfile::Builder::new()
        .prefix("proxymgr-check.")
        .suffix(".cfg")
        .tempfile()
        .and_then(|mut file| file.write_all(text.as_bytes()).map(|()| file))
        .map_err(|e| format!("cannot write a temporary file: {e}"))?;
    Ok(binary.check(file.path(), &fds).map_err(|e| (text, file.path().to_path_buf(), e.to_string())))
}

/// The keys of proxymgr.yml whose rendered sections hold the lines of `text` (written as `path`) that HAProxy's
/// `reason` names (`[<path>:<line>]`), one for each, in the order named; every key of the head when it names
/// none.
fn blame(config: &crate::config::HaproxyConfig, text: &str, path: &Path, reason: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let key_of = |number: usize| {
        let header = lines[..number.min(lines.len())]
            .iter()
            .rev()
            .find(|l| !l.is_empty() && !l.starts_with([' ', '#']))?;
        let mut words = header.split_whitespace();
        Some(match (words.next(), words.next()) {
            (Some("global"), _) => "haproxy.global".to_string(),
            (Some("defaults"), _) => "haproxy.defaults".to_string(),
            (Some("frontend"), Some(name)) if name == crate::config::EXPORTER_NAME => {
                "haproxy.prometheus_exporter".to_string()
            }
            (Some("frontend"), Some(name)) if config.frontends.contains_key(name) => {
                format!("haproxy.frontends.{name}")
            }
            _ => format!("haproxy.extra_sections.{header:?}"),
        })
    };
    let marker = format!("[{}:", path.display());
    let mut keys: Vec<String> = Vec::new();
    for (at, _) in reason.match_indices(&marker) {
        let rest = &reason[at + marker.len()..];
        let number = rest.split(']').next().and_then(|n| n.parse().ok());
        if let Some(key) = number.and_then(key_of) {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    if keys.is_empty() {
        return "haproxy.global/haproxy.defaults/haproxy.frontends/haproxy.extra_sections".into();
    }
    keys.join(", ")
}

/// Creates the directory of the stats socket when it is missing (HAProxy does not, and fails to start).
pub fn prepare_socket_dir(socket: &Path) -> std::io::Result<()> {
    match socket.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HaproxyConfig;
    use crate::service::{Server, ServiceSpec, WatcherSpec};
    use listeners::Listeners;
    use process::Binary;
    use render::Renderer;
    use std::os::fd::RawFd;

    /// The real HAProxy, or None (the test skips, or fails under `make test`, which sets PROXYMGR_TEST_REQUIRE).
    fn haproxy() -> Option<Binary> {
        match Binary::locate(Path::new("haproxy")) {
            Ok(binary) => Some(binary),
            Err(e) if std::env::var("PROXYMGR_TEST_REQUIRE").as_deref() == Ok("1") => panic!("{e}"),
            Err(e) => {
                eprintln!("skipping: {e}");
                None
            }
        }
    }

    fn spec(port: u16, listen_options: &[&str]) -> ServiceSpec {
        ServiceSpec {
            port: Some(port),
            listen_options: listen_options.iter().map(|s| s.to_string()).collect(),
            server_options: vec!["check".into(), "inter 2000".into(), "weight 10".into()],
            watcher: WatcherSpec::Zookeeper { server: "127.0.0.1:2181".into(), path: "/s".into() },
            ..ServiceSpec::example()
        }
    }

    fn render(listeners: &mut Listeners, services: &[(&str, ServiceSpec)]) -> (String, Vec<RawFd>) {
        let renderer = Renderer::default();
        let config = HaproxyConfig {
            socket_path: "/tmp/proxymgr-test.sock".into(),
            global: vec!["maxconn 100".into()],
            defaults: ["mode http", "timeout connect 1s", "timeout client 1s", "timeout server 1s"]
                .map(String::from)
                .to_vec(),
            ..HaproxyConfig::default()
        };
        let servers = [Server::new("127.0.0.1", 9001).unwrap(), Server::new("::1", 9002).unwrap()];
        let caps = Capabilities::of((2, 6));
        let mut text = renderer.head(&config, &caps, &std::collections::BTreeMap::new());
        let mut fds = Vec::new();
        for (name, spec) in services {
            // The kernel picks the port as the socket binds: two tests running at once cannot share it.
            let (_, fd) = listeners.open_any("127.0.0.1".parse().unwrap()).unwrap();
            text.push_str(&renderer.listen(name, Some(fd), spec, &config, &caps));
            text.push_str(&renderer.servers(spec, &servers, &config.defaults, &caps, None));
            fds.push(fd);
        }
        (text, fds)
    }

    #[test]
    fn rendered_configs_pass_haproxy_check_with_their_fds() {
        let Some(binary) = haproxy() else { return };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        let mut listeners = Listeners::default();
        let services = [
            ("web", spec(0, &["mode http", "balance roundrobin", "option httpchk GET /health"])),
            ("tcp", spec(0, &["mode tcp", "balance leastconn"])),
            ("bare", spec(0, &[])),
        ];
        let (text, fds) = render(&mut listeners, &services);
        let candidate = Candidate::write(&path, &text).unwrap();
        binary.check(candidate.path(), &fds).unwrap();
        candidate.accept().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        // Without its fds the same file is refused: the check is only worth something with them.
        assert!(binary.check(&path, &[]).is_err());
    }

    /// The exporter's frontend, after the defaults proxymgr.yml gives by default, passes `haproxy -c` without
    /// a warning, on a HAProxy built with the exporter.
    #[test]
    fn the_prometheus_exporter_frontend_passes_haproxy_check() {
        let Some(binary) = haproxy() else { return };
        let vv = std::process::Command::new(&binary.path).arg("-vv").output().unwrap();
        if !String::from_utf8_lossy(&vv.stdout).contains("prometheus-exporter") {
            eprintln!("skipping: {} is built without the Prometheus exporter", binary.path.display());
            return;
        }
        let config = HaproxyConfig {
            socket_path: "/tmp/proxymgr-test.sock".into(),
            global: vec!["maxconn 100".into()],
            prometheus_exporter: Some(([127, 0, 0, 1], 8405).into()),
            ..HaproxyConfig::default()
        };
        let text = Renderer::default().head(&config, &Capabilities::of_binary(&binary), &Default::default());
        assert!(text.contains("frontend proxymgr-prometheus"), "{text}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, &text).unwrap();
        let output =
            std::process::Command::new(&binary.path).arg("-c").arg("-f").arg(&path).output().unwrap();
        let said = String::from_utf8_lossy(&output.stderr) + String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{said}");
        assert!(!said.contains("[WARNING]") && !said.contains("[ALERT]"), "{said}");
    }

    #[test]
    fn the_config_writer_keeps_the_order_it_was_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        let (events, _inbox) = crossbeam_channel::unbounded();
        let writer = ConfigWriter::start(events);
        writer.write(vec![(path.clone(), "a".into())]);
        writer.write(vec![(path.clone(), "b".into())]);
        writer.accept(Candidate::write(&path, "c").unwrap());
        writer.flush(std::time::Duration::from_secs(5));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "c", "the accepted candidate came last");
        writer.accept(Candidate::write(&path, "d").unwrap());
        writer.write(vec![(path.clone(), "e".into())]);
        writer.flush(std::time::Duration::from_secs(5));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "e");

        // A candidate a killed proxymgr left behind is removed at the next start; nothing else is.
        let stale = Candidate::write(&path, "f").unwrap();
        let stale_path = stale.path().to_path_buf();
        std::mem::forget(stale);
        remove_stale_candidates(&path);
        assert!(!stale_path.exists());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "e");
    }

    #[test]
    fn a_rejected_config_is_kept_aside_and_never_installed() {
        let Some(binary) = haproxy() else { return };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        let mut listeners = Listeners::default();
        let (good, _) = render(&mut listeners, &[("web", spec(0, &["mode http"]))]);
        Candidate::write(&path, &good).unwrap().accept().unwrap();
        let (bad, fds) = render(&mut listeners, &[("web", spec(0, &["mode http", "no-such-option on"]))]);
        let candidate = Candidate::write(&path, &bad).unwrap();
        let reason = binary.check(candidate.path(), &fds).unwrap_err();
        assert!(matches!(reason, process::ProcessError::Rejected { .. }), "{reason}");
        let err = candidate.reject(&reason.to_string()).to_string();
        let kept = rejected_path(&path);
        assert!(err.contains(&format!("kept as {}", kept.display())), "{err}");
        assert!(err.contains("no-such-option"), "HAProxy's reason is in the error: {err}");
        assert!(
            err.contains(&format!("{}:", kept.display())),
            "the line reference names the kept file: {err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), good, "the good config stays");
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), bad);
    }
}
