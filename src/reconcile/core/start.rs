//! Starting HAProxy: a reload asked of the executor, the wait until the new process answers on its socket, a
//! process that died (restarted with backoff), and a config HAProxy rejects (kept aside, not tried again until
//! it changes).

use super::*;

/// Where reloading stands.
pub(super) enum Phase {
    Idle,
    /// Changes need a reload, and have waited for it since then; when it is due is `reload_due`'s word, as the
    /// older generations alive come and go.
    Waiting {
        since: Instant,
    },
    /// A new process started on the candidate, which becomes haproxy.cfg once it answers with its pid.
    Starting(Box<Starting>),
}

pub(super) struct Starting {
    pub(super) pid: u32,
    /// What it runs, once it serves.
    pub(super) state: Running,
    pub(super) ports: BTreeSet<u16>,
    pub(super) skeleton: String,
    pub(super) since: Instant,
    pub(super) next_poll: Instant,
    pub(super) asked: bool,
}

/// A start asked of the executor, until it says whether the process runs.
pub(super) struct Launch {
    pub(super) ports: BTreeSet<u16>,
    pub(super) skeleton: String,
}

impl Core {
    /// Asks for a new process on the whole desired config, which tells the serving ones to finish once it serves.
    pub(super) fn reload(&mut self, reasons: Vec<ReloadReason>) {
        self.phase = Phase::Idle;
        self.pending_since = None;
        self.enforce_cap();
        let text = self.config_text();
        let head = self.head.as_deref().unwrap_or_default();
        let desired = self.services.desired(head, &self.no_dynamic, Scope::All);
        let (mut fds, mut ports) = (Vec::new(), BTreeSet::new());
        for service in desired.services.values() {
            if let Some(&fd) = self.fds.get(&service.spec.port) {
                fds.push(fd);
                ports.insert(service.spec.port);
            }
        }
        self.launch = Some(Launch { ports, skeleton: self.skeleton() });
        self.actions.push_back(Action::Start { text, fds, reasons });
    }

    pub(super) fn started(&mut self, pid: u32, now: Instant) {
        let Some(Launch { ports, skeleton }) = self.launch.take() else { return };
        // What it runs, modelled once it started rather than before: 8-10 ms at 1000 services × 50 servers that
        // HAProxy spends starting on the other core meanwhile. Nothing changed since `reload`: a start's outcome
        // comes back before any other input.
        let head = self.head.as_deref().unwrap_or_default();
        let state = self.services.desired(head, &self.no_dynamic, Scope::All).running();
        self.last_reload = Some(now);
        self.born.insert(pid, now);
        self.restart_due = None;
        let next_poll = now + START_POLL;
        let starting = Starting { pid, state, ports, skeleton, since: now, next_poll, asked: false };
        self.phase = Phase::Starting(Box::new(starting));
        // The new pid must reach the state file before anything else: a proxymgr killed now must be able to
        // take it over.
        self.state_dirty = true;
        self.state_due = now;
        self.save_state(now);
    }

    /// While a new process starts: whether it answers on the socket yet.
    pub(super) fn confirm(&mut self, serving: Result<u32, RuntimeError>, now: Instant) {
        let Phase::Starting(starting) = &mut self.phase else { return };
        starting.asked = false;
        let (pid, elapsed) = (starting.pid, now.saturating_duration_since(starting.since));
        match serving {
            Ok(serving) if serving == pid => {
                log::info!("haproxy[{pid}] serves ({} ms after its start)", elapsed.as_millis());
            }
            _ if elapsed < START_TIMEOUT => return,
            result => {
                let why = result.map_or_else(|e| e.to_string(), |other| format!("pid {other} answers"));
                log::warn!("haproxy[{pid}] did not answer on its socket within {START_TIMEOUT:?} ({why}); assuming it serves");
            }
        }
        let Phase::Starting(starting) = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
        // HAProxy serves it: now it is haproxy.cfg.
        self.actions.push_back(Action::Accept);
        self.rejected = None;
        self.file_stale = false;
        self.running = Some(starting.state);
        // What changed while it started was not planned against it.
        self.dirty_all = true;
        // Listeners neither the new process's config nor the desired state binds close now.
        let mut keep = self.services.ports();
        keep.extend(starting.ports);
        self.fds.retain(|port, _| keep.contains(port));
        self.actions.push_back(Action::CloseListeners { keep });
        self.converge(now);
    }

    /// The serving process died, or one that started exited before it served and HAProxy accepts its config.
    pub(super) fn crashed(&mut self, pid: u32, how: &str, ran: Duration, now: Instant) {
        if ran >= HEALTHY_RUN {
            self.backoff.reset();
        }
        log::error!(
            "haproxy[{pid}] exited unexpectedly ({how}) after {:.1}s; starting it again in {:?}",
            ran.as_secs_f64(),
            self.backoff.peek()
        );
        // An older process may still serve (a new one that failed never told it to stop), but its state is not
        // what proxymgr believes: start afresh from the desired state.
        self.running = None;
        self.phase = Phase::Idle;
        self.schedule_restart(now);
    }

    pub(super) fn schedule_restart(&mut self, now: Instant) {
        self.restart_due = Some(now + self.backoff.fail());
    }

    /// `haproxy -c`'s word on the config of a process that exited before it served. Rejected: the config is kept
    /// aside and not tried again until it changes, and the process it was to replace serves on. Accepted: the
    /// process failed for another reason; its config becomes haproxy.cfg, and HAProxy starts again with backoff.
    pub(super) fn judged(&mut self, result: Result<(), ProcessError>, now: Instant) {
        let Work::Judging { pid, how, ran } = std::mem::replace(&mut self.work, Work::Idle) else { return };
        let Phase::Starting(starting) = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
        match result {
            Err(reason) => {
                self.actions.push_back(Action::Reject { reason: reason.to_string() });
                self.rejected = Some(starting.skeleton);
                // The serving process's state is what it was; the pids are back to what they were.
                self.dirty_all = true;
                self.state_dirty = true;
            }
            Ok(()) => {
                self.actions.push_back(Action::Accept);
                self.crashed(pid, &how, ran, now);
            }
        }
    }
}
