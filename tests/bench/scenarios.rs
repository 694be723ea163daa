//! The measurements. Each takes a running `Target` and the ZooKeeper tree it serves, writes to ZooKeeper the way
//! a registry client would, and watches HAProxy's admin socket or its ports for the result. Every wait has a
//! deadline; a sample that misses its deadline is counted as timed out, not dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use zookeeper::{Acl, CreateMode, ZooKeeper};

use crate::haproxy::{self, ServerState};
use crate::stats::Samples;
use crate::support::load::Load;
use crate::support::{self, http_get, Backend};
use crate::target::Target;
use crate::topo::{self, service_blob, Topo, SERVER_ROOT, SERVICE_ROOT};

/// How often a convergence sample polls HAProxy.
const POLL: Duration = Duration::from_micros(200);

fn ready(state: Option<&BTreeMap<String, ServerState>>, name: &str) -> bool {
    state.and_then(|s| s.get(name)).is_some_and(ServerState::ready)
}

/// Cold start: from `t0` (just before the target was started) until every service of `topo` has all its servers
/// in rotation in HAProxy (`show servers state`), and until every port answered an HTTP request (any status:
/// the servers of the generated services are unreachable, so HAProxy answers 503, which still means it serves
/// the port). Both are polled concurrently.
pub struct ColdStart {
    pub state: Option<Duration>,
    pub ports: Option<Duration>,
}

pub fn cold_start(target: &Target, topo: &Topo, t0: Instant, deadline: Duration) -> ColdStart {
    let socket = target.socket();
    let ports_done = Mutex::new(None);
    let state_done = Mutex::new(None);
    let next = AtomicUsize::new(0);
    let answered = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        // Four threads take ports in turn and poll each until it answers.
        for _ in 0..4 {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&port) = topo.ports.get(k) else { break };
                while haproxy::http_status(port, Duration::from_secs(2)).is_none() {
                    if t0.elapsed() > deadline {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                if answered.fetch_add(1, Ordering::SeqCst) + 1 == topo.ports.len() {
                    *ports_done.lock().unwrap() = Some(t0.elapsed());
                }
            });
        }
        scope.spawn(|| {
            let mut pending: Vec<usize> = (0..topo.services).collect();
            while t0.elapsed() < deadline {
                // Nothing answers on the socket yet: one failed connection per sweep, not one per backend (a
                // thousand a sweep would take the CPU the side needs to start).
                if haproxy::serving_pid(&socket).is_none() {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                pending.retain(|&i| {
                    haproxy::ready_servers(&socket, &Topo::service(i))
                        .map_or(true, |r| r.len() != topo.servers)
                });
                if pending.is_empty() {
                    *state_done.lock().unwrap() = Some(t0.elapsed());
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
    });
    let state = state_done.into_inner().unwrap();
    let ports = ports_done.into_inner().unwrap();
    ColdStart { state, ports }
}

/// Runtime-state convergence samples, by kind of change.
#[derive(Default, Clone)]
pub struct Convergence {
    pub out: Samples,
    pub back: Samples,
    pub new: Samples,
    pub weight: Samples,
    /// The ZooKeeper writes' own round trip, as the writer saw it: part of every sample above.
    pub write: Samples,
}

impl Convergence {
    pub fn all(&self) -> Samples {
        let mut all = Samples::new();
        for s in [&self.out, &self.back, &self.new, &self.weight] {
            all.extend(s);
        }
        all
    }
}

/// `rounds` rounds on services spread over the tree; each round: an existing server leaves (its node is
/// deleted) and comes back (re-created), a brand-new server is registered, its weight changes (Nerve `weight`,
/// 1 -> 3), and it leaves again (a second `out` sample). Each sample runs from just before the ZooKeeper write
/// until `show servers state <svc>` shows the change: out = absent or in maintenance; back and new = present
/// and in rotation (with weight 1); weight = `srv_uweight` 3.
pub fn convergence(
    target: &Target,
    client: &ZooKeeper,
    topo: &Topo,
    rounds: usize,
    deadline: Duration,
) -> Convergence {
    let socket = target.socket();
    let mut result = Convergence::default();
    // BENCH_TRACE=1 prints each sample with the wall-clock time of its write, to line it up with proxymgr's log.
    let trace = std::env::var("BENCH_TRACE").as_deref() == Ok("1");
    let record = |samples: &mut Samples, took: Option<Duration>, what: &str, svc: &str, t0: Instant| {
        if trace {
            let wall = std::time::SystemTime::now() - t0.elapsed();
            let wall = wall.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            eprintln!("bench trace: {:.6} {what} {svc} {took:?}", wall.as_secs_f64());
        }
        match took {
            Some(d) => samples.push(d),
            None => samples.timeouts += 1,
        }
    };
    // A pause between changes (after the baseline's queue is empty), so that each sample measures one change on
    // a quiet daemon: pacing, as BENCHMARKS.md describes, not a wait for an event.
    let settle = || {
        target.wait_idle();
        std::thread::sleep(Duration::from_millis(20));
    };
    for r in 0..rounds {
        let i = (r * 37 + 3) % topo.services;
        let j = r % topo.servers;
        let svc = Topo::service(i);
        let name = Topo::server_name(i, j);

        let t0 = Instant::now();
        client
            .delete(&Topo::server_path(i, j), None)
            .unwrap_or_else(|e| panic!("delete {}: {e:?}", Topo::server_path(i, j)));
        result.write.push(t0.elapsed());
        let took = haproxy::wait_state(&socket, &svc, t0, deadline, POLL, |s| !ready(s, &name));
        record(&mut result.out, took, "out", &svc, t0);
        settle();

        let t0 = Instant::now();
        topo::create(client, &Topo::server_path(i, j), &Topo::server_json(i, j, 1));
        result.write.push(t0.elapsed());
        let took = haproxy::wait_state(&socket, &svc, t0, deadline, POLL, |s| {
            s.and_then(|s| s.get(&name)).is_some_and(|st| st.ready() && st.uweight == 1)
        });
        record(&mut result.back, took, "back", &svc, t0);
        settle();

        // A server this tree never had: unique per round.
        let jn = topo.servers + r;
        let new_name = Topo::server_name(i, jn);
        let new_path = Topo::server_path(i, jn);
        let t0 = Instant::now();
        topo::create(client, &new_path, &Topo::server_json(i, jn, 1));
        result.write.push(t0.elapsed());
        let took = haproxy::wait_state(&socket, &svc, t0, deadline, POLL, |s| ready(s, &new_name));
        record(&mut result.new, took, "new", &svc, t0);
        settle();

        let t0 = Instant::now();
        client
            .set_data(&new_path, Topo::server_json(i, jn, 3).into_bytes(), None)
            .unwrap_or_else(|e| panic!("set {new_path}: {e:?}"));
        result.write.push(t0.elapsed());
        let took = haproxy::wait_state(&socket, &svc, t0, deadline, POLL, |s| {
            s.and_then(|s| s.get(&new_name)).is_some_and(|st| st.uweight == 3)
        });
        record(&mut result.weight, took, "weight", &svc, t0);
        settle();

        let t0 = Instant::now();
        client.delete(&new_path, None).unwrap_or_else(|e| panic!("delete {new_path}: {e:?}"));
        result.write.push(t0.elapsed());
        let took = haproxy::wait_state(&socket, &svc, t0, deadline, POLL, |s| !ready(s, &new_name));
        record(&mut result.out, took, "out-new", &svc, t0);
        settle();
    }
    result
}

/// A change that needs a reload: `n` brand-new services (two servers each, the real backends), one at a time.
/// Each sample runs from just before the service's node is created (its servers are registered first) until
/// its port answers 200. Samples are 0.6 s apart, more than proxymgr's default `reload_interval` (0.5 s), so
/// each one measures the reload of one change rather than the rate limit between reloads. Returns the samples
/// and the services created, for the caller to delete once the target is stopped.
pub fn reload_to_serving(
    target: &Target,
    client: &ZooKeeper,
    zk: &str,
    n: usize,
    backends: &[Backend],
    tag: &str,
    deadline: Duration,
) -> (Samples, Vec<String>) {
    let mut samples = Samples::new();
    let mut created = Vec::new();
    for k in 0..n {
        let name = format!("new-{tag}-{k}");
        let port = support::reserve_port();
        topo::create(client, &format!("{SERVER_ROOT}/{name}"), "");
        for backend in backends {
            let json = format!(r#"{{"host":"127.0.0.1","port":{},"name":"{name}"}}"#, backend.port());
            topo::create(client, &format!("{SERVER_ROOT}/{name}/{}", backend.name()), &json);
        }
        created.push(name.clone());
        let t0 = Instant::now();
        topo::create(client, &format!("{SERVICE_ROOT}/{name}"), &service_blob(zk, &name, port, &[]));
        loop {
            if http_get(port).is_ok() {
                samples.push(t0.elapsed());
                break;
            }
            if t0.elapsed() > deadline {
                samples.timeouts += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        target.wait_idle();
        // Pacing, not a wait for an event: samples 0.6 s apart (see above).
        std::thread::sleep(Duration::from_millis(600));
    }
    (samples, created)
}

/// Deletes the services `reload_to_serving` created.
pub fn delete_services(client: &ZooKeeper, names: &[String]) {
    for name in names {
        let _ = client.delete(&format!("{SERVICE_ROOT}/{name}"), None);
        let path = format!("{SERVER_ROOT}/{name}");
        for child in client.get_children(&path, false).unwrap_or_default() {
            let _ = client.delete(&format!("{path}/{child}"), None);
        }
        let _ = client.delete(&path, None);
    }
}

#[derive(Default, Clone)]
pub struct LoadRun {
    pub reloads: usize,
    pub ok: usize,
    pub failed: usize,
    pub errors: Vec<String>,
    pub seconds: f64,
    /// Reloads that did not serve within their deadline.
    pub stalled: usize,
}

/// `n` reloads while two clients send requests to `web_port` as fast as they can: each reload is triggered by a
/// new `timeout server` listen option on the service `other` (its own port), and the next one waits until it
/// serves. Counts failed requests.
#[allow(clippy::too_many_arguments)]
pub fn reloads_under_load(
    target: &Target,
    client: &ZooKeeper,
    zk: &str,
    web_port: u16,
    other_port: u16,
    n: usize,
    keep_alive: bool,
    round: usize,
) -> LoadRun {
    let started = Instant::now();
    let load = Load::start_bounded(web_port, 2, keep_alive, usize::MAX, Duration::from_secs(600));
    let before = target.reloads_served();
    let mut stalled = 0;
    for k in 0..n {
        // Every value differs from the one before, across rounds too.
        let option = format!("timeout server {}s", 11 + round * n + k);
        let blob = service_blob(zk, "other", other_port, &[&option]);
        client
            .set_data(&format!("{SERVICE_ROOT}/other"), blob.into_bytes(), None)
            .expect("set /service_config/other");
        let deadline = Instant::now() + Duration::from_secs(30);
        while target.reloads_served() < before + k + 1 {
            if Instant::now() > deadline {
                stalled += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let reloads = target.reloads_served() - before;
    let report = load.finish();
    LoadRun {
        reloads,
        ok: report.ok,
        failed: report.failed,
        errors: report.errors.into_iter().take(5).collect(),
        seconds: started.elapsed().as_secs_f64(),
        stalled,
    }
}

#[derive(Default, Clone)]
pub struct ChurnRun {
    pub window: Duration,
    pub changes: usize,
    pub reloads: usize,
    pub lag: Samples,
    /// From the last write until every backend's servers in rotation equal what was written.
    pub settle: Option<Duration>,
    /// Backends whose servers in rotation differ from ZooKeeper's at the end (after settling or its deadline),
    /// compared with a fresh read of ZooKeeper.
    pub mismatched: usize,
    pub cpu_percent: Option<f64>,
}

/// Server churn: `rate` server changes per second for `window`, round-robin over every service of `topo`: each
/// service in turn loses one of its servers (node deleted) and gets it back a second later (re-created), a
/// different server each time. About one change in seven is probed: a checker polls that service's state
/// (every 1 ms) until it shows the change, which gives the lag. Deletes and re-creates alternate per service, so
/// the tree is the same after an even number of rounds; the caller restores it anyway.
pub fn churn(
    target: &Target,
    zk: &crate::support::Zk,
    topo: &Topo,
    window: Duration,
    rate: usize,
) -> ChurnRun {
    let socket = target.socket();
    let client = zk.client();
    let reloads_before = target.reloads_started();
    let cpu_before = target.cpu_seconds();
    let (tx, rx) = crossbeam_channel::unbounded::<(usize, usize, bool, Instant)>();
    let lag = Mutex::new(Samples::new());
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut changes = 0;
    // What the writer left in ZooKeeper: service -> server names (the tree starts complete).
    let mut expected: Vec<BTreeSet<String>> =
        (0..topo.services).map(|i| (0..topo.servers).map(|j| Topo::server_name(i, j)).collect()).collect();
    let started = Instant::now();
    let mut last_write = started;
    std::thread::scope(|scope| {
        for _ in 0..6 {
            let rx = rx.clone();
            let (socket, lag) = (&socket, &lag);
            scope.spawn(move || {
                for (i, j, present, t0) in rx {
                    let name = Topo::server_name(i, j);
                    // The same server changes back a second later: a change not seen by then never shows.
                    let limit = Duration::from_millis(990);
                    let took = if t0.elapsed() >= limit {
                        None
                    } else {
                        haproxy::wait_state(
                            socket,
                            &Topo::service(i),
                            t0,
                            limit,
                            Duration::from_millis(1),
                            |s| ready(s, &name) == present,
                        )
                    };
                    let mut lag = lag.lock().unwrap();
                    match took {
                        Some(d) => lag.push(d),
                        None => lag.timeouts += 1,
                    }
                }
            });
        }
        drop(rx);
        let mut k = 0usize;
        loop {
            let due = started + interval * k as u32;
            if due >= started + window {
                break;
            }
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let i = k % topo.services;
            let round = k / topo.services;
            let j = (round / 2 + i) % topo.servers;
            let present = round % 2 == 1;
            let path = Topo::server_path(i, j);
            let t0 = Instant::now();
            if present {
                topo::create(&client, &path, &Topo::server_json(i, j, 1));
            } else {
                client.delete(&path, None).unwrap_or_else(|e| panic!("delete {path}: {e:?}"));
            }
            last_write = Instant::now();
            if present {
                expected[i].insert(Topo::server_name(i, j));
            } else {
                expected[i].remove(&Topo::server_name(i, j));
            }
            if k % 7 == 0 {
                let _ = tx.send((i, j, present, t0));
            }
            k += 1;
        }
        changes = k;
        drop(tx);
    });
    let window_taken = last_write - started;
    let cpu_percent = match (cpu_before, target.cpu_seconds()) {
        (Some(a), Some(b)) => Some((b - a) / window_taken.as_secs_f64() * 100.0),
        _ => None,
    };
    let reloads = target.reloads_started() - reloads_before;

    // Settle: until every backend's servers in rotation are what the writer left in ZooKeeper. A backend seen
    // equal is not looked at again (nothing changes after the last write), so the figure is the time of the
    // sweep that found the last one, at most one sweep (~0.2 ms a backend) late.
    let mut pending: Vec<usize> = (0..topo.services).collect();
    let deadline = Duration::from_secs(120);
    let mut settle = None;
    loop {
        pending.retain(|&i| {
            haproxy::ready_servers(&socket, &Topo::service(i)).map(|r| r.into_iter().collect::<BTreeSet<_>>())
                != Some(expected[i].clone())
        });
        if pending.is_empty() {
            settle = Some(last_write.elapsed());
            break;
        }
        if last_write.elapsed() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // Then the real check, against what ZooKeeper holds.
    let mismatched = mismatches(&socket, &topo.read_zk(&client));
    let _ = client.close();
    ChurnRun {
        window: window_taken,
        changes,
        reloads,
        lag: lag.into_inner().unwrap(),
        settle,
        mismatched,
        cpu_percent,
    }
}

/// How many backends' servers in rotation differ from `expected` (service -> server names).
pub fn mismatches(socket: &std::path::Path, expected: &BTreeMap<String, BTreeSet<String>>) -> usize {
    expected
        .iter()
        .filter(|(svc, names)| {
            haproxy::ready_servers(socket, svc).map(|r| r.into_iter().collect::<BTreeSet<_>>())
                != Some((*names).clone())
        })
        .count()
}

/// Puts back every server of `topo` that is missing (after a churn).
pub fn restore(client: &ZooKeeper, topo: &Topo) {
    for i in 0..topo.services {
        for j in 0..topo.servers {
            let path = Topo::server_path(i, j);
            if matches!(client.exists(&path, false), Ok(None)) {
                let _ = client.create(
                    &path,
                    Topo::server_json(i, j, 1).into_bytes(),
                    Acl::open_unsafe().clone(),
                    CreateMode::Persistent,
                );
            }
        }
    }
}

/// proxymgr's `converge:` debug lines (`converge: <n> step(s), plan <µs> µs, render <µs> µs, services <k> changed`,
/// `<k>` a number or `all`): plan and render microseconds of those with exactly one changed service, and the
/// largest render of those where every service changed.
pub struct ConvergeLog {
    pub lines: usize,
    pub plan: Samples,
    pub render: Samples,
    pub full_render: Option<u64>,
}

pub fn parse_converge(log: &str) -> ConvergeLog {
    let mut out = ConvergeLog { lines: 0, plan: Samples::new(), render: Samples::new(), full_render: None };
    for line in log.lines() {
        let Some(at) = line.find("converge:") else { continue };
        let rest = &line[at..];
        out.lines += 1;
        let (plan, render) = (number_after(rest, "plan "), number_after(rest, "render "));
        if rest.contains("services all changed") {
            out.full_render = out.full_render.max(render);
            continue;
        }
        if number_after(rest, "services ") != Some(1) {
            continue;
        }
        if let Some(plan) = plan {
            out.plan.push_us(plan);
        }
        if let Some(render) = render {
            out.render.push_us(render);
        }
    }
    out
}

/// The unsigned integer right after `key` in `text`.
fn number_after(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let digits: String = text[start..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// The microseconds of proxymgr's `haproxy: <command> (<µs> µs)` lines.
pub fn parse_commands(log: &str) -> Samples {
    let mut samples = Samples::new();
    for line in log.lines() {
        let Some(at) = line.find("haproxy: ") else { continue };
        let rest = &line[at..];
        if let Some(open) = rest.rfind(" (") {
            if let Some(us) = rest[open + 2..].strip_suffix(" µs)").and_then(|n| n.parse().ok()) {
                samples.push_us(us);
            }
        }
    }
    samples
}

/// One look at the target's HAProxy processes during a storm.
#[derive(Debug, Clone, Copy)]
pub struct Census {
    /// Seconds since the storm's first service was created (negative before).
    pub at: f64,
    pub processes: usize,
    /// Their summed resident memory, kB.
    pub rss_kb: u64,
}

#[derive(Default, Clone)]
pub struct StormRun {
    /// Every 0.1 s from a second before the storm to two seconds after its last service served.
    pub census: Vec<Census>,
    /// From each new service's creation until its port answers 200.
    pub delays: Samples,
    /// HAProxy processes started from the storm's first service on.
    pub reloads: usize,
    /// Connections held through the `hold` service, and those of them found cut at the end.
    pub held: usize,
    pub cut: usize,
}

impl StormRun {
    pub fn peak_processes(&self) -> Option<usize> {
        self.census.iter().map(|c| c.processes).max()
    }

    pub fn peak_rss_kb(&self) -> Option<u64> {
        self.census.iter().map(|c| c.rss_kb).max()
    }
}

/// A reload storm (issue 12 §2): `n` brand-new services (two servers each, the real backends) created
/// `spacing` apart, while clients hold connections through every HAProxy. The connections go to a `mode tcp`
/// service `hold-<tag>` in front of `holder`, which waits for a request that never comes: a new one every 0.1 s
/// from a second before the storm until its end, so each HAProxy that serves for a moment keeps some, and
/// lives on after a reload until they close or `hard_stop_after` (60 s) passes. Meanwhile a census every 0.1 s
/// counts the target's HAProxy processes and their summed RSS, and each new service's port is polled every
/// 10 ms until it answers 200. Returns the services created, the hold service among them, for the caller to
/// delete once the target is stopped.
#[allow(clippy::too_many_arguments)]
pub fn storm(
    target: &Target,
    client: &ZooKeeper,
    zk: &str,
    n: usize,
    spacing: Duration,
    backends: &[Backend],
    holder: &Backend,
    tag: &str,
) -> (StormRun, Vec<String>) {
    let hold = format!("hold-{tag}");
    let hold_port = support::reserve_port();
    let json = format!(r#"{{"host":"127.0.0.1","port":{},"name":"{hold}"}}"#, holder.port());
    topo::create(client, &format!("{SERVER_ROOT}/{hold}/{}", holder.name()), &json);
    let options = ["mode tcp", "timeout client 5m", "timeout server 5m"];
    topo::create(client, &format!("{SERVICE_ROOT}/{hold}"), &service_blob(zk, &hold, hold_port, &options));
    support::wait_until(Duration::from_secs(30), "the hold service to serve", || http_get(hold_port).is_ok());
    target.wait_idle();

    let mut created = vec![hold];
    let mut run = StormRun::default();
    let census = Mutex::new(Vec::new());
    let held = Mutex::new(Vec::new());
    let delays = Mutex::new(Samples::new());
    let done = std::sync::atomic::AtomicBool::new(false);
    let t0 = Instant::now() + Duration::from_secs(1);
    let since_t0 = || {
        let now = Instant::now();
        now.checked_duration_since(t0)
            .map_or_else(|| -t0.duration_since(now).as_secs_f64(), |d| d.as_secs_f64())
    };
    // Pacing throughout, not waits for events: the census and the holders every 0.1 s, a service every `spacing`.
    let tick = Duration::from_millis(100);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                let (processes, rss_kb) = target.haproxy_census();
                census.lock().unwrap().push(Census { at: since_t0(), processes, rss_kb });
                std::thread::sleep(tick);
            }
        });
        scope.spawn(|| {
            let storm_end = t0 + spacing * n as u32;
            while Instant::now() < storm_end && !done.load(Ordering::SeqCst) {
                if let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", hold_port)) {
                    held.lock().unwrap().push(stream);
                }
                std::thread::sleep(tick);
            }
        });
        if let Some(wait) = t0.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let reloads_before = target.reloads_started();
        let mut pollers = Vec::new();
        for k in 0..n {
            if let Some(wait) = (t0 + spacing * k as u32).checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let name = format!("storm-{tag}-{k}");
            let port = support::reserve_port();
            for backend in backends {
                let json = format!(r#"{{"host":"127.0.0.1","port":{},"name":"{name}"}}"#, backend.port());
                topo::create(client, &format!("{SERVER_ROOT}/{name}/{}", backend.name()), &json);
            }
            let born = Instant::now();
            topo::create(client, &format!("{SERVICE_ROOT}/{name}"), &service_blob(zk, &name, port, &[]));
            created.push(name);
            let delays = &delays;
            pollers.push(scope.spawn(move || {
                while born.elapsed() < Duration::from_secs(60) {
                    if http_get(port).is_ok() {
                        delays.lock().unwrap().push(born.elapsed());
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                delays.lock().unwrap().timeouts += 1;
            }));
        }
        for poller in pollers {
            let _ = poller.join();
        }
        run.reloads = target.reloads_started() - reloads_before;
        // The tail of the measurement: two more seconds of census after the last service served.
        std::thread::sleep(Duration::from_secs(2));
        done.store(true, Ordering::SeqCst);
    });
    let held = held.into_inner().unwrap();
    run.held = held.len();
    run.cut = held.iter().filter(|stream| cut(stream)).count();
    run.census = census.into_inner().unwrap();
    run.delays = delays.into_inner().unwrap();
    (run, created)
}

/// Whether the other end closed a held connection (it is silent while it stays open).
fn cut(mut stream: &std::net::TcpStream) -> bool {
    use std::io::Read;
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    match stream.read(&mut [0; 64]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}
