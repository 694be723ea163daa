//! The executor: the one thing that drives HAProxy. It owns the binary, the processes, the listening sockets,
//! the admin socket, the candidate config and the writers of haproxy.cfg and of the state file, and carries out
//! what the reconciler's core decided, one typed method per kind of action, each returning what happened. It
//! decides nothing itself.
//!
//! **Architecture Invariant:** this is the only module that knows more than one of {processes, admin socket,
//! config files}; the core above it knows none of them, only what they reported.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::os::fd::{OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::command::Command;
use super::listeners::ListenerError;
use super::listeners::Listeners;
use super::process::{describe, Binary, Generations, ProcessError, Processes};
use super::runtime::{Runtime, RuntimeError, ServerStatus};
use super::{Candidate, ConfigWriter, InstallError};
use crate::config::HaproxyConfig;
use crate::event::Event;
use crate::state::{self, Snapshot, State};

/// Why a new HAProxy did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartFailure {
    /// The candidate config could not be written: HAProxy keeps its running config.
    #[error("{0}")]
    Write(InstallError),
    /// The process could not be started (`source` is a `NotAListener` for an fd proxymgr does not hold):
    /// tried again with backoff.
    #[error("cannot start {path}: {source}")]
    Spawn { path: PathBuf, source: std::io::Error },
}

/// Why a hand-over could not be made: without the pids in the state file the next proxymgr would not find the
/// HAProxy left serving, and two would serve side by side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandOverFailure {
    #[error("cannot write the state file {path}: {reason}")]
    StateFile { path: PathBuf, reason: String },
}

/// The serving (or starting) process ended.
pub struct Exit {
    pub pid: u32,
    pub how: String,
    pub ran: Duration,
}

pub struct Instance {
    binary: Binary,
    haproxy: HaproxyConfig,
    listeners: Listeners,
    processes: Processes,
    runtime: Runtime,
    /// The config the process started last runs on, with the fds it was given, until it is accepted or rejected.
    candidate: Option<(Candidate, Vec<RawFd>)>,
    config_writer: ConfigWriter,
    state_writer: state::Writer,
    /// The live processes as last reported to the core.
    reported: Generations,
}

impl Instance {
    /// Takes over the HAProxy processes in `saved_pids` that still run (left by a proxymgr that died): the first
    /// start replaces them with `-sf`.
    pub fn new(
        binary: Binary,
        haproxy: HaproxyConfig,
        saved_pids: &[u32],
        handed: Vec<OwnedFd>,
        events: Sender<Event>,
    ) -> Instance {
        let mut listeners = Listeners::default();
        listeners.adopt(handed);
        let mut processes = Processes::default();
        let orphans: Vec<u32> = saved_pids.iter().copied().filter(|&pid| state::is_haproxy(pid)).collect();
        if !orphans.is_empty() {
            log::warn!("taking over haproxy {orphans:?}, left running by an earlier proxymgr");
            processes.adopt(orphans);
        }
        super::remove_stale_candidates(&haproxy.config_path);
        Instance {
            runtime: Runtime::new(&haproxy.socket_path),
            binary,
            haproxy,
            listeners,
            processes,
            candidate: None,
            config_writer: ConfigWriter::start(events.clone()),
            state_writer: state::Writer::start(events),
            reported: Generations::default(),
        }
    }

    /// The HAProxy binary at `path` (a file, or a name on PATH), if it is one proxymgr can run.
    pub fn locate(path: &std::path::Path) -> Result<Binary, ProcessError> {
        Binary::locate(path)
    }

    /// From now on: this binary, these paths (SIGHUP).
    pub fn reconfigure(&mut self, binary: Binary, haproxy: HaproxyConfig) {
        if haproxy.socket_path != self.haproxy.socket_path {
            self.runtime = Runtime::new(&haproxy.socket_path);
        }
        self.binary = binary;
        self.haproxy = haproxy;
    }

    /// Binds a listener on each address (once: a bound address keeps its socket across reloads).
    pub fn bind(&mut self, addresses: &[SocketAddr]) -> Vec<(SocketAddr, Result<RawFd, ListenerError>)> {
        addresses.iter().map(|&at| (at, self.listeners.open(at))).collect()
    }

    pub fn close_listeners_but(&mut self, keep: &BTreeSet<SocketAddr>) {
        self.listeners.retain(|at| keep.contains(&at));
    }

    /// Writes `text` as a candidate beside haproxy.cfg and starts a HAProxy on it with `fds`, telling every live
    /// one to finish (`-sf`) once it serves. `why` is for the log.
    pub fn start(
        &mut self,
        text: &str,
        fds: Vec<RawFd>,
        maps: &[(PathBuf, String)],
        why: &str,
    ) -> Result<u32, StartFailure> {
        // The maps the candidate names are read as it starts: they are the new process's, and the serving one
        // has its own in memory.
        for (path, text) in maps {
            if let Err(e) = super::write(path, text) {
                log::error!("{e}; HAProxy keeps its running config");
                return Err(StartFailure::Write(e));
            }
        }
        let candidate = match Candidate::write(&self.haproxy.config_path, text) {
            Ok(candidate) => candidate,
            Err(e) => {
                log::error!("{e}; HAProxy keeps its running config");
                return Err(StartFailure::Write(e));
            }
        };
        let socket = &self.haproxy.socket_path;
        if let Err(e) = super::prepare_socket_dir(socket) {
            log::error!("cannot create the directory of haproxy.socket_path {}: {e}", socket.display());
        }
        if let Err(e) = self.listeners.listen_all() {
            log::error!("{e}");
        }
        let old = self.processes.pids();
        let started = match self.listeners.check_held(&fds) {
            Ok(()) => self.processes.start(&self.binary, candidate.path(), &fds),
            Err(e) => Err(std::io::Error::other(e)),
        };
        if started.is_ok() {
            self.listeners.drop_unclaimed();
        }
        match started {
            Ok(pid) if old.is_empty() => log::info!("haproxy[{pid}] started ({why})"),
            Ok(pid) => log::info!("haproxy[{pid}] started, replacing {old:?} ({why})"),
            Err(source) => {
                let failure = StartFailure::Spawn { path: self.binary.path.clone(), source };
                log::error!("{failure}");
                return Err(failure);
            }
        }
        self.runtime.reconnect();
        self.candidate = Some((candidate, fds));
        Ok(self.processes.pids()[0])
    }

    /// The pid that answers on the admin socket. The kept connection is dropped unless `pid` answered: it may
    /// reach an older process.
    pub fn serving_pid(&mut self, pid: u32) -> Result<u32, RuntimeError> {
        let result = self.runtime.serving_pid();
        if result.as_ref().ok() != Some(&pid) {
            self.runtime.reconnect();
        }
        result
    }

    /// Reaps what ended; the serving (or starting) process, if it was among them.
    pub fn reap(&mut self) -> Option<Exit> {
        let exited = self.processes.reap()?;
        let how = exited.status.map(describe).unwrap_or_else(|| "status unknown".into());
        Some(Exit { pid: exited.pid, how, ran: exited.ran })
    }

    /// The live processes by generation, when they changed since this was last asked (a start, a reap, a
    /// rejected candidate whose predecessor serves on).
    pub fn generations_changed(&mut self) -> Option<Generations> {
        let now = self.processes.generations();
        (now != self.reported).then(|| {
            self.reported = now.clone();
            now
        })
    }

    /// Stops these older generations at once (HAProxy's hard stop), cutting their connections.
    pub fn hard_stop(&mut self, pids: &[u32]) {
        self.processes.hard_stop(pids);
    }

    /// `haproxy -c` on the candidate with its fds (without them `bind fd@N` fails).
    pub fn check(&mut self) -> Result<(), ProcessError> {
        let Some((candidate, fds)) = &self.candidate else { return Ok(()) };
        self.binary.check(candidate.path(), fds)
    }

    /// The candidate becomes haproxy.cfg (through the writer, in order with the rewrites).
    pub fn accept(&mut self) {
        if let Some((candidate, _)) = self.candidate.take() {
            self.config_writer.accept(candidate);
        }
    }

    /// HAProxy rejects the candidate for `reason`: it is kept aside, and the process it was to replace serves on.
    pub fn reject(&mut self, reason: &str) {
        if let Some((candidate, _)) = self.candidate.take() {
            match candidate.reject(reason) {
                e @ InstallError::Rejected { .. } => {
                    log::error!("{e}; HAProxy keeps its running config until the next change")
                }
                e @ InstallError::Write { .. } => log::error!("{e}; HAProxy keeps its running config"),
            }
        }
        self.processes.restore();
    }

    /// Sends `commands` in order, up to the first that fails.
    pub fn run(&mut self, commands: &[Command]) -> Result<(), Box<(Command, RuntimeError)>> {
        for command in commands {
            let started = Instant::now();
            match self.runtime.run(command) {
                Ok(()) => log::info!("haproxy: {command} ({} µs)", started.elapsed().as_micros()),
                Err(e) => return Err(Box::new((command.clone(), e))),
            }
        }
        Ok(())
    }

    pub fn servers_state(&mut self, backend: &str) -> Result<BTreeMap<String, ServerStatus>, RuntimeError> {
        self.runtime.servers_state(backend)
    }

    /// Rewrites haproxy.cfg with runtime changes HAProxy accepted (unchecked: its skeleton was).
    pub fn write_config(&mut self, text: String, maps: Vec<(PathBuf, String)>) {
        let mut files = maps;
        files.push((self.haproxy.config_path.clone(), text));
        self.config_writer.write(files);
    }

    /// Hands the state file's writer a snapshot with the live pids; false while it still writes the last one.
    pub fn save_state(&mut self, path: PathBuf, snapshot: Snapshot) -> bool {
        self.state_writer.save(&path, State::of(self.processes.pids(), snapshot))
    }

    /// A shared frontend's map as HAProxy has it, key to backend.
    pub fn map_entries(&mut self, map: &str) -> Result<BTreeMap<String, String>, RuntimeError> {
        self.runtime.map_entries(map)
    }

    /// Leaves every HAProxy serving for the next proxymgr: the state file names them (written here and now, after
    /// the writer's last snapshot, so that no older one lands after it), and a keeper holds the listeners for
    /// the next proxymgr (`handover.rs`). Without the state file the next proxymgr could not find them: that
    /// is the one failure. A keeper that cannot start only costs the sockets: the next proxymgr binds anew.
    pub fn hand_over(&mut self, state_file: &Path, snapshot: Snapshot) -> Result<(), HandOverFailure> {
        self.config_writer.flush(Duration::from_secs(2));
        self.state_writer.flush(Duration::from_secs(10));
        let pids = self.processes.pids();
        let state = State::of(pids.clone(), snapshot);
        state.save(state_file).map_err(|e| HandOverFailure::StateFile {
            path: state_file.to_path_buf(),
            reason: e.to_string(),
        })?;
        let fds = self.listeners.fds();
        let socket = super::handover::socket_path(state_file);
        if fds.is_empty() {
            log::info!("handing over: no listener to keep; haproxy {pids:?} serves on");
            return Ok(());
        }
        match super::handover::park(&socket, &fds) {
            Ok(keeper) => log::info!(
                "handing over: haproxy {pids:?} serves on, named in {}; {} listeners wait for the next proxymgr at {} (keeper pid {keeper}, up to {:?})",
                state_file.display(),
                fds.len(),
                socket.display(),
                super::handover::KEEPER_WAIT
            ),
            Err(e) => log::warn!(
                "{e}; handing over without the listeners: haproxy {pids:?} serves on, and the next proxymgr binds anew beside it"
            ),
        }
        Ok(())
    }

    /// Stops every HAProxy gracefully (up to `timeout`); then, with `save`, writes the state file a last time.
    pub fn stop(&mut self, timeout: Duration, save: Option<(PathBuf, Snapshot)>) {
        self.config_writer.flush(Duration::from_secs(2));
        // A soft-stopping HAProxy waits for every session to end, the admin socket's included.
        self.runtime.reconnect();
        log::info!("stopping haproxy {:?} (soft stop, up to {timeout:?})", self.processes.pids());
        self.processes.stop(timeout);
        if let Some((path, snapshot)) = save {
            self.state_writer.flush(Duration::from_secs(10));
            // The pids go, as nothing runs any more.
            state::save_logged(&State::of(self.processes.pids(), snapshot), &path);
        }
    }
}
