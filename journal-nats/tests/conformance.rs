//! The journal conformance kit, run against a real `nats-server` (one per
//! case, JetStream in a temporary folder, stopped when the case ends).
//! Reopening the journal reconnects to the same server: a restart of
//! retrace, with the data kept by NATS.

use std::sync::Arc;

use retrace_journal::Journal;
use retrace_journal::testkit::{BoxFuture, Harness};
use retrace_journal_nats::server::NatsServer;
use retrace_journal_nats::{NatsJournal, NatsOptions};

struct OnNats {
    server: NatsServer,
}

impl Harness for OnNats {
    fn open(&self) -> BoxFuture<'_, Arc<dyn Journal>> {
        Box::pin(async move {
            let journal = NatsJournal::open(NatsOptions::new(self.server.url()))
                .await
                .unwrap_or_else(|e| panic!("open the journal on NATS: {e}\n{}", self.server.log()));
            Arc::new(journal) as Arc<dyn Journal>
        })
    }
}

retrace_journal::journal_conformance!(OnNats {
    server: NatsServer::start()
});
