//! `cargo bench -p foresight-serve --bench service`: throughput and p50/p99 latency of
//! `Calibrate` and `CalibrateBatch` over loopback gRPC, beside a bare tonic echo service with
//! the same messages and a bare ONNX Runtime run of the same model, so the service's own cost is
//! visible. Prints a Markdown table (the README's). Server and client share the machine.
//!
//! The market comes from the service's state (400 days of real BTC history published before
//! the run), as a margin engine that publishes market data would use it: the forecast is
//! computed once per day and cached, so a call costs the scenario grid, the guard rails and the
//! audit line. An account holds a future and a short call (revalued in full by Black-76 in 27
//! scenarios for each of the reactive and forward rates); one row has futures only.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foresight_serve::journal::Durability;
use foresight_serve::proto::calibration_service_client::CalibrationServiceClient;
use foresight_serve::proto::calibration_service_server::{CalibrationService, CalibrationServiceServer};
use foresight_serve::proto::{self, market_update::Body};
use foresight_serve::server::{self, ServerOptions};
use foresight_serve::{EngineConfig, Serving, ServingConfig};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// The service binary's allocator, so the rows measure what it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RUN: Duration = Duration::from_secs(3);

/// `cargo bench ... -- <filter>` runs only the rows whose name (`Calibrate group-commit`,
/// `CalibrateBatch buffered`, `echo`, `bare ort`) contains it.
fn wanted(name: &str) -> bool {
    std::env::args().skip(1).filter(|a| !a.starts_with('-')).all(|f| name.contains(&f))
}

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// 400 days of BTC: daily closes, realized variance from the 2-hour bars, DVOL.
fn btc_days() -> Vec<proto::DailyObservation> {
    let rows = |file: &str| -> Vec<(String, f64)> {
        std::fs::read_to_string(root().join("data").join(file))
            .unwrap()
            .lines()
            .skip(1)
            .filter_map(|l| {
                let cols: Vec<&str> = l.split(',').collect();
                Some((cols[0].to_string(), cols.get(if cols.len() > 2 { 4 } else { 1 })?.parse().ok()?))
            })
            .collect()
    };
    let mut rv = std::collections::HashMap::<String, f64>::new();
    let bars = rows("btc_usdt_2h.csv");
    for w in bars.windows(2) {
        *rv.entry(w[1].0[..10].to_string()).or_default() += (w[1].1 / w[0].1).ln().powi(2);
    }
    let dvol: std::collections::HashMap<String, f64> = rows("btc_dvol_1d.csv").into_iter().collect();
    let days: Vec<proto::DailyObservation> = rows("btc_usdt_1d.csv")
        .into_iter()
        .map(|(date, close)| proto::DailyObservation { realized_variance: rv.get(&date).copied(), implied_vol_percent: dvol.get(&date).copied(), date, close })
        .collect();
    days[days.len() - 400..].to_vec()
}

fn account(i: usize, spot: f64) -> proto::CalibrateRequest {
    let option = proto::OptionTerms { r#type: proto::OptionType::Call as i32, strike: spot * 1.1, expiry_years: 30.0 / 365.0 };
    proto::CalibrateRequest {
        explain: false,
        account_id: format!("acct-{i}"),
        positions: vec![
            proto::Position { underlying: "BTC".into(), quantity: 2.5, instrument: Some(proto::position::Instrument::Linear(proto::Linear {})) },
            proto::Position { underlying: "BTC".into(), quantity: -1.0, instrument: Some(proto::position::Instrument::Option(option)) },
        ],
        markets: vec![],
        previous_initial_margin: None,
        collateral: vec![],
    }
}

/// A seeded book of `n` distinct accounts: 1 to 4 positions each, futures and calls/puts with
/// their own sizes, strikes and expiries, so no two requests are alike and no cache of
/// identical requests can help.
fn varied_book(n: usize, seed: u64, spot: f64) -> Vec<proto::CalibrateRequest> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let positions = (0..rng.random_range(1..=4))
                .map(|_| {
                    let instrument = if rng.random_bool(0.5) {
                        proto::position::Instrument::Linear(proto::Linear {})
                    } else {
                        let kind = if rng.random_bool(0.5) { proto::OptionType::Call } else { proto::OptionType::Put };
                        proto::position::Instrument::Option(proto::OptionTerms {
                            r#type: kind as i32,
                            strike: spot * rng.random_range(0.6..1.6),
                            expiry_years: rng.random_range(1.0 / 365.0..1.0),
                        })
                    };
                    let size = rng.random_range(0.01..50.0) * if rng.random_bool(0.5) { 1.0 } else { -1.0 };
                    proto::Position { underlying: "BTC".into(), quantity: size, instrument: Some(instrument) }
                })
                .collect();
            proto::CalibrateRequest { explain: false, account_id: format!("book-{seed}-{i}"), positions, markets: vec![], previous_initial_margin: None, collateral: vec![] }
        })
        .collect()
}

/// The same messages, no work.
struct Echo(proto::CalibrateResponse);

#[tonic::async_trait]
impl CalibrationService for Echo {
    async fn calibrate(&self, request: Request<proto::CalibrateRequest>) -> Result<Response<proto::CalibrateResponse>, Status> {
        Ok(Response::new(proto::CalibrateResponse { account_id: request.into_inner().account_id, ..self.0.clone() }))
    }
    async fn calibrate_batch(&self, _: Request<proto::CalibrateBatchRequest>) -> Result<Response<proto::CalibrateBatchResponse>, Status> {
        Err(Status::unimplemented("echo"))
    }
    type CalibrateStreamStream = tokio_stream::Empty<Result<proto::CalibrateResult, Status>>;
    async fn calibrate_stream(&self, _: Request<tonic::Streaming<proto::CalibrateRequest>>) -> Result<Response<Self::CalibrateStreamStream>, Status> {
        Err(Status::unimplemented("echo"))
    }
    async fn forecast(&self, _: Request<proto::ForecastRequest>) -> Result<Response<proto::ForecastResponse>, Status> {
        Err(Status::unimplemented("echo"))
    }
}

struct Row {
    name: String,
    durability: String,
    concurrency: usize,
    calls_per_sec: f64,
    accounts_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

fn percentiles(mut us: Vec<f64>) -> (f64, f64) {
    us.sort_by(f64::total_cmp);
    let at = |q: f64| us[((us.len() as f64 * q) as usize).min(us.len() - 1)];
    (at(0.50), at(0.99))
}

/// Runs `call` from `concurrency` tasks for [`RUN`]; latencies in µs.
async fn load<F, Fut>(concurrency: usize, call: F) -> (f64, Vec<f64>)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = t;
                while started.elapsed() < RUN {
                    let at = Instant::now();
                    call(i).await;
                    latencies.push(at.elapsed().as_secs_f64() * 1e6);
                    i += concurrency;
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (started.elapsed().as_secs_f64(), all)
}

/// Unary `Calibrate` calls from `concurrency` tasks on one channel.
async fn unary(channel: &Channel, concurrency: usize, spot: f64) -> (f64, Vec<f64>) {
    let c = channel.clone();
    load(concurrency, move |i| {
        let mut client = CalibrationServiceClient::new(c.clone());
        async move {
            client.calibrate(account(i, spot)).await.unwrap();
        }
    })
    .await
}

/// `CalibrateBatch` calls of `batch` (with `markets` shared) from `callers` tasks.
async fn batched(channel: &Channel, batch: Vec<proto::CalibrateRequest>, markets: Vec<proto::AssetMarket>, callers: usize) -> (f64, Vec<f64>) {
    let c = channel.clone();
    load(callers, move |_| {
        let mut client = CalibrationServiceClient::new(c.clone());
        let request = proto::CalibrateBatchRequest { accounts: batch.clone(), markets: markets.clone() };
        async move {
            let r = client.calibrate_batch(request).await.unwrap().into_inner();
            assert!(r.results.iter().all(|r| matches!(r.outcome, Some(proto::calibrate_result::Outcome::Margin(_)))));
        }
    })
    .await
}

async fn start(serving: Option<Arc<Serving>>, echo: Option<proto::CalibrateResponse>) -> Channel {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    match (serving, echo) {
        (Some(serving), _) => {
            tokio::spawn(async move { server::run(serving, &ServerOptions::default(), listener, std::future::pending()).await.unwrap() });
        }
        (None, Some(response)) => {
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(CalibrationServiceServer::new(Echo(response)))
                    .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))),
            );
        }
        (None, None) => unreachable!(),
    }
    Channel::from_shared(format!("http://{address}")).unwrap().connect().await.unwrap()
}

/// A server without a state folder: no market state, no audit log.
fn stateless() -> Arc<Serving> {
    let mut config = ServingConfig::new(EngineConfig::new(root().join("models")));
    config.max_in_flight = 1024;
    Arc::new(Serving::open(config).unwrap())
}

async fn serving(durability: Durability, days: &[proto::DailyObservation]) -> (Arc<Serving>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServingConfig::new(EngineConfig::new(root().join("models")));
    config.state_dir = Some(dir.path().to_path_buf());
    config.durability = durability;
    config.max_in_flight = 1024;
    let serving = Arc::new(Serving::open(config).unwrap());
    let mut updates: Vec<proto::MarketUpdate> =
        days.iter().enumerate().map(|(i, d)| proto::MarketUpdate { asset: "BTC".into(), sequence: i as u64 + 1, body: Some(Body::Day(d.clone())) }).collect();
    let tick = proto::Tick { timestamp_ms: chrono_now_ms(), price: days[days.len() - 1].close, implied_vol_percent: Some(45.0), depth_notional: Some(5e7) };
    updates.push(proto::MarketUpdate { asset: "BTC".into(), sequence: 401, body: Some(Body::Tick(tick)) });
    let updates: Vec<_> = updates.iter().map(foresight_serve::series::Update::try_from).collect();
    serving.market.as_ref().unwrap().publish(&updates).await.unwrap();
    (serving, dir)
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let rows = runtime.block_on(run());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("\n{cores} cores; server and client in one process over loopback; {} s per row\n", RUN.as_secs());
    println!("| what | audit durability | concurrency | calls/s | accounts/s | p50 µs | p99 µs |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
            r.name, r.durability, r.concurrency, r.calls_per_sec, r.accounts_per_sec, r.p50_us, r.p99_us
        );
    }
}

async fn run() -> Vec<Row> {
    let days = btc_days();
    let spot = days[days.len() - 1].close;
    let mut rows = Vec::new();
    let mut push = |name: &str, durability: &str, concurrency: usize, accounts_per_call: usize, (secs, us): (f64, Vec<f64>)| {
        let calls = us.len() as f64 / secs;
        let (p50, p99) = percentiles(us);
        rows.push(Row {
            name: name.into(),
            durability: durability.into(),
            concurrency,
            calls_per_sec: calls,
            accounts_per_sec: calls * accounts_per_call as f64,
            p50_us: p50,
            p99_us: p99,
        });
    };

    // (b) the model alone through ONNX Runtime: one row, the champion.
    let (s, _dir) = serving(Durability::Buffered, &days).await;
    let champion = s.engine().models()["BTC"].clone();
    let name = format!("bare ort run ({champion}, 1 row)");
    if wanted(&name) {
        let registry = foresight_registry::Registry::open(root().join("models")).unwrap();
        let (_, mut model, _) = registry.load(&champion.parse().unwrap()).unwrap();
        let row = vec![-8.0; model.row_width()];
        let mut us = Vec::new();
        let started = Instant::now();
        while started.elapsed() < RUN {
            let at = Instant::now();
            std::hint::black_box(model.run(&row).unwrap());
            us.push(at.elapsed().as_secs_f64() * 1e6);
        }
        push(&name, "-", 1, 1, (started.elapsed().as_secs_f64(), us));
    }

    // (a) tonic echo: the same messages (a real response), no work.
    let channel = start(Some(s.clone()), None).await;
    let response = CalibrationServiceClient::new(channel).calibrate(account(0, spot)).await.unwrap().into_inner();
    drop(s);
    let channel = start(None, Some(response)).await;
    for concurrency in [1, 8, 64] {
        if wanted("echo Calibrate") {
            push("echo Calibrate (tonic only)", "-", concurrency, 1, unary(&channel, concurrency, spot).await);
        }
    }

    for durability in [Durability::GroupCommit, Durability::FsyncEach, Durability::Buffered] {
        let (s, _dir) = serving(durability, &days).await;
        let channel = start(Some(s.clone()), None).await;
        for concurrency in [1, 8, 64] {
            if wanted(&format!("Calibrate {durability}")) {
                push("Calibrate", &durability.to_string(), concurrency, 1, unary(&channel, concurrency, spot).await);
            }
        }
    }

    // CalibrateBatch of a varied, seeded book: without audit (no state folder, BTC's 400 days
    // shared inline in the batch), then with the audit log buffered and group-committed.
    let book = varied_book(1000, 42, spot);
    let btc = proto::AssetMarket { asset: "BTC".into(), spot, implied_vol_fraction: 0.45, depth_notional: Some(5e7), history: days.clone(), data_age_seconds: Some(1.0) };
    if wanted("engine only") {
        // The engine alone over the same book on every core: no gRPC, no audit.
        let s = stateless();
        let shared = foresight_serve::Engine::resolve_markets(&foresight_serve::convert::market_quotes(std::slice::from_ref(&btc), |i| format!("markets[{i}]")).unwrap(), None).unwrap();
        let accounts: Vec<_> = book.iter().map(|r| foresight_serve::engine::AccountRequest::try_from(r).unwrap()).collect();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let started = Instant::now();
        let mut us = Vec::new();
        while started.elapsed() < RUN {
            let at = Instant::now();
            std::thread::scope(|scope| {
                for chunk in accounts.chunks(accounts.len().div_ceil(cores)) {
                    let (engine, shared, cache) = (s.engine(), &shared, &s.cache);
                    scope.spawn(move || chunk.iter().for_each(|a| drop(std::hint::black_box(engine.calibrate(a, shared, None, cache).unwrap()))));
                }
            });
            us.push(at.elapsed().as_secs_f64() * 1e6);
        }
        push("engine only, 1000 varied accounts (no gRPC)", "none", cores, 1000, (started.elapsed().as_secs_f64(), us));
    }
    if wanted("CalibrateBatch none") {
        let channel = start(Some(stateless()), None).await;
        for callers in [1, 2] {
            push("CalibrateBatch (1000 varied accounts)", "none", callers, 1000, batched(&channel, book.clone(), vec![btc.clone()], callers).await);
        }
    }
    for durability in [Durability::Buffered, Durability::GroupCommit] {
        if wanted(&format!("CalibrateBatch {durability}")) {
            let (s, _dir) = serving(durability, &days).await;
            let channel = start(Some(s.clone()), None).await;
            for callers in [1, 2] {
                push("CalibrateBatch (1000 varied accounts)", &durability.to_string(), callers, 1000, batched(&channel, book.clone(), vec![], callers).await);
            }
        }
    }
    rows
}
