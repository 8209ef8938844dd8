//! `foresight-serve`: the calibration service binary (ONNX Runtime only, no training stack).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use foresight_serve::proto::calibration_service_server::CalibrationServiceServer;
use foresight_serve::{CalibrationApi, Engine, EngineConfig};

/// Serve forward-looking margin over gRPC from the model registry.
#[derive(Debug, Parser)]
#[command(name = "foresight-serve", version, about)]
struct Args {
    /// The registry folder (its champions are served).
    #[arg(long, value_name = "DIR", default_value = "models")]
    registry: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let engine = Engine::load(EngineConfig::new(&args.registry))?;
    for (asset, model) in engine.models() {
        eprintln!("serving {asset}: {model}");
    }
    eprintln!("listening on {}", args.listen);
    tonic::transport::Server::builder()
        .add_service(CalibrationServiceServer::new(CalibrationApi::new(Arc::new(engine))))
        .serve_with_shutdown(args.listen, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
