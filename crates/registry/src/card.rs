//! The model card: everything a loader, a reviewer or a promotion rule needs to know about one
//! registered model version, stored as `card.json` next to its `model.onnx`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::error::RegistryError;

/// Version tag of the card format.
pub const CARD_FORMAT: &str = "foresight-card/1";

/// Relative tolerance of golden-row checks (the ONNX parity bound of the training issue).
pub const GOLDEN_TOLERANCE: f64 = 1e-5;

/// What a model forecasts, which decides how it is scored and what it may replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Variance/volatility forecasts (`variance_h*`, `sigma_h*`), scored by QLIKE.
    Volatility,
    /// Probability of a high-volatility regime (`p_high_regime_h*`), scored by Brier score.
    Regime,
}

impl Task {
    /// `volatility` or `regime`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Task::Volatility => "volatility",
            Task::Regime => "regime",
        }
    }
}

/// One registered model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// [`CARD_FORMAT`].
    pub format: String,
    /// Model name (a folder under `models/`), e.g. `btc-log-har`.
    pub name: String,
    /// Version number (folder `v{version}`), assigned by the registry.
    pub version: u32,
    /// Asset the model forecasts, e.g. `BTC`.
    pub asset: String,
    /// What it forecasts.
    pub task: Task,
    /// Model family, e.g. `log-har`, `gjr-t`, `regime-gmm`.
    pub model_type: String,
    /// One-line description.
    pub description: String,
    /// Feature spec the inputs follow (`foresight-features/1`).
    pub feature_spec_version: String,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
    /// Git commit of the code that trained it, when known.
    pub git_commit: Option<String>,
    /// Version of Foresight that trained it.
    pub foresight_version: String,
    /// The ONNX file and its signature.
    pub onnx: OnnxSignature,
    /// Forecast horizons in days.
    pub horizons: Vec<usize>,
    /// Data and window the exported parameters were fitted on.
    pub training: TrainingWindow,
    /// Out-of-sample evaluation after the training window.
    pub evaluation: Evaluation,
    /// Fitted parameters (model-specific JSON).
    pub params: serde_json::Value,
    /// Input rows with their expected outputs: anything that loads the model re-checks them.
    pub golden: Vec<GoldenRow>,
    /// Model-specific facts (regime means, transition frequencies, ...).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

impl ModelCard {
    /// `name@v{version}`.
    pub fn reference(&self) -> ModelRef {
        ModelRef { name: self.name.clone(), version: Some(self.version) }
    }

    /// The slot this model competes for: `<asset>/<task>`.
    pub fn slot(&self) -> String {
        slot(&self.asset, self.task)
    }

    /// Metrics at the primary horizon.
    pub fn primary_metrics(&self) -> Option<&HorizonMetrics> {
        self.evaluation.metrics.iter().find(|m| m.horizon == self.evaluation.primary_horizon)
    }
}

/// The slot a person names: `<asset>/<task>`, or just `<asset>` for its volatility slot.
pub fn named_slot(name: &str) -> String {
    if name.contains('/') { name.to_string() } else { slot(name, Task::Volatility) }
}

/// The registry slot of an asset and task, `<asset>/<task>`.
pub fn slot(asset: &str, task: Task) -> String {
    format!("{asset}/{}", task.as_str())
}

/// The ONNX file of a model and how to call it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnnxSignature {
    /// File name inside the version folder (`model.onnx`).
    pub file: String,
    /// Hex sha256 of the file.
    pub sha256: String,
    /// ONNX operator set.
    pub opset: i64,
    /// Graph input name.
    pub input: String,
    /// Input shape; `-1` is the batch dimension.
    pub input_shape: Vec<i64>,
    /// Names of the input's last-axis columns, in order.
    pub input_columns: Vec<String>,
    /// Output names, each of shape `[batch]`.
    pub outputs: Vec<String>,
    /// `[min, max]` of each input column over the training window (NaNs left out): inputs far
    /// outside it send the service back to the reactive arm.
    #[serde(default)]
    pub input_ranges: Vec<[f64; 2]>,
}

/// A data file the model was trained on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataRef {
    /// Path as given to training (relative to the checkout).
    pub path: String,
    /// Hex sha256 of the file.
    pub sha256: String,
}

/// The training window of the exported parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingWindow {
    /// Input files.
    pub data: Vec<DataRef>,
    /// First day used.
    pub start: NaiveDate,
    /// Last day used (inclusive).
    pub end: NaiveDate,
    /// Days in the window.
    pub days: usize,
}

/// Out-of-sample evaluation: walk-forward from the day after the training window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// First forecast origin.
    pub start: NaiveDate,
    /// Last day whose realized value is scored.
    pub end: NaiveDate,
    /// Parameters re-estimated every this many days on an expanding window (`None`: frozen).
    pub refit_every: Option<usize>,
    /// What the forecasts are scored against, e.g. `realized variance (intraday)`: scores
    /// against different targets never compare.
    pub target: String,
    /// Horizon promotion compares at.
    pub primary_horizon: usize,
    /// Scores per horizon.
    pub metrics: Vec<HorizonMetrics>,
}

/// Scores of one horizon on the evaluation window (lower is better for losses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HorizonMetrics {
    /// Horizon in days.
    pub horizon: usize,
    /// Scored origins.
    pub n: usize,
    /// The promotion score: QLIKE (volatility) or Brier score (regime).
    pub score: f64,
    /// Name of [`score`](Self::score): `qlike` or `brier`.
    pub score_name: String,
    /// The same score of the naive baseline on the same origins: EWMA 0.94 (volatility) or the
    /// training-window frequency (regime).
    pub baseline_score: f64,
    /// Name of the baseline.
    pub baseline: String,
    /// Further metrics (MSE, Mincer-Zarnowitz R², calibration table...).
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl HorizonMetrics {
    /// Score relative to the baseline: `score / baseline_score` (below 1 beats the baseline).
    pub fn relative(&self) -> f64 {
        self.score / self.baseline_score
    }
}

/// One input row (one batch element, flattened) and the outputs the trained model gives for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoldenRow {
    /// Flattened input of one batch element (shape = `input_shape` without the batch axis); a
    /// missing value (NaN, e.g. an exogenous input the model falls back without) is `null`.
    #[serde(with = "nan_as_null")]
    pub input: Vec<f64>,
    /// Expected value of each output.
    pub outputs: BTreeMap<String, f64>,
}

/// JSON has no NaN: a missing input value is written as `null` and read back as NaN.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(values: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(values.iter().map(|v| if v.is_nan() { None } else { Some(*v) }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let values: Vec<Option<f64>> = Vec::deserialize(d)?;
        Ok(values.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    }
}

/// `name`, `name@v3` or `name@3`: a model, at a version or its latest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ModelRef {
    /// Model name.
    pub name: String,
    /// Version; `None` means the latest.
    pub version: Option<u32>,
}

impl FromStr for ModelRef {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (name, version) = match s.split_once('@') {
            Some((name, v)) => {
                let digits = v.strip_prefix('v').unwrap_or(v);
                let version = digits.parse::<u32>().ok().filter(|v| *v > 0).ok_or_else(|| {
                    RegistryError::Invalid(format!("`{s}`: the version after `@` must be v1, v2, ... (got `{v}`)"))
                })?;
                (name, Some(version))
            }
            None => (s, None),
        };
        if !valid_name(name) {
            return Err(RegistryError::Invalid(format!(
                "`{s}`: a model name is lowercase letters, digits and `-` (e.g. btc-log-har)"
            )));
        }
        Ok(ModelRef { name: name.to_string(), version })
    }
}

/// Whether `name` can be a model folder: lowercase ASCII letters, digits, `-`, not leading `-`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl TryFrom<String> for ModelRef {
    type Error = RegistryError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ModelRef> for String {
    fn from(r: ModelRef) -> String {
        r.to_string()
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Some(v) => write!(f, "{}@v{v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_references_parse_and_print() {
        let r: ModelRef = "btc-log-har@v3".parse().unwrap();
        assert_eq!(r, ModelRef { name: "btc-log-har".into(), version: Some(3) });
        assert_eq!(r.to_string(), "btc-log-har@v3");
        assert_eq!("btc-log-har@3".parse::<ModelRef>().unwrap(), r);
        assert_eq!("spx-gjr-t".parse::<ModelRef>().unwrap().version, None);
        for bad in ["", "BTC", "a@", "a@v0", "a@vx", "a b", "-a"] {
            assert!(bad.parse::<ModelRef>().is_err(), "{bad}");
        }
    }
}
