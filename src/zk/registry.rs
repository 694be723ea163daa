//! The `zookeeper` service_config: each child of `path` is a service, its name the listen section's, its data
//! the JSON blob of a `ServiceSpec`. What a bad blob does is `registry::Registry`'s business.

use std::sync::Arc;

use crossbeam_channel::Receiver;

use super::{Sessions, Tree};
use crate::registry::{Announce, Entry, Registry};

/// Follows `path` on `ensemble` until `stop` fires, sending [`Event::Services`] whenever the set changes.
pub fn run(sessions: Arc<Sessions>, ensemble: &str, path: &str, announce: Announce, stop: Receiver<()>) {
    let session = match sessions.get(ensemble) {
        Ok(session) => session,
        Err(e) => {
            log::error!("service_config: {e}");
            return;
        }
    };
    log::info!("service_config: following zookeeper {ensemble}{path}");
    let mut registry = Registry::default();
    let mut missing = false;
    Tree::new(session, path).follow(&stop, |tree| {
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
}
