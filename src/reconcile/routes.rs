//! The routing table, pure and table-tested: which backend each frontend's map sends each key to, from every
//! service's joins, and the joins and keys left out (`Refusal`).
//!
//! A key two services claim stays with the one the table gave it to before, or, when neither had it, goes to
//! the first by name: a newcomer never takes a route from a service that serves it. A join naming a frontend
//! proxymgr.yml does not have is left out; the service is served all the same (on its own port, and through
//! its other joins).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::plan::{FrontendRoutes, Routes};
use crate::route::Key;
use crate::service::ServiceSpec;

/// A join or a key of a service that is not routed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    /// Its blob joins a frontend proxymgr.yml does not have.
    NoFrontend { service: String, frontend: String },
    /// Another service has the key on that frontend.
    Taken { service: String, frontend: String, key: Key, origin: String, by: String },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoFrontend { service, frontend } => write!(
                f,
                "service {service}: frontends.{frontend}: no frontend {frontend:?} in proxymgr.yml; this join is left out"
            ),
            Refusal::Taken { service, frontend, key, origin, by } => write!(
                f,
                "service {service}: frontends.{frontend}.{origin}: {:?} is already routed to service {by}; left out",
                key.as_str()
            ),
        }
    }
}

/// The routes of every frontend of proxymgr.yml (`map_paths`: each one's map file, as haproxy.cfg names it),
/// from the services' specs, keeping each key contested with the service `previous` gave it to.
pub fn table<'a>(
    services: impl IntoIterator<Item = (&'a str, &'a ServiceSpec)>,
    map_paths: &BTreeMap<String, String>,
    previous: &Routes,
) -> (Routes, Vec<Refusal>) {
    let mut refusals = Vec::new();
    // Every claim of every key, in the order of the services' names (a BTreeMap's).
    let mut claims: BTreeMap<(&str, Key), Vec<(&str, String)>> = BTreeMap::new();
    for (service, spec) in services {
        for (frontend, join) in &spec.frontends {
            let Some((frontend, _)) = map_paths.get_key_value(frontend) else {
                let frontend = frontend.clone();
                refusals.push(Refusal::NoFrontend { service: service.to_string(), frontend });
                continue;
            };
            let mut mine = BTreeSet::new();
            for (key, origin) in join.keys() {
                if mine.insert(key.clone()) {
                    claims.entry((frontend.as_str(), key)).or_default().push((service, origin));
                }
            }
        }
    }
    let mut routes: Routes =
        map_paths.iter().map(|(name, map)| (name.clone(), FrontendRoutes::new(map.clone()))).collect();
    for ((frontend, key), claimants) in claims {
        let before = previous.get(frontend).and_then(|f| f.routes.get(&key));
        let winner = claimants.iter().position(|(s, _)| Some(*s) == before.map(String::as_str)).unwrap_or(0);
        let by = claimants[winner].0;
        for (i, (service, origin)) in claimants.iter().enumerate() {
            if i != winner {
                refusals.push(Refusal::Taken {
                    service: service.to_string(),
                    frontend: frontend.to_string(),
                    key: key.clone(),
                    origin: origin.clone(),
                    by: by.to_string(),
                });
            }
        }
        if let Some(routes) = routes.get_mut(frontend) {
            routes.routes.insert(key, by.to_string());
        }
    }
    refusals.sort();
    (routes, refusals)
}

/// A frontend's map file: one `<key> <backend>` line per route, sorted.
pub fn map_text(routes: &FrontendRoutes) -> String {
    let mut text =
        String::from("# Written by proxymgr: host and path prefix -> backend. Any edit is overwritten.\n");
    for (key, backend) in &routes.routes {
        text.push_str(key.as_str());
        text.push(' ');
        text.push_str(backend);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Join;
    use crate::route::Key;

    fn spec(joins: &[(&str, &[&str], &[&str], bool)]) -> ServiceSpec {
        let mut spec = ServiceSpec::example();
        spec.port = None;
        for (frontend, hosts, paths, default) in joins {
            let join = Join {
                hosts: hosts.iter().map(|s| s.to_string()).collect(),
                paths: paths.iter().map(|s| s.to_string()).collect(),
                default: *default,
            };
            spec.frontends.insert(frontend.to_string(), join);
        }
        spec
    }

    fn maps() -> BTreeMap<String, String> {
        [("https", "/m/https.map"), ("http", "/m/http.map")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .into()
    }

    fn flat(routes: &Routes) -> Vec<String> {
        let each = routes.iter().flat_map(|(f, r)| r.routes.iter().map(move |(k, b)| format!("{f} {k} {b}")));
        each.collect()
    }

    #[test]
    fn every_key_of_every_join_routes_to_its_service() {
        let api = spec(&[("https", &["api.test", "*.api.test"], &["/v1/"], false)]);
        let web = spec(&[("https", &["www.test"], &[], true), ("http", &[], &["/static/"], false)]);
        let (routes, refusals) = table([("api", &api), ("web", &web)], &maps(), &Routes::new());
        assert_eq!(refusals, []);
        assert_eq!(
            flat(&routes),
            [
                "http /static/ web",
                "https *.api.test/v1/ api",
                "https / web",
                "https api.test/v1/ api",
                "https www.test/ web",
            ]
        );
        assert_eq!(routes["https"].map, "/m/https.map");
    }

    #[test]
    fn a_contested_key_stays_where_it_was_else_goes_to_the_first_by_name() {
        let a = spec(&[("https", &["x.test"], &[], false)]);
        let b = spec(&[("https", &["y.test", "x.test"], &[], false)]);
        let (fresh, refusals) = table([("a", &a), ("b", &b)], &maps(), &Routes::new());
        assert_eq!(fresh["https"].routes[&Key::new("x.test", "/")], "a");
        let taken = Refusal::Taken {
            service: "b".into(),
            frontend: "https".into(),
            key: Key::new("x.test", "/"),
            origin: "hosts[1]".into(),
            by: "a".into(),
        };
        assert_eq!(refusals, std::slice::from_ref(&taken));
        assert_eq!(
            taken.to_string(),
            "service b: frontends.https.hosts[1]: \"x.test/\" is already routed to service a; left out"
        );
        // b had it first: a newcomer that sorts before it does not take it.
        let (previous, _) = table([("b", &b)], &maps(), &Routes::new());
        let (kept, refusals) = table([("a", &a), ("b", &b)], &maps(), &previous);
        assert_eq!(kept["https"].routes[&Key::new("x.test", "/")], "b");
        assert!(matches!(&refusals[..], [Refusal::Taken { service, by, .. }] if service == "a" && by == "b"));
    }

    #[test]
    fn a_join_of_an_unknown_frontend_is_left_out_alone() {
        let api = spec(&[("nope", &["api.test"], &[], false), ("https", &["api.test"], &[], false)]);
        let (routes, refusals) = table([("api", &api)], &maps(), &Routes::new());
        assert_eq!(flat(&routes), ["https api.test/ api"]);
        assert_eq!(refusals, [Refusal::NoFrontend { service: "api".into(), frontend: "nope".into() }]);
        assert_eq!(
            refusals[0].to_string(),
            "service api: frontends.nope: no frontend \"nope\" in proxymgr.yml; this join is left out"
        );
    }

    #[test]
    fn a_frontend_without_routes_has_an_empty_map() {
        let (routes, _) = table([], &maps(), &Routes::new());
        assert_eq!(routes.keys().collect::<Vec<_>>(), ["http", "https"]);
        assert_eq!(map_text(&routes["http"]).lines().filter(|l| !l.starts_with('#')).count(), 0);
    }

    #[test]
    fn the_map_file_has_a_line_per_route() {
        let api = spec(&[("https", &["api.test"], &["/a/", "/b/"], false)]);
        let (routes, _) = table([("api", &api)], &maps(), &Routes::new());
        let text = map_text(&routes["https"]);
        assert_eq!(text.lines().skip(1).collect::<Vec<_>>(), ["api.test/a/ api", "api.test/b/ api"]);
    }
}
