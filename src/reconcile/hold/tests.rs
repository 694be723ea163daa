//! Table tests of removal holds: each case a service's reports (and hold ends) at given milliseconds, with the
//! servers served after each and what was decided. Servers are `10.0.0.1:<port>`; the default policy holds
//! below 50 % for 60 s.

use super::*;

const DEFAULT: Policy = Policy { threshold_percent: 50, time: Duration::from_secs(60) };

#[derive(Clone, Copy)]
enum Do {
    /// The watcher of this generation reports these servers.
    Report(u64, &'static [u16]),
    /// Generation 0 reports these servers while holds are off.
    ReportOff(&'static [u16]),
    /// A wake: the hold ends if its time is over.
    Expire,
    /// Holds were turned off.
    Release,
}

use Do::*;

/// At `ms`, `do`; then these servers are served and this was decided ("-" when nothing was).
type Step = (u64, Do, &'static [u16], &'static str);

const ONE_TO_SIX: &[u16] = &[1, 2, 3, 4, 5, 6];

#[rustfmt::skip]
const CASES: &[(&str, Policy, &[Step])] = &[
    ("the first report goes through", DEFAULT, &[
        (0, Report(0, &[1]), &[1], "apply"),
    ]),
    ("removals of a few go through", DEFAULT, &[
        (0, Report(0, ONE_TO_SIX), ONE_TO_SIX, "apply"),
        (1000, Report(0, &[1, 2, 3, 4]), &[1, 2, 3, 4], "apply"),
        (2000, Report(0, &[1, 2, 3]), &[1, 2, 3], "apply"),
    ]),
    ("a mass removal keeps the first removed in sorted order until its time is over", DEFAULT, &[
        (0, Report(0, ONE_TO_SIX), ONE_TO_SIX, "apply"),
        (1000, Report(0, &[6]), &[1, 2, 6], "begin 2"),
        (60_999, Expire, &[1, 2, 6], "-"),
        (61_000, Expire, &[6], "end expired 2"),
    ]),
    ("the threshold is rounded up", DEFAULT, &[
        (0, Report(0, &[1, 2, 3]), &[1, 2, 3], "apply"),
        (1000, Report(0, &[3]), &[1, 3], "begin 1"),
    ]),
    ("a service with one server keeps it", DEFAULT, &[
        (0, Report(0, &[1]), &[1], "apply"),
        (1000, Report(0, &[]), &[1], "begin 1"),
        (61_000, Expire, &[], "end expired 1"),
    ]),
    ("a shrink in two steps is measured from the size before the first", DEFAULT, &[
        (0, Report(0, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "apply"),
        (1000, Report(0, &[1, 2, 3, 4, 5, 6, 7]), &[1, 2, 3, 4, 5, 6, 7], "apply"),
        // 3 of 10: two of the four just removed stay; 8 to 10, out of rotation already, stay out.
        (2000, Report(0, &[1, 2, 3]), &[1, 2, 3, 4, 5], "begin 2"),
        // Further removals during the hold are held too, against the same 10.
        (3000, Report(0, &[1]), &[1, 2, 3, 4, 5], "keep 4"),
        // Once the 10 left the window, the hold still measures from it: it does not slide down.
        (61_500, Report(0, &[]), &[1, 2, 3, 4, 5], "keep 5"),
        (62_000, Expire, &[], "end expired 5"),
    ]),
    ("a size older than the hold time is not recent", DEFAULT, &[
        (0, Report(0, ONE_TO_SIX), ONE_TO_SIX, "apply"),
        (1000, Report(0, &[1, 2, 3]), &[1, 2, 3], "apply"),
        (70_000, Report(0, &[1]), &[1, 2], "begin 1"),
    ]),
    ("servers that come back shorten the hold, and end it", DEFAULT, &[
        (0, Report(0, ONE_TO_SIX), ONE_TO_SIX, "apply"),
        (1000, Report(0, &[1]), &[1, 2, 3], "begin 2"),
        (2000, Report(0, &[1, 2]), &[1, 2, 3], "keep 1"),
        // 5 is back: 3 leaves; the size before the shrink is still recent, so 5 goes on being needed.
        (3000, Report(0, &[1, 2, 5]), &[1, 2, 5], "end back 1"),
        (4000, Report(0, &[1]), &[1, 2, 5], "begin 2"),
    ]),
    ("a swap of the whole set goes through", DEFAULT, &[
        (0, Report(0, ONE_TO_SIX), ONE_TO_SIX, "apply"),
        (1000, Report(0, &[11, 12, 13, 14, 15, 16]), &[11, 12, 13, 14, 15, 16], "apply"),
    ]),
    ("a swap in pieces, new ones first, goes through", DEFAULT, &[
        (0, Report(0, &[1, 2]), &[1, 2], "apply"),
        (1000, Report(0, &[1, 2, 11, 12]), &[1, 2, 11, 12], "apply"),
        (2000, Report(0, &[11, 12]), &[11, 12], "apply"),
    ]),
    ("a swap in pieces keeps old servers while the new ones are too few", DEFAULT, &[
        (0, Report(0, ONE_TO_SIX), ONE_TO_SIX, "apply"),
        (1000, Report(0, &[11, 12]), &[1, 11, 12], "begin 1"),
        (2000, Report(0, &[11, 12, 13]), &[11, 12, 13], "end back 1"),
    ]),
    ("after its time the registry's set stands: the same shrink is not held again", DEFAULT, &[
        (0, Report(0, ONE_TO_SIX), ONE_TO_SIX, "apply"),
        (1000, Report(0, &[1, 2]), &[1, 2, 3], "begin 1"),
        (61_000, Expire, &[1, 2], "end expired 1"),
        // Within 60 s of the six, but measured from the two served now: one of two is not held.
        (61_000, Report(0, &[1]), &[1], "apply"),
    ]),
    ("a threshold of 100 % holds every removal", Policy { threshold_percent: 100, ..DEFAULT }, &[
        (0, Report(0, &[1, 2, 3, 4]), &[1, 2, 3, 4], "apply"),
        (1000, Report(0, &[1, 2, 3]), &[1, 2, 3, 4], "begin 1"),
    ]),
    ("a threshold of 0 holds nothing", Policy { threshold_percent: 0, ..DEFAULT }, &[
        (0, Report(0, ONE_TO_SIX), ONE_TO_SIX, "apply"),
        (1000, Report(0, &[1]), &[1], "apply"),
    ]),
    ("a hold time of 0 holds nothing", Policy { time: Duration::ZERO, ..DEFAULT }, &[
        (0, Report(0, ONE_TO_SIX), ONE_TO_SIX, "apply"),
        (1000, Report(0, &[1]), &[1], "apply"),
    ]),
    ("holds turned off end the hold with the next report", DEFAULT, &[
        (0, Report(0, ONE_TO_SIX), ONE_TO_SIX, "apply"),
        (1000, Report(0, &[1]), &[1, 2, 3], "begin 2"),
        (2000, ReportOff(&[1, 7]), &[1, 7], "end off 2"),
    ]),
    ("holds turned off end the hold at once", DEFAULT, &[
        (0, Report(0, ONE_TO_SIX), ONE_TO_SIX, "apply"),
        (1000, Report(0, &[1]), &[1, 2, 3], "begin 2"),
        (2000, Release, &[1], "end off 2"),
        (3000, Release, &[1], "-"),
    ]),
    ("a new watcher's first report goes through", DEFAULT, &[
        (0, Report(0, ONE_TO_SIX), ONE_TO_SIX, "apply"),
        (1000, Report(1, &[1]), &[1], "apply"),
    ]),
    ("a new watcher ends the hold", DEFAULT, &[
        (0, Report(0, ONE_TO_SIX), ONE_TO_SIX, "apply"),
        (1000, Report(0, &[1]), &[1, 2, 3], "begin 2"),
        (2000, Report(1, &[1]), &[1], "end new watcher 2"),
        (2000, Expire, &[1], "-"),
    ]),
];

fn servers(ports: &[u16]) -> Arc<Vec<Server>> {
    Arc::new(ports.iter().map(|&port| Server::new("10.0.0.1", port.into()).unwrap()).collect())
}

fn ports(servers: &[Server]) -> Vec<u16> {
    servers.iter().map(|s| s.port).collect()
}

/// A decision in the table's words.
fn words(decision: &Decision) -> String {
    match decision {
        Decision::Apply => "apply".into(),
        Decision::Begin { kept, .. } => format!("begin {}", kept.len()),
        Decision::Keep { kept, .. } => format!("keep {kept}"),
        Decision::End { why, released, .. } => {
            let why = match why {
                End::Back => "back",
                End::Expired => "expired",
                End::Off => "off",
                End::NewWatcher => "new watcher",
            };
            format!("end {why} {released}")
        }
    }
}

#[test]
fn removal_holds() {
    let t0 = Instant::now();
    for (name, policy, steps) in CASES {
        let mut hold = Hold::default();
        let mut served = Vec::new();
        for &(ms, what, expected, decided) in steps.iter() {
            let now = t0 + Duration::from_millis(ms);
            let outcome = match what {
                Report(generation, reported) => {
                    Some(hold.report(generation, servers(reported), *policy, now))
                }
                ReportOff(reported) => Some(hold.report(0, servers(reported), Policy::OFF, now)),
                Expire => hold.expire(now),
                Release => hold.release(),
            };
            let words = outcome.map_or("-".to_string(), |(serve, decision)| {
                served = ports(&serve);
                words(&decision)
            });
            assert_eq!((served.as_slice(), words.as_str()), (expected, decided), "{name}: at {ms} ms");
            let ends = hold.until().map(|until| (until - t0).as_millis());
            let hold_ends_after = ends.map_or(true, |ends| ends > u128::from(ms));
            assert!(hold_ends_after, "{name}: at {ms} ms the hold ends at {ends:?}");
        }
    }
}

#[test]
fn a_hold_ends_when_it_began_plus_its_time_however_the_set_changes() {
    let t0 = Instant::now();
    let mut hold = Hold::default();
    hold.report(0, servers(ONE_TO_SIX), DEFAULT, t0);
    hold.report(0, servers(&[1, 2]), DEFAULT, t0 + Duration::from_secs(1));
    hold.report(0, servers(&[1]), DEFAULT, t0 + Duration::from_secs(30));
    assert_eq!(hold.until(), Some(t0 + Duration::from_secs(61)));
}

#[test]
fn the_log_gives_the_numbers() {
    let t0 = Instant::now();
    let mut hold = Hold::default();
    hold.report(0, servers(ONE_TO_SIX), DEFAULT, t0);
    let (_, decision) = hold.report(0, servers(&[6]), DEFAULT, t0);
    assert_eq!(
        decision.to_string(),
        "the registry reports 1 of the 6 server(s) it had within 60s, under the 50 % threshold; holding the \
         removal: 2 of the removed server(s) stay in rotation for 60s: 10.0.0.1:1, 10.0.0.1:2"
    );
    let (_, decision) = hold.expire(t0 + Duration::from_secs(60)).unwrap();
    assert_eq!(
        decision.to_string(),
        "the removal hold ends (its time is over): serving the registry's 1 server(s), 2 held server(s) leave \
         rotation"
    );
}

#[test]
fn the_index_knows_the_next_end() {
    let t0 = Instant::now();
    let (mut holding, mut web, mut api) = (Holding::default(), Hold::default(), Hold::default());
    let at = |s| t0 + Duration::from_secs(s);
    for (hold, name, start) in [(&mut web, "web", 2), (&mut api, "api", 1)] {
        holding.report(name, hold, 0, servers(ONE_TO_SIX), DEFAULT, t0);
        let served = holding.report(name, hold, 0, servers(&[1]), DEFAULT, at(start));
        assert_eq!(ports(&served), [1, 2, 3]);
    }
    assert_eq!(holding.next_end(), Some(at(61)));
    holding.report("api", &mut api, 0, servers(&[1, 2, 3]), DEFAULT, at(3));
    assert_eq!(holding.next_end(), Some(at(62)), "api's hold ended early");
    let (_, decision) = web.expire(at(62)).unwrap();
    holding.ended("web", at(62), &decision);
    assert_eq!(holding.next_end(), None);
}
