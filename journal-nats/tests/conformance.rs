//! The journal conformance kit, run against a real `nats-server` (one per
//! case, JetStream in a temporary folder, stopped when the case ends).
//! Reopening the journal reconnects to the same server: a restart of
//! retrace, with the data kept by NATS. It runs twice: without leases, and
//! as a server runs it, holding every partition's lease with its appends
//! fenced (the server then checks the fence, not each stream's last
//! message, so the writer's own head checks carry the promises); and on a
//! cluster of three servers with everything replicated three times.

use std::sync::Arc;
use std::time::Duration;

use retrace_journal::Journal;
use retrace_journal::testkit::{BoxFuture, Harness};
use retrace_journal_nats::server::{NatsCluster, NatsServer};
use retrace_journal_nats::{NatsJournal, NatsOptions, Ownership};

/// One server, or a cluster of three with the journal replicated on all.
enum Nats {
    One(NatsServer),
    Three(NatsCluster),
}

struct OnNats {
    server: Nats,
    ownership: Option<Ownership>,
}

impl Nats {
    fn log(&self) -> String {
        match self {
            Nats::One(server) => server.log(),
            Nats::Three(cluster) => cluster.logs(),
        }
    }
}

impl Harness for OnNats {
    fn open(&self) -> BoxFuture<'_, Arc<dyn Journal>> {
        Box::pin(async move {
            let (servers, replicas) = match &self.server {
                Nats::One(server) => (vec![server.url()], 1),
                Nats::Three(cluster) => (cluster.urls(), 3),
            };
            let options = NatsOptions {
                servers,
                replicas,
                ownership: self.ownership.clone(),
                // Fewer leases to take at each open keep the cases quick.
                partitions: 8,
                ..NatsOptions::new("")
            };
            let journal = NatsJournal::open(options)
                .await
                .unwrap_or_else(|e| panic!("open the journal on NATS: {e}\n{}", self.server.log()));
            Arc::new(journal) as Arc<dyn Journal>
        })
    }

    /// On a cluster an append the leader left undecided is sent again,
    /// after appends to other partitions called later.
    fn keeps_call_order_across_streams(&self) -> bool {
        matches!(self.server, Nats::One(_))
    }
}

mod unfenced {
    use super::*;
    retrace_journal::journal_conformance!(OnNats {
        server: Nats::One(NatsServer::start()),
        ownership: None,
    });
}

mod fenced {
    use super::*;
    // A journal reopened finds the last one's leases until they end: short
    // ones keep the cases quick.
    retrace_journal::journal_conformance!(OnNats {
        server: Nats::One(NatsServer::start()),
        ownership: Some(Ownership {
            ttl: Duration::from_millis(600),
            wait: Duration::from_secs(10),
            ..Ownership::new("conformance")
        }),
    });
}

/// On a cluster of three servers, the stream and buckets replicated on all
/// three (R=3), fenced as a server runs it.
mod replicated {
    use super::*;
    retrace_journal::journal_conformance!(OnNats {
        server: Nats::Three(NatsCluster::start(3)),
        ownership: Some(Ownership {
            ttl: Duration::from_millis(600),
            wait: Duration::from_secs(10),
            ..Ownership::new("conformance")
        }),
    });
}
