//! `CalibrationService` over the engine: convert, call, convert back, map errors to gRPC codes.

use std::sync::Arc;

use foresight_core::margin::{Fallback, Guard};
use tonic::{Request, Response, Status};

use crate::engine::{Engine, EngineError};
use crate::proto::calibration_service_server::CalibrationService;
use crate::proto::{CalibrateRequest, CalibrateResponse, ForecastRequest, ForecastResponse, HorizonValue, UnderlyingComponents};

/// The service implementation.
#[derive(Clone)]
pub struct CalibrationApi {
    engine: Arc<Engine>,
}

impl CalibrationApi {
    /// Serves `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

fn status(e: EngineError) -> Status {
    match e {
        EngineError::Invalid { .. } => Status::invalid_argument(e.to_string()),
        EngineError::Internal(m) => Status::internal(m),
    }
}

fn horizons(values: &[(usize, f64)]) -> Vec<HorizonValue> {
    values.iter().map(|(h, v)| HorizonValue { horizon_days: *h as u32, value: *v }).collect()
}

fn fallback_text(f: &Fallback) -> String {
    serde_json::to_string(f).unwrap_or_else(|_| format!("{f:?}"))
}

fn guard_name(g: &Guard) -> String {
    serde_json::to_value(g).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| format!("{g:?}"))
}

#[tonic::async_trait]
impl CalibrationService for CalibrationApi {
    async fn calibrate(&self, request: Request<CalibrateRequest>) -> Result<Response<CalibrateResponse>, Status> {
        let request = request.into_inner();
        let account_id = request.account_id.clone();
        let engine = self.engine.clone();
        // Model inference and scenario revaluation are CPU work: off the async threads.
        let (margin, forecasts) = tokio::task::spawn_blocking(move || engine.calibrate(&request))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(status)?;
        let components = margin
            .forward
            .underlyings
            .iter()
            .map(|u| {
                let f = &forecasts[&u.underlying];
                UnderlyingComponents {
                    asset: u.underlying.clone(),
                    model: f.model.clone().unwrap_or_default(),
                    fallback: f.forward_rate.as_ref().err().map(fallback_text),
                    reactive_rate: f.reactive_rate,
                    forward_rate: *f.forward_rate.as_ref().unwrap_or(&f.reactive_rate),
                    reactive_sigma: f.reactive_sigma,
                    forecast_sigma: horizons(&f.variance.iter().map(|(h, v)| (*h, v.sqrt())).collect::<Vec<_>>()),
                    regime_probability: f.regime.as_ref().map(|(_, p)| horizons(p)).unwrap_or_default(),
                    core_im: u.core_im,
                    binding_price_shock: u.binding.price_shock,
                    binding_vol_shock: u.binding.vol_shock,
                    liquidity_addon: u.liquidity_addon,
                    approximate: u.approximate,
                }
            })
            .collect();
        Ok(Response::new(CalibrateResponse {
            account_id,
            initial_margin: margin.posted.initial_margin,
            maintenance_margin: margin.posted.maintenance_margin,
            multiplier: margin.posted.multiplier,
            raw_multiplier: margin.raw_multiplier,
            reactive_initial_margin: margin.base.initial_margin,
            guards_applied: margin.posted.applied.iter().map(guard_name).collect(),
            components,
        }))
    }

    async fn forecast(&self, request: Request<ForecastRequest>) -> Result<Response<ForecastResponse>, Status> {
        let market = request.into_inner().market.ok_or_else(|| Status::invalid_argument("market: required"))?;
        let engine = self.engine.clone();
        let asset = market.asset.clone();
        let f = tokio::task::spawn_blocking(move || engine.forecast(&market, "market"))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(status)?;
        Ok(Response::new(ForecastResponse {
            asset,
            model: f.model.unwrap_or_default(),
            sigma: horizons(&f.variance.iter().map(|(h, v)| (*h, v.sqrt())).collect::<Vec<_>>()),
            variance: horizons(&f.variance),
            regime_probability: f.regime.as_ref().map(|(_, p)| horizons(p)).unwrap_or_default(),
            regime_model: f.regime.map(|(m, _)| m).unwrap_or_default(),
        }))
    }
}
