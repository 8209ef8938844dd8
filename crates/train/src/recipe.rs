//! Training recipes (`training/<name>.toml`): fit each listed forecaster on a training window,
//! score it walk-forward on the days after that window, export it to ONNX, prove the export
//! equals the trained model on every hold-out row through ONNX Runtime, and write its card.
//!
//! The exported parameters are those fitted on `[first day, train_end]`. The evaluation starts
//! the day after: at each origin the model forecasts from data up to that close only, and is
//! re-fitted every `refit_every` days on the expanding window (or never, when `refit_every` is
//! absent), so the evaluation never sees a day the forecast is scored on.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use foresight_core::calibrate::ModelName;
use foresight_core::features::{FEATURE_SPEC_VERSION, HarComponents, har_components, regime_features};
use foresight_core::forecast::{brier, calibration_table, mincer_zarnowitz, qlike};
use foresight_registry::card::{CARD_FORMAT, DataRef, Evaluation, OnnxSignature, TrainingWindow};
use foresight_registry::inputs::ModelInput;
use foresight_registry::runtime::LoadedModel;
use foresight_registry::verify::sha256_hex;
use foresight_registry::{GoldenRow, HorizonMetrics, ModelCard, Task};
use serde::Deserialize;
use serde_json::json;

use crate::data::{ExogenousSource, Frequency, load_ohlcv};
use crate::error::{DataError, Result};
use crate::evaluate::{DailyHistory, Forecaster, WalkForward, contiguous_percent_returns, evaluate, forecast_variances};
use crate::fit::{Epoch, FittedHar, FittedHarX, GarchParams, HarParams, HarXParams, NeuralForecast, NeuralParams, RegimeParams, transition_frequencies, window_row};
use foresight_core::regime::stressed_within;
use crate::onnx::proto::StringStringEntryProto;
use crate::onnx::{OPSET, OnnxModel, export_garch, export_har, export_har_x, export_neural, export_regime};

/// Golden rows stored in each card.
pub const GOLDEN_ROWS: usize = 8;
/// Relative tolerance of the ONNX parity check on hold-out rows.
pub const PARITY_TOLERANCE: f64 = 1e-5;

/// A training recipe, as written in `training/<name>.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Asset the models forecast (`BTC`, `SPX`): the registry slot.
    pub asset: String,
    /// Prefix of the registered model names: `<name>-<model>`, e.g. `btc-log-har`.
    pub name: String,
    /// OHLCV file: intraday bars give realized variance, daily bars a range estimator.
    pub data: PathBuf,
    /// Models to train: `garch`, `garch-t`, `gjr`, `gjr-t`, `har`, `log-har`, `har-x` (variance
    /// forecasters), `regime` (probability of the stressed regime) and `neural` (both).
    pub models: Vec<String>,
    /// Forecast horizons in days.
    #[serde(default = "default_horizons")]
    pub horizons: Vec<usize>,
    /// Horizon promotion compares at (must be one of `horizons`).
    #[serde(default = "default_primary")]
    pub primary_horizon: usize,
    /// Last day of the training window (inclusive); evaluation starts the day after.
    pub train_end: NaiveDate,
    /// Re-fit every this many days during evaluation (expanding window); absent: frozen.
    #[serde(default)]
    pub refit_every: Option<usize>,
    /// The exogenous input of the `har-x` model, `FILE:iv|sum|last` (e.g.
    /// `data/btc_dvol_1d.csv:iv` for implied volatility).
    #[serde(default)]
    pub exogenous: Option<String>,
    /// Days of features per input of the `neural` model.
    #[serde(default = "default_neural_window")]
    pub neural_window: usize,
    /// Epoch limit of the `neural` model (training stops earlier on the validation window).
    #[serde(default = "default_neural_epochs")]
    pub neural_max_epochs: usize,
    /// Seed of the `neural` model's weight initialisation.
    #[serde(default = "default_seed")]
    pub seed: i64,
    /// Regimes of the `regime` model and of the `neural` model's regime head (2 or 3).
    #[serde(default = "default_regime_states")]
    pub regime_states: usize,
    /// Registry folder.
    #[serde(default = "default_registry")]
    pub registry: PathBuf,
}

fn default_horizons() -> Vec<usize> {
    vec![1, 5, 22]
}
fn default_primary() -> usize {
    5
}
fn default_neural_window() -> usize {
    10
}
fn default_neural_epochs() -> usize {
    400
}
fn default_seed() -> i64 {
    42
}
fn default_regime_states() -> usize {
    3
}
fn default_registry() -> PathBuf {
    PathBuf::from("models")
}

impl Recipe {
    /// Reads and checks a recipe file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| DataError::Io { file: path.to_path_buf(), source })?;
        let recipe: Recipe = toml::from_str(&text).map_err(|e| DataError::Recipe { file: path.to_path_buf(), message: e.to_string() })?;
        recipe.check().map_err(|message| DataError::Recipe { file: path.to_path_buf(), message })?;
        Ok(recipe)
    }

    /// Checks the keys that TOML types cannot.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.asset.trim().is_empty() || !self.asset.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("asset `{}`: letters and digits only (e.g. BTC)", self.asset));
        }
        if !foresight_registry::card::valid_name(&self.name) {
            return Err(format!("name `{}`: lowercase letters, digits and `-` (e.g. btc)", self.name));
        }
        if self.models.is_empty() {
            return Err("models: list at least one forecaster".into());
        }
        for m in &self.models {
            if ModelName::parse(m).is_none() && !["regime", "neural", "har-x"].contains(&m.as_str()) {
                return Err(format!("models: unknown forecaster `{m}` (garch, garch-t, gjr, gjr-t, har, log-har, har-x, regime, neural)"));
            }
            if m == "har-x" && self.exogenous.is_none() {
                return Err("models: `har-x` needs `exogenous = \"FILE:iv|sum|last\"`".into());
            }
        }
        if self.neural_window == 0 || self.neural_max_epochs == 0 {
            return Err("neural_window and neural_max_epochs: must be ≥ 1".into());
        }
        if !(2..=3).contains(&self.regime_states) {
            return Err(format!("regime_states: 2 or 3, not {}", self.regime_states));
        }
        if self.horizons.is_empty() || self.horizons.contains(&0) {
            return Err("horizons: give days ≥ 1".into());
        }
        if !self.horizons.contains(&self.primary_horizon) {
            return Err(format!("primary_horizon {} is not one of horizons {:?}", self.primary_horizon, self.horizons));
        }
        if self.refit_every == Some(0) {
            return Err("refit_every: must be ≥ 1 (leave it out for a frozen model)".into());
        }
        Ok(())
    }
}

/// Facts about the run that the recipe does not hold.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// RFC 3339 time of the run.
    pub created_at: String,
    /// Git commit of the checkout, when known.
    pub git_commit: Option<String>,
}

/// A trained, exported and parity-checked model, ready for [`foresight_registry::Registry::publish`].
#[derive(Debug, Clone, PartialEq)]
pub struct TrainedModel {
    /// Its card (version and sha256 are filled in by the registry).
    pub card: ModelCard,
    /// The `.onnx` bytes.
    pub onnx: Vec<u8>,
    /// Hold-out rows checked through ONNX Runtime.
    pub parity_rows: usize,
    /// Largest relative difference between ONNX Runtime and the trained model on them.
    pub parity_max_relative_error: f64,
}

/// An exported model with its hold-out rows (inputs and the trained model's outputs).
struct Export {
    onnx: OnnxModel,
    params: serde_json::Value,
    holdout: Vec<GoldenRow>,
}

/// Hears what training is doing: each step, and each epoch of a neural model.
pub trait Progress {
    /// A step starts.
    fn step(&mut self, message: &str);
    /// A neural model finished an epoch.
    fn epoch(&mut self, model: &str, epoch: &Epoch) {
        let _ = (model, epoch);
    }
}

/// Any `FnMut(&str)` hears the steps (and not the epochs).
impl<F: FnMut(&str)> Progress for F {
    fn step(&mut self, message: &str) {
        self(message)
    }
}

/// Trains every model of `recipe`; `progress` hears each step and epoch.
pub fn train(recipe: &Recipe, info: &RunInfo, progress: &mut dyn Progress) -> Result<Vec<TrainedModel>> {
    recipe.check().map_err(|message| DataError::Recipe { file: "recipe".into(), message })?;
    progress.step(&format!("loading {}", recipe.data.display()));
    let bytes = std::fs::read(&recipe.data).map_err(|source| DataError::Io { file: recipe.data.clone(), source })?;
    let data_ref = DataRef { path: recipe.data.display().to_string(), sha256: sha256_hex(&bytes) };
    let bars = load_ohlcv(&recipe.data)?;
    let bars_frequency = bars.to_daily().frequency;
    let history = DailyHistory::from_bars(&bars)?;
    let t_end = history.dates.iter().rposition(|d| *d <= recipe.train_end).ok_or_else(|| DataError::Recipe {
        file: recipe.data.clone(),
        message: format!("train_end {} is before the first day {}", recipe.train_end, history.dates[0]),
    })?;
    let max_h = recipe.horizons.iter().copied().max().unwrap_or(1);
    let n = history.dates.len();
    if t_end < 250 || t_end + max_h + 30 >= n {
        return Err(DataError::Recipe {
            file: recipe.data.clone(),
            message: format!(
                "train_end {} leaves {} training days and {} later days; need ≥ 250 and ≥ {} (30 origins past the longest horizon)",
                history.dates[t_end],
                t_end + 1,
                n - t_end - 1,
                max_h + 30
            ),
        });
    }
    let mut out = Vec::new();
    for name in &recipe.models {
        let full_name = format!("{}-{name}", recipe.name);
        progress.step(&format!("{full_name}: fitting on {}..{}", history.dates[0], history.dates[t_end]));
        let metadata = vec![
            ("foresight.name".to_string(), full_name.clone()),
            ("foresight.asset".into(), recipe.asset.clone()),
            ("foresight.training_window".into(), format!("{}..{}", history.dates[0], history.dates[t_end])),
            ("foresight.data_sha256".into(), data_ref.sha256.clone()),
            ("foresight.created_at".into(), info.created_at.clone()),
            ("foresight.git_commit".into(), info.git_commit.clone().unwrap_or_default()),
        ];
        let built = match (ModelName::parse(name), name.as_str()) {
            (Some(model), _) => build_volatility(model, recipe, &history, t_end, &metadata, &mut |s: &str| progress.step(&format!("{full_name}: {s}")))?,
            (None, "neural") => build_neural(recipe, &history, t_end, &metadata, &full_name, progress)?,
            (None, "har-x") => build_har_x(recipe, &bars_frequency, &history, t_end, &metadata)?,
            _ => build_regime(recipe, &history, t_end, &metadata)?,
        };
        progress.step(&format!("{full_name}: ONNX parity on {} hold-out rows", built.export.holdout.len()));
        let export = built.export;
        let mut data = vec![data_ref.clone()];
        data.extend(built.extra_data.iter().cloned());
        let mut card = ModelCard {
            format: CARD_FORMAT.into(),
            name: full_name.clone(),
            version: 0,
            asset: recipe.asset.clone(),
            task: built.task,
            model_type: built.model_type,
            description: built.description,
            feature_spec_version: FEATURE_SPEC_VERSION.into(),
            created_at: info.created_at.clone(),
            git_commit: info.git_commit.clone(),
            foresight_version: env!("CARGO_PKG_VERSION").into(),
            onnx: OnnxSignature {
                file: "model.onnx".into(),
                sha256: String::new(),
                opset: OPSET,
                input: export.onnx.input.clone(),
                input_shape: export.onnx.input_shape.clone(),
                input_columns: export.onnx.input_columns.clone(),
                outputs: export.onnx.outputs.clone(),
                input_ranges: Vec::new(),
            },
            horizons: recipe.horizons.clone(),
            training: TrainingWindow { data, start: history.dates[0], end: history.dates[t_end], days: t_end + 1 },
            evaluation: Evaluation {
                start: history.dates[t_end + 1],
                end: history.dates[n - 1],
                refit_every: built.refit_every,
                target: built.target,
                primary_horizon: recipe.primary_horizon,
                metrics: built.metrics,
            },
            params: export.params,
            golden: pick_golden(&export.holdout),
            details: serde_json::Value::Null,
        };
        card.onnx.input_ranges = input_ranges(&card, &history, t_end, &built.exogenous)?;
        // The evaluation is known only now: add it to the graph's metadata before serialising.
        let mut onnx_model = export.onnx;
        let summary: Vec<serde_json::Value> = card
            .evaluation
            .metrics
            .iter()
            .map(|m| json!({ "horizon": m.horizon, "n": m.n, m.score_name.clone(): m.score, m.baseline.clone(): m.baseline_score }))
            .collect();
        for (key, value) in [
            ("foresight.evaluation_window", format!("{}..{}", card.evaluation.start, card.evaluation.end)),
            ("foresight.metrics", serde_json::Value::Array(summary).to_string()),
        ] {
            onnx_model.proto.metadata_props.push(StringStringEntryProto { key: key.into(), value });
        }
        let onnx = onnx_model.to_bytes();
        let max_err = parity(&card, &onnx, &export.holdout)?;
        let mut details = json!({
            "rv_source": history.rv_source,
            "onnx_parity": { "holdout_rows": export.holdout.len(), "max_relative_error": max_err, "tolerance": PARITY_TOLERANCE },
        });
        if let (Some(d), serde_json::Value::Object(extra)) = (details.as_object_mut(), built.details) {
            d.extend(extra);
        }
        card.details = details;
        out.push(TrainedModel { card, onnx, parity_rows: export.holdout.len(), parity_max_relative_error: max_err });
    }
    Ok(out)
}

/// What a model family contributes to its card.
struct Built {
    task: Task,
    model_type: String,
    description: String,
    export: Export,
    metrics: Vec<HorizonMetrics>,
    refit_every: Option<usize>,
    target: String,
    details: serde_json::Value,
    /// Input files beside the recipe's data (the exogenous input).
    extra_data: Vec<DataRef>,
    /// The exogenous regressor per day, for models that take one.
    exogenous: Vec<Option<f64>>,
}

/// `[min, max]` per input column over the training window's input rows.
fn input_ranges(card: &ModelCard, history: &DailyHistory, t_end: usize, exogenous: &[Option<f64>]) -> Result<Vec<[f64; 2]>> {
    let rows = ModelInput::from_card(card)?.rows(&history.rv, &history.returns, exogenous);
    let columns = card.onnx.input_columns.len().max(1);
    let mut ranges = vec![[f64::INFINITY, f64::NEG_INFINITY]; columns];
    for row in rows[..=t_end.min(rows.len().saturating_sub(1))].iter().flatten() {
        for (i, v) in row.iter().enumerate().filter(|(_, v)| v.is_finite()) {
            let r = &mut ranges[i % columns];
            r[0] = r[0].min(*v);
            r[1] = r[1].max(*v);
        }
    }
    // A column never seen (no finite value) leaves the model without ranges rather than with a gap.
    Ok(if ranges.iter().all(|r| r[0] <= r[1]) { ranges } else { Vec::new() })
}

/// A GARCH-family or HAR forecaster: fitted at `t_end`, scored walk-forward against EWMA.
fn build_volatility(
    model: ModelName,
    recipe: &Recipe,
    history: &DailyHistory,
    t_end: usize,
    metadata: &[(String, String)],
    progress: &mut dyn FnMut(&str),
) -> Result<Built> {
    let export = match model.garch_spec() {
        Some(_) => export_garch_model(model, history, t_end, &recipe.horizons, metadata)?,
        None => export_har_model(model, history, t_end, &recipe.horizons, metadata)?,
    };
    progress(&format!(
        "walk-forward evaluation from {} (refit {})",
        history.dates[t_end + 1],
        recipe.refit_every.map_or("never".into(), |r| format!("every {r} days"))
    ));
    let walk = WalkForward { train_days: t_end, refit_every: recipe.refit_every.unwrap_or(history.dates.len()), horizons: recipe.horizons.clone() };
    let scores = evaluate(history, &[Forecaster::Ewma, Forecaster::Model(model)], &walk)?;
    let metrics = recipe
        .horizons
        .iter()
        .map(|&h| {
            let of = |m: &str| scores.iter().find(|s| s.horizon == h && s.model == m).expect("evaluate scores every model and horizon");
            let (mine, ewma) = (of(model.as_str()), of("ewma"));
            HorizonMetrics {
                horizon: h,
                n: mine.n,
                score: mine.qlike,
                score_name: "qlike".into(),
                baseline_score: ewma.qlike,
                baseline: "ewma".into(),
                extra: [
                    ("mse_pct2".to_string(), json!(mine.mse)),
                    ("mincer_zarnowitz".into(), json!(mine.mincer_zarnowitz)),
                    ("ewma_mse_pct2".into(), json!(ewma.mse)),
                ]
                .into_iter()
                .collect(),
            }
        })
        .collect();
    Ok(Built {
        task: Task::Volatility,
        model_type: model.as_str().into(),
        description: describe(model, history.rv_source),
        export,
        metrics,
        refit_every: recipe.refit_every,
        target: target_name(history.rv_source),
        details: serde_json::Value::Null,
        extra_data: Vec::new(),
        exogenous: Vec::new(),
    })
}

/// HAR-X: log-HAR plus the recipe's exogenous input, with the plain log-HAR of the same window
/// as its explicit fallback where the input is missing; fitted at `t_end`, frozen, scored
/// against EWMA with log-HAR beside it.
fn build_har_x(recipe: &Recipe, frequency: &Frequency, history: &DailyHistory, t_end: usize, metadata: &[(String, String)]) -> Result<Built> {
    let spec = recipe.exogenous.as_deref().expect("checked by Recipe::check");
    let source = ExogenousSource::parse(spec, frequency.periods_per_year()).map_err(|message| DataError::Recipe { file: "recipe".into(), message })?;
    let x = source.load(&history.dates)?;
    let fits: Vec<FittedHarX> = recipe.horizons.iter().map(|&h| HarXParams::new(h).fit(&history.rv, &x, t_end, 250)).collect::<Result<_>>()?;
    let fallback: Vec<FittedHar> = recipe.horizons.iter().map(|&h| HarParams::log(h).fit(&history.rv, t_end)).collect::<Result<_>>()?;
    let mut meta = metadata.to_vec();
    meta.push(("foresight.exogenous".into(), spec.to_string()));
    let onnx = export_har_x(&fits, &fallback, &meta)?;
    let components = har_components(&history.rv);
    let predict = |t: usize| -> Option<Vec<f64>> {
        let c = components[t]?;
        fits.iter().zip(&fallback).map(|(fx, f)| fx.predict(&c, x[t]).or_else(|| f.predict(&c))).collect()
    };
    let mut holdout = Vec::new();
    let mut fallback_days = 0;
    for t in t_end..history.dates.len() {
        let (Some(c), Some(v)) = (components[t], predict(t)) else { continue };
        fallback_days += x[t].is_none() as usize;
        holdout.push(GoldenRow { input: vec![c.daily, c.weekly, c.monthly, x[t].unwrap_or(f64::NAN)], outputs: variance_outputs(&recipe.horizons, &v) });
    }
    // One more row with the input removed: the card's golden rows always include the last row,
    // so anything that loads the model re-checks the fallback too.
    if let Some(last) = holdout.last().cloned() {
        let mut input = last.input.clone();
        input[3] = f64::NAN;
        let c = HarComponents { daily: input[0], weekly: input[1], monthly: input[2] };
        let v: Option<Vec<f64>> = fallback.iter().map(|f| f.predict(&c)).collect();
        if let Some(v) = v {
            holdout.push(GoldenRow { input, outputs: variance_outputs(&recipe.horizons, &v) });
        }
    }
    let frozen = WalkForward { train_days: t_end, refit_every: history.dates.len(), horizons: recipe.horizons.clone() };
    let ewma = forecast_variances(Forecaster::Ewma, history, &frozen)?;
    let mut metrics = Vec::new();
    for (k, &h) in recipe.horizons.iter().enumerate() {
        let rows: Vec<(f64, f64, f64, f64)> = (t_end..history.dates.len())
            .filter_map(|t| {
                let c = components[t]?;
                let with_x = fits[k].predict(&c, x[t]).or_else(|| fallback[k].predict(&c))?;
                Some((with_x, fallback[k].predict(&c)?, ewma[k][t]?, realized_target(&history.rv, t, h)?))
            })
            .collect();
        let col = |i: usize| -> Vec<f64> { rows.iter().map(|r| [r.0, r.1, r.2, r.3][i]).collect() };
        let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let realized = col(3);
        let (mine, har, ew) = (mean(qlike(&col(0), &realized)?), mean(qlike(&col(1), &realized)?), mean(qlike(&col(2), &realized)?));
        metrics.push(HorizonMetrics {
            horizon: h,
            n: rows.len(),
            score: mine,
            score_name: "qlike".into(),
            baseline_score: ew,
            baseline: "ewma".into(),
            extra: [
                ("log_har_frozen_qlike".to_string(), json!(har)),
                ("qlike_vs_log_har".into(), json!(mine / har - 1.0)),
                ("mincer_zarnowitz".into(), json!(mincer_zarnowitz(&col(0), &realized)?)),
            ]
            .into_iter()
            .collect(),
        });
    }
    let regression = |f: &FittedHarX| {
        let (b, [d, w, m, e]) = f.coefficients();
        json!({ "horizon": f.horizon(), "intercept": b, "beta_daily": d, "beta_weekly": w, "beta_monthly": m, "beta_exogenous": e,
                "residual_variance": f.residual_variance(), "nobs": f.nobs() })
    };
    let params = json!({
        "exogenous": { "file": source.file.display().to_string(), "transform": source.transform_name(), "periods_per_year": source.periods_per_year },
        "regressions": fits.iter().map(regression).collect::<Vec<_>>(),
        "fallback_log_har": fallback.iter().map(|f| { let (b, [d, w, m]) = f.coefficients(); json!({ "horizon": f.horizon(), "intercept": b, "beta_daily": d, "beta_weekly": w, "beta_monthly": m, "residual_variance": f.residual_variance() }) }).collect::<Vec<_>>(),
    });
    let known = x[..=t_end].iter().filter(|v| v.is_some()).count();
    let details = json!({
        "exogenous_coverage": { "training_days_with_input": known, "evaluation_fallback_days": fallback_days },
        "fallback": "rows whose exogenous input is NaN use the log-HAR fallback (IsNaN → Where in the graph)",
    });
    let bytes = std::fs::read(&source.file).map_err(|e| DataError::Io { file: source.file.clone(), source: e })?;
    Ok(Built {
        task: Task::Volatility,
        model_type: "har-x".into(),
        description: format!("Log-HAR + {} ({}), log-HAR where the input is missing; OLS through linfa", source.file.display(), source.transform_name()),
        export: Export { onnx, params, holdout },
        metrics,
        refit_every: None,
        target: target_name(history.rv_source),
        details,
        extra_data: vec![DataRef { path: source.file.display().to_string(), sha256: sha256_hex(&bytes) }],
        exogenous: x,
    })
}

/// Realized mean daily variance over `t+1..=t+h` (every day known and positive).
fn realized_target(rv: &[Option<f64>], t: usize, h: usize) -> Option<f64> {
    (t + h < rv.len()).then(|| rv[t + 1..=t + h].iter().try_fold(0.0, |s, v| v.filter(|v| *v > 0.0).map(|v| s + v))).flatten().map(|s| s / h as f64)
}

/// The neural forecaster: trained once on the training window (early-stopped on its last
/// fifth) and frozen; scored by QLIKE against EWMA, with frozen log-HAR's QLIKE and the regime
/// head's Brier score beside it.
fn build_neural(
    recipe: &Recipe,
    history: &DailyHistory,
    t_end: usize,
    metadata: &[(String, String)],
    name: &str,
    progress: &mut dyn Progress,
) -> Result<Built> {
    let features = regime_features(&history.rv, &history.returns);
    let regimes = RegimeParams::new(recipe.regime_states, &recipe.horizons).fit(&features, t_end)?;
    let labels = regimes.classify(&features);
    let fit = NeuralParams::new(&recipe.horizons)
        .window(recipe.neural_window)
        .max_epochs(recipe.neural_max_epochs)
        .seed(recipe.seed)
        .fit(&features, &history.rv, &labels, regimes.states(), t_end, &mut |e: &Epoch| progress.epoch(name, e))?;
    let onnx = export_neural(&fit, metadata)?;
    let origins: Vec<(usize, Vec<f64>)> = (t_end..features.len()).filter_map(|t| window_row(&features, t, fit.window()).map(|r| (t, r))).collect();
    let forecasts: Vec<NeuralForecast> = origins.iter().map(|(_, row)| fit.predict(row)).collect();
    let holdout: Vec<GoldenRow> = origins
        .iter()
        .zip(&forecasts)
        .map(|((_, row), f)| {
            let mut outputs = variance_outputs(&recipe.horizons, &f.variance);
            outputs.extend(recipe.horizons.iter().zip(&f.p_high_regime).map(|(h, p)| (format!("p_high_regime_h{h}"), *p)));
            GoldenRow { input: row.clone(), outputs }
        })
        .collect();
    // Baselines on the same origins: EWMA, and log-HAR fitted on the same window and frozen.
    let frozen = WalkForward { train_days: t_end, refit_every: history.dates.len(), horizons: recipe.horizons.clone() };
    let ewma = forecast_variances(Forecaster::Ewma, history, &frozen)?;
    let log_har = forecast_variances(Forecaster::Model(ModelName::LogHar), history, &frozen)?;
    let mut metrics = Vec::new();
    for (k, &h) in recipe.horizons.iter().enumerate() {
        let mut rows = Vec::new();
        for ((t, _), f) in origins.iter().zip(&forecasts) {
            if let (Some(rv), Some(e), Some(l)) = (realized_target(&history.rv, *t, h), ewma[k][*t], log_har[k][*t]) {
                rows.push((f.variance[k], e, l, rv, f.p_high_regime[k], stressed_within(&labels, *t, h, regimes.states())));
            }
        }
        let column = |i: usize| -> Vec<f64> { rows.iter().map(|r| [r.0, r.1, r.2, r.3][i]).collect() };
        let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let realized = column(3);
        let (mine, ewma_q, har_q) = (mean(qlike(&column(0), &realized)?), mean(qlike(&column(1), &realized)?), mean(qlike(&column(2), &realized)?));
        let (p, y): (Vec<f64>, Vec<bool>) = rows.iter().filter_map(|r| r.5.map(|y| (r.4, y))).unzip();
        let base = regimes.base_rates()[k];
        metrics.push(HorizonMetrics {
            horizon: h,
            n: rows.len(),
            score: mine,
            score_name: "qlike".into(),
            baseline_score: ewma_q,
            baseline: "ewma".into(),
            extra: [
                ("log_har_frozen_qlike".to_string(), json!(har_q)),
                ("qlike_vs_log_har".into(), json!(mine / har_q - 1.0)),
                ("mincer_zarnowitz".into(), json!(mincer_zarnowitz(&column(0), &realized)?)),
                ("regime_brier".into(), json!(brier(&p, &y)?)),
                ("regime_climatology_brier".into(), json!(brier(&vec![base; p.len()], &y)?)),
            ]
            .into_iter()
            .collect(),
        });
    }
    let (epochs, best_epoch, best_loss, train_rows, val_rows) = fit.training_summary();
    let (mean, sd) = fit.feature_scaling();
    let (scale, shift) = fit.variance_head();
    let params = json!({
        "architecture": fit.layers().iter().map(|l| format!("{}→{}", l.inputs, l.outputs)).collect::<Vec<_>>().join(", ") + " (tanh between layers)",
        "window_days": fit.window(),
        "feature_mean": mean,
        "feature_sd": sd,
        "log_variance_scale": scale,
        "log_variance_shift": shift,
        "seed": recipe.seed,
        "weights": "in model.onnx",
        "mixture": regimes.mixture(),
    });
    let details = json!({
        "training": {
            "epochs_run": epochs, "best_epoch": best_epoch, "best_validation_loss": best_loss,
            "training_rows": train_rows, "validation_rows": val_rows,
            "early_stopping": "patience 40 epochs on the last 20% of the training window",
        },
        "regime_labels": format!("{}-state mixture fitted on the training window", regimes.states()),
    });
    Ok(Built {
        task: Task::Volatility,
        model_type: "neural-mlp".into(),
        description: format!(
            "MLP ({}) trained with tch on the last {} days of regime features: log mean RV and P(stressed regime) per horizon",
            fit.layers().iter().map(|l| l.outputs.to_string()).collect::<Vec<_>>().join("-"),
            fit.window()
        ),
        export: Export { onnx, params, holdout },
        metrics,
        refit_every: None,
        target: target_name(history.rv_source),
        details,
        extra_data: Vec::new(),
        exogenous: Vec::new(),
    })
}

/// The regime model: mixture and logistic regressions fitted at `t_end` and frozen; scored by
/// Brier score against the training-window frequency of the event.
fn build_regime(recipe: &Recipe, history: &DailyHistory, t_end: usize, metadata: &[(String, String)]) -> Result<Built> {
    let features = regime_features(&history.rv, &history.returns);
    let fit = RegimeParams::new(recipe.regime_states, &recipe.horizons).fit(&features, t_end)?;
    let onnx = export_regime(&fit, metadata)?;
    // Every day is labelled by the training mixture: a contemporaneous classification, so the
    // labels after t_end use nothing fitted on them.
    let labels = fit.classify(&features);
    let origins: Vec<usize> = (t_end..features.len()).filter(|&t| features[t].is_some()).collect();
    let holdout: Vec<GoldenRow> = origins
        .iter()
        .map(|&t| {
            let x = features[t].expect("filtered");
            let p = fit.predict(&x);
            GoldenRow { input: x.to_vec(), outputs: fit.horizons().iter().zip(p).map(|(h, p)| (format!("p_high_regime_h{h}"), p)).collect() }
        })
        .collect();
    let mut metrics = Vec::new();
    let stressed = fit.states() - 1;
    for (k, &h) in fit.horizons().iter().enumerate() {
        let scored: Vec<(f64, bool)> = origins
            .iter()
            .filter_map(|&t| stressed_within(&labels, t, h, fit.states()).map(|y| (fit.predict(&features[t].expect("filtered"))[k], y)))
            .collect();
        let (p, y): (Vec<f64>, Vec<bool>) = scored.into_iter().unzip();
        let base = fit.base_rates()[k];
        let model_brier = brier(&p, &y)?;
        let climatology = brier(&vec![base; p.len()], &y)?;
        metrics.push(HorizonMetrics {
            horizon: h,
            n: p.len(),
            score: model_brier,
            score_name: "brier".into(),
            baseline_score: climatology,
            baseline: "climatology".into(),
            extra: [
                ("event_frequency".to_string(), json!(y.iter().filter(|v| **v).count() as f64 / y.len().max(1) as f64)),
                ("training_frequency".into(), json!(base)),
                ("calibration".into(), json!(calibration_table(&p, &y, 10))),
            ]
            .into_iter()
            .collect(),
        });
    }
    let (train_labels, eval_labels) = labels.split_at(t_end + 1);
    let frequency = |l: &[Option<usize>]| -> Vec<f64> {
        let known = l.iter().flatten().count().max(1) as f64;
        (0..fit.states()).map(|s| l.iter().flatten().filter(|&&v| v == s).count() as f64 / known).collect()
    };
    let (mean, sd) = fit.standardisation();
    let params = json!({
        "states": fit.states(),
        "stressed_state": stressed,
        "feature_mean": mean,
        "feature_sd": sd,
        "logistic": fit.horizons().iter().zip(fit.logistic()).map(|(h, (b, w))| json!({ "horizon": h, "intercept": b, "coef": w })).collect::<Vec<_>>(),
        "base_rates": fit.base_rates(),
        "mixture_days": fit.nobs(),
        "mixture": fit.mixture(),
    });
    let details = json!({
        "regimes": fit.summary(),
        "transition_frequencies_training": transition_frequencies(train_labels, fit.states()),
        "transition_frequencies_evaluation": transition_frequencies(eval_labels, fit.states()),
        "state_frequency_training": frequency(train_labels),
        "state_frequency_evaluation": frequency(eval_labels),
    });
    Ok(Built {
        task: Task::Regime,
        model_type: format!("regime-gmm{}", fit.states()),
        description: format!(
            "{}-state Gaussian mixture (linfa-clustering) on (ln daily RV, log return); logistic regressions (linfa-logistic) forecast P(stressed state within h days)",
            fit.states()
        ),
        export: Export { onnx, params, holdout },
        metrics,
        refit_every: None,
        target: format!("stressed regime ({} of {}) within h days, days labelled by the training mixture", stressed + 1, fit.states()),
        details,
        extra_data: Vec::new(),
        exogenous: Vec::new(),
    })
}

/// The evaluation target in words, by where the daily variance comes from.
fn target_name(rv_source: &str) -> String {
    match rv_source {
        "intraday" => "mean daily realized variance from intraday bars".into(),
        other => format!("mean daily range variance ({other})"),
    }
}

fn describe(model: ModelName, rv_source: &str) -> String {
    match model {
        ModelName::Har | ModelName::LogHar => format!(
            "{} HAR-RV (Corsi 2009) on daily/weekly/monthly realized variance ({rv_source}); OLS through linfa",
            if model == ModelName::LogHar { "Log" } else { "Level" }
        ),
        _ => format!("{} fitted by maximum likelihood on percent log returns (constant mean); closed-form h-day variance", model.as_str()),
    }
}

/// Evenly spaced rows of the hold-out set, always including the one with the largest output.
fn pick_golden(holdout: &[GoldenRow]) -> Vec<GoldenRow> {
    let n = holdout.len();
    if n <= GOLDEN_ROWS {
        return holdout.to_vec();
    }
    let mut idx: Vec<usize> = (0..GOLDEN_ROWS - 1).map(|k| k * (n - 1) / (GOLDEN_ROWS - 2)).collect();
    let largest = (0..n)
        .max_by(|&a, &b| {
            let v = |i: usize| holdout[i].outputs.values().copied().fold(f64::MIN, f64::max);
            v(a).total_cmp(&v(b))
        })
        .unwrap_or(0);
    idx.push(largest);
    idx.sort_unstable();
    idx.dedup();
    idx.into_iter().map(|i| holdout[i].clone()).collect()
}

/// Runs every hold-out row through ONNX Runtime; returns the largest relative difference or an
/// error naming the first row beyond [`PARITY_TOLERANCE`].
fn parity(card: &ModelCard, onnx: &[u8], holdout: &[GoldenRow]) -> Result<f64> {
    let mut loaded = LoadedModel::from_bytes(onnx, &card.onnx)?;
    let rows: Vec<f64> = holdout.iter().flat_map(|g| g.input.iter().copied()).collect();
    let got = loaded.run(&rows)?;
    let mut max_err = 0.0f64;
    for (i, row) in holdout.iter().enumerate() {
        for (name, want) in &row.outputs {
            let have = got[name][i];
            let err = (have - want).abs() / want.abs().max(1e-300);
            if err.is_nan() || err > PARITY_TOLERANCE {
                return Err(DataError::Fit {
                    model: card.name.clone(),
                    message: format!("ONNX parity: hold-out row {i} `{name}`: ONNX Runtime {have}, trained model {want}"),
                });
            }
            max_err = max_err.max(err);
        }
    }
    Ok(max_err)
}

/// `variance_h*` and `sigma_h*` of one row from the mean variances per horizon.
fn variance_outputs(horizons: &[usize], variances: &[f64]) -> std::collections::BTreeMap<String, f64> {
    horizons
        .iter()
        .zip(variances)
        .flat_map(|(h, v)| [(format!("variance_h{h}"), *v), (format!("sigma_h{h}"), v.sqrt())])
        .collect()
}

fn export_har_model(model: ModelName, history: &DailyHistory, t_end: usize, horizons: &[usize], metadata: &[(String, String)]) -> Result<Export> {
    let fits: Vec<FittedHar> = horizons
        .iter()
        .map(|&h| if model == ModelName::LogHar { HarParams::log(h) } else { HarParams::levels(h) }.fit(&history.rv, t_end))
        .collect::<Result<_>>()?;
    let onnx = export_har(&fits, metadata)?;
    let components = har_components(&history.rv);
    let holdout = (t_end + 1..history.dates.len())
        .filter_map(|t| {
            let c = components[t]?;
            let v: Option<Vec<f64>> = fits.iter().map(|f| f.predict(&c)).collect();
            Some(GoldenRow { input: vec![c.daily, c.weekly, c.monthly], outputs: variance_outputs(horizons, &v?) })
        })
        .collect();
    let params = json!(fits
        .iter()
        .map(|f| {
            let (intercept, [d, w, m]) = f.coefficients();
            json!({ "horizon": f.horizon(), "intercept": intercept, "beta_daily": d, "beta_weekly": w, "beta_monthly": m,
                    "residual_variance": f.residual_variance(), "floor": f.floor(), "nobs": f.nobs() })
        })
        .collect::<Vec<_>>());
    Ok(Export { onnx, params: json!({ "regressions": params }), holdout })
}

fn export_garch_model(model: ModelName, history: &DailyHistory, t_end: usize, horizons: &[usize], metadata: &[(String, String)]) -> Result<Export> {
    let (asymmetric, innovation) = model.garch_spec().expect("a GARCH-family model");
    // pct[i] is the return of day i + 1: returns up to the close of t_end are pct[..t_end].
    let pct = contiguous_percent_returns(history)?;
    let fit = GarchParams::new(asymmetric).innovation(innovation).fit(&pct[..t_end])?;
    let onnx = export_garch(&fit, horizons, metadata)?;
    let data = foresight_core::volatility::ArchData::new(&pct)?;
    let sigma2 = fit.model().conditional_variance(fit.params(), &data);
    let (mu, vol, _) = fit.model().split(fit.params());
    let max_h = horizons.iter().copied().max().unwrap_or(1);
    let holdout = (t_end..pct.len())
        .map(|t| {
            let path = fit.model().volatility.forecast(vol, pct[t] - mu, sigma2[t], max_h);
            let v: Vec<f64> = horizons.iter().map(|&h| path[..h].iter().sum::<f64>() / h as f64 / 1e4).collect();
            GoldenRow { input: vec![pct[t], sigma2[t]], outputs: variance_outputs(horizons, &v) }
        })
        .collect();
    Ok(Export { onnx, params: fit.to_json(), holdout })
}
