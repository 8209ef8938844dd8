//! `foresight calibrate --portfolio FILE.json`: a person's client of `foresight-serve`. The
//! portfolio names positions and, per underlying, the files its recent history comes from; the
//! history is sent inline, as a margin engine would send it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use foresight_serve::proto::calibration_service_client::CalibrationServiceClient;
use foresight_serve::proto::{self, AssetMarket, CalibrateRequest, DailyObservation, position};
use foresight_train::evaluate::market_days;
use serde::Deserialize;

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Portfolio JSON (see training/portfolio_btc.json).
    #[arg(long, value_name = "FILE.json")]
    portfolio: PathBuf,
    /// The service's address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    server: String,
    /// Seconds to keep trying to connect (a server that is still starting).
    #[arg(long, default_value_t = 30)]
    wait: u64,
    /// Bearer token, for a server started with --auth-tokens.
    #[arg(long, env = "FORESIGHT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM certificate of the CA that signed the server's certificate (TLS; use an https:// URL).
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Replay a past day: each market's history ends on this day and its close is the spot (unless
    /// the portfolio sets one), as if the calibration ran then; the audit log's replay
    /// (`foresight report --from-audit`) scores it against the days after.
    #[arg(long, value_name = "YYYY-MM-DD")]
    as_of: Option<chrono::NaiveDate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Portfolio {
    account_id: String,
    positions: Vec<PositionSpec>,
    markets: Vec<MarketSpec>,
    previous_initial_margin: Option<f64>,
    /// `{"asset": "USDT", "quantity": 10000}`: what the account posts.
    #[serde(default)]
    collateral: Vec<CollateralSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CollateralSpec {
    asset: String,
    quantity: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PositionSpec {
    underlying: String,
    quantity: f64,
    option: Option<OptionSpec>,
    greeks: Option<GreeksSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionSpec {
    r#type: String,
    strike: f64,
    expiry_years: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GreeksSpec {
    delta: f64,
    gamma: f64,
    vega: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MarketSpec {
    asset: String,
    /// Implied volatility for option revaluation, an annual fraction (0.45).
    #[serde(alias = "implied_vol")]
    implied_vol_fraction: f64,
    depth_notional: Option<f64>,
    /// OHLCV file: daily closes (and the range variance when `rv_data` is absent).
    data: PathBuf,
    /// Intraday bars for daily realized variance.
    rv_data: Option<PathBuf>,
    /// Annualised implied volatility in percent per day (DVOL, VIX).
    implied_vol_data: Option<PathBuf>,
    /// Days of history to send.
    days: Option<usize>,
    /// Spot; the last close when absent.
    spot: Option<f64>,
}

fn market(spec: &MarketSpec, as_of: Option<chrono::NaiveDate>) -> anyhow::Result<AssetMarket> {
    let mut days = market_days(&spec.data, spec.rv_data.as_ref().unwrap_or(&spec.data), spec.implied_vol_data.as_deref())?;
    if let Some(as_of) = as_of {
        days.retain(|d| d.date <= as_of);
        if days.last().map(|d| d.date) != Some(as_of) {
            bail!("--as-of {as_of}: {} has no day {as_of}", spec.data.display());
        }
    }
    let observations: Vec<DailyObservation> = days
        .into_iter()
        .map(|d| DailyObservation { date: d.date.to_string(), close: d.close, realized_variance: d.realized_variance, implied_vol_percent: d.implied_vol_percent })
        .collect();
    let days = spec.days.unwrap_or(400).min(observations.len());
    let history = observations[observations.len() - days..].to_vec();
    let spot = spec.spot.or(history.last().map(|o| o.close)).context("no history")?;
    Ok(AssetMarket { asset: spec.asset.clone(), spot, implied_vol_fraction: spec.implied_vol_fraction, depth_notional: spec.depth_notional, history, data_age_seconds: Some(0.0) })
}

fn request(p: Portfolio, as_of: Option<chrono::NaiveDate>) -> anyhow::Result<CalibrateRequest> {
    let positions = p
        .positions
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let instrument = match (s.option, s.greeks) {
                (Some(_), Some(_)) => bail!("positions[{i}]: give `option` or `greeks`, not both"),
                (Some(o), None) => {
                    let kind = match o.r#type.as_str() {
                        "call" => proto::OptionType::Call,
                        "put" => proto::OptionType::Put,
                        other => bail!("positions[{i}].option.type: `{other}`, expected call or put"),
                    };
                    position::Instrument::Option(proto::OptionTerms { r#type: kind as i32, strike: o.strike, expiry_years: o.expiry_years })
                }
                (None, Some(g)) => position::Instrument::Greeks(proto::Greeks { delta: g.delta, gamma: g.gamma, vega: g.vega }),
                (None, None) => position::Instrument::Linear(proto::Linear {}),
            };
            Ok(proto::Position { underlying: s.underlying, quantity: s.quantity, instrument: Some(instrument) })
        })
        .collect::<anyhow::Result<_>>()?;
    let markets = p.markets.iter().enumerate().map(|(i, m)| market(m, as_of).with_context(|| format!("markets[{i}]"))).collect::<anyhow::Result<_>>()?;
    let collateral = p.collateral.into_iter().map(|c| proto::CollateralBalance { asset: c.asset, quantity: c.quantity }).collect();
    Ok(CalibrateRequest { explain: false, account_id: p.account_id, positions, markets, previous_initial_margin: p.previous_initial_margin, collateral })
}

pub fn run(args: CalibrateArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.portfolio).with_context(|| format!("reading {}", args.portfolio.display()))?;
    let portfolio: Portfolio = serde_json::from_str(&text).with_context(|| format!("{}", args.portfolio.display()))?;
    let request = request(portfolio, args.as_of)?;
    let mut endpoint = tonic::transport::Endpoint::from_shared(args.server.clone()).with_context(|| format!("--server {}", args.server))?;
    if let Some(ca) = &args.ca_cert {
        let pem = std::fs::read(ca).with_context(|| format!("--ca-cert {}", ca.display()))?;
        endpoint = endpoint.tls_config(tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(pem)))?;
    }
    let authorization: Option<tonic::metadata::MetadataValue<_>> =
        args.token.as_ref().map(|t| format!("Bearer {t}").parse()).transpose().context("--token: not a valid header value")?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let response = runtime.block_on(async {
        let deadline = std::time::Instant::now() + Duration::from_secs(args.wait);
        let channel = loop {
            match endpoint.connect().await {
                Ok(c) => break c,
                Err(e) if std::time::Instant::now() >= deadline => return Err(anyhow::anyhow!("cannot reach {}: {e}", args.server)),
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        };
        let mut client = CalibrationServiceClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
            if let Some(value) = &authorization {
                r.metadata_mut().insert("authorization", value.clone());
            }
            Ok(r)
        });
        client.calibrate(request).await.map(|r| r.into_inner()).map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))
    })?;
    println!(
        "{}: initial margin {:.2}, maintenance {:.2}; multiplier {:.3} over the reactive {:.2} (before the rails {:.3}); arm {}{}",
        response.account_id,
        response.initial_margin,
        response.maintenance_margin,
        response.multiplier,
        response.reactive_initial_margin,
        response.raw_multiplier,
        response.arm,
        if response.guards_applied.is_empty() { String::new() } else { format!("; rails: {}", response.guards_applied.join(", ")) }
    );
    for c in &response.components {
        let sigma: Vec<String> = c.forecast_sigma.iter().map(|h| format!("h{} {:.2}%", h.horizon_days, 100.0 * h.value)).collect();
        let regime: Vec<String> = c.regime_probability.iter().map(|h| format!("h{} {:.2}", h.horizon_days, h.value)).collect();
        println!(
            "  {}: model {} rate {:.2}% (reactive {:.2}%, σ {:.2}%), forecast σ [{}], P(stressed) [{}], core IM {:.2} at price {:+.1}% / vol {:+.0}%, liquidity {:.2}{}{}",
            c.asset,
            if c.model.is_empty() { "-" } else { &c.model },
            100.0 * c.forward_rate,
            100.0 * c.reactive_rate,
            100.0 * c.reactive_sigma,
            sigma.join(", "),
            regime.join(", "),
            c.core_im,
            100.0 * c.binding_price_shock,
            100.0 * c.binding_vol_shock,
            c.liquidity_addon,
            if c.approximate { " (Greeks: approximate)" } else { "" },
            c.fallback.as_ref().map_or(String::new(), |f| format!("; FALLBACK to reactive: {f}"))
        );
    }
    if !response.collateral.is_empty() {
        let parts: Vec<String> = response
            .collateral
            .iter()
            .map(|c| format!("{} {} × {:.2} − {:.1}% = {:.2}", c.asset, c.quantity, c.price, 100.0 * c.haircut, c.value))
            .collect();
        println!("  collateral {:.2} ({}); excess over initial margin {:+.2}", response.collateral_value, parts.join(", "), response.excess);
    }
    for s in &response.shadow {
        println!("  shadow {}: initial margin {:.2}, multiplier {:.3}{}", s.arm, s.initial_margin, s.multiplier, if s.fallbacks.is_empty() { String::new() } else { format!("; fallbacks: {}", s.fallbacks.join("; ")) });
    }
    Ok(())
}
