//! Standard Webhooks signing: a secret is `whsec_` and the base64 of its
//! key; a signature is `v1,` and the base64 of HMAC-SHA256, keyed with the
//! key, over `{webhook-id}.{webhook-timestamp}.{body}`.
//!
//! Owns the secret's format and the one MAC computation, used to sign
//! outbound deliveries and to check signed inbound events (the api). It
//! must never compare signatures other than in constant time, and never
//! put a key in an error or a log.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::Error;

/// What a secret starts with.
pub const SECRET_PREFIX: &str = "whsec_";

/// What a signature of this scheme starts with.
pub const SIGNATURE_PREFIX: &str = "v1,";

/// How many random bytes a new secret's key has (the spec asks for 24 to
/// 64).
pub const KEY_BYTES: usize = 32;

/// The header names of a signed message.
pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// A new secret: [`KEY_BYTES`] from the operating system's random source,
/// as `whsec_<base64>`.
pub fn new_secret() -> Result<String, Error> {
    let mut key = [0u8; KEY_BYTES];
    getrandom::fill(&mut key)
        .map_err(|e| Error::Inconsistent(format!("no randomness for a webhook secret: {e}")))?;
    Ok(format!("{SECRET_PREFIX}{}", STANDARD.encode(key)))
}

/// The key a secret holds; `None` when it is not `whsec_` and non-empty
/// base64.
pub fn key_of(secret: &str) -> Option<Vec<u8>> {
    secret
        .trim()
        .strip_prefix(SECRET_PREFIX)
        .and_then(|b64| STANDARD.decode(b64).ok())
        .filter(|key| !key.is_empty())
}

fn mac(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> Option<Hmac<Sha256>> {
    // HMAC takes a key of any length; this fails only on an empty one.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

/// The `webhook-signature` value of a message: `v1,<base64>`.
pub fn sign(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let digest = mac(key, id, timestamp, body)
        .map(|m| m.finalize().into_bytes().to_vec())
        .unwrap_or_default();
    format!("{SIGNATURE_PREFIX}{}", STANDARD.encode(digest))
}

/// Whether one `v1,<base64>` signature (the header may hold several,
/// space-separated) is the message's, compared in constant time.
pub fn verify(key: &[u8], id: &str, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(given) = signature
        .strip_prefix(SIGNATURE_PREFIX)
        .and_then(|b64| STANDARD.decode(b64).ok())
    else {
        return false;
    };
    mac(key, id, timestamp, body).is_some_and(|m| m.verify_slice(&given).is_ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The test vector the Standard Webhooks reference libraries publish.
    #[test]
    fn the_specs_test_vector_signs_and_verifies() {
        let key = key_of("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let (id, ts, body) = (
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            br#"{"test": 2432232314}"#,
        );
        let expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(sign(&key, id, ts, body), expected);
        assert!(verify(&key, id, ts, body, expected));
        assert!(!verify(&key, id, "1614265331", body, expected));
        assert!(!verify(&key, id, ts, b"{}", expected));
        assert!(!verify(&key, id, ts, body, "v2,g0hM9SsE"));
        assert!(!verify(&key, id, ts, body, "v1,not base64!"));
    }

    #[test]
    fn a_new_secret_holds_a_key_of_32_random_bytes() {
        let (a, b) = (new_secret().unwrap(), new_secret().unwrap());
        assert!(a.starts_with(SECRET_PREFIX));
        assert_eq!(key_of(&a).unwrap().len(), KEY_BYTES);
        assert_ne!(a, b);
        assert_eq!(key_of("whsec_"), None);
        assert_eq!(key_of("plain"), None);
    }
}
