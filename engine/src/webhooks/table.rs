//! Every webhook subscription as the reserved `WEBHOOKS` stream records
//! it: the events and the table they fold into.
//!
//! A subscription's cursor is the journal position up to which its events
//! are settled: delivered (`webhook_delivered {id, upTo}`) or given up
//! (`webhook_failed {id, position, error}`). Delivery resumes after it, so
//! what a restart repeats is at most what was delivered after the last
//! recorded cursor. The stream grows by one event per delivery, so the
//! table is kept as the stream's snapshot now and then.
//!
//! Owns the events' shape and the fold. It must never deliver, read a
//! clock, or show a secret: [`Secret`]'s `Debug` hides it, and only the
//! creation's answer and the signing code read it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::spec::WebhookSpec;

/// A subscription's signing secret (`whsec_…`): kept in the reserved
/// stream, never shown but once, when it is made.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: String) -> Secret {
        Secret(secret)
    }

    /// The secret's text, to hand to its creator once and to sign with.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// One event of the webhooks stream; the record's kind is the tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WebhookEvent {
    /// A subscription made: its events after journal position `after` are
    /// delivered.
    #[serde(rename_all = "camelCase")]
    WebhookCreated {
        id: String,
        spec: WebhookSpec,
        secret: Secret,
        after: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    WebhookDeleted {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Its events up to `upTo` are delivered (`count` of them since the
    /// cursor before).
    #[serde(rename_all = "camelCase")]
    WebhookDelivered { id: String, up_to: u64, count: u64 },
    /// The event at `position` was given up after `attempts` attempts,
    /// the last failing with `error`; the cursor moves past it.
    #[serde(rename_all = "camelCase")]
    WebhookFailed {
        id: String,
        position: u64,
        attempts: u32,
        error: String,
    },
}

impl WebhookEvent {
    pub const KINDS: [&'static str; 4] = [
        "webhook_created",
        "webhook_deleted",
        "webhook_delivered",
        "webhook_failed",
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            WebhookEvent::WebhookCreated { .. } => "webhook_created",
            WebhookEvent::WebhookDeleted { .. } => "webhook_deleted",
            WebhookEvent::WebhookDelivered { .. } => "webhook_delivered",
            WebhookEvent::WebhookFailed { .. } => "webhook_failed",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            WebhookEvent::WebhookCreated { id, .. }
            | WebhookEvent::WebhookDeleted { id, .. }
            | WebhookEvent::WebhookDelivered { id, .. }
            | WebhookEvent::WebhookFailed { id, .. } => id,
        }
    }
}

/// The last event a subscription gave up on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastFailure {
    /// The event's journal position.
    pub position: u64,
    pub attempts: u32,
    /// The last attempt's error.
    pub error: String,
    pub at_ms: u64,
}

/// One subscription and where its delivery stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub id: String,
    pub spec: WebhookSpec,
    pub secret: Secret,
    pub created_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// The journal position up to which its events are settled.
    pub cursor: u64,
    /// Events delivered.
    pub delivered: u64,
    /// Events given up.
    pub failed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivered_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<LastFailure>,
}

/// Every subscription: the fold of the stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhooks {
    pub by_id: BTreeMap<String, Webhook>,
    /// The stream's seq this table is folded to.
    pub seq: u64,
}

impl Webhooks {
    pub fn apply(&mut self, seq: u64, at_ms: u64, event: &WebhookEvent) {
        self.seq = seq;
        match event {
            WebhookEvent::WebhookCreated {
                id,
                spec,
                secret,
                after,
                by,
                ..
            } => {
                self.by_id.insert(
                    id.clone(),
                    Webhook {
                        id: id.clone(),
                        spec: spec.clone(),
                        secret: secret.clone(),
                        created_at_ms: at_ms,
                        created_by: by.clone(),
                        cursor: *after,
                        delivered: 0,
                        failed: 0,
                        last_delivered_at_ms: None,
                        last_failure: None,
                    },
                );
            }
            WebhookEvent::WebhookDeleted { id, .. } => {
                self.by_id.remove(id);
            }
            // A delivery recorded after its subscription was deleted
            // changes nothing.
            WebhookEvent::WebhookDelivered { id, up_to, count } => {
                if let Some(w) = self.by_id.get_mut(id) {
                    w.cursor = w.cursor.max(*up_to);
                    w.delivered = w.delivered.saturating_add(*count);
                    w.last_delivered_at_ms = Some(at_ms);
                }
            }
            WebhookEvent::WebhookFailed {
                id,
                position,
                attempts,
                error,
            } => {
                if let Some(w) = self.by_id.get_mut(id) {
                    w.cursor = w.cursor.max(*position);
                    w.failed = w.failed.saturating_add(1);
                    w.last_failure = Some(LastFailure {
                        position: *position,
                        attempts: *attempts,
                        error: error.clone(),
                        at_ms,
                    });
                }
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<&Webhook> {
        self.by_id.get(id)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_fold_keeps_the_cursor_the_counts_and_the_last_failure() {
        let mut table = Webhooks::default();
        let spec = WebhookSpec {
            url: "https://e.com/h".into(),
            events: vec!["execution_completed".into()],
            workflow: None,
        };
        table.apply(
            1,
            10,
            &WebhookEvent::WebhookCreated {
                id: "w".into(),
                spec,
                secret: Secret::new("whsec_AAAA".into()),
                after: 40,
                by: Some("ops".into()),
                reason: None,
            },
        );
        assert_eq!(table.get("w").unwrap().cursor, 40);
        let delivered = WebhookEvent::WebhookDelivered {
            id: "w".into(),
            up_to: 45,
            count: 1,
        };
        table.apply(2, 20, &delivered);
        table.apply(
            3,
            30,
            &WebhookEvent::WebhookFailed {
                id: "w".into(),
                position: 50,
                attempts: 3,
                error: "http 500".into(),
            },
        );
        // An older cursor never moves it back.
        table.apply(
            4,
            40,
            &WebhookEvent::WebhookDelivered {
                id: "w".into(),
                up_to: 44,
                count: 1,
            },
        );
        let w = table.get("w").unwrap();
        assert_eq!((w.cursor, w.delivered, w.failed), (50, 2, 1));
        assert_eq!(w.last_failure.as_ref().unwrap().error, "http 500");
        assert_eq!(w.last_delivered_at_ms, Some(40));
        assert!(!format!("{w:?}").contains("whsec_AAAA"), "Debug hides it");
        table.apply(
            5,
            50,
            &WebhookEvent::WebhookDeleted {
                id: "w".into(),
                by: None,
                reason: None,
            },
        );
        table.apply(6, 60, &delivered);
        assert!(table.get("w").is_none());
        assert_eq!(table.seq, 6);
    }
}
