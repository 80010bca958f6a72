//! Opening a journal on a NATS server that already has a stream of its
//! name: one retrace did not make, or made with another placement of
//! streams in partitions, is refused with a reason, and left as it is. And
//! on a server that asks for credentials: opened with the right ones only.

use async_nats::jetstream::{self, stream};
use retrace_journal_nats::server::NatsServer;
use std::time::Duration;

use retrace_journal::{Journal, NewEvent, StreamId};
use retrace_journal_nats::{NatsCredentials, NatsJournal, NatsOptions};

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

/// A NATS server with an `authorization` block: a journal without
/// credentials, or with wrong ones, is refused (NATS says why), and with
/// the right ones opens, appends and reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_asking_for_credentials_opens_only_with_the_right_ones() {
    let user = |password: &str| NatsCredentials::UserPassword {
        user: "retrace".into(),
        password: password.into(),
    };
    let token = |token: &str| NatsCredentials::Token(token.into());
    for (block, right, wrong) in [
        (
            "authorization { user: \"retrace\", password: \"s3cret\" }",
            user("s3cret"),
            user("guess"),
        ),
        (
            "authorization { token: \"t0ken\" }",
            token("t0ken"),
            token("guess"),
        ),
    ] {
        let server = NatsServer::start_with(block);
        let open = |credentials: Option<NatsCredentials>| {
            NatsJournal::open(NatsOptions {
                credentials,
                open_wait: Duration::from_secs(5),
                ..NatsOptions::new(server.url())
            })
        };
        for refused in [None, Some(wrong)] {
            let why = match open(refused.clone()).await {
                Ok(_) => panic!("opened with {refused:?} on a server asking for credentials"),
                Err(e) => e.to_string(),
            };
            assert!(
                why.to_lowercase().contains("authoriz"),
                "{refused:?}: {why}"
            );
        }
        let journal = open(Some(right.clone()))
            .await
            .expect("the right credentials");
        let stream = StreamId::from_bytes([3; 16]);
        journal
            .append(stream, 1, vec![NewEvent::new("k", 1, vec![])])
            .await
            .expect("appends");
        assert_eq!(journal.read(stream, 1, 10).await.expect("reads").len(), 1);
        assert!(
            !format!("{right:?}").contains("s3cret") && !format!("{right:?}").contains("t0ken")
        );
    }
}
