//! Converging: plan against the serving process, carry the runtime steps out one at a time, then rewrite
//! haproxy.cfg, or wait for a reload, or reload.

use super::*;

pub(super) struct Steps {
    pub(super) queue: VecDeque<Step>,
    pub(super) sent: Option<Step>,
    pub(super) carried: Carried,
    pub(super) after: After,
}

/// What the steps were for.
pub(super) enum After {
    /// A converge, which finishes once they are done.
    Converge(Box<Converging>),
    /// The drift check's deletes of servers long gone: each is worth a try, none a reload.
    Tidy,
}

pub(super) struct Converging {
    pub(super) reasons: Vec<ReloadReason>,
    pub(super) awaiting: bool,
    /// The services whose servers were compared; None for every one.
    pub(super) changed: Option<BTreeSet<String>>,
    pub(super) steps: usize,
    /// Since when the registry changes this converge brings waited.
    pub(super) changes_since: Option<Instant>,
    pub(super) plan_time: Duration,
    pub(super) render_time: Duration,
}

/// What carrying out a plan's steps came to.
#[derive(Default)]
pub(super) struct Carried {
    pub(super) applied: usize,
    /// Services whose dynamic servers HAProxy refused.
    pub(super) refused: Vec<String>,
    /// Servers `add server` refused for a reason of their own, with whether a reload would refuse them too
    /// (they are held out then), and HAProxy's reply.
    pub(super) servers: Vec<(String, Server, Refused, String)>,
    /// Why the rest was not carried out.
    pub(super) failure: Option<ReloadReason>,
}

impl Core {
    /// Brings HAProxy (its runtime state first, its config by reload when it must) in line with the desired state.
    pub(super) fn converge(&mut self, now: Instant) {
        if self.busy() {
            self.deferred = true;
            return;
        }
        if let Phase::Starting(starting) = &mut self.phase {
            // Nothing is sent to a new process before it answers on the socket with its pid.
            if !starting.asked {
                starting.asked = true;
                starting.next_poll = now + START_POLL;
                self.actions.push_back(Action::AskServing { pid: starting.pid });
            }
            return;
        }
        if self.restart_due.is_some_and(|due| due <= now) {
            self.restart_due = None;
        }
        let awaiting = self.awaiting(now);
        if self.running.is_none() {
            // Nothing serves: start as soon as the first state is complete, or the restart backoff is over.
            if !awaiting && self.restart_due.is_none() && !self.rejects_again() {
                self.reload(vec![ReloadReason::FirstStart]);
            }
            return;
        }
        // Only the services whose servers changed are looked at, unless something may have changed for every one
        // of them (a new process, a drift check), or a reload waits (its reasons must be judged again, whatever
        // else changes): at 1000 services a walk through every server is most of a change's cost. When services
        // came or went, or the last plan wanted a reload it did not do, every service's presence and skeleton are
        // compared too, which is cheap, with the servers of the services its reasons named (`converged`).
        let servers_all = std::mem::take(&mut self.dirty_all) || matches!(self.phase, Phase::Waiting { .. });
        let reshaped = std::mem::take(&mut self.reshaped);
        let dirty = std::mem::take(&mut self.dirty);
        let scope = match (servers_all, reshaped) {
            (true, _) => Scope::All,
            (false, true) => Scope::Reshaped(&dirty),
            (false, false) => Scope::Changed(&dirty),
        };
        let started = (self.measure)();
        self.refresh_renders(scope);
        let render_time = (self.measure)() - started;
        let started = (self.measure)();
        let desired = self.desired(scope);
        let Some(running) = self.running.as_ref() else { return };
        let plan = plan(running, &desired, &self.caps, scope);
        let plan_time = (self.measure)() - started;
        let converging = Converging {
            reasons: plan.reload,
            awaiting,
            changed: (!servers_all).then_some(dirty),
            steps: plan.steps.len(),
            changes_since: self.observed.take_changed_since(),
            plan_time,
            render_time,
        };
        if plan.steps.is_empty() {
            self.converged(converging, Carried::default(), now);
        } else {
            let after = After::Converge(Box::new(converging));
            let steps = Steps { queue: plan.steps.into(), sent: None, carried: Carried::default(), after };
            self.work = Work::Steps(Box::new(steps));
        }
    }

    /// A step's commands went through, or one failed.
    pub(super) fn ran(&mut self, result: Result<(), CommandFailure>, now: Instant) {
        // The options every server of a refused server's service gets, which tell whom a refusal is about.
        let shared: Vec<String> = match (&self.work, &result) {
            (Work::Steps(steps), Err(_)) => {
                match steps.sent.as_ref().and_then(|s| self.services.map.get(s.service())) {
                    Some(s) => self.shared_options(&s.spec).into_iter().map(String::from).collect(),
                    None => Vec::new(),
                }
            }
            _ => Vec::new(),
        };
        let Work::Steps(steps) = &mut self.work else { return };
        let Some(step) = steps.sent.take() else { return };
        self.observed.ran(&step, &result);
        self.observed.stale(step.service());
        match result {
            Ok(()) => {
                if let Some(running) = self.running.as_mut() {
                    running.apply(&step);
                }
                steps.carried.applied += 1;
            }
            Err(failure) => match steps.after {
                // One at a time: a server that still has connections stays until the next check.
                After::Tidy => log::debug!("{}; it stays in maintenance for now", failure.message),
                After::Converge(_) if matches!(failure.command, Command::AddServer { .. }) => {
                    let (Step::Add { service, server, .. }, Some(refusal)) = (&step, &failure.refusal) else {
                        log::error!("{}; falling back to a reload", failure.message);
                        steps.carried.failure = Some(ReloadReason::RuntimeFailed(failure.message));
                        steps.queue.clear();
                        return self.steps_done(now);
                    };
                    let shared: Vec<&str> = shared.iter().map(String::as_str).collect();
                    match quarantine::refused(refusal, &shared, server) {
                        Refused::Backend => {
                            log::warn!(
                                "service {service}: {}; its new servers take a reload until its server options change",
                                failure.message
                            );
                            steps.carried.refused.push(service.clone());
                        }
                        how => steps.carried.servers.push((
                            service.clone(),
                            server.clone(),
                            how,
                            failure.message,
                        )),
                    }
                }
                After::Converge(_) => {
                    if !matches!(step, Step::Delete { .. }) {
                        log::error!("{}; falling back to a reload", failure.message);
                    }
                    steps.carried.failure = Some(ReloadReason::RuntimeFailed(failure.message));
                    steps.queue.clear();
                }
            },
        }
        if steps.queue.is_empty() {
            self.steps_done(now);
        }
    }

    fn steps_done(&mut self, now: Instant) {
        let Work::Steps(steps) = std::mem::replace(&mut self.work, Work::Idle) else { return };
        match steps.after {
            After::Converge(converging) => self.converged(*converging, steps.carried, now),
            After::Tidy => self.dirty_all = true,
        }
    }

    /// The end of a converge, once its steps are carried out: rewrite the file, or wait for a reload, or reload.
    pub(super) fn converged(&mut self, converging: Converging, carried: Carried, now: Instant) {
        let Converging { mut reasons, awaiting, changed, steps, changes_since, plan_time, render_time } =
            converging;
        if let Some(since) = changes_since.filter(|_| carried.applied > 0) {
            self.observed.applied(since, now);
        }
        // The changed services' server lines, for the file: after HAProxy got the change, not before. (With
        // slots they are rendered as the file is written: they change with the serving process too.)
        let started = (self.measure)();
        match &changed {
            _ if self.caps.slots => {}
            Some(names) => names.iter().filter_map(|name| self.services.map.get(name)).for_each(|s| {
                self.lines(s);
            }),
            None => self.services.map.values().for_each(|s| {
                self.lines(s);
            }),
        }
        let render_time = render_time + ((self.measure)() - started);
        log::debug!(
            "converge: {steps} step(s), plan {} µs, render {} µs, services {} changed",
            plan_time.as_micros(),
            render_time.as_micros(),
            changed.map_or_else(|| "all".to_string(), |s| s.len().to_string())
        );
        self.file_stale |= carried.applied > 0;
        for (service, server, how, reason) in carried.servers {
            let Some(s) = self.services.map.get(&service) else { continue };
            let out = how == Refused::Server;
            if self.quarantine.hold(&service, &s.spec, &server, out, &reason) {
                let origin = server.origin.as_deref().map(|o| format!(" ({o})")).unwrap_or_default();
                let what = if out { "held out until its registration changes" } else { "it goes by reload" };
                log::warn!("service {service}: server {server}{origin}: {reason}; {what}");
            }
            if out {
                self.admit(&service);
                self.dirty.insert(service);
            } else {
                reasons.push(ReloadReason::ByReload { service, server: server.name() });
            }
        }
        for service in carried.refused {
            let options = self.services.map.get(&service).map(|s| s.spec.server_options.clone());
            self.no_dynamic.insert(service.clone(), options.unwrap_or_default());
            reasons.push(ReloadReason::DynamicRefused(service));
        }
        reasons.extend(carried.failure);
        // While anything wants a reload (or failed, and was not done), the next plan judges it again: every
        // service's presence and skeleton, the servers of the services the reasons name, and every server after
        // a failed runtime command. At 1000 × 50 a plan of every server is 7 ms, on the way of a new service
        // whose first server set the reload waited for.
        self.reshaped |= !reasons.is_empty();
        for reason in &reasons {
            match reason.service() {
                Some(service) => {
                    self.dirty.insert(service.to_string());
                }
                None => self.dirty_all |= matches!(reason, ReloadReason::RuntimeFailed(_)),
            }
        }
        self.wants_reload = !reasons.is_empty();
        if reasons.is_empty() {
            self.phase = Phase::Idle;
            self.pending_since = None;
            if self.file_stale && now >= self.file_due {
                self.write_file(now);
            }
            return;
        }
        if awaiting || self.rejected.as_ref() == Some(&self.skeleton()) {
            // Not now: the next change, or the end of the wait for a first server set, brings us back.
            self.phase = Phase::Idle;
            return;
        }
        let since = match self.phase {
            Phase::Idle => {
                let since = self.pending_since.unwrap_or(now);
                let wait = self.reload_due(since).saturating_duration_since(now);
                let old = self.live.old.len();
                log::debug!("reload due in {wait:?} ({old} older generation(s) alive): {}", join(&reasons));
                since
            }
            Phase::Waiting { since } => since,
            Phase::Starting(_) => return,
        };
        if now >= self.reload_due(since) {
            reasons.dedup();
            self.reload(reasons);
        } else {
            self.phase = Phase::Waiting { since };
        }
    }
}

fn join(reasons: &[ReloadReason]) -> String {
    reasons.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}
