//! The registry in an S3-compatible object store: moto's S3 server (installed into `.venv` by
//! the bootstrap), started by each test on a free loopback port. The same registry code as for a
//! folder, through object_store's S3 client: a folder copied up, conditional writes under
//! concurrent publishers, checksums, and replicas serving from the bucket.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use foresight_registry::storage::{Location, Storage};
use foresight_registry::{ModelRef, Registry, RegistryError};
use foresight_serve::proto::{self, model_service_client::ModelServiceClient};

use crate::serve_ops::{Process, start_binary_env};
use crate::util::{foresight_env, foresight_ok, foresight_ok_env, force_promote_in, free_port, root, wait_for_port};

/// The registry's URL in the test bucket.
const URL: &str = "s3://foresight/models";

/// moto's S3 server with an empty bucket `foresight`, stopped when dropped.
struct S3Server {
    _process: Process,
    endpoint: String,
}

impl S3Server {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new(root().join(".venv/bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server runs (./scripts/bootstrap.sh installs it into .venv)");
        let process = Process(child);
        // moto answers once Flask is up (seconds on a loaded machine); the bucket is created
        // with a plain HTTP PUT, as any S3 client would.
        assert!(wait_for_port(port, Duration::from_secs(30)), "moto_server did not start on port {port}");
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let request = format!("PUT /foresight HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "creating the bucket: {answer}");
        S3Server { _process: process, endpoint: format!("http://127.0.0.1:{port}") }
    }

    /// The S3 settings, as the AWS tools read them from the environment.
    fn env(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ]
    }

    /// The registry in the bucket, opened in this process.
    fn registry(&self) -> Registry {
        let settings = self.env().into_iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Registry::on(Storage::open_with(&Location::parse(URL), settings).unwrap()).unwrap()
    }
}

fn r(s: &str) -> ModelRef {
    s.parse().unwrap()
}

#[test]
fn a_registry_copied_to_s3_lists_and_loads_as_the_folder_does_and_is_never_overwritten() {
    let s3 = S3Server::start();
    let env = s3.env();
    let models = root().join("models");
    let models = models.to_str().unwrap();
    let copied = foresight_ok_env(&["models", "copy", "--registry", models, "--to", URL], &env);
    assert!(copied.contains("versions stored, 0 already there"), "{copied}");
    // The same listing from the bucket as from the folder, and every champion passes its
    // sha256 and golden rows read from the bucket.
    assert_eq!(foresight_ok_env(&["models", "list", "--registry", URL], &env), foresight_ok(&["models", "list", "--registry", models]));
    let bucket = s3.registry();
    let folder = Registry::open(root().join("models")).unwrap();
    assert_eq!(bucket.index(), folder.index());
    for slot in bucket.index().slots.values() {
        bucket.load(slot.champion.as_ref().unwrap()).unwrap();
    }
    assert_eq!(bucket.artifact("correlation").unwrap(), folder.artifact("correlation").unwrap());
    let again = foresight_ok_env(&["models", "copy", "--registry", models, "--to", URL], &env);
    assert!(again.contains(" 0 versions stored"), "{again}");

    // Three training jobs publish at once, each from its own view of the bucket: three
    // versions, none overwriting another, all entered as challengers (conditional puts).
    let card = bucket.card(&r("spx-log-har@v1")).unwrap();
    let onnx = std::fs::read(root().join("models/spx-log-har/v1/model.onnx")).unwrap();
    let jobs: Vec<Registry> = (0..3).map(|_| s3.registry()).collect();
    let (card, onnx) = (&card, &onnx);
    let mut versions: Vec<u32> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs.into_iter().map(|mut job| s.spawn(move || job.publish(card.clone(), onnx).unwrap().version)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    versions.sort_unstable();
    assert_eq!(versions, [2, 3, 4]);
    let bucket = s3.registry();
    for v in 2..=4 {
        assert!(bucket.index().slots["SPX/volatility"].challengers.contains(&r(&format!("spx-log-har@v{v}"))));
    }
    // Copying the folder over the bucket now would drop those challengers: refused.
    let refused = foresight_env(&["models", "copy", "--registry", models, "--to", URL], &env);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("SPX/volatility holds changes"), "{stderr}");

    // A model file changed in the bucket after it was registered is refused by its checksum.
    let storage = Storage::open_with(&Location::parse(URL), s3.env().into_iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
    let mut bytes = storage.get("btc-log-har/v1/model.onnx").unwrap().unwrap().0;
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    storage.put("btc-log-har/v1/model.onnx", &bytes).unwrap();
    let err = bucket.load(&r("btc-log-har@v1")).unwrap_err();
    assert!(matches!(err, RegistryError::HashMismatch { .. }) && err.to_string().contains("btc-log-har@v1"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_serve_from_the_bucket_and_follow_a_promotion_there() {
    let s3 = S3Server::start();
    let env = s3.env();
    Registry::open(root().join("models")).unwrap().copy_to(&mut s3.registry()).unwrap();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let args = ["--reload-interval", "1"];
    let (_a_process, a) = start_binary_env(Path::new(URL), a_dir.path(), &args, &env).await;
    let (_b_process, b) = start_binary_env(Path::new(URL), b_dir.path(), &args, &env).await;
    let listing = |address: String| async move { ModelServiceClient::connect(address).await.unwrap().list_models(proto::ListModelsRequest {}).await.unwrap().into_inner() };
    let before = listing(a.clone()).await;
    let served: Vec<(String, String)> = before.models.iter().filter(|m| m.slot != "arm").map(|m| (m.slot.clone(), m.model.clone())).collect();
    let expected: Vec<(String, String)> = Registry::open(root().join("models")).unwrap().index().slots.iter().map(|(slot, s)| (slot.clone(), s.champion.as_ref().unwrap().to_string())).collect();
    assert_eq!(served, expected, "the bucket's champions are served");
    assert_eq!(listing(b.clone()).await.registry_sequence, before.registry_sequence);

    // Promoted in the bucket (as `foresight models promote --registry s3://...` does): both
    // replicas notice registry.json's new ETag and serve it, at the same registry sequence.
    force_promote_in(&mut s3.registry(), "btc-log-har@v1", "replicas on object storage");
    for address in [&a, &b] {
        let mut reached = false;
        for _ in 0..100 {
            let now = listing(address.to_string()).await;
            if now.models.iter().any(|m| m.slot == "BTC/volatility" && m.model == "btc-log-har@v1") {
                assert_eq!(now.registry_sequence, before.registry_sequence + 1, "{address}");
                reached = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(reached, "{address} serves the champion promoted in the bucket");
    }
}
