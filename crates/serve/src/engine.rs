//! The calibration engine, free of gRPC: the registry's champions loaded and checked, inline
//! history turned into model inputs by the training code's feature functions, forecasts into
//! margin rates (FHS, as the backtest does), and `foresight-core::margin` for the account.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use foresight_core::calibrate::{Arm, CalibrationParams, fhs_rates};
use foresight_core::features::{Ewma, implied_log_variance};
use foresight_core::margin::{
    AccountMargin, Fallback, GuardRails, InputLimits, Instrument, OptionKind, Position, ScenarioConfig, UnderlyingInputs,
    UnderlyingMarket, calibrate_account, check_inputs,
};
use foresight_registry::card::Task;
use foresight_registry::inputs::ModelInput;
use foresight_registry::runtime::LoadedModel;
use foresight_registry::{ModelCard, Registry};

use crate::proto;

/// Residuals the FHS rate needs before a model's rate is used.
const FHS_MIN_RESIDUALS: usize = 100;
/// Days of history below which a request is refused.
const MIN_HISTORY: usize = 31;

/// Why a request cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A request field is invalid; the message names it.
    #[error("{field}: {message}")]
    Invalid {
        /// The field path, e.g. `markets[0].spot`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Something failed inside the service.
    #[error("{0}")]
    Internal(String),
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> EngineError {
    EngineError::Invalid { field: field.into(), message: message.into() }
}

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The registry folder.
    pub registry: PathBuf,
    /// One-sided confidence of margin rates.
    pub confidence: f64,
    /// The reactive arm every forecast is compared with and falls back to.
    pub reactive_arm: String,
    /// Scenario grid and add-ons.
    pub scenario: ScenarioConfig,
    /// Guard rails.
    pub rails: GuardRails,
    /// Fallback limits.
    pub limits: InputLimits,
}

impl EngineConfig {
    /// Defaults around a registry folder: 99%, EWMA as the reactive arm, the documented
    /// defaults of the scenario grid, rails and limits.
    pub fn new(registry: impl Into<PathBuf>) -> Self {
        Self {
            registry: registry.into(),
            confidence: 0.99,
            reactive_arm: "ewma".into(),
            scenario: ScenarioConfig::default(),
            rails: GuardRails::default(),
            limits: InputLimits::default(),
        }
    }
}

/// A registered model being served.
struct Served {
    card: ModelCard,
    model: Mutex<LoadedModel>,
}

/// The loaded champions and settings.
pub struct Engine {
    config: EngineConfig,
    reactive: Arm,
    volatility: HashMap<String, Served>,
    regime: HashMap<String, Served>,
}

/// Model input rows per day (`None` where incomplete).
type InputRows = Vec<Option<Vec<f64>>>;
/// Each output of a model per day.
type Outputs = BTreeMap<String, Vec<Option<f64>>>;

/// An asset's history as the feature code takes it.
struct Series {
    closes: Vec<f64>,
    returns: Vec<Option<f64>>,
    rv: Vec<Option<f64>>,
    implied_vol: Vec<Option<f64>>,
    periods_per_year: f64,
}

/// One asset's forecast and rates.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetForecast {
    /// `name@vN` of the volatility model, when one serves the asset.
    pub model: Option<String>,
    /// Forecast mean daily variance per horizon.
    pub variance: Vec<(usize, f64)>,
    /// P(stressed regime within h days), with the regime model.
    pub regime: Option<(String, Vec<(usize, f64)>)>,
    /// The model's margin rate, or why there is none.
    pub forward_rate: Result<f64, Fallback>,
    /// The reactive arm's margin rate.
    pub reactive_rate: f64,
    /// The reactive arm's daily volatility.
    pub reactive_sigma: f64,
}

impl Engine {
    /// Loads the champion of every slot of the registry, checking each (sha256, golden rows).
    pub fn load(config: EngineConfig) -> anyhow::Result<Self> {
        let registry = Registry::open(&config.registry)?;
        let reactive: Arm = config.reactive_arm.parse()?;
        let (mut volatility, mut regime) = (HashMap::new(), HashMap::new());
        for (slot, entry) in &registry.index().slots {
            let Some(champion) = &entry.champion else { continue };
            let (card, model, _) = registry.load(champion)?;
            let asset = slot.split('/').next().unwrap_or_default().to_string();
            let served = Served { card, model: Mutex::new(model) };
            match served.card.task {
                Task::Volatility => volatility.insert(asset, served),
                Task::Regime => regime.insert(asset, served),
            };
        }
        Ok(Self { config, reactive, volatility, regime })
    }

    /// `asset → name@vN` of the volatility champions served.
    pub fn models(&self) -> BTreeMap<String, String> {
        self.volatility.iter().map(|(a, s)| (a.clone(), s.card.reference().to_string())).collect()
    }

    fn series(market: &proto::AssetMarket, field: &str) -> Result<Series, EngineError> {
        if market.history.len() < MIN_HISTORY {
            return Err(invalid(format!("{field}.history"), format!("needs at least {MIN_HISTORY} days, got {}", market.history.len())));
        }
        let mut previous_date = String::new();
        for (i, o) in market.history.iter().enumerate() {
            let at = format!("{field}.history[{i}]");
            if !(o.close.is_finite() && o.close > 0.0) {
                return Err(invalid(format!("{at}.close"), format!("must be finite and > 0, got {}", o.close)));
            }
            if o.realized_variance.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                return Err(invalid(format!("{at}.realized_variance"), "must be finite and ≥ 0"));
            }
            if o.implied_vol.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                return Err(invalid(format!("{at}.implied_vol"), "must be finite and ≥ 0 (annualised percent)"));
            }
            if o.date.len() != 10 || o.date <= previous_date {
                return Err(invalid(format!("{at}.date"), format!("`{}` must be YYYY-MM-DD and after the day before", o.date)));
            }
            previous_date = o.date.clone();
        }
        let closes: Vec<f64> = market.history.iter().map(|o| o.close).collect();
        let returns = std::iter::once(None).chain(closes.windows(2).map(|w| Some((w[1] / w[0]).ln()))).collect();
        // Calendar-daily history (crypto) has weekends; business-daily (indices) does not.
        let weekend = market.history.iter().any(|o| is_weekend(&o.date));
        Ok(Series {
            returns,
            rv: market.history.iter().map(|o| o.realized_variance).collect(),
            implied_vol: market.history.iter().map(|o| o.implied_vol).collect(),
            closes,
            periods_per_year: if weekend { 365.0 } else { 252.0 },
        })
    }

    /// Runs a served model over every day of `series`: each output per day.
    fn run(served: &Served, series: &Series) -> Result<(InputRows, Outputs), String> {
        let card = &served.card;
        let input = ModelInput::from_card(card).map_err(|e| e.to_string())?;
        let exogenous: Vec<Option<f64>> = match card.params.get("exogenous") {
            Some(spec) if spec.get("transform").and_then(|t| t.as_str()) == Some("iv") => {
                let ppy = spec.get("periods_per_year").and_then(|v| v.as_f64()).unwrap_or(series.periods_per_year);
                series.implied_vol.iter().map(|v| v.and_then(|v| implied_log_variance(v, ppy))).collect()
            }
            _ => Vec::new(),
        };
        let rows = input.rows(&series.rv, &series.returns, &exogenous);
        let days: Vec<usize> = (0..rows.len()).filter(|&t| rows[t].is_some()).collect();
        if days.is_empty() {
            return Err(format!("{}: no day with complete inputs (realized variance missing?)", card.reference()));
        }
        let flat: Vec<f64> = days.iter().flat_map(|&t| rows[t].clone().unwrap_or_default()).collect();
        let outputs = served.model.lock().map_err(|_| "model lock poisoned".to_string())?.run(&flat).map_err(|e| e.to_string())?;
        let per_day = outputs
            .into_iter()
            .map(|(name, values)| {
                let mut series = vec![None; rows.len()];
                for (i, &t) in days.iter().enumerate() {
                    series[t] = Some(values[i]).filter(|v| v.is_finite());
                }
                (name, series)
            })
            .collect();
        Ok((rows, per_day))
    }

    /// The forecast and rates of one asset from its market (`field` names it in errors).
    pub fn forecast(&self, market: &proto::AssetMarket, field: &str) -> Result<AssetForecast, EngineError> {
        let series = Self::series(market, field)?;
        let params = CalibrationParams::new(self.config.confidence, 1, series.periods_per_year).map_err(|e| EngineError::Internal(e.to_string()))?;
        let reactive = self.reactive.margin_rates(&series.closes, &params).map_err(|e| invalid(format!("{field}.history"), e.to_string()))?;
        let reactive_rate = reactive.last().copied().flatten().map(|r| r.long.max(r.short)).ok_or_else(|| {
            invalid(format!("{field}.history"), format!("too short for the reactive arm {}", self.reactive))
        })?;
        let returns: Vec<f64> = series.returns.iter().skip(1).map(|r| r.unwrap_or(0.0)).collect();
        let ewma = Ewma::new(Ewma::RISKMETRICS_LAMBDA).map_err(|e| EngineError::Internal(e.to_string()))?.variance_series(&returns);
        let reactive_sigma = ewma.last().copied().flatten().unwrap_or(0.0).sqrt();

        let regime = self.regime.get(&market.asset).and_then(|served| {
            let (_, outputs) = Self::run(served, &series).ok()?;
            let probabilities = served
                .card
                .horizons
                .iter()
                .filter_map(|h| outputs.get(&format!("p_high_regime_h{h}")).and_then(|s| s.last().copied().flatten()).map(|p| (*h, p)))
                .collect();
            Some((served.card.reference().to_string(), probabilities))
        });
        let Some(served) = self.volatility.get(&market.asset) else {
            return Ok(AssetForecast { model: None, variance: Vec::new(), regime, forward_rate: Err(Fallback::NoModel), reactive_rate, reactive_sigma });
        };
        let model = Some(served.card.reference().to_string());
        let (rows, outputs) = match Self::run(served, &series) {
            Ok(v) => v,
            Err(detail) => {
                return Ok(AssetForecast { model, variance: Vec::new(), regime, forward_rate: Err(Fallback::ForecastFailed { detail }), reactive_rate, reactive_sigma });
            }
        };
        let variance: Vec<(usize, f64)> = served
            .card
            .horizons
            .iter()
            .filter_map(|h| outputs.get(&format!("variance_h{h}")).and_then(|s| s.last().copied().flatten()).map(|v| (*h, v)))
            .collect();
        let forward_rate = self.forward_rate(served, &series, &rows, &outputs, &params, market, reactive_sigma);
        Ok(AssetForecast { model, variance, regime, forward_rate, reactive_rate, reactive_sigma })
    }

    /// The model's FHS rate for today, unless an input check sends the asset back to reactive.
    #[allow(clippy::too_many_arguments)]
    fn forward_rate(
        &self,
        served: &Served,
        series: &Series,
        rows: &[Option<Vec<f64>>],
        outputs: &Outputs,
        params: &CalibrationParams,
        market: &proto::AssetMarket,
        reactive_sigma: f64,
    ) -> Result<f64, Fallback> {
        let card = &served.card;
        let last_row = rows.last().cloned().flatten().ok_or_else(|| Fallback::ForecastFailed { detail: "today's inputs are incomplete".into() })?;
        let columns = card.onnx.input_columns.len().max(1);
        let named: Vec<(&str, f64, (f64, f64))> = last_row
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_nan()) // a NaN exogenous input is the model's own fallback
            .filter_map(|(i, v)| card.onnx.input_ranges.get(i % columns).map(|r| (card.onnx.input_columns[i % columns].as_str(), *v, (r[0], r[1]))))
            .collect();
        let last_close = series.closes.last().copied();
        if let Some(reason) = check_inputs(market.data_age_seconds.unwrap_or(0.0), last_close, market.spot, reactive_sigma, &named, &self.config.limits) {
            return Err(reason);
        }
        let next_day = outputs.get("variance_h1").ok_or_else(|| Fallback::ForecastFailed { detail: format!("{} has no variance_h1", card.reference()) })?;
        let rates = fhs_rates(&series.returns, next_day, next_day, params, FHS_MIN_RESIDUALS).map_err(|e| Fallback::ForecastFailed { detail: e.to_string() })?;
        rates
            .last()
            .copied()
            .flatten()
            .map(|r| r.long.max(r.short))
            .filter(|r| r.is_finite() && *r > 0.0 && *r < 1.0)
            .ok_or_else(|| Fallback::ForecastFailed { detail: format!("needs {FHS_MIN_RESIDUALS} days of forecasts before a rate") })
    }

    /// Calibrates one account.
    pub fn calibrate(&self, request: &proto::CalibrateRequest) -> Result<(AccountMargin, BTreeMap<String, AssetForecast>), EngineError> {
        if request.positions.is_empty() {
            return Err(invalid("positions", "an account needs at least one position"));
        }
        let mut forecasts = BTreeMap::new();
        let mut inputs = BTreeMap::new();
        for (i, m) in request.markets.iter().enumerate() {
            let field = format!("markets[{i}]");
            if m.asset.is_empty() || forecasts.contains_key(&m.asset) {
                return Err(invalid(format!("{field}.asset"), format!("`{}` is empty or given twice", m.asset)));
            }
            for (name, v, ok) in [
                ("spot", m.spot, m.spot.is_finite() && m.spot > 0.0),
                ("implied_vol", m.implied_vol, m.implied_vol.is_finite() && m.implied_vol >= 0.0 && m.implied_vol < 10.0),
                ("depth_notional", m.depth_notional.unwrap_or(1.0), m.depth_notional.is_none_or(|d| d.is_finite() && d > 0.0)),
                ("data_age_seconds", m.data_age_seconds.unwrap_or(0.0), m.data_age_seconds.is_none_or(|a| a.is_finite() && a >= 0.0)),
            ] {
                if !ok {
                    return Err(invalid(format!("{field}.{name}"), format!("invalid value {v}")));
                }
            }
            let f = self.forecast(m, &field)?;
            let forecast_sigma = f.variance.iter().map(|(h, v)| (*h, v.sqrt())).collect();
            inputs.insert(
                m.asset.clone(),
                UnderlyingInputs {
                    market: UnderlyingMarket { spot: m.spot, implied_vol: m.implied_vol, margin_rate: f.reactive_rate, daily_vol: f.reactive_sigma, depth_notional: m.depth_notional },
                    reactive_rate: f.reactive_rate,
                    forward_rate: f.forward_rate.clone(),
                    forecast_sigma,
                    regime_probability: f.regime.as_ref().map(|(_, p)| p.clone()).unwrap_or_default(),
                    reactive_sigma: f.reactive_sigma,
                },
            );
            forecasts.insert(m.asset.clone(), f);
        }
        let mut positions = Vec::with_capacity(request.positions.len());
        for (i, p) in request.positions.iter().enumerate() {
            let field = format!("positions[{i}]");
            if !inputs.contains_key(&p.underlying) {
                return Err(invalid(format!("{field}.underlying"), format!("no market given for `{}`", p.underlying)));
            }
            if !(p.quantity.is_finite() && p.quantity.abs() <= 1e12) {
                return Err(invalid(format!("{field}.quantity"), format!("must be finite and at most 1e12 in size, got {}", p.quantity)));
            }
            let instrument = match &p.instrument {
                None | Some(proto::position::Instrument::Linear(_)) => Instrument::Linear,
                Some(proto::position::Instrument::Option(o)) => {
                    let kind = match proto::OptionType::try_from(o.r#type) {
                        Ok(proto::OptionType::Call) => OptionKind::Call,
                        Ok(proto::OptionType::Put) => OptionKind::Put,
                        _ => return Err(invalid(format!("{field}.option.type"), "CALL or PUT")),
                    };
                    Instrument::Option { kind, strike: o.strike, expiry_years: o.expiry_years }
                }
                Some(proto::position::Instrument::Greeks(g)) => Instrument::Greeks { delta: g.delta, gamma: g.gamma, vega: g.vega },
            };
            positions.push(Position { underlying: p.underlying.clone(), quantity: p.quantity, instrument });
        }
        if request.previous_initial_margin.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
            return Err(invalid("previous_initial_margin", "must be finite and ≥ 0"));
        }
        let margin = calibrate_account(&positions, &inputs, None, &self.config.scenario, &self.config.rails, request.previous_initial_margin)
            .map_err(|e| invalid("positions", e.to_string()))?;
        Ok((margin, forecasts))
    }
}

fn is_weekend(date: &str) -> bool {
    // Zeller-free: days since 1970-01-01 (a Thursday) from the civil date.
    let parse = |a: usize, b: usize| date.get(a..b).and_then(|s| s.parse::<i64>().ok());
    let (Some(y), Some(m), Some(d)) = (parse(0, 4), parse(5, 7), parse(8, 10)) else { return false };
    let (y, m) = if m <= 2 { (y - 1, m + 12) } else { (y, m) };
    let days = 365 * y + y / 4 - y / 100 + y / 400 + (153 * (m - 3) + 2) / 5 + d - 719_469;
    matches!(days.rem_euclid(7), 2 | 3) // 0 = Thursday → 2 = Saturday, 3 = Sunday
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekends_from_civil_dates() {
        assert!(is_weekend("2020-03-14") && is_weekend("2020-03-15"), "Saturday and Sunday");
        assert!(!is_weekend("2020-03-12") && !is_weekend("2024-08-05"));
        assert!(!is_weekend("garbage"));
    }
}
