//! Watchers find the servers of one service. Each is a blocking thread that sends the whole current server set
//! whenever it changes (level-triggered); the reconciler starts one per service and stops it by dropping its
//! [`Watcher`] handle.
//!
//! The ZooKeeper watchers (`zookeeper`, `campanjazk`) live in `zk::watcher` so that all ZooKeeper code stays in
//! one module; `dns` and `file` are here.

mod dns;
mod file;

use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::event::Event;
use crate::service::{Server, WatcherSpec};
use crate::threads;
use crate::zk;

/// What every watcher needs from the daemon.
#[derive(Clone)]
pub struct Context {
    pub events: Sender<Event>,
    pub sessions: Arc<zk::Sessions>,
}

/// A running watcher; dropping it stops the thread (at its next wake-up; it is not joined, so a watcher blocked
/// on a slow registry never holds up the reconciler).
pub struct Watcher {
    _stop: Sender<()>,
    pub generation: u64,
}

/// How a watcher thread reports: the whole sorted, de-duplicated set, and only when it changed.
pub struct Report {
    service: String,
    generation: u64,
    events: Sender<Event>,
    last: Option<Vec<Server>>,
}

impl Report {
    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn send(&mut self, mut servers: Vec<Server>) {
        // One server per name: two entries for the same address and port are one HAProxy server.
        servers.sort();
        servers.dedup_by(|a, b| a.name() == b.name());
        if self.last.as_ref() == Some(&servers) {
            return;
        }
        self.last = Some(servers.clone());
        let _ = self.events.send(Event::Servers {
            service: self.service.clone(),
            generation: self.generation,
            servers,
        });
    }
}

pub fn start(service: &str, spec: &WatcherSpec, generation: u64, context: &Context) -> Watcher {
    let (stop_tx, stop) = crossbeam_channel::bounded(0);
    let report =
        Report { service: service.to_string(), generation, events: context.events.clone(), last: None };
    let name = format!("watch:{service}");
    let events = context.events.clone();
    match spec.clone() {
        WatcherSpec::Zookeeper { server, path } => {
            let sessions = context.sessions.clone();
            threads::spawn(name, events, move || {
                zk::watcher::run(sessions, &server, &path, zk::watcher::Children::Servers, report, stop)
            });
        }
        WatcherSpec::Campanjazk { server, path, port } => {
            let sessions = context.sessions.clone();
            threads::spawn(name, events, move || {
                zk::watcher::run(
                    sessions,
                    &server,
                    &path,
                    zk::watcher::Children::Hosts { port },
                    report,
                    stop,
                )
            });
        }
        WatcherSpec::Dns { backends, interval } => {
            threads::spawn(name, events, move || dns::run(backends, interval, report, stop));
        }
        WatcherSpec::File { file, interval } => {
            threads::spawn(name, events, move || file::run(file, interval, report, stop));
        }
    }
    Watcher { _stop: stop_tx, generation }
}
