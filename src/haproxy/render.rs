//! haproxy.cfg from the desired state, with tinytemplate and templates built into the binary. Pure: no I/O.
//!
//! The file is rendered in pieces, the head (`global`, `defaults`) and one `listen` section per service, so that
//! a one-service change can reuse every other section as it was.

use serde::Serialize;
use tinytemplate::TinyTemplate;

use crate::config::HaproxyConfig;
use crate::service::{Server, ServiceSpec};

const HEAD: &str = "\
# Written by proxymgr from its registry; any edit here is overwritten.
global
  stats socket {socket_path} mode 600 level admin
{{ for line in global }}  {line}
{{ endfor }}
defaults
{{ for line in defaults }}  {line}
{{ endfor }}";

const LISTEN: &str = "
listen {name}
  bind fd@{fd}
{{ for line in listen_options }}  {line}
{{ endfor }}{{ for server in servers }}  server {server.name} {server.endpoint}{server_options}
{{ endfor }}";

#[derive(Serialize)]
struct Head<'a> {
    socket_path: String,
    global: &'a [String],
    defaults: &'a [String],
}

#[derive(Serialize)]
struct Listen<'a> {
    name: &'a str,
    fd: i32,
    listen_options: &'a [String],
    /// The service's server options joined, with a leading space when there are any.
    server_options: String,
    servers: Vec<ServerLine>,
}

#[derive(Serialize)]
struct ServerLine {
    name: String,
    endpoint: String,
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
        Renderer { templates }
    }
}

impl Renderer {
    pub fn head(&self, config: &HaproxyConfig) -> String {
        let head = Head {
            socket_path: config.socket_path.display().to_string(),
            global: &config.global,
            defaults: &config.defaults,
        };
        self.templates.render("head", &head).expect("the head renders: its context has no optional field")
    }

    /// One `listen` section. `servers` must be sorted, so that equal sets render equal text.
    pub fn listen(&self, name: &str, fd: i32, spec: &ServiceSpec, servers: &[Server]) -> String {
        let server_options = if spec.server_options.is_empty() {
            String::new()
        } else {
            format!(" {}", spec.server_options.join(" "))
        };
        let listen = Listen {
            name,
            fd,
            listen_options: &spec.listen_options,
            server_options,
            servers: servers.iter().map(|s| ServerLine { name: s.name(), endpoint: s.endpoint() }).collect(),
        };
        self.templates
            .render("listen", &listen)
            .expect("a listen section renders: its context has no optional field")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::WatcherSpec;
    use expect_test::expect;

    pub fn web() -> ServiceSpec {
        ServiceSpec {
            port: 8080,
            listen_options: vec!["mode http".into(), "balance roundrobin".into()],
            server_options: vec!["check".into(), "inter 2000".into()],
            watcher: WatcherSpec::Zookeeper { server: "127.0.0.1:2181".into(), path: "/services/web".into() },
        }
    }

    fn servers() -> Vec<Server> {
        vec![Server::new("127.0.0.1", 9001).unwrap(), Server::new("::1", 9002).unwrap()]
    }

    fn config() -> HaproxyConfig {
        HaproxyConfig {
            socket_path: "/run/proxymgr/haproxy.sock".into(),
            global: vec!["maxconn 4096".into()],
            defaults: vec!["mode http".into(), "timeout client 1m".into()],
            ..HaproxyConfig::default()
        }
    }

    #[test]
    fn head_snapshot() {
        expect![[r#"
            # Written by proxymgr from its registry; any edit here is overwritten.
            global
              stats socket /run/proxymgr/haproxy.sock mode 600 level admin
              maxconn 4096

            defaults
              mode http
              timeout client 1m
        "#]]
        .assert_eq(&Renderer::default().head(&config()));
    }

    #[test]
    fn listen_snapshot() {
        expect![[r#"

            listen web
              bind fd@7
              mode http
              balance roundrobin
              server 127.0.0.1:9001 127.0.0.1:9001 check inter 2000
              server ::1:9002 [::1]:9002 check inter 2000
        "#]]
        .assert_eq(&Renderer::default().listen("web", 7, &web(), &servers()));
    }

    #[test]
    fn no_options_and_no_servers() {
        let spec = ServiceSpec { listen_options: vec![], server_options: vec![], ..web() };
        expect![[r#"

            listen empty
              bind fd@3
        "#]]
        .assert_eq(&Renderer::default().listen("empty", 3, &spec, &[]));
        let one = Renderer::default().listen("one", 3, &spec, &servers()[..1]);
        assert!(one.ends_with("  server 127.0.0.1:9001 127.0.0.1:9001\n"), "{one}");
    }

    #[test]
    fn braces_in_values_are_not_template_syntax() {
        let spec =
            ServiceSpec { listen_options: vec!["http-request set-header X {a} %[src]".into()], ..web() };
        let text = Renderer::default().listen("web", 3, &spec, &[]);
        assert!(text.contains("  http-request set-header X {a} %[src]\n"), "{text}");
    }
}
