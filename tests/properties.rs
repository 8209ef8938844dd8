//! Property tests of everything that reads outside input: the Calibrate and CalibrateBatch
//! validators with the engine behind them, Publish with journal replay, the OIP infer
//! validator, CSV and Parquet ingest, and the journal reader. Arbitrary input never panics and
//! never yields a NaN, infinite or negative margin; generated *valid* input is accepted with
//! finite, non-negative margins. Case counts are bounded so `make test` stays fast.

use std::collections::HashMap;
use std::sync::OnceLock;

use foresight_serve::convert::{InferInput, market_quotes};
use foresight_serve::engine::{AccountRequest, ForecastCache};
use foresight_serve::journal::{Durability, Journal, read_lines};
use foresight_serve::market::MarketState;
use foresight_serve::oip::{self, model_infer_request::InferInputTensor};
use foresight_serve::proto::{self, position::Instrument};
use foresight_serve::series::Update;
use foresight_serve::{Engine, EngineConfig, ServeError};
use proptest::prelude::*;

use crate::util::root;

/// `cases` per property from a fixed seed, so a failure in CI reproduces; `PROPTEST_RNG_SEED`
/// explores others.
fn config(cases: u32) -> ProptestConfig {
    let seed = std::env::var("PROPTEST_RNG_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20_261_201);
    ProptestConfig { cases, failure_persistence: None, rng_seed: proptest::test_runner::RngSeed::Fixed(seed), ..ProptestConfig::default() }
}

/// One engine on the committed registry for every case (loading checks every model).
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::load(EngineConfig::new(root().join("models"))).unwrap())
}

/// Any f64, with the awkward ones (NaN, ±∞, ±0, subnormal, huge) often.
fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![proptest::num::f64::ANY, Just(f64::NAN), Just(f64::INFINITY), Just(-1.0), Just(0.0), Just(1e308), -1e6..1e6f64]
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), Just("BTC".to_string()), Just("USD".to_string()), proptest::collection::vec(any::<char>(), 0..300).prop_map(String::from_iter)]
}

fn any_date() -> impl Strategy<Value = String> {
    prop_oneof![(0u32..400).prop_map(|d| (chrono::NaiveDate::from_ymd_opt(2023, 1, 1).unwrap() + chrono::Days::new(d.into())).to_string()), any_text()]
}

fn any_day() -> impl Strategy<Value = proto::DailyObservation> {
    (any_date(), any_f64(), proptest::option::of(any_f64()), proptest::option::of(any_f64()))
        .prop_map(|(date, close, realized_variance, implied_vol_percent)| proto::DailyObservation { date, close, realized_variance, implied_vol_percent })
}

fn any_market() -> impl Strategy<Value = proto::AssetMarket> {
    (any_text(), any_f64(), any_f64(), proptest::option::of(any_f64()), proptest::collection::vec(any_day(), 0..40), proptest::option::of(any_f64())).prop_map(
        |(asset, spot, implied_vol_fraction, depth_notional, history, data_age_seconds)| proto::AssetMarket {
            asset,
            spot,
            implied_vol_fraction,
            depth_notional,
            history,
            data_age_seconds,
        },
    )
}

fn any_position() -> impl Strategy<Value = proto::Position> {
    let instrument = prop_oneof![
        Just(None),
        Just(Some(Instrument::Linear(proto::Linear {}))),
        (any::<i32>(), any_f64(), any_f64()).prop_map(|(r#type, strike, expiry_years)| Some(Instrument::Option(proto::OptionTerms { r#type, strike, expiry_years }))),
        (any_f64(), any_f64(), any_f64()).prop_map(|(delta, gamma, vega)| Some(Instrument::Greeks(proto::Greeks { delta, gamma, vega }))),
    ];
    (any_text(), any_f64(), instrument).prop_map(|(underlying, quantity, instrument)| proto::Position { underlying, quantity, instrument })
}

fn any_request() -> impl Strategy<Value = proto::CalibrateRequest> {
    (
        any_text(),
        proptest::collection::vec(any_position(), 0..4),
        // Arbitrary markets, and now and then one the engine can use (so arbitrary positions and
        // collateral reach the margin arithmetic).
        proptest::collection::vec(prop_oneof![3 => any_market(), 1 => valid_market("BTC")], 0..3),
        proptest::collection::vec((any_text(), any_f64()).prop_map(|(asset, quantity)| proto::CollateralBalance { asset, quantity }), 0..3),
        proptest::option::of(any_f64()),
        any::<bool>(),
    )
        .prop_map(|(account_id, positions, markets, collateral, previous_initial_margin, explain)| proto::CalibrateRequest {
            explain,
            account_id,
            positions,
            markets,
            collateral,
            previous_initial_margin,
        })
}

/// A sensible market: consecutive days, a random walk of closes, realized variance and DVOL
/// on most days.
fn valid_market(asset: &'static str) -> impl Strategy<Value = proto::AssetMarket> {
    let day = (-0.08..0.08f64, proptest::option::weighted(0.9, 1e-6..1e-2f64), proptest::option::weighted(0.8, 10.0..150.0f64));
    (10.0..1e5f64, proptest::collection::vec(day, 31..90), 0.05..3.0f64, proptest::option::of(1e3..1e9f64), proptest::option::of(0.0..1e4f64)).prop_map(
        move |(start, days, implied_vol_fraction, depth_notional, data_age_seconds)| {
            let first = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
            let mut close = start;
            let history: Vec<proto::DailyObservation> = days
                .iter()
                .enumerate()
                .map(|(i, (r, rv, iv))| {
                    close *= r.exp();
                    proto::DailyObservation { date: (first + chrono::Days::new(i as u64)).to_string(), close, realized_variance: *rv, implied_vol_percent: *iv }
                })
                .collect();
            proto::AssetMarket { asset: asset.into(), spot: close, implied_vol_fraction, depth_notional, history, data_age_seconds }
        },
    )
}

fn valid_position(assets: &'static [&'static str]) -> impl Strategy<Value = proto::Position> {
    let instrument = prop_oneof![
        Just(Some(Instrument::Linear(proto::Linear {}))),
        (prop_oneof![Just(1), Just(2)], 0.5..2.0f64, 0.0..2.0f64).prop_map(|(r#type, moneyness, expiry_years)| Some(Instrument::Option(proto::OptionTerms {
            r#type,
            strike: moneyness,
            expiry_years
        }))),
        (-1e3..1e3f64, -10.0..10.0f64, -1e3..1e3f64).prop_map(|(delta, gamma, vega)| Some(Instrument::Greeks(proto::Greeks { delta, gamma, vega }))),
    ];
    (proptest::sample::select(assets), -1e6..1e6f64, instrument).prop_map(|(asset, quantity, instrument)| proto::Position { underlying: asset.into(), quantity, instrument })
}

fn valid_request() -> impl Strategy<Value = proto::CalibrateRequest> {
    const ASSETS: &[&str] = &["BTC", "XYZ"];
    (
        proptest::collection::vec(b'a'..=b'z', 1..4).prop_map(|s| format!("acct-{}", String::from_utf8_lossy(&s))),
        proptest::collection::vec(valid_position(ASSETS), 1..6),
        valid_market("BTC"),
        valid_market("XYZ"),
        proptest::collection::vec((proptest::sample::select(&["USD", "BTC", "XYZ"][..]), 0.0..1e6f64), 0..3),
        proptest::option::of(0.0..1e7f64),
        any::<bool>(),
    )
        .prop_map(|(account_id, mut positions, btc, xyz, collateral, previous_initial_margin, explain)| {
            // Strikes were drawn as moneyness: scale them by the underlying's spot.
            for p in &mut positions {
                if let Some(Instrument::Option(o)) = &mut p.instrument {
                    o.strike *= if p.underlying == "BTC" { btc.spot } else { xyz.spot };
                }
            }
            let collateral = collateral.into_iter().map(|(asset, quantity)| proto::CollateralBalance { asset: asset.into(), quantity }).collect();
            proto::CalibrateRequest { explain, account_id, positions, markets: vec![btc, xyz], collateral, previous_initial_margin }
        })
}

/// Every margin a calibration produced is finite and non-negative; a refusal names the field
/// at fault (or, for a margin too large to represent, says so).
fn check_margins(request: &proto::CalibrateRequest, shared: &HashMap<String, foresight_serve::series::MarketInput>) -> Result<(), String> {
    let named = |e: ServeError| -> String {
        match &e {
            ServeError::Invalid { field, .. } => assert!(!field.is_empty(), "{e}"),
            ServeError::Internal(m) => assert!(m.contains("non-finite margin"), "only an overflowing margin is an internal error: {e}"),
            other => panic!("unexpected refusal: {other}"),
        }
        e.to_string()
    };
    let account = AccountRequest::try_from(request).map_err(named)?;
    let calibration = engine().calibrate(&account, shared, None, &ForecastCache::default()).map_err(named)?;
    for arm in std::iter::once(&calibration.posted).chain(&calibration.shadow) {
        let m = &arm.margin.posted;
        for (what, v) in [("initial", m.initial_margin), ("maintenance", m.maintenance_margin), ("multiplier", m.multiplier)] {
            assert!(v.is_finite() && v >= 0.0, "arm {}: {what} margin {v} for {request:?}", arm.arm);
        }
        for c in &arm.collateral {
            assert!(c.value.is_finite() && c.value >= 0.0 && (0.0..=1.0).contains(&c.haircut), "collateral {c:?}");
        }
        // Asked for, the posted arm's grids (each underlying's worst forward loss is its core IM);
        // shadow arms' are never worked out.
        let posted = std::ptr::eq(arm, &calibration.posted);
        assert_eq!(arm.grids.len(), if request.explain && posted { arm.margin.forward.underlyings.len() } else { 0 });
        for u in &arm.margin.forward.underlyings {
            if let Some(grid) = arm.grids.get(&u.underlying) {
                let worst = grid.forward.iter().map(|(_, loss)| *loss).fold(f64::NEG_INFINITY, f64::max);
                assert_eq!(worst.max(0.0), u.core_im, "{}", u.underlying);
                assert_eq!(grid.forward.len(), grid.reactive.len());
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn any_calibrate_request_is_answered_or_refused_without_a_bad_margin(request in any_request()) {
        let _ = check_margins(&request, &HashMap::new());
    }
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn a_valid_calibrate_request_gets_finite_non_negative_margins(request in valid_request()) {
        prop_assert_eq!(check_margins(&request, &HashMap::new()), Ok(()));
    }

    /// A batch: the shared markets are checked once, then each account over them.
    #[test]
    fn a_batch_over_shared_markets_gets_finite_margins_or_named_errors(
        shared in proptest::collection::vec(any_market(), 0..3),
        valid in valid_request(),
        accounts in proptest::collection::vec(any_request(), 0..4),
    ) {
        let shared_inputs = match market_quotes(&shared, |i| format!("markets[{i}]")).and_then(|q| Engine::resolve_markets(&q, None)) {
            Ok(inputs) => inputs,
            Err(e) => {
                prop_assert!(e.to_string().starts_with("markets["), "{e}");
                return Ok(());
            }
        };
        // The valid account's markets shared by the batch instead of given with the account.
        let valid_shared = Engine::resolve_markets(&market_quotes(&valid.markets, |i| format!("markets[{i}]")).unwrap(), None).unwrap();
        let mut own_less = valid.clone();
        own_less.markets.clear();
        prop_assert_eq!(check_margins(&own_less, &valid_shared), Ok(()));
        for account in &accounts {
            let _ = check_margins(account, &shared_inputs);
        }
    }
}

/// A published update over a small space of assets, sequences, times and prices, with the
/// awkward values among them.
fn any_update() -> impl Strategy<Value = proto::MarketUpdate> {
    use proto::market_update::Body;
    // 2024-01-02T00:00:00Z and a few days around it.
    let t0 = 1_704_153_600_000i64;
    let tick = (prop_oneof![(-2 * 86_400_000..5 * 86_400_000i64).prop_map(move |d| t0 + d), any::<i64>()], any_f64(), proptest::option::of(any_f64()), proptest::option::of(any_f64()))
        .prop_map(|(timestamp_ms, price, implied_vol_percent, depth_notional)| Some(Body::Tick(proto::Tick { timestamp_ms, price, implied_vol_percent, depth_notional })));
    let body = prop_oneof![Just(None), tick, any_day().prop_map(|d| Some(Body::Day(d)))];
    (proptest::sample::select(&["BTC", "ETH", ""][..]), 0u64..30, body).prop_map(|(asset, sequence, body)| proto::MarketUpdate { asset: asset.into(), sequence, body })
}

proptest! {
    #![proptest_config(config(48))]

    /// Publish never panics, keeps only finite, positive prices and finite, non-negative
    /// variance, and a restart (journal replay) rebuilds exactly the state that was acknowledged.
    #[test]
    fn published_updates_replay_to_the_same_valid_state(calls in proptest::collection::vec(proptest::collection::vec(any_update(), 1..8), 1..5)) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let summaries = runtime.block_on(async {
            let state = MarketState::open(dir.path(), Durability::Buffered).unwrap();
            for call in &calls {
                let updates: Vec<_> = call.iter().map(Update::try_from).collect();
                let acks = state.publish(&updates).await.unwrap();
                assert_eq!(acks.len(), call.len());
                for a in acks.iter().filter(|a| a.status == foresight_serve::market::AckStatus::Rejected) {
                    assert!(a.error.contains(':'), "a rejection names its field: {}", a.error);
                }
            }
            ["BTC", "ETH"].map(|asset| {
                if let Some(input) = state.input(asset) {
                    assert!(input.series.closes.iter().all(|c| c.is_finite() && *c > 0.0));
                    assert!(input.series.rv.iter().flatten().all(|v| v.is_finite() && *v >= 0.0));
                    assert!(input.implied_vol_fraction.is_finite() && input.implied_vol_fraction >= 0.0);
                }
                state.state(asset)
            })
        });
        let reopened = MarketState::open(dir.path(), Durability::Buffered).unwrap();
        prop_assert_eq!(summaries, ["BTC", "ETH"].map(|asset| reopened.state(asset)));
    }

    /// Whatever bytes a journal holds, reading it and opening it for writing never panic: the
    /// result is the good lines, a cut tail, or an error naming the file.
    #[test]
    fn any_journal_bytes_are_read_cut_or_refused(good in 0u32..6, tail in proptest::collection::vec(any::<u8>(), 0..200), middle in proptest::option::of(0usize..400)) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        runtime.block_on(async {
            let journal = Journal::open(&path, Durability::Buffered).unwrap();
            for n in 0..good {
                journal.append(&[serde_json::json!({ "n": n })]).await.unwrap();
            }
        });
        let mut bytes = std::fs::read(&path).unwrap();
        match middle {
            Some(at) if !bytes.is_empty() => {
                let at = at % bytes.len();
                bytes.splice(at..at, tail.iter().copied());
            }
            _ => bytes.extend_from_slice(&tail),
        }
        std::fs::write(&path, &bytes).unwrap();
        match read_lines::<serde_json::Value>(&path) {
            Ok(rows) => {
                prop_assert!(rows.len() <= good as usize + tail.iter().filter(|b| **b == b'\n').count());
                let journal = runtime.block_on(async { Journal::open(&path, Durability::Buffered) });
                prop_assert!(journal.is_ok(), "{:?}", journal.err());
            }
            Err(e) => prop_assert!(e.to_string().contains("j.jsonl"), "{e}"),
        }
    }
}

fn any_infer_request() -> impl Strategy<Value = oip::ModelInferRequest> {
    let input = (
        proptest::sample::select(&["FP64", "FP32", ""][..]),
        proptest::collection::vec(prop_oneof![Just(1i64), Just(2), Just(3), Just(4), Just(5), Just(-1), Just(0), any::<i64>()], 0..4),
        proptest::option::of(proptest::collection::vec(any_f64(), 0..13)),
    )
        .prop_map(|(datatype, shape, values)| InferInputTensor {
            name: "har_components".into(),
            datatype: datatype.into(),
            shape,
            parameters: Default::default(),
            contents: values.map(|fp64_contents| oip::InferTensorContents { fp64_contents, ..Default::default() }),
        });
    (
        proptest::collection::vec(input, 0..3),
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..2),
        proptest::collection::vec(proptest::sample::select(&["variance_h1", "variance_h5", "p_high_regime_h5", "nope"][..]), 0..3),
    )
        .prop_map(|(inputs, raw_input_contents, outputs)| oip::ModelInferRequest {
            model_name: String::new(),
            model_version: String::new(),
            id: String::new(),
            parameters: Default::default(),
            inputs,
            outputs: outputs.into_iter().map(|name| oip::model_infer_request::InferRequestedOutputTensor { name: name.into(), parameters: Default::default() }).collect(),
            raw_input_contents,
        })
}

proptest! {
    #![proptest_config(config(128))]

    /// The OIP validator never panics; what it accepts runs and answers a value per row.
    #[test]
    fn any_infer_request_is_run_or_refused_by_field(mut request in any_infer_request(), which in any::<proptest::sample::Index>()) {
        let served = engine().served();
        let (_, served) = served[which.index(served.len())];
        request.model_name = served.card.name.clone();
        match InferInput::try_from(&request).and_then(|input| input.check_for(served).map(|()| input)) {
            Ok(input) => {
                let outputs = served.run_rows(&input.values).unwrap();
                let rows = input.values.len() / served.row_width();
                let answer = input.response(&request, "1".into(), outputs);
                for o in &answer.outputs {
                    prop_assert_eq!(o.shape.clone(), vec![rows as i64]);
                }
            }
            Err(e) => prop_assert!(matches!(&e, ServeError::Invalid { field, .. } if !field.is_empty()), "{e}"),
        }
    }
}

proptest! {
    #![proptest_config(config(32))]

    /// CSV and Parquet ingest never panic on any bytes, and an error names the file.
    #[test]
    fn any_file_is_loaded_or_refused_naming_it(bytes in proptest::collection::vec(any::<u8>(), 0..600), parquet in any::<bool>(), header in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(if parquet { "x.parquet" } else { "x.csv" });
        let contents = if header && !parquet { [b"date,open,high,low,close,volume\n".as_slice(), &bytes].concat() } else { bytes };
        std::fs::write(&path, &contents).unwrap();
        for result in [
            foresight_train::data::load_ohlcv(&path).map(|_| ()),
            foresight_train::data::load_daily_closes(&path).map(|_| ()),
            foresight_train::data::load_values(&path, None, false).map(|_| ()),
        ] {
            if let Err(e) = result {
                prop_assert!(e.to_string().contains("x."), "{e}");
            }
        }
    }

    /// A valid `date,close` file loads with exactly its values; a bad value is refused naming
    /// its row.
    #[test]
    fn a_valid_close_file_loads_exactly_and_a_bad_row_is_named(closes in proptest::collection::vec(1e-3..1e7f64, 2..60), bad in proptest::option::of((any::<proptest::sample::Index>(), prop_oneof![Just("nan"), Just("-3"), Just("x"), Just("")]))) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("closes.csv");
        let first = chrono::NaiveDate::from_ymd_opt(2020, 1, 1).unwrap();
        let mut rows: Vec<String> = closes.iter().enumerate().map(|(i, c)| format!("{},{c}", first + chrono::Days::new(i as u64))).collect();
        let bad_row = bad.map(|(i, value)| {
            let i = i.index(rows.len());
            rows[i] = format!("{},{value}", first + chrono::Days::new(i as u64));
            i
        });
        std::fs::write(&path, format!("date,close\n{}\n", rows.join("\n"))).unwrap();
        match (foresight_train::data::load_daily_closes(&path), bad_row) {
            (Ok(values), None) => prop_assert_eq!(values.values, closes),
            (Err(e), Some(_)) => prop_assert!(e.to_string().contains("closes.csv"), "{e}"),
            (Ok(values), Some(row)) => return Err(TestCaseError::fail(format!("row {row} was accepted: {:?}", values.values.get(row)))),
            (Err(e), None) => return Err(TestCaseError::fail(format!("a valid file was refused: {e}"))),
        }
    }
}
