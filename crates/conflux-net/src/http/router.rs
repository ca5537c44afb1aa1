//! The route table: exact paths, each claimed by one owner (a listener), with
//! the methods its handlers answer. Several listeners on one address merge
//! their tables so they share the port.
//!
//! Unmatched requests get short `text/plain` bodies in the style of Go's
//! `net/http`, which the servers Conflux stands in for answer with:
//! `404 page not found` for an unknown path, and `405 method not allowed`
//! with an `Allow` header for a known path and another method.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use http::{HeaderValue, Method, StatusCode, header};

use super::{BoxFuture, Handler, Request, Response, text};

/// Two registrations claim the same path: another owner registered it
/// already, or the same owner registered one of its methods twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route `{path}` of `{second}` conflicts with the route of `{first}`")]
pub struct RouteConflict {
    /// The contested path.
    pub path: String,
    /// The owner registered first.
    pub first: String,
    /// The owner whose registration was refused.
    pub second: String,
}

#[derive(Clone)]
struct Route {
    /// Empty: every method.
    methods: Vec<Method>,
    owner: Arc<str>,
    handler: Arc<dyn Handler>,
}

impl Route {
    fn overlaps(&self, methods: &[Method]) -> bool {
        self.methods.is_empty()
            || methods.is_empty()
            || methods.iter().any(|m| self.methods.contains(m))
    }

    fn allows(&self, method: &Method) -> bool {
        self.methods.is_empty() || self.methods.contains(method)
    }
}

/// Paths to handlers. Matching is exact on the path (no trailing-slash or
/// prefix matching; the query string is ignored), then on the method. `HEAD`
/// is routed only where registered explicitly.
#[derive(Default, Clone)]
pub struct Router {
    routes: HashMap<Box<str>, Vec<Route>>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut paths: Vec<_> = self.routes.keys().collect();
        paths.sort();
        f.debug_struct("Router").field("paths", &paths).finish()
    }
}

impl Router {
    /// An empty table (every request gets 404).
    pub fn new() -> Router {
        Router::default()
    }

    /// Register `handler` for `methods` on `path`, on behalf of `owner` (the
    /// listener's name). An empty `methods` means every method.
    ///
    /// # Errors
    /// [`RouteConflict`] when another owner has `path`, or `owner` has one of
    /// `methods` on it already; the table is unchanged then.
    pub fn route(
        &mut self,
        path: &str,
        methods: &[Method],
        owner: &str,
        handler: Arc<dyn Handler>,
    ) -> Result<(), RouteConflict> {
        self.insert(
            path,
            Route {
                methods: methods.to_vec(),
                owner: owner.into(),
                handler,
            },
        )
    }

    fn insert(&mut self, path: &str, route: Route) -> Result<(), RouteConflict> {
        let routes = self.routes.entry(path.into()).or_default();
        if let Some(taken) = routes
            .iter()
            .find(|r| r.owner != route.owner || r.overlaps(&route.methods))
        {
            return Err(RouteConflict {
                path: path.to_owned(),
                first: taken.owner.to_string(),
                second: route.owner.to_string(),
            });
        }
        routes.push(route);
        Ok(())
    }

    /// Add every route of `other`, so that listeners on one address share it.
    ///
    /// # Errors
    /// Every conflict found; the routes without conflict are added anyway
    /// (callers treat any conflict as a configuration error).
    pub fn merge(&mut self, other: Router) -> Result<(), Vec<RouteConflict>> {
        let mut conflicts = Vec::new();
        let mut incoming: Vec<_> = other.routes.into_iter().collect();
        // Report conflicts in a stable order.
        incoming.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, routes) in incoming {
            for route in routes {
                if let Err(c) = self.insert(&path, route) {
                    conflicts.push(c);
                }
            }
        }
        if conflicts.is_empty() {
            Ok(())
        } else {
            Err(conflicts)
        }
    }

    /// The registered paths, sorted, with their owners.
    pub fn paths(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<_> = self
            .routes
            .iter()
            .flat_map(|(p, rs)| rs.iter().map(move |r| (&**p, &*r.owner)))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Answer `req`: its handler's response, or 404 / 405 (the body,
    /// dropped unread, drains itself: [`super::RequestBody`]).
    pub fn dispatch(&self, req: Request) -> BoxFuture<'static, Response> {
        let resp = match self.routes.get(req.uri().path()) {
            None => not_found(),
            Some(routes) => match routes.iter().find(|r| r.allows(req.method())) {
                Some(route) => return route.handler.call(req),
                None => method_not_allowed(routes),
            },
        };
        Box::pin(std::future::ready(resp))
    }
}

fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "404 page not found\n")
}

fn method_not_allowed(routes: &[Route]) -> Response {
    let mut allow = String::new();
    for m in routes.iter().flat_map(|r| &r.methods) {
        if !allow.is_empty() {
            allow.push_str(", ");
        }
        allow.push_str(m.as_str());
    }
    let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed\n");
    if let Ok(v) = HeaderValue::from_str(&allow) {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::{empty, handler_fn};
    use super::*;

    fn h() -> Arc<dyn Handler> {
        handler_fn(|_req| async { empty(StatusCode::NO_CONTENT) })
    }

    #[test]
    fn same_owner_may_add_other_methods() {
        let mut r = Router::new();
        r.route("/write", &[Method::POST], "a", h()).unwrap();
        r.route("/write", &[Method::GET], "a", h()).unwrap();
        assert_eq!(r.paths(), vec![("/write", "a")]);
    }

    #[test]
    fn same_owner_same_method_conflicts() {
        let mut r = Router::new();
        r.route("/write", &[Method::POST, Method::PUT], "a", h())
            .unwrap();
        let c = r.route("/write", &[Method::PUT], "a", h()).unwrap_err();
        assert_eq!(
            c.to_string(),
            "route `/write` of `a` conflicts with the route of `a`"
        );
    }

    #[test]
    fn other_owner_on_same_path_conflicts_even_with_other_methods() {
        let mut r = Router::new();
        r.route("/api/put", &[Method::POST], "tsdb", h()).unwrap();
        let c = r
            .route("/api/put", &[Method::GET], "kairos", h())
            .unwrap_err();
        assert_eq!(
            c,
            RouteConflict {
                path: "/api/put".into(),
                first: "tsdb".into(),
                second: "kairos".into()
            }
        );
        assert_eq!(
            c.to_string(),
            "route `/api/put` of `kairos` conflicts with the route of `tsdb`"
        );
    }

    #[test]
    fn any_method_overlaps_everything() {
        let mut r = Router::new();
        r.route("/x", &[], "a", h()).unwrap();
        assert!(r.route("/x", &[Method::HEAD], "a", h()).is_err());
    }

    #[test]
    fn merge_reports_every_conflict_and_keeps_the_rest() {
        let mut a = Router::new();
        a.route("/write", &[Method::POST], "influx", h()).unwrap();
        a.route("/ping", &[Method::GET, Method::HEAD], "influx", h())
            .unwrap();
        let mut b = Router::new();
        b.route("/write", &[Method::POST], "other", h()).unwrap();
        b.route("/ping", &[Method::GET], "other", h()).unwrap();
        b.route("/api/v1/datapoints", &[Method::POST], "other", h())
            .unwrap();
        let conflicts = a.merge(b).unwrap_err();
        let paths: Vec<_> = conflicts.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, vec!["/ping", "/write"]);
        assert!(
            conflicts
                .iter()
                .all(|c| c.first == "influx" && c.second == "other")
        );
        assert_eq!(
            a.paths(),
            vec![
                ("/api/v1/datapoints", "other"),
                ("/ping", "influx"),
                ("/write", "influx")
            ]
        );
    }
}
