//! Everything that speaks ZooKeeper: the shared sessions and the trees they follow. Nothing outside this
//! module names the `zookeeper` crate, so the client could be swapped for another without touching the rest
//! (DESIGN.md §4: the crate is unmaintained and pulls in mio 0.6). What a tree's children mean is its owner's
//! business (`registry::zookeeper`, `watcher::zookeeper`): each follows a tree with a closure (`tree::Owner`),
//! and this module knows nothing of services or servers.
//!
//! A tree is the children of one path and their data, followed through a persistent recursive watch. One
//! session per distinct ensemble string is shared by every tree on it, and one thread per session, its
//! follower, keeps them current: a watch event names the node that changed, the follower reads that node alone
//! and tells the tree's owners the whole set. `session.rs` is the follower and the client's lifecycle,
//! `tree.rs` the bookkeeping of the trees (which calls they need, what the owners are told; pure), `read.rs`
//! the bounded pool that makes many calls at once, `fault.rs` whose fault a failed call is (the node's, which
//! skips that node, or the session's, which holds everything back).

mod fault;
mod read;
mod session;
mod tree;

pub use session::{Following, Sessions};
pub use tree::Tree;

use zookeeper::ZkError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ensemble string does not parse, or a host in it does not resolve.
    #[error("zookeeper {ensemble}: cannot parse or resolve: {source:?}")]
    Connect { ensemble: String, source: ZkError },
    /// A call failed; `call` says which, with its path.
    #[error("zookeeper {ensemble}: {call}: {source:?}")]
    Call { ensemble: String, call: String, source: ZkError },
    /// The session's follower thread could not be created (`threads::spawn` logged why).
    #[error("zookeeper {ensemble}: no thread to follow it")]
    NoFollower { ensemble: String },
}
