//! Signed inbound events, for integrations that cannot hold a token: an
//! event name (or every name, `*`) given a secret takes `POST
//! /v1/events/{name}` and signals of that name only with a valid
//! [Standard Webhooks](https://www.standardwebhooks.com/) signature, and
//! then needs no token.
//!
//! The signature is HMAC-SHA256, keyed with the secret (`whsec_` and its
//! base64; the computation is the engine's `webhooks::sign`, which signs
//! outbound webhooks too), over `<webhook-id>.<webhook-timestamp>.<body>`, sent as
//! `webhook-signature: v1,<base64>` (several, space-separated, while a
//! secret is rotated). The timestamp must be within 5 minutes of the
//! server's clock, and a `webhook-id` is taken once: a replay within the
//! window is refused. Seen ids live in memory, so a message replayed right
//! after a restart, inside its 5 minutes, is not caught.
//!
//! Owns the secrets, the check, and the seen ids. It must never accept a
//! body it did not verify for a name that has a secret, and it compares
//! signatures in constant time only.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use retrace_engine::webhooks::sign;

use crate::error::Error;

/// How far a signature's timestamp may be from the server's clock.
pub const TOLERANCE_S: u64 = 5 * 60;
/// The most `webhook-id`s remembered at once (each for the tolerance
/// window twice over); past it, the oldest are forgotten first.
const SEEN_MAX: usize = 1_000_000;

pub const ID: &str = sign::ID_HEADER;
pub const TIMESTAMP: &str = sign::TIMESTAMP_HEADER;
pub const SIGNATURE: &str = sign::SIGNATURE_HEADER;

/// The `webhook-id`s taken, oldest first: each with the server's time when
/// it was taken. One taken more than twice the window ago can never pass
/// the timestamp check again, so it is forgotten (amortised O(1) a take).
#[derive(Debug, Default)]
struct Seen {
    ids: HashSet<String>,
    order: VecDeque<(u64, String)>,
}

/// The secrets of event names (`*`: every name without its own).
#[derive(Clone, Default)]
pub struct Secrets {
    by_name: BTreeMap<String, Arc<[u8]>>,
    /// Seen ids and their timestamps, shared by every clone.
    seen: Arc<Mutex<Seen>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a key.
        f.debug_struct("Secrets")
            .field("names", &self.by_name.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Secrets {
    /// From `name=whsec_…` settings; a name may be `*`.
    pub fn parse(settings: &[String]) -> Result<Secrets, String> {
        let mut by_name = BTreeMap::new();
        for setting in settings {
            let (name, secret) = setting.split_once('=').ok_or_else(|| {
                "an event secret is `<event name or *>=whsec_<base64>`".to_owned()
            })?;
            let name = name.trim();
            if name != "*" {
                retrace_engine::model::check_event_name(name)?;
            }
            let key = sign::key_of(secret).ok_or_else(|| {
                format!(
                    "the secret of event `{name}` must be `whsec_` and base64 (Standard Webhooks)"
                )
            })?;
            if by_name.insert(name.to_owned(), Arc::from(key)).is_some() {
                return Err(format!("event `{name}` is given two secrets"));
            }
        }
        Ok(Secrets {
            by_name,
            seen: Arc::default(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The key events named `name` are signed with, if any.
    pub fn key(&self, name: &str) -> Option<&[u8]> {
        self.by_name
            .get(name)
            .or_else(|| self.by_name.get("*"))
            .map(|k| &k[..])
    }

    /// Checks a signed request's headers and body with `key` at `now_s`,
    /// and takes its id (refused if seen).
    pub fn verify(
        &self,
        key: &[u8],
        headers: &HeaderMap,
        body: &[u8],
        now_s: u64,
    ) -> Result<(), Error> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| bad(format!("this event must be signed: `{name}` is missing")))
        };
        let id = header(ID)?;
        let timestamp = header(TIMESTAMP)?;
        let signatures = header(SIGNATURE)?;
        let at: u64 = timestamp
            .parse()
            .map_err(|_| bad(format!("`{TIMESTAMP}` must be whole seconds since 1970")))?;
        if at.abs_diff(now_s) > TOLERANCE_S {
            return Err(bad(format!(
                "`{TIMESTAMP}` is more than {TOLERANCE_S} s from the server's clock (stale or early)"
            )));
        }
        // Each is compared in constant time.
        let matched = signatures
            .split_whitespace()
            .any(|signature| sign::verify(key, id, timestamp, body, signature));
        if !matched {
            return Err(bad(format!("no `{SIGNATURE}` matches this event's secret")));
        }
        self.take(id, now_s)
    }

    /// Remembers `id`; refused when it was taken already.
    fn take(&self, id: &str, now_s: u64) -> Result<(), Error> {
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| Error::Internal("the seen webhook ids lock was poisoned".into()))?;
        while let Some((taken_s, old)) = seen.order.front()
            && (taken_s.saturating_add(2 * TOLERANCE_S) < now_s || seen.ids.len() >= SEEN_MAX)
        {
            let old = old.clone();
            seen.ids.remove(&old);
            seen.order.pop_front();
        }
        if !seen.ids.insert(id.to_owned()) {
            return Err(bad(format!("`{ID}` {id} was taken already (a replay)")));
        }
        seen.order.push_back((now_s, id.to_owned()));
        Ok(())
    }
}

fn bad(message: String) -> Error {
    Error::InvalidSignature(message)
}

/// The route's `{name}`, percent-decoded.
pub async fn event_name(parts: &mut axum::http::request::Parts) -> Result<String, Error> {
    use axum::extract::{FromRequestParts, RawPathParams};
    let params = RawPathParams::from_request_parts(parts, &())
        .await
        .map_err(|r| Error::Status {
            status: r.status(),
            message: r.body_text(),
        })?;
    params
        .iter()
        .find(|(key, _)| *key == "name")
        .map(|(_, value)| value.to_owned())
        .ok_or_else(|| Error::Internal("an event route without {name}".into()))
}

/// Whether a request to an event route may skip the token check: its name
/// has a secret and it carries a signature (checked by
/// [`crate::extract::EventBody`]).
pub fn signed(secrets: &Secrets, name: &str, headers: &HeaderMap) -> bool {
    secrets.key(name).is_some() && headers.contains_key(SIGNATURE)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    use super::*;

    /// An independent signer: the check must accept what it signs.
    fn sign(key: &[u8], id: &str, ts: u64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    fn headers(id: &str, ts: u64, signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ID, id.parse().unwrap());
        h.insert(TIMESTAMP, ts.to_string().parse().unwrap());
        h.insert(SIGNATURE, signature.parse().unwrap());
        h
    }

    #[test]
    fn a_good_signature_is_taken_once_and_bad_stale_or_replayed_ones_are_not() {
        let key = b"0123456789abcdef0123456789abcdef";
        let secrets =
            Secrets::parse(&[format!("order.paid=whsec_{}", STANDARD.encode(key))]).unwrap();
        let now = 1_800_000_000;
        let body = br#"{"payload":{"order":7}}"#;
        let good = sign(key, "msg_1", now, body);
        let k = secrets.key("order.paid").unwrap().to_vec();
        assert!(
            secrets
                .verify(&k, &headers("msg_1", now, &good), body, now)
                .is_ok()
        );
        let replay = secrets.verify(&k, &headers("msg_1", now, &good), body, now + 1);
        assert!(replay.unwrap_err().to_string().contains("replay"));
        let other = sign(b"another key entirely, 32 bytes!!", "msg_2", now, body);
        let wrong = secrets.verify(&k, &headers("msg_2", now, &other), body, now);
        assert!(
            wrong
                .unwrap_err()
                .to_string()
                .contains("no `webhook-signature` matches")
        );
        let changed = secrets.verify(
            &k,
            &headers("msg_3", now, &sign(key, "msg_3", now, body)),
            b"{}",
            now,
        );
        assert!(changed.is_err(), "a signature covers the body");
        let stale = sign(key, "msg_4", now - TOLERANCE_S - 1, body);
        let stale = secrets.verify(
            &k,
            &headers("msg_4", now - TOLERANCE_S - 1, &stale),
            body,
            now,
        );
        assert!(stale.unwrap_err().to_string().contains("stale"));
        // While a secret is rotated, either signature will do.
        let both = format!("v1,AAAA {}", sign(key, "msg_5", now, body));
        assert!(
            secrets
                .verify(&k, &headers("msg_5", now, &both), body, now)
                .is_ok()
        );
        assert!(secrets.key("other").is_none());
    }

    #[test]
    fn secrets_are_checked_when_read() {
        assert!(Secrets::parse(&["a=whsec_".into()]).is_err());
        assert!(Secrets::parse(&["a=plain".into()]).is_err());
        assert!(Secrets::parse(&["noequals".into()]).is_err());
        assert!(Secrets::parse(&["-bad=whsec_AAAA".into()]).is_err());
        let any = Secrets::parse(&["*=whsec_AAAA".into()]).unwrap();
        assert!(any.key("whatever").is_some());
    }
}
