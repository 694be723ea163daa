//! Server slots: new servers without a reload on a HAProxy that has no `add server` (1.8 to 2.4). Pure.
//!
//! On such a HAProxy every server a slot can take ([`fits`]) is rendered under a slot's name (`slot1`,
//! `slot2`, ...) rather than its address, and each backend gets [`spare`] empty slots: a `server-template` in
//! maintenance, with the service's server options. A new server fills an empty slot at run time (`set server
//! <b>/slotN addr A port P`, its weight, `state ready`); a server that left the registry and waits in
//! maintenance gives its slot up to a newcomer when no empty one is left. Only when neither is left, or a server
//! needs what a slot cannot take (a host name, options of its own), does a new server take a reload, which
//! renders fresh spare slots.
//!
//! A server keeps its slot across reloads ([`layout`]): HAProxy's names for it, in its stats, its logs and a
//! server-state file, stay the same while it stays in the registry.

use std::collections::{BTreeMap, BTreeSet};

use crate::service::Server;

/// What the names of slots begin with. No server named by its address can take such a name: those hold a `:`.
pub const PREFIX: &str = "slot";

/// The fewest empty slots a backend gets at a reload.
pub const MIN_SPARE: usize = 4;

/// Where an empty slot points until a server fills it: a port nothing listens on, in maintenance all along.
pub const PLACEHOLDER: &str = "127.0.0.1:1";

/// The empty slots a backend of `servers` servers gets at a reload: a quarter of them, and at least
/// [`MIN_SPARE`]. A service that grows by more than a quarter between reloads takes one reload more.
pub fn spare(servers: usize) -> usize {
    MIN_SPARE.max(servers.div_ceil(4))
}

/// HAProxy's name for slot `n`.
pub fn name(n: u32) -> String {
    format!("{PREFIX}{n}")
}

/// The slot a HAProxy server name is, if it is one.
pub fn parse(name: &str) -> Option<u32> {
    let digits = name.strip_prefix(PREFIX)?;
    if digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&n| n > 0)
}

/// Whether a slot can take `server`: `set server ... addr` takes an IP address, not a name, and a slot has the
/// service's server options, not a server's own.
pub fn fits(server: &Server) -> bool {
    server.has_ip() && server.options.is_empty()
}

/// Which slot each server of a backend is in, and which slots are empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// By server name (its address and port).
    pub taken: BTreeMap<String, u32>,
    pub empty: BTreeSet<u32>,
}

impl Layout {
    /// The empty slots as runs of consecutive numbers, one `server-template` line each.
    pub fn empty_runs(&self) -> Vec<(u32, u32)> {
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for &n in &self.empty {
            match runs.last_mut() {
                Some((_, last)) if *last + 1 == n => *last = n,
                _ => runs.push((n, n)),
            }
        }
        runs
    }
}

/// The slots of a backend whose servers are `servers` (sorted, unique), for a config: each server that
/// fits keeps the slot `held` says it has, the others take the lowest numbers free, and [`spare`] more are
/// left empty.
pub fn layout(servers: &[Server], held: impl Fn(&str) -> Option<u32>) -> Layout {
    let mut taken = BTreeMap::new();
    let mut used = BTreeSet::new();
    let mut newcomers = Vec::new();
    for server in servers.iter().filter(|s| fits(s)) {
        let name = server.name();
        match held(&name).filter(|n| !used.contains(n)) {
            Some(n) => {
                used.insert(n);
                taken.insert(name, n);
            }
            None => newcomers.push(name),
        }
    }
    let mut free = (1..).filter(|n| !used.contains(n));
    for name in newcomers {
        taken.insert(name, free.next().expect("the numbers go on"));
    }
    let used: BTreeSet<u32> = taken.values().copied().collect();
    let empty = (1..).filter(|n| !used.contains(n)).take(spare(taken.len())).collect();
    Layout { taken, empty }
}

/// The slots as a serving process has them, for haproxy.cfg between reloads: each server that fits in the slot
/// `held` says it has, and every other of the process's `slots` empty (those of servers gone too). A server
/// with no slot yet, one that waits for a reload, is named by its address.
pub fn serving(
    servers: &[Server],
    held: impl Fn(&str) -> Option<u32>,
    slots: impl IntoIterator<Item = u32>,
) -> Layout {
    let taken: BTreeMap<String, u32> =
        servers.iter().filter(|s| fits(s)).filter_map(|s| Some((s.name(), held(&s.name())?))).collect();
    let used: BTreeSet<u32> = taken.values().copied().collect();
    let empty = slots.into_iter().filter(|n| !used.contains(n)).collect();
    Layout { taken, empty }
}

/// The services a log line about empty slots names.
const SUMMARY_SERVICES: usize = 5;

/// `runtime slots, 4 free in api, 12 free in web` for the log: the services with the fewest empty slots first,
/// at most [`SUMMARY_SERVICES`] of them.
pub fn summary<'a>(empty: impl IntoIterator<Item = (&'a str, usize)>) -> String {
    let mut empty: Vec<(usize, &str)> = empty.into_iter().map(|(name, n)| (n, name)).collect();
    empty.sort();
    let mut text = String::from("runtime slots");
    for (n, name) in empty.iter().take(SUMMARY_SERVICES) {
        text.push_str(&format!(", {n} free in {name}"));
    }
    if empty.len() > SUMMARY_SERVICES {
        text.push_str(&format!(" (and {} more services)", empty.len() - SUMMARY_SERVICES));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(names: &[&str]) -> Vec<Server> {
        let mut servers: Vec<Server> = names
            .iter()
            .map(|s| {
                let (host, port) = s.rsplit_once(':').unwrap();
                Server::new(host, port.parse().unwrap()).unwrap()
            })
            .collect();
        servers.sort();
        servers
    }

    #[test]
    fn spare_slots_are_a_quarter_and_at_least_four() {
        for (servers, spare_slots) in [(0, 4), (1, 4), (16, 4), (17, 5), (100, 25), (1001, 251)] {
            assert_eq!(spare(servers), spare_slots, "{servers} servers");
        }
    }

    #[test]
    fn names_parse_back_and_nothing_else_does() {
        assert_eq!(parse(&name(7)), Some(7));
        for other in ["slot", "slot0", "slot07", "slot-1", "slot1a", "10.0.0.1:80", "slots1", "Slot1"] {
            assert_eq!(parse(other), None, "{other}");
        }
    }

    #[test]
    fn a_first_layout_numbers_servers_in_order_and_leaves_spares() {
        let layout = layout(&servers(&["10.0.0.2:80", "10.0.0.1:80"]), |_| None);
        assert_eq!(layout.taken, BTreeMap::from([("10.0.0.1:80".into(), 1), ("10.0.0.2:80".into(), 2)]));
        assert_eq!(layout.empty, BTreeSet::from([3, 4, 5, 6]));
        assert_eq!(layout.empty_runs(), [(3, 6)]);
    }

    #[test]
    fn servers_keep_their_slots_and_newcomers_fill_the_gaps() {
        let held = BTreeMap::from([("10.0.0.1:80".to_string(), 5), ("10.0.0.3:80".to_string(), 2)]);
        let layout =
            layout(&servers(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]), |n| held.get(n).copied());
        assert_eq!(
            layout.taken,
            BTreeMap::from([("10.0.0.1:80".into(), 5), ("10.0.0.2:80".into(), 1), ("10.0.0.3:80".into(), 2)])
        );
        assert_eq!(layout.empty, BTreeSet::from([3, 4, 6, 7]));
        assert_eq!(layout.empty_runs(), [(3, 4), (6, 7)]);
    }

    #[test]
    fn two_servers_claiming_one_slot_get_two() {
        let layout = layout(&servers(&["10.0.0.1:80", "10.0.0.2:80"]), |_| Some(1));
        assert_eq!(layout.taken, BTreeMap::from([("10.0.0.1:80".into(), 1), ("10.0.0.2:80".into(), 2)]));
    }

    #[test]
    fn the_summary_names_the_fullest_services_first() {
        assert_eq!(summary([("web", 12), ("api", 4)]), "runtime slots, 4 free in api, 12 free in web");
        let many = [("a", 9), ("b", 8), ("c", 7), ("d", 6), ("e", 5), ("f", 4), ("g", 3)];
        assert_eq!(
            summary(many),
            "runtime slots, 3 free in g, 4 free in f, 5 free in e, 6 free in d, 7 free in c (and 2 more services)"
        );
        assert_eq!(summary([]), "runtime slots");
    }

    #[test]
    fn between_reloads_the_file_has_the_serving_processs_slots() {
        let held = BTreeMap::from([("10.0.0.1:80".to_string(), 3), ("10.0.0.9:80".to_string(), 1)]);
        let layout =
            serving(&servers(&["10.0.0.1:80", "10.0.0.2:80"]), |n| held.get(n).copied(), [1, 2, 3, 4]);
        assert_eq!(layout.taken, BTreeMap::from([("10.0.0.1:80".into(), 3)]), "10.0.0.2 waits for a reload");
        assert_eq!(layout.empty, BTreeSet::from([1, 2, 4]), "10.0.0.9 left: its slot is empty in the file");
    }

    #[test]
    fn host_names_and_servers_with_options_of_their_own_take_no_slot() {
        let mut list = servers(&["10.0.0.1:80", "db.example:80", "10.0.0.2:80"]);
        list.iter_mut().find(|s| s.address == "10.0.0.2").unwrap().options = vec!["backup".into()];
        let layout = layout(&list, |_| None);
        assert_eq!(layout.taken, BTreeMap::from([("10.0.0.1:80".into(), 1)]));
    }
}
