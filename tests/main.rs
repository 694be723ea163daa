//! The integration tests, built as one binary. Each module is one area; each test starts the real parts it
//! needs (ZooKeeper, HAProxy through proxymgr, backends) on free loopback ports and stops them on drop.

/// The command line, `--check` and exit codes.
mod cli;
/// Issue 2's scenarios: services and servers from ZooKeeper served by HAProxy, end to end.
mod core;
/// Issue 16: shared HTTP(S) frontends routing by host and path without reloads, TLS and HTTP/2, bind options,
/// extra sections, default servers.
mod edge;
/// Issue 5: ZooKeeper outages, ensembles, expiry, HAProxy and proxymgr killed, the state file, SIGHUP, hostile input.
mod faults;
/// Issue 12: registrations HAProxy refuses held out alone; runtime servers equal reloaded ones.
mod field;
/// Issue 3: runtime API first, dynamic servers, checked and coalesced reloads, zero failed requests; issue 12 §2:
/// reload storms while connections are held stay bounded, and the cap on generations.
mod hitless;
/// Issue 12 §3: a mass removal of servers is held at the threshold for the hold time.
mod holds;
/// Issue 14 §4: the init script on EL's layout and on Debian's, laid over the machine in private namespaces.
mod init_script;
/// Issue 14: the scenarios that depend on HAProxy's version, on the HAProxy `PROXYMGR_TEST_HAPROXY` names
/// (`make test-matrix VERSION=x.y`; every version 1.8 to 3.4 under `make test`).
mod matrix;
/// Issue 15: what proxymgr sees in /status, /metrics, `proxymgr status` and the page (in headless Chromium).
mod observe;
/// Issue 6: the deb through its init script (as root), the rpm's contents, the scripts' syntax; issue 13: restarts,
/// upgrades and the systemd unit's restart are hand-overs that fail no request.
mod packaging;
/// RAII fixtures: Zk, Backend, Proxymgr, waits with deadlines.
mod support;
/// The fixtures themselves work.
mod support_selftest;
/// Issue 13: the packaged systemd unit's commands, carried out as systemd would (systemd does not run here).
mod systemd_unit;
/// Issue 4: every watcher (zookeeper with Nerve nodes, campanjazk, dns, file) and the directory service_config.
mod watchers;
