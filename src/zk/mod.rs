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
//! the bounded pool that makes many calls at once.

mod read;
mod session;
mod tree;

pub use session::{Following, Sessions};
pub use tree::Tree;

use zookeeper::ZkError;

#[derive(Debug, thiserror::Error)]
#[error("zookeeper {ensemble}: {what}: {source:?}")]
pub struct Error {
    ensemble: String,
    what: String,
    source: ZkError,
}
