//! Everything that speaks ZooKeeper: the shared sessions and the trees they follow. Nothing outside this
//! module names the `zookeeper` crate, so the client could be swapped for another without touching the rest
//! (DESIGN.md §4: the crate is unmaintained and pulls in mio 0.6). What a tree's children mean is its owner's
//! business (`registry::zookeeper`, `watcher::zookeeper`): they follow a tree through [`Owner`], and this
//! module knows nothing of services or servers.
//!
//! One session per distinct ensemble string is shared by the registry and every watcher that names it (the
//! original opened one per watcher), and one thread per session, its follower, keeps every [`Tree`] on it
//! current: a tree is the children of one path and their data, followed through a persistent recursive watch.
//! A watch event names the node that changed, and the follower reads that node alone and tells the tree's
//! owners. Whole trees are read (at the start, after a reconnect, for a new client) by a few helper threads
//! at once, because the crate's calls block and only parallel callers keep the connection busy. The follower
//! re-arms the watches and re-reads everything after a reconnect, because the crate re-registers no watch on
//! its own.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{never, select, Receiver, Sender};
use zookeeper::{AddWatchMode, WatchedEvent, WatchedEventType, WatcherType, ZkError, ZkState, ZooKeeper};

use crate::event::Event;
use crate::threads;

/// The session timeout we ask for; ZooKeeper clamps it to 2..20 × its tickTime.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How many trees are read at once when many need a whole read. The crate's calls block, so this is how many
/// requests are in flight: enough to keep ZooKeeper busy (1000 trees of 50 nodes in about a second on the
/// test machine), few enough to cost nothing when idle (the helpers exist only while they read).
const PARALLEL_READS: usize = 32;

#[derive(Debug, thiserror::Error)]
#[error("zookeeper {ensemble}: {what}: {source:?}")]
pub struct Error {
    ensemble: String,
    what: String,
    source: ZkError,
}

/// Something that follows a tree: told the whole current set of children after the first read and after
/// every change (it tells itself whether that differs from what it last saw). Called on the session's
/// follower thread or one of its helpers, so it must not block.
pub trait Owner: Send + 'static {
    fn changed(&mut self, tree: &Tree);
}

impl<F: FnMut(&Tree) + Send + 'static> Owner for F {
    fn changed(&mut self, tree: &Tree) {
        self(tree)
    }
}

/// The sessions of this process, one per ensemble string, each with its follower thread.
pub struct Sessions {
    /// For the follower threads: a follower that panics stops the daemon (see `threads`).
    events: Sender<Event>,
    sessions: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    pub fn new(events: Sender<Event>) -> Sessions {
        Sessions { events, sessions: Mutex::default() }
    }

    /// The session for `ensemble`, connecting on first use. Connecting does not wait for the server; reads made
    /// before it answers wait for it.
    pub fn get(&self, ensemble: &str) -> Result<Session, Error> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(session) = sessions.get(ensemble) {
            return Ok(session.clone());
        }
        let (inbox_tx, inbox) = crossbeam_channel::unbounded();
        let link = Arc::new(Mutex::new(Link::Starting(Instant::now())));
        let client = new_client(ensemble, 0, &inbox_tx, &link)?;
        let follower = Follower {
            ensemble: ensemble.to_string(),
            generation: 0,
            client: Arc::new(client),
            link,
            inbox,
            inbox_tx: inbox_tx.clone(),
            trees: BTreeMap::new(),
            roots: HashMap::new(),
            failing: None,
            backoff: MIN_BACKOFF,
        };
        threads::spawn(format!("zk:{ensemble}"), self.events.clone(), move || follower.run());
        let session = Session { inbox: inbox_tx, next_id: Arc::default() };
        sessions.insert(ensemble.to_string(), session.clone());
        Ok(session)
    }
}

/// A handle on one session's follower.
#[derive(Clone)]
pub struct Session {
    inbox: Sender<Message>,
    next_id: Arc<AtomicU64>,
}

impl Session {
    /// Has the follower keep the children of `root` current and tell `owner` of them, until the returned
    /// handle is dropped.
    pub fn follow(&self, root: &str, owner: impl Owner) -> Following {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let _ = self.inbox.send(Message::Follow { id, root: root.to_string(), owner: Box::new(owner) });
        Following { id, inbox: self.inbox.clone() }
    }
}

/// Keeps an owner following its tree; dropping it stops that (the owner is dropped on the follower thread).
pub struct Following {
    id: u64,
    inbox: Sender<Message>,
}

impl Drop for Following {
    fn drop(&mut self) {
        let _ = self.inbox.send(Message::Unfollow { id: self.id });
    }
}

/// What a follower hears: a node changed (from a watch), the connection of client `generation` came back and
/// everything must be re-read, that client's session expired, or an owner starts or stops following.
enum Message {
    Changed { path: String, deleted: bool },
    Reconnected { generation: u64 },
    Expired { generation: u64 },
    Follow { id: u64, root: String, owner: Box<dyn Owner> },
    Unfollow { id: u64 },
}

#[derive(Debug, Clone, Copy)]
enum Link {
    /// Not connected yet, since then.
    Starting(Instant),
    Up,
    /// Lost since then.
    Down(Instant),
}

/// A client for `ensemble` whose state changes reach the follower's inbox, and are logged once per outage.
fn new_client(
    ensemble: &str,
    generation: u64,
    inbox: &Sender<Message>,
    link: &Arc<Mutex<Link>>,
) -> Result<ZooKeeper, Error> {
    let client = ZooKeeper::connect(ensemble, SESSION_TIMEOUT, |_: WatchedEvent| {}).map_err(|source| {
        Error { ensemble: ensemble.to_string(), what: "cannot parse or resolve".into(), source }
    })?;
    let (inbox, link, name) = (inbox.clone(), link.clone(), ensemble.to_string());
    // (the state this client was last in, whether it was ever connected)
    let previous = Mutex::new((ZkState::Connecting, false));
    client.add_listener(move |state| {
        let (previous, was_connected) = &mut *previous.lock().unwrap_or_else(|e| e.into_inner());
        log::debug!("zookeeper {name}: {state:?}");
        let mut link = link.lock().unwrap_or_else(|e| e.into_inner());
        match (state, *link) {
            // The crate keeps the session across a dropped connection but re-registers no watch: the follower
            // must re-arm them and re-read. This runs on the crate's I/O thread, which must not block on a
            // call of its own. A client's first connection needs nothing of the sort.
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
                if *was_connected {
                    let _ = inbox.send(Message::Reconnected { generation });
                }
                *was_connected = true;
            }
            (ZkState::Closed, _) => {
                if let Link::Up = *link {
                    *link = Link::Down(Instant::now());
                }
                log::warn!("zookeeper {name}: session closed; starting a new one, serving the last known state meanwhile");
                let _ = inbox.send(Message::Expired { generation });
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

/// Closing an expired client can wait on the network; nobody needs to wait for it.
fn close_in_background(client: Arc<ZooKeeper>) {
    let _ = std::thread::Builder::new().name("zk-close".into()).spawn(move || {
        if let Err(e) = client.close() {
            log::debug!("closing an old zookeeper client: {e:?}");
        }
    });
}

/// The thread of one session: owns its client (and renews it), every tree on it and their owners.
struct Follower {
    ensemble: String,
    /// The client and its generation, which goes up with every renewal.
    generation: u64,
    client: Arc<ZooKeeper>,
    /// The connection's state across clients, for logging an outage once with its length.
    link: Arc<Mutex<Link>>,
    inbox: Receiver<Message>,
    inbox_tx: Sender<Message>,
    /// By root path: one tree per path, however many owners follow it.
    trees: BTreeMap<String, Followed>,
    /// Owner id -> the root it follows.
    roots: HashMap<u64, String>,
    /// Since when reads fail, on which client.
    failing: Option<(Instant, u64)>,
    backoff: Duration,
}

/// One tree and what the follower knows of its watch.
struct Followed {
    tree: Tree,
    owners: Vec<(u64, Box<dyn Owner>)>,
    /// Whether the watch is armed on the current connection.
    armed: bool,
    /// Whether a callback of ours may be registered with the current client for this root. The crate keeps
    /// every callback it was given until `remove_watches`, so one is removed before the watch is armed again.
    registered: bool,
}

impl Followed {
    fn needs_work(&self) -> bool {
        !self.armed || self.tree.stale || self.tree.changed
    }

    /// Arms the watch if it is not, brings the tree up to date, and tells its owners.
    fn work(&mut self, client: &ZooKeeper, inbox: &Sender<Message>, ensemble: &str) -> Result<(), Error> {
        let error = |what: String, source| Error { ensemble: ensemble.to_string(), what, source };
        let root = self.tree.root.as_str();
        if !self.armed {
            if self.registered {
                // Answered or not, this drops the crate's copy of our earlier callback.
                let _ = client.remove_watches(root, WatcherType::Any);
            }
            let inbox = inbox.clone();
            let watch = move |event: WatchedEvent| {
                if let Some(path) = event.path {
                    let deleted = event.event_type == WatchedEventType::NodeDeleted;
                    let _ = inbox.send(Message::Changed { path, deleted });
                }
            };
            // The crate registers the callback whatever the server answers.
            self.registered = true;
            client
                .add_watch(root, AddWatchMode::PersistentRecursive, watch)
                .map_err(|e| error(format!("watch {root}"), e))?;
            self.armed = true;
            self.tree.stale = true;
        }
        self.tree.sync(client).map_err(|(what, e)| error(what, e))?;
        for (_, owner) in &mut self.owners {
            owner.changed(&self.tree);
        }
        self.tree.changed = false;
        Ok(())
    }
}

impl Follower {
    fn run(mut self) {
        loop {
            self.work();
            let retry = match self.failing {
                Some(_) => crossbeam_channel::after(self.backoff),
                None => never(),
            };
            select! {
                recv(self.inbox) -> message => match message {
                    Ok(message) => self.note(message),
                    Err(_) => return,
                },
                recv(retry) -> _ => self.backoff = (self.backoff * 2).min(MAX_BACKOFF),
            }
            // A burst of changes becomes one read of each changed node and one report per tree.
            while let Ok(message) = self.inbox.try_recv() {
                self.note(message);
            }
        }
    }

    fn note(&mut self, message: Message) {
        match message {
            Message::Changed { path, deleted } => {
                if let Some(followed) = self.trees.get_mut(&path) {
                    // The root itself was created, deleted or changed: list it again.
                    followed.tree.stale = true;
                } else if let Some((parent, name)) = path.rsplit_once('/') {
                    let parent = if parent.is_empty() { "/" } else { parent };
                    if let Some(followed) = self.trees.get_mut(parent) {
                        followed.tree.note(name, deleted);
                    }
                }
            }
            Message::Reconnected { generation } if generation == self.generation => {
                for followed in self.trees.values_mut() {
                    followed.armed = false;
                    followed.tree.stale = true;
                }
            }
            Message::Reconnected { .. } => {}
            Message::Expired { generation } => self.renew(generation),
            Message::Follow { id, root, mut owner } => {
                self.roots.insert(id, root.clone());
                let followed = self.trees.entry(root.clone()).or_insert_with(|| Followed {
                    tree: Tree::new(root),
                    owners: Vec::new(),
                    armed: false,
                    registered: false,
                });
                // A tree already read is told at once; else with everyone after its read.
                if !followed.needs_work() {
                    owner.changed(&followed.tree);
                }
                followed.owners.push((id, owner));
            }
            Message::Unfollow { id } => {
                let Some(root) = self.roots.remove(&id) else { return };
                let Some(followed) = self.trees.get_mut(&root) else { return };
                followed.owners.retain(|(owner, _)| *owner != id);
                if followed.owners.is_empty() {
                    // The server keeps one watch per path and session: it goes with the last owner.
                    let registered = followed.registered;
                    self.trees.remove(&root);
                    if registered {
                        if let Err(e) = self.client.remove_watches(&root, WatcherType::Any) {
                            log::debug!("zookeeper {}: remove watch on {root}: {e:?}", self.ensemble);
                        }
                    }
                }
            }
        }
    }

    /// Brings every tree that needs it up to date. Many at once (a start, a reconnect) are shared out to up to
    /// PARALLEL_READS threads; until every read works again the last known children stand: nothing is
    /// reported, nothing removed.
    fn work(&mut self) {
        let mut due: Vec<&mut Followed> = self.trees.values_mut().filter(|f| f.needs_work()).collect();
        if due.is_empty() {
            return;
        }
        let generation = self.generation;
        let (client, inbox, ensemble) = (&*self.client, &self.inbox_tx, self.ensemble.as_str());
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        let helpers = due.len().min(PARALLEL_READS) - 1;
        let queue = Mutex::new(due.iter_mut());
        let read = || loop {
            let Some(followed) = queue.lock().unwrap_or_else(|e| e.into_inner()).next() else { return };
            if let Err(e) = followed.work(client, inbox, ensemble) {
                first_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
            }
        };
        std::thread::scope(|scope| {
            for _ in 0..helpers {
                // A helper that cannot be created leaves its share to the others.
                let _ = std::thread::Builder::new().name("zk-read".into()).spawn_scoped(scope, read);
            }
            read();
        });
        let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) else {
            self.failing = None;
            self.backoff = MIN_BACKOFF;
            return;
        };
        // A client that fails for longer than a session lasts while it says it is connected is as good as
        // dead even if it never says so (the crate reconnects in a hot loop to a server that lost its data).
        let (since, _) = *self.failing.get_or_insert((Instant::now(), generation));
        let connected = matches!(*self.link.lock().unwrap_or_else(|e| e.into_inner()), Link::Up);
        if since.elapsed() > SESSION_TIMEOUT && connected {
            log::warn!("{e}; failing for {:.0?}, starting a new session", since.elapsed());
            self.renew(generation);
        } else {
            log::debug!("{e}; retrying in {:?}", self.backoff);
        }
    }

    /// Replaces client `generation` with a new one (the crate cannot revive an expired session, nor one whose
    /// server lost its data). Every tree is armed and read again on it.
    fn renew(&mut self, generation: u64) {
        if generation != self.generation {
            return;
        }
        match new_client(&self.ensemble, generation + 1, &self.inbox_tx, &self.link) {
            Ok(client) => {
                log::info!("zookeeper {}: new client (generation {})", self.ensemble, generation + 1);
                self.generation = generation + 1;
                close_in_background(std::mem::replace(&mut self.client, Arc::new(client)));
                self.failing = None;
                for followed in self.trees.values_mut() {
                    followed.armed = false;
                    followed.registered = false;
                    followed.tree.stale = true;
                }
            }
            Err(e) => log::error!("{e}"),
        }
    }
}

/// The children of one path and their data, as last read.
pub struct Tree {
    root: String,
    /// Child name -> data, as last read.
    children: BTreeMap<String, Vec<u8>>,
    /// Children to read at the next sync: created or changed since the last.
    pending: BTreeSet<String>,
    /// Whether the root existed at the last listing.
    root_exists: bool,
    /// Set for a new tree, a reconnect or a change of the root itself: the next sync lists the root again
    /// and re-reads every child.
    stale: bool,
    /// Whether anything happened since the owners were last told (a deleted child needs no read, but they
    /// must hear of it).
    changed: bool,
}

impl Tree {
    fn new(root: String) -> Tree {
        Tree {
            root,
            children: BTreeMap::new(),
            pending: BTreeSet::new(),
            root_exists: false,
            stale: true,
            changed: true,
        }
    }

    pub fn path_of(&self, child: &str) -> String {
        if self.root == "/" {
            format!("/{child}")
        } else {
            format!("{}/{child}", self.root)
        }
    }

    pub fn children(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.children
    }

    /// Whether the root node exists. A root that vanished (deleted by mistake, or a server that lost its data)
    /// says nothing about the services or servers, so its owners keep what they have.
    pub fn root_exists(&self) -> bool {
        self.root_exists
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    /// A watch event for child `name`.
    fn note(&mut self, name: &str, deleted: bool) {
        self.changed = true;
        if deleted {
            self.children.remove(name);
            self.pending.remove(name);
        } else {
            self.pending.insert(name.to_string());
        }
    }

    /// Brings `children` up to date; on failure, what failed.
    fn sync(&mut self, client: &ZooKeeper) -> Result<(), (String, ZkError)> {
        if self.stale {
            let (names, exists) = match client.get_children(&self.root, false) {
                Ok(names) => (names, true),
                // A root that does not exist yet has no children; its creation fires the watch.
                Err(ZkError::NoNode) => (Vec::new(), false),
                Err(e) => return Err((format!("list {}", self.root), e)),
            };
            let names: BTreeSet<String> = names.into_iter().collect();
            self.root_exists = exists;
            self.children.retain(|name, _| names.contains(name));
            self.pending = names;
            self.stale = false;
        }
        if self.pending.len() >= PARALLEL_READS * 8 {
            // A large tree read alone (the registry's thousand services) is read by helpers too.
            return self.read_in_parallel(client);
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
                    return Err((format!("read {path}"), e));
                }
            }
        }
        Ok(())
    }

    /// Reads every pending child, PARALLEL_READS at a time.
    fn read_in_parallel(&mut self, client: &ZooKeeper) -> Result<(), (String, ZkError)> {
        let names: Vec<String> = std::mem::take(&mut self.pending).into_iter().collect();
        let chunks: Vec<&[String]> = names.chunks(names.len().div_ceil(PARALLEL_READS)).collect();
        let tree = &*self;
        let read = |chunk: &[String]| -> Vec<_> {
            chunk
                .iter()
                .map(|name| client.get_data(&tree.path_of(name), false).map(|(data, _)| data))
                .collect()
        };
        let results: Vec<Vec<_>> = std::thread::scope(|scope| {
            let helpers: Vec<_> = chunks[1..]
                .iter()
                .map(|&chunk| {
                    std::thread::Builder::new()
                        .name("zk-read".into())
                        .spawn_scoped(scope, move || read(chunk))
                })
                .collect();
            let mut results = vec![read(chunks[0])];
            // A helper that could not be created leaves its chunk to this thread.
            for (helper, &chunk) in helpers.into_iter().zip(&chunks[1..]) {
                results.push(match helper.map(|h| h.join()) {
                    Ok(Ok(result)) => result,
                    Ok(Err(panic)) => std::panic::resume_unwind(panic),
                    Err(_) => read(chunk),
                });
            }
            results
        });
        let mut failure = None;
        for (name, result) in names.into_iter().zip(results.into_iter().flatten()) {
            match result {
                Ok(data) => {
                    self.children.insert(name, data);
                }
                Err(ZkError::NoNode) => {
                    self.children.remove(&name);
                }
                Err(e) => {
                    failure.get_or_insert_with(|| (format!("read {}", self.path_of(&name)), e));
                    self.pending.insert(name);
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }
}
