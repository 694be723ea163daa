//! What goes into the reconciler's core and what comes out of it. An [`Input`] is something that happened: an
//! event from another thread, or the outcome of an [`Action`] the core asked for. An `Action` is something to
//! do; the loop (`mod.rs`) hands it to whoever does it (the HAProxy executor, the registry and watchers) and
//! feeds the outcome straight back, before it asks the core for the next action.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, HaproxyConfig, ServiceConfigSource};
use crate::event::SessionNews;
use crate::haproxy::command::{Command, Refusal};
pub use crate::haproxy::instance::{HandOverFailure, StartFailure};
use crate::haproxy::listeners::ListenerError;
pub use crate::haproxy::process::Generations;
use crate::haproxy::process::{Binary, ProcessError};
use crate::haproxy::runtime::RuntimeError;
use crate::haproxy::runtime::ServerStatus;
use crate::plan::ReloadReason;
use crate::service::{Server, WatcherSpec};
use crate::state::Snapshot;

#[derive(Debug)]
pub enum Input {
    /// The registry's whole set of services (see `Event::Services`).
    Services {
        source: u64,
        services: BTreeMap<String, crate::service::ServiceSpec>,
    },
    /// A watcher's whole server set for one service (see `Event::Servers`).
    Servers {
        service: String,
        generation: u64,
        servers: Arc<Vec<Server>>,
    },
    /// News of a registry session (see `Event::Session`): only shown, never acted on.
    Session {
        ensemble: String,
        news: SessionNews,
    },
    /// SIGTERM or SIGINT.
    Terminate,
    /// SIGUSR2: hand HAProxy and the listeners over to the next proxymgr (a restart or an upgrade).
    HandOver,
    /// `Action::HandOver`'s outcome: the state file names every live HAProxy, or why it could not be written.
    HandedOver(Result<(), HandOverFailure>),
    /// SIGHUP: proxymgr.yml is to be read again.
    Hangup,
    /// SIGCHLD: some child changed state.
    Child,
    /// A supervised thread died.
    ThreadDied {
        thread: String,
        reason: String,
    },

    /// `Action::Bind`'s outcome: each port with its listener's fd, or why it cannot be bound.
    Bound(Vec<(SocketAddr, Result<RawFd, ListenerError>)>),
    /// `Action::ReadConfig`'s outcome (an unreadable file was logged, and changes nothing).
    ConfigRead(Box<(Config, Binary)>),
    /// `Action::Start`'s outcomes.
    Started {
        pid: u32,
    },
    StartFailed(StartFailure),
    /// `Action::AskServing`'s outcome: the pid that answers on the admin socket.
    Serving(Result<u32, RuntimeError>),
    /// `Action::Reap`'s outcome when the serving (or starting) process was among the dead.
    Exited {
        pid: u32,
        how: String,
        ran: Duration,
    },
    /// `Action::Check`'s outcome: whether `haproxy -c` accepts the candidate, else HAProxy's complaint.
    Checked(Result<(), ProcessError>),
    /// `Action::Run`'s outcome: every command went through, or the first that did not.
    Ran(Result<(), CommandFailure>),
    /// `Action::QueryMap`'s outcome: the map's entries, key to backend.
    MapEntries {
        frontend: String,
        result: Result<BTreeMap<String, String>, RuntimeError>,
    },
    /// `Action::QueryServers`' outcome.
    ServersState {
        backend: String,
        result: Result<BTreeMap<String, ServerStatus>, RuntimeError>,
    },
    /// `Action::SaveState`'s outcome: false while the writer is still busy with the last snapshot.
    StateSaved(bool),
    /// The live HAProxy processes changed (a start, a reap, a rejected candidate): the executor's word after
    /// the action that changed them.
    Generations(Generations),
}

/// A runtime command HAProxy did not carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandFailure {
    pub command: Command,
    /// None when the socket failed or the reply made no sense; HAProxy's refusal otherwise.
    pub refusal: Option<Refusal>,
    /// The error as the log shows it (HAProxy's own reply included).
    pub message: String,
}

impl From<Box<(Command, RuntimeError)>> for CommandFailure {
    fn from(failed: Box<(Command, RuntimeError)>) -> CommandFailure {
        let (command, error) = *failed;
        let refusal = match &error {
            RuntimeError::Refused { refusal, .. } => Some(refusal.clone()),
            RuntimeError::Io { .. } | RuntimeError::Garbled { .. } => None,
        };
        CommandFailure { command, refusal, message: error.to_string() }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Bind listeners (held across reloads) on these ports; answered by `Input::Bound`.
    Bind { addresses: Vec<SocketAddr> },
    /// Start (or restart, replacing the old one) a service's watcher.
    Watch { service: String, spec: WatcherSpec, generation: u64 },
    /// Stop a service's watcher.
    Unwatch { service: String },
    /// Follow a `service_config` source (replacing the one followed before).
    FollowSource { source: ServiceConfigSource, generation: u64 },
    /// Read proxymgr.yml again; answered by `Input::ConfigRead` when it is valid.
    ReadConfig,
    /// From now on run this HAProxy binary, with these paths.
    UseHaproxy { binary: Binary, haproxy: Box<HaproxyConfig> },
    /// One planned step's runtime commands, in order, stopping at the first failure; answered by `Input::Ran`.
    Run(Vec<Command>),
    /// `show servers state <backend>`; answered by `Input::ServersState`.
    QueryServers { backend: String },
    /// `show map <map>` of a shared frontend; answered by `Input::MapEntries`.
    QueryMap { frontend: String, map: String },
    /// Rewrite haproxy.cfg and the frontends' map files with changes HAProxy accepted at run time (unchecked;
    /// the skeleton was).
    WriteConfig { text: String, maps: Vec<(PathBuf, String)> },
    /// Write the frontends' `maps`, and `text` as a candidate beside haproxy.cfg, and start a HAProxy on it with
    /// `fds` and `-sf` every live one; answered by `Input::Started` or `Input::StartFailed`.
    Start { text: String, fds: Vec<RawFd>, maps: Vec<(PathBuf, String)>, reasons: Vec<ReloadReason> },
    /// Ask the socket which pid serves; answered by `Input::Serving`. Not `pid`: the kept connection reached an
    /// older process, so it is dropped.
    AskServing { pid: u32 },
    /// Reap what ended; answered by `Input::Exited` when the serving or starting process did.
    Reap,
    /// Stop these older generations at once (SIGTERM, HAProxy's hard stop), cutting their connections.
    HardStop { pids: Vec<u32> },
    /// `haproxy -c` on the candidate with its fds; answered by `Input::Checked`.
    Check,
    /// The candidate becomes haproxy.cfg.
    Accept,
    /// The candidate is kept aside as rejected, for `reason`; the process it was to replace serves on.
    Reject { reason: String },
    /// Close every listener but those on these ports.
    CloseListeners { keep: BTreeSet<SocketAddr> },
    /// Write the state file with these services and the live HAProxy pids; answered by `Input::StateSaved`.
    SaveState { path: PathBuf, snapshot: Snapshot },
    /// Stop every watcher and HAProxy (gracefully, up to `timeout`), then, with `save`, write the state file
    /// one last time. Nothing follows.
    Stop { timeout: Duration, save: Option<(PathBuf, Snapshot)> },
    /// Leave every HAProxy serving for the next proxymgr: write the state file with these services and the live
    /// pids (at once, and only once the writer has finished the last snapshot), then hand the listeners to a
    /// keeper that waits for the next proxymgr beside the state file. Answered by `Input::HandedOver`; on
    /// success nothing follows.
    HandOver { state_file: PathBuf, snapshot: Snapshot },
    /// Show this status from now on (`/status`, `/metrics`, the page); nothing answers.
    Publish(Arc<crate::status::Status>),
}
