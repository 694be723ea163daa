//! The `zookeeper` service_config: each child of `path` is a service, its name the listen section's, its data
//! the JSON blob of a `ServiceSpec`. What a bad blob does is `Registry`'s business; following the node is the
//! business of its session in `zk`, which calls the closure below with the whole tree after every change.

use super::{Announce, Entry, Registry};
use crate::zk::{Following, Sessions, Tree};

/// Follows `path` on `ensemble` until the returned handle is dropped, sending `Event::Services` whenever the
/// set changes. None (logged) if the ensemble string is unusable.
pub fn follow(sessions: &Sessions, ensemble: &str, path: &str, announce: Announce) -> Option<Following> {
    let mut registry = Registry::default();
    let mut missing = false;
    let following = sessions.follow(ensemble, path, move |tree: &Tree| {
        if !tree.root_exists() {
            if !missing {
                log::error!(
                    "service_config: {} does not exist; keeping the services as they are until it does",
                    tree.root()
                );
                missing = true;
            }
            return;
        }
        missing = false;
        if let Some(services) = registry
            .update(tree.children().iter().map(|(name, data)| Entry::parse(name, tree.path_of(name), data)))
        {
            announce.send(services);
        }
    });
    let following = following.map_err(|e| log::error!("service_config: {e}")).ok()?;
    log::info!("service_config: following zookeeper {ensemble}{path}");
    Some(following)
}
