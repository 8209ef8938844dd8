//! The wire and the domain: every `foresight.v1` and `inference` message the service takes is
//! checked and turned into the engine's and the market state's types here (`TryFrom`, errors
//! naming the field path), and every answer is built here from theirs. The services only route
//! (which accounts, which markets are shared, the account id for the audit line).

use std::collections::BTreeMap;
use std::sync::Arc;

use foresight_core::margin::{Instrument, OptionKind, Position, Scenario};

use crate::audit::snake_name;
use crate::engine::{AccountRequest, ArmMargin, ArmWeight, AssetForecast, Calibration, Collateral, Served, Split};
use crate::error::{ServeError, invalid};
use crate::market::{Ack, AckStatus, AssetSummary};
use crate::oip::{self, model_infer_response::InferOutputTensor, model_metadata_response::TensorMetadata};
use crate::proto;
use crate::series::{Day, MarketQuote, Rejected, Series, Update};

/// Most positions in one account.
pub const MAX_POSITIONS: usize = 10_000;
/// Largest absolute position or collateral size (units).
const MAX_QUANTITY: f64 = 1e12;
/// Longest account id, bytes (the A/B split hashes it).
const MAX_ACCOUNT_ID: usize = 256;
/// Longest asset name, bytes.
const MAX_ASSET: usize = 64;
/// Implied volatility as a fraction stays below this (1000%).
const MAX_IMPLIED_VOL_FRACTION: f64 = 10.0;
/// How far a tick's time may be ahead of the server's clock (clock skew), milliseconds.
const MAX_CLOCK_AHEAD_MS: i64 = 5 * 60 * 1000;

// ---- market data ----

impl From<&proto::DailyObservation> for Day {
    fn from(o: &proto::DailyObservation) -> Self {
        Self { date: o.date.clone(), close: o.close, realized_variance: o.realized_variance, implied_vol_percent: o.implied_vol_percent }
    }
}

impl TryFrom<&proto::MarketUpdate> for Update {
    type Error = Rejected;

    /// The update's envelope checked (asset, sequence, a body, a tick's clock); the values are
    /// checked against the asset's state when it is applied.
    fn try_from(u: &proto::MarketUpdate) -> Result<Self, Rejected> {
        let reject = |field: &str, message: String| Rejected { asset: u.asset.clone(), sequence: u.sequence, field: field.into(), message };
        if u.asset.is_empty() || u.asset.len() > MAX_ASSET {
            return Err(reject("asset", format!("required (1 to {MAX_ASSET} bytes)")));
        }
        if u.sequence == 0 {
            return Err(reject("sequence", "must be ≥ 1".into()));
        }
        match &u.body {
            Some(proto::market_update::Body::Tick(t)) => {
                let now = chrono::Utc::now().timestamp_millis();
                if t.timestamp_ms > now.saturating_add(MAX_CLOCK_AHEAD_MS) {
                    let message = format!("{} is more than 5 minutes ahead of this server's clock ({now}): milliseconds expected", t.timestamp_ms);
                    return Err(reject("tick.timestamp_ms", message));
                }
                Ok(Update::Tick {
                    asset: u.asset.clone(),
                    sequence: u.sequence,
                    timestamp_ms: t.timestamp_ms,
                    price: t.price,
                    implied_vol_percent: t.implied_vol_percent,
                    depth_notional: t.depth_notional,
                })
            }
            Some(proto::market_update::Body::Day(d)) => Ok(Update::Day { asset: u.asset.clone(), sequence: u.sequence, day: Day::from(d) }),
            None => Err(reject("body", "a tick or a day is required".into())),
        }
    }
}

impl From<Ack> for proto::PublishAck {
    fn from(a: Ack) -> Self {
        let status = match a.status {
            AckStatus::Stored => proto::AckStatus::Stored,
            AckStatus::Duplicate => proto::AckStatus::Duplicate,
            AckStatus::Rejected => proto::AckStatus::Rejected,
        };
        Self { asset: a.asset, sequence: a.sequence, status: status as i32, error: a.error }
    }
}

impl From<AssetSummary> for proto::AssetState {
    fn from(s: AssetSummary) -> Self {
        Self {
            asset: s.asset,
            last_sequence: s.last_sequence,
            days: u32::try_from(s.days).unwrap_or(u32::MAX),
            first_date: s.first_date.unwrap_or_default(),
            last_date: s.last_date.unwrap_or_default(),
            open_date: s.open_date.unwrap_or_default(),
            last_price: s.last_price,
            last_tick_ms: s.last_tick_ms,
            implied_vol_percent: s.implied_vol_percent,
            depth_notional: s.depth_notional,
        }
    }
}

/// The markets of a request, checked; `field_of(i)` names market `i` in errors (`markets[0]`,
/// or `market` for Forecast's single one).
pub fn market_quotes(markets: &[proto::AssetMarket], field_of: impl Fn(usize) -> String) -> Result<Vec<MarketQuote>, ServeError> {
    let mut quotes: Vec<MarketQuote> = Vec::with_capacity(markets.len());
    let mut seen = std::collections::HashSet::with_capacity(markets.len());
    for (i, m) in markets.iter().enumerate() {
        let field = field_of(i);
        if m.asset.is_empty() || m.asset.len() > MAX_ASSET || !seen.insert(m.asset.as_str()) {
            return Err(invalid(format!("{field}.asset"), format!("`{}` is empty, longer than {MAX_ASSET} bytes or given twice", m.asset)));
        }
        for (name, v, ok) in [
            ("spot", m.spot, m.spot.is_finite() && m.spot >= 0.0),
            ("implied_vol_fraction", m.implied_vol_fraction, m.implied_vol_fraction.is_finite() && (0.0..MAX_IMPLIED_VOL_FRACTION).contains(&m.implied_vol_fraction)),
            ("depth_notional", m.depth_notional.unwrap_or(1.0), m.depth_notional.is_none_or(|d| d.is_finite() && d > 0.0)),
            ("data_age_seconds", m.data_age_seconds.unwrap_or(0.0), m.data_age_seconds.is_none_or(|a| a.is_finite() && a >= 0.0)),
        ] {
            if !ok {
                return Err(invalid(format!("{field}.{name}"), format!("invalid value {v}")));
            }
        }
        let history = if m.history.is_empty() {
            None
        } else {
            let days: Vec<Day> = m.history.iter().map(Day::from).collect();
            Some(Arc::new(Series::from_days(&days, &format!("{field}.history"))?))
        };
        quotes.push(MarketQuote {
            asset: m.asset.clone(),
            spot: m.spot,
            implied_vol_fraction: m.implied_vol_fraction,
            depth_notional: m.depth_notional,
            age_secs: m.data_age_seconds,
            history,
            field,
        });
    }
    Ok(quotes)
}

// ---- calibration ----

impl TryFrom<&proto::Position> for Position {
    type Error = ServeError;

    /// One position; errors name the field from the position (`.quantity`), for
    /// [`ServeError::within`] to put the position's path before it.
    fn try_from(p: &proto::Position) -> Result<Self, ServeError> {
        if p.underlying.is_empty() || p.underlying.len() > MAX_ASSET {
            return Err(invalid(".underlying", format!("required (1 to {MAX_ASSET} bytes)")));
        }
        if !(p.quantity.is_finite() && p.quantity.abs() <= MAX_QUANTITY) {
            return Err(invalid(".quantity", format!("must be finite and at most {MAX_QUANTITY:e} in size, got {}", p.quantity)));
        }
        let instrument = match &p.instrument {
            None | Some(proto::position::Instrument::Linear(_)) => Instrument::Linear,
            Some(proto::position::Instrument::Option(o)) => {
                let kind = match proto::OptionType::try_from(o.r#type) {
                    Ok(proto::OptionType::Call) => OptionKind::Call,
                    Ok(proto::OptionType::Put) => OptionKind::Put,
                    _ => return Err(invalid(".option.type", "CALL or PUT")),
                };
                if !(o.strike.is_finite() && o.strike > 0.0) {
                    return Err(invalid(".option.strike", format!("must be finite and > 0, got {}", o.strike)));
                }
                if !(o.expiry_years.is_finite() && (0.0..=50.0).contains(&o.expiry_years)) {
                    return Err(invalid(".option.expiry_years", format!("must be in [0, 50], got {}", o.expiry_years)));
                }
                Instrument::Option { kind, strike: o.strike, expiry_years: o.expiry_years }
            }
            Some(proto::position::Instrument::Greeks(g)) => {
                for (name, v) in [("delta", g.delta), ("gamma", g.gamma), ("vega", g.vega)] {
                    if !v.is_finite() {
                        return Err(invalid(format!(".greeks.{name}"), format!("must be finite, got {v}")));
                    }
                }
                Instrument::Greeks { delta: g.delta, gamma: g.gamma, vega: g.vega }
            }
        };
        Ok(Position { underlying: p.underlying.clone(), quantity: p.quantity, instrument })
    }
}

impl TryFrom<&proto::CalibrateRequest> for AccountRequest {
    type Error = ServeError;

    fn try_from(r: &proto::CalibrateRequest) -> Result<Self, ServeError> {
        if r.account_id.is_empty() || r.account_id.len() > MAX_ACCOUNT_ID {
            return Err(invalid("account_id", format!("required (1 to {MAX_ACCOUNT_ID} bytes): the A/B split hashes it")));
        }
        if r.positions.is_empty() {
            return Err(invalid("positions", "an account needs at least one position"));
        }
        if r.positions.len() > MAX_POSITIONS {
            return Err(invalid("positions", format!("{} positions; at most {MAX_POSITIONS} per account", r.positions.len())));
        }
        if r.previous_initial_margin.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
            return Err(invalid("previous_initial_margin", "must be finite and ≥ 0"));
        }
        let positions = r
            .positions
            .iter()
            .enumerate()
            .map(|(i, p)| Position::try_from(p).map_err(|e| e.within(&format!("positions[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        let mut collateral = Vec::with_capacity(r.collateral.len());
        for (i, c) in r.collateral.iter().enumerate() {
            if c.asset.is_empty() || c.asset.len() > MAX_ASSET {
                return Err(invalid(format!("collateral[{i}].asset"), format!("required (1 to {MAX_ASSET} bytes)")));
            }
            if !(c.quantity.is_finite() && (0.0..=MAX_QUANTITY).contains(&c.quantity)) {
                return Err(invalid(format!("collateral[{i}].quantity"), format!("must be in [0, {MAX_QUANTITY:e}], got {}", c.quantity)));
            }
            collateral.push(Collateral { asset: c.asset.clone(), quantity: c.quantity, field: format!("collateral[{i}]") });
        }
        Ok(Self {
            account_id: r.account_id.clone(),
            positions,
            markets: market_quotes(&r.markets, |i| format!("markets[{i}]"))?,
            collateral,
            previous_initial_margin: r.previous_initial_margin,
            explain: r.explain,
        })
    }
}

fn horizons(values: &[(usize, f64)]) -> Vec<proto::HorizonValue> {
    values.iter().map(|(h, v)| proto::HorizonValue { horizon_days: *h as u32, value: *v }).collect()
}

/// The answer to one account's calibration.
pub fn calibrate_response(account_id: &str, c: &Calibration) -> proto::CalibrateResponse {
    let ArmMargin { arm, margin, forecasts, collateral, grids } = &c.posted;
    let losses = |grid: &[(Scenario, f64)]| -> Vec<proto::ScenarioLoss> {
        grid.iter().map(|(s, loss)| proto::ScenarioLoss { price_shock: s.price_shock, vol_shock: s.vol_shock, loss: *loss }).collect()
    };
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
                scenarios: grids.get(&u.underlying).map(|g| losses(&g.forward)).unwrap_or_default(),
                reactive_scenarios: grids.get(&u.underlying).map(|g| losses(&g.reactive)).unwrap_or_default(),
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
        guards_applied: margin.posted.applied.iter().map(|g| g.name().to_string()).collect(),
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

/// The answer to a Forecast.
pub fn forecast_response(asset: String, f: &AssetForecast) -> proto::ForecastResponse {
    proto::ForecastResponse {
        asset,
        model: f.model.clone().unwrap_or_default(),
        sigma: horizons(&f.variance.iter().map(|(h, v)| (*h, v.sqrt())).collect::<Vec<_>>()),
        variance: horizons(&f.variance),
        regime_probability: f.regime.as_ref().map(|(_, p)| horizons(p)).unwrap_or_default(),
        regime_model: f.regime.as_ref().map(|(m, _)| m.clone()).unwrap_or_default(),
    }
}

/// A calibration's error as a batch or stream result carries it (the gRPC code's name).
pub fn calibrate_result(account_id: String, outcome: Result<proto::CalibrateResponse, ServeError>) -> proto::CalibrateResult {
    use proto::calibrate_result::Outcome;
    let outcome = match outcome {
        Ok(margin) => Outcome::Margin(margin),
        Err(e) => Outcome::Error(proto::CalibrateError { code: code_name(e.code()).into(), message: e.to_string() }),
    };
    proto::CalibrateResult { account_id, outcome: Some(outcome) }
}

/// The canonical name of the codes a calibration returns.
/// (Every code [`ServeError::code`] chooses, so a batch result says what a unary call would.)
fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
        tonic::Code::Unavailable => "UNAVAILABLE",
        _ => "INTERNAL",
    }
}

// ---- models ----

impl From<&Split> for proto::TrafficSplit {
    fn from(split: &Split) -> Self {
        Self { arms: split.arms.iter().map(|a| proto::ArmWeight { arm: a.arm.clone(), weight: a.weight }).collect(), shadow: split.shadow }
    }
}

impl From<proto::TrafficSplit> for Split {
    /// The arms are checked when the engine is built with the split.
    fn from(split: proto::TrafficSplit) -> Self {
        Self { arms: split.arms.into_iter().map(|a| ArmWeight { arm: a.arm, weight: a.weight }).collect(), shadow: split.shadow }
    }
}

/// One served model in ListModels.
pub fn served_model(slot: String, s: &Served) -> proto::ServedModel {
    proto::ServedModel { slot, model: s.reference.clone(), sha256: s.card.onnx.sha256.clone(), trained_through: s.card.training.end.to_string() }
}

// ---- the Open Inference Protocol ----

/// The one tensor type the served models take and give.
pub const FP64: &str = "FP64";

/// A ModelInfer request, checked up to what needs the model.
#[derive(Debug, Clone, PartialEq)]
pub struct InferInput {
    /// Inputs given (one is needed).
    pub inputs: usize,
    /// The input's values, row after row.
    pub values: Vec<f64>,
    /// Its shape.
    pub shape: Vec<i64>,
    /// Whether it came as `raw_input_contents` (then the answer does too, as Triton's does).
    pub raw: bool,
    /// The outputs asked for, in order (none: every output).
    pub outputs: Vec<String>,
}

impl TryFrom<&oip::ModelInferRequest> for InferInput {
    type Error = ServeError;

    fn try_from(r: &oip::ModelInferRequest) -> Result<Self, ServeError> {
        let outputs = r.outputs.iter().map(|o| o.name.clone()).collect();
        let Some(input) = r.inputs.first() else {
            return Ok(Self { inputs: 0, values: Vec::new(), shape: Vec::new(), raw: false, outputs });
        };
        if input.datatype != FP64 {
            return Err(invalid("inputs[0].datatype", format!("{FP64} expected, got `{}`", input.datatype)));
        }
        let values: Vec<f64> = match (r.raw_input_contents.first(), &input.contents) {
            (Some(raw), _) => {
                if raw.len() % 8 != 0 {
                    return Err(invalid("raw_input_contents[0]", "not a whole number of little-endian FP64 values"));
                }
                raw.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap_or_default())).collect()
            }
            (None, Some(c)) => c.fp64_contents.clone(),
            (None, None) => return Err(invalid("inputs[0].contents", "required (or raw_input_contents)")),
        };
        if let Some(i) = values.iter().position(|v| v.is_infinite()) {
            return Err(invalid(format!("inputs[0].contents[{i}]"), "infinite (NaN marks a missing value)"));
        }
        Ok(Self { inputs: r.inputs.len(), values, shape: input.shape.clone(), raw: !r.raw_input_contents.is_empty(), outputs })
    }
}

impl InferInput {
    /// Checks the input against the model it is for: one input, whole rows of the width its card
    /// gives, outputs it has.
    pub fn check_for(&self, served: &Served) -> Result<(), ServeError> {
        let card = &served.card;
        if self.inputs != 1 {
            return Err(invalid("inputs", format!("{} has one input, `{}`; got {}", served.reference, card.onnx.input, self.inputs)));
        }
        let width = served.row_width();
        let rows = usize::try_from(self.shape.first().copied().unwrap_or(0)).unwrap_or(0);
        let row_values = self.shape.iter().skip(1).try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?));
        let shape_values = row_values.and_then(|w| w.checked_mul(rows));
        if rows == 0 || row_values != Some(width) || shape_values != Some(self.values.len()) {
            return Err(invalid(
                "inputs[0].shape",
                format!("{:?} with {} values; {} takes [rows, {width}] as its card says ({:?})", self.shape, self.values.len(), served.reference, card.onnx.input_shape),
            ));
        }
        if let Some(unknown) = self.outputs.iter().find(|w| !card.onnx.outputs.contains(w)) {
            return Err(invalid("outputs", format!("`{unknown}` is not an output of {} ({:?})", served.reference, card.onnx.outputs)));
        }
        Ok(())
    }

    /// The answer: the outputs asked for in the order asked (all, in the card's order, when
    /// none are), raw little-endian bytes when the input was raw, typed contents otherwise.
    pub fn response(&self, request: &oip::ModelInferRequest, version: String, outputs: BTreeMap<String, Vec<f64>>) -> oip::ModelInferResponse {
        let mut outputs: Vec<(String, Vec<f64>)> = outputs.into_iter().filter(|(n, _)| self.outputs.is_empty() || self.outputs.contains(n)).collect();
        if !self.outputs.is_empty() {
            outputs.sort_by_key(|(n, _)| self.outputs.iter().position(|w| w == n));
        }
        let mut raw_output_contents = Vec::new();
        let outputs = outputs
            .into_iter()
            .map(|(name, values)| {
                let shape = vec![values.len() as i64];
                let contents = if self.raw {
                    raw_output_contents.push(values.iter().flat_map(|v| v.to_le_bytes()).collect());
                    None
                } else {
                    Some(oip::InferTensorContents { fp64_contents: values, ..Default::default() })
                };
                InferOutputTensor { name, datatype: FP64.into(), shape, parameters: Default::default(), contents }
            })
            .collect();
        oip::ModelInferResponse {
            model_name: request.model_name.clone(),
            model_version: version,
            id: request.id.clone(),
            parameters: Default::default(),
            outputs,
            raw_output_contents,
        }
    }
}

/// A served model's metadata: its input `[-1, …]` and FP64 outputs `[-1]`.
pub fn model_metadata(s: &Served) -> oip::ModelMetadataResponse {
    let mut input_shape = s.card.onnx.input_shape.clone();
    if let Some(batch) = input_shape.first_mut() {
        *batch = -1;
    }
    oip::ModelMetadataResponse {
        name: s.card.name.clone(),
        versions: vec![s.card.version.to_string()],
        platform: "onnxruntime_onnx".into(),
        inputs: vec![TensorMetadata { name: s.card.onnx.input.clone(), datatype: FP64.into(), shape: input_shape }],
        outputs: s.card.onnx.outputs.iter().map(|o| TensorMetadata { name: o.clone(), datatype: FP64.into(), shape: vec![-1] }).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_result_names_the_code_a_unary_call_would_get() {
        for (error, name) in [
            (invalid("positions[0].quantity", "must be finite"), "INVALID_ARGUMENT"),
            (ServeError::NotFound("asset".into()), "NOT_FOUND"),
            (ServeError::Unsupported("no state"), "FAILED_PRECONDITION"),
            (ServeError::Overloaded(64), "RESOURCE_EXHAUSTED"),
            (ServeError::Internal("x".into()), "INTERNAL"),
        ] {
            let message = error.to_string();
            let result = calibrate_result("a".into(), Err(error));
            match result.outcome {
                Some(proto::calibrate_result::Outcome::Error(e)) => assert_eq!((e.code.as_str(), e.message), (name, message)),
                other => panic!("{other:?}"),
            }
        }
    }
}
