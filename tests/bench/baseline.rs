//! The baseline: what most people run today (consul-template, confd, or the original ProxyMgr without its quiet
//! period): on every change in the registry, render the whole haproxy.cfg from a template and reload HAProxy
//! with `haproxy -f cfg -db -sf <old pids>`, HAProxy binding every port itself.
//!
//! It follows the same ZooKeeper layout as proxymgr with two persistent recursive watches (`/service_config` and
//! `/services`). Each event names a node; the loop re-reads what that node belongs to (a service's blob, or one
//! service's server list: get_children plus a get_data per server), drains whatever else is already queued with
//! it (a reload takes long enough that changes pile up, and re-reading them once is what every such tool does),
//! renders the full file, and reloads if the text changed. A reload is synchronous, like a `reload` command
//! that returns once the new process runs: the loop waits until the new process answers `show info` on the
//! admin socket with its pid, then handles the next batch. Old processes get `-sf` (soft stop) and are reaped.
//!
//! It renders the same `global` and `defaults` lines as proxymgr's config in the same run, the same admin
//! socket (`mode 600 level admin`) and `hard-stop-after`, but none of proxymgr's extras: no inherited
//! listeners, no `option idle-close-on-response`. It runs as a thread of the bench program.
//!
//! Shared frontends (issue 16, the `routing` phase) are rendered as Synapse renders its `shared_frontend`: one
//! `frontend` section with its `bind` line and the frontend's options, then, service by service (by name), one
//! `use_backend <service> if { hdr(host) -i <host> }` line per host the service's blob lists under
//! `frontends.<name>.hosts` (the same blob proxymgr reads). A service that joins a frontend and has no `port`
//! is a `backend` section. A routing change is a changed blob, so it takes a full render and a reload, as with
//! Synapse. Only host routes are rendered (`paths` and `default` are not): the routing phase uses hosts only.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use zookeeper::{AddWatchMode, WatchedEvent, ZkError, ZooKeeper};

use crate::haproxy;
use crate::target::Frontend;
use crate::topo::{SERVER_ROOT, SERVICE_ROOT};

/// How long a new HAProxy may take to answer on the socket (a 1000×50 config takes ~1 s).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What the bench reads from the running baseline.
#[derive(Default)]
pub struct Shared {
    stop: AtomicBool,
    /// HAProxy processes started (the first start included) and those that went on to serve.
    pub reloads_started: AtomicUsize,
    pub reloads_served: AtomicUsize,
    pub reloads_failed: AtomicUsize,
    /// True from an event's arrival until its reload serves (or the rendered text did not change).
    pub busy: AtomicBool,
    /// The baseline thread's id, for its CPU time in /proc/self/task/<tid>/stat.
    pub tid: AtomicU64,
    /// Microseconds each full render of haproxy.cfg took.
    pub render_us: Mutex<Vec<u64>>,
    pub error: Mutex<Option<String>>,
}

pub struct Baseline {
    dir: tempfile::TempDir,
    pub shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Baseline {
    /// Starts the loop against the ZooKeeper at `zk`, rendering `frontends` as shared frontends; does not wait
    /// for anything.
    pub fn start(zk: &str, global: &[&str], defaults: &[&str], frontends: &[Frontend]) -> Baseline {
        let mut dir =
            tempfile::Builder::new().prefix("bench-reload-").tempdir().expect("a temporary directory");
        if std::env::var("PROXYMGR_TEST_KEEP").as_deref() == Ok("1") {
            dir.disable_cleanup(true);
            eprintln!("keeping {}", dir.path().display());
        }
        let shared = Arc::new(Shared::default());
        let head = head(&dir.path().join("haproxy.sock"), global, defaults);
        let frontends = frontends.to_vec();
        let thread = std::thread::Builder::new()
            .name("reload-baseline".into())
            .spawn({
                let (zk, dir, shared) = (zk.to_string(), dir.path().to_path_buf(), Arc::clone(&shared));
                move || {
                    let tid = fs::read_link("/proc/thread-self")
                        .ok()
                        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
                        .unwrap_or(0);
                    shared.tid.store(tid, Ordering::SeqCst);
                    let mut processes = Processes::new(&dir);
                    if let Err(e) = run(&zk, &dir, &head, &frontends, &shared, &mut processes) {
                        eprintln!("reload baseline: {e}");
                        *shared.error.lock().unwrap() = Some(e);
                    }
                    processes.stop_all();
                }
            })
            .expect("spawn the baseline thread");
        Baseline { dir, shared, thread: Some(thread) }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn error(&self) -> Option<String> {
        self.shared.error.lock().unwrap().clone()
    }

    /// Stops the loop and every HAProxy it started.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One service as the baseline knows it.
#[derive(Debug, Clone, Default)]
struct Service {
    /// None: the service is only a backend of the shared frontends it joins.
    port: Option<u16>,
    path: String,
    /// Frontend name -> the host names the service's blob routes to it there.
    routes: BTreeMap<String, Vec<String>>,
    listen_options: Vec<String>,
    server_options: Vec<String>,
    /// node name -> server line's name, endpoint and weight.
    servers: BTreeMap<String, Server>,
}

#[derive(Debug, Clone)]
struct Server {
    address: String,
    port: u16,
    weight: Option<u64>,
}

/// The text every render starts with and the shared frontends it ends with.
struct Fixed<'a> {
    head: &'a str,
    frontends: &'a [Frontend],
}

fn run(
    zk: &str,
    dir: &Path,
    head: &str,
    frontends: &[Frontend],
    shared: &Shared,
    processes: &mut Processes,
) -> Result<(), String> {
    let fixed = Fixed { head, frontends };
    let client = connect(zk, &shared.stop)?;
    let (tx, rx) = crossbeam_channel::unbounded::<String>();
    for root in [SERVICE_ROOT, SERVER_ROOT] {
        let tx = tx.clone();
        client
            .add_watch(root, AddWatchMode::PersistentRecursive, move |event: WatchedEvent| {
                if let Some(path) = event.path {
                    let _ = tx.send(path);
                }
            })
            .map_err(|e| format!("watch {root}: {e:?}"))?;
    }

    let mut services = read_all(&client)?;
    let mut last = String::new();
    shared.busy.store(true, Ordering::SeqCst);
    render_and_reload(&services, &fixed, dir, shared, processes, &mut last);
    shared.busy.store(false, Ordering::SeqCst);

    while !shared.stop.load(Ordering::SeqCst) {
        processes.reap();
        let first = match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(path) => path,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return Err("the ZooKeeper client went away".into()),
        };
        shared.busy.store(true, Ordering::SeqCst);
        let mut paths: BTreeSet<String> = BTreeSet::from([first]);
        paths.extend(rx.try_iter());
        apply(&client, &mut services, &paths);
        render_and_reload(&services, &fixed, dir, shared, processes, &mut last);
        if rx.is_empty() {
            shared.busy.store(false, Ordering::SeqCst);
        }
    }
    let _ = client.close();
    Ok(())
}

fn connect(zk: &str, stop: &AtomicBool) -> Result<ZooKeeper, String> {
    let client = ZooKeeper::connect(zk, Duration::from_secs(10), |_event: WatchedEvent| {})
        .map_err(|e| format!("connect to {zk}: {e:?}"))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.exists("/", false).is_err() {
        if Instant::now() > deadline || stop.load(Ordering::SeqCst) {
            return Err(format!("ZooKeeper at {zk} did not answer"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(client)
}

/// Every service and its servers, read with 8 threads (as a template tool reads its dependencies in parallel).
fn read_all(client: &ZooKeeper) -> Result<BTreeMap<String, Service>, String> {
    let names =
        client.get_children(SERVICE_ROOT, false).map_err(|e| format!("children of {SERVICE_ROOT}: {e:?}"))?;
    let next = AtomicUsize::new(0);
    let found = Mutex::new(BTreeMap::new());
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(name) = names.get(k) else { break };
                if let Some(service) = read_service(client, name) {
                    found.lock().unwrap().insert(name.clone(), service);
                }
            });
        }
    });
    Ok(found.into_inner().unwrap())
}

/// A service's blob and its servers; `None` if the node is gone or its blob is not one.
fn read_service(client: &ZooKeeper, name: &str) -> Option<Service> {
    let (data, _) = client.get_data(&format!("{SERVICE_ROOT}/{name}"), false).ok()?;
    let blob: serde_json::Value = serde_json::from_slice(&data).ok()?;
    let strings = |key: &str| -> Vec<String> {
        blob[key]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    let routes: BTreeMap<String, Vec<String>> = blob["frontends"]
        .as_object()
        .map(|joins| {
            joins
                .iter()
                .map(|(frontend, join)| {
                    let hosts = join["hosts"].as_array().map(Vec::as_slice).unwrap_or_default();
                    let hosts = hosts.iter().filter_map(|h| h.as_str().map(str::to_ascii_lowercase));
                    (frontend.clone(), hosts.collect())
                })
                .collect()
        })
        .unwrap_or_default();
    let port = match blob["port"].as_u64() {
        Some(port) => Some(port as u16),
        None if !routes.is_empty() => None,
        None => return None,
    };
    let mut service = Service {
        port,
        path: blob["path"].as_str()?.to_string(),
        routes,
        listen_options: strings("listen_options"),
        server_options: strings("server_options"),
        servers: BTreeMap::new(),
    };
    service.servers = read_servers(client, &service.path);
    Some(service)
}

fn read_servers(client: &ZooKeeper, path: &str) -> BTreeMap<String, Server> {
    let mut servers = BTreeMap::new();
    for child in client.get_children(path, false).unwrap_or_default() {
        let Ok((data, _)) = client.get_data(&format!("{path}/{child}"), false) else { continue };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&data) else { continue };
        let Some(address) = v["address"].as_str().or(v["host"].as_str()) else { continue };
        let Some(port) = v["port"].as_u64() else { continue };
        servers.insert(
            child,
            Server { address: address.to_string(), port: port as u16, weight: v["weight"].as_u64() },
        );
    }
    servers
}

/// Re-reads what the changed nodes belong to.
fn apply(client: &ZooKeeper, services: &mut BTreeMap<String, Service>, paths: &BTreeSet<String>) {
    let mut blobs = BTreeSet::new();
    let mut server_paths = BTreeSet::new();
    for path in paths {
        if let Some(name) = path.strip_prefix(&format!("{SERVICE_ROOT}/")) {
            blobs.insert(name.to_string());
        } else if path.starts_with(&format!("{SERVER_ROOT}/")) {
            server_paths.insert(path.clone());
            if let Some((parent, _)) = path.rsplit_once('/') {
                server_paths.insert(parent.to_string());
            }
        }
    }
    for name in blobs {
        match read_service(client, &name) {
            Some(service) => {
                services.insert(name, service);
            }
            None => {
                if matches!(
                    client.exists(&format!("{SERVICE_ROOT}/{name}"), false),
                    Ok(None) | Err(ZkError::NoNode)
                ) {
                    services.remove(&name);
                }
            }
        }
    }
    for service in services.values_mut() {
        if server_paths.contains(&service.path) {
            service.servers = read_servers(client, &service.path);
        }
    }
}

fn head(socket: &Path, global: &[&str], defaults: &[&str]) -> String {
    let mut text =
        format!("global\n  stats socket {} mode 600 level admin\n  hard-stop-after 60s\n", socket.display());
    for line in global {
        let _ = writeln!(text, "  {line}");
    }
    text.push_str("defaults\n");
    for line in defaults {
        let _ = writeln!(text, "  {line}");
    }
    text
}

/// The whole file, every time.
fn render(services: &BTreeMap<String, Service>, fixed: &Fixed) -> String {
    let mut text = String::with_capacity(64 * 1024);
    text.push_str(fixed.head);
    for (name, service) in services {
        match service.port {
            Some(port) => {
                let _ = write!(text, "\nlisten {name}\n  bind 127.0.0.1:{port}\n");
            }
            None => {
                let _ = write!(text, "\nbackend {name}\n");
            }
        }
        for line in &service.listen_options {
            let _ = writeln!(text, "  {line}");
        }
        let mut servers: Vec<&Server> = service.servers.values().collect();
        servers.sort_by(|a, b| (&a.address, a.port).cmp(&(&b.address, b.port)));
        servers.dedup_by(|a, b| a.address == b.address && a.port == b.port);
        for server in servers {
            let _ = write!(text, "  server {0}:{1} {0}:{1}", server.address, server.port);
            if let Some(weight) = server.weight {
                let _ = write!(text, " weight {weight}");
            }
            for option in &service.server_options {
                let _ = write!(text, " {option}");
            }
            text.push('\n');
        }
    }
    for frontend in fixed.frontends {
        let _ =
            write!(text, "\nfrontend {}\n  bind 127.0.0.1:{}\n  mode http\n", frontend.name, frontend.port);
        for line in &frontend.options {
            let _ = writeln!(text, "  {line}");
        }
        // Synapse's shared_frontend: each service's routing lines, service by service.
        for (name, service) in services {
            for host in service.routes.get(&frontend.name).map(Vec::as_slice).unwrap_or_default() {
                let _ = writeln!(text, "  use_backend {name} if {{ hdr(host) -i {host} }}");
            }
        }
    }
    text
}

fn render_and_reload(
    services: &BTreeMap<String, Service>,
    fixed: &Fixed,
    dir: &Path,
    shared: &Shared,
    processes: &mut Processes,
    last: &mut String,
) {
    let started = Instant::now();
    let text = render(services, fixed);
    shared.render_us.lock().unwrap().push(started.elapsed().as_micros() as u64);
    if text == *last {
        return;
    }
    let cfg = dir.join("haproxy.cfg");
    let tmp = dir.join("haproxy.cfg.tmp");
    if let Err(e) = fs::write(&tmp, &text).and_then(|()| fs::rename(&tmp, &cfg)) {
        eprintln!("reload baseline: write {}: {e}", cfg.display());
        return;
    }
    *last = text;
    shared.reloads_started.fetch_add(1, Ordering::SeqCst);
    match processes.reload(&cfg, &dir.join("haproxy.sock"), &shared.stop) {
        Ok(()) => {
            shared.reloads_served.fetch_add(1, Ordering::SeqCst);
        }
        Err(e) => {
            eprintln!("reload baseline: {e}");
            shared.reloads_failed.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The HAProxy processes the baseline started. Dropping it kills what still runs.
struct Processes {
    log: PathBuf,
    children: Vec<Child>,
}

impl Processes {
    fn new(dir: &Path) -> Processes {
        Processes { log: dir.join("haproxy.log"), children: Vec::new() }
    }

    fn reap(&mut self) {
        self.children.retain_mut(|child| !matches!(child.try_wait(), Ok(Some(_))));
    }

    /// `haproxy -f cfg -db -sf <old>`, then waits until the new process answers on the socket.
    fn reload(&mut self, cfg: &Path, socket: &Path, stop: &AtomicBool) -> Result<(), String> {
        self.reap();
        let old: Vec<String> = self.children.iter().map(|c| c.id().to_string()).collect();
        let log =
            fs::OpenOptions::new().create(true).append(true).open(&self.log).map_err(|e| e.to_string())?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new("haproxy");
        command.arg("-f").arg(cfg).arg("-db");
        if !old.is_empty() {
            command.arg("-sf").args(&old);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("start haproxy: {e}"))?;
        let pid = child.id();
        self.children.push(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if haproxy::serving_pid(socket) == Some(pid) {
                return Ok(());
            }
            if let Some(child) = self.children.iter_mut().find(|c| c.id() == pid) {
                if let Ok(Some(status)) = child.try_wait() {
                    self.reap();
                    return Err(format!(
                        "haproxy[{pid}] exited during startup ({status}); see {}",
                        self.log.display()
                    ));
                }
            }
            if Instant::now() > deadline || stop.load(Ordering::SeqCst) {
                return Err(format!("haproxy[{pid}] did not answer within {START_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Soft stop (SIGUSR1), up to 5 s, then SIGKILL; reaps everything.
    fn stop_all(&mut self) {
        for child in &self.children {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGUSR1);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.children.is_empty() && Instant::now() < deadline {
            self.reap();
            std::thread::sleep(Duration::from_millis(20));
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.stop_all();
    }
}
