//! From a daily history to the input rows a registered model takes, by the input its card
//! names. Training, backtests and the service all build inputs here, from the feature code in
//! `foresight-core`, so a model is always fed what it was trained on.

use foresight_core::features::{REGIME_FEATURES, feature_window, har_components, regime_features};
use foresight_core::volatility::Garch;

use std::collections::BTreeMap;

use crate::card::ModelCard;
use crate::error::{RegistryError, Result};
use crate::runtime::LoadedModel;

/// The kinds of input a Foresight model takes.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelInput {
    /// `har_components` `[batch, 3]`: daily, weekly, monthly mean RV.
    HarComponents,
    /// `garch_state` `[batch, 2]`: last percent log return and its conditional variance under
    /// the model's own parameters.
    GarchState {
        /// Constant mean (percent).
        mu: f64,
        /// The process.
        process: Garch,
        /// ω, α, (γ,) β.
        params: Vec<f64>,
    },
    /// `harx_inputs` `[batch, 4]`: the HAR components and an exogenous regressor (NaN where
    /// missing: the model then falls back to log-HAR).
    HarX,
    /// `regime_features` `[batch, 5]`.
    RegimeFeatures,
    /// `feature_window` `[batch, days, 5]`: regime features of the last `days` days.
    FeatureWindow {
        /// Days per input.
        days: usize,
    },
}

impl ModelInput {
    /// The input of the model a card describes.
    pub fn from_card(card: &ModelCard) -> Result<Self> {
        let bad = |message: String| RegistryError::Format { file: format!("{}/card.json", card.reference()).into(), message };
        let param = |key: &str| card.params.get(key).and_then(|v| v.as_f64()).ok_or_else(|| bad(format!("params.{key} is missing")));
        match card.onnx.input.as_str() {
            "har_components" => Ok(ModelInput::HarComponents),
            "harx_inputs" => Ok(ModelInput::HarX),
            "regime_features" => Ok(ModelInput::RegimeFeatures),
            "feature_window" => match card.onnx.input_shape.as_slice() {
                [_, days, width] if *days > 0 && *width == REGIME_FEATURES.len() as i64 => Ok(ModelInput::FeatureWindow { days: *days as usize }),
                other => Err(bad(format!("feature_window has shape {other:?}, expected [-1, days, {}]", REGIME_FEATURES.len()))),
            },
            "garch_state" => {
                let process = Garch { asymmetric: card.params.get("model").and_then(|v| v.as_str()) == Some("gjr") };
                let names = process.param_names();
                let params = names.iter().map(|n| param(n)).collect::<Result<Vec<_>>>()?;
                Ok(ModelInput::GarchState { mu: param("mu")?, process, params })
            }
            other => Err(bad(format!("unknown input `{other}`"))),
        }
    }

    /// One input row per day (`None` where the inputs are incomplete), from the daily realized
    /// variance and log returns (`returns[0]` is usually `None`) and, for HAR-X, the exogenous
    /// regressor per day (`exogenous`, where a missing day becomes NaN and the model's log-HAR
    /// fallback). Row `t` uses days `..=t` only.
    pub fn rows(&self, rv: &[Option<f64>], returns: &[Option<f64>], exogenous: &[Option<f64>]) -> Vec<Option<Vec<f64>>> {
        match self {
            ModelInput::HarX => har_components(rv)
                .into_iter()
                .enumerate()
                .map(|(t, c)| c.map(|c| vec![c.daily, c.weekly, c.monthly, exogenous.get(t).copied().flatten().unwrap_or(f64::NAN)]))
                .collect(),
            ModelInput::HarComponents => har_components(rv).into_iter().map(|c| c.map(|c| vec![c.daily, c.weekly, c.monthly])).collect(),
            ModelInput::RegimeFeatures => regime_features(rv, returns).into_iter().map(|f| f.map(|f| f.to_vec())).collect(),
            ModelInput::FeatureWindow { days } => {
                let features = regime_features(rv, returns);
                (0..features.len()).map(|t| feature_window(&features, t, *days)).collect()
            }
            ModelInput::GarchState { mu, process, params } => {
                // The filter runs over the longest stretch of known returns ending at each day;
                // a missing return restarts it.
                let mut out = vec![None; returns.len()];
                let mut start = 0;
                while start < returns.len() {
                    let run = returns[start..].iter().take_while(|r| r.is_some()).count();
                    if run == 0 {
                        start += 1;
                        continue;
                    }
                    let pct: Vec<f64> = returns[start..start + run].iter().map(|r| 100.0 * r.unwrap_or_default()).collect();
                    let resids: Vec<f64> = pct.iter().map(|r| r - mu).collect();
                    let sigma2 = process.filter(params, &resids);
                    for i in 0..run {
                        out[start + i] = Some(vec![pct[i], sigma2[i]]);
                    }
                    start += run;
                }
                out
            }
        }
    }
}

/// Every output of a model for every day of a history: `None` where the day's inputs were
/// incomplete or the output is not finite.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyRun {
    /// Output name → a value per day.
    pub outputs: BTreeMap<String, Vec<Option<f64>>>,
    /// The last day's input row, if it was complete.
    pub last_row: Option<Vec<f64>>,
}

impl DailyRun {
    /// The output `name` on day `t`.
    pub fn value(&self, name: &str, t: usize) -> Option<f64> {
        self.outputs.get(name).and_then(|v| v.get(t).copied().flatten())
    }

    /// The output `name` on the last day.
    pub fn last(&self, name: &str) -> Option<f64> {
        self.outputs.get(name).and_then(|v| v.last().copied().flatten())
    }
}

/// Runs `model` (whose input is `input`) once over every day from `first_day` on whose inputs
/// are complete, in one batch: the one way training, backtests and the service run a registered
/// model over a history. Days before `first_day` have no outputs.
pub fn run_over_days(
    model: &mut LoadedModel,
    input: &ModelInput,
    rv: &[Option<f64>],
    returns: &[Option<f64>],
    exogenous: &[Option<f64>],
    first_day: usize,
) -> Result<DailyRun> {
    let rows = input.rows(rv, returns, exogenous);
    let days: Vec<usize> = (first_day..rows.len()).filter(|&t| rows[t].is_some()).collect();
    let mut outputs: BTreeMap<String, Vec<Option<f64>>> = model.signature().outputs.iter().map(|name| (name.clone(), vec![None; rows.len()])).collect();
    if !days.is_empty() {
        let flat: Vec<f64> = days.iter().flat_map(|&t| rows[t].iter().flatten().copied()).collect();
        for (name, values) in model.run(&flat)? {
            let per_day = outputs.entry(name).or_insert_with(|| vec![None; rows.len()]);
            for (value, &t) in values.into_iter().zip(&days) {
                per_day[t] = Some(value).filter(|v| v.is_finite());
            }
        }
    }
    Ok(DailyRun { outputs, last_row: rows.last().cloned().flatten() })
}
