//! Surviving faults (issue 5): ZooKeeper outages, expired sessions, lost data and ensemble fail-over (and, from
//! issue 12, sessions no service uses any more and nodes that cannot be read); HAProxy and proxymgr killed under
//! load; a start without the registry; SIGHUP; and hostile input, one test each. Every
//! fault must leave the last known state serving (asserted with real requests and HAProxy's pids), be named in
//! the log by the fragment the issue promises, and heal: a change made afterwards applies.

use std::collections::BTreeSet;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use zookeeper::{Acl, CreateMode, Permission};

use crate::support::load::Load;
use crate::support::{
    self, hold, http_get, pid_alive, reserve_port, wait_until, Backend, Proxymgr, Relay, Zk, ZkEnsemble,
};

/// The longest any single wait for proxymgr may take; most take well under a second.
const SETTLE: Duration = Duration::from_secs(20);

/// A ZooKeeper tree a test writes to: a standalone server or an ensemble.
trait Registry {
    fn create(&self, path: &str, data: &str);
}

impl Registry for Zk {
    fn create(&self, path: &str, data: &str) {
        Zk::create(self, path, data)
    }
}

impl Registry for ZkEnsemble {
    fn create(&self, path: &str, data: &str) {
        ZkEnsemble::create(self, path, data)
    }
}

/// Whether HAProxy and ZooKeeper are installed (else the test skips, or fails under `make test`).
fn tools() -> bool {
    support::require("haproxy") && support::require("zookeeper")
}

/// A ZooKeeper with an empty `/service_config` and a proxymgr following it directly.
fn start() -> Option<(Zk, Proxymgr)> {
    if !tools() {
        return None;
    }
    let zk = Zk::start();
    zk.create("/service_config", "");
    let pm = Proxymgr::start_with(|dir| Proxymgr::config_yaml(dir, &zk.connect_string()));
    Some((zk, pm))
}

/// A relay in front of `zk` (which has `/service_config`) and a proxymgr that reaches ZooKeeper only through it.
fn start_behind_relay(zk: &Zk) -> (Relay, Proxymgr) {
    zk.create("/service_config", "");
    let target: SocketAddr = zk.connect_string().parse().expect("a socket address");
    let relay = Relay::start(target);
    let pm = Proxymgr::start_with(|dir| Proxymgr::config_yaml(dir, &relay.connect_string()));
    (relay, pm)
}

/// A `zookeeper` watcher blob for `/services/<service>` on `server`, with `extra` JSON members (`,"k":v`).
fn blob(server: &str, service: &str, port: u16, extra: &str) -> String {
    format!(
        r#"{{"type":"zookeeper","server":"{server}","path":"/services/{service}","port":{port},
            "listen_options":["mode http","balance roundrobin"],"server_options":["check inter 500"]{extra}}}"#
    )
}

fn server_json(backend: &Backend) -> String {
    format!(r#"{{"address":"127.0.0.1","port":{}}}"#, backend.port())
}

fn add_server(registry: &dyn Registry, service: &str, backend: &Backend) {
    registry.create(&format!("/services/{service}/{}", backend.name()), &server_json(backend));
}

/// A service named `service` with `backends`, its watcher on `server`; waits until they answer through it and
/// one HAProxy serves. Returns its port and HAProxy's pids.
fn serve(
    registry: &dyn Registry,
    pm: &Proxymgr,
    server: &str,
    service: &str,
    backends: &[&Backend],
) -> (u16, Vec<u32>) {
    let port = reserve_port();
    for backend in backends {
        add_server(registry, service, backend);
    }
    registry.create(&format!("/service_config/{service}"), &blob(server, service, port, ""));
    wait_answers(port, &backends.iter().map(|b| b.name()).collect::<Vec<_>>());
    wait_until(SETTLE, "one HAProxy serves", || pm.haproxy_pids().len() == 1);
    (port, pm.haproxy_pids())
}

/// The backend names that answered `n` requests through `port` (errors count as "error: ...").
fn answers(port: u16, n: usize) -> BTreeSet<String> {
    (0..n).map(|_| http_get(port).unwrap_or_else(|e| format!("error: {e}"))).collect()
}

fn names(expected: &[&str]) -> BTreeSet<String> {
    expected.iter().map(|s| s.to_string()).collect()
}

/// Waits until 8 requests through `port` are answered by exactly `expected`.
fn wait_answers(port: u16, expected: &[&str]) {
    let expected = names(expected);
    wait_until(SETTLE, &format!("port {port} answered by exactly {expected:?}"), || {
        answers(port, 8) == expected
    });
}

/// Whether 4 requests through `port` are answered by exactly `expected`.
fn answered_by(port: u16, expected: &[&str]) -> bool {
    answers(port, 4) == names(expected)
}

fn refused(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
}

/// For `hold`: 4 requests through `port` are answered by exactly `expected`.
fn serving(port: u16, expected: &[&str]) -> Result<(), String> {
    let seen = answers(port, 4);
    match seen == names(expected) {
        true => Ok(()),
        false => Err(format!("port {port} answered by {seen:?}, expected {expected:?}")),
    }
}

/// For `hold`: the HAProxy processes are still `pids` (no reload, no restart).
fn same_pids(pm: &Proxymgr, pids: &[u32]) -> Result<(), String> {
    let now = pm.haproxy_pids();
    match now == pids {
        true => Ok(()),
        false => Err(format!("HAProxy pids {now:?}, expected {pids:?}")),
    }
}

/// For `hold`: haproxy.cfg is still `cfg`.
fn same_cfg(pm: &Proxymgr, cfg: &str) -> Result<(), String> {
    let now = pm.haproxy_cfg();
    match now == cfg {
        true => Ok(()),
        false => Err(format!("haproxy.cfg changed to:\n{now}")),
    }
}

/// Whether one line of proxymgr's log holds every fragment.
fn logged(pm: &Proxymgr, fragments: &[&str]) -> bool {
    pm.log().lines().any(|line| fragments.iter().all(|f| line.contains(f)))
}

/// Waits until one line of proxymgr's log holds every fragment; panics quoting the log.
fn wait_log_line(pm: &Proxymgr, fragments: &[&str]) {
    let deadline = Instant::now() + SETTLE;
    while !logged(pm, fragments) {
        assert!(
            Instant::now() < deadline,
            "no log line with {fragments:?} after {SETTLE:?}; the log:\n{}",
            pm.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How many HAProxy processes have served so far (`haproxy[<pid>] serves`).
fn serves(pm: &Proxymgr) -> usize {
    pm.log().matches("] serves (").count()
}

/// Waits until `backend` answered `n` more requests than it had: proof that a load loop gets through.
fn wait_hits(backend: &Backend, n: usize, what: &str) {
    let start = backend.hits();
    wait_until(SETTLE, what, || backend.hits() >= start + n);
}

/// After `pm.start_again()` beside the HAProxy `left` that the proxymgr before it left serving: the new one
/// takes it over, it finishes, exactly one HAProxy (the new proxymgr's) runs, and requests reach `backend`.
fn wait_taken_over(pm: &Proxymgr, backend: &Backend, left: u32) {
    pm.wait_log(&format!("taking over haproxy [{left}], left running by an earlier proxymgr"), SETTLE);
    wait_until(SETTLE, "the HAProxy left serving to finish", || !pid_alive(left));
    wait_until(SETTLE, "exactly one HAProxy, the new proxymgr's", || {
        let all = pm.haproxy_pids_in_dir();
        all.len() == 1 && all != [left] && pm.haproxy_pids() == all
    });
    wait_hits(backend, 200, "requests through the new HAProxy");
}

/// After a refused input: the other service still answers and no HAProxy was started or stopped.
fn assert_undisturbed(pm: &mut Proxymgr, port: u16, expected: &[&str], pids: &[u32]) {
    wait_answers(port, expected);
    assert_eq!(pm.haproxy_pids(), pids, "no reload");
    assert!(pm.is_running(), "proxymgr exited: {}", pm.log());
}

/// The ports proxymgr (`pid`) has established TCP connections to, from `/proc/<pid>/fd` and `/proc/<pid>/net/tcp`.
fn connected_ports(pid: u32) -> BTreeSet<u16> {
    let inodes: BTreeSet<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(|entry| fs::read_link(entry.ok()?.path()).ok())
                .filter_map(|target| {
                    let target = target.to_string_lossy().into_owned();
                    Some(target.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let table = fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode; 01 is ESTABLISHED.
            if fields.get(3) != Some(&"01") || !inodes.contains(*fields.get(9)?) {
                return None;
            }
            u16::from_str_radix(fields.get(2)?.rsplit(':').next()?, 16).ok()
        })
        .collect()
}

/// The ensemble member proxymgr's ZooKeeper session is connected to, if it is connected to exactly one.
fn connected_member(pm: &Proxymgr, ensemble: &ZkEnsemble) -> Option<usize> {
    let ports = connected_ports(pm.pid());
    let members: Vec<usize> =
        (0..ensemble.size()).filter(|&i| ports.contains(&ensemble.client_port(i))).collect();
    match members[..] {
        [member] => Some(member),
        _ => None,
    }
}

/// The HAProxy pids the state file lists.
fn saved_pids(pm: &Proxymgr) -> Vec<u32> {
    let text = fs::read_to_string(pm.dir().join("state.json")).unwrap_or_default();
    let state: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    state["haproxy_pids"]
        .as_array()
        .map(|pids| pids.iter().filter_map(|p| p.as_u64()).map(|p| p as u32).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------------------------
// ZooKeeper outages

#[test]
fn a_dropped_connection_is_resynced_and_changes_made_meanwhile_apply() {
    if !tools() {
        return;
    }
    let zk = Zk::start();
    let (relay, pm) = start_behind_relay(&zk);
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let server = relay.connect_string();
    let (web, pids) = serve(&zk, &pm, &server, "web", &[&a]);
    let api = reserve_port();

    relay.cut();
    pm.wait_log("connection lost; serving the last known state until it is back", SETTLE);
    // Changes proxymgr cannot see yet: a server replaced, a new service.
    add_server(&zk, "web", &b);
    zk.delete("/services/web/a");
    add_server(&zk, "api", &a);
    zk.create("/service_config/api", &blob(&server, "api", api, ""));
    // Well within the 10 s session (pings go every 6.7 s), so the session survives the outage.
    hold(Duration::from_secs(1), "the last known state serving, unchanged", || {
        serving(web, &["a"])?;
        if !refused(api) {
            return Err(format!("port {api} of the service added during the outage is open"));
        }
        same_pids(&pm, &pids)
    });

    relay.restore();
    pm.wait_log("connected again after an outage of", SETTLE);
    wait_answers(web, &["b"]);
    wait_answers(api, &["a"]);
    assert!(!pm.log().contains("session closed"), "the session should have survived:\n{}", pm.log());
}

#[test]
fn an_unreachable_zookeeper_changes_nothing_until_it_is_back() {
    let Some((mut zk, pm)) = start() else { return };
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let server = zk.connect_string();
    let (web, _) = serve(&zk, &pm, &server, "web", &[&a, &b]);
    let (api, pids) = serve(&zk, &pm, &server, "api", &[&b]);
    let cfg = pm.haproxy_cfg();
    let lines_before = pm.log().lines().count();

    zk.stop();
    pm.wait_log("connection lost; serving the last known state until it is back", SETTLE);
    // Longer than a session: the client gives its session up meanwhile, and still nothing may change.
    hold(Duration::from_secs(6), "every service serving every server, no reload", || {
        serving(web, &["a", "b"])?;
        serving(api, &["b"])?;
        same_pids(&pm, &pids)?;
        same_cfg(&pm, &cfg)
    });
    let during: Vec<String> = pm.log().lines().skip(lines_before).map(str::to_string).collect();
    assert!(
        !during.iter().any(|line| line.contains(": removed") || line.contains(" 0 server(s)")),
        "nothing may be dropped during the outage:\n{}",
        during.join("\n")
    );

    zk.restart();
    pm.wait_log("connected again after an outage of", SETTLE);
    zk.delete("/services/api/b");
    add_server(&zk, "api", &a);
    wait_answers(api, &["a"]);
    assert_eq!(pm.haproxy_pids(), pids, "server changes after the outage need no reload");
}

#[test]
fn an_expired_session_is_replaced_by_a_new_client_and_everything_resynced() {
    if !tools() {
        return;
    }
    // Sessions of at most 2 s: a 5 s cut expires proxymgr's.
    let zk = Zk::start_fast_expiry();
    let (relay, pm) = start_behind_relay(&zk);
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let server = relay.connect_string();
    let (web, pids) = serve(&zk, &pm, &server, "web", &[&a]);

    relay.cut();
    pm.wait_log("connection lost; serving the last known state until it is back", SETTLE);
    add_server(&zk, "web", &b);
    hold(Duration::from_secs(5), "the last known state serving, no reload", || {
        serving(web, &["a"])?;
        same_pids(&pm, &pids)
    });
    relay.restore();
    pm.wait_log("session closed; starting a new one", SETTLE);
    pm.wait_log("new client (generation 1)", SETTLE);
    // The full resync picks up what changed while the session was gone, and changes apply after it.
    wait_answers(web, &["a", "b"]);
    zk.delete("/services/web/a");
    wait_answers(web, &["b"]);
}

#[test]
fn a_zookeeper_that_lost_its_data_does_not_take_services_down() {
    let Some((mut zk, pm)) = start() else { return };
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let server = zk.connect_string();
    let (web, pids) = serve(&zk, &pm, &server, "web", &[&a, &b]);

    zk.restart_empty();
    wait_log_line(&pm, &["does not exist", "/service_config"]);
    wait_log_line(&pm, &["does not exist", "/services/web"]);
    hold(Duration::from_secs(2), "web serving a and b with no reload", || {
        serving(web, &["a", "b"])?;
        same_pids(&pm, &pids)
    });
    assert!(!pm.log().contains("service web: removed"), "{}", pm.log());

    // The registry is written again, with one change: b is gone.
    add_server(&zk, "web", &a);
    zk.create("/service_config/web", &blob(&server, "web", web, ""));
    wait_answers(web, &["a"]);
}

// ---------------------------------------------------------------------------------------------------------------
// ZooKeeper sessions no service uses any more, and nodes that cannot be read (issue 12 §6)

/// How many of proxymgr's threads run ZooKeeper sessions: followers (`zk:<ensemble>`, cut to 15 bytes by the
/// kernel) and each client's crate threads (`io`, and its timer's, which inherits that name; `event`).
fn session_threads(pm: &Proxymgr) -> [usize; 3] {
    let names: Vec<String> = fs::read_dir(format!("/proc/{}/task", pm.pid()))
        .map(|tasks| tasks.flatten().filter_map(|t| fs::read_to_string(t.path().join("comm")).ok()).collect())
        .unwrap_or_default();
    let count = |name: &dyn Fn(&str) -> bool| names.iter().filter(|n| name(n.trim_end())).count();
    [count(&|n| n.starts_with("zk:")), count(&|n| n == "io"), count(&|n| n == "event")]
}

/// proxymgr's log after the first line that holds every fragment (empty while there is none).
fn log_after(pm: &Proxymgr, fragments: &[&str]) -> String {
    let log = pm.log();
    let mut lines = log.lines().skip_while(|line| !fragments.iter().all(|f| line.contains(f)));
    lines.next();
    lines.collect::<Vec<_>>().join("\n")
}

#[test]
fn a_session_no_service_uses_any_more_is_closed_and_opens_again_when_one_does() {
    let Some((zk, pm)) = start() else { return };
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let real = zk.connect_string();
    let (web, _) = serving_web(&zk, &pm, &a);
    let before = session_threads(&pm);
    assert_eq!(before[0], 1, "one session, the registry's, which web's watcher shares");

    // A watcher naming an ensemble nothing listens at (a reserved port nobody binds): its calls fail, and are
    // made again and again.
    let nowhere = format!("127.0.0.1:{}", reserve_port());
    let trying = format!("zookeeper {nowhere}: watch /services/typo: ConnectionLoss; retrying");
    let typo = reserve_port();
    add_server(&zk, "typo", &b);
    zk.create("/service_config/typo", &blob(&nowhere, "typo", typo, ""));
    wait_log_line(&pm, &[&trying]);
    assert_eq!(session_threads(&pm)[0], 2, "a follower for the mistyped ensemble");

    // Corrected to the real ensemble: typo is served on the registry's session, and the mistyped one closes.
    zk.set("/service_config/typo", &blob(&real, "typo", typo, ""));
    wait_answers(typo, &["b"]);
    let closed = [&*format!("zookeeper {nowhere}: "), "closing its session"];
    wait_log_line(&pm, &closed);
    // Its follower ends once its client is closed, the client's threads once the crate gives up trying to
    // connect: a session timeout (10 s) after that client was made.
    wait_until(Duration::from_secs(30), "the closed session's threads to end", || {
        session_threads(&pm) == before
    });
    let after = log_after(&pm, &closed);
    assert!(!after.contains(&nowhere), "the closed session tried on:\n{after}");

    // typo shared the registry's session: its removal leaves it open, and changes still apply.
    zk.delete("/service_config/typo");
    wait_until(SETTLE, "typo's port to close", || refused(typo));
    add_server(&zk, "web", &b);
    wait_answers(web, &["a", "b"]);
    assert!(!logged(&pm, &[&format!("zookeeper {real}: "), "closing its session"]), "{}", pm.log());

    // The mistyped ensemble named again opens a session again.
    zk.create("/service_config/again", &blob(&nowhere, "typo", reserve_port(), ""));
    wait_until(SETTLE, "a new follower for the mistyped ensemble", || session_threads(&pm)[0] == 2);
    wait_until(SETTLE, "its client to try to connect", || log_after(&pm, &closed).contains(&trying));
}

#[test]
fn a_server_node_nobody_may_read_is_skipped_and_logged_once_and_the_session_kept() {
    let Some((zk, pm)) = start() else { return };
    let (a, b, c, d) = (Backend::start("a"), Backend::start("b"), Backend::start("c"), Backend::start("d"));

    // A server node whose ACL lets anyone write it and nobody read it, beside a good one. ZooKeeper sends no
    // watch event for a node the session may not read, so proxymgr meets it when it lists the service's node.
    let denied = "/services/web/denied";
    add_server(&zk, "web", &a);
    let write_only = vec![Acl::new(Permission::WRITE, "world", "anyone")];
    let writer = zk.client();
    writer
        .create(denied, server_json(&b).into_bytes(), write_only, CreateMode::Persistent)
        .unwrap_or_else(|e| panic!("create {denied}: {e:?}"));
    let web = reserve_port();
    zk.create("/service_config/web", &blob(&zk.connect_string(), "web", web, ""));
    wait_answers(web, &["a"]);
    wait_log_line(&pm, &[denied, "NoAuth"]);
    // The service's node changed: listed and every child read again, the bad one in vain, with nothing more to
    // log; and a good server added after it is served at once.
    zk.set("/services/web", "changed");
    add_server(&zk, "web", &c);
    wait_until(Duration::from_secs(8), "c served beside a", || answered_by(web, &["a", "c"]));
    // Longer than a session timeout (10 s) and the backoff's next wait: time enough for proxymgr to give up on
    // a session whose calls keep failing, were the node's fault taken for the session's.
    hold(Duration::from_secs(15), "a and c served, the node named once, the session kept", || {
        serving(web, &["a", "c"])?;
        let log = pm.log();
        let named: Vec<&str> = log.lines().filter(|line| line.contains(denied)).collect();
        if named.len() != 1 {
            return Err(format!("{} lines name {denied}: {named:#?}", named.len()));
        }
        match ["new client", "starting a new session", "connection lost"].iter().find(|f| log.contains(*f)) {
            Some(renewed) => Err(format!("the session was renewed or lost ({renewed:?}):\n{log}")),
            None => Ok(()),
        }
    });
    add_server(&zk, "web", &d);
    wait_until(Duration::from_secs(8), "d served beside a and c", || answered_by(web, &["a", "c", "d"]));

    // Replaced by a node anyone may read: served. (Deleting needs only the parent's permission; the fixture's
    // `delete` would list the node's children first, which this one's ACL forbids.)
    writer.delete(denied, None).unwrap_or_else(|e| panic!("delete {denied}: {e:?}"));
    zk.create(denied, &server_json(&b));
    wait_answers(web, &["a", "b", "c", "d"]);
}

// ---------------------------------------------------------------------------------------------------------------
// ZooKeeper ensembles

/// A 3-member ensemble with an empty `/service_config` and a proxymgr following all three.
fn start_ensemble() -> Option<(ZkEnsemble, Proxymgr)> {
    if !tools() {
        return None;
    }
    let ensemble = ZkEnsemble::start(3);
    ensemble.create("/service_config", "");
    let pm = Proxymgr::start_with(|dir| Proxymgr::config_yaml(dir, &ensemble.connect_string()));
    Some((ensemble, pm))
}

#[test]
fn proxymgr_fails_over_to_another_ensemble_member() {
    let Some((mut ensemble, pm)) = start_ensemble() else { return };
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (web, pids) = serve(&ensemble, &pm, &ensemble.connect_string(), "web", &[&a]);
    let member =
        support::wait_for(SETTLE, "proxymgr connected to one member", || connected_member(&pm, &ensemble));

    ensemble.stop_member(member);
    let other = support::wait_for(SETTLE, "proxymgr connected to another member", || {
        connected_member(&pm, &ensemble).filter(|&m| m != member)
    });
    eprintln!("proxymgr moved from member {member} to member {other}");
    add_server(&ensemble, "web", &b);
    wait_answers(web, &["a", "b"]);
    assert_eq!(pm.haproxy_pids(), pids, "no reload");
}

#[test]
fn the_ensemble_leader_stopping_changes_nothing_and_later_changes_apply() {
    let Some((mut ensemble, pm)) = start_ensemble() else { return };
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (web, pids) = serve(&ensemble, &pm, &ensemble.connect_string(), "web", &[&a]);

    let leader = ensemble.leader();
    ensemble.stop_member(leader);
    // The election takes about a second; web serves throughout, untouched.
    hold(Duration::from_secs(2), "web serving a with no reload through the election", || {
        serving(web, &["a"])?;
        same_pids(&pm, &pids)
    });
    ensemble.wait_ready();
    assert_ne!(ensemble.leader(), leader, "a new leader");

    add_server(&ensemble, "web", &b);
    wait_answers(web, &["a", "b"]);
    assert_eq!(pm.haproxy_pids(), pids, "no reload");
}

#[test]
fn an_ensemble_without_quorum_keeps_serving_and_converges_when_it_returns() {
    let Some((mut ensemble, pm)) = start_ensemble() else { return };
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (web, pids) = serve(&ensemble, &pm, &ensemble.connect_string(), "web", &[&a, &b]);
    let cfg = pm.haproxy_cfg();

    let leader = ensemble.leader();
    let follower = (0..3).find(|&i| i != leader).expect("another member");
    ensemble.stop_member(leader);
    ensemble.stop_member(follower);
    pm.wait_log("connection lost; serving the last known state until it is back", SETTLE);
    hold(Duration::from_secs(4), "web serving a and b with no reload", || {
        serving(web, &["a", "b"])?;
        same_pids(&pm, &pids)?;
        same_cfg(&pm, &cfg)
    });

    ensemble.start_member(leader);
    ensemble.start_member(follower);
    ensemble.delete("/services/web/b");
    wait_answers(web, &["a"]);
    assert_eq!(pm.haproxy_pids(), pids, "no reload");
}

// ---------------------------------------------------------------------------------------------------------------
// Processes killed

#[test]
fn a_haproxy_killed_under_load_is_restarted_and_clients_only_wait() {
    let Some((zk, pm)) = start() else { return };
    let a = Backend::start("a");
    let (web, pids) = serve(&zk, &pm, &zk.connect_string(), "web", &[&a]);
    let served = serves(&pm);

    const CLIENTS: usize = 2;
    let load = Load::start(web, CLIENTS, false);
    wait_hits(&a, 200, "the load loop to get going");
    kill(Pid::from_raw(pids[0] as i32), Signal::SIGKILL).expect("kill HAProxy");
    pm.wait_log(&format!("haproxy[{}] exited unexpectedly (killed by SIGKILL)", pids[0]), SETTLE);
    wait_until(SETTLE, "a new HAProxy serves", || serves(&pm) > served);
    wait_hits(&a, 200, "requests through the new HAProxy");
    let report = load.finish();

    let now = pm.haproxy_pids();
    assert!(now.len() == 1 && now != pids, "one new HAProxy: {now:?}");
    // A connection HAProxy had already accepted dies with it: at most the one request each client had in
    // flight at the kill may fail, with the connection closed under it. None may be refused or answered with
    // an error: the listening socket stays open in proxymgr and queues the rest until the new HAProxy accepts.
    eprintln!(
        "across HAProxy's SIGKILL: {} requests ok, {} failed {:?}",
        report.ok, report.failed, report.errors
    );
    assert!(report.ok > 100, "the load loop barely ran: {report:?}");
    assert!(report.failed <= CLIENTS, "more failures than requests in flight at the kill: {report:?}");
    assert!(
        report.errors.iter().all(|e| !e.contains("refused") && !e.contains("HTTP status")),
        "refused or answered with an error, not just cut: {report:?}"
    );
}

/// Also one of matrix.rs's scenarios, run on every HAProxy version.
#[test]
pub(crate) fn a_proxymgr_killed_under_load_hands_its_haproxy_to_the_next_one() {
    let Some((zk, mut pm)) = start() else { return };
    let a = Backend::start("a");
    let (web, pids) = serve(&zk, &pm, &zk.connect_string(), "web", &[&a]);
    let orphan = pids[0];
    wait_until(SETTLE, "the state file lists the serving HAProxy", || saved_pids(&pm) == [orphan]);

    let load = Load::start(web, 2, false);
    wait_hits(&a, 200, "the load loop to get going");
    pm.kill9();
    // No proxymgr runs: the HAProxy it left keeps serving.
    assert!(pid_alive(orphan), "HAProxy died with proxymgr");
    wait_hits(&a, 200, "requests through the orphaned HAProxy");

    pm.start_again();
    wait_taken_over(&pm, &a, orphan);
    let report = load.finish();

    report.assert_none_failed("across proxymgr's SIGKILL and takeover");
    wait_answers(web, &["a"]);
    assert_eq!(pm.haproxy_pids_in_dir().len(), 1, "one HAProxy: {:?}", pm.haproxy_pids_in_dir());
}

#[test]
fn a_hand_over_passes_haproxy_and_the_listening_sockets_themselves_to_the_next_proxymgr() {
    // Issue 13 §1: SIGUSR2 (what a restart or an upgrade sends). Clients open a connection per request, so
    // that many sit in the accept queue: a socket bound anew beside the old one would reset those queued
    // on the old one when its HAProxy finished.
    let Some((zk, mut pm)) = start() else { return };
    let a = Backend::start("a");
    let (web, pids) = serve(&zk, &pm, &zk.connect_string(), "web", &[&a]);
    let first = pids[0];
    let sockets = support::listening_inodes(web);
    assert_eq!(sockets.len(), 1, "one listening socket on the port: {sockets:?}");

    let load = Load::start(web, 4, false);
    wait_hits(&a, 200, "the load loop to get going");
    pm.signal(Signal::SIGUSR2);
    let status = pm.wait_exit(SETTLE);
    assert_eq!(status.code(), Some(0), "a hand-over is a clean exit: {status:?}");
    pm.wait_log("handed over; exiting", SETTLE);
    assert!(pid_alive(first), "HAProxy serves on without its proxymgr");
    assert_eq!(saved_pids(&pm), [first], "the state file names the HAProxy left serving");
    assert_eq!(support::listening_inodes(web), sockets, "the keeper holds the same socket, no other");
    wait_hits(&a, 200, "requests through the HAProxy left serving");

    pm.start_again();
    pm.wait_log("took 1 listening sockets from the proxymgr before", SETTLE);
    wait_taken_over(&pm, &a, first);
    let report = load.finish();

    report.assert_none_failed("across a hand-over to the next proxymgr");
    assert_eq!(support::listening_inodes(web), sockets, "the new HAProxy accepts from the very same socket");
    assert!(!pm.dir().join("state.json.handover").exists(), "the hand-over socket is gone once taken");
    // This fixture's keeper: its command line names the hand-over socket in the fixture's directory.
    let dir = pm.dir().to_string_lossy().into_owned();
    wait_until(SETTLE, "the keeper to exit once it handed over", || {
        let ours = |pid: u32| {
            let args = support::cmdline(pid);
            args.iter().any(|a| a == "--hand-over-keeper") && args.iter().any(|a| a.starts_with(&dir))
        };
        !support::all_processes().iter().any(|p| ours(p.pid))
    });
    wait_answers(web, &["a"]);
}

#[test]
fn a_start_without_zookeeper_serves_the_state_file_then_resyncs() {
    let Some((mut zk, mut pm)) = start() else { return };
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (web, _) = serve(&zk, &pm, &zk.connect_string(), "web", &[&a]);
    let state = pm.dir().join("state.json");
    wait_until(SETTLE, "the state file has web", || {
        fs::read_to_string(&state)
            .is_ok_and(|text| text.contains("\"web\"") && text.contains(&a.port().to_string()))
    });
    assert_eq!(pm.stop().code(), Some(0), "{}", pm.log());
    zk.stop();

    pm.start_again();
    pm.wait_log("serving 1 service(s) from the state file", SETTLE);
    wait_answers(web, &["a"]);

    zk.restart();
    add_server(&zk, "web", &b);
    wait_answers(web, &["a", "b"]);
}

// ---------------------------------------------------------------------------------------------------------------
// Empty server sets

#[test]
fn a_watcher_reporting_no_servers_keeps_the_last_ones() {
    let Some((zk, pm)) = start() else { return };
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (web, pids) = serve(&zk, &pm, &zk.connect_string(), "web", &[&a]);

    zk.delete("/services/web/a");
    pm.wait_log("reports no servers; keeping the last", SETTLE);
    hold(Duration::from_secs(1), "web still served by a", || {
        serving(web, &["a"])?;
        same_pids(&pm, &pids)
    });

    add_server(&zk, "web", &b);
    wait_answers(web, &["b"]);
}

#[test]
fn allow_empty_lets_a_service_lose_every_server() {
    let Some((zk, pm)) = start() else { return };
    let a = Backend::start("a");
    let web = reserve_port();
    add_server(&zk, "web", &a);
    // Without `hold_removals` the one server would stay for a removal hold's time first.
    let extra = r#","allow_empty":true,"hold_removals":false"#;
    zk.create("/service_config/web", &blob(&zk.connect_string(), "web", web, extra));
    wait_answers(web, &["a"]);

    zk.delete("/services/web/a");
    wait_until(SETTLE, "web answers 503", || http_get(web).is_err_and(|e| e.to_string().contains(" 503 ")));
    assert!(!pm.log().contains("reports no servers"), "{}", pm.log());
}

// ---------------------------------------------------------------------------------------------------------------
// SIGHUP

/// Adds `timeout queue 5s` to the `defaults` of the standard test config.
fn with_timeout_queue(yaml: &str) -> String {
    let defaults = "    - \"timeout server 10s\"\n";
    assert!(yaml.contains(defaults), "{yaml}");
    yaml.replacen(defaults, &format!("{defaults}    - \"timeout queue 5s\"\n"), 1)
}

#[test]
fn sighup_applies_a_valid_change_to_the_haproxy_section() {
    let Some((zk, pm)) = start() else { return };
    let a = Backend::start("a");
    let (web, pids) = serve(&zk, &pm, &zk.connect_string(), "web", &[&a]);

    let yaml = fs::read_to_string(pm.config_path()).expect("read proxymgr.yml");
    fs::write(pm.config_path(), with_timeout_queue(&yaml)).expect("write proxymgr.yml");
    pm.signal(Signal::SIGHUP);
    wait_until(SETTLE, "haproxy.cfg has the new defaults line", || {
        pm.haproxy_cfg().contains("timeout queue 5s")
    });
    wait_until(SETTLE, "a new HAProxy serves alone", || {
        let now = pm.haproxy_pids();
        now.len() == 1 && now != pids
    });
    wait_answers(web, &["a"]);
}

#[test]
fn sighup_refuses_an_invalid_file_and_keeps_everything() {
    let Some((zk, mut pm)) = start() else { return };
    let a = Backend::start("a");
    let (web, pids) = serve(&zk, &pm, &zk.connect_string(), "web", &[&a]);
    let cfg = pm.haproxy_cfg();

    // A valid change and an unknown key: none of it may apply.
    let yaml = fs::read_to_string(pm.config_path()).expect("read proxymgr.yml");
    let bad = with_timeout_queue(&yaml).replacen("haproxy:\n", "haproxy:\n  no_such_key: 1\n", 1);
    fs::write(pm.config_path(), bad).expect("write proxymgr.yml");
    pm.signal(Signal::SIGHUP);
    wait_log_line(&pm, &[&pm.config_path().display().to_string(), "no_such_key"]);
    hold(Duration::from_secs(1), "web serving, haproxy.cfg and pids unchanged", || {
        serving(web, &["a"])?;
        same_pids(&pm, &pids)?;
        same_cfg(&pm, &cfg)
    });
    assert!(pm.is_running(), "{}", pm.log());
}

// ---------------------------------------------------------------------------------------------------------------
// Hostile input. Each test serves `web` first; the bad input must be named in the log and leave web alone.

/// proxymgr serving `web` from backend `a`; returns its port and HAProxy's pids.
fn serving_web(zk: &Zk, pm: &Proxymgr, a: &Backend) -> (u16, Vec<u32>) {
    serve(zk, pm, &zk.connect_string(), "web", &[a])
}

#[test]
fn binary_data_in_a_service_node_is_refused_by_path() {
    let Some((zk, mut pm)) = start() else { return };
    let a = Backend::start("a");
    let (web, pids) = serving_web(&zk, &pm, &a);

    zk.create_bytes("/service_config/binary", b"\xff\xfe\x00\x01{\"port\":\x80}\xc3");
    wait_until(SETTLE, "a log line naming the node and the reason", || {
        logged(&pm, &["service /service_config/binary:", "not UTF-8"])
            || logged(&pm, &["service /service_config/binary:", "invalid JSON"])
    });
    assert_undisturbed(&mut pm, web, &["a"], &pids);
    assert!(!pm.haproxy_cfg().contains("binary"), "{}", pm.haproxy_cfg());
}

#[test]
fn wrong_json_types_are_refused_by_path() {
    let Some((zk, mut pm)) = start() else { return };
    let a = Backend::start("a");
    let (web, pids) = serving_web(&zk, &pm, &a);

    let typed = format!(
        r#"{{"type":"zookeeper","server":"{}","path":"/services/web","port":"80"}}"#,
        zk.connect_string()
    );
    zk.create("/service_config/typed", &typed);
    wait_log_line(&pm, &["service /service_config/typed:", "invalid type"]);
    assert_undisturbed(&mut pm, web, &["a"], &pids);
}

#[test]
fn node_data_over_64_kib_is_refused_by_path() {
    let Some((zk, mut pm)) = start() else { return };
    let a = Backend::start("a");
    let (web, pids) = serving_web(&zk, &pm, &a);

    let padding = "x".repeat(70 * 1024);
    zk.create(
        "/service_config/huge",
        &blob(&zk.connect_string(), "huge", reserve_port(), &format!(r#","pad":"{padding}""#)),
    );
    wait_log_line(&pm, &["service /service_config/huge:", "over the limit"]);
    assert_undisturbed(&mut pm, web, &["a"], &pids);
}

#[test]
fn a_service_name_with_a_space_is_refused() {
    let Some((zk, mut pm)) = start() else { return };
    let a = Backend::start("a");
    let (web, pids) = serving_web(&zk, &pm, &a);

    let other = reserve_port();
    zk.create("/service_config/bad name", &blob(&zk.connect_string(), "web", other, ""));
    wait_log_line(&pm, &["/service_config/bad name", "contains ' '"]);
    assert_undisturbed(&mut pm, web, &["a"], &pids);
    assert!(refused(other), "no listener for a refused service");
}

#[test]
fn an_option_with_a_newline_is_refused() {
    let Some((zk, mut pm)) = start() else { return };
    let a = Backend::start("a");
    let (web, pids) = serving_web(&zk, &pm, &a);

    let other = reserve_port();
    let evil = blob(&zk.connect_string(), "web", other, "")
        .replace(r#""server_options":["check inter 500"]"#, r#""server_options":["check\nlisten evil"]"#);
    zk.create("/service_config/evil", &evil);
    wait_log_line(&pm, &["service /service_config/evil:", "server_options[0]"]);
    assert_undisturbed(&mut pm, web, &["a"], &pids);
    assert!(!pm.haproxy_cfg().contains("evil"), "{}", pm.haproxy_cfg());
}

#[test]
fn a_listen_option_that_opens_a_global_section_is_refused() {
    let Some((zk, mut pm)) = start() else { return };
    let a = Backend::start("a");
    let (web, pids) = serving_web(&zk, &pm, &a);

    // HAProxy ignores indentation: rendered, these lines would open a global section with a world-writable
    // admin socket. The service has no servers, so no server line would follow them and the file would be valid.
    let socket = pm.dir().join("evil.sock");
    let evil = format!(
        r#"{{"type":"zookeeper","server":"{}","path":"/services/evil","port":{},
            "listen_options":["mode http","global","stats socket {} mode 666 level admin"]}}"#,
        zk.connect_string(),
        reserve_port(),
        socket.display()
    );
    zk.create("/service_config/evil", &evil);
    wait_log_line(
        &pm,
        &["service /service_config/evil:", r#"listen_options[1] "global": starts a `global` section"#],
    );
    assert_undisturbed(&mut pm, web, &["a"], &pids);

    // A reload for another service renders every service proxymgr took: the refused one is not among them.
    let b = Backend::start("b");
    let later = serve(&zk, &pm, &zk.connect_string(), "later", &[&b]).0;
    wait_answers(web, &["a"]);
    wait_answers(later, &["b"]);
    assert!(!socket.exists(), "HAProxy created the admin socket {}", socket.display());
    let cfg = pm.haproxy_cfg();
    assert!(!cfg.contains("evil.sock") && !cfg.contains("listen evil"), "{cfg}");
}

#[test]
fn a_port_used_by_another_service_is_refused() {
    let Some((zk, mut pm)) = start() else { return };
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (web, pids) = serving_web(&zk, &pm, &a);

    add_server(&zk, "second", &b);
    zk.create("/service_config/second", &blob(&zk.connect_string(), "second", web, ""));
    wait_log_line(&pm, &["service second:", &format!("port {web} is already used by service web")]);
    assert_undisturbed(&mut pm, web, &["a"], &pids);
}

#[test]
fn a_port_another_process_holds_is_retried_until_it_is_free() {
    let Some((zk, mut pm)) = start() else { return };
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (web, pids) = serving_web(&zk, &pm, &a);

    // A reserved port, so nothing else takes it between the drop and proxymgr's bind.
    let holder = support::reserved_listener();
    let held = holder.local_addr().expect("local_addr").port();
    add_server(&zk, "held", &b);
    zk.create("/service_config/held", &blob(&zk.connect_string(), "held", held, ""));
    wait_log_line(&pm, &["service held:", &format!("cannot listen on 127.0.0.1:{held}")]);
    assert_undisturbed(&mut pm, web, &["a"], &pids);

    drop(holder);
    let freed = Instant::now();
    wait_until(Duration::from_secs(8), "the held service comes up once its port is free", || {
        answered_by(held, &["b"])
    });
    eprintln!("the service came up {:?} after its port was freed", freed.elapsed());
    wait_answers(web, &["a"]);
}

#[test]
fn a_haproxy_binary_that_is_not_executable_is_a_config_error() {
    // No ZooKeeper: proxymgr must give up before it would use one (nothing listens on port 1 anyway).
    let mut pm = Proxymgr::start_with(|dir| {
        let binary = dir.join("haproxy-not-executable");
        fs::write(&binary, "#!/bin/sh\nexit 0\n").expect("write a fake haproxy");
        fs::set_permissions(&binary, fs::Permissions::from_mode(0o644)).expect("chmod 0644");
        Proxymgr::config_yaml(dir, "127.0.0.1:1").replacen(
            &format!("  path: {}\n", support::haproxy().display()),
            &format!("  path: {}\n", binary.display()),
            1,
        )
    });
    let status = pm.wait_exit(SETTLE);
    assert_eq!(status.code(), Some(3), "{}", pm.log());
    wait_log_line(&pm, &["haproxy.path"]);
}

#[test]
fn an_unwritable_config_path_is_logged_and_proxymgr_keeps_running() {
    if !tools() {
        return;
    }
    let zk = Zk::start();
    zk.create("/service_config", "");
    let mut pm = Proxymgr::start_with(|dir| {
        Proxymgr::config_yaml(dir, &zk.connect_string()).replacen(
            &format!("  config_path: {}/haproxy.cfg\n", dir.display()),
            "  config_path: /dev/null/haproxy.cfg\n",
            1,
        )
    });
    let a = Backend::start("a");
    add_server(&zk, "web", &a);
    zk.create("/service_config/web", &blob(&zk.connect_string(), "web", reserve_port(), ""));
    pm.wait_log("cannot write /dev/null/haproxy.cfg", SETTLE);
    hold(Duration::from_secs(2), "proxymgr running", || match pm.try_status() {
        None => Ok(()),
        Some(status) => Err(format!("it exited ({status})")),
    });
}

#[test]
fn a_stale_file_at_the_stats_socket_path_does_not_stop_haproxy() {
    if !tools() {
        return;
    }
    let zk = Zk::start();
    zk.create("/service_config", "");
    let pm = Proxymgr::start_with(|dir| {
        // What a crash can leave behind, or anything else that took the name.
        fs::write(dir.join("haproxy.sock"), "stale\n").expect("write a stale file at the socket path");
        Proxymgr::config_yaml(dir, &zk.connect_string())
    });
    let a = Backend::start("a");
    serving_web(&zk, &pm, &a);
    let info = pm.haproxy_command("show info").expect("the stats socket answers");
    assert!(info.contains("Pid:"), "{info}");
}

#[test]
fn a_proxymgr_yml_with_a_wrong_type_is_a_config_error() {
    let mut pm = Proxymgr::start_with(|dir| {
        Proxymgr::config_yaml(dir, "127.0.0.1:1").replacen(
            "haproxy:\n",
            "haproxy:\n  stop_timeout: \"ten\"\n",
            1,
        )
    });
    let status = pm.wait_exit(SETTLE);
    assert_eq!(status.code(), Some(3), "{}", pm.log());
    assert!(
        logged(&pm, &["proxymgr.yml", "haproxy.stop_timeout"]) || logged(&pm, &["proxymgr.yml", "haproxy"]),
        "the error names the file and the key:\n{}",
        pm.log()
    );
}

/// Issue 13 §3: a second proxymgr on the same proxymgr.yml (to debug, or an init script and the unit both
/// enabled) would take the first one's HAProxy for an orphan in the state file and replace it. It exits at once
/// instead, naming the one that runs, and the first serves on without a failed request.
#[test]
fn a_second_proxymgr_on_the_same_state_file_refuses_and_the_first_serves_on() {
    let Some((zk, mut pm)) = start() else { return };
    let a = Backend::start("a");
    let (port, pids) = serve(&zk, &pm, &zk.connect_string(), "web", &[&a]);
    let load = Load::start(port, 2, false);
    wait_hits(&a, 50, "the load loop runs");
    let config = pm.dir().join("proxymgr.yml").display().to_string();
    let second = support::run_proxymgr(&["-c", &config]);
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(4), "{err}");
    assert!(err.contains(&format!("another proxymgr (pid {}) owns", pm.pid())), "{err}");
    wait_hits(&a, 150, "the load loop runs on");
    load.finish().assert_none_failed("while a second proxymgr tried to start");
    // The first never noticed: its HAProxy is the one that served before.
    assert_undisturbed(&mut pm, port, &["a"], &pids);
}
