//! `cargo bench -p foresight-serve --bench publish`: market updates per second through
//! `MarketDataService.Publish` over loopback gRPC, into the embedded journal and into NATS
//! JetStream (a `nats-server` this bench starts, when the bootstrap installed one), with every
//! call carrying one asset's ticks or eight assets' interleaved. Prints a Markdown table (the
//! README's).
//!
//! An update counts once it is acknowledged STORED. Into the journal, a call's updates are
//! written together; into JetStream, each update waits for its PubAck, one asset's updates one
//! after another (an update may not overtake the one before it), different assets side by side.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foresight_serve::journal::Durability;
use foresight_serve::nats::NatsOptions;
use foresight_serve::proto::market_data_service_client::MarketDataServiceClient;
use foresight_serve::proto::{self, AckStatus, market_update::Body};
use foresight_serve::server::{self, ServerOptions};
use foresight_serve::{EngineConfig, Serving, ServingConfig};
use tonic::transport::Channel;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RUN: Duration = Duration::from_secs(3);

/// Updates in one Publish call.
const CALL: usize = 256;

/// 2024-01-02T00:00:00Z: ticks go on from here a millisecond apart, within the day.
const T0_MS: i64 = 1_704_153_600_000;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// A JetStream `nats-server` on a free loopback port, stopped when dropped.
struct NatsServer {
    child: Child,
    url: String,
    _storage: tempfile::TempDir,
}

impl NatsServer {
    fn start(binary: &Path) -> Self {
        let storage = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd", storage.path().to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server runs");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, url: format!("nats://127.0.0.1:{port}"), _storage: storage }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the market state goes in a row.
enum State {
    Journal(Durability),
    Nats(PathBuf),
}

/// A service on a loopback port with its market state in `state`; what it needs kept alive.
async fn start(state: &State) -> (MarketDataServiceClient<Channel>, Arc<Serving>, tempfile::TempDir, Option<NatsServer>) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServingConfig::new(EngineConfig::new(root().join("models")));
    config.state_dir = Some(dir.path().to_path_buf());
    let nats = match state {
        State::Journal(durability) => {
            config.durability = *durability;
            None
        }
        State::Nats(binary) => {
            let nats = NatsServer::start(binary);
            config.nats = Some(NatsOptions::new(nats.url.clone()));
            Some(nats)
        }
    };
    let serving = Arc::new(Serving::connect(config).await.unwrap());
    serving.market.as_ref().unwrap().wait_caught_up().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = serving.clone();
    tokio::spawn(async move { server::run(server, &ServerOptions::default(), listener, std::future::pending()).await.unwrap() });
    let channel = Channel::from_shared(format!("http://{address}")).unwrap().connect().await.unwrap();
    (MarketDataServiceClient::new(channel), serving, dir, nats)
}

/// Publishes calls of [`CALL`] ticks spread over `assets` assets, interleaved, one call after
/// another for [`RUN`]: (updates stored per second, p50 and p99 of a call in ms).
async fn publish(client: &mut MarketDataServiceClient<Channel>, assets: usize) -> (f64, f64, f64) {
    let mut sequence = 0u64;
    let (mut stored, mut calls_ms) = (0usize, Vec::new());
    let started = Instant::now();
    while started.elapsed() < RUN {
        let updates: Vec<proto::MarketUpdate> = (0..CALL)
            .map(|k| {
                if k % assets == 0 {
                    sequence += 1;
                }
                let tick = proto::Tick { timestamp_ms: T0_MS + sequence as i64, price: 100.0 + (sequence % 7) as f64, implied_vol_percent: Some(45.0), depth_notional: None };
                proto::MarketUpdate { asset: format!("A{}", k % assets), sequence, body: Some(Body::Tick(tick)) }
            })
            .collect();
        let at = Instant::now();
        let mut acks = client.publish(tokio_stream::iter(updates)).await.unwrap().into_inner();
        while let Some(ack) = acks.message().await.unwrap() {
            assert_eq!(ack.status, AckStatus::Stored as i32, "{ack:?}");
            stored += 1;
        }
        calls_ms.push(at.elapsed().as_secs_f64() * 1e3);
    }
    let elapsed = started.elapsed().as_secs_f64();
    calls_ms.sort_by(f64::total_cmp);
    let at = |q: f64| calls_ms[((calls_ms.len() - 1) as f64 * q).round() as usize];
    (stored as f64 / elapsed, at(0.5), at(0.99))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let nats = [Path::new("/usr/sbin/nats-server"), Path::new("/usr/bin/nats-server")].into_iter().find(|p| p.exists());
    let mut states = vec![("journal, group-commit", State::Journal(Durability::GroupCommit)), ("journal, fsync-each", State::Journal(Durability::FsyncEach))];
    match nats {
        Some(binary) => states.push(("NATS JetStream, one node", State::Nats(binary.to_path_buf()))),
        None => eprintln!("no nats-server (./scripts/bootstrap.sh installs it): the NATS rows are left out"),
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("\n{cores} cores; client, service (and nats-server) on one machine over loopback; {CALL} ticks per call, one call at a time; {} s per row\n", RUN.as_secs());
    println!("| market state | assets per call | updates/s | vs one asset | call p50 ms | call p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, state) in &states {
        let mut one_asset = None;
        for assets in [1, 8] {
            let (rate, p50, p99) = runtime.block_on(async {
                let (mut client, _serving, _dir, _nats) = start(state).await;
                publish(&mut client, assets).await
            });
            let base = *one_asset.get_or_insert(rate);
            println!("| {name} | {assets} | {rate:.0} | {:.1}× | {p50:.1} | {p99:.1} |", rate / base);
        }
    }
}
