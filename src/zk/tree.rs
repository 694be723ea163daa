//! The bookkeeping of a session's trees, apart from the client so that it can be tested without a ZooKeeper.
//! It decides which calls each tree needs (arm its watch, list its root, read a child) after a watch event, a
//! reconnect or a new client, takes their answers, and tells a tree's owners once the tree is whole again.
//! The follower (`session.rs`) feeds it messages and answers and makes the calls it asks for; nothing here
//! blocks or calls out but the owners.
//!
//! A call that fails for the node's own fault (`fault.rs`: an ACL that denies the read, say) is not a failure of
//! the session: a child is skipped (kept as last read, if it ever was) and the rest told, a root keeps its tree
//! as last read; each is noted for the log once, read again when it changes and at every `recheck`.
//!
//! State: per root path one [`Tree`] (the children as last read, those that cannot be read), its owners, and
//! what is known of its watch; the notes for the log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use zookeeper::ZkError;

use super::fault::Fault;

/// Something that follows a tree: told the whole current set of children after the first read and after
/// every change (it tells itself whether that differs from what it last saw). Called on the session's
/// follower thread, so it must not block.
pub trait Owner: Send + 'static {
    fn changed(&mut self, tree: &Tree);
}

impl<F: FnMut(&Tree) + Send + 'static> Owner for F {
    fn changed(&mut self, tree: &Tree) {
        self(tree)
    }
}

/// The children of one path and their data, as last read.
pub struct Tree {
    root: String,
    /// Child name -> data, as last read.
    children: BTreeMap<String, Vec<u8>>,
    /// Children to read: created or changed since the last read, or whose read failed.
    pending: BTreeSet<String>,
    /// Children whose last read failed for their own fault, with the error: skipped until they can be read.
    unreadable: BTreeMap<String, ZkError>,
    /// Whether the root existed at the last listing.
    root_exists: bool,
    /// Set for a new tree, a reconnect or a change of the root itself: the root is listed again and every
    /// child read again.
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
            unreadable: BTreeMap::new(),
            root_exists: false,
            stale: true,
            changed: true,
        }
    }

    pub fn path_of(&self, child: &str) -> String {
        path_of(&self.root, child)
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
            self.unreadable.remove(name);
        } else {
            self.pending.insert(name.to_string());
        }
    }

    /// The root's children as listed (None: the root does not exist): every one of them is read again.
    fn listed(&mut self, names: Option<Vec<String>>) {
        self.root_exists = names.is_some();
        let names: BTreeSet<String> = names.into_iter().flatten().collect();
        self.children.retain(|name, _| names.contains(name));
        self.unreadable.retain(|name, _| names.contains(name));
        self.pending = names;
        self.stale = false;
    }

    /// Child `name` as read (None: it was deleted meanwhile).
    fn read(&mut self, name: String, data: Option<Vec<u8>>) {
        self.pending.remove(&name);
        match data {
            Some(data) => self.children.insert(name, data),
            None => self.children.remove(&name),
        };
    }
}

/// The path of `child` under `root`.
pub(super) fn path_of(root: &str, child: &str) -> String {
    if root == "/" {
        format!("/{child}")
    } else {
        format!("{root}/{child}")
    }
}

/// A call the bookkeeping needs made on the current client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Call {
    /// Arm the persistent recursive watch on `root`; with `unregister`, first drop the callback of ours the
    /// client may still hold for it (the crate keeps every callback it was given until `remove_watches`).
    Watch { root: String, unregister: bool },
    /// List the children of `root`.
    List { root: String },
    /// Read the data of child `name` of `root`.
    Read { root: String, name: String },
    /// Drop the watch on `root` and our callback for it: its last owner is gone. Made by the follower, not
    /// asked for by the bookkeeping; its answer is settled by nobody.
    Unwatch { root: String },
}

impl Call {
    fn root(&self) -> &str {
        match self {
            Call::Watch { root, .. }
            | Call::List { root }
            | Call::Read { root, .. }
            | Call::Unwatch { root } => root,
        }
    }
}

/// How a failed call is named in the log.
impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Watch { root, .. } => write!(f, "watch {root}"),
            Call::List { root } => write!(f, "list {root}"),
            Call::Read { root, name } => write!(f, "read {}", path_of(root, name)),
            Call::Unwatch { root } => write!(f, "remove the watch on {root}"),
        }
    }
}

/// What a call found. A node that does not exist is an answer (None), not a failure.
#[derive(Debug)]
pub(super) enum Answer {
    Watched { root: String },
    Listed { root: String, names: Option<Vec<String>> },
    Read { root: String, name: String, data: Option<Vec<u8>> },
    Unwatched,
    Failed { call: Call, error: ZkError },
}

impl Answer {
    fn root(&self) -> &str {
        match self {
            Answer::Watched { root } | Answer::Listed { root, .. } | Answer::Read { root, .. } => root,
            Answer::Failed { call, .. } => call.root(),
            // Of no tree: nothing settles it.
            Answer::Unwatched => "",
        }
    }
}

/// News for the log of nodes that cannot be read for their own fault: each told once, until its error changes or
/// it can be read again.
#[derive(Debug, PartialEq)]
pub(super) enum Note {
    /// `call` failed with `error`, the fault of the node it names.
    Unreadable { call: Call, error: ZkError },
    /// The node at `path` can be read again.
    Readable { path: String },
}

/// How a note is written in the log, after the ensemble.
impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::Unreadable { call: call @ Call::Read { .. }, error } => {
                write!(f, "{call}: {error:?}; skipping that node until it can be read")
            }
            Note::Unreadable { call, error } => {
                write!(f, "{call}: {error:?}; keeping what was read under it until it can be read")
            }
            Note::Readable { path } => write!(f, "{path} can be read again"),
        }
    }
}

/// One tree and what is known of its watch.
struct Followed {
    tree: Tree,
    owners: Vec<(u64, Box<dyn Owner>)>,
    /// Whether the watch is armed on the current connection.
    armed: bool,
    /// Whether a callback of ours may be registered with the current client for this root.
    registered: bool,
    /// Calls asked for and not answered yet.
    calls: usize,
    /// Whether a call failed since the tree was last started: its owners are not told (the last known
    /// children stand), and what failed is asked for again next time.
    failed: bool,
    /// The error of the root's watch or listing when it was the root's own fault, until it is listed again.
    root_fault: Option<ZkError>,
    /// Whether that fault holds the tree back until a recheck, an event on its root or a new connection.
    held: bool,
}

impl Followed {
    fn needs_work(&self) -> bool {
        // Pending children count too: after a reconnect's listing a read may fail while nothing is `changed`.
        !self.held && (!self.armed || self.tree.stale || self.tree.changed || !self.tree.pending.is_empty())
    }

    /// The calls that bring the tree a step further: the watch, else the listing, else the pending reads.
    fn next_calls(&mut self) -> Vec<Call> {
        let root = &self.tree.root;
        if !self.armed {
            let unregister = self.registered;
            // The crate registers the callback whatever the server answers.
            self.registered = true;
            vec![Call::Watch { root: root.clone(), unregister }]
        } else if self.tree.stale {
            vec![Call::List { root: root.clone() }]
        } else {
            self.tree
                .pending
                .iter()
                .map(|name| Call::Read { root: root.clone(), name: name.clone() })
                .collect()
        }
    }

    fn tell_owners(&mut self) {
        for (_, owner) in &mut self.owners {
            owner.changed(&self.tree);
        }
        self.tree.changed = false;
    }
}

/// Every tree on one session, by root path: one tree per path, however many owners follow it.
#[derive(Default)]
pub(super) struct Trees {
    by_root: BTreeMap<String, Followed>,
    /// Owner id -> the root it follows.
    roots: HashMap<u64, String>,
    /// For the log, since it last took them.
    notes: Vec<Note>,
}

impl Trees {
    /// A watch event for the node at `path`.
    pub(super) fn changed(&mut self, path: &str, deleted: bool) {
        // A node can be both the root of one tree and a child of another (a service's servers under its own
        // node in the registry's path): each hears of it.
        if let Some(followed) = self.by_root.get_mut(path) {
            // The root itself was created, deleted or changed: list it again.
            followed.tree.stale = true;
            followed.held = false;
        }
        if let Some((parent, name)) = path.rsplit_once('/').filter(|(_, name)| !name.is_empty()) {
            let parent = if parent.is_empty() { "/" } else { parent };
            if let Some(followed) = self.by_root.get_mut(parent) {
                followed.tree.note(name, deleted);
            }
        }
    }

    /// The connection came back: the server kept the session but the crate re-registers no watch, so every
    /// watch is armed again (our callbacks are still registered with the client) and every tree read whole.
    pub(super) fn reconnected(&mut self) {
        for followed in self.by_root.values_mut() {
            followed.armed = false;
            followed.held = false;
            followed.tree.stale = true;
        }
    }

    /// A new client, which holds none of our callbacks: every watch is armed and every tree read on it.
    pub(super) fn renewed(&mut self) {
        for followed in self.by_root.values_mut() {
            followed.armed = false;
            followed.registered = false;
            followed.held = false;
            followed.tree.stale = true;
        }
    }

    /// Whether a node cannot be read for its own fault: the follower asks for a `recheck` now and then.
    pub(super) fn unreadable(&self) -> bool {
        self.by_root.values().any(|followed| followed.held || !followed.tree.unreadable.is_empty())
    }

    /// Every node that could not be read for its own fault is read again (ZooKeeper fires no watch when an ACL
    /// changes, so a node made readable says nothing).
    pub(super) fn recheck(&mut self) {
        for followed in self.by_root.values_mut() {
            followed.held = false;
            let tree = &mut followed.tree;
            tree.pending.extend(tree.unreadable.keys().cloned());
        }
    }

    /// The notes for the log since the last call.
    pub(super) fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    /// Owner `id` starts following `root`. A tree already read tells it at once; else it hears with everyone
    /// after the read.
    pub(super) fn follow(&mut self, id: u64, root: String, mut owner: Box<dyn Owner>) {
        self.roots.insert(id, root.clone());
        let followed = self.by_root.entry(root.clone()).or_insert_with(|| Followed {
            tree: Tree::new(root),
            owners: Vec::new(),
            armed: false,
            registered: false,
            calls: 0,
            failed: false,
            root_fault: None,
            held: false,
        });
        if !followed.needs_work() {
            owner.changed(&followed.tree);
        }
        followed.owners.push((id, owner));
    }

    /// Owner `id` stops following (it is dropped here). Returns the root whose watch the client must remove:
    /// the server keeps one watch per path and session, so it goes with the tree's last owner.
    pub(super) fn unfollow(&mut self, id: u64) -> Option<String> {
        let root = self.roots.remove(&id)?;
        let followed = self.by_root.get_mut(&root)?;
        followed.owners.retain(|(owner, _)| *owner != id);
        if !followed.owners.is_empty() {
            return None;
        }
        let followed = self.by_root.remove(&root)?;
        followed.registered.then_some(root)
    }

    /// Starts the work every tree needs: returns the first calls to make, and tells the owners of a tree
    /// that needs no call (a child was deleted).
    pub(super) fn start(&mut self) -> Vec<Call> {
        let mut calls = Vec::new();
        for followed in self.by_root.values_mut().filter(|followed| followed.needs_work()) {
            followed.failed = false;
            let first = followed.next_calls();
            followed.calls = first.len();
            if first.is_empty() {
                followed.tell_owners();
            }
            calls.extend(first);
        }
        calls
    }

    /// Takes the answer to a call; returns the calls that follow from it (the listing after the watch, the
    /// reads after the listing). The owners are told once a tree's last call is answered and none failed.
    pub(super) fn settle(&mut self, answer: Answer) -> Vec<Call> {
        let Some(followed) = self.by_root.get_mut(answer.root()) else { return Vec::new() };
        followed.calls = followed.calls.saturating_sub(1);
        let next = match answer {
            Answer::Watched { .. } => {
                followed.armed = true;
                followed.tree.stale = true;
                followed.next_calls()
            }
            Answer::Listed { names, root } => {
                if followed.root_fault.take().is_some() {
                    self.notes.push(Note::Readable { path: root });
                }
                followed.tree.listed(names);
                followed.next_calls()
            }
            Answer::Read { name, data, .. } => {
                if followed.tree.unreadable.remove(&name).is_some() && data.is_some() {
                    self.notes.push(Note::Readable { path: followed.tree.path_of(&name) });
                }
                followed.tree.read(name, data);
                Vec::new()
            }
            Answer::Failed { error, .. } if Fault::of(error) == Fault::Session => {
                followed.failed = true;
                Vec::new()
            }
            Answer::Failed { call, error } => {
                let known = match &call {
                    // A child: skipped, and the rest told.
                    Call::Read { name, .. } => {
                        followed.tree.pending.remove(name);
                        followed.tree.unreadable.insert(name.clone(), error)
                    }
                    // The root: its tree stays as last read (its owners are not told), and is not tried again
                    // before a recheck, an event on it or a new connection.
                    _ => {
                        followed.failed = true;
                        followed.held = true;
                        followed.root_fault.replace(error)
                    }
                };
                if known != Some(error) {
                    self.notes.push(Note::Unreadable { call, error });
                }
                Vec::new()
            }
            Answer::Unwatched => Vec::new(),
        };
        followed.calls += next.len();
        if followed.calls == 0 && !followed.failed {
            followed.tell_owners();
        }
        next
    }
}

// In a file of their own: they are as long as the code.
#[cfg(test)]
mod tests;
