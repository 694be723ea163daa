//! Everything that speaks ZooKeeper: the shared sessions, the `service_config` registry and the `zookeeper`
//! watcher. Nothing outside this module names the `zookeeper` crate, so the client could be swapped for another
//! without touching the rest (DESIGN.md §4: the crate is unmaintained and pulls in mio 0.6).
//!
//! One [`Session`] per distinct ensemble string is shared by the registry and every watcher that names it (the
//! original opened one per watcher). A [`Tree`] follows the children of one path through a persistent recursive
//! watch and keeps their data; it re-arms the watch and re-reads everything after a reconnect, because the crate
//! re-registers no watch on its own.

pub mod registry;
pub mod watcher;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};
use zookeeper::{AddWatchMode, WatchedEvent, WatchedEventType, ZkError, ZkState, ZooKeeper};

/// The session timeout we ask for; ZooKeeper clamps it to 2..20 × its tickTime.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[error("zookeeper {ensemble}: {what}: {source:?}")]
pub struct Error {
    ensemble: String,
    what: String,
    source: ZkError,
}

/// The sessions of this process, one per ensemble string.
#[derive(Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

impl Sessions {
    /// The session for `ensemble`, connecting on first use. Connecting does not wait for the server; calls made
    /// before it answers wait for it.
    pub fn get(&self, ensemble: &str) -> Result<Arc<Session>, Error> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(session) = sessions.get(ensemble) {
            return Ok(session.clone());
        }
        let session = Arc::new(Session::connect(ensemble)?);
        sessions.insert(ensemble.to_string(), session.clone());
        Ok(session)
    }
}

/// What a [`Tree`] hears: a node below its root changed, the connection came back and everything must be
/// re-read, or the session of client `generation` expired and a new client is needed.
#[derive(Debug, Clone)]
enum Tick {
    Changed { path: String, deleted: bool },
    Reconnected,
    Expired { generation: u64 },
}

/// One ZooKeeper session, shared by every tree on its ensemble, and renewed with a new client when it expires
/// or stops working.
pub struct Session {
    ensemble: String,
    /// The client and its generation, which goes up with every renewal.
    client: RwLock<(u64, Arc<ZooKeeper>)>,
    /// Every live tree's tick channel, told of reconnects and expiry.
    subscribers: Arc<Mutex<Vec<Sender<Tick>>>>,
    /// How many live trees follow each root.
    roots: Mutex<HashMap<String, usize>>,
    /// The connection's state across clients, for logging an outage once with its length.
    link: Arc<Mutex<Link>>,
}

#[derive(Debug, Clone, Copy)]
enum Link {
    /// Not connected yet, since then.
    Starting(Instant),
    Up,
    /// Lost since then.
    Down(Instant),
}

impl Session {
    fn connect(ensemble: &str) -> Result<Session, Error> {
        let (subscribers, link) = (Arc::default(), Arc::new(Mutex::new(Link::Starting(Instant::now()))));
        let client = Self::new_client(ensemble, 0, &subscribers, &link)?;
        Ok(Session {
            ensemble: ensemble.to_string(),
            client: RwLock::new((0, Arc::new(client))),
            subscribers,
            roots: Mutex::default(),
            link,
        })
    }

    fn new_client(
        ensemble: &str,
        generation: u64,
        subscribers: &Arc<Mutex<Vec<Sender<Tick>>>>,
        link: &Arc<Mutex<Link>>,
    ) -> Result<ZooKeeper, Error> {
        let client =
            ZooKeeper::connect(ensemble, SESSION_TIMEOUT, |_: WatchedEvent| {}).map_err(|source| Error {
                ensemble: ensemble.to_string(),
                what: "cannot parse or resolve".into(),
                source,
            })?;
        let (to_tell, link, name) = (subscribers.clone(), link.clone(), ensemble.to_string());
        let previous = Mutex::new(ZkState::Connecting);
        client.add_listener(move |state| {
            let mut previous = previous.lock().unwrap_or_else(|e| e.into_inner());
            log::debug!("zookeeper {name}: {state:?}");
            let tell = |tick: Tick| {
                to_tell.lock().unwrap_or_else(|e| e.into_inner()).retain(|tx| tx.send(tick.clone()).is_ok());
            };
            let mut link = link.lock().unwrap_or_else(|e| e.into_inner());
            match (state, *link) {
                // The crate keeps the session across a dropped connection but re-registers no watch: every tree
                // must re-arm its watch and re-read. This runs on the crate's I/O thread, which must not block on
                // a call of its own, so the trees do the work on their threads.
                (ZkState::Connected, _) if *previous != ZkState::Connected => {
                    match *link {
                        Link::Starting(since) => {
                            log::info!("zookeeper {name}: connected after {:.1}s", since.elapsed().as_secs_f64())
                        }
                        Link::Down(since) => {
                            log::info!("zookeeper {name}: connected again after an outage of {:.1}s", since.elapsed().as_secs_f64())
                        }
                        Link::Up => {}
                    }
                    *link = Link::Up;
                    tell(Tick::Reconnected);
                }
                (ZkState::Closed, _) => {
                    if let Link::Up = *link {
                        *link = Link::Down(Instant::now());
                    }
                    log::warn!("zookeeper {name}: session closed; starting a new one, serving the last known state meanwhile");
                    tell(Tick::Expired { generation });
                }
                (ZkState::Connecting, Link::Up) => {
                    *link = Link::Down(Instant::now());
                    log::warn!("zookeeper {name}: connection lost; serving the last known state until it is back");
                }
                _ => {}
            }
            *previous = state;
        });
        Ok(client)
    }

    /// The current client and its generation.
    fn client(&self) -> (u64, Arc<ZooKeeper>) {
        let guard = self.client.read().unwrap_or_else(|e| e.into_inner());
        (guard.0, guard.1.clone())
    }

    /// Whether the client last said it is connected. Calls failing while it does mean a client that no longer
    /// works; while it says it is connecting, it is doing its job and is left to it.
    fn says_connected(&self) -> bool {
        matches!(*self.link.lock().unwrap_or_else(|e| e.into_inner()), Link::Up)
    }

    /// Replaces client `generation` with a new one (the crate cannot revive an expired session, nor one whose
    /// server lost its data). A later generation means another tree did it already.
    fn renew(&self, generation: u64) {
        let mut guard = self.client.write().unwrap_or_else(|e| e.into_inner());
        if guard.0 != generation {
            return;
        }
        match Self::new_client(&self.ensemble, generation + 1, &self.subscribers, &self.link) {
            Ok(client) => {
                log::info!("zookeeper {}: new client (generation {})", self.ensemble, generation + 1);
                let old = std::mem::replace(&mut *guard, (generation + 1, Arc::new(client)));
                close_in_background(old.1);
            }
            Err(e) => log::error!("{e}"),
        }
    }

    fn error(&self, what: impl Into<String>, source: ZkError) -> Error {
        Error { ensemble: self.ensemble.clone(), what: what.into(), source }
    }
}

/// Closing an expired client can wait on the network; nobody needs to wait for it.
fn close_in_background(client: Arc<ZooKeeper>) {
    let _ = std::thread::Builder::new().name("zk-close".into()).spawn(move || {
        if let Err(e) = client.close() {
            log::debug!("closing an old zookeeper client: {e:?}");
        }
    });
}

/// The children of one path and their data, kept current by a persistent recursive watch.
pub struct Tree {
    session: Arc<Session>,
    root: String,
    ticks: Receiver<Tick>,
    tick_tx: Sender<Tick>,
    /// Child name -> data, as last read.
    children: BTreeMap<String, Vec<u8>>,
    /// Children to read at the next sync: created or changed since the last.
    pending: BTreeSet<String>,
    armed: bool,
    /// Whether the root existed at the last listing.
    root_exists: bool,
    /// Set when a read failed or a reconnect happened: the next sync re-reads every child.
    stale: bool,
    backoff: Duration,
}

impl Tree {
    pub fn new(session: Arc<Session>, root: &str) -> Tree {
        let (tick_tx, ticks) = crossbeam_channel::unbounded();
        session.subscribers.lock().unwrap_or_else(|e| e.into_inner()).push(tick_tx.clone());
        *session.roots.lock().unwrap_or_else(|e| e.into_inner()).entry(root.to_string()).or_default() += 1;
        Tree {
            session,
            root: root.to_string(),
            ticks,
            tick_tx,
            children: BTreeMap::new(),
            pending: BTreeSet::new(),
            armed: false,
            root_exists: false,
            stale: true,
            backoff: Duration::from_millis(100),
        }
    }

    pub fn path_of(&self, child: &str) -> String {
        if self.root == "/" {
            format!("/{child}")
        } else {
            format!("{}/{child}", self.root)
        }
    }

    /// Follows the tree until `stop` says so (or its sender is dropped), calling `on_change` with the whole
    /// current set of children after the first read and after every change (the caller tells whether it differs
    /// from what it last saw).
    pub fn follow(mut self, stop: &Receiver<()>, mut on_change: impl FnMut(&Tree)) {
        // Since when calls fail, and on which client: a client that fails for longer than a session lasts is
        // as good as dead even if it never says so (the crate reconnects in a hot loop to a server that lost
        // its data), and is replaced.
        let mut failing: Option<(Instant, u64)> = None;
        loop {
            let generation = self.session.client().0;
            match self.sync() {
                Ok(()) => {
                    self.backoff = Duration::from_millis(100);
                    failing = None;
                    on_change(&self);
                }
                Err(e) => {
                    // Until it works again the last known children stand: nothing is reported, nothing removed.
                    let (since, _) = *failing.get_or_insert((Instant::now(), generation));
                    if since.elapsed() > SESSION_TIMEOUT && self.session.says_connected() {
                        log::warn!("{e}; failing for {:.0?}, starting a new session", since.elapsed());
                        self.session.renew(generation);
                        failing = None;
                    } else {
                        log::debug!("{e}; retrying in {:?}", self.backoff);
                    }
                    select! {
                        recv(stop) -> _ => return,
                        recv(self.ticks) -> tick => if let Ok(tick) = tick { self.note(tick) },
                        recv(crossbeam_channel::after(self.backoff)) -> _ => {}
                    }
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
            select! {
                recv(stop) -> _ => return,
                recv(self.ticks) -> tick => if let Ok(tick) = tick { self.note(tick) },
            }
            // A burst of changes becomes one read of each changed node and one report.
            while let Ok(tick) = self.ticks.try_recv() {
                self.note(tick);
            }
        }
    }

    pub fn children(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.children
    }

    /// Whether the root node exists. A root that vanished (deleted by mistake, or a server that lost its data)
    /// says nothing about the services or servers, so its followers keep what they have.
    pub fn root_exists(&self) -> bool {
        self.root_exists
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    fn note(&mut self, tick: Tick) {
        match tick {
            Tick::Reconnected => {
                self.armed = false;
                self.stale = true;
            }
            Tick::Expired { generation } => {
                self.session.renew(generation);
                self.armed = false;
                self.stale = true;
            }
            Tick::Changed { path, deleted } => {
                if path == self.root {
                    self.stale = true;
                } else if let Some(name) = self.child_name(&path) {
                    if deleted {
                        self.children.remove(name);
                        self.pending.remove(name);
                    } else {
                        self.pending.insert(name.to_string());
                    }
                }
            }
        }
    }

    /// The name of a direct child of the root, or None for the root itself and deeper nodes.
    fn child_name<'a>(&self, path: &'a str) -> Option<&'a str> {
        let rest = if self.root == "/" {
            path.strip_prefix('/')?
        } else {
            path.strip_prefix(&self.root)?.strip_prefix('/')?
        };
        (!rest.is_empty() && !rest.contains('/')).then_some(rest)
    }

    /// Brings `children` up to date.
    fn sync(&mut self) -> Result<(), Error> {
        let (_, client) = self.session.client();
        if !self.armed {
            let tx = self.tick_tx.clone();
            let watch = move |event: WatchedEvent| {
                if let Some(path) = event.path {
                    let deleted = event.event_type == WatchedEventType::NodeDeleted;
                    let _ = tx.send(Tick::Changed { path, deleted });
                }
            };
            client
                .add_watch(&self.root, AddWatchMode::PersistentRecursive, watch)
                .map_err(|e| self.session.error(format!("watch {}", self.root), e))?;
            self.armed = true;
            self.stale = true;
        }
        if self.stale {
            let (names, exists) = match client.get_children(&self.root, false) {
                Ok(names) => (names, true),
                // A root that does not exist yet has no children; its creation fires the watch.
                Err(ZkError::NoNode) => (Vec::new(), false),
                Err(e) => return Err(self.session.error(format!("list {}", self.root), e)),
            };
            self.root_exists = exists;
            self.children.retain(|name, _| names.contains(name));
            self.pending = names.into_iter().collect();
            self.stale = false;
        }
        while let Some(name) = self.pending.pop_first() {
            let path = self.path_of(&name);
            match client.get_data(&path, false) {
                Ok((data, _)) => {
                    self.children.insert(name, data);
                }
                Err(ZkError::NoNode) => {
                    self.children.remove(&name);
                }
                Err(e) => {
                    self.pending.insert(name);
                    return Err(self.session.error(format!("read {path}"), e));
                }
            }
        }
        Ok(())
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        // The server keeps one persistent watch per path and session, shared by every tree on that path: remove
        // it only with the last of them. The crate keeps this tree's callback, whose sends now fail harmlessly.
        let mut roots = self.session.roots.lock().unwrap_or_else(|e| e.into_inner());
        let count = roots.entry(self.root.clone()).or_insert(1);
        *count -= 1;
        if *count == 0 {
            roots.remove(&self.root);
            drop(roots);
            if let Err(e) = self.session.client().1.remove_watches(&self.root, zookeeper::WatcherType::Any) {
                log::debug!("zookeeper {}: remove watch on {}: {e:?}", self.session.ensemble, self.root);
            }
        }
    }
}
