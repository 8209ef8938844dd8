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
use foresight_core::features::FEATURE_SPEC_VERSION;
use foresight_registry::card::{CARD_FORMAT, DataRef, Evaluation, OnnxSignature, TrainingWindow};
use foresight_registry::inputs::ModelInput;
use foresight_registry::runtime::LoadedModel;
use foresight_registry::verify::sha256_hex;
use foresight_registry::{GoldenRow, HorizonMetrics, ModelCard, Task};
use serde::Deserialize;
use serde_json::json;

use crate::data::load_daily_closes;
use crate::error::{DataError, Result};
use crate::evaluate::DailyHistory;
use crate::fit::Epoch;
use crate::onnx::proto::StringStringEntryProto;
use crate::onnx::{OPSET, OnnxModel};

mod regime;
mod volatility;

use regime::{build_neural, build_regime};
use volatility::{build_har_x, build_volatility};

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
    /// OHLCV file (intraday bars give realized variance, daily bars a range estimator) or a
    /// `date,close` file (squared daily returns).
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
        // The fitters check these too, but only a model at a time and without the key's name:
        // here every key is checked before anything is trained.
        if self.neural_window == 0 {
            return Err("neural_window: must be ≥ 1 day, got 0".into());
        }
        if self.neural_max_epochs == 0 {
            return Err("neural_max_epochs: must be ≥ 1, got 0".into());
        }
        if !(2..=3).contains(&self.regime_states) {
            return Err(format!("regime_states: must be 2 or 3, got {}", self.regime_states));
        }
        if self.horizons.is_empty() || self.horizons.contains(&0) {
            return Err(format!("horizons: give days ≥ 1, got {:?}", self.horizons));
        }
        if let Some(h) = self.horizons.iter().enumerate().find_map(|(i, h)| self.horizons[..i].contains(h).then_some(h)) {
            return Err(format!("horizons: {h} is listed twice in {:?}", self.horizons));
        }
        if !self.horizons.contains(&self.primary_horizon) {
            return Err(format!("primary_horizon {} is not one of horizons {:?}", self.primary_horizon, self.horizons));
        }
        if self.refit_every == Some(0) {
            return Err("refit_every: must be ≥ 1, got 0 (leave it out for a frozen model)".into());
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
    // OHLCV bars give realized variance (intraday) or the range (daily); a `date,close` file
    // gives squared daily returns.
    let bars_frequency = load_daily_closes(&recipe.data)?.frequency;
    let history = DailyHistory::load(&recipe.data, None)?;
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
            // HAR-X and the neural model are families for walk-forward arms too, but a recipe
            // trains them with their own inputs and heads.
            (_, "har-x") => build_har_x(recipe, &bars_frequency, &history, t_end, &metadata)?,
            (_, "neural") => build_neural(recipe, &history, t_end, &metadata, &full_name, progress)?,
            (Some(model), _) => build_volatility(model, recipe, &history, t_end, &metadata, &mut |s: &str| progress.step(&format!("{full_name}: {s}")))?,
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

/// The evaluation target in words, by where the daily variance comes from.
fn target_name(rv_source: &str) -> String {
    match rv_source {
        "intraday" => "mean daily realized variance from intraday bars".into(),
        "squared_return" => "mean daily squared log return (daily closes only)".into(),
        other => format!("mean daily range variance ({other})"),
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
