//! The journal conformance kit, run against a real `nats-server` (one per
//! case, JetStream in a temporary folder, stopped when the case ends).
//! Reopening the journal reconnects to the same server: a restart of
//! retrace, with the data kept by NATS. It runs twice: without leases, and
//! as a server runs it, holding every partition's lease with its appends
//! fenced (the server then checks the fence, not each stream's last
//! message, so the writer's own head checks carry the promises).

use std::sync::Arc;
use std::time::Duration;

use retrace_journal::Journal;
use retrace_journal::testkit::{BoxFuture, Harness};
use retrace_journal_nats::server::NatsServer;
use retrace_journal_nats::{NatsJournal, NatsOptions, Ownership};

struct OnNats {
    server: NatsServer,
    ownership: Option<Ownership>,
}

impl Harness for OnNats {
    fn open(&self) -> BoxFuture<'_, Arc<dyn Journal>> {
        Box::pin(async move {
            let options = NatsOptions {
                ownership: self.ownership.clone(),
                ..NatsOptions::new(self.server.url())
            };
            let journal = NatsJournal::open(options)
                .await
                .unwrap_or_else(|e| panic!("open the journal on NATS: {e}\n{}", self.server.log()));
            Arc::new(journal) as Arc<dyn Journal>
        })
    }
}

mod unfenced {
    use super::*;
    retrace_journal::journal_conformance!(OnNats {
        server: NatsServer::start(),
        ownership: None,
    });
}

mod fenced {
    use super::*;
    // A journal reopened finds the last one's leases until they end: short
    // ones keep the cases quick.
    retrace_journal::journal_conformance!(OnNats {
        server: NatsServer::start(),
        ownership: Some(Ownership {
            ttl: Duration::from_millis(600),
            wait: Duration::from_secs(10),
            ..Ownership::new("conformance")
        }),
    });
}
