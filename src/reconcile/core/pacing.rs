//! Pacing reloads: when a reload that waits is due, and which older HAProxy generations a reload stops at once.
//!
//! Each reload leaves the process it replaces serving its open connections until they close or
//! `hard_stop_after` passes, and each such generation holds the memory of a whole HAProxy (about 340 MB at 1000
//! services × 50 servers). So how often proxymgr reloads follows how many of them are still alive. None, and
//! no reload in the last `reload_interval` (a quiet load balancer): a change reloads at once, and what follows
//! it joins the next reload. Some: the least interval between reloads grows fourfold with each, up to
//! [`RELOAD_WAIT_MAX`], so a storm of changes becomes a few reloads while every change still serves within
//! seconds. The optional cap (`haproxy.max_generations`) is the other bound, for machines that cannot hold
//! even that many: the oldest generations are stopped so that the new process makes no more than the cap.
//! Pure: every fact is an argument.

use super::*;
use crate::config::HaproxyConfig;

/// The longest a change waits for its reload, however many older generations are alive: with HAProxy's own
/// start (up to 1–2 s at 1000 services × 50 servers) a new service serves within 10 s (DESIGN §6).
pub const RELOAD_WAIT_MAX: Duration = Duration::from_secs(8);
/// How many times longer the least interval between reloads is with each older generation alive.
const GROWTH: u32 = 4;

/// When a reload is due that changes have waited for since `since`, the last reload having started at `last`,
/// with `old` older generations still alive. Never later than `since` plus the longest of the window, the
/// interval and [`RELOAD_WAIT_MAX`]: `last` is before `since`, and nothing moves `since`.
pub fn reload_due(haproxy: &HaproxyConfig, since: Instant, last: Option<Instant>, old: usize) -> Instant {
    let interval = haproxy.reload_interval();
    let Some(last) = last else { return since };
    if old == 0 && since >= last + interval {
        return since;
    }
    let factor = GROWTH.saturating_pow(u32::try_from(old).unwrap_or(u32::MAX));
    let grown = interval.saturating_mul(factor).min(RELOAD_WAIT_MAX).max(interval);
    (since + haproxy.reload_window()).max(last + grown)
}

/// The older generations to stop before a new process starts so that, with it, no more than `max` are alive
/// (0: no cap): the oldest first. The serving process is never among them: it serves until the new one does.
pub fn over_cap(max: u32, live: &Generations) -> &[u32] {
    let alive_after = 1 + usize::from(live.current.is_some()) + live.old.len();
    let excess = match usize::try_from(max) {
        Ok(max) if max > 0 => alive_after.saturating_sub(max),
        _ => 0,
    };
    &live.old[..excess.min(live.old.len())]
}

impl Core {
    /// The executor's word on the live processes.
    pub(super) fn generations(&mut self, live: Generations) {
        self.born.retain(|pid, _| live.current == Some(*pid) || live.old.contains(pid));
        self.live = live;
    }

    /// When a reload that changes have waited for since `since` is due, as things stand: not before the restart
    /// backoff of a start that failed is over either.
    pub(super) fn reload_due(&self, since: Instant) -> Instant {
        let due = reload_due(&self.config.haproxy, since, self.last_reload, self.live.old.len());
        self.restart_due.map_or(due, |restart| due.max(restart))
    }

    /// Before a new process starts: stops the oldest generations if it would make more than the cap, and says so.
    pub(super) fn enforce_cap(&mut self) {
        let max = self.config.haproxy.max_generations;
        let stopped = over_cap(max, &self.live).to_vec();
        if stopped.is_empty() {
            return;
        }
        let each: Vec<String> = stopped
            .iter()
            .map(|pid| match self.born.get(pid) {
                Some(at) => format!("haproxy[{pid}] ({:.1} s old)", (self.now - *at).as_secs_f64()),
                None => format!("haproxy[{pid}] (left by an earlier proxymgr)"),
            })
            .collect();
        let them = if stopped.len() == 1 { "it" } else { "them" };
        log::warn!(
            "haproxy.max_generations is {max}: stopping {} at once (SIGTERM, HAProxy's hard stop); the connections \
             still open on {them} are cut",
            each.join(", ")
        );
        self.actions.push_back(Action::HardStop { pids: stopped });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (window, interval, changes waiting since, last reload, older generations alive) -> due, all in ms.
    type DueCase = (u64, u64, u64, Option<u64>, usize, u64);
    /// (cap, serving, older ones oldest first) -> stopped before the new process starts.
    type CapCase = (u32, Option<u32>, &'static [u32], &'static [u32]);

    fn config(window_ms: u64, interval_ms: u64) -> HaproxyConfig {
        HaproxyConfig {
            reload_window: window_ms as f64 / 1000.0,
            reload_interval: interval_ms as f64 / 1000.0,
            ..HaproxyConfig::default()
        }
    }

    #[test]
    fn the_due_time_follows_the_old_generations_alive() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let cases: &[DueCase] = &[
            // Never reloaded (the first start does not wait): at once.
            (50, 500, 1000, None, 0, 1000),
            // A quiet load balancer: at once.
            (50, 500, 1000, Some(0), 0, 1000),
            (50, 500, 1000, Some(500), 0, 1000),
            // A reload is recent: the window, and the interval after it.
            (50, 500, 1000, Some(600), 0, 1100),
            (50, 500, 1000, Some(980), 0, 1480),
            (300, 500, 1000, Some(600), 0, 1300),
            // Older generations alive: the interval grows fourfold with each, up to 8 s.
            (50, 500, 1000, Some(0), 1, 2000),
            (50, 500, 3000, Some(0), 1, 3050),
            (50, 500, 2500, Some(2000), 2, 10_000),
            (50, 500, 2500, Some(2000), 3, 10_000),
            (50, 500, 2500, Some(2000), 40, 10_000),
            (50, 100, 1000, Some(900), 1, 1300),
            (50, 100, 1000, Some(900), 2, 2500),
            // An interval longer than the most the growth waits is kept.
            (50, 20_000, 1000, Some(900), 1, 20_900),
            // No interval: nothing grows.
            (50, 0, 1000, Some(900), 3, 1050),
        ];
        for &(window, interval, since, last, old, due) in cases {
            let got = reload_due(&config(window, interval), at(since), last.map(at), old);
            assert_eq!(
                got - t0,
                Duration::from_millis(due),
                "window {window}, interval {interval}, since {since}, last {last:?}, {old} old"
            );
        }
    }

    #[test]
    fn no_change_waits_longer_than_the_bound() {
        let t0 = Instant::now();
        for old in 0..10 {
            for last in [0, 100, 999, 1000] {
                let since = t0 + Duration::from_millis(1000);
                let due = reload_due(&config(50, 500), since, Some(t0 + Duration::from_millis(last)), old);
                assert!(due - since <= RELOAD_WAIT_MAX, "{old} old, last at {last} ms: {:?}", due - since);
            }
        }
    }

    #[test]
    fn the_cap_stops_the_oldest_generations() {
        let live = |current: Option<u32>, old: &[u32]| Generations { current, old: old.to_vec() };
        let cases: &[CapCase] = &[
            (0, Some(5), &[1, 2, 3, 4], &[]),
            (2, Some(5), &[], &[]),
            (2, Some(5), &[4], &[4]),
            (2, Some(5), &[1, 2, 3, 4], &[1, 2, 3, 4]),
            (3, Some(5), &[1, 2, 3, 4], &[1, 2, 3]),
            (4, Some(5), &[2, 3, 4], &[2]),
            (4, Some(5), &[4], &[]),
            // The serving process died: the new one replaces it, and only the older ones count.
            (2, None, &[3, 4], &[3]),
            (3, None, &[4], &[]),
        ];
        for &(max, current, old, stopped) in cases {
            assert_eq!(
                over_cap(max, &live(current, old)),
                stopped,
                "cap {max}, {current:?} serving, old {old:?}"
            );
        }
    }
}
