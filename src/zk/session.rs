//! Sessions and their followers: one session per distinct ensemble string, shared by the registry and every
//! watcher that names it (the original opened one per watcher), and one thread per session, its follower,
//! which owns the client and renews it, hears the watch events and state changes, and makes the calls its
//! trees' bookkeeping (`tree.rs`) asks for, many at once through `read.rs`. A session opens with the first
//! `Following` handle on it and closes with the last (a service removed, or its watcher pointed at another
//! ensemble), so a mistyped ensemble does not reconnect for ever.
//!
//! What the crate leaves to us (DESIGN.md §4): it re-registers no watch after a reconnect, so the follower
//! re-arms every watch and re-reads everything; an expired session (state `Closed`) never comes back, so the
//! follower builds a new client; and against a server that lost its data the crate reconnects in a hot loop
//! without a state change, so a client whose calls fail for longer than a session while it claims to be
//! connected is replaced too. An outage is logged once when it starts and once, with its length, when it ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{never, select, Receiver, Sender};
use zookeeper::{AddWatchMode, WatchedEvent, WatchedEventType, WatcherType, ZkError, ZkState, ZooKeeper};

use super::fault::Fault;
use super::read::{Readers, Stalled};
use super::tree::{path_of, Answer, Call, Note, Owner, Trees};
use super::Error;
use crate::backoff::Backoff;
use crate::event::{Event, SessionNews};
use crate::threads;

/// The session timeout we ask for; ZooKeeper clamps it to 2..20 × its tickTime.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// Between tries of calls that fail: soon after a blip, every 10 s at most while ZooKeeper is away.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
/// Between reads of nodes that could not be read for their own fault (an ACL made readable fires no watch).
const RECHECK: Duration = Duration::from_secs(30);

/// The sessions of this process, one per ensemble string, each with its follower thread.
pub struct Sessions {
    /// For the follower threads: a follower that panics stops the daemon (see `threads`).
    events: Sender<Event>,
    ledger: Arc<Mutex<Ledger<Session>>>,
}

impl Sessions {
    pub fn new(events: Sender<Event>) -> Sessions {
        Sessions { events, ledger: Arc::default() }
    }

    /// Has the session for `ensemble` (connecting on first use) keep the children of `root` current and tell
    /// `owner` of them, until the returned handle is dropped; the session closes with its last handle.
    /// Connecting does not wait for the server; reads made before it answers wait for it.
    pub fn follow(&self, ensemble: &str, root: &str, owner: impl Owner) -> Result<Following, Error> {
        // Under the lock, so that a session whose last handle is being dropped cannot be handed out: it is
        // either still counted (and stays open) or already forgotten (and a new one opens).
        let mut ledger = lock(&self.ledger);
        let session = ledger.follow(ensemble, || self.open(ensemble))?;
        let id = session.next_id.fetch_add(1, Ordering::Relaxed);
        let _ = session.inbox.send(Message::Follow { id, root: root.to_string(), owner: Box::new(owner) });
        Ok(Following { id, ensemble: ensemble.to_string(), session, ledger: self.ledger.clone() })
    }

    /// A new session for `ensemble`: its follower thread and its client.
    fn open(&self, ensemble: &str) -> Result<Session, Error> {
        // The thread before the client: a client that no thread owns would be closed here, on the caller's
        // thread, and closing can wait on the network. Without a client the thread ends at once.
        let (start, started) = crossbeam_channel::bounded::<Follower>(1);
        threads::spawn(format!("zk:{ensemble}"), self.events.clone(), move || {
            if let Ok(follower) = started.recv() {
                follower.run();
            }
        })
        .ok_or_else(|| Error::NoFollower { ensemble: ensemble.to_string() })?;
        let (inbox_tx, inbox) = crossbeam_channel::unbounded();
        let link = Arc::new(Mutex::new(Link::Starting(Instant::now())));
        let client = new_client(ensemble, 0, &inbox_tx, &link, &self.events)?;
        let _ = start.send(Follower {
            ensemble: ensemble.to_string(),
            events: self.events.clone(),
            generation: 0,
            readers: readers(&client.zk, &inbox_tx),
            unwatch: Vec::new(),
            client,
            link,
            inbox,
            inbox_tx: inbox_tx.clone(),
            trees: Trees::default(),
            failing: None,
            renew_due: false,
            backoff: BACKOFF,
            recheck_due: None,
            closing: false,
        });
        Ok(Session { inbox: inbox_tx, next_id: Arc::default() })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Which sessions are open and how many `Following` handles each has: a session opens with its first handle
/// and is forgotten with its last, to be closed; the next handle for that ensemble opens a new one. Apart from
/// the sessions so that it can be tested without them.
struct Ledger<S> {
    open: HashMap<String, (S, usize)>,
}

impl<S> Default for Ledger<S> {
    fn default() -> Ledger<S> {
        Ledger { open: HashMap::new() }
    }
}

impl<S: Clone + PartialEq> Ledger<S> {
    /// One handle more on the session for `ensemble`, opened with `open` if there is none.
    fn follow<E>(&mut self, ensemble: &str, open: impl FnOnce() -> Result<S, E>) -> Result<S, E> {
        if let Some((session, handles)) = self.open.get_mut(ensemble) {
            *handles += 1;
            return Ok(session.clone());
        }
        let session = open()?;
        self.open.insert(ensemble.to_string(), (session.clone(), 1));
        Ok(session)
    }

    /// One handle fewer on `session`, the session for `ensemble`. True when that was its last: it is forgotten,
    /// and the caller closes it.
    fn unfollow(&mut self, ensemble: &str, session: &S) -> bool {
        let Some((open, handles)) = self.open.get_mut(ensemble) else { return false };
        if open != session {
            return false;
        }
        *handles -= 1;
        if *handles > 0 {
            return false;
        }
        self.open.remove(ensemble);
        true
    }
}

/// A handle on one session's follower.
#[derive(Clone)]
struct Session {
    inbox: Sender<Message>,
    next_id: Arc<AtomicU64>,
}

impl PartialEq for Session {
    fn eq(&self, other: &Session) -> bool {
        self.inbox.same_channel(&other.inbox)
    }
}

/// Keeps an owner following its tree; dropping it stops that (the owner is dropped on the follower thread),
/// and closes the session if it was the session's last handle.
pub struct Following {
    id: u64,
    ensemble: String,
    session: Session,
    ledger: Arc<Mutex<Ledger<Session>>>,
}

impl Drop for Following {
    fn drop(&mut self) {
        let _ = self.session.inbox.send(Message::Unfollow { id: self.id });
        if lock(&self.ledger).unfollow(&self.ensemble, &self.session) {
            let _ = self.session.inbox.send(Message::Close);
        }
    }
}

/// What a follower hears: a node changed (from a watch), the connection of client `generation` came back and
/// everything must be re-read, that client's session expired, an owner starts or stops following, or the
/// session's last handle is gone.
enum Message {
    Changed { path: String, deleted: bool },
    Reconnected { generation: u64 },
    Expired { generation: u64 },
    Follow { id: u64, root: String, owner: Box<dyn Owner> },
    Unfollow { id: u64 },
    Close,
}

#[derive(Debug, Clone, Copy)]
enum Link {
    /// Not connected yet, since then.
    Starting(Instant),
    Up,
    /// Lost since then.
    Down(Instant),
}

/// A client, and what its listener has seen of it.
struct Client {
    zk: Arc<ZooKeeper>,
    seen: Arc<Mutex<Seen>>,
}

impl Client {
    /// The follower is done with this client: its listener says nothing more (its next state changes are those
    /// of its closing, news to nobody), not even a change it is hearing right now, which ends first.
    fn retire(self) -> Arc<ZooKeeper> {
        lock(&self.seen).retired = true;
        self.zk
    }

    /// A round of calls on this client just worked, so it is connected. True when its listener never heard so:
    /// the crate connects on a thread of its own that can be connected before `new_client` registers the
    /// listener, whose first `Connected` is then lost. It is noted now as the listener would have (under the
    /// same locks, taken in the same order), so that the next reconnect re-arms the watches and the next loss
    /// is an outage.
    fn connected_unheard(&self, ensemble: &str, link: &Mutex<Link>) -> bool {
        let seen = &mut *lock(&self.seen);
        if seen.retired || seen.connected {
            return false;
        }
        seen.connected = true;
        seen.state = ZkState::Connected;
        let mut link = lock(link);
        if let Link::Starting(since) | Link::Down(since) = *link {
            let took = since.elapsed().as_secs_f64();
            log::info!("zookeeper {ensemble}: connected after {took:.1}s (seen by its calls)");
        }
        *link = Link::Up;
        true
    }
}

/// What a client's listener has seen: the state it was last in, whether it was ever connected, and whether the
/// follower is done with it.
struct Seen {
    state: ZkState,
    connected: bool,
    retired: bool,
}

/// A client for `ensemble` whose state changes reach the follower's inbox, and are logged once per outage.
fn new_client(
    ensemble: &str,
    generation: u64,
    inbox: &Sender<Message>,
    link: &Arc<Mutex<Link>>,
    events: &Sender<Event>,
) -> Result<Client, Error> {
    let zk = ZooKeeper::connect(ensemble, SESSION_TIMEOUT, |_: WatchedEvent| {})
        .map_err(|source| Error::Connect { ensemble: ensemble.to_string(), source })?;
    let (inbox, link, name) = (inbox.clone(), link.clone(), ensemble.to_string());
    let events = events.clone();
    let tell = move |name: &str, news| {
        let _ = events.send(Event::Session { ensemble: name.to_string(), news });
    };
    let seen = Arc::new(Mutex::new(Seen { state: ZkState::Connecting, connected: false, retired: false }));
    let listener_seen = seen.clone();
    zk.add_listener(move |state| {
        // Held until the listener returns: `Client::retire` waits for a change being heard.
        let seen = &mut *lock(&listener_seen);
        if seen.retired {
            return;
        }
        log::debug!("zookeeper {name}: {state:?}");
        let mut link = lock(&link);
        match (state, *link) {
            // The crate keeps the session across a dropped connection but re-registers no watch: the follower
            // must re-arm them and re-read. This runs on the crate's I/O thread, which must not block on a
            // call of its own. A client's first connection needs nothing of the sort.
            (ZkState::Connected, _) if seen.state != ZkState::Connected => {
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
                tell(&name, SessionNews::Connected);
                if seen.connected {
                    let _ = inbox.send(Message::Reconnected { generation });
                }
                seen.connected = true;
            }
            (ZkState::Closed, _) => {
                if let Link::Up = *link {
                    *link = Link::Down(Instant::now());
                }
                tell(&name, SessionNews::Lost);
                log::warn!("zookeeper {name}: session closed; starting a new one, serving the last known state meanwhile");
                let _ = inbox.send(Message::Expired { generation });
            }
            (ZkState::Connecting, Link::Up) => {
                *link = Link::Down(Instant::now());
                tell(&name, SessionNews::Lost);
                log::warn!("zookeeper {name}: connection lost; serving the last known state until it is back");
            }
            _ => {}
        }
        seen.state = state;
    });
    Ok(Client { zk: Arc::new(zk), seen })
}

/// Closing an expired client can wait on the network; nobody needs to wait for it.
fn close_in_background(client: Arc<ZooKeeper>) {
    let closing = std::thread::Builder::new().name("zk-close".into()).spawn(move || {
        if let Err(e) = client.close() {
            log::debug!("closing an old zookeeper client: {e:?}");
        }
    });
    if let Err(e) = closing {
        // The thread's closure went with the failure, and the client with it: the crate closes a client it
        // drops, so the follower waited for that instead.
        log::warn!(
            "cannot create a thread to close an old zookeeper client ({e}); closed it on the follower's"
        );
    }
}

/// The readers that make `client`'s calls.
fn readers(client: &Arc<ZooKeeper>, inbox: &Sender<Message>) -> Readers<Call, Answer> {
    let (client, inbox) = (client.clone(), inbox.clone());
    Readers::new("zk-read", move |call| make(&client, &inbox, call))
}

/// Makes one call on `client`. Runs on one of its readers, never on the follower: a call may block for good.
fn make(client: &ZooKeeper, inbox: &Sender<Message>, call: Call) -> Answer {
    match call {
        Call::Watch { root, unregister } => {
            if unregister {
                // Answered or not, this drops the crate's copy of our earlier callback.
                let _ = client.remove_watches(&root, WatcherType::Any);
            }
            let inbox = inbox.clone();
            let watch = move |event: WatchedEvent| {
                if let Some(path) = event.path {
                    let deleted = event.event_type == WatchedEventType::NodeDeleted;
                    let _ = inbox.send(Message::Changed { path, deleted });
                }
            };
            match client.add_watch(&root, AddWatchMode::PersistentRecursive, watch) {
                Ok(()) => Answer::Watched { root },
                Err(error) => Answer::Failed { call: Call::Watch { root, unregister }, error },
            }
        }
        Call::List { root } => match client.get_children(&root, false) {
            Ok(names) => Answer::Listed { root, names: Some(names) },
            // A root that does not exist yet has no children; its creation fires the watch.
            Err(ZkError::NoNode) => Answer::Listed { root, names: None },
            Err(error) => Answer::Failed { call: Call::List { root }, error },
        },
        Call::Read { root, name } => match client.get_data(&path_of(&root, &name), false) {
            Ok((data, _)) => Answer::Read { root, name, data: Some(data) },
            Err(ZkError::NoNode) => Answer::Read { root, name, data: None },
            Err(error) => Answer::Failed { call: Call::Read { root, name }, error },
        },
        Call::Unwatch { root } => match client.remove_watches(&root, WatcherType::Any) {
            Ok(()) => Answer::Unwatched,
            Err(error) => Answer::Failed { call: Call::Unwatch { root }, error },
        },
    }
}

/// The thread of one session: owns its client (and renews it), every tree on it and their owners.
struct Follower {
    ensemble: String,
    /// The reconciler's channel, for news of the session (what proxymgr shows of itself).
    events: Sender<Event>,
    /// The client and its generation, which goes up with every renewal.
    generation: u64,
    client: Client,
    /// The threads that make the client's calls.
    readers: Readers<Call, Answer>,
    /// Roots whose watch is to be removed (their last owner is gone), before any other call is made.
    unwatch: Vec<String>,
    /// The connection's state across clients, for logging an outage once with its length.
    link: Arc<Mutex<Link>>,
    inbox: Receiver<Message>,
    inbox_tx: Sender<Message>,
    trees: Trees,
    /// Since when calls fail, on which client.
    failing: Option<(Instant, u64)>,
    /// Whether the client must be replaced and a new one could not be made yet (a host in the ensemble
    /// string did not resolve): tried again after each wait.
    renew_due: bool,
    /// The wait before calls that failed are made again, or a client is made again.
    backoff: Backoff,
    /// When nodes that could not be read for their own fault are read again, while there are some.
    recheck_due: Option<Instant>,
    /// Whether the session's last handle is gone: the follower closes the client and ends.
    closing: bool,
}

impl Follower {
    fn run(mut self) {
        loop {
            self.work();
            let retry = if self.failing.is_some() || self.renew_due {
                crossbeam_channel::after(self.backoff.peek())
            } else {
                never()
            };
            self.recheck_due =
                self.trees.unreadable().then(|| self.recheck_due.unwrap_or_else(|| Instant::now() + RECHECK));
            let recheck = self.recheck_due.map_or_else(never, crossbeam_channel::at);
            select! {
                recv(self.inbox) -> message => match message {
                    Ok(message) => self.note(message),
                    Err(_) => self.closing = true,
                },
                // That wait is over and the calls are made again; should they fail, the next wait is longer.
                recv(retry) -> _ => {
                    self.backoff.fail();
                    if self.renew_due {
                        self.renew(self.generation);
                    }
                }
                recv(recheck) -> _ => {
                    self.recheck_due = None;
                    self.trees.recheck();
                }
            }
            // A burst of changes becomes one read of each changed node and one report per tree.
            while let Ok(message) = self.inbox.try_recv() {
                self.note(message);
            }
            if self.closing {
                return self.close();
            }
        }
    }

    /// The session's last handle is gone (every owner with it): closes the client, which ends its reconnect
    /// loop, and the readers. The crate's own threads end once it has closed; a reader in a call, when the
    /// call returns.
    fn close(self) {
        log::info!("zookeeper {}: followed by nothing any more; closing its session", self.ensemble);
        self.tell(SessionNews::Closed);
        let client = self.client.retire();
        drop(self.readers);
        // On this thread, which has nothing else to do: it ends once the client is closed. A client that never
        // connected fails its close (ConnectionLoss) once the crate gives the attempt up; nothing to tell.
        let _ = client.close();
    }

    fn tell(&self, news: SessionNews) {
        let _ = self.events.send(Event::Session { ensemble: self.ensemble.clone(), news });
    }

    fn note(&mut self, message: Message) {
        match message {
            Message::Changed { path, deleted } => self.trees.changed(&path, deleted),
            Message::Reconnected { generation } if generation == self.generation => self.trees.reconnected(),
            Message::Reconnected { .. } => {}
            Message::Expired { generation } => self.renew(generation),
            Message::Follow { id, root, owner } => self.trees.follow(id, root, owner),
            Message::Unfollow { id } => self.unwatch.extend(self.trees.unfollow(id)),
            Message::Close => self.closing = true,
        }
    }

    /// Makes the calls every tree needs, many at once (a start, a reconnect) on up to READERS threads; until
    /// every call works again the last known children stand: nothing is reported, nothing removed.
    fn work(&mut self) {
        let generation = self.generation;
        // A watch whose tree is gone is removed first, in a round of its own: should the same root be followed
        // again, its new watch must not be the one removed.
        let unwatch: Vec<Call> = self.unwatch.drain(..).map(|root| Call::Unwatch { root }).collect();
        let ensemble = self.ensemble.as_str();
        let unwatched = self.readers.run(
            unwatch,
            |answer| {
                if let Answer::Failed { call, error } = answer {
                    log::debug!("zookeeper {ensemble}: {call}: {error:?}");
                }
                Vec::new()
            },
            SESSION_TIMEOUT,
        );
        if let Err(stalled) = unwatched {
            return self.stalled(stalled, generation);
        }
        let calls = self.trees.start();
        if calls.is_empty() {
            return;
        }
        let trees = &mut self.trees;
        let mut first_error = None;
        let settled = self.readers.run(
            calls,
            |answer| {
                match &answer {
                    // A node's own fault says nothing of the session: the bookkeeping notes it.
                    Answer::Failed { call, error } if Fault::of(*error) == Fault::Session => {
                        first_error.get_or_insert_with(|| Error::Call {
                            ensemble: ensemble.to_string(),
                            call: call.to_string(),
                            source: *error,
                        });
                    }
                    _ => {}
                }
                trees.settle(answer)
            },
            SESSION_TIMEOUT,
        );
        for note in self.trees.take_notes() {
            match note {
                Note::Unreadable { .. } => log::error!("zookeeper {ensemble}: {note}"),
                Note::Readable { .. } => log::info!("zookeeper {ensemble}: {note}"),
            }
        }
        if let Err(stalled) = settled {
            return self.stalled(stalled, generation);
        }
        let Some(e) = first_error else {
            self.failing = None;
            self.backoff.reset();
            if self.client.connected_unheard(&self.ensemble, &self.link) {
                self.tell(SessionNews::Connected);
            }
            self.tell(SessionNews::Read);
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
            log::debug!("{e}; retrying in {:?}", self.backoff.peek());
        }
    }

    /// No answer came for a session timeout: the client is stuck (a call the crate neither answers nor fails),
    /// and only a new one reads again. The stuck reader goes with the old client.
    fn stalled(&mut self, stalled: Stalled, generation: u64) {
        log::warn!(
            "zookeeper {}: {} call(s) unanswered for {SESSION_TIMEOUT:?}; starting a new session, serving the \
             last known state meanwhile",
            self.ensemble,
            stalled.open
        );
        self.renew(generation);
        if self.renew_due {
            // No new client yet: what was asked is asked again, of the old one, at the next retry.
            self.failing.get_or_insert((Instant::now(), generation));
        }
    }

    /// Replaces client `generation` with a new one (the crate cannot revive an expired session, nor one whose
    /// server lost its data). Every tree is armed and read again on it.
    fn renew(&mut self, generation: u64) {
        if generation != self.generation {
            return;
        }
        match new_client(&self.ensemble, generation + 1, &self.inbox_tx, &self.link, &self.events) {
            Ok(client) => {
                self.tell(SessionNews::Renewed);
                log::info!("zookeeper {}: new client (generation {})", self.ensemble, generation + 1);
                self.generation = generation + 1;
                self.readers = readers(&client.zk, &self.inbox_tx);
                close_in_background(std::mem::replace(&mut self.client, client).retire());
                self.failing = None;
                self.renew_due = false;
                self.trees.renewed();
            }
            // Else the follower would keep an expired client for good: the name may resolve again soon
            // (an outage that expired the session can take DNS with it).
            Err(e) if !self.renew_due => {
                log::error!("{e}; trying again until a new client can be made");
                self.renew_due = true;
            }
            Err(e) => log::debug!("{e}; retrying in {:?}", self.backoff.peek()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ledger's answers to a story of follows and unfollows; sessions are numbers, opened in order.
    #[test]
    fn a_session_opens_with_its_first_handle_and_closes_with_its_last() {
        let mut ledger = Ledger::<u32>::default();
        let mut opened = 0;
        let mut follow = |ledger: &mut Ledger<u32>, ensemble: &str| {
            ledger.follow(ensemble, || -> Result<u32, ()> {
                opened += 1;
                Ok(opened)
            })
        };
        // The registry and a watcher on its ensemble share its session.
        assert_eq!(follow(&mut ledger, "zk:2181"), Ok(1), "the registry opens it");
        assert_eq!(follow(&mut ledger, "zk:2181"), Ok(1), "a watcher shares it");
        assert_eq!(follow(&mut ledger, "typo:2181"), Ok(2), "another ensemble, another session");
        assert!(!ledger.unfollow("zk:2181", &1), "the watcher leaves: the registry still follows");
        assert!(ledger.unfollow("typo:2181", &2), "its last handle: closed");
        assert!(!ledger.unfollow("typo:2181", &2), "closed once");
        // Opened again later, as a new session; the old one's leftovers do not touch it.
        assert_eq!(follow(&mut ledger, "typo:2181"), Ok(3));
        assert!(!ledger.unfollow("typo:2181", &2), "not the open session");
        assert!(ledger.unfollow("typo:2181", &3));
        assert!(ledger.unfollow("zk:2181", &1), "the registry's last handle");
        assert!(ledger.open.is_empty());
    }

    #[test]
    fn a_session_that_cannot_open_is_not_counted() {
        let mut ledger = Ledger::<u32>::default();
        assert_eq!(ledger.follow("bad", || Err("unresolvable")), Err("unresolvable"));
        assert!(ledger.open.is_empty());
        assert_eq!(ledger.follow("bad", || Ok::<_, &str>(7)), Ok(7), "tried again on the next follow");
        assert!(ledger.unfollow("bad", &7), "one handle: the failed follow counted none");
    }
}
