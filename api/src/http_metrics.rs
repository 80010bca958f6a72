//! How long requests took, by method, route and status: the only figures
//! the API counts itself. The router's request layer feeds [`HttpMetrics`];
//! `GET /metrics` registers its family to render it.
//!
//! Owns the request histograms and their labels. It must never know the
//! app's state or the routes (so the state can hold it without a circle).

use std::time::Duration;

use axum::http::{Method, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabel {
    method: String,
    /// The route's template (`/v1/executions/{id}`), or `unmatched`.
    route: String,
    status: u16,
}

/// The `route` of a request no route matched (a `404 not_found`).
pub const UNMATCHED: &str = "unmatched";

/// Upper bounds (seconds) of the HTTP request histogram's buckets: 1 ms to
/// a minute, the longest a task poll waits.
const HTTP_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS)
}

/// How long requests took, by method, route and status: the only figures
/// the API counts itself (the router's request layer feeds it). Clones
/// share one family.
#[derive(Debug, Clone)]
pub struct HttpMetrics(HttpFamily);

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics(Family::new_with_constructor(http_histogram))
    }
}

impl HttpMetrics {
    /// Counts one request: `route` is its matched template, or
    /// [`UNMATCHED`]. A method HTTP does not define counts as `_OTHER`, so
    /// clients cannot add series at will.
    pub fn observe(&self, method: &Method, route: &str, status: StatusCode, took: Duration) {
        let method = match *method {
            Method::GET
            | Method::HEAD
            | Method::POST
            | Method::PUT
            | Method::DELETE
            | Method::CONNECT
            | Method::OPTIONS
            | Method::TRACE
            | Method::PATCH => method.as_str(),
            _ => "_OTHER",
        };
        self.0
            .get_or_create(&HttpLabel {
                method: method.to_owned(),
                route: route.to_owned(),
                status: status.as_u16(),
            })
            .observe(took.as_secs_f64());
    }
}

/// The histograms' family, as `/metrics` registers it.
pub type HttpFamily = Family<HttpLabel, Histogram, fn() -> Histogram>;

impl HttpMetrics {
    /// The family (shared: a clone sees every later observation).
    pub fn family(&self) -> HttpFamily {
        self.0.clone()
    }
}
