//! Outbound webhooks on a running engine: subscribing, listing and
//! deleting, and one delivery loop per subscription.
//!
//! A subscription is checked whole before anything is recorded, then
//! `webhook_created` is appended with the journal's last position: what is
//! recorded after it is delivered. Its loop tails the whole journal's
//! stream (the one the SSE global stream reads: stored events first, then
//! woken by each new append, never by polling) from the position after the
//! subscription's cursor, with the subscription's kinds and workflow as
//! the stream's filter, and delivers one event at a time, in the journal's
//! order (so in order per execution): a `POST` signed per Standard
//! Webhooks (`webhook-id` is `<subscription>_<position>`, the same on
//! every attempt and after a restart). A failed attempt (no answer within
//! the timeout, an answer that is not 2xx, a refused address) is tried
//! again after a delay that doubles up to a cap; once the next attempt
//! would start past the retry bound, the event is given up.
//!
//! The cursor is recorded after each event: `webhook_delivered {id, upTo}`
//! once it is delivered, `webhook_failed {id, position, attempts, error}`
//! once it is given up; the next event is sent only after that record is
//! appended. So a restart resumes after the last recorded event and
//! repeats at most the one delivery whose record a crash cut off, per
//! subscription. (Batching the records over a window would save journal
//! writes, one per delivery now, at the price of repeating up to a window
//! of deliveries after each crash; one per delivery keeps the repeats to
//! one and the code to one path.)
//!
//! Deliveries go through a client that connects only where the server's
//! outbound address policy (the built-in `http` capability's) allows: an
//! IP-literal URL is checked before each attempt, and a name's addresses
//! as it is resolved, the refused ones dropped (DNS rebinding). Redirects
//! are not followed: a `3xx` is a failed attempt.
//!
//! Owns the order of those writes and the loops' lives (one per
//! subscription, stopped when it is deleted or the engine shuts down). It
//! must never put a subscription's secret in a log line, an error or an
//! execution's history, and never send an event before the one before it
//! (in the journal's order) is settled.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{Engine, Inner, upgrade};
use crate::clock::Clock;
use crate::error::{Error, WebhookError};
use crate::http::{AddressPolicy, HttpOptions, failure_reason, policy_client};
use crate::read::{GlobalEvent, GlobalFilter};
use crate::store::reserved::SNAPSHOT_EVERY;
use crate::webhooks::sign::{self, ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::webhooks::spec::check_url;
use crate::webhooks::{
    Secret, Webhook, WebhookEvent, WebhookOptions, WebhookSpec, Webhooks, payload,
};

/// How long a loop waits before trying again after the journal refused a
/// write or a read.
const RETRY_MS: u64 = 1_000;

/// How much of a failed answer's body its error quotes.
const EXCERPT_CHARS: usize = 200;

/// What a delivery's attempts are at, while an event is being retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retrying {
    /// The event's journal position.
    pub position: u64,
    /// Attempts failed so far.
    pub attempts: u32,
    /// The last attempt's error.
    pub error: String,
    /// When the next attempt is due.
    pub next_attempt_ms: u64,
}

/// A subscription, as recorded, and the retries under way for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookInfo {
    pub webhook: Webhook,
    pub retrying: Option<Retrying>,
}

/// The delivery side the loops share: the client, the settings, each
/// loop's stop switch and what each is retrying.
#[derive(Debug)]
pub(super) struct Deliveries {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
    options: WebhookOptions,
    runs: StdMutex<HashMap<String, CancellationToken>>,
    retrying: StdMutex<HashMap<String, Retrying>>,
}

fn locked<T>(m: &StdMutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How an event's delivery was settled.
#[derive(Debug, Clone)]
enum Settled {
    Delivered,
    GivenUp { attempts: u32, error: String },
}

impl Deliveries {
    pub(super) fn new(http: &HttpOptions, options: WebhookOptions) -> Result<Deliveries, Error> {
        let policy = Arc::new(http.policy.clone());
        let client = policy_client(Arc::clone(&policy)).map_err(Error::HttpClient)?;
        Ok(Deliveries {
            client,
            policy,
            options,
            runs: StdMutex::default(),
            retrying: StdMutex::default(),
        })
    }

    /// One attempt: `Ok` on a 2xx answer, else why not.
    async fn attempt(
        &self,
        url: &str,
        message_id: &str,
        key: &[u8],
        body: &[u8],
        clock: &Arc<dyn Clock>,
    ) -> Result<(), String> {
        // Checked again at each attempt: the server's policy may have
        // changed since the subscription was made.
        let url = check_url(url, &self.policy)?;
        let timestamp = (clock.now_ms() / 1_000).to_string();
        let signature = sign::sign(key, message_id, &timestamp, body);
        let timeout_ms = self.options.timeout_ms.max(1);
        let response = self
            .client
            .post(url)
            .timeout(Duration::from_millis(timeout_ms))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::USER_AGENT, "retrace-webhooks")
            .header(ID_HEADER, message_id)
            .header(TIMESTAMP_HEADER, &timestamp)
            .header(SIGNATURE_HEADER, signature)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    format!("no answer within {timeout_ms} ms")
                } else {
                    failure_reason(e)
                }
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let redirect = status.is_redirection();
        let mut response = response;
        let excerpt = match response.chunk().await {
            Ok(Some(bytes)) => {
                let text = String::from_utf8_lossy(&bytes);
                let words: Vec<&str> = text.split_whitespace().collect();
                words.join(" ").chars().take(EXCERPT_CHARS).collect()
            }
            _ => String::new(),
        };
        Err(match (redirect, excerpt.is_empty()) {
            (true, _) => format!("answered {status}: redirects are not followed"),
            (false, true) => format!("answered {status}"),
            (false, false) => format!("answered {status}: {excerpt}"),
        })
    }

    /// Delivers `event` to subscription `id`, trying again until it is
    /// delivered or the retry bound has passed.
    async fn deliver(
        &self,
        id: &str,
        spec: &WebhookSpec,
        key: &[u8],
        event: &GlobalEvent,
        clock: &Arc<dyn Clock>,
    ) -> Settled {
        let position = event.event.position;
        let message_id = payload::message_id(id, position);
        let body = payload::body(event).to_string().into_bytes();
        let first_ms = clock.now_ms();
        let mut failed = 0u32;
        loop {
            let outcome = self
                .attempt(&spec.url, &message_id, key, &body, clock)
                .await;
            let error = match outcome {
                Ok(()) => {
                    locked(&self.retrying).remove(id);
                    return Settled::Delivered;
                }
                Err(error) => error,
            };
            failed = failed.saturating_add(1);
            let now = clock.now_ms();
            let Some(next_attempt_ms) = self.options.next_attempt_ms(first_ms, now, failed) else {
                locked(&self.retrying).remove(id);
                return Settled::GivenUp {
                    attempts: failed,
                    error,
                };
            };
            tracing::debug!(webhook = %id, position, attempts = failed, error = %error,
                "webhook delivery failed; trying again");
            locked(&self.retrying).insert(
                id.to_owned(),
                Retrying {
                    position,
                    attempts: failed,
                    error,
                    next_attempt_ms,
                },
            );
            clock.sleep_until(next_attempt_ms).await;
        }
    }
}

impl Engine {
    fn webhooks_table(&self) -> MutexGuard<'_, Webhooks> {
        locked(&self.inner.webhooks)
    }

    /// Subscribes `spec.url` to the events `spec` names on behalf of `by`,
    /// from now on. Refused whole, with nothing recorded, if the spec is
    /// not sound (its URL's literal address included). The answer holds
    /// the signing secret: the only time it is shown.
    pub async fn create_webhook(
        &self,
        spec: WebhookSpec,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<Webhook, Error> {
        spec.check(&self.inner.deliveries.policy)
            .map_err(WebhookError::Invalid)?;
        let secret = Secret::new(sign::new_secret()?);
        let id = uuid::Uuid::now_v7().to_string();
        {
            let _exclusive = self.inner.changing_webhooks.lock().await;
            // What is recorded after this is the subscription's.
            let after = self.inner.store.journal().last_position().await?;
            let event = WebhookEvent::WebhookCreated {
                id: id.clone(),
                spec,
                secret,
                after,
                by: by.map(str::to_owned),
                reason: reason.map(str::to_owned),
            };
            self.record_webhook(&event).await?;
        }
        self.spawn_webhook(&id);
        self.webhooks_table()
            .get(&id)
            .cloned()
            .ok_or_else(|| WebhookError::Unknown(id).into())
    }

    /// Every subscription, by id (the order they were made in).
    pub fn webhooks(&self) -> Vec<WebhookInfo> {
        let table = self.webhooks_table().clone();
        table
            .by_id
            .into_values()
            .map(|webhook| self.info(webhook))
            .collect()
    }

    /// One subscription and where its delivery stands.
    pub fn webhook(&self, id: &str) -> Result<WebhookInfo, Error> {
        let webhook = self
            .webhooks_table()
            .get(id)
            .cloned()
            .ok_or_else(|| WebhookError::Unknown(id.to_owned()))?;
        Ok(self.info(webhook))
    }

    fn info(&self, webhook: Webhook) -> WebhookInfo {
        let retrying = locked(&self.inner.deliveries.retrying)
            .get(&webhook.id)
            .cloned();
        WebhookInfo { webhook, retrying }
    }

    /// Deletes a subscription on behalf of `by`: its loop stops (a delivery
    /// under way is dropped). Returns it as it was.
    pub async fn delete_webhook(
        &self,
        id: &str,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<WebhookInfo, Error> {
        let old = {
            let _exclusive = self.inner.changing_webhooks.lock().await;
            let old = self.webhook(id)?;
            let event = WebhookEvent::WebhookDeleted {
                id: id.to_owned(),
                by: by.map(str::to_owned),
                reason: reason.map(str::to_owned),
            };
            self.record_webhook(&event).await?;
            old
        };
        if let Some(stop) = locked(&self.inner.deliveries.runs).remove(id) {
            stop.cancel();
        }
        locked(&self.inner.deliveries.retrying).remove(id);
        Ok(old)
    }

    /// Records how the event at `position` was settled for `id`; `false`
    /// when the subscription is gone (nothing recorded).
    async fn record_settled(
        &self,
        id: &str,
        position: u64,
        settled: &Settled,
    ) -> Result<bool, Error> {
        let _exclusive = self.inner.changing_webhooks.lock().await;
        if self.webhooks_table().get(id).is_none() {
            return Ok(false);
        }
        let event = match settled {
            Settled::Delivered => WebhookEvent::WebhookDelivered {
                id: id.to_owned(),
                up_to: position,
                count: 1,
            },
            Settled::GivenUp { attempts, error } => WebhookEvent::WebhookFailed {
                id: id.to_owned(),
                position,
                attempts: *attempts,
                error: error.clone(),
            },
        };
        self.record_webhook(&event).await?;
        Ok(true)
    }

    /// Appends `event` to the webhooks stream and folds it; keeps the table
    /// as the stream's snapshot now and then. The caller holds
    /// `changing_webhooks`.
    async fn record_webhook(&self, event: &WebhookEvent) -> Result<(), Error> {
        let now = self.inner.clock.now_ms();
        let seq = self.webhooks_table().seq + 1;
        self.inner.store.append_webhook(seq, event, now).await?;
        let snapshot = {
            let mut table = self.webhooks_table();
            table.apply(seq, now, event);
            seq.is_multiple_of(SNAPSHOT_EVERY)
                .then(|| self.inner.store.put_table_snapshot(&*table))
        };
        if let Some(Ok(written)) = snapshot {
            self.inner.tasks.spawn(async move {
                if let Err(e) = written.await {
                    tracing::warn!(error = %e, "webhooks snapshot not written");
                }
            });
        }
        Ok(())
    }

    /// Starts every recorded subscription's loop (at open).
    pub(super) fn run_webhooks(&self) {
        let ids: Vec<String> = self.webhooks_table().by_id.keys().cloned().collect();
        for id in ids {
            self.spawn_webhook(&id);
        }
    }

    /// Stops every delivery loop (this engine is no longer the home, whose
    /// work they are).
    pub(super) fn stop_webhooks(&self) {
        for (_, run) in locked(&self.inner.deliveries.runs).drain() {
            run.cancel();
        }
    }

    /// Starts `id`'s delivery loop, stopped when it is deleted or the
    /// engine shuts down.
    fn spawn_webhook(&self, id: &str) {
        let stop = CancellationToken::new();
        if let Some(old) = locked(&self.inner.deliveries.runs).insert(id.to_owned(), stop.clone()) {
            old.cancel();
        }
        let weak = Arc::downgrade(&self.inner);
        let id = id.to_owned();
        self.inner.tasks.spawn(async move {
            stop.run_until_cancelled(deliver_loop(weak, id)).await;
        });
    }
}

/// Delivers `id`'s events one at a time from its cursor on, recording each
/// as it is settled; ends when the subscription is gone.
async fn deliver_loop(weak: Weak<Inner>, id: String) {
    let Some(engine) = upgrade(&weak) else { return };
    // Deliveries are the home's work (see `home`).
    if !engine.is_home() {
        return;
    }
    let Some(webhook) = engine.webhooks_table().get(&id).cloned() else {
        return;
    };
    let Some(key) = sign::key_of(webhook.secret.expose()) else {
        tracing::error!(webhook = %id, "the webhook's recorded secret is not a whsec_ key; \
            nothing is delivered to it");
        return;
    };
    let history = engine.read().clone();
    let clock = engine.inner.clock.clone();
    let deliveries = Arc::clone(&engine.inner.deliveries);
    drop(engine);
    let spec = webhook.spec;
    let filter = GlobalFilter {
        workflow: spec.workflow.clone(),
        types: Some(spec.events.iter().cloned().collect::<BTreeSet<String>>()),
    };
    let mut from = webhook.cursor.saturating_add(1);
    let mut events = history.subscribe_all(from, filter.clone());
    loop {
        let event = match events.next().await {
            Some(Ok(event)) => event,
            Some(Err(e)) => {
                tracing::warn!(webhook = %id, error = %e,
                    "webhook delivery cannot read the journal; trying again");
                clock.sleep_until(clock.now_ms() + RETRY_MS).await;
                events = history.subscribe_all(from, filter.clone());
                continue;
            }
            // The journal closed.
            None => return,
        };
        let position = event.event.position;
        let settled = deliveries.deliver(&id, &spec, &key, &event, &clock).await;
        if let Settled::GivenUp { attempts, error } = &settled {
            tracing::warn!(webhook = %id, position, attempts, error = %error,
                "webhook delivery given up; moving on to the next event");
        }
        loop {
            let Some(engine) = upgrade(&weak) else { return };
            match engine.record_settled(&id, position, &settled).await {
                Ok(true) => break,
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(webhook = %id, position, error = %e,
                        "webhook cursor not recorded; trying again");
                    drop(engine);
                    clock.sleep_until(clock.now_ms() + RETRY_MS).await;
                }
            }
        }
        from = position.saturating_add(1);
    }
}
