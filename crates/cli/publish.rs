//! `foresight publish`: backfill a running foresight-serve's market state from files, as an
//! operator does when a service starts on a new state folder. Only days after the last one the
//! service holds are sent, numbered after its last sequence, so running it again is harmless.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use foresight_serve::proto::market_data_service_client::MarketDataServiceClient;
use foresight_serve::proto::{self, AckStatus, AssetStateRequest, DailyObservation, MarketUpdate, market_update::Body};
use foresight_train::evaluate::market_days;
use tonic::Code;

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The asset, e.g. BTC (a registry slot's asset).
    #[arg(long)]
    asset: String,
    /// Daily closes (OHLCV or `date,close`).
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// Intraday bars for daily realized variance [default: --data's daily range].
    #[arg(long, value_name = "FILE")]
    rv_data: Option<PathBuf>,
    /// Daily implied volatility in annualised percent (`date,close`), e.g. DVOL.
    #[arg(long, value_name = "FILE")]
    implied_vol_data: Option<PathBuf>,
    /// Send at most the last this many days.
    #[arg(long, default_value_t = 400)]
    days: usize,
    /// The service's address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    server: String,
}

pub fn run(args: PublishArgs) -> anyhow::Result<()> {
    let days = market_days(&args.data, args.rv_data.as_ref().unwrap_or(&args.data), args.implied_vol_data.as_deref())?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut client = MarketDataServiceClient::connect(args.server.clone()).await.with_context(|| format!("cannot reach {}", args.server))?;
        let held = match client.get_asset_state(AssetStateRequest { asset: args.asset.clone() }).await {
            Ok(state) => Some(state.into_inner()),
            Err(s) if s.code() == Code::NotFound => None,
            Err(s) => anyhow::bail!("{}: {}", s.code(), s.message()),
        };
        let (last_sequence, last_date) = held.as_ref().map_or((0, String::new()), |h| (h.last_sequence, h.last_date.clone()));
        let fresh: Vec<_> = days.into_iter().filter(|d| d.date.to_string() > last_date).collect();
        let fresh = &fresh[fresh.len().saturating_sub(args.days)..];
        if fresh.is_empty() {
            println!("{}: the service already holds every day of {} (through {last_date})", args.asset, args.data.display());
            return Ok(());
        }
        let updates: Vec<MarketUpdate> = fresh
            .iter()
            .enumerate()
            .map(|(i, d)| MarketUpdate {
                asset: args.asset.clone(),
                sequence: last_sequence + 1 + i as u64,
                body: Some(Body::Day(DailyObservation { date: d.date.to_string(), close: d.close, realized_variance: d.realized_variance, implied_vol_percent: d.implied_vol_percent })),
            })
            .collect();
        let acks = client.publish(tokio_stream::iter(updates)).await.map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?.into_inner();
        let acks: Vec<proto::PublishAck> =
            tokio_stream::StreamExt::collect::<Vec<_>>(acks).await.into_iter().collect::<Result<_, _>>().map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?;
        let count = |status: AckStatus| acks.iter().filter(|a| a.status == status as i32).count();
        println!(
            "{}: {} day(s) sent ({} .. {}): {} stored, {} duplicate, {} rejected",
            args.asset,
            acks.len(),
            fresh[0].date,
            fresh[fresh.len() - 1].date,
            count(AckStatus::Stored),
            count(AckStatus::Duplicate),
            count(AckStatus::Rejected)
        );
        if let Some(bad) = acks.iter().find(|a| a.status == AckStatus::Rejected as i32) {
            anyhow::bail!("sequence {} was rejected: {}", bad.sequence, bad.error);
        }
        Ok(())
    })
}
