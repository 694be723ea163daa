//! haproxy.cfg from the desired state, with tinytemplate and templates built into the binary. Pure: no I/O.
//!
//! The file is rendered in pieces: the head (`global`, `defaults`), and per service a `listen` skeleton (what
//! only a reload can change) followed by its `server` lines (what the runtime API can change). The reconciler
//! compares skeletons to decide on a reload and reuses every piece that did not change.

use serde::Serialize;
use tinytemplate::TinyTemplate;

use super::Capabilities;
use crate::config::HaproxyConfig;
use crate::service::{Server, ServiceSpec};
use crate::slots::Layout;

const HEAD: &str = "\
# Written by proxymgr from its registry; any edit here is overwritten.
global
  stats socket {socket_path} mode 600 level admin
{{ if hard_stop_after }}  hard-stop-after {hard_stop_after}
{{ endif }}{{ for line in global }}  {line}
{{ endfor }}
defaults
{{ for line in defaults }}  {line}
{{ endfor }}{{ if prometheus_exporter }}
frontend {exporter_name}
  bind {prometheus_exporter}
  mode http
  no log
  http-request use-service prometheus-exporter if \\{ path /metrics }
{{ endif }}";

const LISTEN: &str = "
{kind} {name}
{{ if bind }}  bind fd@{fd}{bind_options}
{{ endif }}{{ if http }}  mode http
{{ endif }}{{ if idle_close }}  option idle-close-on-response
{{ endif }}{{ for line in listen_options }}  {line}
{{ endfor }}";

/// A shared frontend: its lines, then the routing through its map (`route.rs` says why three lookups).
const FRONTEND: &str = "
frontend {name}
  bind fd@{fd}{bind_options}
  mode http
{{ if idle_close }}  option idle-close-on-response
{{ endif }}{{ for line in options }}  {line}
{{ endfor }}  http-request del-header {header}
  http-request set-header {header} %[req.hdr(host),lower,field(1,:)]%[path] if \\{ req.hdr(host),lower,field(1,:) -m reg ^[a-z0-9.-]+$ }
  http-request set-var({var}) req.fhdr({header}),map_beg({map})
  http-request replace-header {header} ^[^./]*(.*)$ *\\1 if !\\{ var({var}) -m found }
  http-request set-var({var}) req.fhdr({header}),map_beg({map}) if !\\{ var({var}) -m found }
  http-request set-var({var}) path,map_beg({map}) if !\\{ var({var}) -m found }
  http-request del-header {header}
  use_backend %[var({var})] if \\{ var({var}) -m found }
";

/// A section of `haproxy.extra_sections`, as written.
const EXTRA: &str = "
{header}
{{ for line in lines }}  {line}
{{ endfor }}";

const SERVERS: &str = "\
{{ for server in servers }}  server {server.name} {server.endpoint}{server.options}
{{ endfor }}{{ for run in empty_slots }}  server-template {slot_prefix} {run} {placeholder}{slot_options} disabled
{{ endfor }}";

use crate::config::EXPORTER_NAME;

#[derive(Serialize)]
struct Head<'a> {
    socket_path: String,
    /// Empty when HAProxy lacks it, it is disabled, or the global lines set it themselves.
    hard_stop_after: String,
    global: &'a [String],
    defaults: &'a [String],
    /// The exporter frontend's `address:port`; empty when it is not rendered.
    prometheus_exporter: String,
    exporter_name: &'static str,
}

#[derive(Serialize)]
struct Listen<'a> {
    /// `listen` with a port of its own, `backend` without.
    kind: &'static str,
    name: &'a str,
    bind: bool,
    fd: i32,
    /// The service's bind options, with a leading space when there are any.
    bind_options: String,
    /// Whether it joins frontends (which route HTTP).
    http: bool,
    idle_close: bool,
    listen_options: &'a [String],
}

#[derive(Serialize)]
struct FrontendSection<'a> {
    name: &'a str,
    fd: i32,
    bind_options: String,
    idle_close: bool,
    options: &'a [String],
    map: String,
    header: &'static str,
    var: &'static str,
}

#[derive(Serialize)]
struct Extra<'a> {
    header: &'a str,
    lines: &'a [String],
}

/// The request header the frontends build their map keys in (removed before the request goes on), and the
/// variable the backend found is kept in.
const ROUTE_HEADER: &str = "X-Proxymgr-Route";
const ROUTE_VAR: &str = "txn.proxymgr_backend";

#[derive(Serialize)]
struct Servers {
    servers: Vec<ServerLine>,
    /// Runs of empty slots (`first-last`), one `server-template` each.
    empty_slots: Vec<String>,
    slot_prefix: &'static str,
    placeholder: &'static str,
    /// The service's server options, with a leading space when there are any.
    slot_options: String,
}

#[derive(Serialize)]
struct ServerLine {
    name: String,
    endpoint: String,
    /// `weight N` and the options, joined, with a leading space when there are any.
    options: String,
}

pub struct Renderer {
    templates: TinyTemplate<'static>,
}

impl Default for Renderer {
    fn default() -> Self {
        let mut templates = TinyTemplate::new();
        // tinytemplate HTML-escapes by default; haproxy.cfg is not HTML.
        templates.set_default_formatter(&tinytemplate::format_unescaped);
        // The templates are constants of this file; the unit tests render both.
        templates.add_template("head", HEAD).expect("the head template parses");
        templates.add_template("listen", LISTEN).expect("the listen template parses");
        templates.add_template("frontend", FRONTEND).expect("the frontend template parses");
        templates.add_template("extra", EXTRA).expect("the extra section template parses");
        templates.add_template("servers", SERVERS).expect("the servers template parses");
        Renderer { templates }
    }
}

impl Renderer {
    /// The head: `global`, `defaults`, the exporter's frontend, the shared frontends (each on its listener in
    /// `frontend_fds`) and the extra sections: everything that is the operator's, from proxymgr.yml.
    pub fn head(
        &self,
        config: &HaproxyConfig,
        caps: &Capabilities,
        frontend_fds: &std::collections::BTreeMap<String, i32>,
    ) -> String {
        let sets_it = config.global.iter().any(|l| l.split_whitespace().next() == Some("hard-stop-after"));
        let hard_stop_after = if caps.hard_stop_after && !sets_it && config.hard_stop_after > 0.0 {
            format!("{}ms", (config.hard_stop_after * 1000.0).round() as u64)
        } else {
            String::new()
        };
        let head = Head {
            socket_path: config.socket_path.display().to_string(),
            hard_stop_after,
            global: &config.global,
            defaults: &config.defaults,
            prometheus_exporter: match config.prometheus_exporter {
                Some(address) if caps.prometheus_exporter => address.to_string(),
                _ => String::new(),
            },
            exporter_name: EXPORTER_NAME,
        };
        let mut text = self
            .templates
            .render("head", &head)
            .expect("the head renders: its context has no optional field");
        // Before 1.6 HAProxy has nothing to route with (`Capabilities::unmet` warns at start).
        let frontends = config.frontends.iter().filter(|_| caps.shared_frontends);
        for (name, frontend) in frontends {
            // One that could not be bound is left out until it is (the core logs it and tries again).
            let Some(&fd) = frontend_fds.get(name) else { continue };
            let mentions =
                frontend.options.iter().chain(&config.defaults).any(|l| l.contains("idle-close-on-response"));
            let section = FrontendSection {
                name,
                fd,
                bind_options: frontend.bind_options.as_ref().map(|o| format!(" {o}")).unwrap_or_default(),
                idle_close: caps.idle_close_on_response && !mentions,
                options: &frontend.options,
                map: config.map_path(name).display().to_string(),
                header: ROUTE_HEADER,
                var: ROUTE_VAR,
            };
            let frontend = self.templates.render("frontend", &section);
            text.push_str(&frontend.expect("a frontend renders: its context has no optional field"));
        }
        for (header, lines) in &config.extra_sections {
            let extra = self.templates.render("extra", &Extra { header, lines });
            text.push_str(&extra.expect("an extra section renders: its context has no optional field"));
        }
        text
    }

    /// A service's section without its servers, what only a reload can change: `listen` on its port (`fd`),
    /// or `backend` for a service without one, reached through frontends alone.
    pub fn listen(
        &self,
        name: &str,
        fd: Option<i32>,
        spec: &ServiceSpec,
        config: &HaproxyConfig,
        caps: &Capabilities,
    ) -> String {
        let http = !spec.frontends.is_empty();
        let listen = Listen {
            kind: if fd.is_some() { "listen" } else { "backend" },
            name,
            bind: fd.is_some(),
            fd: fd.unwrap_or(-1),
            bind_options: spec.bind_options.as_ref().map(|o| format!(" {o}")).unwrap_or_default(),
            http,
            idle_close: fd.is_some() && caps.idle_close_on_response && wants_idle_close(config, spec, http),
            listen_options: &spec.listen_options,
        };
        self.templates
            .render("listen", &listen)
            .expect("a listen section renders: its context has no optional field")
    }

    /// The `server` lines of a service. `servers` must be sorted, so that equal sets render equal text.
    /// `defaults` are the config's `defaults` lines, for their `default-server` line. Where HAProxy has slots
    /// (`slots.rs`), `slots` names the slot of each server in one, and the empty slots follow the servers.
    pub fn servers(
        &self,
        spec: &ServiceSpec,
        servers: &[Server],
        defaults: &[String],
        caps: &Capabilities,
        slots: Option<&Layout>,
    ) -> String {
        let sets_init_addr = default_server(defaults, &spec.listen_options)
            .chain(spec.server_options.iter().map(String::as_str))
            .any(|line| line.split_whitespace().any(|w| w == "init-addr"));
        let servers = Servers {
            servers: servers
                .iter()
                .map(|s| {
                    let mut options = server_arguments(spec, s, " ");
                    if !s.has_ip() && caps.init_addr && !sets_init_addr && !options.contains("init-addr") {
                        // A name that does not resolve starts the server in maintenance instead of failing
                        // the whole config.
                        options.push_str(" init-addr libc,none");
                    }
                    let name = s.name();
                    let name = match slots.and_then(|l| l.taken.get(&name)) {
                        Some(&slot) => crate::slots::name(slot),
                        None => name,
                    };
                    ServerLine { name, endpoint: s.endpoint(), options }
                })
                .collect(),
            empty_slots: slots
                .map(|l| l.empty_runs().iter().map(|(first, last)| format!("{first}-{last}")).collect())
                .unwrap_or_default(),
            slot_prefix: crate::slots::PREFIX,
            placeholder: crate::slots::PLACEHOLDER,
            slot_options: spec.server_options.iter().map(|o| format!(" {o}")).collect(),
        };
        self.templates
            .render("servers", &servers)
            .expect("server lines render: their context has no optional field")
    }
}

/// The arguments of `add server` for `server`: its address, then what its line in a config would get from the
/// `default-server` lines (HAProxy applies those to servers of a config only), then its own arguments; later
/// keywords override earlier ones, as they do on a line.
pub fn add_arguments(defaults: &[String], spec: &ServiceSpec, server: &Server) -> String {
    let mut text = server.endpoint();
    for line in default_server(defaults, &spec.listen_options) {
        text.push(' ');
        text.push_str(line);
    }
    text.push_str(&server_arguments(spec, server, " "));
    text
}

/// The arguments of the `default-server` lines of `defaults` and then of a service's listen options.
pub fn default_server<'a>(defaults: &'a [String], listen: &'a [String]) -> impl Iterator<Item = &'a str> {
    defaults.iter().chain(listen).filter_map(|line| {
        let line = line.trim_start();
        let rest = line.strip_prefix("default-server")?;
        rest.starts_with(char::is_whitespace).then(|| rest.trim())
    })
}

/// What follows the address on a server's line (and in `add server`): its weight, the service's options, then
/// its own, each with `separator` before it.
pub fn server_arguments(spec: &ServiceSpec, server: &Server, separator: &str) -> String {
    let mut text = String::new();
    if let Some(weight) = server.weight {
        text.push_str(&format!("{separator}weight {weight}"));
    }
    for option in spec.server_options.iter().chain(&server.options) {
        text.push_str(separator);
        text.push_str(option);
    }
    text
}

/// Keep-alive clients lose a request at every reload unless idle connections are closed after a response
/// (DESIGN.md §3: 43-69 errors per 50 reloads without it, 0 with it). HAProxy takes it in HTTP mode only and
/// warns elsewhere, so it goes where the service is HTTP and its options do not speak of it themselves.
fn wants_idle_close(config: &HaproxyConfig, spec: &ServiceSpec, http: bool) -> bool {
    let mode = |lines: &[String]| {
        lines.iter().rev().find_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            ["mode", mode] => Some(mode == "http"),
            _ => None,
        })
    };
    let is_http = http || mode(&spec.listen_options).or_else(|| mode(&config.defaults)).unwrap_or(false);
    let mentions =
        spec.listen_options.iter().chain(&config.defaults).any(|l| l.contains("idle-close-on-response"));
    is_http && !mentions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::WatcherSpec;
    use expect_test::expect;
    use std::collections::BTreeMap;

    const V26: Capabilities = Capabilities::of((2, 6));
    const V15: Capabilities = Capabilities::of((1, 5));

    pub fn web() -> ServiceSpec {
        ServiceSpec {
            port: Some(8080),
            listen_options: vec!["mode http".into(), "balance roundrobin".into()],
            server_options: vec!["check".into(), "inter 2000".into()],
            watcher: WatcherSpec::Zookeeper { server: "127.0.0.1:2181".into(), path: "/services/web".into() },
            ..ServiceSpec::example()
        }
    }

    fn servers() -> Vec<Server> {
        let weighted = Server {
            weight: Some(20),
            options: vec!["backup".into()],
            ..Server::new("127.0.0.1", 9003).unwrap()
        };
        vec![Server::new("127.0.0.1", 9001).unwrap(), weighted, Server::new("::1", 9002).unwrap()]
    }

    fn config() -> HaproxyConfig {
        HaproxyConfig {
            socket_path: "/run/proxymgr/haproxy.sock".into(),
            global: vec!["maxconn 4096".into()],
            defaults: vec!["mode tcp".into(), "timeout client 1m".into()],
            ..HaproxyConfig::default()
        }
    }

    #[test]
    fn head_snapshot() {
        expect![[r#"
            # Written by proxymgr from its registry; any edit here is overwritten.
            global
              stats socket /run/proxymgr/haproxy.sock mode 600 level admin
              hard-stop-after 60000ms
              maxconn 4096

            defaults
              mode tcp
              timeout client 1m
        "#]]
        .assert_eq(&Renderer::default().head(&config(), &V26, &BTreeMap::new()));
        let old = Renderer::default().head(&config(), &V15, &BTreeMap::new());
        assert!(!old.contains("hard-stop-after"), "{old}");
        let own = HaproxyConfig { global: vec!["hard-stop-after 5s".into()], ..config() };
        assert_eq!(
            Renderer::default().head(&own, &V26, &BTreeMap::new()).matches("hard-stop-after").count(),
            1
        );
    }

    #[test]
    fn the_prometheus_exporter_frontend_follows_defaults() {
        let r = Renderer::default();
        let exporter = HaproxyConfig { prometheus_exporter: Some(([127, 0, 0, 1], 8405).into()), ..config() };
        expect![[r#"
            # Written by proxymgr from its registry; any edit here is overwritten.
            global
              stats socket /run/proxymgr/haproxy.sock mode 600 level admin
              hard-stop-after 60000ms
              maxconn 4096

            defaults
              mode tcp
              timeout client 1m

            frontend proxymgr-prometheus
              bind 127.0.0.1:8405
              mode http
              no log
              http-request use-service prometheus-exporter if { path /metrics }
        "#]]
        .assert_eq(&r.head(&exporter, &V26, &BTreeMap::new()));
        let v6 = HaproxyConfig { prometheus_exporter: Some("[::1]:8405".parse().unwrap()), ..config() };
        assert!(r.head(&v6, &V26, &BTreeMap::new()).contains("\n  bind [::1]:8405\n"));
        let v18 = Capabilities::of((1, 8));
        assert_eq!(
            r.head(&exporter, &v18, &BTreeMap::new()),
            r.head(&config(), &v18, &BTreeMap::new()),
            "HAProxy 1.8 has no exporter"
        );
        assert!(!r.head(&config(), &V26, &BTreeMap::new()).contains("frontend"), "not asked for");
    }

    #[test]
    fn listen_snapshot() {
        let r = Renderer::default();
        let text = r.listen("web", Some(7), &web(), &config(), &V26)
            + &r.servers(&web(), &servers(), &[], &V26, None);
        expect![[r#"

            listen web
              bind fd@7
              option idle-close-on-response
              mode http
              balance roundrobin
              server 127.0.0.1:9001 127.0.0.1:9001 check inter 2000
              server 127.0.0.1:9003 127.0.0.1:9003 weight 20 check inter 2000 backup
              server ::1:9002 [::1]:9002 check inter 2000
        "#]]
        .assert_eq(&text);
    }

    #[test]
    fn slots_snapshot() {
        let v24 = Capabilities::of((2, 4));
        let list = servers();
        let held = |name: &str| (name == "::1:9002").then_some(2);
        let layout = crate::slots::layout(&list, held);
        let want = "  server slot1 127.0.0.1:9001 check inter 2000
  server 127.0.0.1:9003 127.0.0.1:9003 weight 20 check inter 2000 backup
  server slot2 [::1]:9002 check inter 2000
  server-template slot 3-6 127.0.0.1:1 check inter 2000 disabled
";
        assert_eq!(Renderer::default().servers(&web(), &list, &[], &v24, Some(&layout)), want);
        let gaps = Layout { taken: [("127.0.0.1:9001".into(), 2)].into(), empty: [1, 3, 4].into() };
        let want = "  server slot2 127.0.0.1:9001 check inter 2000
  server-template slot 1-1 127.0.0.1:1 check inter 2000 disabled
  server-template slot 3-4 127.0.0.1:1 check inter 2000 disabled
";
        assert_eq!(Renderer::default().servers(&web(), &list[..1], &[], &v24, Some(&gaps)), want);
    }

    #[test]
    fn idle_close_only_for_http_services_that_do_not_choose_themselves() {
        let r = Renderer::default();
        let has = |spec: &ServiceSpec, config: &HaproxyConfig, caps: &Capabilities| {
            r.listen("s", Some(3), spec, config, caps).lines().any(|l| l == "  option idle-close-on-response")
        };
        let tcp = ServiceSpec { listen_options: vec!["mode tcp".into()], ..web() };
        let inherits = ServiceSpec { listen_options: vec![], ..web() };
        let http_defaults = HaproxyConfig { defaults: vec!["mode http".into()], ..config() };
        let own = ServiceSpec {
            listen_options: vec!["mode http".into(), "no option idle-close-on-response".into()],
            ..web()
        };
        assert!(has(&web(), &config(), &V26));
        assert!(!has(&web(), &config(), &V15), "HAProxy before 2.6 does not know it");
        assert!(!has(&tcp, &http_defaults, &V26));
        assert!(!has(&inherits, &config(), &V26), "defaults say tcp");
        assert!(has(&inherits, &http_defaults, &V26));
        assert!(!has(&own, &config(), &V26));
    }

    #[test]
    fn no_options_and_no_servers() {
        let spec = ServiceSpec { listen_options: vec![], server_options: vec![], ..web() };
        let r = Renderer::default();
        expect![[r#"

            listen empty
              bind fd@3
        "#]]
        .assert_eq(
            &(r.listen("empty", Some(3), &spec, &config(), &V26) + &r.servers(&spec, &[], &[], &V26, None)),
        );
        assert_eq!(
            r.servers(&spec, &servers()[..1], &[], &V26, None),
            "  server 127.0.0.1:9001 127.0.0.1:9001\n"
        );
    }

    #[test]
    fn braces_in_values_are_not_template_syntax() {
        let spec =
            ServiceSpec { listen_options: vec!["http-request set-header X {a} %[src]".into()], ..web() };
        let text = Renderer::default().listen("web", Some(3), &spec, &config(), &V26);
        assert!(text.contains("  http-request set-header X {a} %[src]\n"), "{text}");
    }
}

#[cfg(test)]
mod edge_tests {
    use super::tests::web;
    use super::*;
    use crate::config::Frontend;
    use crate::route::Join;
    use expect_test::expect;
    use std::collections::BTreeMap;

    const V26: Capabilities = Capabilities::of((2, 6));

    fn edge() -> HaproxyConfig {
        let https = Frontend {
            bind: "0.0.0.0:443".parse().unwrap(),
            bind_options: Some("ssl crt /etc/proxymgr/edge.pem alpn h2,http/1.1".into()),
            options: vec!["option forwardfor".into()],
        };
        let http = Frontend {
            bind: "0.0.0.0:80".parse().unwrap(),
            bind_options: None,
            options: vec!["http-request redirect scheme https code 301".into()],
        };
        let stats = ["bind 127.0.0.1:8404", "stats enable"].map(String::from).to_vec();
        HaproxyConfig {
            socket_path: "/run/proxymgr/haproxy.sock".into(),
            global: vec![],
            defaults: vec!["mode http".into()],
            map_dir: Some("/var/lib/proxymgr/maps".into()),
            frontends: [("https".to_string(), https), ("http".to_string(), http)].into(),
            extra_sections: [("listen stats".to_string(), stats)].into(),
            ..HaproxyConfig::default()
        }
    }

    #[test]
    fn frontends_and_extra_sections_follow_the_head() {
        let fds: BTreeMap<String, i32> = [("https".to_string(), 5), ("http".to_string(), 6)].into();
        expect![[r#"
            # Written by proxymgr from its registry; any edit here is overwritten.
            global
              stats socket /run/proxymgr/haproxy.sock mode 600 level admin
              hard-stop-after 60000ms

            defaults
              mode http

            frontend http
              bind fd@6
              mode http
              option idle-close-on-response
              http-request redirect scheme https code 301
              http-request del-header X-Proxymgr-Route
              http-request set-header X-Proxymgr-Route %[req.hdr(host),lower,field(1,:)]%[path] if { req.hdr(host),lower,field(1,:) -m reg ^[a-z0-9.-]+$ }
              http-request set-var(txn.proxymgr_backend) req.fhdr(X-Proxymgr-Route),map_beg(/var/lib/proxymgr/maps/http.map)
              http-request replace-header X-Proxymgr-Route ^[^./]*(.*)$ *\1 if !{ var(txn.proxymgr_backend) -m found }
              http-request set-var(txn.proxymgr_backend) req.fhdr(X-Proxymgr-Route),map_beg(/var/lib/proxymgr/maps/http.map) if !{ var(txn.proxymgr_backend) -m found }
              http-request set-var(txn.proxymgr_backend) path,map_beg(/var/lib/proxymgr/maps/http.map) if !{ var(txn.proxymgr_backend) -m found }
              http-request del-header X-Proxymgr-Route
              use_backend %[var(txn.proxymgr_backend)] if { var(txn.proxymgr_backend) -m found }

            frontend https
              bind fd@5 ssl crt /etc/proxymgr/edge.pem alpn h2,http/1.1
              mode http
              option idle-close-on-response
              option forwardfor
              http-request del-header X-Proxymgr-Route
              http-request set-header X-Proxymgr-Route %[req.hdr(host),lower,field(1,:)]%[path] if { req.hdr(host),lower,field(1,:) -m reg ^[a-z0-9.-]+$ }
              http-request set-var(txn.proxymgr_backend) req.fhdr(X-Proxymgr-Route),map_beg(/var/lib/proxymgr/maps/https.map)
              http-request replace-header X-Proxymgr-Route ^[^./]*(.*)$ *\1 if !{ var(txn.proxymgr_backend) -m found }
              http-request set-var(txn.proxymgr_backend) req.fhdr(X-Proxymgr-Route),map_beg(/var/lib/proxymgr/maps/https.map) if !{ var(txn.proxymgr_backend) -m found }
              http-request set-var(txn.proxymgr_backend) path,map_beg(/var/lib/proxymgr/maps/https.map) if !{ var(txn.proxymgr_backend) -m found }
              http-request del-header X-Proxymgr-Route
              use_backend %[var(txn.proxymgr_backend)] if { var(txn.proxymgr_backend) -m found }

            listen stats
              bind 127.0.0.1:8404
              stats enable
        "#]].assert_eq(&Renderer::default().head(&edge(), &V26, &fds));
    }

    #[test]
    fn a_frontend_without_a_listener_is_left_out() {
        let fds: BTreeMap<String, i32> = [("http".to_string(), 6)].into();
        let head = Renderer::default().head(&edge(), &V26, &fds);
        assert!(head.contains("frontend http\n") && !head.contains("frontend https"), "{head}");
    }

    #[test]
    fn a_service_without_a_port_is_a_backend_and_one_that_joins_frontends_is_http() {
        let join = Join { hosts: vec!["api.test".into()], paths: vec![], default: false };
        let api = ServiceSpec {
            port: None,
            frontends: [("https".to_string(), join)].into(),
            listen_options: vec!["balance roundrobin".into()],
            ..web()
        };
        expect![[r#"

            backend api
              mode http
              balance roundrobin
        "#]]
        .assert_eq(&Renderer::default().listen("api", None, &api, &edge(), &V26));
        let tls =
            ServiceSpec { port: Some(8443), bind_options: Some("ssl crt /etc/ssl/api.pem".into()), ..api };
        expect![[r#"

            listen api
              bind fd@7 ssl crt /etc/ssl/api.pem
              mode http
              option idle-close-on-response
              balance roundrobin
        "#]]
        .assert_eq(&Renderer::default().listen("api", Some(7), &tls, &edge(), &V26));
    }
}
