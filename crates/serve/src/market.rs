//! The service's market state: per asset, the completed days the models' features are computed
//! from, the day that ticks are accumulating into, and the last price, implied vol and depth.
//!
//! Every accepted update is written to a [`Journal`] and acknowledged only once stored, so a
//! `kill -9` loses nothing that was acknowledged: at start-up the state is rebuilt from the last
//! snapshot and the journal. Replicas share one JetStream stream instead ([`MarketState::connect`]):
//! each applies it in stream order, so all hold the same state, and an update is acknowledged
//! once JetStream stored it and this replica applied it. Ticks roll into days: a day's close is its last price and its
//! realized variance the sum of squared log returns between consecutive prices (the first one
//! from the last price before the day), as the training data's intraday bars give it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use foresight_registry::atomic::write_json_atomic;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::journal::{Durability, Journal, JournalError, damaged_tail, read_numbered_lines};
use crate::nats::{DUPLICATE_WINDOW, NatsOptions, Reader, Retention, check_subject_token, shared_error};
use crate::series::{Day, MarketInput, Rejected, Series, Update};
use crate::snapshot::Snapshots;

/// Completed days kept per asset (about 11 years of calendar days).
const MAX_DAYS: usize = 4000;
/// Journal lines replayed at start-up above which the state is snapshotted and the journal
/// started afresh.
const COMPACT_AFTER: usize = 50_000;

/// The day ticks are accumulating into.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OpenDay {
    date: String,
    close: f64,
    sum_squared_returns: f64,
    returns: u64,
    #[serde(alias = "implied_vol")]
    implied_vol_percent: Option<f64>,
}

/// One asset's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AssetState {
    last_sequence: u64,
    days: Vec<Day>,
    open: Option<OpenDay>,
    last_price: Option<f64>,
    last_tick_ms: Option<i64>,
    #[serde(alias = "implied_vol")]
    implied_vol_percent: Option<f64>,
    depth_notional: Option<f64>,
    /// The completed days as a series, built on first use after a day closes.
    #[serde(skip)]
    series: Option<Arc<Series>>,
    /// The end of the last completed day (Unix ms), worked out on first use after a day closes.
    #[serde(skip)]
    day_end_ms: Option<i64>,
}

/// Why an update was rejected: the field and the reason.
type Rejection = (String, String);

impl AssetState {
    /// Applies `record`: `Ok(false)` when its sequence was stored before.
    fn apply(&mut self, record: &Update) -> Result<bool, Rejection> {
        let sequence = record.sequence();
        if sequence <= self.last_sequence {
            return Ok(false);
        }
        match record {
            Update::Tick { timestamp_ms, price, implied_vol_percent, depth_notional, .. } => {
                self.apply_tick(*timestamp_ms, *price, *implied_vol_percent, *depth_notional)?;
            }
            Update::Day { day, .. } => {
                if let Some(open) = &self.open {
                    return Err(("day.date".into(), format!("backfill must come before the first tick's day ({}); got {}", open.date, day.date)));
                }
                day.check(self.days.last().map(|d| d.date.as_str()), "day").map_err(split_error)?;
                self.last_price = Some(day.close);
                if day.implied_vol_percent.is_some() {
                    self.implied_vol_percent = day.implied_vol_percent;
                }
                self.push_day(day.clone());
            }
        }
        self.last_sequence = sequence;
        Ok(true)
    }

    fn apply_tick(&mut self, timestamp_ms: i64, price: f64, implied_vol_percent: Option<f64>, depth: Option<f64>) -> Result<(), Rejection> {
        if !(price.is_finite() && price > 0.0) {
            return Err(("tick.price".into(), format!("must be finite and > 0, got {price}")));
        }
        if implied_vol_percent.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
            return Err(("tick.implied_vol_percent".into(), "must be finite and ≥ 0 (annualised percent)".into()));
        }
        if depth.is_some_and(|d| !(d.is_finite() && d > 0.0)) {
            return Err(("tick.depth_notional".into(), "must be finite and > 0".into()));
        }
        let date = chrono::DateTime::from_timestamp_millis(timestamp_ms)
            .map(|t| t.date_naive().format("%Y-%m-%d").to_string())
            .ok_or_else(|| ("tick.timestamp_ms".to_string(), format!("{timestamp_ms} is not a time")))?;
        if let Some(last) = self.last_tick_ms.filter(|last| timestamp_ms < *last) {
            return Err(("tick.timestamp_ms".into(), format!("{timestamp_ms} is before the last tick ({last})")));
        }
        if let Some(done) = self.days.last().filter(|d| d.date >= date) {
            return Err(("tick.timestamp_ms".into(), format!("falls on {date}, but {} is already a completed day", done.date)));
        }
        if self.open.as_ref().is_some_and(|o| o.date < date) {
            let o = self.open.take().expect("checked above");
            let realized_variance = (o.returns > 0).then_some(o.sum_squared_returns);
            self.push_day(Day { date: o.date, close: o.close, realized_variance, implied_vol_percent: o.implied_vol_percent });
        }
        let r2 = self.last_price.map(|last| (price / last).ln().powi(2));
        if r2.is_some_and(|r2| !r2.is_finite()) {
            return Err(("tick.price".into(), format!("{price} after {} is not a price move that can be measured", self.last_price.unwrap_or_default())));
        }
        let open = self.open.get_or_insert(OpenDay { date, close: price, sum_squared_returns: 0.0, returns: 0, implied_vol_percent: None });
        open.close = price;
        if let Some(r2) = r2 {
            open.sum_squared_returns += r2;
            open.returns += 1;
        }
        if implied_vol_percent.is_some() {
            open.implied_vol_percent = implied_vol_percent;
            self.implied_vol_percent = implied_vol_percent;
        }
        if depth.is_some() {
            self.depth_notional = depth;
        }
        self.last_price = Some(price);
        self.last_tick_ms = Some(timestamp_ms);
        Ok(())
    }

    fn push_day(&mut self, day: Day) {
        self.days.push(day);
        if self.days.len() > MAX_DAYS {
            self.days.drain(..self.days.len() - MAX_DAYS);
        }
        self.series = None;
        self.day_end_ms = None;
    }

    fn series(&mut self) -> Arc<Series> {
        self.series.get_or_insert_with(|| Arc::new(Series::from_checked(&self.days))).clone()
    }
}

/// Applies one message of the market stream to `assets`: every replica reaches the same outcome,
/// since each applies the same messages in the same order.
/// A message of an asset whose restored snapshot already covers it (`sequence` at or before the
/// snapshot's, in `covered`) is not applied again.
fn apply_shared(assets: &Mutex<BTreeMap<String, AssetState>>, sequence: u64, payload: &[u8], covered: &BTreeMap<String, u64>) -> Outcome {
    let record: Update = match serde_json::from_slice(payload) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(stream = MARKET_STREAM, "a message that is not a market update: {e}");
            return (AckStatus::Rejected, format!("not a market update: {e}"));
        }
    };
    if covered.get(record.asset()).is_some_and(|through| sequence <= *through) {
        return (AckStatus::Stored, String::new());
    }
    let Ok(mut assets) = assets.lock() else { return (AckStatus::Rejected, "market state lock poisoned".into()) };
    let applied = outcome(assets.entry(record.asset().to_string()).or_default().apply(&record));
    assets.retain(|_, s| s.last_sequence > 0);
    applied
}

/// The acknowledgement status (and, rejected, the reason) of [`AssetState::apply`]'s result.
fn outcome(applied: Result<bool, Rejection>) -> Outcome {
    match applied {
        Ok(true) => (AckStatus::Stored, String::new()),
        Ok(false) => (AckStatus::Duplicate, String::new()),
        Err((field, message)) => (AckStatus::Rejected, format!("{field}: {message}")),
    }
}

fn split_error(e: crate::error::ServeError) -> Rejection {
    match e {
        crate::error::ServeError::Invalid { field, message } => (field, message),
        other => ("day".into(), other.to_string()),
    }
}

/// What became of one published update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckStatus {
    /// Durably stored.
    Stored,
    /// Its sequence was stored before.
    Duplicate,
    /// Invalid: not stored.
    Rejected,
}

/// The acknowledgement of one published update.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    /// The asset.
    pub asset: String,
    /// The update's sequence number.
    pub sequence: u64,
    /// What became of it.
    pub status: AckStatus,
    /// Rejected: the field and the reason.
    pub error: String,
}

impl Ack {
    /// An update refused before it reached the state (its fields did not validate).
    fn invalid(r: &Rejected) -> Self {
        Ack { asset: r.asset.clone(), sequence: r.sequence, status: AckStatus::Rejected, error: format!("{}: {}", r.field, r.message) }
    }
}

/// What the state holds for one asset.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetSummary {
    /// The asset.
    pub asset: String,
    /// The last sequence stored.
    pub last_sequence: u64,
    /// Completed days held.
    pub days: usize,
    /// The first and last completed days.
    pub first_date: Option<String>,
    /// The last completed day.
    pub last_date: Option<String>,
    /// The day ticks are accumulating into.
    pub open_date: Option<String>,
    /// The last price.
    pub last_price: Option<f64>,
    /// When it was published, Unix milliseconds.
    pub last_tick_ms: Option<i64>,
    /// The last implied volatility published, annualised percent.
    pub implied_vol_percent: Option<f64>,
    /// The last depth published.
    pub depth_notional: Option<f64>,
}

/// The market state of every asset, journaled or shared.
pub struct MarketState {
    assets: Arc<Mutex<BTreeMap<String, AssetState>>>,
    log: Log,
}

/// Where accepted updates are stored.
enum Log {
    /// This process's journal file.
    Journal(Journal),
    /// A JetStream stream every replica applies.
    Shared(SharedLog),
}

/// The JetStream side of a replica: where it publishes, and how far it has applied.
struct SharedLog {
    jetstream: jetstream::Context,
    /// The last stream sequence applied to the state.
    applied: watch::Receiver<u64>,
    /// Whether the state has caught up with the stream as it was at start-up.
    caught_up: watch::Receiver<bool>,
    /// What became of recently applied stream messages, for the publisher waiting on them.
    outcomes: Arc<Mutex<BTreeMap<u64, Outcome>>>,
}

/// The task that applies the market stream to a replica's state, from its start and then as
/// it grows.
struct Follower {
    state: Arc<Mutex<BTreeMap<String, AssetState>>>,
    outcomes: Arc<Mutex<BTreeMap<u64, Outcome>>>,
    applied: watch::Sender<u64>,
    caught_up: watch::Sender<bool>,
    /// The stream's last sequence at start-up (0: it held nothing).
    target: u64,
    /// The first stream sequence to apply (after the restored snapshot, if any).
    start: u64,
    /// Per asset, the stream sequence its restored snapshot covers.
    covered: BTreeMap<String, u64>,
    /// Where to snapshot the state, and every how many stream messages.
    snapshots: Option<(Snapshots, u64)>,
    /// Whether a snapshot is being written.
    snapshotting: Arc<std::sync::atomic::AtomicBool>,
}

impl Follower {
    /// Follows the stream from the next sequence not applied, until the state is dropped: when
    /// the consumer fails or goes quiet while the stream moves on (its node went, the
    /// connection moved to another), a new one resumes there.
    async fn run(self, mut stream: jetstream::stream::Stream) {
        let mut next = self.start;
        // Messages applied since start-up (logged once caught up).
        let mut applied = 0u64;
        // How long a consumer may deliver nothing while the stream holds more. Doubled each
        // time a new consumer is replaced for delivering nothing, so that on a loaded machine
        // a consumer still being set up is not replaced again and again before it can
        // deliver; back to the shortest once one delivers.
        let mut patience = IDLE_CHECK;
        loop {
            let mut reader = match Reader::open(&stream, jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence: next }, "").await {
                Ok(reader) => reader,
                Err(e) => {
                    tracing::warn!(stream = MARKET_STREAM, next, "following the market stream: {e}");
                    tokio::time::sleep(RESUME_PAUSE).await;
                    continue;
                }
            };
            let mut stalled = false;
            loop {
                let message = match tokio::time::timeout(patience, reader.next()).await {
                    Ok(Some(Ok(m))) => m,
                    Ok(Some(Err(e))) => {
                        tracing::warn!(stream = MARKET_STREAM, next, "reading the market stream, resuming: {e}");
                        break;
                    }
                    Ok(None) => break,
                    Err(_) if self.applied.is_closed() => return, // the state is gone
                    // Quiet: fine if there is nothing new; if the stream has moved on, this
                    // consumer is stuck (its node went without a word) and is replaced.
                    Err(_) => match tokio::time::timeout(IDLE_CHECK, stream.info()).await {
                        Ok(Ok(info)) if info.state.messages > 0 && info.state.last_sequence >= next.max(info.state.first_sequence) => {
                            tracing::warn!(stream = MARKET_STREAM, next, last = info.state.last_sequence, ?patience, "the market stream moved on without this replica: resuming");
                            stalled = true;
                            break;
                        }
                        Ok(Ok(_)) => continue,
                        // The stream cannot even be asked (its leader went): a new consumer
                        // is the surer way back than waiting on this one.
                        _ => {
                            tracing::warn!(stream = MARKET_STREAM, next, "the market stream does not answer: resuming");
                            stalled = true;
                            break;
                        }
                    },
                };
                let Ok((sequence, pending)) = message.info().map(|i| (i.stream_sequence, i.pending)) else {
                    tracing::error!(stream = MARKET_STREAM, next, "a message without its stream sequence: resuming");
                    break;
                };
                if sequence < next {
                    continue; // delivered again after a resume
                }
                self.apply(sequence, &message.payload);
                next = sequence + 1;
                patience = IDLE_CHECK;
                applied += 1;
                // (Nothing pending also counts: the tail held at start may since have gone.)
                if (sequence >= self.target || pending == 0) && self.caught_up.send_if_modified(|c| !std::mem::replace(c, true)) {
                    tracing::info!(stream = MARKET_STREAM, applied, from = self.start, "caught up with the market stream");
                }
            }
            if self.applied.is_closed() {
                return; // the state is gone
            }
            if stalled {
                patience = (patience * 2).min(MAX_PATIENCE);
            }
            tokio::time::sleep(RESUME_PAUSE).await;
        }
    }

    /// Applies the message at stream `sequence` and keeps its outcome for the publisher.
    fn apply(&self, sequence: u64, payload: &[u8]) {
        let outcome = apply_shared(&self.state, sequence, payload, &self.covered);
        if let Ok(mut kept) = self.outcomes.lock() {
            kept.insert(sequence, outcome);
            let keep_from = sequence.saturating_sub(OUTCOMES_KEPT);
            *kept = kept.split_off(&keep_from);
        }
        let _ = self.applied.send(sequence);
        // (Not while catching up: older rounds than the stream's newest would only replace
        // newer ones.)
        if let Some((snapshots, every)) = &self.snapshots
            && sequence.is_multiple_of(*every)
            && sequence > self.target
            && self.covered.values().all(|through| sequence > *through)
        {
            self.snapshot(snapshots.clone(), sequence);
        }
    }

    /// Stores the state as it is after applying `through`, in the background (a copy taken
    /// now; the follower goes on applying). Skipped while the previous round is still being
    /// written: rounds never pile up.
    fn snapshot(&self, snapshots: Snapshots, through: u64) {
        if self.snapshotting.load(std::sync::atomic::Ordering::Acquire) {
            tracing::warn!(stream = MARKET_STREAM, through, "the previous market snapshot is still being written: this round is skipped");
            return;
        }
        let Ok(assets) = self.state.lock().map(|a| a.clone()) else { return };
        self.snapshotting.store(true, std::sync::atomic::Ordering::Release);
        let snapshotting = self.snapshotting.clone();
        tokio::spawn(async move {
            match snapshots.write(through, &assets).await {
                Ok(()) => tracing::info!(stream = MARKET_STREAM, through, assets = assets.len(), "market state snapshotted"),
                Err(e) => tracing::warn!(stream = MARKET_STREAM, through, "market state not snapshotted (a starting replica replays more): {e}"),
            }
            snapshotting.store(false, std::sync::atomic::Ordering::Release);
        });
    }
}

/// What applying one stream message did: its status and, rejected, why.
type Outcome = (AckStatus, String);

/// The market stream and its subjects (`foresight.market.<ASSET>`). JetStream itself drops a
/// re-sent update within its duplicate window; the update's own sequence drops it after that.
const MARKET_STREAM: &str = "FORESIGHT_MARKET";
const MARKET_SUBJECT: &str = "foresight.market";
/// Outcomes kept for publishers (far more than one call's updates).
const OUTCOMES_KEPT: u64 = 100_000;
/// How long the market stream may be quiet before a replica checks it is not behind.
const IDLE_CHECK: Duration = Duration::from_secs(2);
/// The most a replica waits on a new consumer that delivers nothing while the stream moves on
/// (see `Follower::run`).
const MAX_PATIENCE: Duration = Duration::from_secs(16);
/// The pause before a new consumer replaces one that failed.
const RESUME_PAUSE: Duration = Duration::from_millis(250);
/// Longest a publisher waits for this replica to apply what JetStream stored.
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Files of the market state in the state folder.
const JOURNAL_FILE: &str = "market.jsonl";
const SNAPSHOT_FILE: &str = "market.snapshot.json";

impl MarketState {
    /// Opens (or creates) the state in `dir`: the snapshot, then the journal replayed over it.
    pub fn open(dir: &Path, durability: Durability) -> Result<Self, JournalError> {
        let journal_path = dir.join(JOURNAL_FILE);
        let snapshot = dir.join(SNAPSHOT_FILE);
        let io_error = |path: &Path, source| JournalError::Io { path: path.to_path_buf(), source };
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let mut assets: BTreeMap<String, AssetState> = match std::fs::read(&snapshot) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| JournalError::Damaged { path: snapshot.clone(), line: e.line(), message: e.to_string() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(io_error(&snapshot, e)),
        };
        // Replay the good lines (a damaged tail is left out here and cut when the journal opens
        // for writing, one scan later: the file is read twice, not three times).
        let records: Vec<(usize, Update)> = read_numbered_lines(&journal_path)?;
        for (line, record) in &records {
            // Records were checked before they were stored; one that no longer applies means
            // the journal and the snapshot disagree.
            assets.entry(record.asset().to_string()).or_default().apply(record).map_err(|(field, message)| JournalError::Damaged {
                path: journal_path.clone(),
                line: *line,
                message: format!("{field}: {message}"),
            })?;
        }
        let mut cut = None;
        if records.len() > COMPACT_AFTER {
            // The compacted journal starts empty: say now what its damaged tail was.
            cut = damaged_tail(&journal_path)?;
            // Snapshot first, then an empty journal: a crash between the two replays records
            // the snapshot already holds, which their sequence numbers make no-ops.
            write_json_atomic(&snapshot, &assets).map_err(|e| io_error(&snapshot, std::io::Error::other(e.to_string())))?;
            foresight_registry::atomic::write_atomic(&journal_path, b"").map_err(|e| io_error(&journal_path, std::io::Error::other(e.to_string())))?;
        }
        let journal = Journal::open(&journal_path, durability)?;
        if let Some(cut) = cut.or(journal.cut_at_open()) {
            // Only unacknowledged updates can be in a damaged tail: say where the kept ones end.
            let last = records.last().map(|(_, r)| format!("{} sequence {}", r.asset(), r.sequence()));
            tracing::warn!(journal = %journal_path.display(), last_good = last.as_deref().unwrap_or("none"), "{cut}");
        }
        Ok(Self { assets: Arc::new(Mutex::new(assets)), log: Log::Journal(journal) })
    }

    /// Joins the market stream on NATS (created if missing): the state is built by applying
    /// the stream from its start, in the background; [`MarketState::caught_up`] says when it
    /// holds what the stream held at start-up.
    pub async fn connect(jetstream: &jetstream::Context, options: &NatsOptions) -> Result<Self, JournalError> {
        let jetstream = jetstream.clone();
        // Kept for good: a replica builds its state from the whole stream, or from the last
        // snapshot of it and what came after.
        let retention = Retention::forever(DUPLICATE_WINDOW);
        let mut stream = crate::nats::stream(&jetstream, MARKET_STREAM, &format!("{MARKET_SUBJECT}.>"), options.replicas, retention).await?;
        let created = format!("{:?}", stream.info().await.map_err(|e| shared_error(format!("stream {MARKET_STREAM}"), e))?.created);
        // Start from the last snapshot, if there is one. (Set up failing, the whole stream is
        // replayed: a snapshot only saves time.)
        let snapshots = match options.market_snapshot_every {
            0 => None,
            every => match Snapshots::open(&jetstream, options, created).await {
                Ok(snapshots) => Some((snapshots, every)),
                Err(e) => {
                    tracing::warn!(stream = MARKET_STREAM, "market snapshots are off: {e}");
                    None
                }
            },
        };
        let restored = match &snapshots {
            Some((s, _)) => s.latest::<AssetState>().await.unwrap_or_else(|e| {
                tracing::warn!(stream = MARKET_STREAM, "the market snapshot cannot be read, replaying the whole stream: {e}");
                None
            }),
            None => None,
        };
        // Read after the snapshot: any round written since covers no more than this.
        let state = stream.info().await.map_err(|e| shared_error(format!("stream {MARKET_STREAM}"), e))?.state.clone();
        // Caught up once the last message held at start-up is applied (none held: at once).
        let target = if state.messages == 0 { 0 } else { state.last_sequence };
        let (start, covered, held) = match restored.filter(|r| r.start <= target + 1) {
            Some(r) => {
                tracing::info!(stream = MARKET_STREAM, assets = r.assets.len(), from = r.start, "market state restored from its snapshot; applying the stream");
                let covered = r.assets.iter().map(|(asset, (through, _))| (asset.clone(), *through)).collect();
                (r.start, covered, r.assets.into_iter().map(|(asset, (_, state))| (asset, state)).collect())
            }
            None => (1, BTreeMap::new(), BTreeMap::new()),
        };
        let assets: Arc<Mutex<BTreeMap<String, AssetState>>> = Arc::new(Mutex::new(held));
        let outcomes: Arc<Mutex<BTreeMap<u64, Outcome>>> = Arc::default();
        let (applied_tx, applied) = watch::channel(start - 1);
        let (caught_up_tx, caught_up) = watch::channel(target < start);
        let follower = Follower { state: assets.clone(), outcomes: outcomes.clone(), applied: applied_tx, caught_up: caught_up_tx, target, start, covered, snapshots, snapshotting: Arc::default() };
        tokio::spawn(follower.run(stream));
        Ok(Self { assets, log: Log::Shared(SharedLog { jetstream, applied, caught_up, outcomes }) })
    }

    /// Whether the state holds every update stored before this process started (always, with
    /// a journal of its own).
    pub fn caught_up(&self) -> bool {
        match &self.log {
            Log::Journal(_) => true,
            Log::Shared(shared) => *shared.caught_up.borrow(),
        }
    }

    /// Waits until [`MarketState::caught_up`].
    pub async fn wait_caught_up(&self) {
        if let Log::Shared(shared) = &self.log {
            let mut caught_up = shared.caught_up.clone();
            let _ = caught_up.wait_for(|c| *c).await;
        }
    }

    /// Applies `updates` in order and stores the accepted ones; one acknowledgement each, in
    /// order, returned once every stored update is durable. An update is applied to memory as
    /// it is queued, so later updates of the same call see it.
    pub async fn publish(&self, updates: &[Result<Update, Rejected>]) -> Result<Vec<Ack>, JournalError> {
        match &self.log {
            Log::Journal(journal) => self.publish_journaled(journal, updates).await,
            Log::Shared(shared) => self.publish_shared(shared, updates).await,
        }
    }

    async fn publish_journaled(&self, journal: &Journal, updates: &[Result<Update, Rejected>]) -> Result<Vec<Ack>, JournalError> {
        let mut acks = Vec::with_capacity(updates.len());
        let mut stored = Vec::new();
        let waiting = {
            let mut assets = self.assets.lock().map_err(|_| JournalError::Closed(journal.path().to_path_buf()))?;
            for received in updates {
                let record = match received {
                    Ok(record) => record,
                    Err(r) => {
                        acks.push(Ack::invalid(r));
                        continue;
                    }
                };
                let (status, error) = outcome(assets.entry(record.asset().to_string()).or_default().apply(record));
                if status == AckStatus::Stored {
                    stored.push(record);
                }
                acks.push(Ack { asset: record.asset().to_string(), sequence: record.sequence(), status, error });
            }
            assets.retain(|_, s| s.last_sequence > 0); // an asset whose every update was rejected
            let duplicates = acks.iter().any(|a| a.status == AckStatus::Duplicate);
            if stored.is_empty() && !duplicates {
                return Ok(acks);
            }
            // Queued under the lock, so the journal's order is the order they were applied in.
            // With nothing new, an empty entry still waits for what is queued before it: a
            // DUPLICATE is only acknowledged once the original is on disk.
            journal.queue(&stored)?
        };
        journal.stored(waiting).await?;
        Ok(acks)
    }

    /// Publishes each update to the stream (one subject per asset, deduplicated by JetStream
    /// within its window by `<asset>:<sequence>:<checksum>`), then answers it with what applying
    /// it in stream order did on this replica, once JetStream stored it and this replica applied
    /// it. An update this replica already holds is answered DUPLICATE without a publish.
    ///
    /// Each asset's updates go one at a time, each retried until JetStream acknowledges it (a
    /// cluster that lost a node elects new stream leaders within seconds): a later update never
    /// overtakes an earlier one, which its sequence would then make a duplicate. Assets are
    /// independent, so the assets of one call are published side by side.
    async fn publish_shared(&self, shared: &SharedLog, updates: &[Result<Update, Rejected>]) -> Result<Vec<Ack>, JournalError> {
        let mut acks: Vec<Option<Ack>> = vec![None; updates.len()];
        // Each asset's updates, in the call's order, with their places in it.
        let mut lanes: BTreeMap<&str, Vec<(usize, &Update)>> = BTreeMap::new();
        for (place, received) in updates.iter().enumerate() {
            match received {
                Ok(record) => lanes.entry(record.asset()).or_default().push((place, record)),
                Err(r) => acks[place] = Some(Ack::invalid(r)),
            }
        }
        let lanes = lanes.into_values().map(|lane| async move {
            let mut answered = Vec::with_capacity(lane.len());
            for (place, record) in lane {
                answered.push((place, self.publish_one(shared, record).await?));
            }
            Ok::<_, JournalError>(answered)
        });
        for (place, ack) in futures_util::future::try_join_all(lanes).await?.into_iter().flatten() {
            acks[place] = Some(ack);
        }
        Ok(acks.into_iter().flatten().collect())
    }

    /// One update of [`MarketState::publish_shared`]: published, applied, answered.
    async fn publish_one(&self, shared: &SharedLog, record: &Update) -> Result<Ack, JournalError> {
        let (asset, sequence) = (record.asset().to_string(), record.sequence());
        let ack = |status, error: String| Ack { asset: asset.clone(), sequence, status, error };
        if let Err(message) = check_subject_token(&asset) {
            return Ok(ack(AckStatus::Rejected, format!("asset: {message}")));
        }
        let held = self.assets.lock().ok().and_then(|a| a.get(&asset).map(|s| s.last_sequence)).unwrap_or(0);
        if sequence <= held {
            return Ok(ack(AckStatus::Duplicate, String::new()));
        }
        let payload = serde_json::to_vec(record).map_err(|e| shared_error("encoding an update", e))?;
        // JetStream drops a re-sent *identical* update by this id (a retry below included); a
        // different update under the same sequence (say, after the first was rejected) is
        // applied on its merits.
        let id = format!("{asset}:{sequence}:{:08x}", crc32c::crc32c(&payload));
        // A duplicate's PubAck carries the original message's stream sequence: the resend is
        // answered by what became of the original.
        let stored = crate::nats::publish_acknowledged(&shared.jetstream, MARKET_STREAM, &format!("{MARKET_SUBJECT}.{asset}"), &id, &payload, None).await?;
        let mut applied = shared.applied.clone();
        tokio::time::timeout(APPLY_TIMEOUT, applied.wait_for(|s| *s >= stored.sequence))
            .await
            .map_err(|_| shared_error("applying the market stream", format!("stream sequence {} not applied after {APPLY_TIMEOUT:?}", stored.sequence)))?
            .map_err(|_| shared_error("applying the market stream", "this replica stopped following it"))?;
        let outcome = shared.outcomes.lock().ok().and_then(|o| o.get(&stored.sequence).cloned());
        let (status, error) = match (outcome, stored.duplicate) {
            (Some((AckStatus::Stored, _)), true) => (AckStatus::Duplicate, String::new()),
            (Some(outcome), _) => outcome,
            // A resend of an update applied so long ago that its outcome is no longer kept.
            (None, true) => (AckStatus::Duplicate, String::new()),
            (None, false) => {
                return Err(shared_error(
                    "applying the market stream",
                    format!("{asset} sequence {sequence} (stream sequence {}) has no recorded outcome", stored.sequence),
                )
                .into());
            }
        };
        Ok(ack(status, error))
    }

    /// Calibration inputs of `asset` from its state: completed days, last price, implied vol
    /// (as a fraction) and depth, and the age of the last tick; `None` when it has no day.
    pub fn input(&self, asset: &str) -> Option<MarketInput> {
        let mut assets = self.assets.lock().ok()?;
        let state = assets.get_mut(asset)?;
        if state.days.is_empty() {
            return None;
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        // Without a tick, the data is as old as the end of the last completed day.
        if state.last_tick_ms.is_none() && state.day_end_ms.is_none() {
            state.day_end_ms = state.days.last().and_then(|d| {
                let date = chrono::NaiveDate::parse_from_str(&d.date, "%Y-%m-%d").ok()?;
                Some(date.succ_opt()?.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
            });
        }
        let as_of_ms = state.last_tick_ms.or(state.day_end_ms);
        Some(MarketInput {
            spot: state.last_price.unwrap_or(0.0),
            implied_vol_fraction: state.implied_vol_percent.map_or(0.0, |v| v / 100.0),
            depth_notional: state.depth_notional,
            age_secs: as_of_ms.map_or(f64::INFINITY, |t| ((now_ms - t) as f64 / 1000.0).max(0.0)),
            series: state.series(),
            field: format!("market state of {asset}"),
        })
    }

    /// What is held for `asset`.
    pub fn state(&self, asset: &str) -> Option<AssetSummary> {
        let assets = self.assets.lock().ok()?;
        let s = assets.get(asset)?;
        Some(AssetSummary {
            asset: asset.to_string(),
            last_sequence: s.last_sequence,
            days: s.days.len(),
            first_date: s.days.first().map(|d| d.date.clone()),
            last_date: s.days.last().map(|d| d.date.clone()),
            open_date: s.open.as_ref().map(|o| o.date.clone()),
            last_price: s.last_price,
            last_tick_ms: s.last_tick_ms,
            implied_vol_percent: s.implied_vol_percent,
            depth_notional: s.depth_notional,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(sequence: u64, timestamp_ms: i64, price: f64) -> Result<Update, Rejected> {
        Ok(Update::Tick { asset: "BTC".into(), sequence, timestamp_ms, price, implied_vol_percent: Some(50.0), depth_notional: None })
    }

    fn day(sequence: u64, date: &str, close: f64) -> Result<Update, Rejected> {
        Ok(Update::Day { asset: "BTC".into(), sequence, day: Day { date: date.into(), close, realized_variance: Some(1e-3), implied_vol_percent: None } })
    }

    const DAY_MS: i64 = 86_400_000;
    // 2024-01-02T00:00:00Z
    const T0: i64 = 1_704_153_600_000;

    #[tokio::test]
    async fn ticks_roll_into_days_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let state = MarketState::open(dir.path(), Durability::GroupCommit).unwrap();
        let updates = vec![
            day(1, "2024-01-01", 100.0),
            tick(2, T0 + 1000, 110.0),
            tick(3, T0 + 2000, 99.0),
            tick(4, T0 + DAY_MS + 5, 99.0), // opens 2024-01-03, closes 2024-01-02
            tick(3, T0 + DAY_MS + 6, 1.0),  // a resend
            tick(5, T0 + 10, 99.0),         // before the last tick
            day(6, "2024-01-05", 1.0),      // backfill after ticks
            tick(7, T0 + DAY_MS + 7, -1.0),
        ];
        let acks = state.publish(&updates).await.unwrap();
        let status: Vec<AckStatus> = acks.iter().map(|a| a.status).collect();
        use AckStatus::*;
        assert_eq!(status, [Stored, Stored, Stored, Stored, Duplicate, Rejected, Rejected, Rejected]);
        assert!(acks[5].error.starts_with("tick.timestamp_ms"), "{}", acks[5].error);
        assert!(acks[6].error.starts_with("day.date"), "{}", acks[6].error);
        assert!(acks[7].error.starts_with("tick.price"), "{}", acks[7].error);
        let before = state.state("BTC").unwrap();
        assert_eq!((before.days, before.last_date.as_deref(), before.open_date.as_deref(), before.last_sequence), (2, Some("2024-01-02"), Some("2024-01-03"), 4));
        let series = state.input("BTC").unwrap().series;
        let expected_rv = (110.0f64 / 100.0).ln().powi(2) + (99.0f64 / 110.0).ln().powi(2);
        assert!((series.rv[1].unwrap() - expected_rv).abs() < 1e-15);
        assert_eq!(series.closes, vec![100.0, 99.0]);
        drop(state);
        // As after kill -9: everything acknowledged is back, and resends are duplicates.
        let state = MarketState::open(dir.path(), Durability::GroupCommit).unwrap();
        let after = state.state("BTC").unwrap();
        assert_eq!(after, before);
        let acks = state.publish(&[tick(4, T0 + DAY_MS + 5, 99.0), tick(8, T0 + 2 * DAY_MS, 98.0)]).await.unwrap();
        assert_eq!(acks.iter().map(|a| a.status).collect::<Vec<_>>(), [Duplicate, Stored]);
        assert_eq!(state.state("BTC").unwrap().days, 3);
        // An immeasurable move, refused (the clock check of far-future ticks is the conversion's).
        let acks = state.publish(&[tick(10, T0 + 2 * DAY_MS + 1, 1e-300), tick(11, T0 + 2 * DAY_MS + 2, 1e300)]).await.unwrap();
        assert!(acks[1].error.starts_with("tick.price"), "{}", acks[1].error);
        assert_eq!(state.state("BTC").unwrap().last_sequence, 10);
        assert!(state.state("ETH").is_none() && state.input("ETH").is_none());
    }

    #[test]
    fn a_message_a_restored_snapshot_covers_is_not_applied_again() {
        let assets = Mutex::new(BTreeMap::new());
        let payload = |update: Result<Update, Rejected>| serde_json::to_vec(&update.unwrap()).unwrap();
        // BTC's snapshot holds the stream through message 3 (its update 2); ETH has none.
        let covered = BTreeMap::from([("BTC".to_string(), 3)]);
        assert_eq!(apply_shared(&assets, 3, &payload(tick(2, T0 + 1000, 101.0)), &covered), (AckStatus::Stored, String::new()));
        assert!(assets.lock().unwrap().is_empty(), "covered: the snapshot already holds it");
        assert_eq!(apply_shared(&assets, 4, &payload(day(1, "2024-01-01", 100.0)), &covered).0, AckStatus::Stored);
        assert_eq!(assets.lock().unwrap()["BTC"].last_sequence, 1, "after the snapshot: applied");
        let eth = Ok(Update::Tick { asset: "ETH".into(), sequence: 1, timestamp_ms: T0, price: 2000.0, implied_vol_percent: None, depth_notional: None });
        assert_eq!(apply_shared(&assets, 2, &payload(eth), &covered).0, AckStatus::Stored, "another asset is not covered");
        assert_eq!(assets.lock().unwrap()["ETH"].last_price, Some(2000.0));
    }

    #[tokio::test]
    async fn a_damaged_journal_tail_is_cut_and_damage_inside_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let state = MarketState::open(dir.path(), Durability::GroupCommit).unwrap();
        state.publish(&[day(1, "2024-01-01", 100.0), tick(2, T0 + 1000, 101.0), tick(3, T0 + 2000, 102.0)]).await.unwrap();
        let before = state.state("BTC").unwrap();
        drop(state);
        let path = dir.path().join(JOURNAL_FILE);
        let good = std::fs::read(&path).unwrap();
        // A lost page after the last acknowledged update: cut, nothing acknowledged is lost.
        std::fs::write(&path, [good.as_slice(), &[0u8; 512]].concat()).unwrap();
        let state = MarketState::open(dir.path(), Durability::GroupCommit).unwrap();
        assert_eq!(state.state("BTC").unwrap(), before);
        assert_eq!(std::fs::read(&path).unwrap(), good);
        drop(state);
        // A byte flipped in the second update, with the third intact after it: an error naming
        // the file and the offset, and the file left as it was.
        let second = good.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(1).unwrap().0 + 1;
        let mut bytes = good.clone();
        bytes[second + 20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let e = MarketState::open(dir.path(), Durability::GroupCommit).err().expect("refused").to_string();
        assert!(e.contains("market.jsonl") && e.contains(&format!("line 3 at byte {second}")), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }
}
