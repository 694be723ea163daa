//! The `zookeeper` watcher: the servers of one service are the children of `path`, each holding
//! `{"address": "1.2.3.4", "port": 8080}`. A node that does not parse is skipped and logged once with its path.

use std::collections::BTreeMap;
use std::sync::Arc;

use crossbeam_channel::Receiver;

use super::{Sessions, Tree};
use crate::service::Server;
use crate::watcher::Report;

/// Follows the servers of one service until `stop` fires.
pub fn run(sessions: Arc<Sessions>, ensemble: &str, path: &str, mut report: Report, stop: Receiver<()>) {
    let session = match sessions.get(ensemble) {
        Ok(session) => session,
        Err(e) => {
            log::error!("service {}: {e}", report.service());
            return;
        }
    };
    let mut skipped: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    Tree::new(session, path).follow(&stop, |tree| {
        let mut servers = Vec::new();
        let mut now_skipped = BTreeMap::new();
        for (name, data) in tree.children() {
            match Server::parse(data) {
                Ok(server) => servers.push(server),
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
}
