//! The one closed set of things that can happen to the reconciler.
//!
//! Every other thread (registry, watchers, signals, HAProxy's output readers) only ever sends one of these down
//! the reconciler's channel; no logic runs anywhere else. Sets are sent whole (level-triggered), never as
//! deltas, so a repeated or late message can do no harm.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::service::{Server, ServiceSpec};

#[derive(Debug)]
pub enum Event {
    /// The registry's whole current set of services. A service whose blob turned bad is still here with its
    /// last good spec: the registry only drops a service when its node is gone. `source` tells a replaced
    /// registry's late message (after SIGHUP changed service_config) from the current one's.
    Services {
        source: u64,
        services: BTreeMap<String, ServiceSpec>,
    },
    /// A watcher's whole current server set for one service, sorted and unique by name (shared with the
    /// watcher, which keeps it to tell a change). `generation` tells a stopped watcher's late message from the
    /// current one's.
    Servers {
        service: String,
        generation: u64,
        servers: Arc<Vec<Server>>,
    },
    Signal(Signal),
    /// News of a registry session (a ZooKeeper ensemble's), for what proxymgr shows of itself: it decides nothing.
    Session {
        ensemble: String,
        news: SessionNews,
    },
    /// A supervised thread ended when it should not have; the daemon stops with an error.
    ThreadDied {
        thread: String,
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT: stop HAProxy gracefully and exit.
    Terminate,
    /// SIGHUP: re-read proxymgr.yml.
    Reload,
    /// SIGUSR2: leave HAProxy serving and the listeners to the next proxymgr, and exit (a restart, an upgrade).
    HandOver,
    /// SIGCHLD: some child process changed state.
    Child,
}

/// What happened to a registry session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionNews {
    /// Connected: for the first time, or again after an outage.
    Connected,
    /// The connection is lost (or the session closed): an outage begins, the last known state is served.
    Lost,
    /// A new session replaced one that expired or was given up.
    Renewed,
    /// A round of reads succeeded.
    Read,
    /// Nothing follows it any more: it is closed.
    Closed,
}
