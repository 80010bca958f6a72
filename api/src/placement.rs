//! Where each endpoint is served when several servers share a journal on
//! NATS (each driving the executions of its partitions, one of them the
//! home: see `docs/scaling.md`). The front of such a server
//! ([`crate::front`]) answers a request itself or forwards it by this
//! table.
//!
//! Owns that table, one entry per route of [`crate::router::routes`]. It
//! must never decide anything about a request but where it goes.

use axum::http::Method;

/// Where a request is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Any server: what each knows alike (the definitions and tokens every
    /// server follows, the journal's history and its streams) or of
    /// itself (health, metrics).
    Here,
    /// The server driving the execution the path's `{id}` names (the
    /// holder of its partition).
    Execution,
    /// The server holding the partition the start falls in: its
    /// workflow's own if the workflow declares limits, else its
    /// idempotency key's, or (no key) any server, which starts it in a
    /// partition of its own.
    Start,
    /// The home (the holder of partition 0): what is engine-wide (changes
    /// of definitions and tokens, schedules, breakers, limits, webhooks)
    /// and the agents and their tasks, whose one registry is there.
    Home,
    /// Every server, the answers merged: lists of executions, and events
    /// published to whoever waits for them.
    Every,
}

/// Where `method` on the route `path` (as [`crate::router::routes`] spells
/// it) is served; `None` for a route this table does not know.
pub fn placement(method: &Method, path: &str) -> Option<Placement> {
    use Placement::*;
    let m = method.as_str();
    Some(match (m, path) {
        ("GET", "/healthz" | "/readyz" | "/metrics" | "/v1/metrics" | "/openapi.json") => Here,
        ("GET", "/" | "/ui/{file}") => Here,
        ("POST", "/v1/workflows") => Home,
        ("POST", "/v1/workflows/validate") => Here,
        ("GET", p) if p.starts_with("/v1/workflows") => Here,
        ("POST", "/v1/executions" | "/v1/executions/signal-with-start") => Start,
        ("GET", "/v1/executions") => Every,
        (_, p) if p.starts_with("/v1/executions/{id}") => Execution,
        ("GET", "/v1/events/stream") => Here,
        ("POST", "/v1/events/{name}") => Every,
        (_, p) if p.starts_with("/v1/schedules") => Home,
        (_, "/v1/breakers" | "/v1/limits") => Home,
        (_, p) if p.starts_with("/v1/capabilities/") => Home,
        (_, p) if p.starts_with("/v1/agents") || p.starts_with("/v1/tasks") => Home,
        ("GET", "/v1/tokens" | "/v1/tokens/{name}") => Here,
        (_, p) if p.starts_with("/v1/tokens") => Home,
        (_, p) if p.starts_with("/v1/webhooks") => Home,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::routes;

    #[test]
    fn every_route_has_a_place() {
        for (method, path) in routes() {
            assert!(
                placement(&method, path).is_some(),
                "{method} {path} has no placement"
            );
        }
    }

    /// A change is made where what it changes lives: nothing that records
    /// is served by whichever server a request reaches (a start without a
    /// key is `Start`: it records in that server's own partitions); only a
    /// definition checked, not recorded, is.
    #[test]
    fn every_change_goes_where_it_is_recorded() {
        for (method, path) in routes() {
            if method == Method::GET || path == "/v1/workflows/validate" {
                continue;
            }
            let place = placement(&method, path);
            assert_ne!(
                place,
                Some(Placement::Here),
                "{method} {path} records, so it cannot be served anywhere"
            );
        }
        let validate = placement(&Method::POST, "/v1/workflows/validate");
        assert_eq!(validate, Some(Placement::Here));
    }
}
