//! Exporters: log/level HAR-RV and GARCH-family forecasters to ONNX graphs.
//!
//! Every exported model outputs, per horizon `h`, `variance_h{h}` (the forecast mean daily
//! variance of log returns over the next `h` days) and `sigma_h{h}` (its square root), each of
//! shape `[batch]`.

use std::path::Path;

use foresight_core::features::{FEATURE_SPEC_VERSION, REGIME_FEATURES};
use prost::Message;

use super::builder::{Dim, GraphBuilder};
use super::proto::ModelProto;
use crate::error::{DataError, Result};
use crate::fit::{FittedGarch, FittedHar, FittedHarX, FittedNeural, FittedRegime};

/// An exported model: the ONNX protobuf plus what a loader needs to call it.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxModel {
    /// The model.
    pub proto: ModelProto,
    /// Graph input name.
    pub input: String,
    /// Columns of the input's last axis, in order.
    pub input_columns: Vec<String>,
    /// Input shape, `-1` for the batch axis.
    pub input_shape: Vec<i64>,
    /// Output names, `variance_h*` then `sigma_h*` per horizon.
    pub outputs: Vec<String>,
}

impl OnnxModel {
    /// The serialized `.onnx` bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.proto.encode_to_vec()
    }

    /// Writes the `.onnx` file.
    pub fn write(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_bytes()).map_err(|source| DataError::Io { file: path.to_path_buf(), source })
    }

    /// A `metadata_props` value.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.proto.metadata_props.iter().find(|p| p.key == key).map(|p| p.value.as_str())
    }
}

fn export_error(message: impl Into<String>) -> DataError {
    DataError::Fit { model: "onnx export".into(), message: message.into() }
}

/// Adds `variance_h{h}` and `sigma_h{h}` outputs for column `k` of `variances` ([batch, H]).
fn horizon_outputs(g: &mut GraphBuilder, variances: &str, horizons: &[usize], outputs: &mut Vec<String>) {
    for (k, h) in horizons.iter().enumerate() {
        let var_name = format!("variance_h{h}");
        let sigma_name = format!("sigma_h{h}");
        let index = g.constant_i64("k", &[], &[k as i64]);
        g.op("Gather", &[variances, &index], Some(&var_name), &[("axis", 1)]);
        g.op("Sqrt", &[&var_name], Some(&sigma_name), &[]);
        g.output(&var_name, &[Dim::Named("batch")], &format!("forecast mean daily variance of log returns over the next {h} days"));
        g.output(&sigma_name, &[Dim::Named("batch")], &format!("square root of variance_h{h}"));
        outputs.push(var_name);
        outputs.push(sigma_name);
    }
    // Order: all variances, then all sigmas.
    outputs.sort_by_key(|o| !o.starts_with("variance"));
}

/// Adds `p_high_regime_h{h}` outputs for column `k` of `probabilities` ([batch, H]).
fn regime_outputs(g: &mut GraphBuilder, probabilities: &str, horizons: &[usize], outputs: &mut Vec<String>) {
    for (k, h) in horizons.iter().enumerate() {
        let name = format!("p_high_regime_h{h}");
        let index = g.constant_i64("k", &[], &[k as i64]);
        g.op("Gather", &[probabilities, &index], Some(&name), &[("axis", 1)]);
        g.output(&name, &[Dim::Named("batch")], &format!("probability of the stressed regime within the next {h} days"));
        outputs.push(name);
    }
}

fn base_metadata(kind: &str, horizons: &[usize], input: &str, columns: &[&str], extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut m = vec![
        ("foresight.model_type".to_string(), kind.to_string()),
        ("foresight.feature_spec_version".into(), FEATURE_SPEC_VERSION.into()),
        ("foresight.input".into(), input.into()),
        ("foresight.input_columns".into(), columns.join(",")),
        ("foresight.horizons".into(), horizons.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(",")),
    ];
    if kind != "regime" {
        m.push(("foresight.units".into(), "variance of daily log returns (fraction², per day)".into()));
    }
    m.extend_from_slice(extra);
    m
}

/// Exports HAR regressions of one kind (all log or all levels), one per horizon, as a single
/// graph with input `har_components` `[batch, 3]` = daily, weekly, monthly RV.
pub fn export_har(fits: &[FittedHar], metadata: &[(String, String)]) -> Result<OnnxModel> {
    let first = fits.first().ok_or_else(|| export_error("no HAR fit given"))?;
    let log = first.is_log();
    if fits.iter().any(|f| f.is_log() != log) {
        return Err(export_error("HAR fits of one model must be all log or all levels"));
    }
    let horizons: Vec<usize> = fits.iter().map(FittedHar::horizon).collect();
    if (1..horizons.len()).any(|i| horizons[..i].contains(&horizons[i])) {
        return Err(export_error("HAR horizons must be distinct"));
    }
    let h = fits.len();
    let mut g = GraphBuilder::new(if log { "log_har" } else { "har" });
    let x = g.input("har_components", &[Dim::Named("batch"), Dim::Fixed(3)], "daily, weekly (5d), monthly (22d) mean RV");
    let regressors = if log { g.op("Log", &[&x], None, &[]) } else { x.clone() };
    // W[i][k]: coefficient of regressor i in the fit for horizon k.
    let weights: Vec<f64> = (0..3).flat_map(|i| fits.iter().map(move |f| f.coefficients().1[i])).collect();
    let w = g.constant("coef", &[3, h as i64], &weights);
    let linear = g.op("MatMul", &[&regressors, &w], None, &[]);
    let shift: Vec<f64> = fits
        .iter()
        .map(|f| f.coefficients().0 + if log { 0.5 * f.residual_variance() } else { 0.0 })
        .collect();
    let shift = g.constant("intercept", &[h as i64], &shift);
    let z = g.op("Add", &[&linear, &shift], None, &[]);
    let variances = if log {
        g.op("Exp", &[&z], None, &[])
    } else {
        let floors: Vec<f64> = fits.iter().map(FittedHar::floor).collect();
        let floor = g.constant("floor", &[h as i64], &floors);
        g.op("Max", &[&z, &floor], None, &[])
    };
    let mut outputs = Vec::new();
    horizon_outputs(&mut g, &variances, &horizons, &mut outputs);
    let kind = if log { "log-har" } else { "har" };
    let columns = ["har_d", "har_w", "har_m"];
    let meta = base_metadata(kind, &horizons, "har_components", &columns, metadata);
    Ok(OnnxModel {
        proto: g.into_model("HAR-RV variance forecaster (Corsi 2009), exported by Foresight", &meta),
        input: "har_components".into(),
        input_columns: columns.iter().map(|c| c.to_string()).collect(),
        input_shape: vec![-1, 3],
        outputs,
    })
}

/// Exports a fitted GARCH-family model's closed-form h-step variance forecast from the state
/// `garch_state` `[batch, 2]` = (last percent log return, its conditional variance in
/// percent²): `σ²(T+1) = ω + (α + γ·1[ε<0])·ε² + β·σ²(T)`, `σ²(T+k+1) = ω + P·σ²(T+k)`.
pub fn export_garch(fit: &FittedGarch, horizons: &[usize], metadata: &[(String, String)]) -> Result<OnnxModel> {
    if horizons.is_empty() || horizons.contains(&0) {
        return Err(export_error("horizons must be ≥ 1"));
    }
    let model = fit.model();
    let (mu, vol, _) = model.split(fit.params());
    let (omega, alpha, gamma, beta) = model.volatility.unpack(vol);
    let persistence = model.volatility.persistence(vol);
    let mut g = GraphBuilder::new("garch");
    let state = g.input("garch_state", &[Dim::Named("batch"), Dim::Fixed(2)], "last percent log return, last conditional variance (percent²)");
    let r = g.column(&state, 0);
    let s2 = g.column(&state, 1);
    let mu = g.constant("mu", &[], &[mu]);
    let e = g.op("Sub", &[&r, &mu], None, &[]);
    let e2 = g.op("Mul", &[&e, &e], None, &[]);
    let zero = g.constant("zero", &[], &[0.0]);
    let negative = g.op("Less", &[&e, &zero], None, &[]);
    let negative = g.op("Cast", &[&negative], None, &[("to", 11)]); // 11 = DOUBLE
    let leverage = g.op("Mul", &[&negative, &e2], None, &[]);
    let [omega_c, alpha_c, gamma_c, beta_c] = [omega, alpha, gamma, beta].map(|v| g.constant("param", &[], &[v]));
    let arch = g.op("Mul", &[&alpha_c, &e2], None, &[]);
    let lev = g.op("Mul", &[&gamma_c, &leverage], None, &[]);
    let garch = g.op("Mul", &[&beta_c, &s2], None, &[]);
    let sum = g.op("Add", &[&omega_c, &arch], None, &[]);
    let sum = g.op("Add", &[&sum, &lev], None, &[]);
    let next = g.op("Add", &[&sum, &garch], None, &[]);
    // Mean of σ²(T+1..T+h) = a_h + b_h·σ²(T+1), in fraction² (percent² / 1e4).
    let max_h = horizons.iter().copied().max().unwrap_or(1);
    let (mut c0, mut c1) = (0.0f64, 1.0f64);
    let (mut sum0, mut sum1) = (0.0, 0.0);
    let mut mean_coef = Vec::with_capacity(max_h);
    for k in 1..=max_h {
        if k > 1 {
            c0 = omega + persistence * c0;
            c1 *= persistence;
        }
        sum0 += c0;
        sum1 += c1;
        mean_coef.push((sum0 / k as f64 / 1e4, sum1 / k as f64 / 1e4));
    }
    let a: Vec<f64> = horizons.iter().map(|h| mean_coef[h - 1].0).collect();
    let b: Vec<f64> = horizons.iter().map(|h| mean_coef[h - 1].1).collect();
    let n = horizons.len() as i64;
    let axes = g.constant_i64("axes", &[1], &[1]);
    let next = g.op("Unsqueeze", &[&next, &axes], None, &[]);
    let b = g.constant("b", &[1, n], &b);
    let a = g.constant("a", &[1, n], &a);
    let scaled = g.op("Mul", &[&next, &b], None, &[]);
    let variances = g.op("Add", &[&scaled, &a], None, &[]);
    let mut outputs = Vec::new();
    horizon_outputs(&mut g, &variances, horizons, &mut outputs);
    let mut extra = metadata.to_vec();
    extra.push(("foresight.params".into(), fit.to_json().to_string()));
    let meta = base_metadata(&fit.name(), horizons, "garch_state", &["last_return_pct", "last_sigma2_pct2"], &extra);
    Ok(OnnxModel {
        proto: g.into_model("GARCH-family closed-form variance forecast, exported by Foresight", &meta),
        input: "garch_state".into(),
        input_columns: vec!["last_return_pct".into(), "last_sigma2_pct2".into()],
        input_shape: vec![-1, 2],
        outputs,
    })
}

/// Exports a regime model's probability forecasts: input `regime_features` `[batch, 5]` (see
/// `foresight_core::features::regime_features`), standardised, then one logistic regression per
/// horizon: outputs `p_high_regime_h{h}` `[batch]`, the probability that the stressed regime
/// occurs within the next `h` days.
pub fn export_regime(fit: &FittedRegime, metadata: &[(String, String)]) -> Result<OnnxModel> {
    let horizons = fit.horizons().to_vec();
    let h = horizons.len() as i64;
    let width = REGIME_FEATURES.len() as i64;
    let (mean, sd) = fit.standardisation();
    let mut g = GraphBuilder::new("regime");
    let x = g.input("regime_features", &[Dim::Named("batch"), Dim::Fixed(width)], "ln RV daily/weekly/monthly, log return, |log return|");
    let mean = g.constant("mean", &[width], &mean);
    let sd = g.constant("sd", &[width], &sd);
    let centred = g.op("Sub", &[&x, &mean], None, &[]);
    let z = g.op("Div", &[&centred, &sd], None, &[]);
    // W[i][k]: coefficient of feature i at horizon k.
    let weights: Vec<f64> = (0..REGIME_FEATURES.len()).flat_map(|i| fit.logistic().iter().map(move |(_, w)| w[i])).collect();
    let w = g.constant("coef", &[width, h], &weights);
    let b: Vec<f64> = fit.logistic().iter().map(|(b, _)| *b).collect();
    let b = g.constant("intercept", &[h], &b);
    let linear = g.op("MatMul", &[&z, &w], None, &[]);
    let logits = g.op("Add", &[&linear, &b], None, &[]);
    let p = g.op("Sigmoid", &[&logits], None, &[]);
    let mut outputs = Vec::new();
    regime_outputs(&mut g, &p, &horizons, &mut outputs);
    let mut extra = metadata.to_vec();
    extra.push(("foresight.regime_states".into(), fit.states().to_string()));
    let meta = base_metadata("regime", &horizons, "regime_features", &REGIME_FEATURES, &extra);
    Ok(OnnxModel {
        proto: g.into_model("Volatility-regime probability forecaster (Gaussian mixture + logistic), exported by Foresight", &meta),
        input: "regime_features".into(),
        input_columns: REGIME_FEATURES.iter().map(|c| c.to_string()).collect(),
        input_shape: vec![-1, width],
        outputs,
    })
}

/// Exports the neural forecaster: input `feature_window` `[batch, window, 5]` (the regime
/// features of the last `window` days, oldest first), the MLP with its standardisation, and
/// outputs `variance_h{h}`, `sigma_h{h}` and `p_high_regime_h{h}` per horizon.
pub fn export_neural(fit: &FittedNeural, metadata: &[(String, String)]) -> Result<OnnxModel> {
    let horizons = fit.horizons().to_vec();
    let k = horizons.len() as i64;
    let width = REGIME_FEATURES.len() as i64;
    let window = fit.window() as i64;
    let mut g = GraphBuilder::new("neural");
    let x = g.input(
        "feature_window",
        &[Dim::Named("batch"), Dim::Fixed(window), Dim::Fixed(width)],
        "regime features of the last `window` days, oldest first",
    );
    let shape = g.constant_i64("shape", &[2], &[-1, window * width]);
    let flat = g.op("Reshape", &[&x, &shape], None, &[]);
    let (mean, sd) = fit.feature_scaling();
    let tile = |v: &[f64]| -> Vec<f64> { (0..window as usize).flat_map(|_| v.iter().copied()).collect() };
    let mean = g.constant("mean", &[window * width], &tile(mean));
    let sd = g.constant("sd", &[window * width], &tile(sd));
    let centred = g.op("Sub", &[&flat, &mean], None, &[]);
    let mut h = g.op("Div", &[&centred, &sd], None, &[]);
    let layers = fit.layers();
    for (i, layer) in layers.iter().enumerate() {
        // tch stores [outputs, inputs]; MatMul wants [inputs, outputs].
        let transposed: Vec<f64> =
            (0..layer.inputs).flat_map(|r| (0..layer.outputs).map(move |c| layer.weight[c * layer.inputs + r])).collect();
        let w = g.constant("w", &[layer.inputs as i64, layer.outputs as i64], &transposed);
        let b = g.constant("b", &[layer.outputs as i64], &layer.bias);
        let product = g.op("MatMul", &[&h, &w], None, &[]);
        h = g.op("Add", &[&product, &b], None, &[]);
        if i + 1 < layers.len() {
            h = g.op("Tanh", &[&h], None, &[]);
        }
    }
    let vol_index = g.constant_i64("vol_cols", &[k], &(0..k).collect::<Vec<_>>());
    let regime_index = g.constant_i64("regime_cols", &[k], &(k..2 * k).collect::<Vec<_>>());
    let vol = g.op("Gather", &[&h, &vol_index], None, &[("axis", 1)]);
    let (scale, shift) = fit.variance_head();
    let scale = g.constant("scale", &[k], &scale);
    let shift = g.constant("shift", &[k], &shift);
    let scaled = g.op("Mul", &[&vol, &scale], None, &[]);
    let log_variance = g.op("Add", &[&scaled, &shift], None, &[]);
    let variances = g.op("Exp", &[&log_variance], None, &[]);
    let mut outputs = Vec::new();
    horizon_outputs(&mut g, &variances, &horizons, &mut outputs);
    let logits = g.op("Gather", &[&h, &regime_index], None, &[("axis", 1)]);
    let p = g.op("Sigmoid", &[&logits], None, &[]);
    regime_outputs(&mut g, &p, &horizons, &mut outputs);
    let mut extra = metadata.to_vec();
    extra.push(("foresight.window_days".into(), window.to_string()));
    let meta = base_metadata("neural-mlp", &horizons, "feature_window", &REGIME_FEATURES, &extra);
    Ok(OnnxModel {
        proto: g.into_model("MLP volatility and regime forecaster trained with tch, exported by Foresight", &meta),
        input: "feature_window".into(),
        input_columns: REGIME_FEATURES.iter().map(|c| c.to_string()).collect(),
        input_shape: vec![-1, window, width],
        outputs,
    })
}

/// Exports HAR-X with its explicit fallback: input `harx_inputs` `[batch, 4]` = daily, weekly,
/// monthly RV and the exogenous regressor, which is NaN where the input is missing. Where it is
/// known the HAR-X regression forecasts; where it is NaN the plain log-HAR (`fallback`, fitted
/// on the same window) does, per row (`IsNaN` → `Where`), never a zero-filled input.
pub fn export_har_x(fits: &[FittedHarX], fallback: &[FittedHar], metadata: &[(String, String)]) -> Result<OnnxModel> {
    if fits.is_empty() || fits.len() != fallback.len() || fits.iter().zip(fallback).any(|(x, f)| x.horizon() != f.horizon() || !f.is_log()) {
        return Err(export_error("HAR-X needs one log-HAR fallback per horizon, in the same order"));
    }
    let horizons: Vec<usize> = fits.iter().map(FittedHarX::horizon).collect();
    let h = fits.len() as i64;
    let mut g = GraphBuilder::new("har_x");
    let input = g.input("harx_inputs", &[Dim::Named("batch"), Dim::Fixed(4)], "daily, weekly, monthly RV, exogenous regressor (NaN when missing)");
    let starts = g.constant_i64("starts", &[1], &[0]);
    let ends = g.constant_i64("ends", &[1], &[3]);
    let axes = g.constant_i64("axes", &[1], &[1]);
    let rv = g.op("Slice", &[&input, &starts, &ends, &axes], None, &[]);
    let log_rv = g.op("Log", &[&rv], None, &[]);
    let x = g.column(&input, 3);
    let missing = g.op("IsNaN", &[&x], None, &[]);
    let zero = g.constant("zero", &[], &[0.0]);
    let x_known = g.op("Where", &[&missing, &zero, &x], None, &[]);
    let unsqueeze = g.constant_i64("axes", &[1], &[1]);
    let x_column = g.op("Unsqueeze", &[&x_known, &unsqueeze], None, &[]);
    // HAR-X: ln RV components and x.
    let wx: Vec<f64> = (0..3).flat_map(|i| fits.iter().map(move |f| f.coefficients().1[i])).collect();
    let wx = g.constant("coef_x", &[3, h], &wx);
    let bx: Vec<f64> = fits.iter().map(|f| f.coefficients().0 + 0.5 * f.residual_variance()).collect();
    let bx = g.constant("intercept_x", &[h], &bx);
    let cx: Vec<f64> = fits.iter().map(|f| f.coefficients().1[3]).collect();
    let cx = g.constant("coef_input", &[1, h], &cx);
    let part = g.op("MatMul", &[&log_rv, &wx], None, &[]);
    let input_part = g.op("Mul", &[&x_column, &cx], None, &[]);
    let z = g.op("Add", &[&part, &input_part], None, &[]);
    let z = g.op("Add", &[&z, &bx], None, &[]);
    let with_input = g.op("Exp", &[&z], None, &[]);
    // Fallback log-HAR.
    let w: Vec<f64> = (0..3).flat_map(|i| fallback.iter().map(move |f| f.coefficients().1[i])).collect();
    let w = g.constant("coef", &[3, h], &w);
    let b: Vec<f64> = fallback.iter().map(|f| f.coefficients().0 + 0.5 * f.residual_variance()).collect();
    let b = g.constant("intercept", &[h], &b);
    let zf = g.op("MatMul", &[&log_rv, &w], None, &[]);
    let zf = g.op("Add", &[&zf, &b], None, &[]);
    let without = g.op("Exp", &[&zf], None, &[]);
    let mask = g.op("Unsqueeze", &[&missing, &unsqueeze], None, &[]);
    let variances = g.op("Where", &[&mask, &without, &with_input], None, &[]);
    let mut outputs = Vec::new();
    horizon_outputs(&mut g, &variances, &horizons, &mut outputs);
    let columns = ["har_d", "har_w", "har_m", "exogenous"];
    let meta = base_metadata("har-x", &horizons, "harx_inputs", &columns, metadata);
    Ok(OnnxModel {
        proto: g.into_model("HAR-X variance forecaster with log-HAR fallback where the input is missing, exported by Foresight", &meta),
        input: "harx_inputs".into(),
        input_columns: columns.iter().map(|c| c.to_string()).collect(),
        input_shape: vec![-1, 4],
        outputs,
    })
}
