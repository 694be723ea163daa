//! The integration tests, built as one binary. Each module is one area; each test starts the real parts it
//! needs (ZooKeeper, HAProxy through proxymgr, backends) on free loopback ports and stops them on drop.

/// The command line, `--check` and exit codes.
mod cli;
/// Issue 2's scenarios: services and servers from ZooKeeper served by HAProxy, end to end.
mod core;
/// Issue 5: ZooKeeper outages, ensembles, expiry, HAProxy and proxymgr killed, the state file, SIGHUP, hostile input.
mod faults;
/// Issue 12: registrations HAProxy refuses held out alone; runtime servers equal reloaded ones.
mod field;
/// Issue 3: runtime API first, dynamic servers, checked and coalesced reloads, zero failed requests; issue 12 §2:
/// reload storms while connections are held stay bounded, and the cap on generations.
mod hitless;
/// Issue 12 §3: a mass removal of servers is held at the threshold for the hold time.
mod holds;
/// Issue 6: the deb through its init script (as root), the rpm's contents, the scripts' syntax.
mod packaging;
/// RAII fixtures: Zk, Backend, Proxymgr, waits with deadlines.
mod support;
/// The fixtures themselves work.
mod support_selftest;
/// Issue 4: every watcher (zookeeper with Nerve nodes, campanjazk, dns, file) and the directory service_config.
mod watchers;
