//! The `dns` watcher: every address each backend name resolves to (A and AAAA, through the system resolver,
//! so /etc/hosts applies) is a server on the backend's port. Names are resolved again every `interval`; a name
//! that fails to resolve keeps its last known addresses, and the failure is logged once until it resolves.

use std::collections::{BTreeMap, BTreeSet};
use std::net::ToSocketAddrs;
use std::time::Duration;

use crossbeam_channel::{select, Receiver};

use super::Report;
use crate::service::{DnsBackend, Server};

pub fn run(backends: Vec<DnsBackend>, interval: Duration, mut report: Report, stop: Receiver<()>) {
    let mut known: BTreeMap<usize, Vec<Server>> = BTreeMap::new();
    let mut failing: BTreeSet<usize> = BTreeSet::new();
    loop {
        for (i, backend) in backends.iter().enumerate() {
            match resolve(backend) {
                Ok(servers) => {
                    if failing.remove(&i) {
                        log::info!("service {}: {} resolves again", report.service(), backend.name);
                    }
                    known.insert(i, servers);
                }
                Err(e) => {
                    if failing.insert(i) {
                        let last = known.get(&i).map_or(0, Vec::len);
                        log::error!(
                            "service {}: cannot resolve {}: {e}; keeping its last {last} address(es)",
                            report.service(),
                            backend.name
                        );
                    }
                }
            }
        }
        report.send(known.values().flatten().cloned().collect());
        select! {
            recv(stop) -> _ => return,
            default(interval) => {}
        }
    }
}

fn resolve(backend: &DnsBackend) -> Result<Vec<Server>, String> {
    let addrs = (backend.name.as_str(), backend.port).to_socket_addrs().map_err(|e| e.to_string())?;
    let ips: BTreeSet<_> = addrs.map(|a| a.ip()).collect();
    if ips.is_empty() {
        return Err("no address".into());
    }
    ips.into_iter()
        .map(|ip| Server::new(&ip.to_string(), i64::from(backend.port)))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}
