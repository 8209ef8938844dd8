//! The neural forecaster, trained with tch (libtorch): a small MLP over the last `window` days
//! of regime features (`foresight_core::features::regime_features`) with two heads per
//! horizon: the log of the mean realized variance over the next `h` days, and the logit of
//! P(stressed regime within `h` days).
//!
//! Training is deterministic (fixed seed, one thread, double precision, full-batch Adam) and
//! stops early on a validation window: the last part of the training days, in time order.
//! Only days whose targets end by `upto` are used.

use foresight_core::features::{REGIME_FEATURES, feature_window};
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};

use crate::error::{DataError, Result};
use crate::evaluate::realized_mean;
use foresight_core::regime::stressed_within;

const WIDTH: usize = REGIME_FEATURES.len();

/// Hyper-parameters of the neural forecaster.
#[derive(Debug, Clone, PartialEq)]
pub struct NeuralParams {
    window: usize,
    hidden: [usize; 2],
    horizons: Vec<usize>,
    max_epochs: usize,
    patience: usize,
    learning_rate: f64,
    weight_decay: f64,
    validation_fraction: f64,
    seed: i64,
}

/// One epoch's losses, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Epoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// The epoch limit.
    pub max_epochs: usize,
    /// Training loss (MSE of standardised log RV + binary cross-entropy of the regime).
    pub train_loss: f64,
    /// The same loss on the validation window.
    pub validation_loss: f64,
    /// Best validation loss so far.
    pub best_validation_loss: f64,
}

fn fit_error(message: impl Into<String>) -> DataError {
    DataError::Fit { model: "neural".into(), message: message.into() }
}

impl NeuralParams {
    /// Defaults: 10-day window, hidden layers 32 and 16 (tanh), up to 400 epochs with patience
    /// 40, Adam at 3e-3 with weight decay 1e-4, the last 20% of training days for validation,
    /// seed 42.
    pub fn new(horizons: &[usize]) -> Self {
        Self {
            window: 10,
            hidden: [32, 16],
            horizons: horizons.to_vec(),
            max_epochs: 400,
            patience: 40,
            learning_rate: 3e-3,
            weight_decay: 1e-4,
            validation_fraction: 0.2,
            seed: 42,
        }
    }

    /// Days of features per input (≥ 1, see [`check`](Self::check)).
    pub fn window(mut self, window: usize) -> Self {
        self.window = window;
        self
    }

    /// Epoch limit (≥ 1, see [`check`](Self::check)).
    pub fn max_epochs(mut self, max_epochs: usize) -> Self {
        self.max_epochs = max_epochs;
        self
    }

    /// Random seed of the weight initialisation (any value).
    pub fn seed(mut self, seed: i64) -> Self {
        self.seed = seed;
        self
    }

    /// Rejects a hyper-parameter outside its domain, naming it and its value: horizons (at
    /// least one, each ≥ 1, distinct), window, hidden units, max_epochs and patience ≥ 1, a
    /// finite learning rate > 0, a finite weight decay ≥ 0 and a validation fraction in (0, 1).
    /// The seed may be any value.
    pub fn check(&self) -> Result<()> {
        let invalid = |name: &str, domain: &str, value: &dyn std::fmt::Display| Err(super::invalid("neural", name, domain, value));
        super::check_horizons("neural", &self.horizons)?;
        if self.window == 0 {
            return invalid("window", "≥ 1 day", &self.window);
        }
        if self.hidden.contains(&0) {
            return invalid("hidden", "≥ 1 unit per layer", &format!("{:?}", self.hidden));
        }
        if self.max_epochs == 0 {
            return invalid("max_epochs", "≥ 1", &self.max_epochs);
        }
        if self.patience == 0 {
            return invalid("patience", "≥ 1 epoch", &self.patience);
        }
        // `!(x > 0.0)` is also true of NaN, which a plain `x <= 0.0` would let through.
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return invalid("learning_rate", "finite and > 0", &self.learning_rate);
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return invalid("weight_decay", "finite and ≥ 0", &self.weight_decay);
        }
        if !(self.validation_fraction > 0.0 && self.validation_fraction < 1.0) {
            return invalid("validation_fraction", "in (0, 1)", &self.validation_fraction);
        }
        Ok(())
    }

    /// Fits on the days `..=upto`: `features` per day, `rv` the daily realized variance the
    /// variance heads target, `labels` each day's regime (stressed = `states − 1`, `states` ≥ 2).
    pub fn fit(
        &self,
        features: &[Option<[f64; WIDTH]>],
        rv: &[Option<f64>],
        labels: &[Option<usize>],
        states: usize,
        upto: usize,
        on_epoch: &mut dyn FnMut(&Epoch),
    ) -> Result<FittedNeural> {
        self.check()?;
        if states < 2 {
            return Err(super::invalid("neural", "states", "≥ 2 (calm and stressed at least)", states));
        }
        let k = self.horizons.len();
        // Rows: origins whose window and every target are known by `upto`.
        let mut rows = Vec::new();
        for t in 0..=upto.min(features.len().saturating_sub(1)) {
            let Some(x) = feature_window(features, t, self.window) else { continue };
            let targets: Option<Vec<f64>> =
                self.horizons.iter().map(|&h| if t + h <= upto { realized_mean(rv, t, h).map(f64::ln) } else { None }).collect();
            let events: Option<Vec<f64>> =
                self.horizons.iter().map(|&h| if t + h <= upto { stressed_within(labels, t, h, states).map(|y| y as u8 as f64) } else { None }).collect();
            if let (Some(y), Some(e)) = (targets, events) {
                rows.push((x, y, e));
            }
        }
        let n_val = ((rows.len() as f64) * self.validation_fraction).round() as usize;
        if rows.len() < 300 || n_val < 50 {
            return Err(fit_error(format!("needs ≥ 300 training rows with complete targets, has {}", rows.len())));
        }
        let n_train = rows.len() - n_val;
        let input = self.window * WIDTH;
        // Standardisation from the training part only.
        let (mut mean, mut sd) = (vec![0.0; WIDTH], vec![1.0; WIDTH]);
        for j in 0..WIDTH {
            let column: Vec<f64> = rows[..n_train].iter().map(|(x, _, _)| x[x.len() - WIDTH + j]).collect();
            let (m, s) = mean_sd(&column);
            mean[j] = m;
            sd[j] = s;
        }
        let (mut y_mean, mut y_sd) = (vec![0.0; k], vec![1.0; k]);
        for i in 0..k {
            let column: Vec<f64> = rows[..n_train].iter().map(|(_, y, _)| y[i]).collect();
            (y_mean[i], y_sd[i]) = mean_sd(&column);
        }
        let tensors = |part: &[(Vec<f64>, Vec<f64>, Vec<f64>)]| {
            let x: Vec<f64> = part.iter().flat_map(|(x, _, _)| x.iter().enumerate().map(|(i, v)| (v - mean[i % WIDTH]) / sd[i % WIDTH])).collect();
            let y: Vec<f64> = part.iter().flat_map(|(_, y, _)| y.iter().enumerate().map(|(i, v)| (v - y_mean[i]) / y_sd[i])).collect();
            let e: Vec<f64> = part.iter().flat_map(|(_, _, e)| e.iter().copied()).collect();
            let n = part.len() as i64;
            (
                Tensor::from_slice(&x).reshape([n, input as i64]),
                Tensor::from_slice(&y).reshape([n, k as i64]),
                Tensor::from_slice(&e).reshape([n, k as i64]),
            )
        };
        let (x_train, y_train, e_train) = tensors(&rows[..n_train]);
        let (x_val, y_val, e_val) = tensors(&rows[n_train..]);

        tch::manual_seed(self.seed);
        tch::set_num_threads(1);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let sizes = [input, self.hidden[0], self.hidden[1], 2 * k];
        let layers: Vec<nn::Linear> = (0..3)
            .map(|i| nn::linear(vs.root() / format!("layer{i}"), sizes[i] as i64, sizes[i + 1] as i64, Default::default()))
            .collect();
        vs.double();
        let forward = |x: &Tensor| layers[2].forward(&layers[1].forward(&layers[0].forward(x).tanh()).tanh());
        let loss = |x: &Tensor, y: &Tensor, e: &Tensor| {
            let out = forward(x);
            let vol = out.narrow(1, 0, k as i64);
            let logits = out.narrow(1, k as i64, k as i64);
            vol.mse_loss(y, Reduction::Mean) + logits.binary_cross_entropy_with_logits::<Tensor>(e, None, None, Reduction::Mean)
        };
        let mut opt = nn::Adam::default().wd(self.weight_decay).build(&vs, self.learning_rate).map_err(|e| fit_error(e.to_string()))?;
        let scalar = |t: &Tensor| t.double_value(&[]);
        let (mut best, mut best_epoch) = (f64::INFINITY, 0usize);
        let mut best_weights: Vec<Tensor> = Vec::new();
        let mut epochs = 0;
        for epoch in 1..=self.max_epochs {
            epochs = epoch;
            let train_loss = loss(&x_train, &y_train, &e_train);
            opt.backward_step(&train_loss);
            let validation_loss = tch::no_grad(|| scalar(&loss(&x_val, &y_val, &e_val)));
            if !validation_loss.is_finite() {
                return Err(fit_error(format!("epoch {epoch}: the validation loss is not finite")));
            }
            if validation_loss < best {
                best = validation_loss;
                best_epoch = epoch;
                best_weights = layers.iter().flat_map(|l| [l.ws.copy(), l.bs.as_ref().expect("bias").copy()]).collect();
            }
            on_epoch(&Epoch { epoch, max_epochs: self.max_epochs, train_loss: scalar(&train_loss), validation_loss, best_validation_loss: best });
            if epoch - best_epoch >= self.patience {
                break;
            }
        }
        let to_vec = |t: &Tensor| Vec::<f64>::try_from(&t.flatten(0, -1)).map_err(|e| fit_error(e.to_string()));
        let mut dense = Vec::new();
        for (i, pair) in best_weights.chunks(2).enumerate() {
            dense.push(Dense { inputs: sizes[i], outputs: sizes[i + 1], weight: to_vec(&pair[0])?, bias: to_vec(&pair[1])? });
        }
        let mut fitted = FittedNeural {
            window: self.window,
            horizons: self.horizons.clone(),
            feature_mean: mean,
            feature_sd: sd,
            target_mean: y_mean,
            target_sd: y_sd,
            log_variance_correction: vec![0.0; k],
            layers: dense,
            epochs,
            best_epoch,
            best_validation_loss: best,
            training_rows: n_train,
            validation_rows: n_val,
        };
        // Lognormal bias correction from the validation residuals of ln RV, as log-HAR does.
        let predictions: Vec<Vec<f64>> = rows[n_train..].iter().map(|(x, _, _)| fitted.forward(x)).collect();
        for i in 0..k {
            let resid: Vec<f64> = rows[n_train..]
                .iter()
                .zip(&predictions)
                .map(|((_, y, _), p)| y[i] - (p[i] * fitted.target_sd[i] + fitted.target_mean[i]))
                .collect();
            let (_, s) = mean_sd(&resid);
            fitted.log_variance_correction[i] = 0.5 * s * s;
        }
        Ok(fitted)
    }
}

fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(2) as f64;
    let m = values.iter().sum::<f64>() / values.len().max(1) as f64;
    let v = values.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, if v > 0.0 { v.sqrt() } else { 1.0 })
}

/// A dense layer's parameters as tch stores them: `weight` is `[outputs, inputs]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    /// Input width.
    pub inputs: usize,
    /// Output width.
    pub outputs: usize,
    /// `[outputs, inputs]`, row-major.
    pub weight: Vec<f64>,
    /// `[outputs]`.
    pub bias: Vec<f64>,
}

/// A trained neural forecaster (the weights of its best validation epoch).
#[derive(Debug, Clone, PartialEq)]
pub struct FittedNeural {
    window: usize,
    horizons: Vec<usize>,
    feature_mean: Vec<f64>,
    feature_sd: Vec<f64>,
    target_mean: Vec<f64>,
    target_sd: Vec<f64>,
    log_variance_correction: Vec<f64>,
    layers: Vec<Dense>,
    epochs: usize,
    best_epoch: usize,
    best_validation_loss: f64,
    training_rows: usize,
    validation_rows: usize,
}

/// One forecast: mean daily variance and P(stressed regime) per horizon.
#[derive(Debug, Clone, PartialEq)]
pub struct NeuralForecast {
    /// Mean daily variance over the next `h` days, per horizon.
    pub variance: Vec<f64>,
    /// P(stressed regime within `h` days), per horizon.
    pub p_high_regime: Vec<f64>,
}

impl FittedNeural {
    /// Days per input.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Horizons.
    pub fn horizons(&self) -> &[usize] {
        &self.horizons
    }

    /// The dense layers, input first (tanh after all but the last).
    pub fn layers(&self) -> &[Dense] {
        &self.layers
    }

    /// Per-feature (mean, sd) standardising each day's features.
    pub fn feature_scaling(&self) -> (&[f64], &[f64]) {
        (&self.feature_mean, &self.feature_sd)
    }

    /// Per horizon: log variance = `output × scale + shift` (shift includes the lognormal
    /// bias correction).
    pub fn variance_head(&self) -> (Vec<f64>, Vec<f64>) {
        let shift = self.target_mean.iter().zip(&self.log_variance_correction).map(|(m, c)| m + c).collect();
        (self.target_sd.clone(), shift)
    }

    /// (epochs run, best epoch, best validation loss, training rows, validation rows).
    pub fn training_summary(&self) -> (usize, usize, f64, usize, usize) {
        (self.epochs, self.best_epoch, self.best_validation_loss, self.training_rows, self.validation_rows)
    }

    /// Raw network outputs for one flattened window, computed by libtorch.
    fn forward(&self, row: &[f64]) -> Vec<f64> {
        let x: Vec<f64> = row.iter().enumerate().map(|(i, v)| (v - self.feature_mean[i % WIDTH]) / self.feature_sd[i % WIDTH]).collect();
        let mut h = Tensor::from_slice(&x).reshape([1, x.len() as i64]);
        for (i, l) in self.layers.iter().enumerate() {
            let w = Tensor::from_slice(&l.weight).reshape([l.outputs as i64, l.inputs as i64]);
            let b = Tensor::from_slice(&l.bias);
            h = h.linear(&w, Some(&b));
            if i + 1 < self.layers.len() {
                h = h.tanh();
            }
        }
        Vec::<f64>::try_from(&h.flatten(0, -1).to_kind(Kind::Double)).unwrap_or_default()
    }

    /// Forecast from one flattened window (see `foresight_core::features::feature_window`).
    pub fn predict(&self, row: &[f64]) -> NeuralForecast {
        let out = self.forward(row);
        let k = self.horizons.len();
        let (scale, shift) = self.variance_head();
        NeuralForecast {
            variance: (0..k).map(|i| (out[i] * scale[i] + shift[i]).exp()).collect(),
            p_high_regime: (0..k).map(|i| 1.0 / (1.0 + (-out[k + i]).exp())).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each hyper-parameter outside its domain is refused by `check` and by `fit`, with a
    /// message naming the parameter and the value; the defaults pass.
    #[test]
    fn bad_hyper_parameters_are_rejected_naming_the_value() {
        let good = NeuralParams::new(&[1, 5]);
        good.check().unwrap();
        let cases = [
            (NeuralParams::new(&[]), "horizons must be at least one horizon, got []"),
            (NeuralParams::new(&[1, 0]), "horizons must be ≥ 1 day each, got [1, 0]"),
            (NeuralParams::new(&[5, 1, 5]), "horizons must be distinct, got [5, 1, 5]"),
            (good.clone().window(0), "window must be ≥ 1 day, got 0"),
            (good.clone().max_epochs(0), "max_epochs must be ≥ 1, got 0"),
            (NeuralParams { hidden: [32, 0], ..good.clone() }, "hidden must be ≥ 1 unit per layer, got [32, 0]"),
            (NeuralParams { patience: 0, ..good.clone() }, "patience must be ≥ 1 epoch, got 0"),
            (NeuralParams { learning_rate: 0.0, ..good.clone() }, "learning_rate must be finite and > 0, got 0"),
            (NeuralParams { learning_rate: -1e-3, ..good.clone() }, "learning_rate must be finite and > 0, got -0.001"),
            (NeuralParams { learning_rate: f64::NAN, ..good.clone() }, "learning_rate must be finite and > 0, got NaN"),
            (NeuralParams { weight_decay: -1e-4, ..good.clone() }, "weight_decay must be finite and ≥ 0, got -0.0001"),
            (NeuralParams { weight_decay: f64::INFINITY, ..good.clone() }, "weight_decay must be finite and ≥ 0, got inf"),
            (NeuralParams { validation_fraction: 0.0, ..good.clone() }, "validation_fraction must be in (0, 1), got 0"),
            (NeuralParams { validation_fraction: 1.0, ..good.clone() }, "validation_fraction must be in (0, 1), got 1"),
            (NeuralParams { validation_fraction: f64::NAN, ..good.clone() }, "validation_fraction must be in (0, 1), got NaN"),
        ];
        for (params, want) in cases {
            let want = format!("fitting neural: {want}");
            assert_eq!(params.check().unwrap_err().to_string(), want);
            // `fit` checks before it looks at the data (none here).
            assert_eq!(params.fit(&[], &[], &[], 3, 0, &mut |_| {}).unwrap_err().to_string(), want);
        }
        let message = good.fit(&[], &[], &[], 1, 0, &mut |_| {}).unwrap_err().to_string();
        assert_eq!(message, "fitting neural: states must be ≥ 2 (calm and stressed at least), got 1");
        // Good values reach the data, which here is too short.
        let message = good.fit(&[], &[], &[], 3, 0, &mut |_| {}).unwrap_err().to_string();
        assert!(message.contains("needs ≥ 300 training rows"), "{message}");
    }

    /// Good values at the edge of their domains (window 1, one epoch, patience 1) still train.
    #[test]
    fn edge_values_still_fit() {
        let mut state: u64 = 3;
        let mut uniform = move || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let n = 420;
        let features: Vec<Option<[f64; WIDTH]>> = (0..n).map(|_| Some(std::array::from_fn(|_| uniform()))).collect();
        let rv: Vec<Option<f64>> = (0..n).map(|_| Some((1.0 + uniform()) * 1e-4)).collect();
        let labels: Vec<Option<usize>> = (0..n).map(|t| Some(if t % 7 == 0 { 1 } else { 0 })).collect();
        let params = NeuralParams { patience: 1, ..NeuralParams::new(&[1]).window(1).max_epochs(1) };
        let mut epochs = 0;
        let fit = params.fit(&features, &rv, &labels, 2, n - 1, &mut |_| epochs += 1).unwrap();
        assert_eq!((fit.window(), fit.horizons(), fit.training_summary().0, epochs), (1, &[1][..], 1, 1));
    }
}
