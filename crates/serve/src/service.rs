//! The gRPC services over [`Serving`]: convert, call the engine off the async threads, audit,
//! convert back, map errors to gRPC codes. No margin logic lives here.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use prost::Message;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::audit::{AuditRecord, records, sha256_hex, snake_name};
use crate::engine::{ArmMargin, ArmWeight, Calibration, Engine, EngineError, MarketInput, Split};
use crate::proto::calibration_service_server::CalibrationService;
use crate::proto::market_data_service_server::MarketDataService;
use crate::proto::model_service_server::ModelService;
use crate::proto::{self, calibrate_result::Outcome};
use crate::serving::Serving;

fn status(e: EngineError) -> Status {
    match e {
        EngineError::Invalid { .. } => Status::invalid_argument(e.to_string()),
        EngineError::Internal(m) => Status::internal(m),
    }
}

fn horizons(values: &[(usize, f64)]) -> Vec<proto::HorizonValue> {
    values.iter().map(|(h, v)| proto::HorizonValue { horizon_days: *h as u32, value: *v }).collect()
}

/// The response of one calibration.
fn response(account_id: &str, c: &Calibration) -> proto::CalibrateResponse {
    let ArmMargin { arm, margin, forecasts, collateral } = &c.posted;
    let collateral_value: f64 = collateral.iter().map(|v| v.value).sum();
    let components = margin
        .forward
        .underlyings
        .iter()
        .map(|u| {
            let f = &forecasts[&u.underlying];
            let i = &margin.inputs[&u.underlying];
            proto::UnderlyingComponents {
                asset: u.underlying.clone(),
                model: f.model.clone().unwrap_or_default(),
                fallback: i.forward_rate.as_ref().err().map(snake_name),
                reactive_rate: i.reactive_rate,
                forward_rate: *i.forward_rate.as_ref().unwrap_or(&i.reactive_rate),
                reactive_sigma: i.reactive_sigma,
                forecast_sigma: horizons(&i.forecast_sigma),
                regime_probability: horizons(&i.regime_probability),
                core_im: u.core_im,
                binding_price_shock: u.binding.price_shock,
                binding_vol_shock: u.binding.vol_shock,
                liquidity_addon: u.liquidity_addon,
                approximate: u.approximate,
            }
        })
        .collect();
    let shadow = c
        .shadow
        .iter()
        .map(|s| proto::ArmOutcome {
            arm: s.arm.clone(),
            initial_margin: s.margin.posted.initial_margin,
            maintenance_margin: s.margin.posted.maintenance_margin,
            multiplier: s.margin.posted.multiplier,
            fallbacks: s.margin.fallbacks.iter().map(|(asset, f)| format!("{asset}: {}", snake_name(f))).collect(),
        })
        .collect();
    proto::CalibrateResponse {
        account_id: account_id.to_string(),
        initial_margin: margin.posted.initial_margin,
        maintenance_margin: margin.posted.maintenance_margin,
        multiplier: margin.posted.multiplier,
        raw_multiplier: margin.raw_multiplier,
        reactive_initial_margin: margin.base.initial_margin,
        guards_applied: margin.posted.applied.iter().map(snake_name).collect(),
        components,
        arm: arm.clone(),
        shadow,
        collateral_value,
        excess: collateral_value - margin.posted.initial_margin,
        collateral: collateral
            .iter()
            .map(|v| proto::CollateralValue { asset: v.asset.clone(), quantity: v.quantity, price: v.price, haircut: v.haircut, value: v.value })
            .collect(),
    }
}

/// Accounts per thread below which a batch is calibrated on one thread.
const PARALLEL_FROM: usize = 256;

/// The calibration service.
#[derive(Clone)]
pub struct CalibrationApi {
    serving: Arc<Serving>,
}

impl CalibrationApi {
    /// Serves `serving`.
    pub fn new(serving: Arc<Serving>) -> Self {
        Self { serving }
    }

    /// Calibrates `requests` (see [`calibrate_all`]), writes the audit records of the successful
    /// ones, and only then returns.
    async fn calibrate_many(
        &self,
        method: &str,
        requests: Vec<proto::CalibrateRequest>,
        shared: Vec<proto::AssetMarket>,
    ) -> Result<Vec<Result<proto::CalibrateResponse, Status>>, Status> {
        let started = std::time::Instant::now();
        let permit = self.serving.admit().map_err(|e| Status::resource_exhausted(e.to_string()))?;
        // One account on published market data is microseconds of work once the day's forecast
        // is cached (the day's first call runs the model, a few milliseconds): cheaper here than
        // a hand-off to the blocking pool. Inline history or many accounts go to the pool.
        let light = requests.len() == 1 && shared.is_empty() && requests.iter().all(|r| r.markets.iter().all(|m| m.history.is_empty()));
        let (results, audit) = if light {
            let _permit = permit;
            calibrate_all(&self.serving, &requests, &shared)
        } else {
            let serving = self.serving.clone();
            tokio::task::spawn_blocking(move || {
                // The slot is held by the work, not the call: a caller that gives up (deadline)
                // does not free it while its calibration still runs.
                let _permit = permit;
                calibrate_all(&serving, &requests, &shared)
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))?
        }
        .map_err(status)?;
        if let Some(journal) = self.serving.audit.as_ref().filter(|_| !audit.is_empty()) {
            // Every margin is on record before it is returned.
            journal.append(&audit).await.map_err(|e| Status::unavailable(format!("audit log: {e}")))?;
        }
        self.serving.metrics.observe_latency(method, started.elapsed().as_secs_f64());
        Ok(results)
    }
}

/// One account's response, or why it has none.
type AccountOutcome = Result<proto::CalibrateResponse, Status>;

/// Calibrates `requests` on one engine generation: one result per request, and the audit
/// records of the successful ones, both in request order. A large batch is split over the cores.
fn calibrate_all(
    serving: &Serving,
    requests: &[proto::CalibrateRequest],
    shared: &[proto::AssetMarket],
) -> Result<(Vec<AccountOutcome>, Vec<AuditRecord>), EngineError> {
    let engine: Arc<Engine> = serving.engine();
    let state = serving.market.as_ref();
    let shared: HashMap<String, MarketInput> = Engine::prepare_markets(shared, "markets", state)?;
    let calibrate = |chunk: &[proto::CalibrateRequest]| {
        let mut audit = Vec::new();
        let results: Vec<_> = chunk
            .iter()
            .map(|request| {
                let calibration = engine.calibrate(request, &shared, state, &serving.cache).map_err(status)?;
                serving.metrics.record(&calibration);
                if serving.audit.is_some() {
                    audit.extend(records(&request.account_id, &calibration, &sha256_hex(&request.encode_to_vec())));
                }
                Ok(response(&request.account_id, &calibration))
            })
            .collect();
        (results, audit)
    };
    // (available_parallelism reads cgroup files: only asked when a split is possible.)
    let threads = match requests.len() / PARALLEL_FROM {
        0 | 1 => 1,
        most => std::thread::available_parallelism().map_or(1, |n| n.get()).min(most),
    };
    if threads == 1 {
        return Ok(calibrate(requests));
    }
    let chunk = requests.len().div_ceil(threads);
    let parts: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = requests.chunks(chunk).map(|c| scope.spawn(|| calibrate(c))).collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    let (mut results, mut audit) = (Vec::with_capacity(requests.len()), Vec::new());
    for part in parts {
        let (r, a) = part.map_err(|_| EngineError::Internal("a batch worker panicked".into()))?;
        results.extend(r);
        audit.extend(a);
    }
    Ok((results, audit))
}

type ResultStream = Pin<Box<dyn Stream<Item = Result<proto::CalibrateResult, Status>> + Send>>;

fn result(account_id: String, outcome: Result<proto::CalibrateResponse, Status>) -> proto::CalibrateResult {
    let outcome = match outcome {
        Ok(margin) => Outcome::Margin(margin),
        Err(s) => Outcome::Error(proto::CalibrateError { code: code_name(s.code()).into(), message: s.message().to_string() }),
    };
    proto::CalibrateResult { account_id, outcome: Some(outcome) }
}

/// The canonical name of the codes a calibration returns.
fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::Unavailable => "UNAVAILABLE",
        _ => "INTERNAL",
    }
}

#[tonic::async_trait]
impl CalibrationService for CalibrationApi {
    async fn calibrate(&self, request: Request<proto::CalibrateRequest>) -> Result<Response<proto::CalibrateResponse>, Status> {
        let mut results = self.calibrate_many("calibrate", vec![request.into_inner()], Vec::new()).await?;
        results.pop().unwrap_or_else(|| Err(Status::internal("no result"))).map(Response::new)
    }

    async fn calibrate_batch(&self, request: Request<proto::CalibrateBatchRequest>) -> Result<Response<proto::CalibrateBatchResponse>, Status> {
        let request = request.into_inner();
        if request.accounts.is_empty() || request.accounts.len() > self.serving.max_batch {
            return Err(Status::invalid_argument(format!(
                "accounts: {} accounts; a batch takes 1 to {}",
                request.accounts.len(),
                self.serving.max_batch
            )));
        }
        let ids: Vec<String> = request.accounts.iter().map(|a| a.account_id.clone()).collect();
        let results = self.calibrate_many("calibrate_batch", request.accounts, request.markets).await?;
        Ok(Response::new(proto::CalibrateBatchResponse { results: ids.into_iter().zip(results).map(|(id, r)| result(id, r)).collect() }))
    }

    type CalibrateStreamStream = ResultStream;

    async fn calibrate_stream(&self, request: Request<Streaming<proto::CalibrateRequest>>) -> Result<Response<ResultStream>, Status> {
        let mut inbound = request.into_inner();
        let api = self.clone();
        let (sender, receiver) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            while let Some(message) = inbound.next().await {
                let out = match message {
                    Ok(request) => {
                        let id = request.account_id.clone();
                        match api.calibrate_many("calibrate_stream", vec![request], Vec::new()).await {
                            Ok(mut r) => Ok(result(id, r.pop().unwrap_or_else(|| Err(Status::internal("no result"))))),
                            Err(s) if s.code() == tonic::Code::ResourceExhausted => Ok(result(id, Err(s))),
                            Err(s) => Err(s),
                        }
                    }
                    Err(s) => Err(s),
                };
                let stop = out.is_err();
                if sender.send(out).await.is_err() || stop {
                    break; // the client went away, or the stream failed
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))))
    }

    async fn forecast(&self, request: Request<proto::ForecastRequest>) -> Result<Response<proto::ForecastResponse>, Status> {
        let market = request.into_inner().market.ok_or_else(|| Status::invalid_argument("market: required"))?;
        let permit = self.serving.admit().map_err(|e| Status::resource_exhausted(e.to_string()))?;
        let serving = self.serving.clone();
        let asset = market.asset.clone();
        let f = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let engine = serving.engine();
            let inputs = Engine::prepare_markets_named(std::slice::from_ref(&market), |_| "market".into(), serving.market.as_ref())?;
            engine.forecast(&market.asset, &inputs[&market.asset], &engine.champion_arm(), &serving.cache)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(status)?;
        Ok(Response::new(proto::ForecastResponse {
            asset,
            model: f.model.clone().unwrap_or_default(),
            sigma: horizons(&f.variance.iter().map(|(h, v)| (*h, v.sqrt())).collect::<Vec<_>>()),
            variance: horizons(&f.variance),
            regime_probability: f.regime.as_ref().map(|(_, p)| horizons(p)).unwrap_or_default(),
            regime_model: f.regime.as_ref().map(|(m, _)| m.clone()).unwrap_or_default(),
        }))
    }
}

/// The market-data service.
#[derive(Clone)]
pub struct MarketDataApi {
    serving: Arc<Serving>,
}

impl MarketDataApi {
    /// Serves `serving`'s market state.
    pub fn new(serving: Arc<Serving>) -> Self {
        Self { serving }
    }
}

/// Updates acknowledged together at most (one journal group).
const PUBLISH_GROUP: usize = 1024;

type AckStream = Pin<Box<dyn Stream<Item = Result<proto::PublishAck, Status>> + Send>>;

#[tonic::async_trait]
impl MarketDataService for MarketDataApi {
    type PublishStream = AckStream;

    async fn publish(&self, request: Request<Streaming<proto::MarketUpdate>>) -> Result<Response<AckStream>, Status> {
        if self.serving.market.is_none() {
            return Err(Status::failed_precondition("this server keeps no market state (start it with a state folder)"));
        }
        let mut inbound = request.into_inner();
        let serving = self.serving.clone();
        let (sender, receiver) = tokio::sync::mpsc::channel(PUBLISH_GROUP);
        // Updates that arrive together are stored together: read what is ready, store it as one
        // group, acknowledge each, repeat.
        let (updates_in, mut updates) = tokio::sync::mpsc::channel::<Result<proto::MarketUpdate, Status>>(PUBLISH_GROUP);
        tokio::spawn(async move {
            while let Some(m) = inbound.next().await {
                if updates_in.send(m).await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            let Some(market) = serving.market.as_ref() else { return };
            let mut group = Vec::with_capacity(PUBLISH_GROUP);
            while let Some(first) = updates.recv().await {
                let mut failed = None;
                for m in std::iter::once(first).chain(std::iter::from_fn(|| updates.try_recv().ok())).take(PUBLISH_GROUP) {
                    match m {
                        Ok(u) => group.push(u),
                        Err(s) => {
                            failed = Some(s);
                            break;
                        }
                    }
                }
                match market.publish(&group).await {
                    Ok(acks) => {
                        serving.metrics.market_acks(&acks);
                        for ack in acks {
                            if sender.send(Ok(ack)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = sender.send(Err(Status::unavailable(format!("market state not stored: {e}")))).await;
                        return;
                    }
                }
                group.clear();
                if let Some(s) = failed {
                    let _ = sender.send(Err(s)).await;
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))))
    }

    async fn get_asset_state(&self, request: Request<proto::AssetStateRequest>) -> Result<Response<proto::AssetState>, Status> {
        let asset = request.into_inner().asset;
        let market = self.serving.market.as_ref().ok_or_else(|| Status::failed_precondition("this server keeps no market state"))?;
        market.state(&asset).map(Response::new).ok_or_else(|| Status::not_found(format!("asset: no market data published for `{asset}`")))
    }
}

/// The model-management service.
#[derive(Clone)]
pub struct ModelApi {
    serving: Arc<Serving>,
}

impl ModelApi {
    /// Manages `serving`'s models and split.
    pub fn new(serving: Arc<Serving>) -> Self {
        Self { serving }
    }
}

fn split_message(split: &Split) -> proto::TrafficSplit {
    proto::TrafficSplit { arms: split.arms.iter().map(|a| proto::ArmWeight { arm: a.arm.clone(), weight: a.weight }).collect(), shadow: split.shadow }
}

#[tonic::async_trait]
impl ModelService for ModelApi {
    async fn list_models(&self, _: Request<proto::ListModelsRequest>) -> Result<Response<proto::ListModelsResponse>, Status> {
        let engine = self.serving.engine();
        let models = engine
            .served()
            .into_iter()
            .map(|(slot, s)| proto::ServedModel {
                slot,
                model: s.reference.clone(),
                sha256: s.card.onnx.sha256.clone(),
                trained_through: s.card.training.end.to_string(),
            })
            .collect();
        Ok(Response::new(proto::ListModelsResponse {
            registry: engine.config().registry.display().to_string(),
            models,
            split: Some(split_message(engine.split())),
            reactive_arm: engine.reactive_arm(),
            generation: engine.generation(),
        }))
    }

    async fn reload(&self, _: Request<proto::ReloadRequest>) -> Result<Response<proto::ReloadResponse>, Status> {
        let serving = self.serving.clone();
        let (report, generation) = tokio::task::spawn_blocking(move || serving.reload())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::failed_precondition(format!("{e:#}")))?;
        Ok(Response::new(proto::ReloadResponse { changed: report.changed, refused: report.refused, generation }))
    }

    async fn set_split(&self, request: Request<proto::SetSplitRequest>) -> Result<Response<proto::TrafficSplit>, Status> {
        let split = request.into_inner().split.ok_or_else(|| Status::invalid_argument("split: required"))?;
        let split = Split { arms: split.arms.into_iter().map(|a| ArmWeight { arm: a.arm, weight: a.weight }).collect(), shadow: split.shadow };
        let serving = self.serving.clone();
        let engine = tokio::task::spawn_blocking(move || serving.set_split(split))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::invalid_argument(format!("{e:#}")))?;
        Ok(Response::new(split_message(engine.split())))
    }
}
