//! `NatsJournal`: opening the journal on a NATS server or cluster (creating
//! its stream and bucket the first time), and the [`Journal`]
//! implementation over the other modules.
//!
//! Owns the connection and the handles every part shares. It must never
//! publish an event itself (only the writer does) nor keep anything that
//! is not also on the server, except caches that the server corrects.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use futures::future::{self, BoxFuture};
use futures::{FutureExt, StreamExt, TryStreamExt};
use retrace_journal::{
    Appended, Delivery, Error, EventRecord, Health, Journal, NewEvent, Result, Snapshot,
    StreamHead, StreamId, Subscription, Tail,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::direct::remote;
use crate::heads::{Head, Heads};
use crate::inbox;
use crate::lease::{self, Holder, Leases, Ownership};
use crate::live::{self, Live};
use crate::names::{LAYOUT, LAYOUT_KEY, Names, PARTITIONS_DEFAULT, PARTITIONS_KEY};
use crate::patience::patiently;
use crate::reader::{Reader, other};
use crate::share;
use crate::tail;
use crate::writer::{Request, Writer};

/// Where the journal is and how it is laid out.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// NATS server addresses, e.g. `nats://127.0.0.1:4222`; the client
    /// connects to one and learns the rest of the cluster from it.
    pub servers: Vec<String>,
    /// Subject prefix; the stream and bucket names derive from it
    /// (`retrace` → `RETRACE_EVENTS`, `RETRACE_SNAPSHOTS`).
    pub prefix: String,
    /// Replicas of the stream and bucket when this creates them (1 for one
    /// server, 3 for a cluster of three).
    pub replicas: usize,
    /// Partitions when this creates the stream (afterwards the stream's own
    /// count holds).
    pub partitions: u32,
    /// How long opening waits for the server to answer (a cluster elects
    /// its JetStream leader first).
    pub open_wait: Duration,
    /// Take every partition's lease and fence appends with it (what a
    /// server that appends does), or `None`: no leases (tests of the
    /// journal alone, readers).
    pub ownership: Option<Ownership>,
    /// Who this server is to NATS when NATS asks (an `authorization`
    /// block in its configuration); `None`: no credentials.
    pub credentials: Option<NatsCredentials>,
    /// Speak TLS to NATS, trusting only this CA's certificates (PEM):
    /// `None`, plain unless NATS requires TLS (then the system's roots).
    pub tls_ca: Option<std::path::PathBuf>,
}

/// Credentials for NATS's own authorization. Shown (`Debug`) without the
/// secret.
#[derive(Clone, PartialEq, Eq)]
pub enum NatsCredentials {
    UserPassword { user: String, password: String },
    Token(String),
}

impl std::fmt::Debug for NatsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsCredentials::UserPassword { user, .. } => f
                .debug_struct("UserPassword")
                .field("user", user)
                .finish_non_exhaustive(),
            NatsCredentials::Token(_) => f.write_str("Token(..)"),
        }
    }
}

impl NatsOptions {
    /// One server at `url`, default names, one replica.
    pub fn new(url: impl Into<String>) -> NatsOptions {
        NatsOptions {
            servers: vec![url.into()],
            prefix: "retrace".into(),
            replicas: 1,
            partitions: PARTITIONS_DEFAULT,
            open_wait: Duration::from_secs(30),
            ownership: None,
            credentials: None,
            tls_ca: None,
        }
    }
}

/// The journal on a JetStream stream. Clones share one connection and one
/// append pipeline; the journal closes (its subscriptions end) when the
/// last clone is dropped.
#[derive(Debug, Clone)]
pub struct NatsJournal {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    reader: Reader,
    requests: mpsc::UnboundedSender<Request>,
    snapshots: kv::Store,
    /// The live feed every tail follows; it closes with the journal.
    feed: broadcast::Sender<Live>,
    feed_task: JoinHandle<()>,
    /// The partitions held, when this journal appends under leases.
    leases: Option<Leases>,
    /// When the connection was first seen down (0: it is up).
    down_since_ms: AtomicU64,
    /// Sharing: the messages between servers (see `inbox`).
    inbox: Option<Inbox>,
}

/// What sends to and receives from the inbox.
#[derive(Debug)]
struct Inbox {
    js: jetstream::Context,
    stream: stream::Stream,
    /// The task consuming this server's partitions' inboxes, once the
    /// inbox was handed out.
    receiving: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// Closing the journal closes its feed, which ends its tails (each after
/// what was stored by then).
impl Drop for Inner {
    fn drop(&mut self) {
        self.feed_task.abort();
        if let Some(inbox) = &self.inbox
            && let Some(task) = inbox
                .receiving
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
        {
            task.abort();
        }
    }
}

impl NatsJournal {
    /// Connects and opens the journal, creating its stream and bucket if
    /// they do not exist yet.
    pub async fn open(options: NatsOptions) -> Result<NatsJournal> {
        let servers = options.servers.join(",");
        // Reconnects and slow-consumer warnings reach the live feed, which
        // then has its tails read what they may have missed.
        let (events, events_rx) = mpsc::unbounded_channel();
        let connect = match options.credentials.clone() {
            Some(NatsCredentials::UserPassword { user, password }) => {
                async_nats::ConnectOptions::with_user_and_password(user, password)
            }
            Some(NatsCredentials::Token(token)) => async_nats::ConnectOptions::with_token(token),
            None => async_nats::ConnectOptions::new(),
        };
        let connect = match options.tls_ca.clone() {
            Some(ca) => connect.add_root_certificates(ca).require_tls(true),
            None => connect,
        };
        let client = connect
            .name("retrace")
            .connection_timeout(options.open_wait)
            .event_callback(move |event| {
                let _ = events.send(event);
                async {}
            })
            .connect(options.servers.as_slice())
            .await
            .map_err(|e| match e.kind() {
                async_nats::ConnectErrorKind::AuthorizationViolation => Error::Storage(
                    retrace_journal::StorageError::Other(format!(
                    "NATS at {servers} refused this server's credentials ({}): give it the user \
                     and password, or the token, its authorization block names",
                    if options.credentials.is_some() {
                        "not the ones it knows"
                    } else {
                        "none were given"
                    }
                ))),
                _ => remote(format!("cannot connect to NATS at {servers}"), e),
            })?;
        let js = jetstream::new(client.clone());
        let wanted = Names::new(&options.prefix, options.partitions);
        let deadline = tokio::time::Instant::now() + options.open_wait;
        let eager = jetstream::ContextBuilder::new()
            .timeout(Duration::from_millis(500))
            .build(client.clone());
        // A cluster answers only once it has elected its JetStream leader.
        let stream = loop {
            let config = stream::Config {
                name: wanted.events.clone(),
                subjects: subjects(&wanted),
                allow_direct: true,
                storage: stream::StorageType::File,
                num_replicas: options.replicas,
                metadata: HashMap::from([
                    (PARTITIONS_KEY.to_owned(), options.partitions.to_string()),
                    (LAYOUT_KEY.to_owned(), LAYOUT.to_owned()),
                ]),
                republish: Some(republish(&wanted)),
                ..Default::default()
            };
            // Asked with a short timeout: a cluster without a JetStream
            // leader yet does not answer at all.
            match eager.get_or_create_stream(config).await {
                Ok(stream) => break stream,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "NATS JetStream not ready yet");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    return Err(remote(
                        format!("cannot open stream {} on NATS at {servers}", wanted.events),
                        e,
                    ));
                }
            }
        };
        let partitions = stream
            .cached_info()
            .config
            .metadata
            .get(PARTITIONS_KEY)
            .and_then(|p| p.parse::<u32>().ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                other(
                    &format!("stream {} on NATS", wanted.events),
                    format!("its metadata has no {PARTITIONS_KEY}: it was not made by retrace"),
                )
            })?;
        let layout = stream.cached_info().config.metadata.get(LAYOUT_KEY);
        if layout.map(String::as_str) != Some(LAYOUT) {
            return Err(other(
                &format!("stream {} on NATS", wanted.events),
                format!(
                    "it places streams in partitions by layout {}, and this build reads layout \
                     {LAYOUT} only (an earlier build made it): use a new --nats-prefix",
                    layout.map_or("1", String::as_str)
                ),
            ));
        }
        let names = Names::new(&options.prefix, partitions);
        let config = &stream.cached_info().config;
        if config.republish.as_ref() != Some(&republish(&names))
            || config.subjects != subjects(&names)
        {
            let mut config = config.clone();
            config.republish = Some(republish(&names));
            config.subjects = subjects(&names);
            patiently(deadline, || async {
                js.update_stream(config.clone())
                    .await
                    .map_err(|e| remote(format!("cannot update stream {}", names.events), e))
            })
            .await?;
        }
        let (feed, feed_task) = live::start(&client, &names, events_rx).await?;
        let snapshots = patiently(deadline, || async {
            match js.get_key_value(names.snapshots.clone()).await {
                Ok(store) => Ok(store),
                Err(_) => js
                    .create_key_value(kv::Config {
                        bucket: names.snapshots.clone(),
                        history: 1,
                        storage: stream::StorageType::File,
                        num_replicas: options.replicas,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| remote(format!("cannot open bucket {}", names.snapshots), e)),
            }
        })
        .await?;
        // Opened before any lease is taken: nothing is held if it fails.
        let inbox_stream = match &options.ownership {
            Some(ownership) if ownership.share => {
                Some(patiently(deadline, || inbox::open(&js, &names, options.replicas)).await?)
            }
            _ => None,
        };
        // Listed after the leases are taken: with its partitions fenced, no
        // other server creates a stream in them, so a stream not listed
        // here (nor appended to by this server since) has no events.
        // Sharing, each partition taken is listed again as it is taken.
        let heads = Arc::new(Heads::default());
        let leases = match &options.ownership {
            Some(ownership) if ownership.share => {
                patiently(deadline, || {
                    list_streams(&stream, &names, &heads, names.all_events())
                })
                .await?;
                let gained = gained(&stream, &names, &heads);
                let shared =
                    share::share(&js, &stream, &names, options.replicas, ownership, gained);
                Some(shared.await?)
            }
            Some(ownership) => {
                let leases =
                    lease::take_all(&js, &stream, &names, options.replicas, ownership).await?;
                list_streams(&stream, &names, &heads, names.all_events()).await?;
                Some(leases)
            }
            None => {
                list_streams(&stream, &names, &heads, names.all_events()).await?;
                None
            }
        };
        // As the stream was made (by whichever server made it).
        let replicated = stream.cached_info().config.num_replicas > 1;
        let reader = Reader {
            client: client.clone(),
            stream,
            names,
            heads: heads.clone(),
            replicated,
            shared: leases
                .as_ref()
                .filter(|_| options.ownership.as_ref().is_some_and(|o| o.share))
                .map(|l| l.fences.clone()),
        };
        let inbox = inbox_stream.map(|stream| Inbox {
            stream,
            js: js.clone(),
            receiving: std::sync::Mutex::new(None),
        });
        let (requests, queue) = mpsc::unbounded_channel();
        let writer = Writer {
            js,
            reader: reader.clone(),
            heads,
            max_payload: client.server_info().max_payload,
            fences: leases.as_ref().map(|l| l.fences.clone()),
            replicated: reader.stream.cached_info().config.num_replicas > 1,
        };
        tokio::spawn(writer.run(queue));
        Ok(NatsJournal {
            inner: Arc::new(Inner {
                reader,
                requests,
                snapshots,
                feed,
                feed_task,
                leases,
                down_since_ms: AtomicU64::new(0),
                inbox,
            }),
        })
    }
}

/// Adds the streams with a subject matching `subjects` to the known ids.
async fn list_streams(
    stream: &stream::Stream,
    names: &Names,
    heads: &Heads,
    subjects: String,
) -> Result<()> {
    let mut listed = stream
        .info_with_subjects(subjects)
        .await
        .map_err(|e| remote("cannot list the journal's streams on NATS", e))?;
    while let Some((subject, _)) = listed
        .try_next()
        .await
        .map_err(|e| remote("cannot list the journal's streams on NATS", e))?
    {
        if let Some(id) = names.stream_of(&subject) {
            heads.add_id(id);
        }
    }
    Ok(())
}

/// What a sharing server does with a partition it took, before appending
/// to it: what it knew of its streams is forgotten (their holder until now
/// appended to them) and its streams are listed again.
fn gained(stream: &stream::Stream, names: &Names, heads: &Arc<Heads>) -> share::Gained {
    let (stream, names, heads) = (stream.clone(), names.clone(), heads.clone());
    Arc::new(move |partition| {
        let (stream, names, heads) = (stream.clone(), names.clone(), heads.clone());
        async move {
            heads.forget_where(|id| names.partition(id) == partition);
            list_streams(&stream, &names, &heads, names.partition_events(partition)).await
        }
        .boxed()
    })
}

/// The heads of `ids`, read from NATS (32 at a time), in their order; a
/// stream with none (not written yet) left out.
async fn heads_of(reader: &Reader, ids: Vec<StreamId>) -> Result<Vec<StreamHead>> {
    let heads = futures::stream::iter(ids)
        .map(|id| async move { (id, reader.head(id).await) })
        .buffered(32)
        .collect::<Vec<_>>()
        .await;
    let mut out = Vec::with_capacity(heads.len());
    for (id, head) in heads {
        if let Some(head) = head? {
            out.push(stream_head(id, head));
        }
    }
    Ok(out)
}

/// The stream's subjects: events, and the partitions' fences.
fn subjects(names: &Names) -> Vec<String> {
    vec![names.all_events(), names.all_fences()]
}

/// The stream republishes what it stores to the live feed's subject.
fn republish(names: &Names) -> stream::Republish {
    stream::Republish {
        source: names.all_events(),
        destination: names.stored_events(),
        headers_only: false,
    }
}

fn stream_head(id: StreamId, head: Head) -> StreamHead {
    StreamHead {
        stream: id,
        last_seq: head.last_seq,
        last_position: head.last_position,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl NatsJournal {
    /// Gives up every partition at once (a graceful stop), so that another
    /// server takes them without waiting for the leases to end. Appends
    /// are refused afterwards.
    pub async fn release(&self) {
        if let Some(leases) = &self.inner.leases {
            leases.release().await;
        }
    }

    /// The partitions this journal holds (appends to others are refused),
    /// now and as they change; empty without leases.
    pub fn partitions(&self) -> watch::Receiver<BTreeSet<u32>> {
        match &self.inner.leases {
            Some(leases) => leases.fences.partitions(),
            None => watch::Sender::new(BTreeSet::new()).subscribe(),
        }
    }

    /// Sharing: which server holds each partition (its name and URL), as
    /// the leases say, now and as it changes; empty otherwise. Let a borrow
    /// of it go at once.
    pub fn holders(&self) -> watch::Receiver<BTreeMap<u32, Holder>> {
        match self.inner.leases.as_ref().and_then(Leases::holders) {
            Some(holders) => holders,
            None => watch::Sender::new(BTreeMap::new()).subscribe(),
        }
    }

    /// The partition `stream` is in.
    pub fn partition_of(&self, stream: StreamId) -> u32 {
        self.inner.reader.names.partition(stream)
    }

    /// Completes once this server lost its partitions (another server
    /// took one, and this one then gave the rest up); why. Never, without
    /// leases.
    pub async fn lost(&self) -> String {
        match &self.inner.leases {
            Some(leases) => leases.fences.until_lost().await,
            None => std::future::pending().await,
        }
    }
}

impl Journal for NatsJournal {
    fn append(
        &self,
        stream: StreamId,
        expected_seq: u64,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'static, Result<Appended>> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            stream,
            expected_seq,
            events,
            reply,
        };
        if self.inner.requests.send(request).is_err() {
            return future::ready(Err(Error::Closed)).boxed();
        }
        async move { answer.await.unwrap_or(Err(Error::Closed)) }.boxed()
    }

    fn read(
        &self,
        stream: StreamId,
        from_seq: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<EventRecord>>> {
        self.inner.reader.read(stream, from_seq, limit).boxed()
    }

    fn read_global(
        &self,
        from_position: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<EventRecord>>> {
        self.inner.reader.read_global(from_position, limit).boxed()
    }

    fn head(&self, stream: StreamId) -> BoxFuture<'_, Result<Option<StreamHead>>> {
        async move {
            Ok(self
                .inner
                .reader
                .head(stream)
                .await?
                .map(|h| stream_head(stream, h)))
        }
        .boxed()
    }

    fn streams(
        &self,
        after: Option<StreamId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<StreamHead>>> {
        async move {
            let reader = &self.inner.reader;
            let ids = reader.heads.ids_after_where(after, limit, |_| true);
            heads_of(reader, ids).await
        }
        .boxed()
    }

    /// The ids of `partitions`' streams picked before any head is read:
    /// a server taking partitions reads only their heads.
    fn streams_in<'a>(
        &'a self,
        partitions: &'a BTreeSet<u32>,
        after: Option<StreamId>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<StreamHead>>> {
        async move {
            let reader = &self.inner.reader;
            let count = reader.names.partitions;
            // Not shared: one server drives every stream.
            let shared = reader.shared.is_some();
            let ids = reader.heads.ids_after_where(after, limit, |id| {
                !shared || partitions.contains(&retrace_journal::partition_of(id, count))
            });
            heads_of(reader, ids).await
        }
        .boxed()
    }

    fn last_position(&self) -> BoxFuture<'_, Result<u64>> {
        self.inner.reader.last_position().boxed()
    }

    fn subscribe(&self, from: Tail) -> Subscription {
        tail::subscribe(self.inner.reader.clone(), from, self.inner.feed.subscribe())
    }

    fn put_snapshot(
        &self,
        stream: StreamId,
        seq: u64,
        state: Vec<u8>,
    ) -> BoxFuture<'static, Result<()>> {
        let reader = self.inner.reader.clone();
        let snapshots = self.inner.snapshots.clone();
        // The message holding `seq`, when it is the stream's last (as right
        // after the append it follows): a read after the snapshot starts
        // there. 0 when not known.
        let message = reader
            .heads
            .get(stream)
            .filter(|h| h.last_seq == seq)
            .map_or(0, |h| h.last_message());
        let put = async move {
            let last_seq = reader.head(stream).await?.map_or(0, |h| h.last_seq);
            if seq == 0 || seq > last_seq {
                return Err(Error::InvalidAppend(format!(
                    "a snapshot of stream {stream} at seq {seq}, which has {last_seq} events"
                )));
            }
            let mut value = Vec::with_capacity(16 + state.len());
            value.extend_from_slice(&seq.to_le_bytes());
            value.extend_from_slice(&message.to_le_bytes());
            value.extend_from_slice(&state);
            snapshots
                .put(reader.names.snapshot_key(stream), Bytes::from(value))
                .await
                .map_err(|e| remote("cannot store a snapshot on NATS", e))?;
            Ok(())
        };
        // The request is made now, whether or not the caller awaits it.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let task = runtime.spawn(put);
                async move {
                    task.await
                        .unwrap_or_else(|e| Err(other("storing a snapshot", e)))
                }
                .boxed()
            }
            Err(_) => put.boxed(),
        }
    }

    fn latest_snapshot(&self, stream: StreamId) -> BoxFuture<'_, Result<Option<Snapshot>>> {
        async move {
            let key = self.inner.reader.names.snapshot_key(stream);
            let Some(value) = self
                .inner
                .snapshots
                .get(key)
                .await
                .map_err(|e| remote("cannot read a snapshot from NATS", e))?
            else {
                return Ok(None);
            };
            let word = |at: usize| -> Result<u64> {
                value
                    .get(at..at + 8)
                    .and_then(|s| s.try_into().ok())
                    .map(u64::from_le_bytes)
                    .ok_or_else(|| {
                        Error::CorruptIndex(format!("the snapshot of {stream} is truncated"))
                    })
            };
            let (seq, message) = (word(0)?, word(8)?);
            if message > 0 {
                self.inner.reader.heads.mark(stream, seq, message);
            }
            Ok(Some(Snapshot {
                stream,
                seq,
                state: value[16..].to_vec(),
            }))
        }
        .boxed()
    }

    /// An acknowledged append is already as durable as the stream is
    /// configured to make it: nothing to wait for.
    fn flush(&self) -> BoxFuture<'static, Result<()>> {
        future::ready(Ok(())).boxed()
    }

    /// Sharing the partitions with other servers: their count and those
    /// this server holds. Holding all of them or none (one server serves),
    /// no share: the engine on it treats every stream as its own.
    fn share(&self) -> Option<retrace_journal::Share> {
        self.inner.reader.shared.as_ref()?;
        Some(retrace_journal::Share {
            partitions: self.inner.reader.names.partitions,
            held: self.partitions(),
        })
    }

    fn send(&self, to: StreamId, message: Vec<u8>) -> BoxFuture<'static, Result<()>> {
        match &self.inner.inbox {
            Some(inbox) => inbox::send(&inbox.js, &self.inner.reader.names, to, message),
            None => future::ready(Err(Error::Storage(
                "this journal is not shared: it has no inbox".into(),
            )))
            .boxed(),
        }
    }

    fn inbox(&self) -> Option<mpsc::Receiver<Delivery>> {
        let inbox = self.inner.inbox.as_ref()?;
        let mut receiving = inbox.receiving.lock().unwrap_or_else(|p| p.into_inner());
        if receiving.is_some() {
            return None;
        }
        let (deliveries, received) = mpsc::channel(64);
        *receiving = Some(inbox::receive(
            inbox.stream.clone(),
            self.inner.reader.names.clone(),
            self.partitions(),
            deliveries,
        ));
        Some(received)
    }

    fn health(&self) -> Health {
        use async_nats::connection::State;
        let state = self.inner.reader.client.connection_state();
        let lost = self.inner.leases.as_ref().and_then(|l| l.fences.lost());
        if state == State::Connected && lost.is_none() {
            self.inner.down_since_ms.store(0, Ordering::Relaxed);
            return Health::Writable;
        }
        let since = match self.inner.down_since_ms.compare_exchange(
            0,
            now_ms(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => self.inner.down_since_ms.load(Ordering::Relaxed),
            Err(earlier) => earlier,
        };
        Health::Unavailable {
            since_ms: since,
            reason: lost.unwrap_or_else(|| format!("the connection to NATS is {state:?}")),
        }
    }
}
