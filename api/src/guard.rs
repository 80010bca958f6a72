//! What a web page on another site could make a browser send to a retrace
//! on the same machine or network: refused before any handler runs, in
//! every mode (with or without tokens).
//!
//! Three checks, each against a known browser attack:
//! - **DNS rebinding**: a page on `evil.example` rebinds its name to
//!   `127.0.0.1` and reads the API as same-origin. Its requests carry
//!   `Host: evil.example`, so a request is served only when its `Host` is an
//!   IP address, `localhost` (or a name under it), or a name the operator
//!   allowed (`--allowed-host`; `*` allows any).
//! - **Cross-site requests with an Origin**: a state-changing request
//!   (anything but `GET`, `HEAD` and `OPTIONS`) whose `Origin` is neither the
//!   server's own (the `Host` it was sent to) nor a configured CORS origin is
//!   refused.
//! - **Simple requests** (CSRF): a browser sends a `POST` with no content
//!   type, `text/plain`, a form or a multipart body to any site without a
//!   preflight. A `POST` must therefore declare a body type a browser cannot
//!   send unasked (`application/json`, or a YAML type for definitions),
//!   even when it has no body.
//!
//! Owns these three checks. It must never read a body, and never refuse
//! `/healthz` or `/readyz` for their `Host` (probes address a node by
//! whatever name the orchestrator uses).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::Error;
use crate::extract::media_type;

/// The hosts and origins a server accepts beyond its own.
#[derive(Debug, Clone, Default)]
pub struct Allowed {
    /// Host names (lowercase, without port) served besides IP addresses
    /// and `localhost`; `*` serves any.
    pub hosts: Vec<String>,
    /// Origins allowed by CORS: their state-changing requests are taken.
    pub origins: Vec<HeaderValue>,
    /// The route templates that take a `POST` (a `POST` elsewhere is the
    /// router's `405`, whatever its content type).
    pub posts: Arc<BTreeSet<&'static str>>,
}

/// The media types a browser sends cross-site without a preflight (the
/// CORS-safelisted request content types).
const SIMPLE_TYPES: [&str; 3] = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
];

/// The middleware (a route layer, so the route is known): refuses what
/// [`check`] refuses.
pub async fn cross_site(State(allowed): State<Allowed>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(req.uri().path(), MatchedPath::as_str);
    match check(&allowed, req.method(), route, req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Whether a request with this method, route and headers may be served.
pub fn check(
    allowed: &Allowed,
    method: &Method,
    route: &str,
    headers: &HeaderMap,
) -> Result<(), Error> {
    let probe = route == "/healthz" || route == "/readyz";
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if let Some(host) = host
        && !probe
        && !host_allowed(allowed, host)
    {
        return Err(Error::CrossSite(format!(
            "the Host {host:?} is not one this server answers to (an IP address, localhost, \
             or a name given with --allowed-host): a browser sends a foreign Host after DNS \
             rebinding"
        )));
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let own = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .zip(host)
            .is_some_and(|((_, authority), host)| authority.eq_ignore_ascii_case(host));
        if !own && !allowed.origins.iter().any(|o| o == origin) {
            return Err(Error::CrossSite(format!(
                "a {method} from the origin {origin:?} is refused: it is not this server's \
                 own origin nor one allowed with --cors-origin"
            )));
        }
    }
    if *method == Method::POST && allowed.posts.contains(route) {
        match media_type(headers) {
            None => {
                return Err(Error::UnsupportedMediaType(
                    "a POST must say `Content-Type: application/json`, even with no body \
                     (with curl: -H 'Content-Type: application/json', or --json '{}'): a web \
                     page can make a browser send a POST without one to any site"
                        .into(),
                ));
            }
            Some(simple) if SIMPLE_TYPES.contains(&simple.as_str()) => {
                return Err(Error::UnsupportedMediaType(format!(
                    "a POST with `Content-Type: {simple}` is refused (a web page can make a \
                     browser send one to any site): send JSON with `Content-Type: \
                     application/json` (with curl, use `--json '{{...}}'` or add \
                     -H 'Content-Type: application/json')"
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Whether `host` (a `Host` header: a name or address, maybe with a port)
/// is one this server answers to.
fn host_allowed(allowed: &Allowed, host: &str) -> bool {
    let name = host_name(host).to_ascii_lowercase();
    name.parse::<IpAddr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
        || allowed.hosts.iter().any(|h| h == "*" || *h == name)
}

/// The name or address of a `Host` header, without its port or brackets.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(v6, _)| v6);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn hosts_are_names_without_ports_or_brackets() {
        assert_eq!(host_name("127.0.0.1:7700"), "127.0.0.1");
        assert_eq!(host_name("[::1]:7700"), "::1");
        assert_eq!(host_name("[::1]"), "::1");
        assert_eq!(host_name("example.com"), "example.com");
        assert_eq!(host_name("example.com:80"), "example.com");
    }

    #[test]
    fn addresses_and_localhost_are_served_and_other_names_only_when_allowed() {
        let none = Allowed::default();
        for host in [
            "127.0.0.1:7700",
            "[::1]:7700",
            "10.0.0.5",
            "localhost:7700",
            "LocalHost",
            "app.localhost:1",
        ] {
            assert!(host_allowed(&none, host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:7700",
            "localhost.evil.example",
        ] {
            assert!(!host_allowed(&none, host), "{host}");
        }
        let named = Allowed {
            hosts: vec!["retrace.internal".into()],
            ..Allowed::default()
        };
        assert!(host_allowed(&named, "Retrace.Internal:7700"));
        assert!(!host_allowed(&named, "evil.example"));
        let any = Allowed {
            hosts: vec!["*".into()],
            ..Allowed::default()
        };
        assert!(host_allowed(&any, "evil.example"));
    }

    fn posting_to(route: &'static str) -> Allowed {
        Allowed {
            posts: Arc::new([route].into_iter().collect()),
            ..Allowed::default()
        }
    }

    #[test]
    fn probes_answer_whatever_the_host() {
        let h = headers(&[("host", "node-3.cluster")]);
        assert!(check(&Allowed::default(), &Method::GET, "/readyz", &h).is_ok());
        assert!(check(&Allowed::default(), &Method::GET, "/v1/executions", &h).is_err());
    }

    #[test]
    fn a_post_needs_a_type_no_browser_sends_unasked() {
        let a = posting_to("/v1/x");
        let host = ("host", "127.0.0.1:7700");
        let post = |h: &[(&'static str, &str)]| check(&a, &Method::POST, "/v1/x", &headers(h));
        assert!(post(&[host]).is_err());
        for simple in [
            "text/plain",
            "text/plain; charset=utf-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            assert!(post(&[host, ("content-type", simple)]).is_err(), "{simple}");
        }
        assert!(post(&[host, ("content-type", "application/json")]).is_ok());
        assert!(post(&[host, ("content-type", "application/yaml")]).is_ok());
        // A POST to a route that takes none is left to the router's 405.
        assert!(check(&a, &Method::POST, "/healthz", &headers(&[host])).is_ok());
        // Reads and deletes need no body type.
        assert!(check(&a, &Method::GET, "/v1/x", &headers(&[host])).is_ok());
        assert!(check(&a, &Method::DELETE, "/v1/x", &headers(&[host])).is_ok());
    }

    #[test]
    fn a_change_from_another_origin_is_refused_unless_cors_allows_it() {
        let json = ("content-type", "application/json");
        let host = ("host", "127.0.0.1:7700");
        let a = Allowed {
            origins: vec![HeaderValue::from_static("https://ops.example")],
            ..posting_to("/v1/x")
        };
        let post = |origin: &str| {
            check(
                &a,
                &Method::POST,
                "/v1/x",
                &headers(&[host, json, ("origin", origin)]),
            )
        };
        assert!(post("http://127.0.0.1:7700").is_ok(), "its own origin");
        assert!(post("https://ops.example").is_ok(), "a CORS origin");
        assert!(post("https://evil.example").is_err());
        assert!(post("http://127.0.0.1:9999").is_err(), "another port");
        assert!(post("null").is_err());
        // A read from another origin is CORS's business, not a change.
        let get = headers(&[host, ("origin", "https://evil.example")]);
        assert!(check(&a, &Method::GET, "/v1/x", &get).is_ok());
        let delete = headers(&[host, ("origin", "https://evil.example")]);
        assert!(check(&a, &Method::DELETE, "/v1/x", &delete).is_err());
    }
}
