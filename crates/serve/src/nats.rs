//! NATS JetStream: where replicas keep what a single process keeps in its state folder. A
//! stream is a replicated, ordered log; every replica reads it from the start and so builds the
//! same state, and a write counts once JetStream acknowledges it (its PubAck: stored on the
//! stream's replicas).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_stream::StreamExt;

/// How to reach NATS.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsOptions {
    /// `nats://HOST:PORT` (several comma-separated for a cluster; `tls://` for TLS).
    pub url: String,
    /// A `.creds` file (user JWT and NKey seed).
    pub credentials: Option<PathBuf>,
    /// PEM root certificate(s) the server's certificate must chain to.
    pub ca: Option<PathBuf>,
    /// Copies JetStream keeps of each stream (1, or 3 on a three-node cluster).
    pub replicas: usize,
    /// How long the audit stream keeps a calibration's lines (zero: for good).
    pub audit_max_age: Duration,
    /// Snapshot the market state every this many stream messages (0: never), so that a
    /// starting replica need not apply the whole stream.
    pub market_snapshot_every: u64,
}

impl NatsOptions {
    /// Options for `url` with one replica and no credentials.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), credentials: None, ca: None, replicas: 1, audit_max_age: Duration::ZERO, market_snapshot_every: DEFAULT_SNAPSHOT_EVERY }
    }
}

/// How long JetStream drops a publish whose message id it has seen (its default, written out).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Stream messages between snapshots of the market state, unless configured.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 10_000;

/// The audit stream every replica appends to (see `Serving::connect`).
pub const AUDIT_STREAM: &str = "FORESIGHT_AUDIT";
/// Its subject.
pub const AUDIT_SUBJECT: &str = "foresight.audit";

/// One value every replica shares (e.g. the A/B split): the last message of its subject on a
/// small stream, written by one replica and followed by all. (A plain stream rather than
/// JetStream's key-value API, which Debian's nats-server 2.9 does not answer as this client
/// expects.)
#[derive(Clone)]
pub struct SharedValue {
    jetstream: jetstream::Context,
    stream: stream::Stream,
    subject: String,
    runtime: tokio::runtime::Handle,
    /// Stream sequence of the latest value this process has seen (0: none): a write is stored
    /// only if it is still the latest, so a stale writer cannot undo a newer value.
    seen: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// The stream of values replicas share, and how many past values of each it keeps.
const SHARED_STREAM: &str = "FORESIGHT_SHARED";
const SHARED_SUBJECT: &str = "foresight.shared";
const SHARED_HISTORY: i64 = 16;

impl SharedValue {
    /// The shared value `key` (its stream created if missing).
    pub async fn open(jetstream: &jetstream::Context, options: &NatsOptions, key: &str) -> Result<Self, NatsError> {
        let jetstream = jetstream.clone();
        let retention = Retention { per_subject: SHARED_HISTORY, ..Retention::forever(DUPLICATE_WINDOW) };
        let stream = self::stream(&jetstream, SHARED_STREAM, &format!("{SHARED_SUBJECT}.>"), options.replicas, retention).await?;
        Ok(Self { jetstream, stream, subject: format!("{SHARED_SUBJECT}.{key}"), runtime: tokio::runtime::Handle::current(), seen: Default::default() })
    }

    /// The value now, if one was ever written.
    pub async fn get<T: DeserializeOwned>(&self) -> Result<Option<T>, NatsError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        match self.stream.get_last_raw_message_by_subject(&self.subject).await {
            Ok(message) => {
                self.seen.fetch_max(message.sequence, Ordering::SeqCst);
                serde_json::from_slice(&message.payload).map(Some).map_err(|e| shared_error(&self.subject, e))
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(shared_error(&self.subject, e)),
        }
    }

    /// Writes `value` and returns once JetStream stored it, unless another writer stored a
    /// value this process has not seen yet (an error saying so). Only from a blocking thread
    /// (`spawn_blocking`): it blocks on the runtime, which panics inside an async task.
    pub fn put_blocking<T: Serialize>(&self, value: &T) -> Result<(), NatsError> {
        let bytes = serde_json::to_vec(value).map_err(|e| shared_error(&self.subject, e))?;
        // A unique id per write: a retry after a lost acknowledgement is not stored twice.
        let id = format!("{}:{}", self.subject, uuid_like());
        let expected = self.seen.load(Ordering::SeqCst);
        let ack = self.runtime.block_on(publish_acknowledged(&self.jetstream, SHARED_STREAM, &self.subject, &id, &bytes, Some(expected)))?;
        self.seen.fetch_max(ack.sequence, Ordering::SeqCst);
        Ok(())
    }

    /// Calls `apply` with the value now and every value written after it (by any replica),
    /// until reading fails (the caller starts again: the value now comes first again).
    pub async fn follow<T: DeserializeOwned>(&self, mut apply: impl FnMut(T)) -> Result<(), NatsError> {
        let mut reader = Reader::open(&self.stream, jetstream::consumer::DeliverPolicy::LastPerSubject, &self.subject).await?;
        while let Some(message) = reader.next().await {
            let message = message?;
            if let Ok(info) = message.info() {
                self.seen.fetch_max(info.stream_sequence, Ordering::SeqCst);
            }
            match serde_json::from_slice::<T>(&message.payload) {
                Ok(value) => apply(value),
                Err(e) => tracing::error!(subject = self.subject, "not a value of this kind, ignored: {e}"),
            }
        }
        Ok(())
    }
}

/// A replica's reading of a stream, in order and without gaps, through a consumer of its own
/// (deleted when the reader is dropped). The consumer has as many copies as the stream: not
/// the one copy of an ordered consumer, which can be placed on a node that crashed moments ago
/// (the cluster counts it online for a while; in the three-node test creating one then timed
/// out again and again), while one of three copies needs a quorum only.
pub struct Reader {
    stream: stream::Stream,
    consumer: String,
    messages: jetstream::consumer::pull::Stream,
    /// The consumer sequence of the last message delivered (0: none yet).
    delivered: u64,
}

/// How long JetStream keeps a reader's consumer that nobody pulls from (its replica went).
const READER_INACTIVE: Duration = Duration::from_secs(30);
/// The idle heartbeat a reader asks for: two missed, and the consumer counts as lost.
const READER_HEARTBEAT: Duration = Duration::from_secs(2);
/// How long each of a reader's pull requests waits for messages.
const READER_EXPIRES: Duration = Duration::from_secs(10);

impl Reader {
    /// Reads `stream` (`filter`: one subject, or all when empty) from `start`.
    pub async fn open(stream: &stream::Stream, start: jetstream::consumer::DeliverPolicy, filter: &str) -> Result<Self, NatsError> {
        let name = &stream.cached_info().config.name;
        let config = jetstream::consumer::pull::Config {
            deliver_policy: start,
            filter_subject: filter.to_string(),
            ack_policy: jetstream::consumer::AckPolicy::None,
            num_replicas: stream.cached_info().config.num_replicas,
            memory_storage: true,
            inactive_threshold: READER_INACTIVE,
            ..Default::default()
        };
        let consumer = stream.create_consumer(config).await.map_err(|e| shared_error(format!("a consumer of {name}"), e))?;
        let messages = consumer.stream().heartbeat(READER_HEARTBEAT).expires(READER_EXPIRES).messages().await.map_err(|e| shared_error(format!("reading {name}"), e))?;
        Ok(Self { stream: stream.clone(), consumer: consumer.cached_info().name.clone(), messages, delivered: 0 })
    }

    /// The next message. An error ends the reading: the consumer failed or went quiet (its node
    /// went), or a message went missing on the way (deliveries are not acknowledged, so one
    /// lost with a connection is not sent again): the caller reads anew from where it is.
    pub async fn next(&mut self) -> Option<Result<jetstream::Message, NatsError>> {
        let failed = |e: &dyn std::fmt::Display| shared_error(format!("reading {}", self.stream.cached_info().config.name), e);
        let message = match self.messages.next().await? {
            Ok(message) => message,
            Err(e) => return Some(Err(failed(&e))),
        };
        let delivered = match message.info() {
            Ok(info) => info.consumer_sequence,
            Err(e) => return Some(Err(failed(&e))),
        };
        if delivered != self.delivered + 1 {
            return Some(Err(failed(&format!("delivery {delivered} came after {}: one went missing", self.delivered))));
        }
        self.delivered = delivered;
        Some(Ok(message))
    }
}

impl Drop for Reader {
    /// Deletes the consumer now rather than after [`READER_INACTIVE`], so that readers started
    /// again and again (a node going, a loaded machine) do not pile up consumers.
    fn drop(&mut self) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (stream, consumer) = (self.stream.clone(), std::mem::take(&mut self.consumer));
            runtime.spawn(async move { stream.delete_consumer(&consumer).await });
        }
    }
}

/// A process-unique token (time, process and a counter) for message ids.
fn uuid_like() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{now:x}-{}-{}", std::process::id(), COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// Whether `text` names NATS (`nats://`, `tls://`, any case) rather than a folder; another
/// `scheme://` is an error, so that a mistyped URL never becomes a local folder.
pub fn is_nats_url(text: &str) -> Result<bool, String> {
    let text = text.trim().to_ascii_lowercase();
    match text.split_once("://") {
        Some(("nats" | "tls", _)) => Ok(true),
        Some((scheme, _)) => Err(format!("`{scheme}://` is not a NATS URL (nats://HOST:PORT or tls://HOST:PORT) nor a folder")),
        None => Ok(false),
    }
}

/// NATS could not be reached, written or read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("NATS {what}: {message}")]
pub struct NatsError {
    /// What was attempted.
    pub what: String,
    /// Why it failed.
    pub message: String,
}

/// `what` failed with `message`.
pub fn shared_error(what: impl ToString, message: impl std::fmt::Display) -> NatsError {
    NatsError { what: what.to_string(), message: message.to_string() }
}

/// Connects and returns the JetStream context, once connected. NATS not answering yet is
/// waited for; NATS refusing the connection (credentials, TLS set-up) is an error naming the
/// setting.
pub async fn connect(options: &NatsOptions) -> Result<jetstream::Context, NatsError> {
    // A replica may start before NATS accepts connections: it keeps trying (the client's own
    // reconnect logic, which logs every event) instead of exiting. Start-up watches the events
    // for a refusal that retrying cannot cure.
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let mut connect = async_nats::ConnectOptions::new()
        .name("foresight-serve")
        .connection_timeout(Duration::from_secs(5))
        .retry_on_initial_connect()
        .event_callback(move |event| {
            // Nobody listens once start-up is over.
            let _ = events_tx.send(event);
            std::future::ready(())
        });
    if let Some(path) = &options.credentials {
        connect = connect.credentials_file(path).await.map_err(|e| shared_error(format!("credentials {}", path.display()), e))?;
    }
    if let Some(path) = &options.ca {
        connect = connect.add_root_certificates(path.clone()).require_tls(true);
    }
    // A cluster is given as comma-separated URLs; the client fails over between them.
    let servers = options
        .url
        .split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| shared_error(format!("NATS URL `{}`", options.url), e))?;
    let client = connect.connect(servers).await.map_err(|e| shared_error(format!("connect to {}", options.url), e))?;
    // (Events may be dropped when they come faster than they are read: the state is looked at
    // again every moment too.)
    while client.connection_state() != async_nats::connection::State::Connected {
        let event = match tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(_) => continue,
        };
        if let Some(why) = refusal(&event) {
            return Err(shared_error(format!("connect to {}", options.url), why));
        }
    }
    Ok(jetstream::new(client))
}

/// Why start-up cannot go on, naming the settings to check (the service's `[nats]` keys and
/// `foresight audit export`'s flags), when `event` is a failure that retrying cannot cure.
fn refusal(event: &async_nats::Event) -> Option<String> {
    use async_nats::{ClientError, ConnectErrorKind, Event, ServerError};
    let kind = match event {
        Event::ServerError(ServerError::AuthorizationViolation) => ConnectErrorKind::AuthorizationViolation,
        // The connector reports a failed attempt by its kind's text.
        Event::ClientError(ClientError::Other(text)) => {
            [ConnectErrorKind::AuthorizationViolation, ConnectErrorKind::Authentication, ConnectErrorKind::Tls].into_iter().find(|kind| *text == kind.to_string())?
        }
        _ => return None,
    };
    Some(match kind {
        ConnectErrorKind::AuthorizationViolation => "NATS refused the connection: authorization violation (check [nats] credentials / --credentials and the account's permissions)".to_string(),
        ConnectErrorKind::Tls => "the TLS connection could not be set up (check [nats] ca / --ca and the URL's host)".to_string(),
        _ => format!("NATS's challenge could not be answered: {kind} (check the seed in [nats] credentials / --credentials)"),
    })
}

/// How long a publish is retried while JetStream does not acknowledge it.
pub const PUBLISH_RETRY: Duration = Duration::from_secs(15);

/// Publishes `payload` to `subject` (stored by `stream`) under message id `id` and returns
/// JetStream's acknowledgement, retrying under the same id until [`PUBLISH_RETRY`] has passed:
/// a cluster that lost a node elects new stream leaders within seconds, and the id makes a
/// retry of a message that was stored after all a duplicate. An acknowledgement without a
/// stream sequence (a duplicate whose original is not yet agreed on, as some servers answer)
/// is not an answer: the publish is retried until it has one.
///
/// With `expected_last`, the write is conditional: JetStream stores it only if the subject's
/// last message still has that stream sequence (0: none yet), and a newer one is an error at
/// once, not retried.
pub async fn publish_acknowledged(
    jetstream: &jetstream::Context,
    stream: &str,
    subject: &str,
    id: &str,
    payload: &[u8],
    expected_last: Option<u64>,
) -> Result<jetstream::publish::PublishAck, NatsError> {
    use async_nats::jetstream::context::PublishErrorKind;
    let deadline = tokio::time::Instant::now() + PUBLISH_RETRY;
    loop {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        if let Some(sequence) = expected_last {
            headers.insert("Nats-Expected-Last-Subject-Sequence", sequence.to_string().as_str());
        }
        let attempt = async { jetstream.publish_with_headers(subject.to_string(), headers, payload.to_vec().into()).await?.await };
        let problem = match attempt.await {
            Ok(ack) if ack.sequence > 0 && ack.stream == stream => return Ok(ack),
            Ok(ack) if ack.stream != stream => {
                return Err(shared_error(format!("publish of {id} to {subject}"), format!("stored by stream {}, not {stream}", ack.stream)));
            }
            Ok(_) => "acknowledged without a stream sequence".to_string(),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                return Err(shared_error(subject, "another replica changed it meanwhile: read it again, then write"));
            }
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(shared_error(format!("publish of {id} to {subject}"), format!("{problem} (retried for {PUBLISH_RETRY:?})")));
        }
        tracing::warn!(stream, id, "publish not acknowledged, retrying: {problem}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A stream's settings beyond its name and subjects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention {
    /// Messages older than this are dropped (zero: kept for good).
    pub max_age: Duration,
    /// Publishes with a message id seen within this window are dropped as duplicates.
    pub duplicate_window: Duration,
    /// Messages kept per subject, the newest (0: all).
    pub per_subject: i64,
}

impl Retention {
    /// Everything, for good, with JetStream's duplicate window of `duplicate_window`.
    pub fn forever(duplicate_window: Duration) -> Self {
        Self { max_age: Duration::ZERO, duplicate_window, per_subject: 0 }
    }
}

/// The stream `name` capturing `subjects`, created if missing (file storage, `replicas` copies).
pub async fn stream(jetstream: &jetstream::Context, name: &str, subjects: &str, replicas: usize, retention: Retention) -> Result<stream::Stream, NatsError> {
    let config = stream::Config {
        name: name.to_string(),
        subjects: vec![subjects.to_string()],
        storage: stream::StorageType::File,
        num_replicas: replicas.max(1),
        max_age: retention.max_age,
        duplicate_window: retention.duplicate_window,
        max_messages_per_subject: if retention.per_subject > 0 { retention.per_subject } else { -1 },
        ..Default::default()
    };
    // A cluster starting with the service elects its JetStream leader within moments: wait for
    // it rather than fail the start.
    let deadline = tokio::time::Instant::now() + STARTUP_WAIT;
    loop {
        match jetstream.get_or_create_stream(config.clone()).await {
            Ok(mut stream) => {
                // An existing stream keeps its settings unless told: bring copies, age,
                // duplicate window and history to what this service is configured with.
                let current = stream.info().await.map_err(|e| shared_error(format!("stream {name}"), e))?.config.clone();
                let settings = |c: &stream::Config| (c.num_replicas, c.max_age, c.duplicate_window, c.max_messages_per_subject);
                if settings(&current) != settings(&config) {
                    tracing::info!(stream = name, replicas = config.num_replicas, "updating the stream's settings");
                    jetstream.update_stream(config.clone()).await.map_err(|e| shared_error(format!("updating stream {name}"), e))?;
                }
                return Ok(stream);
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::info!(stream = name, "waiting for JetStream: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(shared_error(format!("stream {name}"), e)),
        }
    }
}

/// How long a starting service waits for JetStream to answer.
const STARTUP_WAIT: Duration = Duration::from_secs(20);

/// Whether `asset` can be a subject token (no `.`, wildcards or white space): the market
/// stream has one subject per asset.
pub fn check_subject_token(asset: &str) -> Result<(), String> {
    if asset.is_empty() || asset.chars().any(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control()) {
        return Err(format!("`{asset}`: with NATS an asset name has no `.`, `*`, `>` or white space"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_subject_tokens() {
        assert_eq!(is_nats_url("nats://127.0.0.1:4222"), Ok(true));
        assert_eq!(is_nats_url(" NATS://a:4222,nats://b:4222"), Ok(true));
        assert_eq!(is_nats_url("tls://nats.example:4222"), Ok(true));
        assert_eq!((is_nats_url("reports/serve-state"), is_nats_url("/var/lib/foresight")), (Ok(false), Ok(false)));
        assert!(is_nats_url("ws://nats:443").unwrap_err().contains("ws://"));
        assert!(check_subject_token("BTC").is_ok() && check_subject_token("BTC-PERP").is_ok());
        for bad in ["", "BTC.X", "BT C", "*", "a>"] {
            assert!(check_subject_token(bad).is_err(), "{bad}");
        }
    }
}
