//! The shared frontends' routes: the table made again whenever the services or the frontends change
//! (`routes.rs` decides), its refusals logged once, and the map files a start or a rewrite writes.

use std::path::PathBuf;

use super::*;
use crate::plan::FrontendRoutes;
use crate::reconcile::routes;

impl Core {
    /// Makes the routing table again from every service's joins; logs each refusal once, when it appears.
    pub(super) fn routes_changed(&mut self) {
        let haproxy = &self.config.haproxy;
        // Before 1.6 no frontend is rendered (`Capabilities::unmet` said so at start): nothing routes.
        let frontends = haproxy.frontends.keys().filter(|_| self.caps.shared_frontends);
        let maps = frontends.map(|name| (name.clone(), haproxy.map_path(name).display().to_string()));
        let services = self.services.map.iter().map(|(name, s)| (name.as_str(), &s.spec));
        let (routes, refusals) = routes::table(services, &maps.collect(), &self.routes);
        for refusal in refusals.iter().filter(|r| !self.route_refusals.contains(r)) {
            if self.caps.shared_frontends {
                log::error!("{refusal}");
            }
        }
        self.route_refusals = refusals;
        if routes != self.routes {
            // Every service's routes may read otherwise now.
            self.observed.all_stale();
        }
        self.routes = routes;
    }

    /// What became of each route `spec` asks for, for the status.
    pub(super) fn route_views(&self, name: &str, spec: &ServiceSpec) -> Vec<status::RouteView> {
        let mut views = Vec::new();
        for (frontend, join) in &spec.frontends {
            let desired = self.routes.get(frontend);
            let running = self.running.as_ref().and_then(|r| r.routes.get(frontend));
            for (key, _) in join.keys() {
                let state = match desired.map(|d| d.routes.get(&key)) {
                    None => status::RouteState::NoFrontend,
                    Some(Some(by)) if by != name => status::RouteState::Taken { by: by.clone() },
                    _ if running.and_then(|r| r.routes.get(&key)).is_some_and(|b| b == name) => {
                        status::RouteState::Routed
                    }
                    _ => status::RouteState::Pending,
                };
                views.push(status::RouteView { frontend: frontend.clone(), key: key.to_string(), state });
            }
        }
        views
    }

    /// The routes for the state file: who has each key.
    pub(super) fn saved_routes(&self) -> SavedRoutes {
        let keys =
            |routes: &FrontendRoutes| routes.routes.iter().map(|(k, b)| (k.to_string(), b.clone())).collect();
        self.routes.iter().map(|(frontend, routes)| (frontend.clone(), keys(routes))).collect()
    }

    /// The routes the state file names (who had each key), as the first routing table's `previous`, so that a
    /// key two services claim stays with the one that had it across a restart.
    pub fn with_routes(mut self, saved: SavedRoutes) -> Core {
        let haproxy = &self.config.haproxy;
        let routes = saved.into_iter().map(|(frontend, keys)| {
            let routes = keys.into_iter().map(|(key, backend)| (crate::route::Key::new("", &key), backend));
            let map = haproxy.map_path(&frontend).display().to_string();
            (frontend, FrontendRoutes { map, routes: routes.collect() })
        });
        self.routes = routes.collect();
        self
    }

    /// Each frontend's map file and its text, as the desired routes make them.
    pub(super) fn map_files(&self) -> Vec<(PathBuf, String)> {
        let haproxy = &self.config.haproxy;
        self.routes.iter().map(|(name, routes)| (haproxy.map_path(name), routes::map_text(routes))).collect()
    }
}
