//! Batched direct reads: up to `batch` stored messages matching a subject
//! filter, from a sequence on, in one request (JetStream's direct get with
//! `batch` and `next_by_subj`, NATS 2.11+). Any replica may answer, and no
//! consumer is created: a read leaves nothing behind on the server.
//!
//! Owns the request and the parsing of its replies. It must never decode a
//! message's payload (that is `envelope`'s).

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use retrace_journal::{Error, Result, StorageError};

/// How long one batch may take to arrive.
const BATCH_WAIT: Duration = Duration::from_secs(10);

/// A stored message.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub sequence: u64,
    pub subject: String,
    pub payload: Bytes,
}

impl Stored {
    /// A stored message as the server hands it out (a direct get's reply,
    /// or a republished copy): its sequence and subject are in headers.
    pub(crate) fn of(message: async_nats::Message) -> Option<Stored> {
        Some(Stored {
            sequence: header(&message, "Nats-Sequence")?.parse().ok()?,
            subject: header(&message, "Nats-Subject")?,
            payload: message.payload,
        })
    }
}

fn header(message: &async_nats::Message, name: &str) -> Option<String> {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str().to_owned())
}

/// One page of a read.
#[derive(Debug)]
pub(crate) struct Page {
    pub messages: Vec<Stored>,
    /// Whether messages matching the filter remain after this page.
    pub more: bool,
}

pub(crate) fn remote(
    action: impl Into<String>,
    e: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::Storage(StorageError::Remote {
        action: action.into(),
        source: Box::new(e),
    })
}

fn failed(action: &str, reason: String) -> Error {
    Error::Storage(StorageError::Other(format!("{action}: {reason}")))
}

/// Reads up to `batch` messages of `stream` matching `filter` with
/// sequence `>= from`.
pub(crate) async fn read_batch(
    client: &async_nats::Client,
    stream: &str,
    from: u64,
    filter: &str,
    batch: usize,
) -> Result<Page> {
    let action = format!("cannot read stream {stream} from NATS");
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| remote(action.clone(), e))?;
    let request = serde_json::json!({
        "seq": from.max(1),
        "next_by_subj": filter,
        "batch": batch.clamp(1, 10_000),
    });
    client
        .publish_with_reply(
            format!("$JS.API.DIRECT.GET.{stream}"),
            inbox,
            Bytes::from(request.to_string()),
        )
        .await
        .map_err(|e| remote(action.clone(), e))?;
    client
        .flush()
        .await
        .map_err(|e| remote(action.clone(), e))?;
    let mut messages = Vec::new();
    loop {
        let reply = match tokio::time::timeout(BATCH_WAIT, replies.next()).await {
            Ok(Some(reply)) => reply,
            Ok(None) => return Err(failed(&action, "the connection closed mid-read".into())),
            Err(_) => {
                return Err(failed(&action, format!("no answer within {BATCH_WAIT:?}")));
            }
        };
        if let Some(status) = reply.status {
            return match status.as_u16() {
                // End of batch: says how many matching messages remain.
                204 => {
                    let pending = header(&reply, "Nats-Num-Pending")
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                    Ok(Page {
                        messages,
                        more: pending > 0,
                    })
                }
                404 => Ok(Page {
                    messages,
                    more: false,
                }),
                code => Err(failed(
                    &action,
                    format!(
                        "the server answered {code} {}",
                        reply.description.clone().unwrap_or_default()
                    ),
                )),
            };
        }
        let stored = Stored::of(reply).ok_or_else(|| {
            failed(
                &action,
                "a reply without Nats-Sequence or Nats-Subject".into(),
            )
        })?;
        messages.push(stored);
    }
}
