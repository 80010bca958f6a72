//! Access tokens on a running engine: create, revoke, list, and the check
//! of a presented secret that every authenticated request makes.
//!
//! Owns the order of a change: refuse what is wrong, append, then update the
//! table (so a token is usable only once it is durable, and a revocation
//! is in force from the moment it is acknowledged). It must never keep a
//! secret it handed out.

use crate::error::Error;
use crate::store::tokens::{NewToken, Refused, Token};

use super::Engine;

impl Engine {
    /// Creates a token on behalf of `by` (a token's name, or `None`); returns
    /// it and its secret, which is shown this once and kept nowhere.
    pub async fn create_token(
        &self,
        new: NewToken,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<(Token, String), Error> {
        let _exclusive = self.inner.changing_tokens.lock().await;
        self.tokens_caught_up().await?;
        let now = self.inner.clock.now_ms();
        let creation = self.read_tokens()?.creation(new, by, reason, now)?;
        self.inner
            .store
            .append_access(creation.seq, creation.event.clone())
            .await?;
        self.write_tokens()?.created(&creation);
        Ok((creation.token, creation.secret))
    }

    /// Revokes the token `name` on behalf of `by`: refused from now on.
    pub async fn revoke_token(
        &self,
        name: &str,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<Token, Error> {
        let _exclusive = self.inner.changing_tokens.lock().await;
        self.tokens_caught_up().await?;
        let now = self.inner.clock.now_ms();
        let (seq, event) = self.read_tokens()?.revocation(name, by, reason, now)?;
        self.inner.store.append_access(seq, event).await?;
        let mut tokens = self.write_tokens()?;
        tokens.revoked(name, by, now, seq);
        tokens
            .get(name)
            .ok_or_else(|| Error::Inconsistent(format!("token {name} vanished")))
    }

    /// Every token, revoked and expired ones included, by name.
    pub fn tokens(&self) -> Result<Vec<Token>, Error> {
        Ok(self.read_tokens()?.list())
    }

    /// Whether callers need a token: once one was ever created, always.
    pub fn tokens_required(&self) -> bool {
        self.read_tokens().map(|t| t.required()).unwrap_or(true)
    }

    /// The token `secret` is, if it is accepted now.
    pub fn authenticate(&self, secret: &str) -> Result<Token, Refused> {
        let now = self.inner.clock.now_ms();
        self.read_tokens()
            .map_err(|_| Refused::Unknown)?
            .authenticate(secret, now)
    }

    fn read_tokens(
        &self,
    ) -> Result<std::sync::RwLockReadGuard<'_, crate::store::tokens::Tokens>, Error> {
        self.inner.tokens.read().map_err(|_| Error::Poisoned)
    }

    fn write_tokens(
        &self,
    ) -> Result<std::sync::RwLockWriteGuard<'_, crate::store::tokens::Tokens>, Error> {
        self.inner.tokens.write().map_err(|_| Error::Poisoned)
    }
}
