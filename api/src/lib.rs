//! retrace-api: the HTTP + SSE server over the engine, and the `retrace`
//! command line.
//!
//! The only crate of the workspace that knows HTTP: the engine is used
//! through its Rust API ([`retrace_engine::runtime::Engine`]) and nothing here
//! decides anything about an execution. Every request is checked before the
//! engine sees it, and every error leaves as one JSON shape ([`Error`]).
//!
//! - [`router`]: every endpoint and the layers around them ([`app`]);
//!   [`routes`]: the handlers, one module per resource, and SSE.
//! - [`extract`]: body, query and path extractors that reject with [`Error`];
//!   [`strict`]: the JSON reading they use, where an object is an object;
//!   [`integer`]: integer fields read as JSON Schema reads numbers (`5.0`).
//! - [`listener`]: the TCP listener (`TCP_NODELAY` on every connection).
//! - [`views`]: the JSON the API answers with; [`time`]: how instants are
//!   written.
//! - [`openapi`]: the OpenAPI document of the API (`GET /openapi.json`,
//!   copied to `docs/openapi.json`).
//! - [`state`]: what handlers share, the limits, and the shutdown switch.
//! - [`front`]: the front of `serve --nats` (each request served here or
//!   forwarded to the server holding what it names, lists and publishes
//!   asked of every server); [`placement`]: where each endpoint is served
//!   when servers share a journal's partitions; [`covered`]: the
//!   partitions an answer to be merged covered.
//! - [`cli`]: the `retrace` binary's subcommands: `serve`; offline `replay`,
//!   `verify`, `export`; client commands against a server; `agent`.
//!
//! The endpoints, their bodies and error codes are documented in
//! `docs/api.md`, and described for machines by the OpenAPI document.

pub mod auth;
pub mod cli;
pub mod covered;
pub mod error;
pub mod extract;
pub mod front;
pub mod guard;
pub mod http_metrics;
pub mod integer;
pub mod limits;
pub mod listener;
pub mod openapi;
pub mod placement;
pub mod router;
pub mod routes;
pub mod schemas;
pub mod state;
pub mod strict;
pub mod time;
pub mod tls;
pub mod views;
pub mod webhook;

pub use error::Error;
pub use router::app;
pub use state::{ApiConfig, AppState, Shutdown};
