//! Where services come from (`service_config`), and the memory every source shares: a definition that does
//! not validate is logged once with its source (node path, file) and the reason; a service that had a good spec
//! keeps it, and one that never had one does not exist. Only the definition's removal removes a service.
//!
//! The sources: `zookeeper` (children of a ZooKeeper node, a tree on its session's follower in `zk`) and
//! `directory` (one JSON file per service, a thread of its own).

pub mod directory;
mod zookeeper;

use std::collections::BTreeMap;

use crossbeam_channel::Sender;

use crate::config::ServiceConfigSource;
use crate::event::Event;
use crate::service::{check_name, ServiceSpec, SpecError};
use crate::threads;
use crate::watcher::{self, Lifeline};

/// The running source; dropping it stops it.
pub struct Source {
    _lifeline: Lifeline,
}

/// How a registry thread sends the whole set.
pub struct Announce {
    generation: u64,
    events: Sender<Event>,
}

impl Announce {
    pub fn send(&self, services: BTreeMap<String, ServiceSpec>) {
        let _ = self.events.send(Event::Services { source: self.generation, services });
    }
}

/// Starts following `source`, which sends `Event::Services`.
pub fn start(source: &ServiceConfigSource, generation: u64, context: &watcher::Context) -> Source {
    let events = Announce { generation, events: context.events.clone() };
    let lifeline = match source.clone() {
        ServiceConfigSource::Zookeeper { servers, path } => {
            zookeeper::follow(&context.sessions, &servers, &path, events)
                .map_or(Lifeline::None, Lifeline::Zookeeper)
        }
        ServiceConfigSource::Directory { path } => {
            let (stop_tx, stop) = crossbeam_channel::bounded(0);
            threads::spawn("registry".into(), context.events.clone(), move || {
                directory::run(path, events, stop)
            });
            Lifeline::Thread(stop_tx)
        }
    };
    Source { _lifeline: lifeline }
}

/// One service definition as found (a node, a file), parsed.
pub struct Entry<'a> {
    name: &'a str,
    path: String,
    /// Its data, or why it could not be read.
    read: Result<&'a [u8], SpecError>,
    parsed: Result<ServiceSpec, SpecError>,
}

impl<'a> Entry<'a> {
    pub fn parse(name: &'a str, path: String, data: &'a [u8]) -> Entry<'a> {
        Entry::read(name, path, Ok(data))
    }

    /// A definition as read: its data, or why it could not be read, which is reported like a bad blob.
    pub fn read(name: &'a str, path: String, read: Result<&'a [u8], SpecError>) -> Entry<'a> {
        let parsed = check_name(name).and_then(|()| match &read {
            Ok(data) => ServiceSpec::parse(data),
            Err(e) => Err(e.clone()),
        });
        Entry { name, path, read, parsed }
    }
}

/// The registry's memory: the last good spec of each service and the last data (or read error) seen, so that a
/// bad blob is reported once.
#[derive(Default)]
pub struct Registry {
    good: BTreeMap<String, ServiceSpec>,
    seen: BTreeMap<String, Result<Vec<u8>, SpecError>>,
    sent: Option<BTreeMap<String, ServiceSpec>>,
}

impl Registry {
    /// Takes the whole current set of nodes; returns the service set when it differs from the last one sent.
    pub fn update<'a>(
        &mut self,
        nodes: impl Iterator<Item = Entry<'a>>,
    ) -> Option<BTreeMap<String, ServiceSpec>> {
        let mut services = BTreeMap::new();
        let mut seen = BTreeMap::new();
        for Entry { name, path: node, read, parsed } in nodes {
            let read = read.map(<[u8]>::to_vec);
            let is_new_data = self.seen.get(name) != Some(&read);
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
            seen.insert(name.to_string(), read);
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

    fn nodes(list: &'static [(&'static str, &'static str)]) -> impl Iterator<Item = Entry<'static>> {
        list.iter().map(|(name, data)| Entry::parse(name, format!("/sc/{name}"), data.as_bytes()))
    }

    const A80: &str = r#"{"type":"zookeeper","server":"z:1","path":"/a","port":80}"#;
    const A81: &str = r#"{"type":"zookeeper","server":"z:1","path":"/a","port":81}"#;
    const A_GLOBAL: &str =
        r#"{"type":"zookeeper","server":"z:1","path":"/a","port":81,"listen_options":["global"]}"#;

    #[test]
    fn a_bad_blob_keeps_the_last_good_spec_and_a_deleted_node_drops_it() {
        let mut r = Registry::default();
        let first = r.update(nodes(&[("a", A80), ("b", "{bad"), ("bad name", A81)])).unwrap();
        assert_eq!(first.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(r.update(nodes(&[("a", "{broken")])), None, "a keeps port 80, nothing to send");
        assert_eq!(r.update(nodes(&[("a", A_GLOBAL)])), None, "a refused option keeps it too");
        let changed = r.update(nodes(&[("a", A81)])).unwrap();
        assert_eq!(changed["a"].port, Some(81));
        assert_eq!(r.update(nodes(&[])).unwrap().len(), 0);
        // Once deleted, a bad blob under the same name is not a service.
        assert_eq!(r.update(nodes(&[("a", "{bad")])), None);
    }
}
