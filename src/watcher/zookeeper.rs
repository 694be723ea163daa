//! The `zookeeper` and `campanjazk` watchers: the servers of one service are the children of `path`. For
//! `zookeeper` each child's data is a server (the original's `{"address", "port"}` or a Nerve registration);
//! for `campanjazk` each child's name is a host serving on the service's port. A child that does not make a
//! server is skipped and logged once with its path. Following the path is the business of its session in `zk`,
//! which calls the closure below with the whole tree after every change.

use std::collections::BTreeMap;

use super::Report;
use crate::service::Server;
use crate::zk::{Following, Sessions, Tree};

/// What the children of the path are.
pub enum Children {
    /// Each child's data describes a server.
    Servers,
    /// Each child's name is a host serving on `port`.
    Hosts { port: u16 },
}

/// Follows the servers of one service until the returned handle is dropped. None (logged) if the ensemble
/// string is unusable.
pub fn follow(
    sessions: &Sessions,
    ensemble: &str,
    path: &str,
    children: Children,
    mut report: Report,
) -> Option<Following> {
    let service = report.service().to_string();
    let mut skipped: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let (mut missing, mut reported) = (false, false);
    let following = sessions.follow(ensemble, path, move |tree: &Tree| {
        if !tree.root_exists() {
            if !missing {
                log::error!(
                    "service {}: {} does not exist; keeping its servers as they are",
                    report.service(),
                    tree.root()
                );
                missing = true;
            }
            // A path that never existed: the service has no servers, and need not wait for any.
            if !reported {
                report.send(Vec::new());
                reported = true;
            }
            return;
        }
        missing = false;
        reported = true;
        let mut servers = Vec::new();
        let mut now_skipped = BTreeMap::new();
        for (name, data) in tree.children() {
            let server = match children {
                Children::Servers => Server::parse(data),
                Children::Hosts { port } => Server::new(name, i64::from(port)),
            };
            match server {
                Ok(server) => servers.push(Server { origin: Some(tree.path_of(name)), ..server }),
                Err(e) => {
                    if skipped.get(name) != Some(data) {
                        log::error!(
                            "service {}: server node {}: {e}; skipped",
                            report.service(),
                            tree.path_of(name)
                        );
                    }
                    now_skipped.insert(name.clone(), data.clone());
                }
            }
        }
        skipped = now_skipped;
        report.send(servers);
    });
    following.map_err(|e| log::error!("service {service}: {e}")).ok()
}
