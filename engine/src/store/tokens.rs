//! Access tokens: who may call the API, in which role, until when. Kept as
//! events of the reserved stream `ACCESS`, so the journal's hash chain (and
//! `retrace verify`) covers every token change, and the table is rebuilt
//! from that stream at open like the workflow catalog.
//!
//! A token is 32 random bytes, shown once as `rtk_` and 64 hex digits. Only
//! its keyed BLAKE3 hash is stored; a presented token is hashed the same way
//! and compared with every stored hash in constant time (`blake3::Hash`'s
//! equality), so neither the journal nor the timing of a refusal tells
//! anything about a token. A token is never deleted: a revoked one stays in
//! the table, refused, so its name keeps meaning the same holder in the
//! history. Once the stream holds one token, it always does: revoking every
//! token locks every caller out rather than opening the server.
//!
//! Owns the stream's records, the table they fold into, and the secrets'
//! format. It must never keep a secret, nor decide which role may call
//! which route (the HTTP layer does).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use retrace_journal::{EventRecord, Journal, NewEvent};
use serde::{Deserialize, Serialize};

use super::{ACCESS, Storage, Store};
use crate::error::Error;
use crate::model::{check_capability, check_token_name};

const CREATED: &str = "token_created";
const REVOKED: &str = "token_revoked";
/// What every secret starts with (so a leaked one is recognisable).
pub const SECRET_PREFIX: &str = "rtk_";
/// The BLAKE3 key-derivation context of stored hashes.
const HASH_CONTEXT: &str = "retrace 2026-12 access token v1";

/// What a token's holder may do; the HTTP layer maps each route to the
/// roles allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, tokens included.
    Admin,
    /// Defines workflows and runs every execution command, and what a client may.
    Operator,
    /// Starts executions, sends signals and events, reads.
    Client,
    /// Reads and streams.
    Viewer,
    /// Registers as an agent (with the token's capabilities), polls, and
    /// reports its own tasks.
    Agent,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Operator,
        Role::Client,
        Role::Viewer,
        Role::Agent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Client => "client",
            Role::Viewer => "viewer",
            Role::Agent => "agent",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("no role `{s}`: use admin, operator, client, viewer or agent"))
    }
}

/// A token as the table shows it (never its secret or hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub name: String,
    pub role: Role,
    /// For an agent token: the only capabilities its agents may register
    /// with (`None`: any).
    pub capabilities: Option<Vec<String>>,
    pub created_at_ms: u64,
    /// Who created it: a token's name, or `None` when no token was needed
    /// (the command line on the data folder, or a server with no tokens yet).
    pub created_by: Option<String>,
    pub expires_at_ms: Option<u64>,
    pub revoked_at_ms: Option<u64>,
    pub revoked_by: Option<String>,
}

impl Token {
    /// Whether it is accepted at `now_ms`.
    pub fn is_active(&self, now_ms: u64) -> bool {
        self.revoked_at_ms.is_none() && self.expires_at_ms.is_none_or(|at| now_ms < at)
    }

    /// `active`, `revoked` or `expired`, at `now_ms`.
    pub fn status(&self, now_ms: u64) -> &'static str {
        if self.revoked_at_ms.is_some() {
            "revoked"
        } else if self.is_active(now_ms) {
            "active"
        } else {
            "expired"
        }
    }
}

/// A token to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub name: String,
    pub role: Role,
    pub capabilities: Option<Vec<String>>,
    pub expires_at_ms: Option<u64>,
}

pub use crate::error::TokenError;

/// Why a presented token is refused. Deliberately vague towards the caller
/// (the HTTP layer says only "missing" or "not valid"); the server's log
/// may say which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not a token this server ever issued.
    Unknown,
    Revoked,
    Expired,
}

/// The stored shape of `token_created`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Created {
    name: String,
    role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    capabilities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at_ms: Option<u64>,
    /// Hex of the keyed BLAKE3 hash of the secret.
    hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// The stored shape of `token_revoked`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RevokedEvent {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// The token table, folded from the access stream.
#[derive(Debug, Default)]
pub struct Tokens {
    by_name: BTreeMap<String, (Token, blake3::Hash)>,
    /// The access stream's last seq.
    seq: u64,
}

/// A new token's secret, its hash, and the event that records it.
#[derive(Debug)]
pub(crate) struct Creation {
    pub seq: u64,
    pub event: NewEvent,
    pub token: Token,
    pub secret: String,
    hash: blake3::Hash,
}

impl Tokens {
    /// Rebuilds the table from its stream.
    pub async fn load(journal: &dyn Journal) -> Result<Tokens, Error> {
        let mut tokens = Tokens::default();
        tokens.catch_up(journal).await?;
        Ok(tokens)
    }

    /// Reads and takes in what the stream holds past what it took in.
    pub(crate) async fn catch_up(&mut self, journal: &dyn Journal) -> Result<(), Error> {
        loop {
            let records = journal.read(ACCESS, self.seq + 1, 256).await?;
            if records.is_empty() {
                return Ok(());
            }
            self.take_in(&records)?;
        }
    }

    /// The access stream's last seq taken in.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// Takes in the access stream's `records`, those it has not yet (in
    /// order, from the one after its last).
    pub(crate) fn take_in(&mut self, records: &[EventRecord]) -> Result<(), Error> {
        for r in super::past(records, self.seq, "access")? {
            match stored(r)? {
                Some(Stored::Created(c)) => {
                    let hash = blake3::Hash::from_hex(&c.hash).map_err(|e| {
                        Error::Inconsistent(format!(
                            "access event {}: the token hash is not hex: {e}",
                            r.seq
                        ))
                    })?;
                    let token = Token {
                        name: c.name.clone(),
                        role: c.role,
                        capabilities: c.capabilities,
                        created_at_ms: r.recorded_at_ms,
                        created_by: c.by,
                        expires_at_ms: c.expires_at_ms,
                        revoked_at_ms: None,
                        revoked_by: None,
                    };
                    self.by_name.insert(c.name, (token, hash));
                }
                Some(Stored::Revoked(v)) => {
                    self.mark_revoked(&v.name, v.by, r.recorded_at_ms);
                }
                // A kind a later build added: not ours to read.
                None => {}
            }
            self.seq = r.seq;
        }
        Ok(())
    }

    /// Whether any token was ever created: from then on every call needs one.
    pub fn required(&self) -> bool {
        !self.by_name.is_empty()
    }

    /// Every token, revoked and expired ones included, by name.
    pub fn list(&self) -> Vec<Token> {
        self.by_name.values().map(|(t, _)| t.clone()).collect()
    }

    pub fn get(&self, name: &str) -> Option<Token> {
        self.by_name.get(name).map(|(t, _)| t.clone())
    }

    /// The token whose secret `presented` is, if it is accepted at `now_ms`.
    /// Every stored hash is compared, each in constant time.
    pub fn authenticate(&self, presented: &str, now_ms: u64) -> Result<Token, Refused> {
        let hash = hash_secret(presented);
        let mut found = None;
        for (token, stored) in self.by_name.values() {
            if *stored == hash {
                found = Some(token);
            }
        }
        let token = found.ok_or(Refused::Unknown)?;
        if token.revoked_at_ms.is_some() {
            return Err(Refused::Revoked);
        }
        if !token.is_active(now_ms) {
            return Err(Refused::Expired);
        }
        Ok(token.clone())
    }

    /// The event that creates `new`, with a fresh secret, and the seq it
    /// must be appended at. The caller holds token changes exclusively from
    /// here until [`Self::created`].
    pub(crate) fn creation(
        &self,
        new: NewToken,
        by: Option<&str>,
        reason: Option<&str>,
        now_ms: u64,
    ) -> Result<Creation, Error> {
        check(&new, now_ms)?;
        if self.by_name.contains_key(&new.name) {
            return Err(TokenError::Exists(new.name).into());
        }
        let secret = new_secret()?;
        let hash = hash_secret(&secret);
        let created = Created {
            name: new.name.clone(),
            role: new.role,
            capabilities: new.capabilities.clone(),
            expires_at_ms: new.expires_at_ms,
            hash: hash.to_hex().to_string(),
            by: by.map(str::to_owned),
            reason: reason.map(str::to_owned),
        };
        let payload = serde_json::to_vec(&created).map_err(|source| Error::Codec {
            what: "a token_created event does not encode".into(),
            source,
        })?;
        Ok(Creation {
            seq: self.seq + 1,
            event: NewEvent::new(CREATED, now_ms, payload),
            token: Token {
                name: new.name,
                role: new.role,
                capabilities: new.capabilities,
                created_at_ms: now_ms,
                created_by: by.map(str::to_owned),
                expires_at_ms: new.expires_at_ms,
                revoked_at_ms: None,
                revoked_by: None,
            },
            secret,
            hash,
        })
    }

    /// Takes in a creation appended at its seq.
    pub(crate) fn created(&mut self, c: &Creation) {
        self.by_name
            .insert(c.token.name.clone(), (c.token.clone(), c.hash));
        self.seq = c.seq;
    }

    /// The event that revokes `name`, and its seq.
    pub(crate) fn revocation(
        &self,
        name: &str,
        by: Option<&str>,
        reason: Option<&str>,
        now_ms: u64,
    ) -> Result<(u64, NewEvent), Error> {
        let (token, _) = self
            .by_name
            .get(name)
            .ok_or_else(|| TokenError::Unknown(name.to_owned()))?;
        if token.revoked_at_ms.is_some() {
            return Err(TokenError::Revoked(name.to_owned()).into());
        }
        let payload = serde_json::to_vec(&RevokedEvent {
            name: name.to_owned(),
            by: by.map(str::to_owned),
            reason: reason.map(str::to_owned),
        })
        .map_err(|source| Error::Codec {
            what: "a token_revoked event does not encode".into(),
            source,
        })?;
        Ok((self.seq + 1, NewEvent::new(REVOKED, now_ms, payload)))
    }

    /// Takes in a revocation appended at `seq`.
    pub(crate) fn revoked(&mut self, name: &str, by: Option<&str>, at_ms: u64, seq: u64) {
        self.mark_revoked(name, by.map(str::to_owned), at_ms);
        self.seq = seq;
    }

    fn mark_revoked(&mut self, name: &str, by: Option<String>, at_ms: u64) {
        if let Some((token, _)) = self.by_name.get_mut(name) {
            token.revoked_at_ms = Some(at_ms);
            token.revoked_by = by;
        }
    }
}

/// A new token's spelling, role and expiry, checked before anything is
/// recorded.
fn check(new: &NewToken, now_ms: u64) -> Result<(), TokenError> {
    check_token_name(&new.name).map_err(TokenError::Invalid)?;
    if let Some(caps) = &new.capabilities {
        if new.role != Role::Agent {
            return Err(TokenError::Invalid(format!(
                "capabilities limit agent tokens only; this token's role is {}",
                new.role
            )));
        }
        if caps.is_empty() {
            return Err(TokenError::Invalid(
                "capabilities, when given, must name at least one".into(),
            ));
        }
        for c in caps {
            check_capability(c).map_err(TokenError::Invalid)?;
        }
    }
    if let Some(at) = new.expires_at_ms
        && at <= now_ms
    {
        return Err(TokenError::Invalid(
            "the expiry is not in the future".into(),
        ));
    }
    Ok(())
}

/// 32 bytes from the operating system's random source, as `rtk_<hex>`.
fn new_secret() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Inconsistent(format!("no randomness for a new token: {e}")))?;
    let mut secret = String::with_capacity(SECRET_PREFIX.len() + 64);
    secret.push_str(SECRET_PREFIX);
    for b in bytes {
        secret.push_str(&format!("{b:02x}"));
    }
    Ok(secret)
}

/// The keyed hash a secret is stored and compared as.
fn hash_secret(secret: &str) -> blake3::Hash {
    blake3::Hash::from(blake3::derive_key(HASH_CONTEXT, secret.as_bytes()))
}

/// The token table of a data folder no server holds, for the command line:
/// changes are appended (and flushed) to the folder's journal directly.
#[derive(Debug)]
pub struct TokenFolder {
    store: Store,
    tokens: Tokens,
}

impl TokenFolder {
    /// Opens `path`'s journal (creating the folder when it does not exist;
    /// an existing folder must be a data folder).
    pub async fn open(path: &Path) -> Result<TokenFolder, Error> {
        if path.exists() {
            let empty = path
                .read_dir()
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if !empty {
                super::check_data_folder(path)?;
            }
        }
        let store = Store::open(Storage::Folder {
            path: path.to_owned(),
            options: super::JournalOptions::default(),
        })?;
        let tokens = Tokens::load(store.journal()).await?;
        Ok(TokenFolder { store, tokens })
    }

    /// The tokens of a journal opened elsewhere (on NATS, its partitions
    /// held by the caller).
    pub async fn on_journal(journal: Arc<dyn Journal>) -> Result<TokenFolder, Error> {
        let store = Store::open(Storage::Journal(journal))?;
        let tokens = Tokens::load(store.journal()).await?;
        Ok(TokenFolder { store, tokens })
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// Creates a token; returns it and its secret (shown once).
    pub async fn create(&mut self, new: NewToken, now_ms: u64) -> Result<(Token, String), Error> {
        let c = self.tokens.creation(new, None, None, now_ms)?;
        self.store.append_access(c.seq, c.event.clone()).await?;
        self.store.flush().await?;
        self.tokens.created(&c);
        Ok((c.token, c.secret))
    }

    /// Revokes `name` at once.
    pub async fn revoke(&mut self, name: &str, now_ms: u64) -> Result<Token, Error> {
        let (seq, event) = self.tokens.revocation(name, None, None, now_ms)?;
        self.store.append_access(seq, event).await?;
        self.store.flush().await?;
        self.tokens.revoked(name, None, now_ms, seq);
        self.tokens
            .get(name)
            .ok_or_else(|| TokenError::Unknown(name.to_owned()).into())
    }
}

/// A token change as the access stream records it, for an audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenChange {
    /// `token_created` or `token_revoked`.
    pub kind: &'static str,
    pub name: String,
    /// For a creation: its role.
    pub role: Option<Role>,
    pub by: Option<String>,
    pub reason: Option<String>,
}

/// The token change `record` of the access stream holds (`None` for a kind
/// this build does not know).
pub(crate) fn change_of(
    record: &retrace_journal::EventRecord,
) -> Result<Option<TokenChange>, Error> {
    Ok(stored(record)?.map(|change| match change {
        Stored::Created(c) => TokenChange {
            kind: CREATED,
            name: c.name,
            role: Some(c.role),
            by: c.by,
            reason: c.reason,
        },
        Stored::Revoked(v) => TokenChange {
            kind: REVOKED,
            name: v.name,
            role: None,
            by: v.by,
            reason: v.reason,
        },
    }))
}

/// A record of the access stream, decoded.
enum Stored {
    Created(Created),
    Revoked(RevokedEvent),
}

/// What `record` holds (`None` for a kind this build does not know).
fn stored(record: &retrace_journal::EventRecord) -> Result<Option<Stored>, Error> {
    let bad = |source| Error::Codec {
        what: format!(
            "access event {} ({}) does not decode",
            record.seq, record.kind
        ),
        source,
    };
    Ok(match record.kind.as_str() {
        CREATED => Some(Stored::Created(
            serde_json::from_slice(&record.payload).map_err(bad)?,
        )),
        REVOKED => Some(Stored::Revoked(
            serde_json::from_slice(&record.payload).map_err(bad)?,
        )),
        _ => None,
    })
}

/// Every token of a stopped server's data folder, read-only.
pub async fn list_folder(path: &Path) -> Result<Vec<Token>, Error> {
    let store = Store::open_read_only(path)?;
    Ok(Tokens::load(store.journal()).await?.list())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_hex_and_differ() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(SECRET_PREFIX));
        assert_eq!(a.len(), SECRET_PREFIX.len() + 64);
        assert!(
            a[SECRET_PREFIX.len()..]
                .bytes()
                .all(|c| c.is_ascii_hexdigit())
        );
    }

    #[test]
    fn a_token_authenticates_until_revoked_or_expired() {
        let mut tokens = Tokens::default();
        let new = NewToken {
            name: "ci".into(),
            role: Role::Operator,
            capabilities: None,
            expires_at_ms: Some(2_000),
        };
        let c = tokens.creation(new, Some("root"), None, 1_000).unwrap();
        tokens.created(&c);
        assert!(tokens.required());
        assert_eq!(
            tokens.authenticate(&c.secret, 1_500).unwrap().role,
            Role::Operator
        );
        assert_eq!(tokens.authenticate("rtk_00", 1_500), Err(Refused::Unknown));
        assert_eq!(tokens.authenticate(&c.secret, 2_000), Err(Refused::Expired));
        let (seq, _) = tokens.revocation("ci", None, None, 1_600).unwrap();
        tokens.revoked("ci", None, 1_600, seq);
        assert_eq!(tokens.authenticate(&c.secret, 1_700), Err(Refused::Revoked));
        assert!(
            tokens.required(),
            "revoking every token never opens the server"
        );
    }

    #[test]
    fn bad_tokens_are_refused_before_anything_is_made() {
        let tokens = Tokens::default();
        let bad = |name: &str, role, caps: Option<Vec<&str>>, exp| {
            tokens
                .creation(
                    NewToken {
                        name: name.into(),
                        role,
                        capabilities: caps.map(|c| c.into_iter().map(String::from).collect()),
                        expires_at_ms: exp,
                    },
                    None,
                    None,
                    1_000,
                )
                .unwrap_err()
                .to_string()
        };
        assert!(bad("-x", Role::Admin, None, None).contains("token name"));
        assert!(bad("a", Role::Viewer, Some(vec!["x"]), None).contains("agent tokens only"));
        assert!(bad("a", Role::Agent, Some(vec!["Bad"]), None).contains("capability"));
        assert!(bad("a", Role::Agent, Some(vec![]), None).contains("at least one"));
        assert!(bad("a", Role::Agent, None, Some(1_000)).contains("future"));
    }
}
