//! The body of a delivery:
//! `{"type", "timestamp", "data": {"executionId", "workflow", "seq",
//! "position", "event"}}`, where `type` is the event's kind, `timestamp`
//! when it was recorded (RFC 3339, UTC, milliseconds), and `event` the
//! event exactly as the events page and the SSE streams show it
//! (`{"seq", "type", "at", "data", "hash"}`; a test of the api compares
//! the two).
//!
//! Owns that shape and the message id. It must never add anything the
//! history does not hold (no secret, no delivery state).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::machine::Event;
use crate::read::{GlobalEvent, HistoryEvent};

/// `ms` since the Unix epoch as RFC 3339 (UTC, milliseconds), as the api
/// writes instants.
pub fn rfc3339(ms: u64) -> String {
    let instant = i64::try_from(ms)
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    instant.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The event's JSON without its `type` tag: its fields as the journal
/// stores them.
pub fn event_data(event: &Event) -> Value {
    match serde_json::to_value(event) {
        Ok(Value::Object(mut fields)) => {
            fields.remove("type");
            Value::Object(fields)
        }
        Ok(other) => other,
        Err(_) => Value::Object(Map::new()),
    }
}

/// The event as the history shows it.
pub fn event_view(event: &HistoryEvent) -> Value {
    json!({
        "seq": event.seq,
        "type": event.event.kind(),
        "at": rfc3339(event.at_ms),
        "data": event_data(&event.event),
        "hash": event.hash_hex(),
    })
}

/// The delivery's body.
pub fn body(global: &GlobalEvent) -> Value {
    json!({
        "type": global.event.event.kind(),
        "timestamp": rfc3339(global.event.at_ms),
        "data": {
            "executionId": global.execution.to_string(),
            "workflow": global.workflow,
            "seq": global.event.seq,
            "position": global.event.position,
            "event": event_view(&global.event),
        },
    })
}

/// The `webhook-id` of the event at journal `position` sent to
/// subscription `id`: the same on every attempt and after a restart, so a
/// receiver can tell a redelivery.
pub fn message_id(id: &str, position: u64) -> String {
    format!("{id}_{position}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_written_as_the_api_writes_them() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(message_id("wh", 7), "wh_7");
    }
}
