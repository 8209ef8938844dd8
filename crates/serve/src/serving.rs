//! What the gRPC services share: the current engine generation (swapped whole at a reload or a
//! split change), the forecast cache, the market state, the audit log and the in-flight limit.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use foresight_registry::storage::{Storage, Version};
use foresight_registry::store::INDEX_FILE;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::engine::{Engine, EngineConfig, ForecastCache, Refusal, ReloadReport, Split};
use crate::nats::{AUDIT_STREAM, AUDIT_SUBJECT, Retention, SharedValue};
use crate::error::ServeError;
use crate::journal::{Durability, Journal};
use crate::market::MarketState;
use crate::metrics::Metrics;
use crate::nats::NatsOptions;

/// Files in the state folder besides the market state's.
const SPLIT_FILE: &str = "split.json";
/// The shared value holding the split, with NATS.
const SPLIT_KEY: &str = "split";

/// What replicas share through NATS.
struct Shared {
    market: MarketState,
    audit: Journal,
    split: SharedValue,
    /// The split as last set through any replica.
    current: Option<Split>,
}
const AUDIT_FILE: &str = "audit.jsonl";

/// Settings of the shared state.
#[derive(Debug, Clone)]
pub struct ServingConfig {
    /// The engine's.
    pub engine: EngineConfig,
    /// Market state, audit log and split live here; `None`: no market state, no audit log
    /// (inline history only; for tests and benchmarks).
    pub state_dir: Option<PathBuf>,
    /// When journal and audit lines count as stored.
    pub durability: Durability,
    /// Calibration calls (unary, batch or stream message) in progress at once; more are refused
    /// with RESOURCE_EXHAUSTED rather than queued.
    pub max_in_flight: usize,
    /// Most accounts in one CalibrateBatch.
    pub max_batch: usize,
    /// Market state, audit log and split on NATS JetStream, shared by replicas, instead of
    /// the state folder (which is then not used).
    pub nats: Option<NatsOptions>,
}

impl ServingConfig {
    /// Defaults around an engine config.
    pub fn new(engine: EngineConfig) -> Self {
        Self { engine, state_dir: None, durability: Durability::GroupCommit, max_in_flight: 64, max_batch: 10_000, nats: None }
    }
}

/// Where a split set through ModelService is kept, so it outlives restarts.
enum SplitStore {
    /// Not kept (no state folder).
    Nowhere,
    /// `split.json` in the state folder.
    File(PathBuf),
    /// A key every replica follows, so an account gets the same arm whichever one answers.
    Shared(Box<SharedValue>),
}

/// The shared state.
pub struct Serving {
    engine: RwLock<Arc<Engine>>,
    /// Forecasts and model runs per asset and day.
    pub cache: ForecastCache,
    /// Published market data, when a state folder is configured.
    pub market: Option<MarketState>,
    /// The audit log, when a state folder is configured.
    pub audit: Option<Journal>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    split_store: SplitStore,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    /// Most accounts in one batch.
    pub max_batch: usize,
    /// One reload or split change at a time.
    swap: std::sync::Mutex<()>,
    /// The refusals the last reload reported, so a refusal that persists is reported once.
    refusals: std::sync::Mutex<BTreeSet<Refusal>>,
}

impl Serving {
    /// Opens the state folder (market state replayed, split restored) and loads the engine.
    pub fn open(config: ServingConfig) -> Result<Self, ServeError> {
        Self::open_with(config, None)
    }

    /// As [`Serving::open`], with the market state on NATS when the config names it (joined
    /// here; it catches up in the background, see [`MarketState::caught_up`]).
    pub async fn connect(config: ServingConfig) -> Result<Self, ServeError> {
        let shared = match &config.nats {
            Some(options) => {
                let storage = |what| move |source| ServeError::Storage { what, source };
                let jetstream = crate::nats::connect(options).await.map_err(|e| storage("shared state")(e.into()))?;
                let market = MarketState::connect(&jetstream, options).await.map_err(storage("market state"))?;
                // One audit stream for every replica; a call returns once its lines are acknowledged.
                let retention = Retention { max_age: options.audit_max_age, ..Retention::forever(crate::nats::DUPLICATE_WINDOW) };
                let audit = Journal::on_stream(&jetstream, options.replicas, AUDIT_STREAM, AUDIT_SUBJECT, retention).await.map_err(storage("audit log"))?;
                let split = SharedValue::open(&jetstream, options, SPLIT_KEY).await.map_err(|e| storage("A/B split")(e.into()))?;
                let current = split.get::<Split>().await.map_err(|e| storage("A/B split")(e.into()))?;
                Some(Shared { market, audit, split, current })
            }
            None => None,
        };
        Self::open_with(config, shared)
    }

    fn open_with(config: ServingConfig, shared: Option<Shared>) -> Result<Self, ServeError> {
        let mut engine_config = config.engine.clone();
        let (mut market, mut audit, mut split_store) = (None, None, SplitStore::Nowhere);
        if let Some(shared) = shared {
            (market, audit, split_store) = (Some(shared.market), Some(shared.audit), SplitStore::Shared(Box::new(shared.split)));
            // A split set through any replica is every replica's.
            if let Some(split) = shared.current {
                engine_config.split = split;
            }
        } else if let Some(dir) = &config.state_dir {
            market = Some(MarketState::open(dir, config.durability).map_err(|source| ServeError::Storage { what: "market state", source })?);
            let journal = Journal::open(&dir.join(AUDIT_FILE), config.durability).map_err(|source| ServeError::Storage { what: "audit log", source })?;
            if let Some(cut) = journal.cut_at_open() {
                // Only margins never returned to a caller can be in a damaged tail.
                tracing::warn!(journal = %journal.path().display(), "{cut}");
            }
            audit = Some(journal);
            let path = dir.join(SPLIT_FILE);
            // A split set through ModelService outlives restarts.
            if let Some(split) = read_split(&path)? {
                engine_config.split = split;
            }
            split_store = SplitStore::File(path);
        }
        let engine = Engine::load(engine_config)?;
        Ok(Self {
            engine: RwLock::new(Arc::new(engine)),
            cache: ForecastCache::default(),
            market,
            audit,
            metrics: Metrics::default(),
            split_store,
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            max_in_flight: config.max_in_flight,
            max_batch: config.max_batch,
            swap: std::sync::Mutex::new(()),
            refusals: std::sync::Mutex::new(BTreeSet::new()),
        })
    }

    /// With a shared split, follows the changes other replicas make to it (a no-op otherwise);
    /// when following fails (JetStream electing a leader, a lost connection), it starts again.
    pub fn follow_shared_split(self: &Arc<Self>) {
        let SplitStore::Shared(value) = &self.split_store else { return };
        let (value, serving) = (value.as_ref().clone(), self.clone());
        let (sender, mut received) = tokio::sync::mpsc::unbounded_channel::<Split>();
        tokio::spawn(async move {
            loop {
                let followed = value.follow(|split: Split| drop(sender.send(split))).await;
                if let Err(e) = followed {
                    tracing::warn!("following the shared A/B split, starting again: {e}");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        tokio::spawn(async move {
            while let Some(split) = received.recv().await {
                // The swap lock is a blocking one (reloads hold it while models load).
                let serving = serving.clone();
                let _ = tokio::task::spawn_blocking(move || match serving.install_split(split, true) {
                    Ok(Some(engine)) => tracing::info!(generation = engine.generation(), "A/B split changed by another replica"),
                    Ok(None) => {}
                    Err(e) => tracing::error!("a shared A/B split this replica cannot serve, ignored: {e}"),
                })
                .await;
            }
        });
    }

    /// The current generation; a request holds it from start to end.
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.read().map(|e| e.clone()).unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    fn install(&self, engine: Engine) {
        let mut slot = self.engine.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *slot = Arc::new(engine);
    }

    /// Re-reads the registry and swaps in the new generation (blocking: models are loaded and
    /// checked) when what is served changed; otherwise the generation stays. Requests in
    /// progress finish on the generation they started with. A refused model is reported (a WARN
    /// and `foresight_reload_refusals_total{slot}`) when its refusal first appears, not again
    /// at every reload while it persists.
    pub fn reload(&self) -> Result<(ReloadReport, u64), ServeError> {
        let _one = self.swap.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.engine();
        let (engine, report) = current.reload()?;
        self.report_refusals(&report.refused);
        if engine.serves_same_as(&current) {
            return Ok((report, current.generation()));
        }
        let generation = engine.generation();
        tracing::info!(generation, changed = ?report.changed, "registry reloaded");
        self.install(engine);
        Ok((report, generation))
    }

    fn report_refusals(&self, refused: &[Refusal]) {
        let mut reported = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        for refusal in refused.iter().filter(|r| !reported.contains(*r)) {
            tracing::warn!(slot = %refusal.slot, "deployment refused: {}", refusal.message);
            self.metrics.reload_refused(&refusal.slot);
        }
        *reported = refused.iter().cloned().collect();
    }

    /// Sets the A/B split (checked, stored in the state folder or, with NATS, where every
    /// replica follows it) and swaps it in.
    pub fn set_split(&self, split: Split) -> Result<Arc<Engine>, ServeError> {
        // Checked, then stored (with NATS a round trip: not under the swap lock, which the
        // split follower and reloads take), then swapped in.
        self.engine().with_split(split.clone())?;
        match &self.split_store {
            SplitStore::Nowhere => {}
            SplitStore::File(path) => {
                foresight_registry::atomic::write_json_atomic(path, &split).map_err(|e| ServeError::Internal(format!("the split was not stored: {e}")))?;
            }
            SplitStore::Shared(value) => value.put_blocking(&split).map_err(|e| ServeError::Storage { what: "A/B split", source: e.into() })?,
        }
        self.install_split(split, false)?;
        Ok(self.engine())
    }

    /// Swaps in a generation with `split` (unless `only_if_new` and it is already served);
    /// returns the new generation, if any.
    fn install_split(&self, split: Split, only_if_new: bool) -> Result<Option<Arc<Engine>>, ServeError> {
        let _one = self.swap.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.engine();
        if only_if_new && *current.split() == split {
            return Ok(None);
        }
        self.install(current.with_split(split)?);
        Ok(Some(self.engine()))
    }

    /// A slot for one calibration call, or [`ServeError::Overloaded`].
    pub fn admit(&self) -> Result<OwnedSemaphorePermit, ServeError> {
        self.in_flight.clone().try_acquire_owned().map_err(|_| {
            self.metrics.shed();
            ServeError::Overloaded(self.max_in_flight)
        })
    }

    /// Watches the registry's index (`registry.json`, in its folder or object store) and
    /// reloads when it changes, every `every`.
    pub fn watch_registry(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let serving = self.clone();
        tokio::spawn(async move {
            let location = serving.engine().config().registry.clone();
            let storage = serving.engine().storage().clone();
            // Nothing seen yet: the first tick reloads, so a change made between building the
            // engine and starting this watch is not missed (a reload that changes nothing
            // served keeps the generation).
            let mut seen = None;
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let now = match index_version(&storage).await {
                    Ok(now) if now == seen => continue,
                    Ok(now) => now,
                    Err(e) => {
                        tracing::warn!(registry = %location, "checking the registry for changes: {e}");
                        continue;
                    }
                };
                let s = serving.clone();
                // A refused model is tried again at the next tick (its files may still have been
                // arriving); the index counts as seen once every change is in.
                match tokio::task::spawn_blocking(move || s.reload()).await {
                    Ok(Ok((report, _))) if report.refused.is_empty() => seen = now,
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!("reload failed, the current models keep serving: {e}"),
                    Err(e) => tracing::error!("reload task failed: {e}"),
                }
            }
        })
    }
}

/// The version (an ETag) of the registry's `registry.json`; the read blocks, so it runs off the
/// async threads.
async fn index_version(storage: &Storage) -> Result<Option<Version>, String> {
    let storage = storage.clone();
    match tokio::task::spawn_blocking(move || storage.version(INDEX_FILE)).await {
        Ok(read) => read.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fn read_split(path: &Path) -> Result<Option<Split>, ServeError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| ServeError::setup(path.display().to_string(), e))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ServeError::setup(path.display().to_string(), e)),
    }
}
