//! Opening a journal on a NATS server that already has a stream of its
//! name: one retrace did not make, or made with another placement of
//! streams in partitions, is refused with a reason, and left as it is.

use async_nats::jetstream::{self, stream};
use retrace_journal_nats::server::NatsServer;
use retrace_journal_nats::{NatsJournal, NatsOptions};

async fn make_stream(server: &NatsServer, metadata: &[(&str, &str)]) {
    let client = async_nats::connect(server.url()).await.expect("connects");
    let js = jetstream::new(client);
    js.create_stream(stream::Config {
        name: "RETRACE_EVENTS".into(),
        subjects: vec!["retrace.ev.>".into(), "retrace.fence.>".into()],
        metadata: metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Default::default()
    })
    .await
    .expect("the stream is made");
}

async fn refusal(server: &NatsServer) -> String {
    match NatsJournal::open(NatsOptions::new(server.url())).await {
        Ok(_) => panic!("the journal opened"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_retrace_did_not_make_is_refused() {
    let server = NatsServer::start();
    make_stream(&server, &[]).await;
    let why = refusal(&server).await;
    assert!(why.contains("not made by retrace"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_an_earlier_layout_is_refused() {
    let server = NatsServer::start();
    make_stream(&server, &[("retrace.partitions", "64")]).await;
    let why = refusal(&server).await;
    assert!(why.contains("layout 1"), "{why}");
    assert!(why.contains("--nats-prefix"), "{why}");
}
