//! The `routing` phase (issue 16): many services behind one shared HTTP frontend, routed by `Host`, and what a
//! routing change costs. proxymgr keeps the routes in a HAProxy map through the runtime API (no reload); the
//! baseline renders Synapse's `use_backend <service> if { hdr(host) -i <host> }` lines and reloads for each
//! change (baseline.rs). BENCHMARKS.md, measure 9, describes the method.
//!
//! The tree: `services` services `webNNN`, each joining the frontend `edge` with its own host
//! `webNNN.bench.test` (never changed: the load clients use these) and, at the start, one more,
//! `mNNN.bench.test` (the hosts that move); servers are the real backends, `a` for every service and `b` as
//! well for the odd ones. Each service is only a backend (no `port`). The frontend adds `X-Backend: <backend
//! name>` to every response, so a probe sees which service answered.
//!
//! The changes cycle through three kinds: a move (an `m` host off its service's blob, then onto another's:
//! two writes, timed from the first), an add (a new host onto a service) and a remove (the host the add
//! before it added). Each is timed from just before its first ZooKeeper write until a request with that
//! `Host`, sent through HAProxy every 0.5 ms, reaches the new service (a remove: until HAProxy answers 503,
//! the frontend having no default backend). Meanwhile two clients (one a new connection per request, one
//! HTTP/1.1 keep-alive) send requests for the unchanged hosts, round-robin, and count those that failed or
//! were answered by the wrong service.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use zookeeper::ZooKeeper;

use crate::report::Report;
use crate::stats::Samples;
use crate::support::{self, Backend};
use crate::target::{Frontend, Mode, Target};
use crate::topo::{self, SERVER_ROOT, SERVICE_ROOT};

/// The shared frontend's name, in proxymgr.yml and in the service blobs.
const FRONTEND: &str = "edge";
const DOMAIN: &str = "bench.test";
/// The frontend line that names the backend that answered.
const BACKEND_HEADER_LINE: &str = "http-response set-header X-Backend %b";
/// How often a change's probe asks HAProxy (a probe is a fresh connection through HAProxy to a backend).
const POLL: Duration = Duration::from_micros(500);
/// How long one change may take to show before it counts as timed out.
const CHANGE_DEADLINE: Duration = Duration::from_secs(10);

/// The routes as the registry has them: which hosts each service's blob lists.
struct Edge {
    zk: String,
    /// `hosts[i]`: the hosts of service i, its own first.
    hosts: Vec<Vec<String>>,
}

impl Edge {
    fn new(zk: &str, services: usize) -> Edge {
        Edge { zk: zk.to_string(), hosts: (0..services).map(|i| vec![own_host(i), mobile_host(i)]).collect() }
    }

    fn blob(&self, i: usize) -> String {
        serde_json::json!({
            "type": "zookeeper",
            "server": self.zk,
            "path": format!("{SERVER_ROOT}/{}", service(i)),
            "frontends": { FRONTEND: { "hosts": self.hosts[i] } },
            "listen_options": ["mode http"],
            "server_options": [],
        })
        .to_string()
    }

    /// Writes every server node, then every blob.
    fn populate(&self, client: &ZooKeeper, backends: &[Backend]) {
        for root in [SERVICE_ROOT, SERVER_ROOT] {
            topo::create(client, root, "");
        }
        for i in 0..self.hosts.len() {
            let name = service(i);
            for backend in &backends[..if i % 2 == 1 { 2 } else { 1 }] {
                let json = format!(r#"{{"host":"127.0.0.1","port":{},"name":"{name}"}}"#, backend.port());
                topo::create(client, &format!("{SERVER_ROOT}/{name}/{}", backend.name()), &json);
            }
        }
        for i in 0..self.hosts.len() {
            topo::create(client, &format!("{SERVICE_ROOT}/{}", service(i)), &self.blob(i));
        }
    }

    /// Writes service i's blob; returns the write's round trip.
    fn write(&self, client: &ZooKeeper, i: usize) -> Duration {
        let path = format!("{SERVICE_ROOT}/{}", service(i));
        let t0 = Instant::now();
        client
            .set_data(&path, self.blob(i).into_bytes(), None)
            .unwrap_or_else(|e| panic!("set {path}: {e:?}"));
        t0.elapsed()
    }

    fn owner(&self, host: &str) -> Option<usize> {
        self.hosts.iter().position(|hosts| hosts.iter().any(|h| h == host))
    }

    /// Every routed host with its service.
    fn routes(&self) -> Vec<(String, usize)> {
        let each = self.hosts.iter().enumerate();
        each.flat_map(|(i, hosts)| hosts.iter().map(move |h| (h.clone(), i))).collect()
    }
}

fn service(i: usize) -> String {
    format!("web{i:03}")
}

fn own_host(i: usize) -> String {
    format!("web{i:03}.{DOMAIN}")
}

fn mobile_host(i: usize) -> String {
    format!("m{i:03}.{DOMAIN}")
}

/// What HAProxy answered: the status, and the backend that served (the `X-Backend` header), if any.
#[derive(Debug)]
struct Answer {
    status: u16,
    backend: Option<String>,
}

impl Answer {
    fn served_by(service: &str) -> impl Fn(&Answer) -> bool + '_ {
        move |a: &Answer| a.status == 200 && a.backend.as_deref() == Some(service)
    }
}

/// Reads a response head from `reader`: the status, `X-Backend`, `Content-Length` and whether it closes.
fn read_head(reader: &mut impl BufRead) -> io::Result<(Answer, usize, bool)> {
    let mut status_line = String::new();
    if reader.read_line(&mut status_line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before a response"));
    }
    let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (mut backend, mut length, mut close) = (None, 0, false);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed in the headers"));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("x-backend") {
            backend = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().unwrap_or(0);
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    Ok((Answer { status, backend }, length, close))
}

/// `GET / HTTP/1.0` with `Host: host` through the frontend on a fresh connection.
fn probe(port: u16, host: &str) -> io::Result<Answer> {
    let timeout = Duration::from_secs(2);
    let stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // One write: pieces sent apart meet Nagle's algorithm and the peer's delayed ACK (tests/support/backend.rs).
    (&stream).write_all(format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())?;
    let mut reader = BufReader::new(stream);
    let (answer, _, _) = read_head(&mut reader)?;
    io::copy(&mut reader, &mut io::sink())?;
    Ok(answer)
}

/// One `GET / HTTP/1.1` with `Host: host` on the kept connection (opened if need be; dropped after an error or
/// a response that closes it).
fn keep_alive(port: u16, host: &str, connection: &mut Option<BufReader<TcpStream>>) -> io::Result<Answer> {
    let result = (|| {
        if connection.is_none() {
            let stream = TcpStream::connect(("127.0.0.1", port))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            *connection = Some(BufReader::new(stream));
        }
        let reader = connection.as_mut().expect("connected above");
        reader.get_mut().write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())?;
        let (answer, length, close) = read_head(reader)?;
        reader.read_exact(&mut vec![0; length])?;
        Ok((answer, close))
    })();
    match result {
        Ok((answer, close)) => {
            if close {
                *connection = None;
            }
            Ok(answer)
        }
        Err(e) => {
            *connection = None;
            Err(e)
        }
    }
}

/// Probes `host` at once and then every `POLL` until `done` holds; how long after `since` it first did, or
/// `None` at `deadline`.
fn wait_route(
    port: u16,
    host: &str,
    since: Instant,
    deadline: Duration,
    done: impl Fn(&Answer) -> bool,
) -> Option<Duration> {
    loop {
        if probe(port, host).is_ok_and(|a| done(&a)) {
            return Some(since.elapsed());
        }
        if since.elapsed() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// What a load client saw.
#[derive(Debug, Default, Clone)]
pub struct Traffic {
    pub ok: usize,
    pub failed: usize,
    pub errors: Vec<String>,
}

/// Requests for `hosts` (host, the service that must answer), round-robin, until `stop`, at most `max` of them
/// and for at most `limit`. A request fails when it gets no answer, a status other than 200, or the wrong
/// service's.
fn traffic(
    port: u16,
    hosts: &[(String, String)],
    keep: bool,
    stop: &AtomicBool,
    max: usize,
    limit: Duration,
) -> Traffic {
    let mut seen = Traffic::default();
    let started = Instant::now();
    let mut connection = None;
    let mut k = 0;
    while !stop.load(Ordering::Relaxed) && started.elapsed() < limit && seen.ok + seen.failed < max {
        let (host, service) = &hosts[k % hosts.len()];
        k += 1;
        let answer = if keep { keep_alive(port, host, &mut connection) } else { probe(port, host) };
        let error = match answer {
            Ok(a) if Answer::served_by(service)(&a) => None,
            Ok(a) => Some(format!("{host}: status {} from {:?}", a.status, a.backend)),
            Err(e) => Some(format!("{host}: {e}")),
        };
        match error {
            None => seen.ok += 1,
            Some(e) => {
                seen.failed += 1;
                if seen.errors.len() < 5 {
                    seen.errors.push(e);
                }
            }
        }
    }
    seen
}

/// One side's run of the phase.
#[derive(Default, Clone)]
pub struct RoutingRun {
    pub ran: bool,
    pub moved: Samples,
    pub added: Samples,
    pub removed: Samples,
    /// The ZooKeeper writes' own round trips (a move makes two).
    pub write: Samples,
    /// HAProxy processes started from the first change until the side was idle after the last.
    pub reloads: usize,
    pub close: Traffic,
    pub keep_alive: Traffic,
    /// Hosts that did not route as the registry says once the changes were done.
    pub wrong: Vec<String>,
    pub routes: usize,
    pub seconds: f64,
}

impl RoutingRun {
    fn all(&self) -> Samples {
        let mut all = Samples::new();
        for s in [&self.moved, &self.added, &self.removed] {
            all.extend(s);
        }
        all
    }
}

/// `changes` routing changes on `edge` while two clients send requests for the unchanged hosts.
fn changes(target: &Target, client: &ZooKeeper, edge: &mut Edge, port: u16, changes: usize) -> RoutingRun {
    let services = edge.hosts.len();
    let mut run = RoutingRun { ran: true, ..RoutingRun::default() };
    let stable: Vec<(String, String)> = (0..services).map(|i| (own_host(i), service(i))).collect();
    let stop = AtomicBool::new(false);
    let reloads_before = target.reloads_started();
    let started = Instant::now();
    // Hosts removed, which must answer 503 at the end.
    let mut gone = Vec::new();
    std::thread::scope(|scope| {
        let clients: Vec<_> = [false, true]
            .into_iter()
            .map(|keep| {
                let (stable, stop) = (&stable, &stop);
                scope.spawn(move || traffic(port, stable, keep, stop, 5_000_000, Duration::from_secs(600)))
            })
            .collect();
        for k in 0..changes {
            let round = k / 3;
            match k % 3 {
                0 => {
                    let host = mobile_host(round % services);
                    let from = edge.owner(&host).expect("every m host has an owner");
                    let to = (from + 1 + (round * 7) % (services - 1)) % services;
                    edge.hosts[from].retain(|h| *h != host);
                    edge.hosts[to].push(host.clone());
                    let t0 = Instant::now();
                    run.write.push(edge.write(client, from));
                    run.write.push(edge.write(client, to));
                    let to = service(to);
                    record(
                        &mut run.moved,
                        wait_route(port, &host, t0, CHANGE_DEADLINE, Answer::served_by(&to)),
                    );
                }
                1 => {
                    let host = format!("new{k:04}.{DOMAIN}");
                    let i = (k * 13 + 5) % services;
                    edge.hosts[i].push(host.clone());
                    let t0 = Instant::now();
                    run.write.push(edge.write(client, i));
                    let to = service(i);
                    record(
                        &mut run.added,
                        wait_route(port, &host, t0, CHANGE_DEADLINE, Answer::served_by(&to)),
                    );
                }
                _ => {
                    let host = format!("new{:04}.{DOMAIN}", k - 1);
                    let i = edge.owner(&host).expect("the host the change before added");
                    edge.hosts[i].retain(|h| *h != host);
                    let t0 = Instant::now();
                    run.write.push(edge.write(client, i));
                    let took = wait_route(port, &host, t0, CHANGE_DEADLINE, |a| a.status == 503);
                    record(&mut run.removed, took);
                    gone.push(host);
                }
            }
            // Pacing, not a wait for an event: each change meets a quiet side (the baseline's queue empty).
            target.wait_idle();
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::SeqCst);
        let mut seen = clients.into_iter().map(|c| c.join().unwrap_or_default());
        run.close = seen.next().unwrap_or_default();
        run.keep_alive = seen.next().unwrap_or_default();
    });
    run.seconds = started.elapsed().as_secs_f64();
    target.wait_idle();
    run.reloads = target.reloads_started() - reloads_before;
    let routes = edge.routes();
    run.routes = routes.len() + gone.len();
    for (host, i) in routes {
        match probe(port, &host) {
            Ok(a) if Answer::served_by(&service(i))(&a) => {}
            other => run.wrong.push(format!("{host} (of {}): {other:?}", service(i))),
        }
    }
    for host in gone {
        match probe(port, &host) {
            Ok(a) if a.status == 503 => {}
            other => run.wrong.push(format!("{host} (removed): {other:?}")),
        }
    }
    run
}

fn record(samples: &mut Samples, took: Option<Duration>) {
    match took {
        Some(d) => samples.push(d),
        None => samples.timeouts += 1,
    }
}

/// The phase: `services` services on one shared frontend, `n` routing changes, each side in turn.
pub fn phase(services: usize, n: usize, backends: &[Backend], report: &mut Report) {
    assert!(services >= 2 && backends.len() >= 2, "the routing phase needs two services and two backends");
    report.progress(&format!("routing: starting ZooKeeper, writing {services} services on one frontend"));
    let zk = crate::start_zk(report);
    let client = zk.client();
    let mut edge = Edge::new(&zk.connect_string(), services);
    edge.populate(&client, backends);
    let port = support::reserve_port();
    let frontends =
        [Frontend { name: FRONTEND.to_string(), port, options: vec![BACKEND_HEADER_LINE.to_string()] }];
    let mut runs = BTreeMap::new();
    for mode in crate::modes() {
        report.progress(&format!("routing: {} starting", mode.label()));
        let t0 = Instant::now();
        let mut target = Target::start_with_frontends(mode, &zk, &frontends);
        for (host, i) in edge.routes() {
            let name = service(i);
            if wait_route(port, &host, t0, Duration::from_secs(60), Answer::served_by(&name)).is_none() {
                let why = target.failure().unwrap_or_default();
                panic!(
                    "{} did not route {host} to {} within 60 s {why}\n{}",
                    mode.label(),
                    service(i),
                    crate::tail(&target.log())
                );
            }
        }
        report.progress(&format!(
            "routing: {} routes every host after {:.2} s; {n} routing changes under load",
            mode.label(),
            t0.elapsed().as_secs_f64()
        ));
        let run = changes(&target, &client, &mut edge, port, n);
        report.progress(&format!(
            "routing: {} done in {:.1} s, {} HAProxy starts",
            mode.label(),
            run.seconds,
            run.reloads
        ));
        runs.insert(mode, run);
        if let Some(why) = target.failure() {
            report.failures.push(format!("routing: {}: {why}", mode.label()));
        }
        drop(target);
        // The next side starts on the tree as it was.
        edge = Edge::new(&zk.connect_string(), services);
        for i in 0..services {
            edge.write(&client, i);
        }
    }
    rows(report, services, n, &runs);
}

fn rows(report: &mut Report, services: usize, n: usize, runs: &BTreeMap<Mode, RoutingRun>) {
    let section = report.section(&format!(
        "Routing: {n} routing changes on one shared frontend, {services} services routed by host (issue 16)"
    ));
    let (pm, base) = (&crate::of(runs, Mode::Proxymgr), &crate::of(runs, Mode::Reload));
    for (what, p, b) in [
        (
            "host moved to another service (off the old blob, onto the new: two writes), until a request for it \
             reaches the new service",
            &pm.moved,
            &base.moved,
        ),
        ("host added to a service, until a request for it reaches the service", &pm.added, &base.added),
        ("host removed, until a request for it gets HAProxy's 503", &pm.removed, &base.removed),
        ("all routing changes", &pm.all(), &base.all()),
        ("the ZooKeeper writes' own round trip (inside every figure above)", &pm.write, &base.write),
    ] {
        section.samples(what, p, b, "-", None);
    }
    let show = |r: &RoutingRun, v: usize| if r.ran { v.to_string() } else { "-".into() };
    section.row(
        "HAProxy processes started during the changes",
        show(pm, pm.reloads),
        show(base, base.reloads),
        if pm.ran && base.ran { format!("+{}", base.reloads.saturating_sub(pm.reloads)) } else { "-".into() },
        "0 (issue 16)",
        match (pm.ran, pm.reloads) {
            (false, _) => "not measured".into(),
            (true, 0) => "met".into(),
            (true, r) => format!("**MISSED**: {r} reloads"),
        },
    );
    let traffic = |r: &RoutingRun| {
        if !r.ran {
            return "-".to_string();
        }
        let (c, k) = (&r.close, &r.keep_alive);
        format!(
            "{} failed of {} (connection-close {} of {}, keep-alive {} of {}; {:.0} s)",
            c.failed + k.failed,
            c.ok + c.failed + k.ok + k.failed,
            c.failed,
            c.ok + c.failed,
            k.failed,
            k.ok + k.failed,
            r.seconds
        )
    };
    let failed = |r: &RoutingRun| r.close.failed + r.keep_alive.failed;
    section.row(
        "failed requests for the unchanged hosts during the changes (2 clients: connection-close, keep-alive)",
        traffic(pm),
        traffic(base),
        "-".into(),
        "0 (issue 16)",
        match (pm.ran, failed(pm)) {
            (false, _) => "not measured".into(),
            (true, 0) => "met".into(),
            (true, f) => format!("**MISSED**: {f} failed"),
        },
    );
    let wrong = |r: &RoutingRun| {
        if !r.ran {
            "-".to_string()
        } else if r.wrong.is_empty() {
            format!("all {} as the registry says", r.routes)
        } else {
            format!("{} of {} not as the registry says", r.wrong.len(), r.routes)
        }
    };
    section.row(
        "hosts routed after the last change (and removed hosts answering 503)",
        wrong(pm),
        wrong(base),
        "-".into(),
        "all",
        match (pm.ran, pm.wrong.len()) {
            (false, _) => "not measured".into(),
            (true, 0) => "met".into(),
            (true, w) => format!("**MISSED**: {w} wrong"),
        },
    );
    for (mode, run) in [(Mode::Proxymgr, pm), (Mode::Reload, base)] {
        let errors: Vec<&String> = run.close.errors.iter().chain(&run.keep_alive.errors).collect();
        if !errors.is_empty() {
            section.note(format!("{} request errors (first few): {errors:?}", mode.label()));
        }
        if !run.wrong.is_empty() {
            let first: Vec<&String> = run.wrong.iter().take(5).collect();
            section.note(format!("{} hosts not routed as written (first few): {first:?}", mode.label()));
        }
    }
    section.note(
        "The baseline renders Synapse's routing lines (`use_backend <service> if { hdr(host) -i <host> }`) and \
         reloads per changed config, at once; Synapse itself waits at least `restart_interval` (2 s by default) \
         between reloads, so its figures would be those or later."
            .to_string(),
    );
}
