//! The state file: what proxymgr last served (every service's spec and servers) and the HAProxy processes it
//! ran. Written atomically whenever that changes (at most once a second for server churn). Read at start:
//! - while the registry does not answer, the saved services are served, so a restart during a registry outage
//!   does not take the load balancer down;
//! - a saved HAProxy that still runs was left by a proxymgr that died (kill -9): the first HAProxy this
//!   proxymgr starts takes over from it with `-sf`, so two generations never stay side by side.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};

use serde::{Deserialize, Serialize};

use crate::service::{Server, ServiceSpec};

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub haproxy_pids: Vec<u32>,
    pub services: BTreeMap<String, SavedService>,
    /// Each shared frontend's routes, key to service: a key two services claim stays with the one that had it
    /// across a restart. (A state file written before routes has none.)
    #[serde(default)]
    pub routes: SavedRoutes,
}

/// Routes by frontend, each key (`host/path`) to its service. Only read to tell who had a key: never rendered.
pub type SavedRoutes = BTreeMap<String, BTreeMap<String, String>>;

/// What the reconciler saves: its services and its routes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub services: BTreeMap<String, SavedService>,
    pub routes: SavedRoutes,
}

impl State {
    /// The state file for `snapshot`, with the HAProxy processes alive.
    pub fn of(haproxy_pids: Vec<u32>, snapshot: Snapshot) -> State {
        State { haproxy_pids, services: snapshot.services, routes: snapshot.routes }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedService {
    pub spec: ServiceSpec,
    /// Shared with the reconciler: a snapshot costs a reference count, not a copy of every server.
    pub servers: Arc<Vec<Server>>,
}

impl State {
    /// The saved state; None when there is none. A file that does not parse is reported and ignored.
    pub fn load(path: &Path) -> Option<State> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                log::warn!("state_file {}: cannot read: {e}; starting without it", path.display());
                return None;
            }
        };
        match serde_json::from_slice::<State>(&text) {
            Ok(mut state) => {
                // Checked as the registry's are: nothing unchecked reaches haproxy.cfg.
                state.services.retain(|name, saved| {
                    match crate::service::check_saved(&saved.spec, &saved.servers) {
                        Ok(()) => true,
                        Err(e) => {
                            log::warn!("state_file {}: service {name}: {e}; left out", path.display());
                            false
                        }
                    }
                });
                Some(state)
            }
            Err(e) => {
                log::warn!("state_file {}: {e}; starting without it", path.display());
                None
            }
        }
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let file = tempfile::Builder::new().prefix(".state.").tempfile_in(dir)?;
        // Buffered: serde_json writes a token at a time, and unbuffered that is a system call per token (1.5
        // million for 50k servers). Streamed: the whole text (3 MB there) is never in memory.
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, file);
        serde_json::to_writer(&mut out, self)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.as_file().sync_all()?;
        file.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// Writes state files on a thread of its own, so that the reconciler never waits on serialising and syncing a
/// few megabytes. It takes one snapshot at a time; `save` says false while it is busy with the last one.
pub struct Writer {
    /// None when the thread could not be created.
    snapshots: Option<Sender<Job>>,
}

enum Job {
    Save(PathBuf, State),
    /// Answered once every snapshot handed over before it is written.
    Flush(Sender<()>),
}

/// Writes `state` to `path`, logging a failure: nothing the caller could do about it.
pub fn save_logged(state: &State, path: &Path) {
    if let Err(e) = state.save(path) {
        log::error!("state_file {}: cannot write: {e}", path.display());
    }
}

impl Writer {
    pub fn start(events: Sender<crate::event::Event>) -> Writer {
        let (snapshots, inbox) = crossbeam_channel::bounded::<Job>(1);
        let spawned = crate::threads::spawn("state-file".into(), events, move || {
            for job in inbox {
                match job {
                    Job::Save(path, state) => save_logged(&state, &path),
                    Job::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        // Without its thread the reconciler writes the file itself: slower, but nothing is lost.
        Writer { snapshots: spawned.map(|_| snapshots) }
    }

    /// Hands `state` to the writer; false when it is still writing the previous one (try again later).
    pub fn save(&self, path: &Path, state: State) -> bool {
        let Some(snapshots) = &self.snapshots else {
            save_logged(&state, path);
            return true;
        };
        match snapshots.try_send(Job::Save(path.to_path_buf(), state)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => false,
            Err(TrySendError::Disconnected(_)) => {
                log::error!("state_file {}: its writer thread is gone", path.display());
                true
            }
        }
    }

    /// Waits (up to `timeout`) until the snapshot handed over last is written: before a write of the caller's
    /// own, so that no older one lands after it.
    pub fn flush(&self, timeout: std::time::Duration) {
        let Some(snapshots) = &self.snapshots else { return };
        let (done, wait) = crossbeam_channel::bounded(1);
        let deadline = std::time::Instant::now() + timeout;
        if snapshots.send_deadline(Job::Flush(done), deadline).is_ok() {
            let _ = wait.recv_deadline(deadline);
        }
    }
}

/// The lock that makes one proxymgr the owner of a state file, and so of the HAProxy it names: held for the
/// process's life on `<state_file>.lock` (an `flock`, which the kernel drops when the process ends however it
/// ends, so a killed proxymgr leaves nothing to clean up), with the owner's pid in the file for the message a
/// second one gives. The descriptor is close-on-exec: HAProxy does not inherit the lock.
pub struct Owner {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

#[derive(Debug, thiserror::Error)]
pub enum OwnError {
    #[error(
        "another proxymgr{} owns {state} (it holds {lock}); only one may run on a state file and its HAProxy",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        state = state.display(),
        lock = lock.display()
    )]
    Taken { state: PathBuf, lock: PathBuf, pid: Option<u32> },
    #[error("cannot lock {}: {source}", lock.display())]
    Io { lock: PathBuf, source: std::io::Error },
}

/// Takes the ownership of `state_file`, or says who has it.
pub fn own(state_file: &Path) -> Result<Owner, OwnError> {
    use std::io::{Read, Seek, Write};
    let lock = beside(state_file, ".lock");
    let io = |source| OwnError::Io { lock: lock.clone(), source };
    if let Some(dir) = lock.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&lock);
    let file = file.map_err(io)?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(mut held) => {
            held.set_len(0).map_err(io)?;
            held.rewind().map_err(io)?;
            writeln!(held, "{}", std::process::id()).map_err(io)?;
            Ok(Owner { _lock: held })
        }
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut text = String::new();
            let pid = file.read_to_string(&mut text).ok().and_then(|_| text.trim().parse().ok());
            Err(OwnError::Taken { state: state_file.to_path_buf(), lock, pid })
        }
        Err((_, errno)) => Err(io(std::io::Error::from(errno))),
    }
}

/// A path beside the state file, named after it: `<state_file><suffix>` (its lock, its hand-over socket).
pub fn beside(state_file: &Path, suffix: &str) -> PathBuf {
    let mut path = state_file.as_os_str().to_owned();
    path.push(suffix);
    PathBuf::from(path)
}

/// Whether `pid` is a live HAProxy: a saved pid may have been reused by anything since.
pub fn is_haproxy(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "haproxy")
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.rsplit(") ").next().is_some_and(|rest| !rest.starts_with('Z')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::WatcherSpec;
    use std::time::Duration;

    #[test]
    fn one_owner_of_a_state_file_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        let first = own(&path).expect("the first owns it");
        match own(&path) {
            Err(OwnError::Taken { pid, lock, .. }) => {
                assert_eq!(pid, Some(std::process::id()), "the message names the owner");
                assert_eq!(lock, dir.path().join("sub/state.json.lock"));
            }
            other => panic!("a second owner: {:?}", other.map(|_| ())),
        }
        drop(first);
        assert!(own(&path).is_ok(), "once the first is gone, the next owns it");
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        assert_eq!(State::load(&path), None);
        let spec = ServiceSpec {
            port: Some(80),
            listen_options: vec!["mode http".into()],
            server_options: vec![],
            watcher: WatcherSpec::File { file: "/etc/s".into(), interval: Duration::from_millis(1500) },
            ..ServiceSpec::example()
        };
        let server = Server { weight: Some(3), ..Server::new("10.0.0.1", 80).unwrap() };
        let state = State {
            haproxy_pids: vec![42],
            services: [("web".to_string(), SavedService { spec, servers: Arc::new(vec![server]) })].into(),
            routes: [("https".to_string(), [("a.test/".to_string(), "web".to_string())].into())].into(),
        };
        state.save(&path).unwrap();
        assert_eq!(State::load(&path).as_ref(), Some(&state));
        // A service whose options could leave their section (written by hand, or by an older proxymgr) is left
        // out; the rest loads.
        let mut hostile = state.clone();
        let mut evil = hostile.services["web"].clone();
        evil.spec.listen_options.push("global".into());
        hostile.services.insert("evil".into(), evil);
        let mut bad_server = hostile.services["web"].clone();
        bad_server.servers = Arc::new(vec![Server {
            options: vec!["check; shutdown sessions".into()],
            ..Server::new("10.0.0.2", 80).unwrap()
        }]);
        hostile.services.insert("bad-server".into(), bad_server);
        hostile.save(&path).unwrap();
        assert_eq!(State::load(&path), Some(state));
        std::fs::write(&path, "{not json").unwrap();
        assert_eq!(State::load(&path), None, "a broken file is ignored");
    }

    #[test]
    fn only_live_haproxy_processes_count() {
        assert!(!is_haproxy(std::process::id()), "the test runner is no HAProxy");
        assert!(!is_haproxy(u32::MAX));
    }
}
