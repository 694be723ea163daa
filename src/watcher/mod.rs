//! Watchers find the servers of one service and send the whole current server set whenever it changes
//! (level-triggered); the reconciler starts one per service and stops it by dropping its [`Watcher`] handle.
//! `dns` and `file` watchers are a blocking thread each; the ZooKeeper ones (`zookeeper`, `campanjazk`) are
//! trees on their session's one follower thread (`zk`), so a thousand services do not cost a thousand threads.

mod dns;
mod file;
mod zookeeper;

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

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

/// What keeps a watcher or a registry source going; dropping it stops it: a thread at its next wake-up (it is
/// not joined, so one blocked on a slow source never holds up the reconciler), a ZooKeeper tree at once on its
/// session's follower thread.
#[allow(dead_code)] // held only to be dropped
pub enum Lifeline {
    Thread(Sender<()>),
    Zookeeper(zk::Following),
    /// Nothing runs: it could not start, and said why.
    None,
}

/// A running watcher; dropping it stops it.
pub struct Watcher {
    _lifeline: Lifeline,
}

/// How a watcher reports: the whole sorted, de-duplicated set, and only when it changed. The set it last sent
/// is shared with the reconciler, not copied.
pub struct Report {
    service: String,
    generation: u64,
    events: Sender<Event>,
    last: Option<Arc<Vec<Server>>>,
}

impl Report {
    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn send(&mut self, mut servers: Vec<Server>) {
        // One server per name: two entries for the same address and port are one HAProxy server.
        servers.sort();
        servers.dedup_by(|a, b| a.address == b.address && a.port == b.port);
        if self.last.as_deref() == Some(&servers) {
            return;
        }
        servers.shrink_to_fit();
        let servers = Arc::new(servers);
        self.last = Some(servers.clone());
        let _ = self.events.send(Event::Servers {
            service: self.service.clone(),
            generation: self.generation,
            servers,
        });
    }
}

pub fn start(service: &str, spec: &WatcherSpec, generation: u64, context: &Context) -> Watcher {
    let report =
        Report { service: service.to_string(), generation, events: context.events.clone(), last: None };
    let tree = |server: &str, path: &str, children, report| {
        zookeeper::follow(&context.sessions, server, path, children, report)
            .map_or(Lifeline::None, Lifeline::Zookeeper)
    };
    let lifeline = match spec.clone() {
        WatcherSpec::Zookeeper { server, path } => tree(&server, &path, zookeeper::Children::Servers, report),
        WatcherSpec::Campanjazk { server, path, port } => {
            tree(&server, &path, zookeeper::Children::Hosts { port }, report)
        }
        WatcherSpec::Dns { backends, interval } => {
            thread(service, context, move |stop| dns::run(backends, interval, report, stop))
        }
        WatcherSpec::File { file, interval } => {
            thread(service, context, move |stop| file::run(file, interval, report, stop))
        }
    };
    Watcher { _lifeline: lifeline }
}

/// A watcher of its own thread, which ends when its stop channel fires or is dropped.
fn thread(service: &str, context: &Context, body: impl FnOnce(Receiver<()>) + Send + 'static) -> Lifeline {
    let (stop_tx, stop) = crossbeam_channel::bounded(0);
    threads::spawn(format!("watch:{service}"), context.events.clone(), move || body(stop));
    Lifeline::Thread(stop_tx)
}
