//! The core's side of removal holds (`reconcile/hold.rs`): a watcher's set passes through its service's hold
//! where sets arrive (`registry.rs`); here holds end, when their time is over or once they are no longer wanted
//! (turned off by SIGHUP or by the service's blob), and a removed service's hold is forgotten.

use super::*;

impl Core {
    /// Ends the holds due at `now` and those no longer wanted: their services serve the registry's set, through
    /// the runtime API like any change.
    pub(super) fn end_holds(&mut self, now: Instant) {
        for (until, name) in self.holding.under_way() {
            // A service removed (or removed and added again) since its hold began has none.
            let held = self.services.map.get_mut(&name).filter(|s| s.hold.until() == Some(until));
            let Some(service) = held else {
                self.holding.forget(&name, until);
                continue;
            };
            let wanted = !Policy::of(&self.config.removal_hold, service.spec.hold_removals).is_off();
            let ended = if wanted { service.hold.expire(now) } else { service.hold.release() };
            let Some((servers, decision)) = ended else { continue };
            self.holding.ended(&name, until, &decision);
            service.reported = servers;
            self.admit(&name);
            self.dirty.insert(name);
            self.state_dirty = true;
        }
    }
}
