//! Replicas of `foresight-serve` sharing their market state through NATS JetStream: the real
//! binaries on a `nats-server` (Debian's, installed by the bootstrap) that each test starts on a
//! free loopback port with its own storage.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use foresight_serve::proto::market_data_service_client::MarketDataServiceClient;
use foresight_serve::proto::model_service_client::ModelServiceClient;
use foresight_serve::proto::calibration_service_client::CalibrationServiceClient;
use foresight_serve::proto::{self, AckStatus};
use tonic_health::pb::health_client::HealthClient;

use foresight_serve::audit::AuditRecord;
use foresight_serve::journal::read_lines;

use crate::serve_ops::{Process, btc_updates, from_state, publish, scratch_registry, spawn_binary, start_binary_args};
use crate::util::{force_promote, foresight_ok, free_port, root, wait_for_port};

/// A JetStream-enabled `nats-server` on a free loopback port, stopped when dropped.
pub struct NatsServer {
    _process: Process,
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
    _storage: tempfile::TempDir,
}

/// The bootstrap installs Debian's nats-server into /usr/sbin (not on every user's PATH).
fn nats_binary() -> PathBuf {
    let installed = Path::new("/usr/sbin/nats-server");
    if installed.exists() { installed.to_path_buf() } else { PathBuf::from("nats-server") }
}

pub fn nats_server() -> NatsServer {
    nats_server_with("")
}

/// As [`nats_server`], with `config` (nats-server's configuration syntax; empty: none) in its
/// storage folder as `nats.conf`.
fn nats_server_with(config: &str) -> NatsServer {
    // A port taken between `free_port` and the server's bind makes the server exit: try anew.
    for _ in 0..3 {
        let storage = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut command = Command::new(nats_binary());
        command.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd", storage.path().to_str().unwrap()]);
        if !config.is_empty() {
            std::fs::write(storage.path().join("nats.conf"), config).unwrap();
            command.args(["-c", storage.path().join("nats.conf").to_str().unwrap()]);
        }
        let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("nats-server runs (./scripts/bootstrap.sh installs it)");
        let mut process = Process(child);
        if wait_for_port(port, Duration::from_secs(5)) && process.0.try_wait().ok().flatten().is_none() {
            return NatsServer { _process: process, url: format!("nats://127.0.0.1:{port}"), _storage: storage };
        }
    }
    panic!("nats-server did not start on a free port in three tries");
}

/// NATS decentralised auth as `nsc` would set it up, generated afresh: an operator, a system
/// account, an application account with JetStream, and one user of it. `server` is the
/// nats-server configuration that trusts them; `user_creds` the user's `.creds` file.
struct NatsAuth {
    server: String,
    user_creds: String,
}

impl NatsAuth {
    fn generate() -> Self {
        use nkeys::KeyPair;
        let (operator, system, account, user) = (KeyPair::new_operator(), KeyPair::new_account(), KeyPair::new_account(), KeyPair::new_user());
        let unlimited_account = serde_json::json!({
            "type": "account", "version": 2,
            "limits": { "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true, "conn": -1, "leaf": -1,
                        "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1 },
        });
        let operator_jwt = nats_jwt(&operator, &operator, "operator", serde_json::json!({ "type": "operator", "version": 2 }));
        let system_jwt = nats_jwt(&operator, &system, "SYS", serde_json::json!({ "type": "account", "version": 2 }));
        let account_jwt = nats_jwt(&operator, &account, "foresight", unlimited_account);
        let user_jwt = nats_jwt(&account, &user, "foresight-serve", serde_json::json!({ "type": "user", "version": 2, "subs": -1, "data": -1, "payload": -1 }));
        let (system_key, account_key) = (system.public_key(), account.public_key());
        let server = format!(
            "operator: \"{operator_jwt}\"\nsystem_account: {system_key}\nresolver: MEMORY\nresolver_preload: {{\n  {system_key}: \"{system_jwt}\"\n  {account_key}: \"{account_jwt}\"\n}}\n"
        );
        let user_creds = format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            user.seed().unwrap()
        );
        Self { server, user_creds }
    }
}

/// A NATS JWT: `claims` about `subject`, signed by `issuer` (ed25519 over the header and claims).
fn nats_jwt(issuer: &nkeys::KeyPair, subject: &nkeys::KeyPair, name: &str, claims: serde_json::Value) -> String {
    use base64::Engine;
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let body = serde_json::json!({ "jti": "", "iat": now, "iss": issuer.public_key(), "sub": subject.public_key(), "name": name, "nats": claims });
    let signed = format!("{header}.{}", encode(body.to_string().as_bytes()));
    let signature = issuer.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", encode(&signature))
}

/// A three-node JetStream cluster on free loopback ports; `url` lists every node.
pub struct NatsCluster {
    nodes: Vec<Option<Process>>,
    /// `nats://127.0.0.1:P1,nats://127.0.0.1:P2,nats://127.0.0.1:P3`.
    pub url: String,
    _storage: tempfile::TempDir,
}

impl NatsCluster {
    /// Stops node `i` (as a crash would).
    pub fn stop(&mut self, i: usize) {
        self.nodes[i] = None;
    }
}

pub fn nats_cluster() -> NatsCluster {
    // A node whose route or monitoring port was taken between `free_port` and its bind (the
    // loopback ephemeral range is shared with every connection on the machine) exits, and two
    // nodes can never place a stream of three copies: start afresh on new ports.
    let mut failures = Vec::new();
    for _ in 0..3 {
        match try_nats_cluster() {
            Ok(cluster) => return cluster,
            Err(why) => failures.push(why),
        }
    }
    panic!("no three-node NATS cluster formed:\n{}", failures.join("\n"));
}

/// Starts three routed JetStream nodes and waits, up to 30 s, until each is running with routes
/// to the other two and the metadata leader counts the other two as current.
fn try_nats_cluster() -> Result<NatsCluster, String> {
    let storage = tempfile::tempdir().unwrap();
    let ports: Vec<[u16; 3]> = (0..3).map(|_| [free_port(), free_port(), free_port()]).collect();
    let mut nodes: Vec<Option<Process>> = (0..3)
        .map(|i| {
            let [client, route, monitor] = ports[i];
            let others: Vec<String> = (0..3).filter(|j| *j != i).map(|j| format!("nats://127.0.0.1:{}", ports[j][1])).collect();
            let log = std::fs::File::create(storage.path().join(format!("n{i}.log"))).unwrap();
            let child = Command::new(nats_binary())
                .args(["-js", "-n", &format!("n{i}"), "-a", "127.0.0.1", "-p", &client.to_string(), "-m", &monitor.to_string()])
                .args(["-sd", storage.path().join(format!("n{i}")).to_str().unwrap(), "--cluster_name", "foresight"])
                .args(["--cluster", &format!("nats://127.0.0.1:{route}"), "--routes", &others.join(",")])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("nats-server runs");
            Some(Process(child))
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let formed = loop {
        if let Some(i) = nodes.iter_mut().position(|node| node.as_mut().is_some_and(|n| n.0.try_wait().ok().flatten().is_some())) {
            break Err(format!("node n{i} exited"));
        }
        let routes = |monitor: u16| monitoring(monitor, "/routez").and_then(|r| r["num_routes"].as_u64()).unwrap_or(0);
        let current_followers = |monitor: u16| {
            let replicas = monitoring(monitor, "/jsz").map(|j| j["meta_cluster"]["replicas"].clone()).unwrap_or_default();
            replicas.as_array().map_or(0, |peers| peers.iter().filter(|p| p["current"] == true).count())
        };
        if ports.iter().all(|p| routes(p[2]) == 2) && ports.iter().any(|p| current_followers(p[2]) == 2) {
            break Ok(());
        }
        if std::time::Instant::now() > deadline {
            break Err("not formed within 30 s".to_string());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if let Err(why) = formed {
        nodes.iter_mut().for_each(|node| *node = None);
        let logs: Vec<String> = (0..3).map(|i| std::fs::read_to_string(storage.path().join(format!("n{i}.log"))).unwrap_or_default()).collect();
        return Err(format!("{why}; ports {ports:?}; logs:\n{}", logs.join("\n")));
    }
    let url = ports.iter().map(|p| format!("nats://127.0.0.1:{}", p[0])).collect::<Vec<_>>().join(",");
    Ok(NatsCluster { nodes, url, _storage: storage })
}

/// The JSON a nats-server monitoring endpoint (`-m PORT`) answers at `path`, if it answers.
fn monitoring(port: u16, path: &str) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    serde_json::from_str(response.split_once("\r\n\r\n")?.1).ok()
}

/// Prints the replicas' logs (`serve.log` in each folder) when the test fails: a failure under
/// load on a shared machine is only understood from what the replicas said.
struct LogsOnFailure(Vec<PathBuf>);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for folder in &self.0 {
                let log = std::fs::read_to_string(folder.join("serve.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                eprintln!("--- {} (last {} lines)", folder.join("serve.log").display(), tail.len());
                tail.iter().rev().for_each(|line| eprintln!("{line}"));
            }
        }
    }
}

/// A replica on `nats` serving the committed registry (`folder` gets its log).
async fn replica(nats: &NatsServer, folder: &Path) -> (Process, String) {
    start_binary_args(&root().join("models"), folder, &["--state", &nats.url, "--reload-interval", "0"]).await
}

/// A replica with its settings in `config`, serving the committed registry (`folder` gets its log).
async fn configured_replica(folder: &Path, config: &Path) -> (Process, String) {
    start_binary_args(&root().join("models"), folder, &["--config", config.to_str().unwrap(), "--reload-interval", "0"]).await
}

/// Waits until the service at `address` holds `sequence` for BTC.
async fn holds(address: &str, sequence: u64) -> proto::AssetState {
    let mut market = MarketDataServiceClient::connect(address.to_string()).await.unwrap();
    // Replicas apply what another published within moments; after a node of a cluster went, a
    // replica whose consumer was there notices within seconds and resumes.
    for _ in 0..600 {
        if let Ok(state) = market.get_asset_state(proto::AssetStateRequest { asset: "BTC".into() }).await {
            let state = state.into_inner();
            if state.last_sequence >= sequence {
                return state;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{address} never held BTC sequence {sequence}");
}

async fn serving(address: &str, service: &str) -> bool {
    let channel = tonic::transport::Channel::from_shared(address.to_string()).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel);
    let status = health.check(tonic_health::pb::HealthCheckRequest { service: service.into() }).await.unwrap().into_inner().status;
    status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_stream_hold_the_same_market_and_post_the_same_margin() {
    let nats = nats_server();
    let (a_dir, b_dir, single_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _logs = LogsOnFailure(vec![a_dir.path().to_path_buf(), b_dir.path().to_path_buf()]);
    let (mut a_process, a) = replica(&nats, a_dir.path()).await;
    let (_b_process, b) = replica(&nats, b_dir.path()).await;

    // Published through A: acknowledged once JetStream stored each update and A applied it.
    let updates = btc_updates(5);
    let acks = publish(&a, updates.clone()).await;
    assert_eq!(acks.len(), 405);
    assert!(acks.iter().all(|x| x.status == AckStatus::Stored as i32), "{:?}", acks.iter().find(|x| x.status != AckStatus::Stored as i32));
    let on_b = holds(&b, 405).await;
    assert_eq!((on_b.last_sequence, on_b.days), (405, 400));

    // Calibrated through B: the margin a single service with its own journal gives for the
    // same days.
    let (_single_process, single) = start_binary_args(&root().join("models"), single_dir.path(), &["--reload-interval", "0"]).await;
    publish(&single, updates.clone()).await;
    let via_b = CalibrationServiceClient::connect(b.clone()).await.unwrap().calibrate(from_state("acct-1")).await.unwrap().into_inner();
    let alone = CalibrationServiceClient::connect(single.clone()).await.unwrap().calibrate(from_state("acct-1")).await.unwrap().into_inner();
    assert_eq!(via_b.components[0].model, "btc-dvol-har-x@v1");
    assert_eq!((via_b.initial_margin, via_b.components[0].forward_rate), (alone.initial_margin, alone.components[0].forward_rate));

    // Re-sent through B: every update is a duplicate, stored once.
    let again = publish(&b, updates[398..].to_vec()).await;
    assert!(again.iter().all(|x| x.status == AckStatus::Duplicate as i32), "{again:?}");

    // A is killed; B keeps answering; a tick published through B reaches the restarted A,
    // which rebuilt the whole state from the stream.
    a_process.0.kill().unwrap();
    a_process.0.wait().unwrap();
    CalibrationServiceClient::connect(b.clone()).await.unwrap().calibrate(from_state("acct-2")).await.unwrap();
    let mut tick = btc_updates(6).pop().unwrap();
    tick.sequence = 406;
    let acks = publish(&b, vec![tick]).await;
    assert_eq!(acks[0].status, AckStatus::Stored as i32, "{acks:?}");
    let (_a_process, a) = replica(&nats, a_dir.path()).await;
    let on_a = holds(&a, 406).await;
    assert_eq!((on_a.last_sequence, on_a.days), (406, 400));
    assert!(serving(&a, "foresight.v1.CalibrationService").await, "caught up: serving");
    // An update that no longer applies is rejected on every replica alike.
    let mut stale = btc_updates(1).remove(0);
    stale.sequence = 407;
    let acks = publish(&a, vec![stale]).await;
    assert_eq!(acks[0].status, AckStatus::Rejected as i32, "{acks:?}");
    assert!(acks[0].error.starts_with("day"), "{}", acks[0].error);
    // B skipped it too: the next tick, under the sequence the rejected update did not take, is
    // the next thing both hold.
    let mut tick = btc_updates(7).pop().unwrap();
    tick.sequence = 407;
    assert_eq!(publish(&a, vec![tick]).await[0].status, AckStatus::Stored as i32);
    let (on_a, on_b) = (holds(&a, 407).await, holds(&b, 407).await);
    assert_eq!((on_a.last_sequence, on_a.last_price), (on_b.last_sequence, on_b.last_price));

    // The audit stream holds every calibration of both replicas once, and exports to the file
    // a single machine writes (read here by the reader replays and reports use).
    for (replica, account) in [(&a, "acct-a1"), (&b, "acct-b1"), (&a, "acct-a2"), (&b, "acct-b2")] {
        CalibrationServiceClient::connect(replica.to_string()).await.unwrap().calibrate(from_state(account)).await.unwrap();
    }
    let out = a_dir.path().join("exported.jsonl");
    let exported = foresight_ok(&["audit", "export", "--nats", &nats.url, "--out", out.to_str().unwrap()]);
    assert!(exported.contains("6 audit lines"), "{exported}");
    let records: Vec<AuditRecord> = read_lines(&out).unwrap();
    let mut accounts: Vec<&str> = records.iter().map(|r| r.account_id.as_str()).collect();
    accounts.sort_unstable();
    // (acct-1 and acct-2 went through B earlier; the single service keeps its own log.)
    assert_eq!(accounts, ["acct-1", "acct-2", "acct-a1", "acct-a2", "acct-b1", "acct-b2"], "each call once");
    // An export from where no NATS answers (a port that takes connections and says nothing)
    // fails, naming the URL, instead of waiting.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("nats://{}", silent.local_addr().unwrap());
    let failed = crate::util::foresight_err(&["audit", "export", "--nats", &nowhere, "--out", out.to_str().unwrap()]);
    assert!(failed.contains(&nowhere) && failed.contains("could not connect within 10s"), "{failed}");

    // A split set through A is B's too: every account gets the same arm whichever answers.
    let split = proto::TrafficSplit {
        arms: vec![proto::ArmWeight { arm: "model:champion".into(), weight: 0.5 }, proto::ArmWeight { arm: "ewma".into(), weight: 0.5 }],
        shadow: false,
    };
    // A writer that read the split before this change (as a replica whose follower lags)...
    let options = foresight_serve::nats::NatsOptions::new(nats.url.clone());
    let jetstream = foresight_serve::nats::connect(&options).await.unwrap();
    let stale = foresight_serve::nats::SharedValue::open(&jetstream, &options, "split").await.unwrap();
    let before: Option<serde_json::Value> = stale.get().await.unwrap();
    ModelServiceClient::connect(a.clone()).await.unwrap().set_split(proto::SetSplitRequest { split: Some(split) }).await.unwrap();
    // ...cannot overwrite it with what it had read.
    let refused = tokio::task::spawn_blocking(move || stale.put_blocking(&before)).await.unwrap().unwrap_err();
    assert!(refused.to_string().contains("another replica changed it meanwhile"), "{refused}");
    let mut models_b = ModelServiceClient::connect(b.clone()).await.unwrap();
    let mut followed = false;
    for _ in 0..100 {
        let arms = models_b.list_models(proto::ListModelsRequest {}).await.unwrap().into_inner().split.unwrap().arms;
        if arms.len() == 2 {
            followed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(followed, "B follows the split set through A");
    let (mut on_a, mut on_b) = (CalibrationServiceClient::connect(a.clone()).await.unwrap(), CalibrationServiceClient::connect(b.clone()).await.unwrap());
    let mut arms = std::collections::BTreeSet::new();
    for i in 0..12 {
        let account = format!("split-{i}");
        let (x, y) = (on_a.calibrate(from_state(&account)).await.unwrap().into_inner(), on_b.calibrate(from_state(&account)).await.unwrap().into_inner());
        assert_eq!(x.arm, y.arm, "{account}");
        arms.insert(x.arm);
    }
    assert_eq!(arms.len(), 2, "both arms are in use: {arms:?}");
    // A replica started now serves the split too.
    let (_c_process, c) = replica(&nats, tempfile::tempdir().unwrap().path()).await;
    let split = ModelServiceClient::connect(c).await.unwrap().list_models(proto::ListModelsRequest {}).await.unwrap().into_inner().split.unwrap();
    assert_eq!(split.arms.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_publishing_several_assets_is_answered_in_its_order_and_every_replica_holds_each() {
    let nats = nats_server();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _logs = LogsOnFailure(vec![a_dir.path().to_path_buf(), b_dir.path().to_path_buf()]);
    let (_a_process, a) = replica(&nats, a_dir.path()).await;
    let (_b_process, b) = replica(&nats, b_dir.path()).await;
    // Four assets' histories interleaved update by update (the assets are published side by
    // side, each in its own order), with an asset NATS cannot name among them.
    let assets = ["BTC", "ETH", "SOL", "XRP"];
    let history = btc_updates(3);
    let mut updates: Vec<proto::MarketUpdate> = (0..history.len())
        .flat_map(|i| assets.iter().map(move |asset| (i, asset.to_string())))
        .map(|(i, asset)| proto::MarketUpdate { asset, ..history[i].clone() })
        .collect();
    updates.insert(1001, proto::MarketUpdate { asset: "ETH.PERP".into(), ..history[0].clone() });
    let acks = publish(&a, updates.clone()).await;
    assert_eq!(acks.len(), updates.len());
    for (ack, update) in acks.iter().zip(&updates) {
        assert_eq!((ack.asset.as_str(), ack.sequence), (update.asset.as_str(), update.sequence));
        let expected = if update.asset == "ETH.PERP" { AckStatus::Rejected } else { AckStatus::Stored };
        assert_eq!(ack.status, expected as i32, "{ack:?}");
    }
    assert!(acks[1001].error.contains("asset"), "{:?}", acks[1001]);
    let mut market = MarketDataServiceClient::connect(b.clone()).await.unwrap();
    holds(&b, 403).await;
    for asset in assets {
        let state = market.get_asset_state(proto::AssetStateRequest { asset: asset.into() }).await.unwrap().into_inner();
        assert_eq!((state.last_sequence, state.days), (403, 400), "{asset} on B");
    }
    // Sent again through B: each a duplicate, in the same order.
    let again = publish(&b, updates.clone()).await;
    assert!(again.iter().zip(&updates).all(|(ack, update)| ack.sequence == update.sequence && ack.asset == update.asset));
    assert!(again.iter().filter(|x| x.asset != "ETH.PERP").all(|x| x.status == AckStatus::Duplicate as i32));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_loses_a_node_and_replicas_keep_publishing_and_calibrating() {
    let mut cluster = nats_cluster();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("serve.toml");
    std::fs::write(&config, format!("state = \"{}\"\n[nats]\nreplicas = 3\n", cluster.url)).unwrap();
    for replica in ["a", "b"] {
        std::fs::create_dir(dir.path().join(replica)).unwrap();
    }
    let _logs = LogsOnFailure(vec![dir.path().join("a"), dir.path().join("b")]);
    let (_a_process, a) = configured_replica(&dir.path().join("a"), &config).await;
    let (_b_process, b) = configured_replica(&dir.path().join("b"), &config).await;
    let updates = btc_updates(5);
    assert!(publish(&a, updates.clone()).await.iter().all(|x| x.status == AckStatus::Stored as i32));
    assert_eq!(holds(&b, 405).await.days, 400);

    // One node of three goes: the streams keep a quorum of two copies.
    cluster.stop(0);
    let mut tick = btc_updates(6).pop().unwrap();
    tick.sequence = 406;
    let acks = publish(&b, vec![tick]).await;
    assert_eq!(acks[0].status, AckStatus::Stored as i32, "{acks:?}");
    assert_eq!(holds(&a, 406).await.last_sequence, 406);
    for (replica, account) in [(&a, "x"), (&b, "y")] {
        let margin = CalibrationServiceClient::connect(replica.to_string()).await.unwrap().calibrate(from_state(account)).await.unwrap().into_inner();
        assert!(margin.initial_margin > 0.0 && margin.components[0].model == "btc-dvol-har-x@v1");
    }
    // A split set through B now still reaches A.
    let split = proto::TrafficSplit {
        arms: vec![proto::ArmWeight { arm: "model:champion".into(), weight: 0.5 }, proto::ArmWeight { arm: "ewma".into(), weight: 0.5 }],
        shadow: false,
    };
    ModelServiceClient::connect(b.clone()).await.unwrap().set_split(proto::SetSplitRequest { split: Some(split) }).await.unwrap();
    let mut models_a = ModelServiceClient::connect(a.clone()).await.unwrap();
    // (A's split consumer may have been on the stopped node: it is replaced within seconds.)
    let mut arms = 0;
    for _ in 0..1200 {
        arms = models_a.list_models(proto::ListModelsRequest {}).await.unwrap().into_inner().split.unwrap().arms.len();
        if arms == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(arms, 2, "A follows the split set through B with a node gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_reach_nats_over_tls_with_credentials_and_are_refused_without_them() {
    // A nats-server that takes TLS connections only, from users the operator's accounts sign.
    let tls = root().join("tests/fixtures/tls");
    let auth = NatsAuth::generate();
    let tls_block = format!("tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n", tls.join("server.crt").display(), tls.join("server.key").display());
    let nats = nats_server_with(&format!("{tls_block}{}", auth.server));
    let port = nats.url.rsplit(':').next().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("svc.creds"), &auth.user_creds).unwrap();
    let config = |name: &str, nats_settings: &str| {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, format!("state = \"tls://127.0.0.1:{port}\"\n[nats]\n{nats_settings}")).unwrap();
        std::fs::create_dir(dir.path().join(name)).unwrap();
        path
    };
    let (creds, ca) = (dir.path().join("svc.creds"), tls.join("ca.crt"));
    let trusted = config("trusted", &format!("credentials = \"{}\"\nca = \"{}\"\n", creds.display(), ca.display()));
    let _logs = LogsOnFailure(vec![dir.path().join("trusted")]);

    let (_process, address) = configured_replica(&dir.path().join("trusted"), &trusted).await;
    let acks = publish(&address, btc_updates(5)).await;
    assert!(acks.iter().all(|x| x.status == AckStatus::Stored as i32), "{:?}", acks.iter().find(|x| x.status != AckStatus::Stored as i32));
    let margin = CalibrationServiceClient::connect(address.clone()).await.unwrap().calibrate(from_state("tls")).await.unwrap().into_inner();
    assert!(margin.initial_margin > 0.0 && margin.components[0].model == "btc-dvol-har-x@v1");

    // Without the user's credentials a replica exits at start-up, naming the setting; without
    // the CA that signed the server's certificate it never serves, and its log says why.
    let start = |name: &str, settings: String| {
        let path = config(name, &settings);
        let folder = dir.path().join(name);
        let (process, _) = spawn_binary(&root().join("models"), &folder, &["--config", path.to_str().unwrap(), "--reload-interval", "0"], &[]);
        (process, folder.join("serve.log"))
    };
    let (mut refused, refused_log) = start("no-credentials", format!("ca = \"{}\"\n", ca.display()));
    let (mut untrusted, untrusted_log) = start("untrusted", format!("credentials = \"{}\"\n", creds.display()));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let log = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
    while (refused.0.try_wait().unwrap().is_none() || !log(&untrusted_log).contains("invalid peer certificate")) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = refused.0.try_wait().unwrap();
    assert!(status.is_some_and(|s| !s.success()), "no-credentials: the replica should exit with an error; {status:?}, log:\n{}", log(&refused_log));
    let expected = "NATS refused the connection: authorization violation (check [nats] credentials";
    assert!(log(&refused_log).contains(expected), "no-credentials: the log should say `{expected}`:\n{}", log(&refused_log));
    assert!(log(&untrusted_log).contains("invalid peer certificate: UnknownIssuer"), "untrusted: the log should name the certificate:\n{}", log(&untrusted_log));
    assert!(untrusted.0.try_wait().unwrap().is_none() && !log(&untrusted_log).contains("listening"), "untrusted: it waits, never serving:\n{}", log(&untrusted_log));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_replica_restores_the_market_snapshot_and_applies_only_what_came_after() {
    let nats = nats_server();
    let dir = tempfile::tempdir().unwrap();
    let config = |every: u64| {
        let path = dir.path().join(format!("serve-{every}.toml"));
        std::fs::write(&path, format!("state = \"{}\"\n[nats]\nmarket_snapshot_every = {every}\n", nats.url)).unwrap();
        path
    };
    let (with_snapshots, without) = (config(100), config(0));
    let folders: Vec<PathBuf> = ["a", "b", "c"].iter().map(|r| dir.path().join(r)).collect();
    folders.iter().for_each(|f| std::fs::create_dir(f).unwrap());
    let _logs = LogsOnFailure(folders.clone());
    let (_a_process, a) = configured_replica(&folders[0], &with_snapshots).await;
    assert!(publish(&a, btc_updates(5)).await.iter().all(|x| x.status == AckStatus::Stored as i32));
    // A snapshots after stream messages 100, 200, 300 and 400.
    let mut snapshotted = false;
    for _ in 0..200 {
        let log = std::fs::read_to_string(folders[0].join("serve.log")).unwrap_or_default();
        if log.lines().any(|l| l.contains("market state snapshotted") && l.contains("through=400")) {
            snapshotted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(snapshotted, "A snapshotted the state through stream message 400");

    // B starts from that snapshot and applies messages 401..405 only; C, without snapshots,
    // applies all 405. Both hold what A holds and post the same margin.
    let (_b_process, b) = configured_replica(&folders[1], &with_snapshots).await;
    let (_c_process, c) = configured_replica(&folders[2], &without).await;
    let on_a = holds(&a, 405).await;
    for address in [&b, &c] {
        let state = holds(address, 405).await;
        assert_eq!((state.days, state.last_price, state.open_date.clone(), state.last_tick_ms), (on_a.days, on_a.last_price, on_a.open_date.clone(), on_a.last_tick_ms));
    }
    let caught_up = |folder: &Path| {
        let log = std::fs::read_to_string(folder.join("serve.log")).unwrap();
        log.lines().find(|l| l.contains("caught up with the market stream")).map(str::to_string).unwrap_or_else(|| panic!("{log}"))
    };
    assert!(caught_up(&folders[1]).contains("applied=5 from=401"), "B applied 401..405 only: {}", caught_up(&folders[1]));
    assert!(caught_up(&folders[2]).contains("applied=405 from=1"), "C applied the whole stream: {}", caught_up(&folders[2]));
    let margin = |address: String| async move { CalibrationServiceClient::connect(address).await.unwrap().calibrate(from_state("snap")).await.unwrap().into_inner() };
    let (via_a, via_b, via_c) = (margin(a.clone()).await, margin(b.clone()).await, margin(c.clone()).await);
    assert_eq!((via_b.initial_margin, via_b.components[0].forward_rate), (via_a.initial_margin, via_a.components[0].forward_rate));
    assert_eq!((via_c.initial_margin, via_c.components[0].forward_rate), (via_a.initial_margin, via_a.components[0].forward_rate));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_loses_nothing_acknowledged_and_catches_up() {
    let nats = nats_server();
    let (a_dir, b_dir, single_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _logs = LogsOnFailure(vec![a_dir.path().to_path_buf(), b_dir.path().to_path_buf()]);
    let (mut a_process, a) = replica(&nats, a_dir.path()).await;
    let (_b_process, b) = replica(&nats, b_dir.path()).await;
    let updates = btc_updates(60);
    assert!(publish(&a, updates[..400].to_vec()).await.iter().all(|x| x.status == AckStatus::Stored as i32));

    // Calibrations through B all along, while the ticks go one by one through A; A is killed
    // after the 20th. The publisher then resends, through B, what A did not acknowledge.
    let calls = {
        let b = b.clone();
        tokio::spawn(async move {
            let mut client = CalibrationServiceClient::connect(b).await.unwrap();
            let mut answered = 0;
            for i in 0..60 {
                client.calibrate(from_state(&format!("load-{i}"))).await.expect("B keeps answering");
                answered += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            answered
        })
    };
    let mut acknowledged = Vec::new();
    for (k, update) in updates[400..].iter().enumerate() {
        if k == 20 {
            a_process.0.kill().unwrap();
            a_process.0.wait().unwrap();
        }
        let through_a = if k < 20 { publish_one(&a, update.clone()).await } else { None };
        let ack = match through_a {
            Some(ack) => ack,
            None => publish_one(&b, update.clone()).await.expect("B acknowledges"),
        };
        assert!(ack.status == AckStatus::Stored as i32 || ack.status == AckStatus::Duplicate as i32, "{ack:?}");
        acknowledged.push(ack.sequence);
    }
    assert_eq!(calls.await.unwrap(), 60);
    assert_eq!(acknowledged, (401..=460).collect::<Vec<u64>>());

    // The restarted A catches up; both hold what one service with its own journal holds after
    // the same updates, each applied once.
    let (_a_process, a) = replica(&nats, a_dir.path()).await;
    let (on_a, on_b) = (holds(&a, 460).await, holds(&b, 460).await);
    let (_single_process, single) = start_binary_args(&root().join("models"), single_dir.path(), &["--reload-interval", "0"]).await;
    publish(&single, updates.clone()).await;
    let alone = holds(&single, 460).await;
    for state in [&on_a, &on_b] {
        assert_eq!((state.last_sequence, state.days, state.last_price, state.open_date.clone()), (alone.last_sequence, alone.days, alone.last_price, alone.open_date.clone()));
    }
    let margin = |address: String| async move { CalibrationServiceClient::connect(address).await.unwrap().calibrate(from_state("after")).await.unwrap().into_inner().initial_margin };
    let (via_a, via_b, via_single) = (margin(a.clone()).await, margin(b.clone()).await, margin(single.clone()).await);
    assert_eq!((via_a, via_b), (via_single, via_single));
}

/// Publishes one update; `None` when the service is gone.
async fn publish_one(address: &str, update: proto::MarketUpdate) -> Option<proto::PublishAck> {
    let mut client = MarketDataServiceClient::connect(address.to_string()).await.ok()?;
    let mut acks = client.publish(tokio_stream::iter(vec![update])).await.ok()?.into_inner();
    tokio_stream::StreamExt::next(&mut acks).await?.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_reaches_every_replica_with_the_same_registry_sequence() {
    let nats = nats_server();
    let registry = scratch_registry();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _logs = LogsOnFailure(vec![a_dir.path().to_path_buf(), b_dir.path().to_path_buf()]);
    let args = ["--state", nats.url.as_str(), "--reload-interval", "1"];
    let (_a_process, a) = start_binary_args(registry.path(), a_dir.path(), &args).await;
    let (_b_process, b) = start_binary_args(registry.path(), b_dir.path(), &args).await;
    let listing = |address: String| async move { ModelServiceClient::connect(address).await.unwrap().list_models(proto::ListModelsRequest {}).await.unwrap().into_inner() };
    let before = listing(a.clone()).await.registry_sequence;
    assert!(before > 0, "the committed registry has a log");
    assert_eq!(listing(b.clone()).await.registry_sequence, before);

    force_promote(registry.path(), "btc-log-har@v1", "replica test");
    for address in [&a, &b] {
        let mut reached = false;
        for _ in 0..100 {
            let now = listing(address.to_string()).await;
            let btc = now.models.iter().find(|m| m.slot == "BTC/volatility").map(|m| m.model.clone());
            if btc.as_deref() == Some("btc-log-har@v1") {
                assert_eq!(now.registry_sequence, before + 1, "{address}");
                reached = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(reached, "{address} serves the promoted champion");
    }
}
