//! Soak with faults: the real `foresight-serve` under mixed load (publishing ticks, unary and
//! batch calibrations, hot reloads) is killed with SIGKILL at random moments, again and again,
//! on the same state folder. After every kill: each acknowledged market update is in the
//! journal exactly once, nothing is stored twice, the audit log opens, and the restarted
//! service's margin on the published state equals a recomputation in this process from a copy
//! of the state it restarted from.
//!
//! `make test` runs 20 kills; `scripts/soak.sh` runs the long version and prints its counts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foresight_serve::audit::AuditRecord;
use foresight_serve::engine::{AccountRequest, ForecastCache};
use foresight_serve::journal::{Durability, damaged_tail, read_lines, read_numbered_lines};
use foresight_serve::market::MarketState;
use foresight_serve::proto::calibration_service_client::CalibrationServiceClient;
use foresight_serve::proto::market_data_service_client::MarketDataServiceClient;
use foresight_serve::proto::model_service_client::ModelServiceClient;
use foresight_serve::proto::{self, AckStatus, CalibrateRequest, MarketUpdate, market_update::Body, position};
use foresight_serve::series::Update;
use foresight_serve::{Engine, EngineConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::serve_ops::{btc_updates, publish, scratch_registry, start_binary_on, start_binary_with};

/// What a soak run did.
#[derive(Debug, Default)]
pub struct SoakCounts {
    /// SIGKILLs of the service.
    pub kills: usize,
    /// Market updates acknowledged (stored or duplicate).
    pub acknowledged_updates: usize,
    /// Calibrations answered (unary accounts plus batch accounts).
    pub calibrations: usize,
    /// Audit lines written (read back at the end).
    pub audited: usize,
    /// Hot reloads answered.
    pub reloads: usize,
    /// Restarts whose margin matched the recomputation.
    pub recomputed: usize,
    /// Journal or audit files a kill left with a damaged tail (a torn write) for the restart to cut.
    pub tails_cut: usize,
}

/// An account on the published BTC state: a future and an option, sized by `k`.
fn account(k: u64, spot: f64) -> CalibrateRequest {
    let option = proto::OptionTerms { r#type: proto::OptionType::Call as i32, strike: spot * (0.8 + 0.01 * (k % 40) as f64), expiry_years: 0.05 + 0.01 * (k % 50) as f64 };
    CalibrateRequest {
        explain: false,
        account_id: format!("soak-{k}"),
        positions: vec![
            proto::Position { underlying: "BTC".into(), quantity: 1.0 + (k % 7) as f64, instrument: Some(position::Instrument::Linear(proto::Linear {})) },
            proto::Position { underlying: "BTC".into(), quantity: -((k % 3) as f64) - 0.5, instrument: Some(position::Instrument::Option(option)) },
        ],
        markets: vec![],
        previous_initial_margin: None,
        collateral: vec![],
    }
}

/// The acknowledged updates, by asset and sequence.
type Acked = Arc<Mutex<BTreeSet<(String, u64)>>>;

/// Streams ticks (sequences from `next`) until the stream breaks; records every
/// acknowledgement. Returns the next sequence to use.
async fn publish_ticks(address: String, mut next: u64, last_close: f64, acked: Acked) -> u64 {
    let Ok(mut client) = MarketDataServiceClient::connect(address).await else { return next };
    let (sender, receiver) = tokio::sync::mpsc::channel::<MarketUpdate>(16);
    let Ok(response) = client.publish(tokio_stream::wrappers::ReceiverStream::new(receiver)).await else { return next };
    let mut acks = response.into_inner();
    let reader = tokio::spawn(async move {
        while let Ok(Some(ack)) = acks.message().await {
            if ack.status == AckStatus::Stored as i32 || ack.status == AckStatus::Duplicate as i32 {
                acked.lock().unwrap().insert((ack.asset, ack.sequence));
            }
        }
    });
    loop {
        let price = last_close * (1.0 + 0.0005 * ((next % 9) as f64 - 4.0));
        let tick = proto::Tick { timestamp_ms: chrono::Utc::now().timestamp_millis(), price, implied_vol_percent: Some(45.0), depth_notional: Some(5e7) };
        let update = MarketUpdate { asset: "BTC".into(), sequence: next, body: Some(Body::Tick(tick)) };
        // A sequence counts as used once sent: after a kill it may or may not be stored.
        next += 1;
        if sender.send(update).await.is_err() || reader.is_finished() {
            return next;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Unary and batch calibrations until the service goes; counts the answers. Every answer has
/// finite, non-negative margins.
async fn calibrate(address: String, spot: f64, seed: u64, answered: Arc<Mutex<usize>>) {
    let Ok(mut client) = CalibrationServiceClient::connect(address).await else { return };
    for round in 0u64.. {
        let k = seed * 1_000_000 + round;
        let ok = if round % 4 == 3 {
            let accounts: Vec<_> = (0..25).map(|i| account(k * 25 + i, spot)).collect();
            match client.calibrate_batch(proto::CalibrateBatchRequest { accounts, markets: vec![] }).await {
                Ok(r) => {
                    for result in r.into_inner().results {
                        if let Some(proto::calibrate_result::Outcome::Margin(m)) = result.outcome {
                            assert!(m.initial_margin.is_finite() && m.initial_margin >= 0.0, "{m:?}");
                            *answered.lock().unwrap() += 1;
                        }
                    }
                    true
                }
                Err(_) => false,
            }
        } else {
            match client.calibrate(account(k, spot)).await {
                Ok(r) => {
                    let m = r.into_inner();
                    assert!(m.initial_margin.is_finite() && m.initial_margin >= 0.0 && m.maintenance_margin.is_finite(), "{m:?}");
                    *answered.lock().unwrap() += 1;
                    true
                }
                Err(_) => false,
            }
        };
        if !ok {
            return;
        }
        // Paced, so the audit log of a long soak stays a size that is read back in seconds.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Hot reloads until the service goes.
async fn reload(address: String, answered: Arc<Mutex<usize>>) {
    let Ok(mut models) = ModelServiceClient::connect(address).await else { return };
    while models.reload(proto::ReloadRequest {}).await.is_ok() {
        *answered.lock().unwrap() += 1;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

/// Checks the state folder of a killed service: every acknowledged update is stored exactly
/// once and no sequence is stored twice.
fn check_stored(state: &Path, acked: &BTreeSet<(String, u64)>) {
    let records: Vec<(usize, Update)> = read_numbered_lines(&state.join("market.jsonl")).unwrap();
    let snapshot_last: BTreeMap<String, u64> = std::fs::read(state.join("market.snapshot.json"))
        .ok()
        .map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap())
        .and_then(|v| v.as_object().cloned())
        .map(|o| o.into_iter().map(|(asset, s)| (asset, s["last_sequence"].as_u64().unwrap())).collect())
        .unwrap_or_default();
    let mut stored: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for (_, r) in &records {
        *stored.entry((r.asset().to_string(), r.sequence())).or_default() += 1;
    }
    if let Some(((asset, sequence), n)) = stored.iter().find(|(_, n)| **n > 1) {
        panic!("{asset} sequence {sequence} is stored {n} times");
    }
    for (asset, sequence) in acked {
        let in_snapshot = snapshot_last.get(asset).is_some_and(|last| sequence <= last);
        assert!(in_snapshot || stored.contains_key(&(asset.clone(), *sequence)), "{asset} sequence {sequence} was acknowledged and is not stored");
    }
}

/// Copies the files of `from` into a fresh folder.
fn copy_state(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, to.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    to
}

/// Runs the soak: `kills` SIGKILLs at random moments (seeded), checking after each.
pub async fn soak(kills: usize, seed: u64) -> SoakCounts {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let registry = scratch_registry();
    let state = tempfile::tempdir().unwrap();
    let engine = Engine::load(EngineConfig::new(registry.path())).unwrap();
    let acked: Acked = Arc::default();
    let (calibrations, reloads) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(0)));
    let mut counts = SoakCounts::default();

    // History first, so calibrations have a state to work on.
    let backfill = btc_updates(0);
    let last_close = match backfill.last().and_then(|u| u.body.clone()) {
        Some(Body::Day(d)) => d.close,
        _ => unreachable!("backfill ends with a day"),
    };
    let mut next_sequence = backfill.len() as u64 + 1;
    {
        let (_process, address) = start_binary_on(registry.path(), state.path(), 0).await;
        for ack in publish(&address, backfill).await {
            assert_eq!(ack.status, AckStatus::Stored as i32);
            acked.lock().unwrap().insert((ack.asset, ack.sequence));
        }
    }

    for round in 0..kills {
        // Both ways of writing the journals: a writer thread with group commit, and buffered
        // lines written by the calling task.
        let durability = if round % 2 == 0 { "group-commit" } else { "buffered" };
        let (mut process, address) = start_binary_with(registry.path(), state.path(), 0, durability).await;
        // The restarted service against a recomputation on the state it restarted from.
        let copy = copy_state(state.path());
        let probe = account(round as u64, last_close);
        let served = CalibrationServiceClient::connect(address.clone()).await.unwrap().calibrate(probe.clone()).await.unwrap().into_inner();
        let market = MarketState::open(copy.path(), Durability::Buffered).unwrap();
        let recomputed = engine.calibrate(&AccountRequest::try_from(&probe).unwrap(), &Default::default(), Some(&market), &ForecastCache::default()).unwrap();
        assert_eq!(served.initial_margin, recomputed.posted.margin.posted.initial_margin, "round {round}: the restarted service's margin");
        assert_eq!(served.maintenance_margin, recomputed.posted.margin.posted.maintenance_margin);
        counts.recomputed += 1;

        // Mixed load, then SIGKILL at a random moment.
        let publisher = tokio::spawn(publish_ticks(address.clone(), next_sequence, last_close, acked.clone()));
        let calibrators: Vec<_> = (0..2).map(|i| tokio::spawn(calibrate(address.clone(), last_close, (round * 2 + i) as u64, calibrations.clone()))).collect();
        let reloader = tokio::spawn(reload(address.clone(), reloads.clone()));
        let started = Instant::now();
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
        process.0.kill().unwrap();
        process.0.wait().unwrap();
        counts.kills += 1;
        next_sequence = publisher.await.unwrap();
        for c in calibrators {
            c.await.unwrap();
        }
        reloader.await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(60), "round {round} hung");
        check_stored(state.path(), &acked.lock().unwrap());
        // What the restart will find to cut (an error here: damage inside a file).
        for file in ["market.jsonl", "audit.jsonl"] {
            counts.tails_cut += usize::from(damaged_tail(&state.path().join(file)).unwrap().is_some());
        }
    }
    // Every audited margin reads back.
    let audited: Vec<AuditRecord> = read_lines(&state.path().join("audit.jsonl")).unwrap();
    counts.audited = audited.len();
    counts.acknowledged_updates = acked.lock().unwrap().len();
    counts.calibrations = *calibrations.lock().unwrap();
    counts.reloads = *reloads.lock().unwrap();
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_killed_20_times_under_load_loses_nothing_acknowledged() {
    let counts = soak(20, 7).await;
    println!("{counts:?}");
    assert_eq!((counts.kills, counts.recomputed), (20, 20));
    // Beyond the 400 backfill days: ticks acknowledged in most rounds, calibrations, reloads.
    assert!(counts.acknowledged_updates > 400 + 20 * 10 && counts.calibrations > 20 * 10 && counts.reloads > 20, "{counts:?}");
}

/// The long soak (`scripts/soak.sh`): `SOAK_KILLS` kills (default 200), seed `SOAK_SEED`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: scripts/soak.sh runs it"]
async fn soak_long() {
    let kills = std::env::var("SOAK_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let seed = std::env::var("SOAK_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let started = Instant::now();
    let counts = soak(kills, seed).await;
    println!("soak: {kills} kills (seed {seed}) in {:.0} s: {counts:?}", started.elapsed().as_secs_f64());
    assert_eq!(counts.kills, kills);
}
