//! `foresight-serve`: the calibration service binary (ONNX Runtime only, no training stack).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use foresight_serve::config::ServeFile;
use foresight_serve::journal::Durability;
use foresight_serve::{ServeError, Serving, server};

/// A call allocates dozens of small strings and vectors (protobuf, HTTP/2 frames, the margin's
/// explanation); mimalloc's per-thread pages serve them at a fraction of glibc malloc's cost.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Serve forward-looking margin over gRPC from the model registry.
#[derive(Debug, Parser)]
#[command(name = "foresight-serve", version, about)]
struct Args {
    /// Settings file (TOML); the flags below override it.
    #[arg(long, value_name = "FILE", env = "FORESIGHT_SERVE_CONFIG")]
    config: Option<PathBuf>,
    /// The registry whose champions are served: a folder, or `s3://bucket/prefix` with the
    /// AWS_* settings in the environment [default: models].
    #[arg(long, value_name = "DIR|URL", env = "FORESIGHT_SERVE_REGISTRY")]
    registry: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:50051].
    #[arg(long, env = "FORESIGHT_SERVE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Folder of the market state, audit log and A/B split (created if missing).
    #[arg(long, value_name = "DIR", env = "FORESIGHT_SERVE_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// The market state's home: a folder, or nats://HOST:PORT to share it with other replicas
    /// through JetStream, with the audit log and the A/B split (--state-dir is then not used).
    #[arg(long, value_name = "DIR|URL", env = "FORESIGHT_SERVE_STATE")]
    state: Option<String>,
    /// When journal and audit lines count as stored: group-commit, fsync-each or buffered.
    #[arg(long, value_parser = parse_durability, env = "FORESIGHT_SERVE_DURABILITY")]
    durability: Option<Durability>,
    /// Seconds between registry checks for a new champion (0: no hot reload) [default: 5].
    #[arg(long, value_name = "SECONDS", env = "FORESIGHT_SERVE_RELOAD_INTERVAL")]
    reload_interval: Option<u64>,
    /// PEM certificate chain; with --tls-key, serve over TLS only.
    #[arg(long, value_name = "FILE", env = "FORESIGHT_SERVE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", env = "FORESIGHT_SERVE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Address for Prometheus' `GET /metrics` (plain HTTP), e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR", env = "FORESIGHT_SERVE_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// File of accepted bearer tokens, one per line; callers send `authorization: Bearer <token>`.
    #[arg(long, value_name = "FILE", env = "FORESIGHT_SERVE_AUTH_TOKENS")]
    auth_tokens: Option<PathBuf>,
}

fn parse_durability(text: &str) -> Result<Durability, String> {
    serde_json::from_value(serde_json::Value::String(text.into())).map_err(|_| format!("`{text}`: group-commit, fsync-each or buffered"))
}

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run() -> Result<(), ServeError> {
    use std::io::IsTerminal;
    use tracing_subscriber::prelude::*;
    // INFO and above, and the NATS client's reason for each failed connection attempt (an
    // untrusted server certificate reaches its events only as "IO error").
    let shown = tracing_subscriber::filter::filter_fn(|meta| *meta.level() <= tracing::Level::INFO || (meta.target() == "async_nats::connector" && meta.fields().field("error").is_some()));
    let log = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal()).with_target(false);
    tracing_subscriber::registry().with(log.with_filter(shown)).init();
    let args = Args::parse();
    let mut file = match &args.config {
        Some(path) => ServeFile::read(path)?,
        None => ServeFile::default(),
    };
    file.registry = args.registry.or(file.registry);
    file.listen = args.listen.or(file.listen);
    file.state_dir = args.state_dir.or(file.state_dir);
    file.state = args.state.or(file.state);
    file.durability = args.durability.or(file.durability);
    file.reload_interval_secs = args.reload_interval.or(file.reload_interval_secs);
    file.tls_cert = args.tls_cert.or(file.tls_cert);
    file.tls_key = args.tls_key.or(file.tls_key);
    file.auth_tokens_file = args.auth_tokens.or(file.auth_tokens_file);
    file.metrics_listen = args.metrics_listen.or(file.metrics_listen);
    let settings = file.settings()?;

    let serving = Arc::new(Serving::connect(settings.serving.clone()).await?);
    let engine = serving.engine();
    for (slot, served) in engine.served() {
        tracing::info!(slot, model = served.reference, "serving");
    }
    let arms: Vec<String> = engine.arms().map(|(a, w)| format!("{a}={w}")).collect();
    tracing::info!(arms = arms.join(" "), shadow = engine.split().shadow, reactive = engine.reactive_arm(), "split");
    serving.follow_shared_split();
    if settings.reload_interval_secs > 0 {
        serving.watch_registry(Duration::from_secs(settings.reload_interval_secs));
    }
    if let Some(address) = settings.metrics_listen {
        let bound = foresight_serve::server::spawn_metrics(serving.clone(), address).await?;
        tracing::info!(%bound, "metrics on GET /metrics");
    }
    let listener = tokio::net::TcpListener::bind(settings.listen).await.map_err(|e| ServeError::setup(format!("listen {}", settings.listen), e))?;
    let tls = if settings.server.tls.is_some() { "TLS" } else { "plaintext" };
    tracing::info!(listen = %settings.listen, tls, tokens = settings.server.tokens.len(), "listening");
    server::run(serving, &settings.server, listener, shutdown()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM: stop accepting, let calls in progress finish.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down: finishing calls in progress");
}
