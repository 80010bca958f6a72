//! Outbound webhooks: URLs subscribed to executions' events, each sent
//! every event of the kinds it asked for (and, optionally, only of one
//! workflow's executions), signed per [Standard
//! Webhooks](https://www.standardwebhooks.com/), at least once, in the
//! journal's order.
//!
//! - `spec`: what a subscription asks for (`url`, `events`, `workflow`)
//!   and its checks (an `http(s)` URL whose literal address the outbound
//!   policy allows, known event kinds, a well-formed workflow name).
//! - `table`: the events of the reserved stream `WEBHOOKS`
//!   (`webhook_created`, `webhook_deleted`, `webhook_delivered`,
//!   `webhook_failed`) and the table they fold into: each subscription,
//!   its signing secret and its delivery state (the cursor: the journal
//!   position up to which its events are settled, delivered or given up).
//! - `sign`: secrets (`whsec_` + base64) and the signature
//!   (`v1,` + base64 HMAC-SHA256 over `{id}.{timestamp}.{body}`), shared
//!   with the api's check of signed inbound events.
//! - `payload`: the body of a delivery, with the event rendered as the
//!   history shows it.
//! - `retry`: when the next attempt of a delivery is due, and when it is
//!   given up.
//!
//! Owns what a subscription is and means: its checks, its recorded life,
//! its signature, its body, its retry schedule. Delivering (the HTTP
//! requests, the loop over the journal, the writes) is the runtime's
//! (`runtime::webhooks`). Nothing here may do IO (but draw a new secret's
//! bytes from the operating system), read a clock, or touch the journal;
//! and no secret may ever reach an error message, a log line, a `Debug`
//! output or an execution's history.

pub mod payload;
pub mod retry;
pub mod sign;
pub mod spec;
pub mod table;

pub use crate::error::WebhookError;
pub use retry::WebhookOptions;
pub use spec::WebhookSpec;
pub use table::{LastFailure, Secret, Webhook, WebhookEvent, Webhooks};
