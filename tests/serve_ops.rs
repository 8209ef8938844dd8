//! Operating the service: market data published and kept across a `kill -9`, A/B shadow with
//! its audit log, hot reload (a good champion swapped in, a damaged one refused), batch and
//! stream calibration, load shedding. Real servers on loopback ports, generated clients.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use foresight_serve::audit::AuditRecord;
use foresight_serve::journal::read_lines;
use foresight_serve::proto::calibration_service_client::CalibrationServiceClient;
use foresight_serve::proto::market_data_service_client::MarketDataServiceClient;
use foresight_serve::proto::model_service_client::ModelServiceClient;
use foresight_serve::proto::{self, AckStatus, CalibrateRequest, MarketUpdate, calibrate_result::Outcome, market_update::Body};
use tonic::Code;
use tonic::transport::Channel;

use crate::serve::{btc_market, config, linear, request, serve};
use crate::util::{force_promote, root};

/// The 400 days of BTC history as backfill updates (sequences 1..=400), then `ticks` ticks of
/// today, a minute apart and ending now, near the last close.
pub fn btc_updates(ticks: usize) -> Vec<MarketUpdate> {
    let history = btc_market(400).history;
    let last_close = history.last().unwrap().close;
    let mut updates: Vec<MarketUpdate> =
        history.into_iter().enumerate().map(|(i, d)| MarketUpdate { asset: "BTC".into(), sequence: i as u64 + 1, body: Some(Body::Day(d)) }).collect();
    let now = chrono::Utc::now().timestamp_millis();
    let midnight = now - now.rem_euclid(86_400_000);
    for k in 0..ticks {
        let timestamp_ms = (now - 60_000 * (ticks - 1 - k) as i64).max(midnight);
        let price = last_close * (1.0 + 0.001 * ((k % 5) as f64 - 2.0));
        updates.push(MarketUpdate {
            asset: "BTC".into(),
            sequence: 401 + k as u64,
            body: Some(Body::Tick(proto::Tick { timestamp_ms, price, implied_vol_percent: Some(45.0), depth_notional: Some(5e7) })),
        });
    }
    updates
}

pub async fn publish(address: &str, updates: Vec<MarketUpdate>) -> Vec<proto::PublishAck> {
    let mut client = MarketDataServiceClient::connect(address.to_string()).await.unwrap();
    let acks = client.publish(tokio_stream::iter(updates)).await.unwrap().into_inner();
    tokio_stream::StreamExt::collect::<Vec<_>>(acks).await.into_iter().map(Result::unwrap).collect()
}

/// A request that takes BTC from the service's market state.
pub fn from_state(account: &str) -> CalibrateRequest {
    CalibrateRequest { explain: false, account_id: account.into(), positions: vec![linear(1.0)], markets: vec![], previous_initial_margin: None, collateral: vec![] }
}

/// The `foresight-serve` binary next to the test binary (`cargo test --workspace` builds it).
fn serve_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let binary = dir.join("foresight-serve");
    assert!(binary.exists(), "{} is missing: run `cargo build --workspace --bins` (make test does)", binary.display());
    binary
}

pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `foresight-serve` on the committed registry and `state`, and waits until it answers.
async fn start_binary(state: &Path) -> (Process, String) {
    start_binary_on(&root().join("models"), state, 0).await
}

/// Starts `foresight-serve` on `registry` and `state`, checking the registry every
/// `reload_secs` (0: never), and waits until it answers.
pub async fn start_binary_on(registry: &Path, state: &Path, reload_secs: u64) -> (Process, String) {
    start_binary_with(registry, state, reload_secs, "group-commit").await
}

/// [`start_binary_on`] with the journals' `durability`.
pub async fn start_binary_with(registry: &Path, state: &Path, reload_secs: u64, durability: &str) -> (Process, String) {
    start_binary_args(registry, state, &["--reload-interval", &reload_secs.to_string(), "--durability", durability]).await
}

/// Starts `foresight-serve` on `registry` and `state` with more command-line `args`, and waits
/// until it answers.
pub async fn start_binary_args(registry: &Path, state: &Path, args: &[&str]) -> (Process, String) {
    start_binary_env(registry, state, args, &[]).await
}

/// As [`start_binary_args`], with environment variables `env`.
pub async fn start_binary_env(registry: &Path, state: &Path, args: &[&str], env: &[(&str, &str)]) -> (Process, String) {
    let (process, address) = spawn_binary(registry, state, args, env);
    for _ in 0..300 {
        if CalibrationServiceClient::connect(address.clone()).await.is_ok() {
            return (process, address);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("foresight-serve did not start on {address}");
}

/// Starts the real `foresight-serve` as [`start_binary_env`] does, without waiting for it:
/// (the process, its address). Its log goes to `serve.log` in `state`.
pub fn spawn_binary(registry: &Path, state: &Path, args: &[&str], env: &[(&str, &str)]) -> (Process, String) {
    let port = crate::util::free_port();
    let child = Command::new(serve_binary())
        .envs(env.iter().copied())
        .args(["--registry", registry.to_str().unwrap(), "--state-dir", state.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        // Its log, beside its state, for a failing test to show.
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(state.join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    (Process(child), format!("http://127.0.0.1:{port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_market_data_survives_kill_9_and_serves_calibrations() {
    let state = tempfile::tempdir().unwrap();
    let (mut process, address) = start_binary(state.path()).await;
    let updates = btc_updates(5);
    let acks = publish(&address, updates.clone()).await;
    assert_eq!(acks.len(), 405);
    assert!(acks.iter().all(|a| a.status == AckStatus::Stored as i32), "{:?}", acks.iter().find(|a| a.status != AckStatus::Stored as i32));
    let mut client = CalibrationServiceClient::connect(address.clone()).await.unwrap();
    let before = client.calibrate(from_state("acct-1")).await.unwrap().into_inner();
    let c = &before.components[0];
    assert_eq!((c.model.as_str(), c.fallback.as_deref()), ("btc-dvol-har-x@v1", None), "fresh published data: the model's rate");
    // The same history inline gives the same forward rate: one feature path.
    let inline = client.calibrate(request(vec![linear(1.0)], btc_market(400))).await.unwrap();
    assert!((inline.into_inner().components[0].forward_rate - c.forward_rate).abs() < 1e-12);

    // kill -9, restart on the same state: every acknowledged update is back.
    process.0.kill().unwrap();
    process.0.wait().unwrap();
    let (_process, address) = start_binary(state.path()).await;
    let mut market = MarketDataServiceClient::connect(address.clone()).await.unwrap();
    let held = market.get_asset_state(proto::AssetStateRequest { asset: "BTC".into() }).await.unwrap().into_inner();
    assert_eq!((held.last_sequence, held.days), (405, 400));
    assert_eq!(held.last_date, btc_market(1).history[0].date);
    // Resending after the restart is safe; a new tick is stored.
    let acks = publish(&address, updates[400..].to_vec()).await;
    assert!(acks.iter().all(|a| a.status == AckStatus::Duplicate as i32));
    let mut client = CalibrationServiceClient::connect(address.clone()).await.unwrap();
    let after = client.calibrate(from_state("acct-1")).await.unwrap().into_inner();
    assert_eq!(after.components[0].forward_rate, c.forward_rate);
    assert_eq!(after.initial_margin, before.initial_margin);
    let e = market.get_asset_state(proto::AssetStateRequest { asset: "ETH".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_updates_are_rejected_with_the_field_and_not_stored() {
    let state = tempfile::tempdir().unwrap();
    let (address, serving) = serve(config(&root().join("models"), Some(state.path()))).await;
    let address = format!("http://{address}");
    let mut updates = btc_updates(2);
    updates[401].body = Some(Body::Tick(proto::Tick { timestamp_ms: 0, price: f64::NAN, implied_vol_percent: None, depth_notional: None }));
    updates.push(MarketUpdate { asset: String::new(), sequence: 500, body: None });
    let acks = publish(&address, updates).await;
    assert_eq!(acks[401].status, AckStatus::Rejected as i32);
    assert!(acks[401].error.starts_with("tick.price"), "{}", acks[401].error);
    assert!(acks[402].error.starts_with("asset"), "{}", acks[402].error);
    assert_eq!(serving.market.as_ref().unwrap().state("BTC").unwrap().last_sequence, 401);
    // Too little published history for an asset: the error says where the days came from.
    let mut client = CalibrationServiceClient::connect(address).await.unwrap();
    let e = client.calibrate(CalibrateRequest { positions: vec![proto::Position { underlying: "SPX".into(), ..linear(1.0) }], ..from_state("a") }).await;
    assert_eq!(e.unwrap_err().code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_posts_the_assigned_arm_and_audits_every_arm() {
    let state = tempfile::tempdir().unwrap();
    let (address, serving) = serve(config(&root().join("models"), Some(state.path()))).await;
    let address = format!("http://{address}");
    publish(&address, btc_updates(3)).await;
    let mut models = ModelServiceClient::connect(address.clone()).await.unwrap();
    let arms = ["model:champion", "ewma", "static:0.16", "model:btc-log-har@v1+lookahead:22"];
    let split = proto::TrafficSplit { arms: arms.iter().map(|a| proto::ArmWeight { arm: a.to_string(), weight: 1.0 }).collect(), shadow: true };
    let set = models.set_split(proto::SetSplitRequest { split: Some(split) }).await.unwrap().into_inner();
    assert!(set.shadow && set.arms.len() == 4);
    let bad = proto::TrafficSplit { arms: vec![proto::ArmWeight { arm: "model:garch".into(), weight: 1.0 }], shadow: false };
    let e = models.set_split(proto::SetSplitRequest { split: Some(bad) }).await.unwrap_err();
    assert!(e.code() == Code::InvalidArgument && e.message().contains("model:champion"), "{e:?}");

    let mut client = CalibrationServiceClient::connect(address).await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..40 {
        let r = client.calibrate(from_state(&format!("acct-{i}"))).await.unwrap().into_inner();
        assert_eq!(r.shadow.len(), 3, "every other arm in shadow");
        // The assignment is stable: the same account, the same arm.
        let again = client.calibrate(from_state(&format!("acct-{i}"))).await.unwrap().into_inner();
        assert_eq!(again.arm, r.arm);
        if r.arm == "ewma:0.94" {
            assert!((r.raw_multiplier - 1.0).abs() < 1e-12, "the reactive arm is the base");
        }
        seen.insert(r.arm);
    }
    assert_eq!(seen.len(), 4, "40 accounts reach all four arms: {seen:?}");
    let audit: Vec<AuditRecord> = read_lines(&state.path().join("audit.jsonl")).unwrap();
    assert_eq!(audit.len(), 80 * 4, "four arms per call, posted or not");
    assert_eq!(audit.iter().filter(|r| r.posted).count(), 80);
    let pinned = audit.iter().find(|r| r.arm == "model:btc-log-har@v1+lookahead:22").unwrap();
    assert_eq!(pinned.underlyings[0].model.as_deref(), Some("btc-log-har@v1"));
    assert!(pinned.underlyings[0].fallback.is_none() && pinned.underlyings[0].rate > 0.0);
    let fixed = audit.iter().find(|r| r.arm == "static:0.16").unwrap();
    assert_eq!(fixed.underlyings[0].rate, 0.16);
    // The same calls, counted by Prometheus: per arm, posted or shadow; latency per method.
    let bound = foresight_serve::server::spawn_metrics(serving.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let text = tokio::task::spawn_blocking(move || http_get(bound, "/metrics")).await.unwrap();
    let total = |prefix: &str, filter: &str| -> f64 {
        text.lines().filter(|l| l.starts_with(prefix) && l.contains(filter)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
    };
    assert_eq!(total("foresight_calibrations_total{", "posted=\"true\""), 80.0, "{text}");
    assert_eq!(total("foresight_calibrations_total{", "posted=\"false\""), 240.0);
    assert_eq!(total("foresight_multiplier_count{", "arm=\"static:0.16\""), 80.0);
    assert_eq!(total("foresight_request_seconds_count{", "method=\"calibrate\""), 80.0);
    assert_eq!(total("foresight_market_updates_total{", "status=\"stored\""), 403.0);
    // The split outlives a restart.
    drop(client);
    let (address, _serving) = serve(config(&root().join("models"), Some(state.path()))).await;
    let mut models = ModelServiceClient::connect(format!("http://{address}")).await.unwrap();
    assert_eq!(models.list_models(proto::ListModelsRequest {}).await.unwrap().into_inner().split.unwrap().arms.len(), 4);
}

/// The body of an HTTP GET.
pub fn http_get(address: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
}

/// A scratch copy of the committed registry.
pub fn scratch_registry() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("cp").arg("-r").arg(root().join("models/.")).arg(dir.path()).status().unwrap();
    assert!(status.success());
    dir
}

async fn generation(models: &mut ModelServiceClient<Channel>) -> (u64, String) {
    let list = models.list_models(proto::ListModelsRequest {}).await.unwrap().into_inner();
    let btc = list.models.iter().find(|m| m.slot == "BTC/volatility").unwrap().model.clone();
    (list.generation, btc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_swaps_a_good_champion_and_refuses_a_damaged_one() {
    let registry = scratch_registry();
    let (address, serving) = serve(config(registry.path(), None)).await;
    serving.watch_registry(Duration::from_millis(100));
    let address = format!("http://{address}");
    let mut models = ModelServiceClient::connect(address.clone()).await.unwrap();
    let mut client = CalibrationServiceClient::connect(address).await.unwrap();
    assert_eq!(generation(&mut models).await, (1, "btc-dvol-har-x@v1".into()));

    // Calls keep succeeding while the watcher swaps in a new champion.
    let calls = {
        let mut client = client.clone();
        tokio::spawn(async move {
            let mut arms = Vec::new();
            for _ in 0..30 {
                let r = client.calibrate(request(vec![linear(1.0)], btc_market(400))).await.expect("no call fails during a swap");
                arms.push(r.into_inner().components[0].model.clone());
            }
            arms
        })
    };
    force_promote(registry.path(), "btc-log-har@v1", "reload test");
    let mut swapped = false;
    for _ in 0..100 {
        if generation(&mut models).await == (2, "btc-log-har@v1".into()) {
            swapped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(swapped, "the watcher reloads the new champion");
    let served = calls.await.unwrap();
    assert!(served.iter().all(|m| m == "btc-dvol-har-x@v1" || m == "btc-log-har@v1"), "{served:?}");
    let r = client.calibrate(request(vec![linear(1.0)], btc_market(400))).await.unwrap().into_inner();
    assert_eq!(r.components[0].model, "btc-log-har@v1");

    // A champion whose artifact is damaged after promotion: refused, the last good one serves.
    force_promote(registry.path(), "btc-neural@v1", "reload test");
    let onnx = registry.path().join("btc-neural/v1/model.onnx");
    let mut bytes = std::fs::read(&onnx).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&onnx, bytes).unwrap();
    let report = models.reload(proto::ReloadRequest {}).await.unwrap().into_inner();
    assert!(report.refused.iter().any(|r| r.starts_with("BTC/volatility: btc-neural@v1") && r.contains("btc-log-har@v1 keeps serving")), "{report:?}");
    let r = client.calibrate(request(vec![linear(1.0)], btc_market(400))).await.unwrap().into_inner();
    assert_eq!(r.components[0].model, "btc-log-har@v1");

    // The watcher retries the refused model at every interval: nothing served changes, so the
    // generation stays, and the refusal is reported once (the WARN and its counter go together).
    assert_eq!(report.generation, 2, "a reload that only refuses is not a new generation");
    tokio::time::sleep(Duration::from_millis(1200)).await; // > 10 intervals of 100 ms
    assert_eq!(generation(&mut models).await, (2, "btc-log-har@v1".into()));
    let text = serving.metrics.encode(serving.engine().generation());
    let refusals: Vec<&str> = text.lines().filter(|l| l.starts_with("foresight_reload_refusals_total")).collect();
    assert_eq!(refusals, vec![r#"foresight_reload_refusals_total{slot="BTC/volatility"} 1"#], "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_and_stream_return_one_result_per_account_in_order() {
    let (address, serving) = serve(config(&root().join("models"), None)).await;
    let mut client = CalibrationServiceClient::connect(format!("http://{address}")).await.unwrap();
    let market = btc_market(400);
    let account = |id: &str, q: f64| CalibrateRequest { explain: false, account_id: id.into(), positions: vec![linear(q)], markets: vec![], previous_initial_margin: None, collateral: vec![] };
    let batch = proto::CalibrateBatchRequest { accounts: vec![account("a", 1.0), account("b", f64::NAN), account("c", -3.0)], markets: vec![market.clone()] };
    let results = client.calibrate_batch(batch).await.unwrap().into_inner().results;
    assert_eq!(results.iter().map(|r| r.account_id.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
    let margin = |r: &proto::CalibrateResult| match &r.outcome {
        Some(Outcome::Margin(m)) => m.clone(),
        other => panic!("{other:?}"),
    };
    match &results[1].outcome {
        Some(Outcome::Error(e)) => assert!(e.code == "INVALID_ARGUMENT" && e.message.starts_with("positions[0].quantity"), "{e:?}"),
        other => panic!("{other:?}"),
    }
    // The same account alone gives the same margin as in the batch.
    let alone = client.calibrate(request(vec![linear(1.0)], market.clone())).await.unwrap().into_inner();
    assert_eq!(alone.initial_margin, margin(&results[0]).initial_margin);
    let e = client.calibrate_batch(proto::CalibrateBatchRequest { accounts: vec![], markets: vec![] }).await.unwrap_err();
    assert!(e.code() == Code::InvalidArgument && e.message().starts_with("accounts"), "{e:?}");

    let requests: Vec<CalibrateRequest> = (0..5).map(|i| request(vec![linear(1.0 + i as f64)], market.clone())).collect();
    let out = client.calibrate_stream(tokio_stream::iter(requests)).await.unwrap().into_inner();
    let out: Vec<proto::CalibrateResult> = tokio_stream::StreamExt::collect::<Vec<_>>(out).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(out.len(), 5);
    let im: Vec<f64> = out.iter().map(|r| margin(r).initial_margin).collect();
    assert!(im.windows(2).all(|w| w[1] > w[0]), "in order: larger positions, larger margin: {im:?}");

    // Oversize batches are refused whole, naming the field.
    let mut small = config(&root().join("models"), None);
    small.max_batch = 2;
    let (small_address, _small) = serve(small).await;
    let mut small_client = CalibrationServiceClient::connect(format!("http://{small_address}")).await.unwrap();
    let three = proto::CalibrateBatchRequest { accounts: vec![account("a", 1.0), account("b", 1.0), account("c", 1.0)], markets: vec![market.clone()] };
    let e = small_client.calibrate_batch(three).await.unwrap_err();
    assert!(e.code() == Code::InvalidArgument && e.message().starts_with("accounts: 3 accounts; a batch takes 1 to 2"), "{e:?}");

    // Load shedding: with every slot taken, a call is refused at once, not queued.
    let held: Vec<_> = std::iter::from_fn(|| serving.admit().ok()).collect();
    assert_eq!(held.len(), 64);
    let e = client.calibrate(request(vec![linear(1.0)], market.clone())).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    drop(held);
    assert!(client.calibrate(request(vec![linear(1.0)], market)).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audited_shadow_margins_replay_as_a_backtest() {
    let state = tempfile::tempdir().unwrap();
    let (address, _serving) = serve(config(&root().join("models"), Some(state.path()))).await;
    let address = format!("http://{address}");
    let arms = ["model:champion", "ewma", "static:0.16"];
    let split = proto::TrafficSplit { arms: arms.iter().map(|a| proto::ArmWeight { arm: a.to_string(), weight: 1.0 }).collect(), shadow: true };
    ModelServiceClient::connect(address.clone()).await.unwrap().set_split(proto::SetSplitRequest { split: Some(split) }).await.unwrap();
    // Day by day, as a margin engine would: publish the day, recalibrate the account.
    let days: Vec<MarketUpdate> = btc_updates(0);
    publish(&address, days[..300].to_vec()).await;
    let mut client = CalibrationServiceClient::connect(address.clone()).await.unwrap();
    let from_published = proto::AssetMarket { asset: "BTC".into(), data_age_seconds: Some(1.0), ..Default::default() };
    for day in &days[300..] {
        publish(&address, vec![day.clone()]).await;
        let request = CalibrateRequest { markets: vec![from_published.clone()], ..from_state("replayed") };
        client.calibrate(request).await.unwrap();
    }
    let audit_file = state.path().join("audit.jsonl");
    let audit: Vec<AuditRecord> = read_lines(&audit_file).unwrap();
    assert_eq!(audit.len(), 300, "100 days × 3 arms");

    let out = tempfile::tempdir().unwrap();
    let stdout = crate::util::foresight_ok(&[
        "backtest", "--from-audit", audit_file.to_str().unwrap(), "--data", crate::util::data("btc_usdt_1d.csv").to_str().unwrap(),
        "--out", out.path().to_str().unwrap(),
    ]);
    assert!(stdout.contains("audited arm ewma:0.94: 100 day(s) of BTC"), "{stdout}");
    let summary = crate::util::read_json(&out.path().join("summary.json"));
    let scored = |arm: &str, field: &str| summary["arms"][arm]["long"][field].as_f64().unwrap_or_else(|| panic!("{arm} {field}: {summary}"));
    assert!((scored("static:0.16", "avg_margin") - 0.16).abs() < 1e-12);
    // The replay scores exactly what was audited: count the EWMA arm's exceptions by hand.
    let closes: std::collections::HashMap<String, f64> = btc_market(400).history.into_iter().map(|d| (d.date, d.close)).collect();
    let ewma: Vec<&AuditRecord> = audit.iter().filter(|r| r.arm == "ewma:0.94").collect();
    let mut exceptions = 0;
    for pair in ewma.windows(2) {
        let (today, tomorrow) = (&pair[0].underlyings[0], &pair[1].underlyings[0]);
        let loss = 1.0 - closes[&tomorrow.as_of] / closes[&today.as_of];
        exceptions += usize::from(loss > today.rate);
    }
    assert_eq!(scored("ewma:0.94", "observations"), 99.0);
    assert_eq!(scored("ewma:0.94", "exceptions"), exceptions as f64);
    let champion = scored("model:champion", "avg_margin");
    assert!(champion > 0.0 && champion < 0.16, "{champion}");

    // The live report of the same audit log, checked in headless Chromium like the offline one:
    // the replay's rows, plus what the service posted and shadowed per arm.
    let page = out.path().join("live.html");
    crate::util::foresight_ok(&[
        "report", "--from-audit", audit_file.to_str().unwrap(), "--prices", crate::util::data("btc_usdt_1d.csv").to_str().unwrap(),
        "--out", page.to_str().unwrap(),
    ]);
    let html = std::fs::read_to_string(&page).unwrap();
    for arm in ["model:champion", "ewma:0.94", "static:0.16"] {
        let row = html.split(&format!("<tr data-arm=\"{arm}\"><td class=\"arm\">{arm}</td>")).nth(1).unwrap_or_else(|| panic!("{arm}: no live row"));
        let cells: Vec<&str> = row.trim_start_matches("<td>").split("</td><td>").take(2).collect();
        let (posted, shadow) = (audit.iter().filter(|r| r.arm == arm && r.posted).count(), audit.iter().filter(|r| r.arm == arm && !r.posted).count());
        assert_eq!(cells, [posted.to_string(), shadow.to_string()], "{arm}");
    }
    assert!(html.contains("audit sha256") && html.contains("model btc-"), "provenance cites the audit log and the model cards");
    let checked = Command::new(root().join(".venv/bin/python"))
        .arg(root().join("tests/clients/report_browser.py"))
        .args([&page, &out.path().join("live.replay/summary.json"), &out.path().join("live.png")])
        .output()
        .unwrap();
    assert!(checked.status.success(), "{}\n{}", String::from_utf8_lossy(&checked.stdout), String::from_utf8_lossy(&checked.stderr));
}

/// Issue 4's end-to-end path on the real binary: market data published → calibrated from it →
/// A/B shadow → a new champion hot-reloaded → `kill -9` and restart, nothing acknowledged lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portfolio_goes_through_publish_calibrate_shadow_reload_and_restart() {
    let registry = scratch_registry();
    let state = tempfile::tempdir().unwrap();
    let (mut process, address) = start_binary_on(registry.path(), state.path(), 1).await;
    let acks = publish(&address, btc_updates(5)).await;
    assert!(acks.iter().all(|a| a.status == AckStatus::Stored as i32));

    let mut client = CalibrationServiceClient::connect(address.clone()).await.unwrap();
    let first = client.calibrate(from_state("acct-e2e")).await.unwrap().into_inner();
    assert_eq!((first.arm.as_str(), first.components[0].model.as_str()), ("model:champion", "btc-dvol-har-x@v1"));
    assert!(first.shadow.is_empty());

    let mut models = ModelServiceClient::connect(address.clone()).await.unwrap();
    let split = proto::TrafficSplit {
        arms: vec![proto::ArmWeight { arm: "model:champion".into(), weight: 1.0 }, proto::ArmWeight { arm: "ewma".into(), weight: 0.0 }],
        shadow: true,
    };
    models.set_split(proto::SetSplitRequest { split: Some(split) }).await.unwrap();
    let shadowed = client.calibrate(from_state("acct-e2e")).await.unwrap().into_inner();
    assert_eq!(shadowed.initial_margin, first.initial_margin, "the champion still posts");
    assert_eq!(shadowed.shadow.iter().map(|s| s.arm.as_str()).collect::<Vec<_>>(), ["ewma:0.94"]);

    force_promote(registry.path(), "btc-log-har@v1", "end-to-end test");
    let mut reloaded = false;
    for _ in 0..100 {
        if generation(&mut models).await.1 == "btc-log-har@v1" {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reloaded, "the new champion is picked up without a restart");
    let after_reload = client.calibrate(from_state("acct-e2e")).await.unwrap().into_inner();
    assert_eq!(after_reload.components[0].model, "btc-log-har@v1");

    process.0.kill().unwrap();
    process.0.wait().unwrap();
    let (_process, address) = start_binary_on(registry.path(), state.path(), 1).await;
    let mut models = ModelServiceClient::connect(address.clone()).await.unwrap();
    let listed = models.list_models(proto::ListModelsRequest {}).await.unwrap().into_inner();
    assert!(listed.split.unwrap().shadow, "the split survives the restart");
    let mut client = CalibrationServiceClient::connect(address).await.unwrap();
    let restarted = client.calibrate(from_state("acct-e2e")).await.unwrap().into_inner();
    assert_eq!(restarted.components[0].model, "btc-log-har@v1");
    assert_eq!(restarted.initial_margin, after_reload.initial_margin, "same state, same model: same margin");
    let audit: Vec<AuditRecord> = read_lines(&state.path().join("audit.jsonl")).unwrap();
    assert_eq!(audit.len(), 1 + 2 + 2 + 2, "every margin computed, posted or shadow, is on record");
    assert_eq!(audit.iter().filter(|r| r.underlyings[0].model.as_deref() == Some("btc-log-har@v1")).count(), 2);
}

#[test]
fn the_service_binary_links_onnx_runtime_dynamically_and_never_libtorch() {
    let out = Command::new("ldd").arg(serve_binary()).output().expect("ldd (libc-bin) is installed");
    let libraries = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{libraries}");
    assert!(!libraries.contains("torch") && !libraries.contains("libc10"), "{libraries}");
    assert!(!libraries.contains("onnxruntime"), "ONNX Runtime is opened at run time (load-dynamic), not linked: {libraries}");
}

#[test]
fn foresight_serve_runs_the_service_binary() {
    let out = crate::util::foresight_ok(&["serve", "--version"]);
    assert!(out.starts_with("foresight-serve "), "{out}");
    let err = crate::util::foresight_err(&["serve", "--registry", "/nonexistent/registry", "--listen", "127.0.0.1:0"]);
    assert!(err.contains("foresight-serve exited"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_calls_in_progress_finish() {
    let state = tempfile::tempdir().unwrap();
    let (mut process, address) = start_binary(state.path()).await;
    let mut client = CalibrationServiceClient::connect(address).await.unwrap();
    let one = CalibrateRequest { markets: vec![], ..request(vec![linear(1.0)], btc_market(1)) };
    let accounts = (0..10_000).map(|i| CalibrateRequest { account_id: format!("a{i}"), ..one.clone() }).collect();
    let batch = proto::CalibrateBatchRequest { accounts, markets: vec![btc_market(400)] };
    let call = tokio::spawn(async move {
        let r = client.calibrate_batch(batch).await;
        (r, std::time::Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(150)).await; // the batch is being calibrated
    let pid = process.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let signalled = std::time::Instant::now();
    let (response, finished) = call.await.unwrap();
    assert!(finished > signalled, "the batch was still running when SIGTERM came");
    let log = || std::fs::read_to_string(state.path().join("serve.log")).unwrap_or_default();
    let results = response.unwrap_or_else(|e| panic!("the call in progress completes: {e:?}\n{}", log())).into_inner().results;
    assert_eq!(results.len(), 10_000);
    assert!(results.iter().all(|r| matches!(r.outcome, Some(Outcome::Margin(_)))));
    // Split over the cores, the results still come back in request order.
    assert!(results.iter().enumerate().all(|(i, r)| r.account_id == format!("a{i}")));
    let status = tokio::task::spawn_blocking(move || process.0.wait()).await.unwrap().unwrap();
    assert!(status.success(), "a clean exit after SIGTERM: {status}");
    let audit: Vec<AuditRecord> = read_lines(&state.path().join("audit.jsonl")).unwrap();
    assert_eq!(audit.len(), 10_000, "audited before the response left");
    assert!(audit.iter().enumerate().all(|(i, r)| r.account_id == format!("a{i}")), "audit lines in request order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foresight_publish_backfills_the_service_and_is_harmless_to_repeat() {
    let state = tempfile::tempdir().unwrap();
    let (address, serving) = serve(config(&root().join("models"), Some(state.path()))).await;
    let server = format!("http://{address}");
    let publish = |days: &'static str| {
        let server = server.clone();
        tokio::task::spawn_blocking(move || {
            let data = |f: &str| crate::util::data(f).to_str().unwrap().to_string();
            crate::util::foresight_ok(&[
                "publish", "--asset", "BTC", "--data", &data("btc_usdt_1d.csv"), "--rv-data", &data("btc_usdt_2h.csv"),
                "--implied-vol-data", &data("btc_dvol_1d.csv"), "--days", days, "--server", &server,
            ])
        })
    };
    let out = publish("400").await.unwrap();
    assert!(out.contains("BTC: 400 day(s) sent") && out.contains("400 stored, 0 duplicate, 0 rejected"), "{out}");
    let held = serving.market.as_ref().unwrap().state("BTC").unwrap();
    assert_eq!((held.days, held.last_sequence), (400, 400));
    // The same days again: nothing to send.
    let out = publish("400").await.unwrap();
    assert!(out.contains("already holds every day"), "{out}");
    // The published days are the inline history the tests send: the same forward rate.
    let mut client = CalibrationServiceClient::connect(server).await.unwrap();
    let published = proto::AssetMarket { asset: "BTC".into(), data_age_seconds: Some(1.0), ..Default::default() };
    let from_state = client.calibrate(CalibrateRequest { markets: vec![published], ..from_state("p") }).await.unwrap().into_inner();
    let inline = client.calibrate(request(vec![linear(1.0)], btc_market(400))).await.unwrap().into_inner();
    assert_eq!(from_state.components[0].forward_rate, inline.components[0].forward_rate);
}

/// Starts the real binary and runs `tests/clients/<script> HOST:PORT <args>` with the project
/// venv's Python (the bootstrap installs the outside clients there); returns its stdout.
async fn python_client(script: &str, args: &[&str]) -> String {
    let state = tempfile::tempdir().unwrap();
    let (_process, address) = start_binary(state.path()).await;
    let python = root().join(".venv/bin/python");
    assert!(python.exists(), "{} is missing: run ./scripts/bootstrap.sh", python.display());
    let mut command = Command::new(python);
    command.arg(root().join("tests/clients").join(script)).arg(address.trim_start_matches("http://")).args(args);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    stdout
}

/// Triton's own Python client (tritonclient[grpc], installed by the bootstrap) against the real
/// binary: live, ready, metadata, and a card's golden rows through `infer` (raw contents both
/// ways) giving the card's outputs to 1e-9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritons_own_client_runs_the_served_models() {
    let card = root().join("models/btc-dvol-har-x/v1/card.json");
    let stdout = python_client("oip_triton.py", &[card.to_str().unwrap()]).await;
    assert!(stdout.contains("btc-dvol-har-x v1, 8 golden rows") && stdout.contains("within 1e-9"), "{stdout}");
}

/// The engine generation gauge is right from the start and moves with a split change, before
/// any calibration is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generation_gauge_is_served_before_any_calibration() {
    let (address, serving) = serve(config(&root().join("models"), None)).await;
    let bound = foresight_serve::server::spawn_metrics(serving.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let gauge = move || {
        let text = http_get(bound, "/metrics");
        text.lines().find(|l| l.starts_with("foresight_engine_generation ")).map(|l| l.rsplit(' ').next().unwrap().to_string())
    };
    assert_eq!(tokio::task::spawn_blocking(gauge).await.unwrap().as_deref(), Some("1"));
    let mut models = ModelServiceClient::connect(format!("http://{address}")).await.unwrap();
    let split = proto::TrafficSplit { arms: vec![proto::ArmWeight { arm: "ewma".into(), weight: 1.0 }], shadow: false };
    models.set_split(proto::SetSplitRequest { split: Some(split) }).await.unwrap();
    assert_eq!(tokio::task::spawn_blocking(gauge).await.unwrap().as_deref(), Some("2"));
}

/// Python's grpcio-reflection client, which speaks reflection v1alpha, lists every API of the real
/// binary and describes the calibration service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pythons_reflection_client_lists_the_services() {
    let stdout = python_client("reflection_v1alpha.py", &[]).await;
    for api in ["foresight.v1.CalibrationService", "foresight.v1.MarketDataService", "foresight.v1.ModelService", "inference.GRPCInferenceService", "grpc.health.v1.Health"] {
        assert!(stdout.lines().any(|l| l == api), "{api} not listed:\n{stdout}");
    }
    assert!(stdout.contains("CalibrationService methods: Calibrate,CalibrateBatch,CalibrateStream,Forecast"), "{stdout}");
}
