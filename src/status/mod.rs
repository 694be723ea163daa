//! What proxymgr shows of itself, read-only: the [`Status`] the reconciler publishes and the views of it.
//!
//! - `model.rs`: the `Status` itself (plain data, JSON both ways).
//! - `metrics.rs`: the `Status` as `/metrics`, in Prometheus' text format.
//! - `page.rs`: the page at `/`, a `Status` as HTML for a person, what is wrong first (check's verdict).
//! - `server.rs`: the HTTP endpoint that serves it, on threads of its own.
//! - `check.rs`: the verdict on a `Status` (a Nagios level, its problems, one line), the one judgement
//!   `proxymgr status` and the page show, and the table for a person; pure.
//! - `client.rs`: `GET /status` from a running proxymgr over HTTP/1.0, with a timeout and typed errors.
//! - `cli.rs`: `proxymgr status`: proxymgr.yml's `status:` address, the fetch, the verdict and the table, and
//!   the verdict's level as the exit code.
//!
//! **Architecture Invariant:** nothing here can change what proxymgr or HAProxy does: the reconciler publishes
//! a whole `Status` now and then, and a reader only ever sees the last one published, never waits on the
//! reconciler, and sends it nothing.

pub mod check;
pub mod cli;
pub mod client;
pub mod metrics;
mod model;
pub mod page;
pub mod server;

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

pub use model::*;

/// The last `Status` the reconciler published. Publishing swaps an `Arc` under a lock held for that alone, so
/// neither side waits on the other's work.
#[derive(Clone, Default)]
pub struct Published(Arc<Mutex<Arc<Status>>>);

impl Published {
    pub fn publish(&self, status: Arc<Status>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = status;
    }

    pub fn latest(&self) -> Arc<Status> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The wall clock's time, in Unix seconds: what a status's times are compared with (ages, outages).
pub fn now_unix() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}
