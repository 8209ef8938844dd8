//! The calibration engine, free of gRPC: one immutable *generation* of served models (the
//! registry's champions and the models the arms pin, each checked by sha256 and golden rows),
//! the arms and their traffic split, and the functions that turn a history into forecasts,
//! forecasts into margin rates (FHS, as the backtest does) and an account into margin with
//! `foresight-core::margin`. Hot reload builds a new generation and swaps it in whole, so a
//! request sees one consistent set of models from start to end.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use foresight_core::calibrate::{Arm, BaseCalibrator, CalibrationParams, FHS_MIN_RESIDUALS, ForwardInputs};
use foresight_core::features::Ewma;
use foresight_core::margin::split::assign;
use foresight_core::margin::{
    AccountMargin, Fallback, GuardRails, InputLimits, Instrument, Position, Scenario, ScenarioConfig, UnderlyingInputs, UnderlyingMarket,
    calibrate_account, check_inputs, collateral_haircut, scenario_losses,
};
use foresight_registry::card::{ModelRef, Task};
use foresight_registry::exogenous::{ExogenousSpec, Transform};
use foresight_registry::inputs::{DailyRun, ModelInput, run_over_days};
use foresight_registry::runtime::LoadedModel;
use foresight_registry::storage::{Location, Storage};
use foresight_registry::{ModelCard, Registry, RegistryError};
use serde::{Deserialize, Serialize};

use crate::error::{ServeError, invalid};
use crate::market::MarketState;
use crate::series::{MarketInput, MarketQuote, Series};

/// Days of history below which a request is refused.
const MIN_HISTORY: usize = 31;

/// One account's checked request.
#[derive(Debug, Clone)]
pub struct AccountRequest {
    /// The account (the A/B split hashes it).
    pub account_id: String,
    /// Its positions.
    pub positions: Vec<Position>,
    /// Markets given with the request (they come before a batch's and the published ones).
    pub markets: Vec<MarketQuote>,
    /// Collateral balances.
    pub collateral: Vec<Collateral>,
    /// The initial margin posted before (for the guard rails).
    pub previous_initial_margin: Option<f64>,
    /// Also work out each underlying's scenario grids.
    pub explain: bool,
}

/// One collateral balance.
#[derive(Debug, Clone)]
pub struct Collateral {
    /// The asset.
    pub asset: String,
    /// Units, ≥ 0.
    pub quantity: f64,
    /// Its field path, for errors: `collateral[0]`.
    pub field: String,
}

/// One arm and its share of the accounts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmWeight {
    /// The arm, in the backtest's grammar.
    pub arm: String,
    /// Its share (normalised over the arms).
    pub weight: f64,
}

/// The A/B traffic split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Split {
    /// Arms and weights; an account's arm is a stable hash of its id.
    pub arms: Vec<ArmWeight>,
    /// Compute every arm for every account, post the assigned one, audit all.
    #[serde(default)]
    pub shadow: bool,
}

impl Default for Split {
    /// Every account on the registry's champion.
    fn default() -> Self {
        Self { arms: vec![ArmWeight { arm: "model:champion".into(), weight: 1.0 }], shadow: false }
    }
}

/// How collateral counts against margin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollateralConfig {
    /// Assets worth their quantity, without haircut.
    pub cash: Vec<String>,
    /// Days over which a collateral asset's price may move before it is sold (its haircut's
    /// horizon).
    pub mpor_days: f64,
    /// Largest haircut.
    pub cap: f64,
}

impl Default for CollateralConfig {
    /// USD and the two large dollar stablecoins as cash; a 2-day liquidation horizon (crypto
    /// venues sell collateral within a day or two); haircuts capped at 50%.
    fn default() -> Self {
        Self { cash: vec!["USD".into(), "USDT".into(), "USDC".into()], mpor_days: 2.0, cap: 0.5 }
    }
}

/// One collateral balance valued.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CollateralValue {
    /// The asset.
    pub asset: String,
    /// Units.
    pub quantity: f64,
    /// Price (1 for cash).
    pub price: f64,
    /// Haircut applied.
    pub haircut: f64,
    /// Value after the haircut.
    pub value: f64,
}

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The registry: a folder or an object store URL (`s3://bucket/prefix`).
    pub registry: Location,
    /// One-sided confidence of margin rates.
    pub confidence: f64,
    /// The reactive arm every multiplier is relative to and every fallback falls back to.
    pub reactive_arm: String,
    /// Scenario grid and add-ons.
    pub scenario: ScenarioConfig,
    /// Guard rails.
    pub rails: GuardRails,
    /// Fallback limits.
    pub limits: InputLimits,
    /// The A/B split.
    pub split: Split,
    /// Collateral valuation.
    pub collateral: CollateralConfig,
}

impl EngineConfig {
    /// Defaults around a registry: 99%, EWMA as the reactive arm, the documented
    /// defaults of the scenario grid, rails and limits, every account on the champion.
    pub fn new(registry: impl Into<Location>) -> Self {
        Self {
            registry: registry.into(),
            confidence: 0.99,
            reactive_arm: "ewma".into(),
            scenario: ScenarioConfig::default(),
            rails: GuardRails::default(),
            limits: InputLimits::default(),
            split: Split::default(),
            collateral: CollateralConfig::default(),
        }
    }
}

/// A registered model being served.
pub struct Served {
    /// Its card.
    pub card: ModelCard,
    /// `name@vN`.
    pub reference: String,
    /// What its rows are built with.
    input: ModelInput,
    /// Its exogenous input, for HAR-X models (the day's implied volatility).
    exogenous: Option<ExogenousSpec>,
    model: Mutex<LoadedModel>,
}

impl Served {
    /// Runs whole input rows (concatenated) through the model: each output's values, a value
    /// per row.
    pub fn run_rows(&self, rows: &[f64]) -> Result<BTreeMap<String, Vec<f64>>, String> {
        self.model.lock().map_err(|_| "model lock poisoned".to_string())?.run(rows).map_err(|e| e.to_string())
    }

    /// Values in one input row (the runtime's own reading of the card's input shape).
    pub fn row_width(&self) -> usize {
        self.model.lock().map_or(0, |m| m.row_width())
    }

    /// Loads and checks the model `reference` names; a model whose input the service cannot
    /// build from the market data it receives is refused.
    fn load(registry: &Registry, reference: &ModelRef) -> Result<Self, ServeError> {
        let registry_error = |source| ServeError::Registry { context: reference.to_string(), source };
        let (card, model, _) = registry.load(reference).map_err(registry_error)?;
        let input = ModelInput::from_card(&card).map_err(registry_error)?;
        let exogenous = ExogenousSpec::from_card(&card).map_err(registry_error)?;
        if let Some(spec) = exogenous.as_ref().filter(|s| s.transform != Transform::ImpliedVol) {
            return Err(registry_error(RegistryError::Invalid(format!(
                "params.exogenous.transform is `{}` ({}): the service feeds a HAR-X model only the days' implied volatility (`iv`)",
                spec.transform.name(),
                spec.file.display()
            ))));
        }
        Ok(Self { reference: card.reference().to_string(), card, input, exogenous, model: Mutex::new(model) })
    }

    /// Runs the model over every day of `series`, fed as training fed it (the registry's one
    /// run over days; the exogenous input from the days' implied volatility, by the card's spec).
    fn run(&self, series: &Series) -> Result<DailyRun, String> {
        let mut model = self.model.lock().map_err(|_| "model lock poisoned".to_string())?;
        run_over_days(&mut model, &self.input, &series.rv, &series.returns, &self.exogenous(series), 0).map_err(|e| format!("{}: {e}", self.reference))
    }

    /// The exogenous regressor per day of `series` (empty for models without one).
    fn exogenous(&self, series: &Series) -> Vec<Option<f64>> {
        match &self.exogenous {
            Some(spec) => series.implied_vol_percent.iter().map(|v| v.and_then(|v| spec.transform.of_day(v, v, spec.periods_per_year))).collect(),
            None => Vec::new(),
        }
    }

    /// The input row the model is fed for each day of `series` (`None` where incomplete).
    pub fn rows(&self, series: &Series) -> Vec<Option<Vec<f64>>> {
        self.input.rows(&series.rv, &series.returns, &self.exogenous(series))
    }
}

/// Where an arm's forward rate comes from.
#[derive(Debug, Clone, PartialEq)]
enum ArmModel {
    /// A reactive calibrator (its own rate).
    Reactive,
    /// The asset's volatility champion (`model:champion`).
    Champion,
    /// One registered model (`model:<name>[@vN]`), for its asset only.
    Pinned(String),
}

/// A servable arm.
#[derive(Debug, Clone)]
pub struct ServeArm {
    /// Canonical name.
    pub name: String,
    arm: Arm,
    model: ArmModel,
    weight: f64,
}

/// What changed at a reload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReloadReport {
    /// `slot: old → new`.
    pub changed: Vec<String>,
    /// Models that failed their checks, where the last good model kept serving.
    pub refused: Vec<Refusal>,
}

/// A champion refused at a reload: `slot: model: why; old keeps serving`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Refusal {
    /// The registry slot, e.g. `BTC/volatility`.
    pub slot: String,
    /// The refused model, why, and which model keeps serving.
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.slot, self.message)
    }
}

/// One generation of served models and arms.
pub struct Engine {
    config: EngineConfig,
    generation: u64,
    /// The registry's change-log sequence when this generation was built.
    registry_sequence: u64,
    reactive: Arm,
    models: HashMap<String, Arc<Served>>,
    /// `<asset>/<task>` → `name@vN`.
    champions: BTreeMap<String, String>,
    arms: Vec<ServeArm>,
    /// `(arm, weight)` as `split::assign` takes them.
    weights: Vec<(String, f64)>,
    correlation: Option<(Vec<String>, Vec<Vec<f64>>)>,
    /// The registry's store, opened once and shared by every later generation (an object
    /// store's client keeps its connections).
    storage: Storage,
}

/// One asset's forecast and rates under one arm, from completed days only (cacheable): the
/// live checks (data age, price jump) come at calibration.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetForecast {
    /// `name@vN` of the volatility model, when the arm uses one for the asset.
    pub model: Option<String>,
    /// Forecast mean daily variance per horizon.
    pub variance: Vec<(usize, f64)>,
    /// The regime model and P(stressed regime within h days).
    pub regime: Option<(String, Vec<(usize, f64)>)>,
    /// The arm's margin rate, or why there is none.
    pub forward_rate: Result<f64, Fallback>,
    /// The reactive arm's margin rate.
    pub reactive_rate: f64,
    /// The reactive arm's (EWMA) daily volatility.
    pub reactive_sigma: f64,
    /// The last completed day.
    pub as_of: String,
    /// Its close.
    pub last_close: f64,
    /// The model's inputs of the last day with their training ranges.
    last_inputs: Vec<(String, f64, (f64, f64))>,
}

/// (generation, arm, asset, history fingerprint).
type ForecastKey = (u64, String, String, u64);

/// Forecasts and model runs keyed by generation, arm, model and history fingerprint: one model
/// run per asset and completed day, however many accounts and arms use it.
#[derive(Default)]
pub struct ForecastCache {
    // Read locks: every call reads, a new day or generation writes once.
    runs: RwLock<HashMap<(String, u64), Arc<DailyRun>>>,
    forecasts: RwLock<HashMap<ForecastKey, Arc<AssetForecast>>>,
}

/// Entries a cache map holds before it is emptied (old days and generations age out).
const CACHE_LIMIT: usize = 4096;

fn cached<K: std::hash::Hash + Eq, V>(map: &RwLock<HashMap<K, Arc<V>>>, key: K, make: impl FnOnce() -> Result<V, ServeError>) -> Result<Arc<V>, ServeError> {
    if let Some(v) = map.read().map_err(|_| poisoned())?.get(&key) {
        return Ok(v.clone());
    }
    let value = Arc::new(make()?);
    let mut map = map.write().map_err(|_| poisoned())?;
    if map.len() >= CACHE_LIMIT {
        map.clear();
    }
    map.insert(key, value.clone());
    Ok(value)
}

fn poisoned() -> ServeError {
    ServeError::Internal("a cache lock was poisoned by an earlier failure".into())
}

/// An account's checked inputs.
struct Account<'a> {
    positions: &'a [Position],
    markets: &'a BTreeMap<String, MarketInput>,
    collateral: &'a [(&'a Collateral, Option<MarketInput>)],
    previous_im: Option<f64>,
    explain: bool,
}

/// The margin of one account under one arm.
#[derive(Debug, Clone)]
pub struct ArmMargin {
    /// The arm.
    pub arm: String,
    /// The margin and the inputs that made it.
    pub margin: AccountMargin,
    /// The account's collateral valued with this arm's volatility forecasts.
    pub collateral: Vec<CollateralValue>,
    /// Per underlying, the cached forecast used.
    pub forecasts: BTreeMap<String, Arc<AssetForecast>>,
    /// Per underlying, when asked: the scenario losses of the forward-looking grid and of the
    /// reactive one.
    pub grids: BTreeMap<String, ScenarioGrids>,
}

/// One underlying's scenario grids: `(scenario, loss)` each.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioGrids {
    /// At the rate the margin used (forward-looking, or reactive on a fallback).
    pub forward: Vec<(Scenario, f64)>,
    /// At the reactive rate.
    pub reactive: Vec<(Scenario, f64)>,
}

/// An account's calibration: the posted arm first, then (shadow mode) every other arm.
#[derive(Debug, Clone)]
pub struct Calibration {
    /// The arm the account is assigned to, and its margin (posted).
    pub posted: ArmMargin,
    /// Shadow mode: the other arms.
    pub shadow: Vec<ArmMargin>,
    /// The engine generation that computed it.
    pub generation: u64,
}

impl Engine {
    /// Loads the champion of every slot and every model an arm pins, checking each (sha256,
    /// golden rows); any failure is an error.
    pub fn load(config: EngineConfig) -> Result<Self, ServeError> {
        Ok(Self::build(config, None, 1)?.0)
    }

    /// A new generation from the registry as it is now, reusing the models that did not change;
    /// a changed model that fails its checks is refused and this generation's keeps serving.
    pub fn reload(&self) -> Result<(Self, ReloadReport), ServeError> {
        Self::build(self.config.clone(), Some(self), self.generation + 1)
    }

    /// A new generation with another split (models the new arms pin are loaded and checked).
    pub fn with_split(&self, split: Split) -> Result<Self, ServeError> {
        let config = EngineConfig { split, ..self.config.clone() };
        Ok(Self::build(config, Some(self), self.generation + 1)?.0)
    }

    fn build(config: EngineConfig, previous: Option<&Engine>, generation: u64) -> Result<(Self, ReloadReport), ServeError> {
        if let Some(folder) = config.registry.folder().filter(|f| !f.is_dir()) {
            return Err(ServeError::setup(format!("registry {}", folder.display()), "no such folder (--registry / `registry` in the config)"));
        }
        let registry_error = |source| ServeError::Registry { context: format!("registry {}", config.registry), source };
        let storage = match previous {
            Some(previous) => previous.storage.clone(),
            None => Storage::open(&config.registry).map_err(registry_error)?,
        };
        let registry = Registry::on(storage.clone()).map_err(registry_error)?;
        let reactive: Arm = config.reactive_arm.parse().map_err(|e: foresight_core::CoreError| invalid("reactive_arm", e.to_string()))?;
        if matches!(reactive.base, BaseCalibrator::Model { .. } | BaseCalibrator::Registered { .. }) {
            return Err(invalid("reactive_arm", format!("`{reactive}`: the base every multiplier is measured against must be a reactive arm (ewma, hs:N, static:R)")));
        }
        let mut report = ReloadReport::default();
        let mut models: HashMap<String, Arc<Served>> = HashMap::new();
        let mut load = |reference: &ModelRef| -> Result<Arc<Served>, ServeError> {
            let key = reference.to_string();
            if let Some(served) = models.get(&key).cloned().or_else(|| previous.and_then(|p| p.models.get(&key).cloned())) {
                models.insert(key, served.clone());
                return Ok(served);
            }
            let served = Arc::new(Served::load(&registry, reference)?);
            models.insert(key, served.clone());
            Ok(served)
        };
        let mut champions = BTreeMap::new();
        for (slot, entry) in &registry.index().slots {
            let Some(champion) = &entry.champion else { continue };
            let before = previous.and_then(|p| p.champions.get(slot));
            match load(champion) {
                Ok(served) => {
                    if let Some(old) = before.filter(|old| **old != served.reference) {
                        report.changed.push(format!("{slot}: {old} → {}", served.reference));
                    }
                    champions.insert(slot.clone(), served.reference.clone());
                }
                Err(e) => match before {
                    Some(old) => {
                        report.refused.push(Refusal { slot: slot.clone(), message: format!("{champion}: {e}; {old} keeps serving") });
                        let old_ref: ModelRef = old.parse().map_err(|source| ServeError::Registry { context: format!("slot {slot}"), source })?;
                        load(&old_ref)?;
                        champions.insert(slot.clone(), old.clone());
                    }
                    None => return Err(ServeError::setup(format!("slot {slot}: champion {champion}"), e)),
                },
            }
        }
        if config.split.arms.is_empty() {
            return Err(invalid("split", "at least one arm is needed"));
        }
        let mut arms = Vec::with_capacity(config.split.arms.len());
        for (i, ArmWeight { arm: spec, weight }) in config.split.arms.iter().enumerate() {
            let field = format!("split.arms[{i}].arm");
            let arm: Arm = spec.parse().map_err(|e: foresight_core::CoreError| invalid(&field, e.to_string()))?;
            if !(weight.is_finite() && *weight >= 0.0) {
                return Err(invalid(format!("split.arms[{i}].weight"), format!("must be finite and ≥ 0, got {weight}")));
            }
            let model = match &arm.base {
                BaseCalibrator::Static { .. } | BaseCalibrator::Ewma { .. } | BaseCalibrator::HistoricalSimulation { .. } => ArmModel::Reactive,
                BaseCalibrator::Model { forecaster } => {
                    return Err(invalid(
                        &field,
                        format!(
                            "`model:{}` re-fits walk-forward with the training stack; serve a registered model (`model:<name>[@vN]`) or `model:champion`",
                            forecaster.as_str()
                        ),
                    ));
                }
                BaseCalibrator::Registered { model } if model == "champion" => ArmModel::Champion,
                BaseCalibrator::Registered { model } => {
                    let reference = model.parse().and_then(|r| registry.resolve(&r)).map_err(|e| invalid(&field, e.to_string()))?;
                    let served = load(&reference).map_err(|e| invalid(&field, format!("`{spec}`: {e}")))?;
                    if served.card.task != Task::Volatility {
                        return Err(invalid(&field, format!("{} forecasts regimes, not volatility", served.reference)));
                    }
                    ArmModel::Pinned(served.reference.clone())
                }
            };
            if arms.iter().any(|a: &ServeArm| a.name == arm.to_string()) {
                return Err(invalid(&field, format!("`{arm}` is given twice")));
            }
            arms.push(ServeArm { name: arm.to_string(), arm, model, weight: *weight });
        }
        if arms.iter().all(|a| a.weight <= 0.0) {
            return Err(invalid("split", "at least one arm needs a positive weight"));
        }
        let correlation = match registry.artifact("correlation") {
            Ok(value) => Some(parse_correlation(&value)?),
            Err(RegistryError::NotFound(_)) => None, // no artifact: no offset across underlyings
            Err(source) => return Err(ServeError::Registry { context: "correlation artifact".into(), source }),
        };
        check_settings(&config)?;
        let weights = arms.iter().map(|a| (a.name.clone(), a.weight)).collect();
        let registry_sequence = registry.index().change_sequence();
        Ok((Self { config, generation, registry_sequence, reactive, models, champions, arms, weights, correlation, storage }, report))
    }

    /// Whether `other` serves the same: the same champions, the same models (a `name@vN` is
    /// one checked artifact), the same correlation and the same arms. A reload that changes
    /// none of these is not a new generation.
    pub fn serves_same_as(&self, other: &Engine) -> bool {
        let names = |e: &Engine| -> std::collections::BTreeSet<String> { e.models.keys().cloned().collect() };
        let arms = |e: &Engine| -> Vec<(String, ArmModel, f64)> { e.arms.iter().map(|a| (a.name.clone(), a.model.clone(), a.weight)).collect() };
        self.champions == other.champions && names(self) == names(other) && self.correlation == other.correlation && arms(self) == arms(other)
    }

    /// This generation's number (1 at start-up, +1 at every swap).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The registry's change-log sequence when this generation was built (the same on every
    /// replica serving the same registry).
    pub fn registry_sequence(&self) -> u64 {
        self.registry_sequence
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The registry's store this generation was read from.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// `(slot, model)` of every served model: champions by slot, then models pinned by arms.
    pub fn served(&self) -> Vec<(String, &Served)> {
        let mut out: Vec<(String, &Served)> = self.champions.iter().map(|(slot, r)| (slot.clone(), self.models[r].as_ref())).collect();
        for arm in &self.arms {
            if let ArmModel::Pinned(r) = &arm.model
                && !out.iter().any(|(_, s)| s.reference == *r)
            {
                out.push((format!("arm {}", arm.name), self.models[r].as_ref()));
            }
        }
        out
    }

    /// `asset → name@vN` of the volatility champions.
    pub fn models(&self) -> BTreeMap<String, String> {
        self.champions
            .iter()
            .filter_map(|(slot, r)| slot.strip_suffix("/volatility").map(|asset| (asset.to_string(), r.clone())))
            .collect()
    }

    /// The reactive arm.
    pub fn reactive_arm(&self) -> String {
        self.reactive.to_string()
    }

    /// The arms with their weights.
    pub fn arms(&self) -> impl Iterator<Item = (&str, f64)> {
        self.arms.iter().map(|a| (a.name.as_str(), a.weight))
    }

    /// The `model:champion` arm, whether or not the split has it (for `Forecast`).
    pub fn champion_arm(&self) -> ServeArm {
        let arm = Arm { base: BaseCalibrator::Registered { model: "champion".into() }, apc: Default::default(), policy: Default::default(), implied: None, regime: None };
        ServeArm { name: arm.to_string(), arm, model: ArmModel::Champion, weight: 0.0 }
    }

    /// The split as configured.
    pub fn split(&self) -> &Split {
        &self.config.split
    }

    fn champion(&self, asset: &str, task: &str) -> Option<&Arc<Served>> {
        self.champions.get(&format!("{asset}/{task}")).and_then(|r| self.models.get(r))
    }

    fn run_cached(served: &Arc<Served>, series: &Series, cache: &ForecastCache) -> Result<Arc<DailyRun>, String> {
        cached(&cache.runs, (served.reference.clone(), series.fingerprint), || served.run(series).map_err(ServeError::Internal)).map_err(|e| e.to_string())
    }

    /// One asset's forecast and rates under `arm` (cached per generation, arm and history).
    /// Errors name `field`, where the history came from.
    pub fn forecast(&self, asset: &str, market: &MarketInput, arm: &ServeArm, cache: &ForecastCache) -> Result<Arc<AssetForecast>, ServeError> {
        let key = (self.generation, arm.name.clone(), asset.to_string(), market.series.fingerprint);
        cached(&cache.forecasts, key, || self.forecast_uncached(asset, &market.series, &market.field, arm, cache))
    }

    fn forecast_uncached(&self, asset: &str, series: &Series, field: &str, arm: &ServeArm, cache: &ForecastCache) -> Result<AssetForecast, ServeError> {
        if series.len() < MIN_HISTORY {
            return Err(invalid(field, format!("needs at least {MIN_HISTORY} days of `{asset}`, got {}", series.len())));
        }
        let params = CalibrationParams::new(self.config.confidence, 1, series.periods_per_year).map_err(|e| ServeError::Internal(e.to_string()))?;
        let last_rate = |rates: Vec<Option<foresight_core::calibrate::SideRates>>| rates.last().copied().flatten().map(|r| r.long.max(r.short));
        let reactive = self.reactive.margin_rates(&series.closes, &params).map_err(|e| invalid(field, e.to_string()))?;
        let reactive_rate = last_rate(reactive).ok_or_else(|| invalid(field, format!("too short for the reactive arm {}", self.reactive)))?;
        let returns: Vec<f64> = series.returns.iter().skip(1).map(|r| r.unwrap_or(0.0)).collect();
        let ewma = Ewma::new(Ewma::RISKMETRICS_LAMBDA).map_err(|e| ServeError::Internal(e.to_string()))?.variance_series(&returns);
        let reactive_sigma = ewma.last().copied().flatten().unwrap_or(0.0).sqrt();

        let regime = self.champion(asset, "regime").and_then(|served| {
            let run = Self::run_cached(served, series, cache).ok()?;
            let probabilities: Vec<(usize, f64)> =
                served.card.horizons.iter().filter_map(|h| run.last(&format!("p_high_regime_h{h}")).map(|p| (*h, p))).collect();
            // A run without a complete last day says nothing about the regime: left out.
            (!probabilities.is_empty()).then(|| (served.reference.clone(), probabilities))
        });
        let mut forecast = AssetForecast {
            model: None,
            variance: Vec::new(),
            regime,
            forward_rate: Err(Fallback::NoModel),
            reactive_rate,
            reactive_sigma,
            as_of: series.dates.last().cloned().unwrap_or_default(),
            last_close: series.closes.last().copied().unwrap_or(f64::NAN),
            last_inputs: Vec::new(),
        };
        let served = match &arm.model {
            ArmModel::Reactive => {
                let rates = arm.arm.margin_rates(&series.closes, &params).map_err(|e| invalid(field, e.to_string()))?;
                forecast.forward_rate = last_rate(rates).ok_or(Fallback::ForecastFailed { detail: format!("history too short for {}", arm.name) });
                return Ok(forecast);
            }
            ArmModel::Champion => self.champion(asset, "volatility"),
            ArmModel::Pinned(r) => self.models.get(r).filter(|s| s.card.asset == asset),
        };
        let Some(served) = served else { return Ok(forecast) };
        forecast.model = Some(served.reference.clone());
        let run = match Self::run_cached(served, series, cache) {
            Ok(run) => run,
            Err(detail) => {
                forecast.forward_rate = Err(Fallback::ForecastFailed { detail });
                return Ok(forecast);
            }
        };
        forecast.variance = served
            .card
            .horizons
            .iter()
            .filter_map(|h| run.last(&format!("variance_h{h}")).filter(|v| *v > 0.0).map(|v| (*h, v)))
            .collect();
        let card = &served.card;
        let columns = card.onnx.input_columns.len().max(1);
        forecast.last_inputs = run
            .last_row
            .iter()
            .flatten()
            .enumerate()
            .filter(|(_, v)| !v.is_nan()) // a NaN exogenous input is the model's own fallback
            .filter_map(|(i, v)| card.onnx.input_ranges.get(i % columns).map(|r| (card.onnx.input_columns[i % columns].clone(), *v, (r[0], r[1]))))
            .collect();
        forecast.forward_rate = Self::model_rate(served, &run, series, &arm.arm, &params);
        Ok(forecast)
    }

    /// The arm's FHS rate for the last day from a model's forecasts, with its APC options.
    fn model_rate(served: &Served, run: &DailyRun, series: &Series, arm: &Arm, params: &CalibrationParams) -> Result<f64, Fallback> {
        if run.last_row.is_none() {
            return Err(Fallback::ForecastFailed { detail: "the last day's inputs are incomplete".into() });
        }
        // The backtest's own policy code, on the model's outputs by horizon: the same rate.
        if let Some(h) = arm.policy.horizons(params.horizon()).into_iter().find(|h| !run.outputs.contains_key(&format!("variance_h{h}"))) {
            return Err(Fallback::ForecastFailed { detail: format!("{} has no variance_h{h} (arm {arm})", served.reference) });
        }
        let failed = |e: foresight_core::CoreError| Fallback::ForecastFailed { detail: e.to_string() };
        let rates = arm
            .forward_rates(
                &series.returns,
                |h| run.outputs.get(&format!("variance_h{h}")).map(Vec::as_slice),
                ForwardInputs { implied_vol: Some(&series.implied_vol_percent), stress: None },
                params,
            )
            .map_err(failed)?;
        let rates = arm.with_apc(&rates, &series.closes, params).map_err(failed)?;
        rates
            .last()
            .copied()
            .flatten()
            .map(|r| r.long.max(r.short))
            .filter(|r| r.is_finite() && *r > 0.0 && *r < 1.0)
            .ok_or_else(|| Fallback::ForecastFailed { detail: format!("needs {FHS_MIN_RESIDUALS} days of forecasts before a rate") })
    }

    /// Calibration inputs by asset from checked quotes: a quote without inline history takes
    /// the asset's days (and, where left unset, its last price, implied vol and depth) from
    /// `state`.
    pub fn resolve_markets(quotes: &[MarketQuote], state: Option<&MarketState>) -> Result<HashMap<String, MarketInput>, ServeError> {
        let mut out = HashMap::with_capacity(quotes.len());
        for q in quotes {
            let field = &q.field;
            let mut input = match &q.history {
                None => state.and_then(|s| s.input(&q.asset)).ok_or_else(|| {
                    invalid(format!("{field}.history"), format!("empty, and the service holds no market data for `{}` (publish it or pass history inline)", q.asset))
                })?,
                Some(series) => MarketInput {
                    spot: 0.0,
                    implied_vol_fraction: 0.0,
                    depth_notional: None,
                    age_secs: 0.0,
                    series: series.clone(),
                    field: format!("{field}.history"),
                },
            };
            if q.spot > 0.0 {
                input.spot = q.spot;
            }
            if q.implied_vol_fraction > 0.0 {
                input.implied_vol_fraction = q.implied_vol_fraction;
            }
            if q.depth_notional.is_some() {
                input.depth_notional = q.depth_notional;
            }
            if let Some(age) = q.age_secs {
                input.age_secs = age;
            }
            if input.spot.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
                return Err(invalid(format!("{field}.spot"), "must be > 0 (no published price to use instead)"));
            }
            out.insert(q.asset.clone(), input);
        }
        Ok(out)
    }

    /// The arm an account is assigned to.
    pub fn assigned_arm(&self, account_id: &str) -> &ServeArm {
        let name = assign(account_id, &self.weights).unwrap_or(&self.arms[0].name);
        self.arms.iter().find(|a| a.name == name).unwrap_or(&self.arms[0])
    }

    /// Calibrates one account: markets from the request, then `shared` (a batch's), then the
    /// market `state`; the account's arm posts, and in shadow mode every arm is computed.
    pub fn calibrate(
        &self,
        request: &AccountRequest,
        shared: &HashMap<String, MarketInput>,
        state: Option<&MarketState>,
        cache: &ForecastCache,
    ) -> Result<Calibration, ServeError> {
        let own = Self::resolve_markets(&request.markets, state)?;
        // The account's own markets first, then the batch's, then the published state.
        let market_of = |asset: &str| own.get(asset).or_else(|| shared.get(asset)).cloned().or_else(|| state.and_then(|s| s.input(asset)));
        let mut markets: BTreeMap<String, MarketInput> = BTreeMap::new();
        for (i, p) in request.positions.iter().enumerate() {
            if markets.contains_key(&p.underlying) {
                continue;
            }
            let market = market_of(&p.underlying)
                .ok_or_else(|| invalid(format!("positions[{i}].underlying"), format!("no market given or published for `{}`", p.underlying)))?;
            markets.insert(p.underlying.clone(), market);
        }
        // Collateral in a non-cash asset needs that asset's market, like a position.
        let mut collateral = Vec::with_capacity(request.collateral.len());
        for c in &request.collateral {
            let market = if self.config.collateral.cash.contains(&c.asset) {
                None
            } else {
                let market = market_of(&c.asset)
                    .ok_or_else(|| invalid(format!("{}.asset", c.field), format!("`{}` is not cash and has no market given or published", c.asset)))?;
                Some(market)
            };
            collateral.push((c, market));
        }
        let account = Account {
            positions: &request.positions,
            markets: &markets,
            collateral: &collateral,
            previous_im: request.previous_initial_margin,
            explain: request.explain,
        };
        let assigned = self.assigned_arm(&request.account_id);
        let posted = self.calibrate_arm(assigned, &account, cache)?;
        let mut shadow = Vec::new();
        if self.config.split.shadow {
            // The scenario grids are returned for the posted arm only: not worked out for the others.
            let account = Account { explain: false, ..account };
            for arm in self.arms.iter().filter(|a| a.name != assigned.name) {
                shadow.push(self.calibrate_arm(arm, &account, cache)?);
            }
        }
        Ok(Calibration { posted, shadow, generation: self.generation })
    }

    fn calibrate_arm(&self, arm: &ServeArm, account: &Account<'_>, cache: &ForecastCache) -> Result<ArmMargin, ServeError> {
        let mut forecasts = BTreeMap::new();
        let mut inputs = BTreeMap::new();
        for (asset, m) in account.markets {
            let f = self.forecast(asset, m, arm, cache)?;
            let named: Vec<(&str, f64, (f64, f64))> = f.last_inputs.iter().map(|(n, v, r)| (n.as_str(), *v, *r)).collect();
            let forward_rate = match (&f.forward_rate, check_inputs(m.age_secs, Some(f.last_close), m.spot, f.reactive_sigma, &named, &self.config.limits)) {
                (Ok(_), Some(reason)) => Err(reason),
                (rate, _) => rate.clone(),
            };
            inputs.insert(
                asset.clone(),
                UnderlyingInputs {
                    market: UnderlyingMarket {
                        spot: m.spot,
                        implied_vol: m.implied_vol_fraction,
                        margin_rate: f.reactive_rate,
                        daily_vol: f.reactive_sigma,
                        depth_notional: m.depth_notional,
                    },
                    reactive_rate: f.reactive_rate,
                    forward_rate,
                    forecast_sigma: f.variance.iter().map(|(h, v)| (*h, v.sqrt())).collect(),
                    regime_probability: f.regime.as_ref().map(|(_, p)| p.clone()).unwrap_or_default(),
                    reactive_sigma: f.reactive_sigma,
                },
            );
            forecasts.insert(asset.clone(), f);
        }
        let correlation = self.correlation.as_ref().map(|(a, m)| (a.as_slice(), m.as_slice()));
        let margin = calibrate_account(account.positions, inputs, correlation, &self.config.scenario, &self.config.rails, account.previous_im)
            .map_err(|e| invalid("positions", e.to_string()))?;
        if !(margin.posted.initial_margin.is_finite() && margin.posted.maintenance_margin.is_finite() && margin.posted.multiplier.is_finite()) {
            return Err(ServeError::Internal(format!("arm {}: a non-finite margin was computed; refusing to post it", arm.name)));
        }
        let collateral = account
            .collateral
            .iter()
            .map(|(c, market)| self.collateral_value(c, market.as_ref(), arm, cache))
            .collect::<Result<Vec<_>, _>>()?;
        let mut grids = BTreeMap::new();
        if account.explain {
            for (asset, i) in &margin.inputs {
                let positions = account.positions.iter().filter(|p| p.underlying == *asset);
                let at = |rate: f64| UnderlyingMarket { margin_rate: rate, ..i.market };
                let forward = scenario_losses(positions.clone(), &at(*i.forward_rate.as_ref().unwrap_or(&i.reactive_rate)), &self.config.scenario);
                let reactive = scenario_losses(positions, &at(i.reactive_rate), &self.config.scenario);
                grids.insert(asset.clone(), ScenarioGrids { forward, reactive });
            }
        }
        Ok(ArmMargin { arm: arm.name.clone(), margin, collateral, forecasts, grids })
    }

    /// A collateral balance at its price less a haircut from the arm's volatility forecast of
    /// the asset (the next day's; the reactive σ where the arm has no forecast).
    fn collateral_value(&self, c: &Collateral, market: Option<&MarketInput>, arm: &ServeArm, cache: &ForecastCache) -> Result<CollateralValue, ServeError> {
        let config = &self.config.collateral;
        let Some(m) = market else {
            return Ok(CollateralValue { asset: c.asset.clone(), quantity: c.quantity, price: 1.0, haircut: 0.0, value: c.quantity });
        };
        let f = self.forecast(&c.asset, m, arm, cache)?;
        let sigma = f.variance.iter().find(|(h, _)| *h == 1).map_or(f.reactive_sigma, |(_, v)| v.sqrt());
        let z = CalibrationParams::new(self.config.confidence, 1, m.series.periods_per_year).map_err(|e| ServeError::Internal(e.to_string()))?.z();
        let haircut = collateral_haircut(sigma, config.mpor_days, z, config.cap);
        let value = c.quantity * m.spot * (1.0 - haircut);
        if !value.is_finite() {
            return Err(invalid(&c.field, format!("{} {} at {} is too large a value to count", c.quantity, c.asset, m.spot)));
        }
        Ok(CollateralValue { asset: c.asset.clone(), quantity: c.quantity, price: m.spot, haircut, value })
    }
}

/// Runs the scenario grid and rails once on a unit position, so settings that cannot work
/// (an even number of price steps, a negative cap...) stop the start-up or the reload with
/// their reason instead of failing every calibration.
fn check_settings(config: &EngineConfig) -> Result<(), ServeError> {
    let market = UnderlyingMarket { spot: 100.0, implied_vol: 0.5, margin_rate: 0.05, daily_vol: 0.02, depth_notional: Some(1e6) };
    let inputs = BTreeMap::from([(
        "X".to_string(),
        UnderlyingInputs {
            market,
            reactive_rate: 0.05,
            forward_rate: Ok(0.06),
            forecast_sigma: vec![],
            regime_probability: vec![],
            reactive_sigma: 0.02,
        },
    )]);
    let positions = [Position { underlying: "X".into(), quantity: 1.0, instrument: Instrument::Linear }];
    let margin = calibrate_account(&positions, inputs, None, &config.scenario, &config.rails, Some(5.0))
        .map_err(|e| invalid("[scenario] / [rails] settings", e.to_string()))?;
    if !(margin.posted.initial_margin.is_finite() && margin.posted.initial_margin > 0.0) {
        return Err(invalid("[rails] settings", format!("a unit position would get initial margin {}", margin.posted.initial_margin)));
    }
    if !(config.confidence > 0.5 && config.confidence < 1.0) {
        return Err(invalid("confidence", format!("must be in (0.5, 1), got {}", config.confidence)));
    }
    Ok(())
}

/// The correlation artifact's assets and matrix.
fn parse_correlation(value: &serde_json::Value) -> Result<(Vec<String>, Vec<Vec<f64>>), ServeError> {
    let bad = |what: &str, message: String| ServeError::setup(format!("correlation artifact: {what}"), message);
    let assets: Vec<String> = serde_json::from_value(value.get("assets").cloned().unwrap_or_default()).map_err(|e| bad("assets", e.to_string()))?;
    let matrix: Vec<Vec<f64>> = serde_json::from_value(value.get("matrix").cloned().unwrap_or_default()).map_err(|e| bad("matrix", e.to_string()))?;
    if matrix.len() != assets.len() || matrix.iter().any(|row| row.len() != assets.len() || row.iter().any(|v| !v.is_finite())) {
        return Err(bad("matrix", format!("a finite {0}×{0} matrix is needed for {0} assets", assets.len())));
    }
    Ok((assets, matrix))
}
