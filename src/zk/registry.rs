//! The `service_config` registry: each child of `path` is a service, its name the listen section's, its data the
//! JSON blob of [`ServiceSpec`].
//!
//! A blob that does not validate is logged once with its node's path and the reason; a service that had a good
//! spec keeps it, and one that never had one does not exist. Only a node's deletion removes a service.

use std::collections::BTreeMap;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::{Sessions, Tree};
use crate::event::Event;
use crate::service::{check_name, ServiceSpec, SpecError};

/// Follows `path` on `ensemble` until `stop` fires, sending [`Event::Services`] whenever the set changes.
pub fn run(sessions: Arc<Sessions>, ensemble: &str, path: &str, events: Sender<Event>, stop: Receiver<()>) {
    let session = match sessions.get(ensemble) {
        Ok(session) => session,
        Err(e) => {
            log::error!("service_config: {e}");
            return;
        }
    };
    log::info!("service_config: following zookeeper {ensemble}{path}");
    let mut registry = Registry::default();
    Tree::new(session, path).follow(&stop, |tree| {
        if let Some(services) = registry
            .update(tree.children().iter().map(|(name, data)| Node::parse(name, tree.path_of(name), data)))
        {
            let _ = events.send(Event::Services(services));
        }
    });
}

/// One child of the service_config path, parsed.
struct Node<'a> {
    name: &'a str,
    path: String,
    data: &'a [u8],
    parsed: Result<ServiceSpec, SpecError>,
}

impl<'a> Node<'a> {
    fn parse(name: &'a str, path: String, data: &'a [u8]) -> Node<'a> {
        let parsed = check_name(name).and_then(|()| ServiceSpec::parse(data));
        Node { name, path, data, parsed }
    }
}

/// The registry's memory: the last good spec of each service and the last data seen, so that a bad blob is
/// reported once and a good one is not parsed again for nothing.
#[derive(Default)]
struct Registry {
    good: BTreeMap<String, ServiceSpec>,
    seen: BTreeMap<String, Vec<u8>>,
    sent: Option<BTreeMap<String, ServiceSpec>>,
}

impl Registry {
    /// Takes the whole current set of nodes; returns the service set when it differs from the last one sent.
    fn update<'a>(&mut self, nodes: impl Iterator<Item = Node<'a>>) -> Option<BTreeMap<String, ServiceSpec>> {
        let mut services = BTreeMap::new();
        let mut seen = BTreeMap::new();
        for Node { name, path: node, data, parsed } in nodes {
            let is_new_data = self.seen.get(name).map(Vec::as_slice) != Some(data);
            match parsed {
                Ok(spec) => {
                    self.good.insert(name.to_string(), spec);
                }
                Err(e) if is_new_data => match self.good.contains_key(name) {
                    true => log::error!("service {node}: {e}; keeping its last good spec"),
                    false => log::error!("service {node}: {e}; ignored until it is fixed"),
                },
                Err(_) => {}
            }
            if let Some(spec) = self.good.get(name) {
                services.insert(name.to_string(), spec.clone());
            }
            seen.insert(name.to_string(), data.to_vec());
        }
        self.good.retain(|name, _| seen.contains_key(name));
        self.seen = seen;
        if self.sent.as_ref() == Some(&services) {
            return None;
        }
        self.sent = Some(services.clone());
        Some(services)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(list: &'static [(&'static str, &'static str)]) -> impl Iterator<Item = Node<'static>> {
        list.iter().map(|(name, data)| Node::parse(name, format!("/sc/{name}"), data.as_bytes()))
    }

    const A80: &str = r#"{"type":"zookeeper","server":"z:1","path":"/a","port":80}"#;
    const A81: &str = r#"{"type":"zookeeper","server":"z:1","path":"/a","port":81}"#;

    #[test]
    fn a_bad_blob_keeps_the_last_good_spec_and_a_deleted_node_drops_it() {
        let mut r = Registry::default();
        let first = r.update(nodes(&[("a", A80), ("b", "{bad"), ("bad name", A81)])).unwrap();
        assert_eq!(first.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(r.update(nodes(&[("a", "{broken")])), None, "a keeps port 80, nothing to send");
        let changed = r.update(nodes(&[("a", A81)])).unwrap();
        assert_eq!(changed["a"].port, 81);
        assert_eq!(r.update(nodes(&[])).unwrap().len(), 0);
        // Once deleted, a bad blob under the same name is not a service.
        assert_eq!(r.update(nodes(&[("a", "{bad")])), None);
    }
}
