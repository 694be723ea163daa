//! The ZooKeeper trees the benchmarks run on: `services` services of `servers` servers each, in the layout
//! proxymgr reads (`/service_config/<svc>` holds the blob, `/services/<svc>/<node>` one server each).
//!
//! Server nodes are Nerve registrations (`{"host","port","name","weight"}`), which proxymgr reads and which
//! carry a weight that changes at run time. Servers are `127.2.<i/256>.<i%256>:<20000+j>` for server j of
//! service i: unique names, nothing listens there, and without `check` HAProxy never connects to them, so the
//! state measurements see exactly what the daemons set and nothing else. Their services say `retries 0`, so a
//! request answers 503 at once instead of after HAProxy's three 1 s retries: a port answering proves HAProxy
//! serves it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use zookeeper::{Acl, CreateMode, ZkError, ZooKeeper};

use crate::support::{self, Zk};

pub const SERVICE_ROOT: &str = "/service_config";
pub const SERVER_ROOT: &str = "/services";

#[derive(Debug, Clone)]
pub struct Topo {
    pub label: String,
    pub services: usize,
    pub servers: usize,
    /// The port of service i.
    pub ports: Vec<u16>,
}

impl Topo {
    /// Each service on a port of its own (`support::reserve_port`).
    pub fn new(services: usize, servers: usize) -> Topo {
        Topo {
            label: format!("{services}×{servers}"),
            services,
            servers,
            ports: (0..services).map(|_| support::reserve_port()).collect(),
        }
    }

    pub fn service(i: usize) -> String {
        format!("svc{i:04}")
    }

    pub fn node(j: usize) -> String {
        format!("s{j:03}")
    }

    pub fn address(i: usize) -> String {
        format!("127.2.{}.{}", i >> 8, i & 255)
    }

    pub fn server_port(j: usize) -> u16 {
        20000 + j as u16
    }

    /// HAProxy's (and proxymgr's) name of server j of service i: `address:port`.
    pub fn server_name(i: usize, j: usize) -> String {
        format!("{}:{}", Topo::address(i), Topo::server_port(j))
    }

    pub fn server_json(i: usize, j: usize, weight: u32) -> String {
        format!(
            r#"{{"host":"{}","port":{},"name":"{}","weight":{weight}}}"#,
            Topo::address(i),
            Topo::server_port(j),
            Topo::service(i)
        )
    }

    pub fn server_path(i: usize, j: usize) -> String {
        format!("{SERVER_ROOT}/{}/{}", Topo::service(i), Topo::node(j))
    }

    /// Every node of the tree, parents first, the service blobs last (so a daemon already watching sees each
    /// service with its servers).
    fn nodes(&self, zk: &str) -> Vec<Vec<(String, String)>> {
        let parents =
            (0..self.services).map(|i| (format!("{SERVER_ROOT}/{}", Topo::service(i)), String::new()));
        let servers = (0..self.services).flat_map(|i| {
            (0..self.servers).map(move |j| (Topo::server_path(i, j), Topo::server_json(i, j, 1)))
        });
        let blobs = (0..self.services).map(|i| {
            let name = Topo::service(i);
            (format!("{SERVICE_ROOT}/{name}"), service_blob(zk, &name, self.ports[i], &["retries 0"]))
        });
        vec![parents.collect(), servers.collect(), blobs.collect()]
    }

    /// Writes the tree into `zk` with 8 parallel sessions; returns how long it took.
    pub fn populate(&self, zk: &Zk) -> Duration {
        let started = Instant::now();
        for root in [SERVICE_ROOT, SERVER_ROOT] {
            if !zk.exists(root) {
                zk.create(root, "");
            }
        }
        for stage in self.nodes(&zk.connect_string()) {
            create_parallel(zk, &stage);
        }
        started.elapsed()
    }

    /// What ZooKeeper says each service's servers are right now: service -> server names.
    pub fn read_zk(&self, client: &ZooKeeper) -> BTreeMap<String, BTreeSet<String>> {
        let mut tree = BTreeMap::new();
        for i in 0..self.services {
            let svc = Topo::service(i);
            let path = format!("{SERVER_ROOT}/{svc}");
            let mut names = BTreeSet::new();
            for child in client.get_children(&path, false).unwrap_or_default() {
                if let Ok((data, _)) = client.get_data(&format!("{path}/{child}"), false) {
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&data) {
                        let host = v["host"].as_str().or(v["address"].as_str()).unwrap_or_default();
                        names.insert(format!("{host}:{}", v["port"]));
                    }
                }
            }
            tree.insert(svc, names);
        }
        tree
    }
}

/// A service's JSON blob: a `zookeeper` watcher on `/services/<name>`, HTTP mode, no health checks unless
/// `server_options` asks for them.
pub fn service_blob(zk: &str, name: &str, port: u16, listen_options: &[&str]) -> String {
    let mut options = vec!["\"mode http\"".to_string()];
    options.extend(listen_options.iter().map(|o| format!("{o:?}")));
    format!(
        r#"{{"type":"zookeeper","server":"{zk}","path":"{SERVER_ROOT}/{name}","port":{port},"listen_options":[{}],"server_options":[]}}"#,
        options.join(",")
    )
}

/// Creates `nodes` (path, data) from 8 threads, each with its own session; a node that exists is left as is.
pub fn create_parallel(zk: &Zk, nodes: &[(String, String)]) {
    let threads = 8;
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let client = zk.client();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some((path, data)) = nodes.get(k) else { break };
                    create(&client, path, data);
                }
                let _ = client.close();
            });
        }
    });
}

/// Creates one persistent node (and missing parents, empty), retrying a lost connection; `NodeExists` is fine.
pub fn create(client: &ZooKeeper, path: &str, data: &str) {
    for attempt in 0..50 {
        match client.create(
            path,
            data.as_bytes().to_vec(),
            Acl::open_unsafe().clone(),
            CreateMode::Persistent,
        ) {
            Ok(_) | Err(ZkError::NodeExists) => return,
            Err(ZkError::NoNode) => match path.rsplit_once('/') {
                Some((parent, _)) if !parent.is_empty() => create(client, parent, ""),
                _ => panic!("create {path}: NoNode"),
            },
            Err(e) if attempt < 49 => {
                eprintln!("bench: create {path}: {e:?}; retrying");
                // The pause between attempts of a bounded retry (50 attempts): the retry polls the create itself.
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("create {path}: {e:?}"),
        }
    }
}
