//! Every watcher of the original and a directory service_config (issue 4): Nerve registrations (weight,
//! per-server options) and the original's nodes under one path, campanjazk (child names are hosts), dns (names
//! re-resolved through a private /etc/hosts), file (`host:port` lines), refused blobs, and services read from
//! one JSON file each. Real HAProxy, real backends and real requests, as in `core.rs`; log lines are checked by
//! the fragments the issue promises (node path, `file:line`, DNS name), never whole lines.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::support::{self, http_get, reserve_port, wait_until, Backend, Proxymgr, Zk};

const SETTLE: Duration = Duration::from_secs(20);

/// The base of every hosts file the dns test writes: the names the rest of the machine relies on.
const HOSTS_BASE: &str = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n";

/// A ZooKeeper and a proxymgr following it, or None when a tool is missing (the test then skips).
fn start() -> Option<(Zk, Proxymgr)> {
    support::zk_and_proxymgr("")
}

/// The listen and server options every service here takes: round robin, so eight requests reach every
/// server of equal weight, and fast health checks, so an address nothing listens on goes down in a second.
const OPTIONS: &str =
    r#""listen_options":["mode http","balance roundrobin"],"server_options":["check inter 300 fall 1"]"#;

/// A `zookeeper` watcher blob following `/services/<service>`.
fn zookeeper_blob(zk: &Zk, service: &str, port: u16) -> String {
    format!(
        r#"{{"type":"zookeeper","server":"{}","path":"/services/{service}","port":{port},{OPTIONS}}}"#,
        zk.connect_string()
    )
}

/// A `file` watcher blob reading `file` every 0.2 s.
fn file_blob(file: &Path, port: u16) -> String {
    format!(r#"{{"type":"file","file":"{}","interval":0.2,"port":{port},{OPTIONS}}}"#, file.display())
}

/// A server node as the original writes it.
fn original_node(backend: &Backend) -> String {
    format!(r#"{{"address":"127.0.0.1","port":{}}}"#, backend.port())
}

/// A server node as SmartStack's Nerve writes it; `options` is its `haproxy_server_options`, left out if empty.
fn nerve_node(backend: &Backend, weight: u16, options: &str) -> String {
    let options =
        if options.is_empty() { String::new() } else { format!(r#","haproxy_server_options":"{options}""#) };
    format!(r#"{{"host":"127.0.0.1","port":{},"name":"web","weight":{weight}{options}}}"#, backend.port())
}

/// The name proxymgr gives a backend's server in HAProxy: `address:port`.
fn server_name(backend: &Backend) -> String {
    format!("127.0.0.1:{}", backend.port())
}

/// The backend names that answered `n` requests through `port` (errors count as "error: ...").
fn answers(port: u16, n: usize) -> BTreeSet<String> {
    (0..n).map(|_| http_get(port).unwrap_or_else(|e| format!("error: {e}"))).collect()
}

/// Waits until 8 requests through `port` are answered by exactly `expected`.
fn wait_answers(port: u16, expected: &[&str]) {
    let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
    wait_until(SETTLE, &format!("port {port} answered by exactly {expected:?}"), || {
        answers(port, 8) == expected
    });
}

/// Waits until every one of 8 requests through `port` fails (no server serves).
fn wait_all_fail(port: u16) {
    wait_until(SETTLE, &format!("every request through port {port} fails"), || {
        (0..8).all(|_| http_get(port).is_err())
    });
}

fn refused(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
}

/// The `server <name> ...` line of haproxy.cfg, without its indentation, if there is one.
fn server_line(cfg: &str, name: &str) -> Option<String> {
    // `server <name> <address:port> ...`: named by its address, or on HAProxy 1.8 to 2.4 by its slot.
    let this = |line: &&str| {
        let words: Vec<&str> = line.split_whitespace().collect();
        words.first() == Some(&"server") && (words.get(1) == Some(&name) || words.get(2) == Some(&name))
    };
    cfg.lines().map(str::trim).find(this).map(str::to_string)
}

/// Whether `line` has `words` (space-separated words, e.g. "weight 5") as whole words.
fn has_words(line: &str, words: &str) -> bool {
    format!(" {line} ").contains(&format!(" {words} "))
}

/// The names of haproxy.cfg's `listen` sections.
fn listen_sections(cfg: &str) -> BTreeSet<String> {
    cfg.lines().filter_map(|line| line.strip_prefix("listen ")).map(|name| name.trim().to_string()).collect()
}

/// A server's `srv_uweight` (its weight as set at run time) in `show servers state <service>`.
fn uweight(pm: &Proxymgr, service: &str, server: &str) -> Option<String> {
    pm.servers_state(service).into_iter().find(|s| s.name == server).map(|s| s.uweight)
}

/// Waits until one line of the log written after byte `since` (`pm.log().len()` taken earlier; 0 for the whole
/// log) holds every one of `fragments`.
fn wait_log_line(pm: &Proxymgr, since: usize, fragments: &[&str]) {
    wait_until(SETTLE, &format!("a log line with all of {fragments:?}"), || {
        let log = pm.log();
        log.get(since..).unwrap_or_default().lines().any(|line| fragments.iter().all(|f| line.contains(f)))
    });
}

/// Replaces `path` as an editor or a deploy tool does: writes a sibling `<name>.tmp` and renames it over.
fn write_atomically(path: &Path, text: &str) {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    fs::write(&tmp, text).unwrap_or_else(|e| panic!("write {tmp:?}: {e}"));
    fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename {tmp:?} to {}: {e}", path.display()));
}

/// Rewrites `path` in place (same inode: truncate, then write), as a file bind-mounted elsewhere needs.
fn rewrite_in_place(path: &Path, text: &str) {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.write_all(text.as_bytes()).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A scratch directory for files a test needs before proxymgr starts (its hosts file).
fn scratch_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("proxymgr-watchers-").tempdir().expect("create a temporary directory")
}

#[test]
fn nerve_registrations_serve_with_their_weight_and_options() {
    let Some((zk, pm)) = start() else { return };
    let (a, b, c) = (Backend::start("a"), Backend::start("b"), Backend::start("c"));
    let port = reserve_port();
    zk.create("/services/web/web_0000000001", &nerve_node(&a, 10, "maxconn 50"));
    // Nerve's own nodes are ephemeral: this one lives as long as `b_session`.
    let b_session = zk.create_ephemeral("/services/web/web_0000000002", &nerve_node(&b, 10, ""));
    // A backup takes traffic only once every other server is gone.
    zk.create("/services/web/web_0000000003", &nerve_node(&c, 10, "backup"));
    zk.create("/services/web/web_0000000004", r#"{"port":9004,"name":"web","weight":10}"#);
    // Its servers leave one after the other below: with a removal hold, the last of them would stay for its time.
    let blob = zookeeper_blob(&zk, "web", port).replacen('{', r#"{"hold_removals":false,"#, 1);
    zk.create("/service_config/web", &blob);

    wait_answers(port, &["a", "b"]);
    wait_log_line(&pm, 0, &["web", "/services/web/web_0000000004", "skipped"]);
    wait_until(SETTLE, "one HAProxy serves", || pm.haproxy_pids().len() == 1);
    let cfg = pm.haproxy_cfg();
    let line = server_line(&cfg, &server_name(&a)).unwrap_or_else(|| panic!("a server line for a: {cfg}"));
    assert!(has_words(&line, "weight 10"), "Nerve's weight is on the line: {line}");
    let service_options = line.find("check inter 300 fall 1").expect("the service's server_options");
    let own_options = line.find("maxconn 50").expect("the node's haproxy_server_options");
    assert!(service_options < own_options, "the node's options come after the service's: {line}");
    let line = server_line(&cfg, &server_name(&c)).unwrap_or_else(|| panic!("a server line for c: {cfg}"));
    assert!(has_words(&line, "backup"), "{line}");
    assert_eq!(cfg.matches("\n  server ").count(), 3, "the node without host has no server: {cfg}");

    reweighted_at_run_time(&zk, &pm, "/services/web/web_0000000001", &a, "maxconn 50");
    wait_answers(port, &["a", "b"]);

    // Traffic follows deleted nodes, and nodes whose session ends.
    zk.delete("/services/web/web_0000000001");
    wait_answers(port, &["b"]);
    drop(b_session);
    wait_answers(port, &["c"]);
}

/// `backend`'s Nerve node at `node` in service `web`, of weight 10 with `options`, gets weight 5: it goes
/// through the runtime API, with no reload; `show servers state` has it, and so does haproxy.cfg.
fn reweighted_at_run_time(zk: &Zk, pm: &Proxymgr, node: &str, backend: &Backend, options: &str) {
    let (name, pids) = (server_name(backend), pm.haproxy_pids());
    assert_eq!(uweight(pm, "web", &name).as_deref(), Some("10"));
    zk.set(node, &nerve_node(backend, 5, options));
    wait_until(SETTLE, "the weight is 5 in HAProxy", || uweight(pm, "web", &name).as_deref() == Some("5"));
    assert_eq!(pm.haproxy_pids(), pids, "a weight change takes no reload");
    let named = pm.haproxy_name("web", &name).expect("HAProxy has the server");
    pm.wait_log(&format!("set weight web/{named} 5"), SETTLE);
    wait_until(SETTLE, "haproxy.cfg has the new weight", || {
        server_line(&pm.haproxy_cfg(), &name).is_some_and(|line| has_words(&line, "weight 5"))
    });
}

/// Two Nerve registrations of weight 10 serve; one is given weight 5, which takes no reload
/// (`reweighted_at_run_time`). One of matrix.rs's scenarios, run on every HAProxy version (the test above
/// covers it on the default one among much else).
pub(crate) fn a_new_weight_takes_no_reload() {
    let Some((zk, pm)) = start() else { return };
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let port = reserve_port();
    zk.create("/services/web/a", &nerve_node(&a, 10, ""));
    zk.create("/services/web/b", &nerve_node(&b, 10, ""));
    zk.create("/service_config/web", &zookeeper_blob(&zk, "web", port));
    wait_answers(port, &["a", "b"]);
    wait_until(SETTLE, "one HAProxy serves", || pm.haproxy_pids().len() == 1);
    reweighted_at_run_time(&zk, &pm, "/services/web/a", &a, "");
    wait_answers(port, &["a", "b"]);
}

#[test]
fn original_and_nerve_nodes_serve_side_by_side() {
    let Some((zk, pm)) = start() else { return };
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let port = reserve_port();
    zk.create("/services/web/a", &original_node(&a));
    zk.create(
        "/services/web/web_0000000001",
        &format!(r#"{{"host":"127.0.0.1","port":{},"name":"web"}}"#, b.port()),
    );
    zk.create("/service_config/web", &zookeeper_blob(&zk, "web", port));

    wait_answers(port, &["a", "b"]);
    let cfg = pm.haproxy_cfg();
    for backend in [&a, &b] {
        let name = server_name(backend);
        assert!(
            cfg.contains(&format!("  server {name} {name} check inter 300 fall 1\n")),
            "{name} has a plain line (no weight given, no options of its own): {cfg}"
        );
    }
}

#[test]
fn campanjazk_child_names_are_hosts_on_the_remote_port() {
    let Some((zk, pm)) = start() else { return };
    let a = Backend::start("a");
    let (port, other_port) = (reserve_port(), reserve_port());
    // The children's data means nothing to campanjazk.
    zk.create("/services/x/127.0.0.1", "not JSON, and ignored");
    // Nothing listens on 127.0.0.2: its server is there, health checks take it down.
    zk.create("/services/x/127.0.0.2", "");
    zk.create(
        "/service_config/x",
        &format!(
            r#"{{"type":"campanjazk","server":"{}","path":"/services/x","port":{port},"remote_port":{},{OPTIONS}}}"#,
            zk.connect_string(),
            a.port()
        ),
    );
    // Without remote_port the servers take the listen port. Nothing is sent there: 127.0.0.9 is nobody.
    zk.create("/services/y/127.0.0.9", "");
    zk.create(
        "/service_config/y",
        &format!(
            r#"{{"type":"campanjazk","server":"{}","path":"/services/y","port":{other_port},"listen_options":["mode http"]}}"#,
            zk.connect_string()
        ),
    );

    let one = format!("server 127.0.0.1:{0} 127.0.0.1:{0} ", a.port());
    let two = format!("server 127.0.0.2:{0} 127.0.0.2:{0} ", a.port());
    let nine = format!("server 127.0.0.9:{other_port} 127.0.0.9:{other_port}");
    wait_until(SETTLE, "haproxy.cfg has x's two hosts and y's", || {
        let cfg = pm.haproxy_cfg();
        cfg.contains(&one) && cfg.contains(&two) && cfg.contains(&nine)
    });
    wait_answers(port, &["a"]);

    // The reachable host leaves: only the unreachable one is left, so nothing serves.
    zk.delete("/services/x/127.0.0.1");
    wait_until(SETTLE, "haproxy.cfg drops 127.0.0.1", || {
        let cfg = pm.haproxy_cfg();
        !cfg.contains(&one) && cfg.contains(&two)
    });
    wait_all_fail(port);

    // It comes back.
    zk.create("/services/x/127.0.0.1", "");
    wait_answers(port, &["a"]);
    // haproxy.cfg follows runtime changes within its rewrite interval (200 ms).
    wait_until(SETTLE, "haproxy.cfg has 127.0.0.1 again", || pm.haproxy_cfg().contains(&one));
}

#[test]
fn dns_names_are_re_resolved_and_a_failed_lookup_keeps_the_last_addresses() {
    if !support::require("haproxy") || !support::require("zookeeper") || !support::require("unshare") {
        return;
    }
    // Declared before proxymgr, so that it outlives proxymgr's mount of the hosts file.
    let scratch = scratch_dir();
    let hosts = scratch.path().join("hosts");
    fs::write(&hosts, format!("{HOSTS_BASE}127.0.0.1 pm-a.test\n")).expect("write the hosts file");
    let zk = Zk::start();
    zk.create("/service_config", "");
    let pm = Proxymgr::start_with_hosts(&hosts, |dir| Proxymgr::config_yaml(dir, &zk.connect_string()));
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let port = reserve_port();
    // pm-b.test does not resolve yet: that must not keep pm-a.test out.
    zk.create(
        "/service_config/web",
        &format!(
            r#"{{"type":"dns","backends":[{{"name":"pm-a.test","port":{}}},{{"name":"pm-b.test","port":{}}}],
                "interval":0.2,"port":{port},{OPTIONS}}}"#,
            a.port(),
            b.port()
        ),
    );
    wait_answers(port, &["a"]);
    wait_log_line(&pm, 0, &["cannot resolve pm-b.test"]);
    // The server is the address the name resolved to, not the name.
    assert!(pm.haproxy_cfg().contains(&format!("server {0} {0} ", server_name(&a))), "{}", pm.haproxy_cfg());

    // A name that starts to resolve appears.
    rewrite_in_place(&hosts, &format!("{HOSTS_BASE}127.0.0.1 pm-a.test\n127.0.0.1 pm-b.test\n"));
    wait_answers(port, &["a", "b"]);

    // A name that stops resolving is logged and keeps its last addresses.
    let since = pm.log().len();
    rewrite_in_place(&hosts, &format!("{HOSTS_BASE}127.0.0.1 pm-b.test\n"));
    wait_log_line(&pm, since, &["cannot resolve pm-a.test"]);
    wait_answers(port, &["a", "b"]);
    assert!(server_line(&pm.haproxy_cfg(), &server_name(&a)).is_some(), "{}", pm.haproxy_cfg());
}

#[test]
fn a_servers_file_is_followed_line_by_line() {
    let Some((zk, pm)) = start() else { return };
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let port = reserve_port();
    let file = pm.dir().join("servers.txt");
    let path = file.display().to_string();
    fs::write(&file, format!("# web's servers\n\nnonsense\n127.0.0.1:{}\n127.0.0.1:99999\n", a.port()))
        .expect("write the servers file");
    zk.create("/service_config/web", &file_blob(&file, port));

    wait_answers(port, &["a"]);
    wait_log_line(&pm, 0, &["web", &format!("{path}:3:"), "skipped"]);
    wait_log_line(&pm, 0, &["web", &format!("{path}:5:"), "skipped"]);
    let log = pm.log();
    for fine in [1, 2, 4] {
        assert!(!log.contains(&format!("{path}:{fine}:")), "line {fine} is fine: {log}");
    }

    // Replaced whole, as deploy tools do.
    write_atomically(&file, &format!("127.0.0.1:{}\n127.0.0.1:{}\n", a.port(), b.port()));
    wait_answers(port, &["a", "b"]);

    // A file that is gone keeps the last servers.
    let since = pm.log().len();
    fs::remove_file(&file).expect("remove the servers file");
    wait_log_line(&pm, since, &["cannot read", &path]);
    wait_answers(port, &["a", "b"]);
}

#[test]
fn an_unknown_watcher_type_or_a_bad_port_is_refused_by_node() {
    let Some((zk, pm)) = start() else { return };
    let a = Backend::start("a");
    let (web, etcd, dns, file) = (reserve_port(), reserve_port(), reserve_port(), reserve_port());
    zk.create("/services/web/a", &original_node(&a));
    zk.create("/service_config/web", &zookeeper_blob(&zk, "web", web));
    wait_answers(web, &["a"]);
    wait_until(SETTLE, "one HAProxy serves", || pm.haproxy_pids().len() == 1);
    let pids = pm.haproxy_pids();

    zk.create("/service_config/etcd", &format!(r#"{{"type":"etcd","port":{etcd}}}"#));
    zk.create(
        "/service_config/dnsport",
        &format!(r#"{{"type":"dns","backends":[{{"name":"localhost","port":{}}}],"port":65536}}"#, a.port()),
    );
    let servers = pm.dir().join("servers.txt");
    fs::write(&servers, format!("127.0.0.1:{}\n", a.port())).expect("write a servers file");
    zk.create(
        "/service_config/fileport",
        &format!(r#"{{"type":"file","file":"{}","port":100000}}"#, servers.display()),
    );
    wait_log_line(
        &pm,
        0,
        &[
            "/service_config/etcd",
            r#"unknown watcher type "etcd", known types: zookeeper, campanjazk, dns, file"#,
        ],
    );
    wait_log_line(&pm, 0, &["/service_config/dnsport", "65536"]);
    wait_log_line(&pm, 0, &["/service_config/fileport", "100000"]);

    wait_answers(web, &["a"]);
    assert_eq!(
        listen_sections(&pm.haproxy_cfg()),
        BTreeSet::from(["web".to_string()]),
        "{}",
        pm.haproxy_cfg()
    );
    assert_eq!(pm.haproxy_pids(), pids, "refused blobs change nothing");
    for port in [etcd, dns, file] {
        assert!(refused(port), "nothing listens on {port}");
    }
}

#[test]
fn a_directory_of_json_files_is_the_service_config() {
    if !support::require("haproxy") {
        return;
    }
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (web, api, web_moved) = (reserve_port(), reserve_port(), reserve_port());
    // No ZooKeeper at all: the standard config with its service_config replaced.
    let pm = Proxymgr::start_with(|dir| {
        let services = dir.join("services");
        fs::create_dir(&services).expect("create the services directory");
        fs::write(dir.join("web.txt"), format!("127.0.0.1:{}\n", a.port())).expect("write web's servers");
        fs::write(services.join("web.json"), file_blob(&dir.join("web.txt"), web)).expect("write web.json");
        let yaml = Proxymgr::config_yaml(dir, "127.0.0.1:1");
        let (haproxy, _zookeeper) = yaml.split_once("service_config:\n").expect("a service_config section");
        format!("{haproxy}service_config:\n  type: directory\n  path: {}\n", services.display())
    });
    let services = pm.dir().join("services");
    wait_answers(web, &["a"]);
    assert_eq!(listen_sections(&pm.haproxy_cfg()), BTreeSet::from(["web".to_string()]), "web.json is web");

    // Editors' and tools' leftovers are not services, valid blobs or not.
    let leftovers = [".web.json", "web.json~", "notes.swp", "draft.json.tmp"];
    let leftover_ports: Vec<u16> = leftovers.iter().map(|_| reserve_port()).collect();
    for (name, port) in leftovers.iter().zip(&leftover_ports) {
        fs::write(services.join(name), file_blob(&pm.dir().join("web.txt"), *port))
            .expect("write a leftover");
    }
    // A file added at run time, written to api.json.tmp and renamed.
    fs::write(pm.dir().join("api.txt"), format!("127.0.0.1:{}\n", b.port())).expect("write api's servers");
    write_atomically(&services.join("api.json"), &file_blob(&pm.dir().join("api.txt"), api));
    wait_answers(api, &["b"]);
    wait_answers(web, &["a"]);
    let both = BTreeSet::from(["api".to_string(), "web".to_string()]);
    assert_eq!(listen_sections(&pm.haproxy_cfg()), both, "{}", pm.haproxy_cfg());
    for port in &leftover_ports {
        assert!(refused(*port), "a leftover file got port {port}");
    }

    // A bad file is logged with its path; the rest is untouched.
    let bad = services.join("bad.json");
    fs::write(&bad, "{").expect("write bad.json");
    wait_log_line(&pm, 0, &[&bad.display().to_string(), "invalid JSON"]);
    wait_answers(web, &["a"]);
    wait_answers(api, &["b"]);

    // A running service whose file turns bad keeps its last good spec.
    let web_json = services.join("web.json");
    let since = pm.log().len();
    fs::write(&web_json, r#"{"type":"#).expect("break web.json");
    wait_log_line(&pm, since, &[&web_json.display().to_string(), "invalid JSON"]);
    wait_answers(web, &["a"]);

    // A changed file moves the service.
    write_atomically(&web_json, &file_blob(&pm.dir().join("web.txt"), web_moved));
    wait_answers(web_moved, &["a"]);
    wait_until(SETTLE, "web's old port closes", || refused(web));

    // A removed file removes the service.
    fs::remove_file(services.join("api.json")).expect("remove api.json");
    wait_until(SETTLE, "api's port closes", || refused(api));
    wait_answers(web_moved, &["a"]);
    assert_eq!(
        listen_sections(&pm.haproxy_cfg()),
        BTreeSet::from(["web".to_string()]),
        "{}",
        pm.haproxy_cfg()
    );
}
