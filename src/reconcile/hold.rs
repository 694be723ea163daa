//! Removal holds: a mass removal of a service's servers is held back for a while. A ZooKeeper partition can
//! expire the sessions of the registrars of most of a service's servers while the servers are fine; applying
//! that at once puts all traffic on the few left and can take them down too. Envoy's panic threshold and
//! Eureka's self-preservation guard against the same failure.
//!
//! Each service has a [`Hold`]: the registry's last set, the sizes it had lately, and the hold under way. The
//! core passes every watcher report through it with `now` and serves what comes out; the [`Holding`] index says
//! when the next hold ends. Pure: no clock, no I/O; the rules, each table-tested below:
//! - A change that leaves fewer than `threshold_percent` of the servers the service had *recently* (the largest
//!   set the registry reported within the last hold time) keeps enough of the servers it removes in rotation
//!   to stay at the threshold (rounded up), for the hold time. Logged once, with the numbers.
//! - Which are kept: of the servers in rotation until this change that it removes, the first in sorted order
//!   (address, then port). Deterministic, and stable from one report to the next: a further removal adds to
//!   them, a return takes the last off. A server removed earlier, and already out of rotation, never returns.
//! - During a hold its reference (the size it started from) stays: a second shrink is measured against it, not
//!   against the set the first one left.
//! - Every server the registry reports counts, new ones too: a swap of the whole set (blue/green) goes through
//!   at once, and so do ordinary removals of a few. A swap in pieces keeps old servers only while the new ones
//!   are fewer than the threshold.
//! - A hold ends early once the registry's set no longer needs any removed server (they came back, or
//!   replacements arrived); when its time is over the registry's set is applied, and the reference starts
//!   afresh from it, so that the same shrink is not held again.
//! - A watcher's first report (a new service, or its watcher replaced) goes through, as does every report
//!   while holds are off (threshold 0, hold time 0, or `"hold_removals": false` in the service's blob).
//! - What is not a change of a service's servers is not held: the registry removing the service removes it,
//!   and an empty report is kept out before it gets here (`allow_empty`; a watcher whose root vanished keeps
//!   its last set).

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::RemovalHold;
use crate::service::Server;

/// When a removal is held, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub threshold_percent: u32,
    pub time: Duration,
}

impl Policy {
    pub const OFF: Policy = Policy { threshold_percent: 0, time: Duration::ZERO };

    /// proxymgr.yml's policy for a service whose blob holds removals (the default), or holds off for one that
    /// opted out.
    pub fn of(config: &RemovalHold, hold_removals: bool) -> Policy {
        if !hold_removals {
            return Policy::OFF;
        }
        Policy { threshold_percent: config.threshold_percent, time: config.hold_time() }
    }

    pub fn is_off(&self) -> bool {
        self.threshold_percent == 0 || self.time.is_zero()
    }

    /// The fewest of `reference` servers that keep a service at the threshold, rounded up.
    fn least(&self, reference: usize) -> usize {
        (reference * self.threshold_percent as usize).div_ceil(100)
    }
}

/// One service's hold state.
#[derive(Debug, Default)]
pub struct Hold {
    /// The watcher whose reports these are: a new one's first report starts afresh.
    generation: u64,
    /// The registry's last set; None before the first report.
    reported: Option<Arc<Vec<Server>>>,
    /// The sizes the registry's set had lately, each with when it stopped being that size. Sizes fall from front
    /// to back (a size no larger than a later one can never be the largest again), so the front is the largest
    /// within the hold time.
    recent: VecDeque<(Instant, usize)>,
    held: Option<Held>,
}

#[derive(Debug)]
struct Held {
    /// The size the service had recently when the hold began.
    reference: usize,
    until: Instant,
    /// The removed servers kept in rotation, sorted.
    kept: Vec<Server>,
}

/// What a report, or the end of a hold's time, came to: the log's words come from its `Display`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The registry's set is served as it is.
    Apply,
    /// A hold begins: the registry reports `reported` of the `reference` servers the service had within `time`,
    /// fewer than `threshold_percent`; the removed servers `kept` stay in rotation for `time`.
    Begin { reported: usize, reference: usize, threshold_percent: u32, kept: Vec<String>, time: Duration },
    /// A hold goes on with the registry's new set: `kept` removed servers stay in rotation.
    Keep { reported: usize, kept: usize },
    /// A hold ends: the `released` servers it kept leave rotation, and the registry's `reported` are served.
    End { why: End, reported: usize, released: usize },
}

/// Why a hold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The registry's set no longer needs any removed server: they came back, or replacements arrived.
    Back,
    /// Its time is over.
    Expired,
    /// Holds were turned off (proxymgr.yml, or the service's blob).
    Off,
    /// The service's watcher was replaced; the new one's first report goes through.
    NewWatcher,
}

impl Hold {
    /// When the hold under way ends; None when none is.
    pub fn until(&self) -> Option<Instant> {
        self.held.as_ref().map(|held| held.until)
    }

    /// The removed servers the hold under way keeps in rotation; none when no hold is under way.
    pub fn kept(&self) -> &[Server] {
        self.held.as_ref().map_or(&[], |held| &held.kept)
    }

    /// The registry's last set, as it reported it (without the servers a hold keeps); None before its first.
    pub fn registry(&self) -> Option<&Arc<Vec<Server>>> {
        self.reported.as_ref()
    }

    /// A report of the watcher `generation` at `now`: the set to serve (the registry's, with the removed servers
    /// a hold keeps) and what was decided.
    pub fn report(
        &mut self,
        generation: u64,
        servers: Arc<Vec<Server>>,
        policy: Policy,
        now: Instant,
    ) -> (Arc<Vec<Server>>, Decision) {
        let previous = match self.reported.take() {
            Some(previous) if self.generation == generation => previous,
            _ => {
                let released = self.held.take().map_or(0, |held| held.kept.len());
                *self = Hold { generation, reported: Some(servers.clone()), ..Hold::default() };
                let decision = if released == 0 {
                    Decision::Apply
                } else {
                    Decision::End { why: End::NewWatcher, reported: servers.len(), released }
                };
                return (servers, decision);
            }
        };
        self.reported = Some(servers.clone());
        self.remember(previous.len(), now, policy.time);
        let held = self.held.take();
        // A hold that goes on ends when it was to.
        let until = held.as_ref().map_or(now + policy.time, |held| held.until);
        let reference = match &held {
            Some(held) => held.reference,
            None => self.recent.front().map_or(0, |&(_, size)| size),
        };
        let short = if policy.is_off() { 0 } else { policy.least(reference).saturating_sub(servers.len()) };
        if short == 0 && held.is_none() {
            // The common case, with no set to build: nothing to hold, and no hold to end.
            return (servers, Decision::Apply);
        }
        let names: BTreeSet<(&str, u16)> = servers.iter().map(key).collect();
        // Of the servers in rotation until now (the registry's last set and those held), those it removes.
        let held_kept = held.as_ref().map_or(&[][..], |held| held.kept.as_slice());
        let mut removed: Vec<&Server> =
            previous.iter().chain(held_kept).filter(|s| !names.contains(&key(s))).collect();
        removed.sort();
        let kept: Vec<Server> = removed.into_iter().take(short).cloned().collect();
        let decision = match (held, kept.is_empty()) {
            (None, true) => Decision::Apply,
            (Some(held), true) => {
                let released = held.kept.iter().filter(|s| !names.contains(&key(s))).count();
                let why = if policy.is_off() { End::Off } else { End::Back };
                Decision::End { why, reported: servers.len(), released }
            }
            (None, false) => {
                let names = kept.iter().map(Server::name).collect();
                let (threshold_percent, time) = (policy.threshold_percent, policy.time);
                Decision::Begin { reported: servers.len(), reference, threshold_percent, kept: names, time }
            }
            (Some(_), false) => Decision::Keep { reported: servers.len(), kept: kept.len() },
        };
        if kept.is_empty() {
            return (servers, decision);
        }
        let mut serve: Vec<Server> = servers.iter().chain(&kept).cloned().collect();
        serve.sort();
        self.held = Some(Held { reference, until, kept });
        (Arc::new(serve), decision)
    }

    /// Ends the hold if its time is over at `now`: the registry's set to serve, and the decision.
    pub fn expire(&mut self, now: Instant) -> Option<(Arc<Vec<Server>>, Decision)> {
        if !self.until().is_some_and(|until| until <= now) {
            return None;
        }
        // The reference starts afresh from the set now served: the same shrink is not held again.
        self.recent.clear();
        self.end(End::Expired)
    }

    /// Ends the hold under way at once (holds were turned off): the registry's set to serve, and the decision.
    pub fn release(&mut self) -> Option<(Arc<Vec<Server>>, Decision)> {
        self.end(End::Off)
    }

    fn end(&mut self, why: End) -> Option<(Arc<Vec<Server>>, Decision)> {
        let held = self.held.take()?;
        let reported = self.reported.clone().unwrap_or_default();
        let decision = Decision::End { why, reported: reported.len(), released: held.kept.len() };
        Some((reported, decision))
    }

    /// The registry's set was `size` servers until `now`: kept while it is within `window`.
    fn remember(&mut self, size: usize, now: Instant, window: Duration) {
        while self.recent.back().is_some_and(|&(_, later)| later <= size) {
            self.recent.pop_back();
        }
        self.recent.push_back((now, size));
        while self.recent.front().is_some_and(|&(until, _)| until + window < now) {
            self.recent.pop_front();
        }
    }
}

/// A server's identity: a set holds one server per address and port.
fn key(server: &Server) -> (&str, u16) {
    (&server.address, server.port)
}

/// The holds under way, by when they end: the core's next wake and the holds to end, without a walk through
/// every service.
#[derive(Debug, Default)]
pub struct Holding {
    due: BTreeSet<(Instant, String)>,
}

impl Holding {
    /// Passes a report of `service`'s watcher through its `hold`, logs what was decided, and keeps the index:
    /// the set to serve.
    pub fn report(
        &mut self,
        service: &str,
        hold: &mut Hold,
        generation: u64,
        servers: Arc<Vec<Server>>,
        policy: Policy,
        now: Instant,
    ) -> Arc<Vec<Server>> {
        let before = hold.until();
        let (servers, decision) = hold.report(generation, servers, policy, now);
        self.moved(service, before, hold.until());
        log(service, &decision);
        servers
    }

    /// A hold of `service` that ended at once or by its time: drop it from the index and log it.
    pub fn ended(&mut self, service: &str, until: Instant, decision: &Decision) {
        self.due.remove(&(until, service.to_string()));
        log(service, decision);
    }

    /// When the next hold ends.
    pub fn next_end(&self) -> Option<Instant> {
        self.due.first().map(|(until, _)| *until)
    }

    /// Every hold under way, each with when it ends.
    pub fn under_way(&self) -> Vec<(Instant, String)> {
        self.due.iter().cloned().collect()
    }

    /// Forgets a hold whose service is gone.
    pub fn forget(&mut self, service: &str, until: Instant) {
        self.due.remove(&(until, service.to_string()));
    }

    fn moved(&mut self, service: &str, before: Option<Instant>, after: Option<Instant>) {
        if before == after {
            return;
        }
        if let Some(until) = before {
            self.due.remove(&(until, service.to_string()));
        }
        if let Some(until) = after {
            self.due.insert((until, service.to_string()));
        }
    }
}

fn log(service: &str, decision: &Decision) {
    match decision {
        Decision::Apply => {}
        Decision::Begin { .. } => log::warn!("service {service}: {decision}"),
        Decision::Keep { .. } | Decision::End { .. } => log::info!("service {service}: {decision}"),
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Apply => write!(f, "applied as the registry reports it"),
            Decision::Begin { reported, reference, threshold_percent, kept, time } => write!(
                f,
                "the registry reports {reported} of the {reference} server(s) it had within {}s, under the \
                 {threshold_percent} % threshold; holding the removal: {} of the removed server(s) stay in \
                 rotation for {}s: {}",
                time.as_secs_f64(),
                kept.len(),
                time.as_secs_f64(),
                kept.join(", ")
            ),
            Decision::Keep { reported, kept } => write!(
                f,
                "the removal hold goes on: the registry reports {reported} server(s), {kept} removed one(s) stay \
                 in rotation"
            ),
            Decision::End { why, reported, released } => {
                let why = match why {
                    End::Back => "the registry's set needs no removed server any more",
                    End::Expired => "its time is over",
                    End::Off => "removal holds are off for it",
                    End::NewWatcher => "its watcher was replaced",
                };
                write!(
                    f,
                    "the removal hold ends ({why}): serving the registry's {reported} server(s), {released} held \
                     server(s) leave rotation"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests;
