//! What is engine-wide on a journal several servers share: the home
//! streams (the catalog of definitions, the access tokens, and the
//! schedules', breakers', limits' and webhooks' streams), which all live in
//! partition 0 (`retrace_journal::is_home`), so one server, its holder,
//! writes them all.
//!
//! Every engine follows the catalog, the tokens and the breakers as they
//! are written, wherever: each defines nothing it did not read, checks
//! every request against the tokens the home recorded, and knows which
//! capabilities have a breaker (whose tasks it performs itself only once
//! the home lets them go, see `breakers`). A change made here first takes in
//! what the stream holds past what this engine has read (it may have held
//! partition 0 only since a moment ago), so it is decided on the whole
//! stream; an engine that does not hold partition 0 cannot make one (the
//! journal refuses its append).
//!
//! The other home streams are recorded by loops (schedules firing,
//! webhook deliveries, breaker states, capability claims) that run at the
//! home only: a server that becomes the home reads their tables again
//! (the previous home recorded into them since it opened) and starts the
//! loops; one that stops being it stops them.
//!
//! Owns the following of the home streams and the handing of the home's
//! work from one server to the next. It must never change a table but by
//! what its stream holds, in order, under the same lock its own changes
//! take.

use std::sync::{Arc, Weak};

use retrace_journal::Tail;

use super::{Engine, Inner, upgrade};
use crate::breakers::BreakerEvent;
use crate::error::Error;
use crate::store::{ACCESS, BREAKERS, CATALOG, reserved};
use retrace_journal::EventRecord;

/// How long a follower whose tail failed waits before it reads on.
const AGAIN_MS: u64 = 1_000;

/// Which home stream a follower follows.
#[derive(Debug, Clone, Copy)]
enum Followed {
    Catalog,
    Tokens,
    Breakers,
}

impl Engine {
    /// Follows the catalog and the tokens as the home writes them (on a
    /// shared journal only: elsewhere this engine is their only writer).
    pub(super) fn follow_home(&self) {
        if self.inner.owned.share.is_none() {
            return;
        }
        for followed in [Followed::Catalog, Followed::Tokens, Followed::Breakers] {
            let weak = Arc::downgrade(&self.inner);
            self.inner.tasks.spawn(follow(weak, followed));
        }
    }

    /// Takes in what the catalog stream holds past what this engine read;
    /// the caller holds `defining`.
    pub(super) async fn catalog_caught_up(&self) -> Result<(), Error> {
        if self.inner.owned.share.is_none() {
            return Ok(());
        }
        let from = self.read_catalog()?.seq() + 1;
        let records = self.inner.store.journal().read(CATALOG, from, 256).await?;
        self.take_in(Followed::Catalog, &records)
    }

    /// Takes in what the access stream holds past what this engine read;
    /// the caller holds `changing_tokens`.
    pub(super) async fn tokens_caught_up(&self) -> Result<(), Error> {
        if self.inner.owned.share.is_none() {
            return Ok(());
        }
        let from = self.seq_of(Followed::Tokens)? + 1;
        let records = self.inner.store.journal().read(ACCESS, from, 256).await?;
        self.take_in(Followed::Tokens, &records)
    }

    /// Reads the tables of the home streams again, each under the lock
    /// its changes take, and starts the work that records into them.
    pub(super) async fn take_up_home(&self) -> Result<(), Error> {
        let journal = self.inner.store.journal();
        {
            let _exclusive = self.inner.changing_schedules.lock().await;
            let schedules = reserved::load::<crate::schedules::Schedules>(journal).await?;
            *self.inner.schedules.write().map_err(|_| Error::Poisoned)? = schedules;
        }
        {
            let _exclusive = self.inner.changing_breakers.lock().await;
            let breakers = crate::store::breakers::load(journal).await?;
            *self.inner.breakers.lock().map_err(|_| Error::Poisoned)? = breakers;
        }
        {
            let _exclusive = self.inner.changing_limits.lock().await;
            let limits = reserved::load::<crate::limits::LimitsTable>(journal).await?;
            *self
                .inner
                .limits_table
                .lock()
                .map_err(|_| Error::Poisoned)? = limits;
        }
        self.load_capability_limits();
        {
            let _exclusive = self.inner.changing_webhooks.lock().await;
            let webhooks = reserved::load::<crate::webhooks::Webhooks>(journal).await?;
            *self.inner.webhooks.lock().map_err(|_| Error::Poisoned)? = webhooks;
        }
        self.run_webhooks();
        self.inner.schedules_changed.notify_one();
        self.inner.capability_rooms.notify_one();
        Ok(())
    }

    fn seq_of(&self, followed: Followed) -> Result<u64, Error> {
        Ok(match followed {
            Followed::Catalog => self.read_catalog()?.seq(),
            Followed::Tokens => self.inner.tokens.read().map_err(|_| Error::Poisoned)?.seq(),
            Followed::Breakers => self.lock_breakers()?.seq,
        })
    }

    fn take_in(&self, followed: Followed, records: &[EventRecord]) -> Result<(), Error> {
        match followed {
            Followed::Catalog => self.write_catalog()?.take_in(records),
            Followed::Tokens => self
                .inner
                .tokens
                .write()
                .map_err(|_| Error::Poisoned)?
                .take_in(records),
            Followed::Breakers => {
                let mut table = self.lock_breakers()?;
                for record in records {
                    if record.seq <= table.seq {
                        continue;
                    }
                    match reserved::decode::<BreakerEvent>(record)? {
                        Some(event) => table.apply(record.seq, record.recorded_at_ms, &event),
                        None => table.seq = record.seq,
                    }
                }
                Ok(())
            }
        }
    }
}

/// Follows one home stream for as long as the engine lives.
async fn follow(weak: Weak<Inner>, followed: Followed) {
    loop {
        let Some(engine) = upgrade(&weak) else { return };
        let (stream, from) = match followed {
            Followed::Catalog => (CATALOG, engine.seq_of(followed)),
            Followed::Tokens => (ACCESS, engine.seq_of(followed)),
            Followed::Breakers => (BREAKERS, engine.seq_of(followed)),
        };
        let Ok(from) = from else { return };
        let mut tail = engine.inner.store.journal().subscribe(Tail::Stream {
            stream,
            from_seq: from + 1,
        });
        let clock = engine.inner.clock.clone();
        drop(engine);
        while let Some(record) = tail.next().await {
            let Some(engine) = upgrade(&weak) else { return };
            let taken = match record {
                Ok(record) => {
                    // Under the lock this engine's own changes take, so a
                    // change and what it read are one step.
                    let _exclusive = match followed {
                        Followed::Catalog => engine.inner.defining.lock().await,
                        Followed::Tokens => engine.inner.changing_tokens.lock().await,
                        Followed::Breakers => engine.inner.changing_breakers.lock().await,
                    };
                    engine.take_in(followed, &[record])
                }
                Err(e) => Err(e.into()),
            };
            if let Err(e) = taken {
                tracing::warn!(stream = ?followed, error = %e,
                    "cannot follow what the home server records; reading on in a moment");
                break;
            }
        }
        clock.sleep_until(clock.now_ms() + AGAIN_MS).await;
    }
}
