//! The gRPC service end to end: the real server on a loopback port, called with the generated
//! client, serving the committed registry's champions on the bundled BTC history.

use std::path::Path;
use std::sync::Arc;

use foresight_serve::proto::calibration_service_client::CalibrationServiceClient;
use foresight_serve::proto::{self, AssetMarket, CalibrateRequest, DailyObservation, ForecastRequest, Position, position};
use foresight_serve::server::ServerOptions;
use foresight_serve::{EngineConfig, Serving, ServingConfig};
use foresight_train::evaluate::market_days;
use tonic::Code;

use crate::util::{data, root};

/// BTC's last `days` days as the service takes them inline: close, 2-hour realized variance, DVOL.
pub fn btc_market(days: usize) -> AssetMarket {
    let observations: Vec<DailyObservation> = market_days(&data("btc_usdt_1d.csv"), &data("btc_usdt_2h.csv"), Some(&data("btc_dvol_1d.csv")))
        .unwrap()
        .into_iter()
        .map(|d| DailyObservation { date: d.date.to_string(), close: d.close, realized_variance: d.realized_variance, implied_vol_percent: d.implied_vol_percent })
        .collect();
    let history = observations[observations.len() - days..].to_vec();
    let spot = history.last().unwrap().close;
    AssetMarket { asset: "BTC".into(), spot, implied_vol_fraction: 0.45, depth_notional: Some(5e7), history, data_age_seconds: Some(2.0) }
}

/// Starts the real server (every service, as the binary does) on a free loopback port.
pub async fn serve(config: ServingConfig) -> (std::net::SocketAddr, Arc<Serving>) {
    serve_with(config, ServerOptions::default()).await
}

/// [`serve`] with transport and security options.
pub async fn serve_with(config: ServingConfig, options: ServerOptions) -> (std::net::SocketAddr, Arc<Serving>) {
    let serving = Arc::new(Serving::open(config).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let s = serving.clone();
    tokio::spawn(async move { foresight_serve::server::run(s, &options, listener, std::future::pending()).await.unwrap() });
    (address, serving)
}

/// Serves the registry at `registry`, keeping state in `state_dir` when given.
pub fn config(registry: &Path, state_dir: Option<&Path>) -> ServingConfig {
    let mut config = ServingConfig::new(EngineConfig::new(registry));
    config.state_dir = state_dir.map(Path::to_path_buf);
    config
}

/// Starts the real server on the committed registry, on a free loopback port.
async fn start_server() -> std::net::SocketAddr {
    serve(config(&root().join("models"), None)).await.0
}

async fn client() -> CalibrationServiceClient<tonic::transport::Channel> {
    CalibrationServiceClient::connect(format!("http://{}", start_server().await)).await.unwrap()
}

pub fn linear(quantity: f64) -> Position {
    Position { underlying: "BTC".into(), quantity, instrument: Some(position::Instrument::Linear(proto::Linear {})) }
}

pub fn request(positions: Vec<Position>, market: AssetMarket) -> CalibrateRequest {
    CalibrateRequest { explain: false, account_id: "acct-1".into(), positions, markets: vec![market], previous_initial_margin: None, collateral: vec![] }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibrate_serves_the_champion_with_its_components() {
    let mut client = client().await;
    let market = btc_market(400);
    let spot = market.spot;
    let call = Position {
        underlying: "BTC".into(),
        quantity: -1.0,
        instrument: Some(position::Instrument::Option(proto::OptionTerms { r#type: proto::OptionType::Call as i32, strike: spot, expiry_years: 30.0 / 365.0 })),
    };
    let response = client.calibrate(request(vec![linear(2.0), call], market.clone())).await.unwrap().into_inner();
    assert_eq!(response.account_id, "acct-1");
    assert_eq!(response.arm, "model:champion");
    assert!(response.initial_margin.is_finite() && response.initial_margin > 0.0);
    assert!((response.maintenance_margin - 0.5 * response.initial_margin).abs() < 1e-9);
    assert!((response.multiplier - response.initial_margin / response.reactive_initial_margin).abs() < 1e-9);
    let c = &response.components[0];
    assert_eq!(c.model, "btc-dvol-har-x@v1", "the registry's BTC champion");
    assert_eq!(c.fallback, None, "{:?}", c.fallback);
    assert!(c.forward_rate > 0.0 && c.forward_rate < 0.5 && c.reactive_rate > 0.0);
    assert_eq!(c.forecast_sigma.iter().map(|h| h.horizon_days).collect::<Vec<_>>(), vec![1, 5, 22]);
    assert_eq!(c.regime_probability.len(), 3, "btc-regime serves the regime probability");
    assert!(c.liquidity_addon > 0.0);

    // A unit long needs exactly the posted rate × spot before the rails.
    let unit = client.calibrate(request(vec![linear(1.0)], market.clone())).await.unwrap().into_inner();
    let forward = unit.components[0].forward_rate;
    assert!((unit.raw_multiplier * unit.reactive_initial_margin - (forward * spot + unit.components[0].liquidity_addon)).abs() < 1e-6 * spot);

    let forecast = client.forecast(ForecastRequest { market: Some(market) }).await.unwrap().into_inner();
    assert_eq!(forecast.model, "btc-dvol-har-x@v1");
    assert!(forecast.sigma.iter().all(|s| s.value > 0.0 && s.value < 0.2));
    assert_eq!(forecast.regime_model, "btc-regime@v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_data_and_missing_implied_vol_are_handled_explicitly() {
    let mut client = client().await;
    let mut market = btc_market(400);
    market.data_age_seconds = Some(3_600.0);
    let c = client.calibrate(request(vec![linear(1.0)], market.clone())).await.unwrap().into_inner().components.remove(0);
    assert!(c.fallback.as_deref().is_some_and(|f| f.contains("stale")), "{:?}", c.fallback);
    assert_eq!(c.forward_rate, c.reactive_rate, "the reactive arm serves");
    // Without DVOL the HAR-X champion falls back to its log-HAR inside the graph: still a forecast.
    market.data_age_seconds = Some(1.0);
    for o in &mut market.history {
        o.implied_vol_percent = None;
    }
    let c = client.calibrate(request(vec![linear(1.0)], market)).await.unwrap().into_inner().components.remove(0);
    assert_eq!(c.fallback, None);
    assert!(c.forward_rate > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_invalid_arguments_naming_the_field() {
    let mut client = client().await;
    let market = btc_market(60);
    let cases: Vec<(CalibrateRequest, &str)> = vec![
        (request(vec![], market.clone()), "positions"),
        (request(vec![linear(f64::NAN)], market.clone()), "positions[0].quantity"),
        (request(vec![Position { underlying: "ETH".into(), ..linear(1.0) }], market.clone()), "positions[0].underlying"),
        (request(vec![linear(1.0)], AssetMarket { spot: -5.0, ..market.clone() }), "markets[0].spot"),
        (request(vec![linear(1.0)], AssetMarket { spot: f64::INFINITY, ..market.clone() }), "markets[0].spot"),
        (request(vec![linear(1.0)], AssetMarket { implied_vol_fraction: -0.2, ..market.clone() }), "markets[0].implied_vol_fraction"),
        (request(vec![linear(1.0)], AssetMarket { depth_notional: Some(0.0), ..market.clone() }), "markets[0].depth_notional"),
        (request(vec![linear(1e13)], market.clone()), "positions[0].quantity"),
        (CalibrateRequest { account_id: String::new(), ..request(vec![linear(1.0)], market.clone()) }, "account_id"),
        (CalibrateRequest { previous_initial_margin: Some(f64::NAN), ..request(vec![linear(1.0)], market.clone()) }, "previous_initial_margin"),
        (
            request(
                vec![Position {
                    instrument: Some(position::Instrument::Option(proto::OptionTerms { r#type: proto::OptionType::Put as i32, strike: -1.0, expiry_years: 0.1 })),
                    ..linear(1.0)
                }],
                market.clone(),
            ),
            "positions[0].option.strike",
        ),
        (
            request(vec![Position { instrument: Some(position::Instrument::Greeks(proto::Greeks { delta: f64::NAN, gamma: 0.0, vega: 0.0 })), ..linear(1.0) }], market.clone()),
            "positions[0].greeks.delta",
        ),
        (
            request(vec![linear(1.0)], {
                let mut m = market.clone();
                m.history[5].realized_variance = Some(-1e-4);
                m
            }),
            "markets[0].history[5].realized_variance",
        ),
        (request(vec![linear(1.0)], AssetMarket { history: market.history[..10].to_vec(), ..market.clone() }), "markets[0].history"),
        (
            request(vec![linear(1.0)], {
                let mut m = market.clone();
                m.history[3].close = f64::INFINITY;
                m
            }),
            "markets[0].history[3].close",
        ),
    ];
    for (req, field) in cases {
        let status = client.calibrate(req).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(status.message().starts_with(field), "{field}: {}", status.message());
    }
    let e = client.forecast(ForecastRequest { market: Some(AssetMarket { spot: -1.0, ..market.clone() }) }).await.unwrap_err();
    assert!(e.message().starts_with("market.spot"), "{e:?}");
    // Sixty days are enough for the reactive arm but not for the model's FHS rate: reactive, said so.
    let c = client.calibrate(request(vec![linear(1.0)], market)).await.unwrap().into_inner().components.remove(0);
    assert!(c.fallback.as_deref().is_some_and(|f| f.contains("forecast_failed")), "{:?}", c.fallback);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_calibrates_a_portfolio_file_with_the_cli() {
    let server = format!("http://{}", start_server().await);
    let portfolio = root().join("training/portfolio_btc.json");
    let out = {
        let server = server.clone();
        tokio::task::spawn_blocking(move || crate::util::foresight_ok(&["calibrate", "--portfolio", portfolio.to_str().unwrap(), "--server", &server])).await.unwrap()
    };
    assert!(out.starts_with("demo-account: initial margin "), "{out}");
    assert!(out.contains("model btc-dvol-har-x@v1") && out.contains("(Greeks: approximate)") && !out.contains("FALLBACK"), "{out}");
    assert!(out.contains("  collateral ") && out.contains("USDT 6000 × 1.00 − 0.0% = 6000.00") && out.contains("excess over initial margin"), "{out}");
    let err = crate::util::foresight_err(&["calibrate", "--portfolio", "training/portfolio_btc.json", "--server", "http://127.0.0.1:9", "--wait", "0"]);
    assert!(err.contains("cannot reach http://127.0.0.1:9"), "{err}");
    // A replayed day: the history ends on it and its close is the spot (the option's payoff
    // and the margin move with it), and a day the data does not have is named.
    let at = |day: &str| {
        let args = ["calibrate", "--portfolio", "training/portfolio_btc.json", "--server", server.as_str(), "--as-of", day];
        crate::util::foresight_ok(&args)
    };
    let (earlier, later) = (at("2025-06-01"), at("2025-08-01"));
    let close = |day: &str| {
        let text = std::fs::read_to_string(root().join("data/btc_usdt_1d.csv")).unwrap();
        let line = text.lines().find(|l| l.starts_with(day)).unwrap().to_string();
        line.split(',').nth(4).unwrap().parse::<f64>().unwrap()
    };
    for (out, day) in [(&earlier, "2025-06-01"), (&later, "2025-08-01")] {
        assert!(out.contains(&format!("BTC 0.05 × {:.2}", close(day))), "{day}: the collateral is valued at that day's close: {out}");
    }
    assert_ne!(earlier.lines().next(), later.lines().next(), "another day, another margin");
    let err = crate::util::foresight_err(&["calibrate", "--portfolio", "training/portfolio_btc.json", "--server", server.as_str(), "--as-of", "2031-01-01"]);
    assert!(err.contains("--as-of 2031-01-01: data/btc_usdt_1d.csv has no day 2031-01-01"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_rails_hold_margin_releases_to_the_fall_limit() {
    let mut client = client().await;
    let market = btc_market(400);
    let free = client.calibrate(request(vec![linear(1.0)], market.clone())).await.unwrap().into_inner();
    assert!(free.guards_applied.is_empty(), "{:?}", free.guards_applied);
    // Yesterday's margin was twice today's: it may fall at most 10% (the default rail).
    let previous = 2.0 * free.initial_margin;
    let held = client
        .calibrate(CalibrateRequest { previous_initial_margin: Some(previous), ..request(vec![linear(1.0)], market) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(held.guards_applied, ["max_fall"]);
    assert!((held.initial_margin - 0.9 * previous).abs() < 1e-9 * previous);
    assert!((held.maintenance_margin - 0.5 * held.initial_margin).abs() < 1e-9 * previous);
    assert_eq!(held.raw_multiplier, free.raw_multiplier, "the rails move the posted margin, not the forecast");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collateral_is_valued_with_a_haircut_from_the_forecast() {
    let mut client = client().await;
    let market = btc_market(400);
    let spot = market.spot;
    let collateral = vec![proto::CollateralBalance { asset: "USDC".into(), quantity: 1000.0 }, proto::CollateralBalance { asset: "BTC".into(), quantity: 0.1 }];
    let r = client.calibrate(CalibrateRequest { collateral, ..request(vec![linear(1.0)], market.clone()) }).await.unwrap().into_inner();
    let (cash, btc) = (&r.collateral[0], &r.collateral[1]);
    assert_eq!((cash.haircut, cash.value), (0.0, 1000.0), "cash counts in full");
    // BTC's haircut is z(99%) · forecast σ(1 day) · √2, from the champion's forecast.
    let sigma = r.components[0].forecast_sigma.iter().find(|h| h.horizon_days == 1).unwrap().value;
    assert!((btc.haircut - 2.326_347_874 * sigma * 2f64.sqrt()).abs() < 1e-6, "{} vs σ {sigma}", btc.haircut);
    assert!((btc.value - 0.1 * spot * (1.0 - btc.haircut)).abs() < 1e-6 * spot);
    assert!((r.collateral_value - cash.value - btc.value).abs() < 1e-9 * spot);
    assert!((r.excess - (r.collateral_value - r.initial_margin)).abs() < 1e-9 * spot);
    let bad = vec![proto::CollateralBalance { asset: "ETH".into(), quantity: 1.0 }];
    let e = client.calibrate(CalibrateRequest { collateral: bad, ..request(vec![linear(1.0)], market.clone()) }).await.unwrap_err();
    assert!(e.code() == Code::InvalidArgument && e.message().starts_with("collateral[0].asset"), "{e:?}");
    // A value too large to count is refused, never an infinite excess.
    let doge = AssetMarket { asset: "DOGE".into(), spot: 1e300, ..market.clone() };
    let huge = vec![proto::CollateralBalance { asset: "DOGE".into(), quantity: 1e12 }];
    let e = client
        .calibrate(CalibrateRequest { collateral: huge, markets: vec![market.clone(), doge], ..request(vec![linear(1.0)], market.clone()) })
        .await
        .unwrap_err();
    assert!(e.code() == Code::InvalidArgument && e.message().starts_with("collateral"), "{e:?}");
    let bad = vec![proto::CollateralBalance { asset: "USDT".into(), quantity: -1.0 }];
    let e = client.calibrate(CalibrateRequest { collateral: bad, ..request(vec![linear(1.0)], market) }).await.unwrap_err();
    assert!(e.message().starts_with("collateral[0].quantity"), "{e:?}");
}
