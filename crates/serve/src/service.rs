//! The gRPC services over [`Serving`]: convert, call the engine off the async threads, audit,
//! convert back, map errors to gRPC codes. No margin logic lives here.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use prost::Message;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::audit::{records, sha256_hex};
use crate::journal::Lines;
use crate::convert::{calibrate_response, calibrate_result, forecast_response, market_quotes, served_model};
use crate::engine::{AccountRequest, Engine, Split};
use crate::error::{ServeError, invalid};
use crate::proto::calibration_service_server::CalibrationService;
use crate::proto::market_data_service_server::MarketDataService;
use crate::proto::model_service_server::ModelService;
use crate::proto;
use crate::series::{MarketInput, Update};
use crate::serving::Serving;

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
    ) -> Result<Vec<AccountOutcome>, ServeError> {
        let started = std::time::Instant::now();
        let permit = self.serving.admit()?;
        // One account on published market data is microseconds of work once the day's forecast
        // is cached (the day's first call runs the model, a few milliseconds): cheaper here than
        // a hand-off to the blocking pool. Inline history or many accounts go to the pool.
        let light = requests.len() == 1 && shared.is_empty() && requests.iter().all(|r| r.markets.iter().all(|m| m.history.is_empty()));
        // The audit lines are queued where the work ran: in buffered mode that is the write
        // itself, which for a large batch belongs on the blocking pool, not an async worker.
        // The slot is held until the call's audit lines are stored, not only calibrated: a
        // buffered journal's writer may still be writing them, and calls that hold no slot
        // would let its queue grow without bound on a slow disk.
        let run = move |serving: &Serving, permit| {
            let (results, audit) = calibrate_all(serving, &requests, &shared)?;
            let stored = match serving.audit.as_ref().filter(|_| !audit.is_empty()) {
                Some(journal) => Some(journal.queue_lines(audit).map_err(|source| ServeError::Storage { what: "audit log", source })?),
                None => None,
            };
            Ok::<_, ServeError>((results, stored, permit))
        };
        let (results, stored, _permit) = if light {
            run(&self.serving, permit)?
        } else {
            let serving = self.serving.clone();
            // The slot is held by the work, not the call: a caller that gives up (deadline)
            // does not free it while its calibration still runs.
            tokio::task::spawn_blocking(move || run(&serving, permit)).await??
        };
        if let (Some(journal), Some(stored)) = (self.serving.audit.as_ref(), stored) {
            // Every margin is on record before it is returned.
            journal.stored(stored).await.map_err(|source| ServeError::Storage { what: "audit log", source })?;
        }
        self.serving.metrics.observe_latency(method, started.elapsed().as_secs_f64());
        Ok(results)
    }
}

/// One account's response, or why it has none.
type AccountOutcome = Result<proto::CalibrateResponse, ServeError>;

/// Calibrates `requests` on one engine generation: one result per request, and the audit
/// lines of the successful ones, both in request order. A large batch is split over the cores,
/// audit lines encoded included.
fn calibrate_all(
    serving: &Serving,
    requests: &[proto::CalibrateRequest],
    shared: &[proto::AssetMarket],
) -> Result<(Vec<AccountOutcome>, Lines), ServeError> {
    let engine: Arc<Engine> = serving.engine();
    let state = serving.market.as_ref();
    let mut shared: HashMap<String, MarketInput> = Engine::resolve_markets(&market_quotes(shared, |i| format!("markets[{i}]"))?, state)?;
    if requests.len() > 1
        && let Some(state) = state
    {
        // A batch reads each published market once, not once per account (the same snapshot
        // for every account of the batch).
        for r in requests {
            for asset in r.positions.iter().map(|p| &p.underlying).chain(r.collateral.iter().map(|c| &c.asset)) {
                if !shared.contains_key(asset)
                    && let Some(input) = state.input(asset)
                {
                    shared.insert(asset.clone(), input);
                }
            }
        }
    }
    let calibrate = |chunk: &[proto::CalibrateRequest]| {
        let mut audit = Lines::default();
        let results: Vec<_> = chunk
            .iter()
            .map(|request| {
                let account = AccountRequest::try_from(request)?;
                let calibration = engine.calibrate(&account, &shared, state, &serving.cache)?;
                serving.metrics.record(&calibration);
                if serving.audit.is_some() {
                    let records = records(&request.account_id, &calibration, &sha256_hex(&request.encode_to_vec()));
                    audit.push_all(&records).map_err(|e| ServeError::Internal(format!("audit record of {}: {e}", request.account_id)))?;
                }
                Ok(calibrate_response(&request.account_id, &calibration))
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
    let (mut results, mut audit) = (Vec::with_capacity(requests.len()), Lines::default());
    for part in parts {
        let (r, a) = part.map_err(|_| ServeError::Internal("a batch worker panicked".into()))?;
        results.extend(r);
        audit.append(a);
    }
    Ok((results, audit))
}

type ResultStream = Pin<Box<dyn Stream<Item = Result<proto::CalibrateResult, Status>> + Send>>;

#[tonic::async_trait]
impl CalibrationService for CalibrationApi {
    async fn calibrate(&self, request: Request<proto::CalibrateRequest>) -> Result<Response<proto::CalibrateResponse>, Status> {
        let mut results = self.calibrate_many("calibrate", vec![request.into_inner()], Vec::new()).await?;
        let result = results.pop().unwrap_or_else(|| Err(ServeError::Internal("no result".into())));
        Ok(Response::new(result?))
    }

    async fn calibrate_batch(&self, request: Request<proto::CalibrateBatchRequest>) -> Result<Response<proto::CalibrateBatchResponse>, Status> {
        let request = request.into_inner();
        if request.accounts.is_empty() || request.accounts.len() > self.serving.max_batch {
            let message = format!("{} accounts; a batch takes 1 to {}", request.accounts.len(), self.serving.max_batch);
            return Err(invalid("accounts", message).into());
        }
        let ids: Vec<String> = request.accounts.iter().map(|a| a.account_id.clone()).collect();
        let results = self.calibrate_many("calibrate_batch", request.accounts, request.markets).await?;
        Ok(Response::new(proto::CalibrateBatchResponse { results: ids.into_iter().zip(results).map(|(id, r)| calibrate_result(id, r)).collect() }))
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
                            Ok(mut r) => Ok(calibrate_result(id, r.pop().unwrap_or_else(|| Err(ServeError::Internal("no result".into()))))),
                            Err(e @ ServeError::Overloaded(_)) => Ok(calibrate_result(id, Err(e))),
                            Err(e) => Err(e.into()),
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
        let market = request.into_inner().market.ok_or_else(|| invalid("market", "required"))?;
        let quotes = market_quotes(std::slice::from_ref(&market), |_| "market".into())?;
        let permit = self.serving.admit()?;
        let serving = self.serving.clone();
        let f = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let engine = serving.engine();
            let inputs = Engine::resolve_markets(&quotes, serving.market.as_ref())?;
            engine.forecast(&market.asset, &inputs[&market.asset], &engine.champion_arm(), &serving.cache).map(|f| (market.asset, f))
        })
        .await
        .map_err(ServeError::from)??;
        Ok(Response::new(forecast_response(f.0, &f.1)))
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
            return Err(ServeError::Unsupported("this server keeps no market state (start it with a state folder)").into());
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
                        Ok(u) => group.push(Update::try_from(&u)),
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
                            if sender.send(Ok(ack.into())).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = sender.send(Err(ServeError::Storage { what: "market state not stored", source: e }.into())).await;
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
        let market = self.serving.market.as_ref().ok_or(ServeError::Unsupported("this server keeps no market state"))?;
        let state = market.state(&asset).ok_or_else(|| ServeError::NotFound(format!("asset: no market data published for `{asset}`")))?;
        Ok(Response::new(state.into()))
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

#[tonic::async_trait]
impl ModelService for ModelApi {
    async fn list_models(&self, _: Request<proto::ListModelsRequest>) -> Result<Response<proto::ListModelsResponse>, Status> {
        let engine = self.serving.engine();
        let models = engine.served().into_iter().map(|(slot, s)| served_model(slot, s)).collect();
        Ok(Response::new(proto::ListModelsResponse {
            registry: engine.config().registry.to_string(),
            models,
            split: Some(engine.split().into()),
            reactive_arm: engine.reactive_arm(),
            generation: engine.generation(),
            registry_sequence: engine.registry_sequence(),
        }))
    }

    async fn reload(&self, _: Request<proto::ReloadRequest>) -> Result<Response<proto::ReloadResponse>, Status> {
        let serving = self.serving.clone();
        let (report, generation) =
            tokio::task::spawn_blocking(move || serving.reload()).await.map_err(ServeError::from)?.map_err(|e| ServeError::ReloadRefused(Box::new(e)))?;
        Ok(Response::new(proto::ReloadResponse { changed: report.changed, refused: report.refused.iter().map(ToString::to_string).collect(), generation }))
    }

    async fn set_split(&self, request: Request<proto::SetSplitRequest>) -> Result<Response<proto::TrafficSplit>, Status> {
        let split = Split::from(request.into_inner().split.ok_or_else(|| invalid("split", "required"))?);
        let serving = self.serving.clone();
        let engine = tokio::task::spawn_blocking(move || serving.set_split(split)).await.map_err(ServeError::from)??;
        Ok(Response::new(engine.split().into()))
    }
}
