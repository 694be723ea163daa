//! Named, supervised threads: a thread that panics tells the reconciler, which stops the daemon with an error
//! so that its supervisor (the init script, systemd) restarts it, instead of running on with a part missing.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread::JoinHandle;

use crossbeam_channel::Sender;

use crate::event::Event;

/// Runs `body` on a thread named `name`. A panic becomes [`Event::ThreadDied`]. A thread the system cannot
/// create (out of memory, `ulimit -u`) is logged with its name and None returned: the caller carries on
/// without it (a watcher keeps its service's last servers) instead of a panic that would orphan HAProxy.
pub fn spawn(
    name: String,
    events: Sender<Event>,
    body: impl FnOnce() + Send + 'static,
) -> Option<JoinHandle<()>> {
    let thread_name = name.clone();
    let thread_name_for_log = name.clone();
    std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(body)) {
                let reason = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".to_string());
                let _ = events.send(Event::ThreadDied { thread: name, reason });
            }
        })
        .map_err(|e| log::error!("cannot create thread {thread_name_for_log}: {e}"))
        .ok()
}
