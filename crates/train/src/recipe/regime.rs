//! Regime-aware models of a recipe: the regime model (mixture + logistic) and the neural
//! forecaster (tch) with its variance and regime heads.

use foresight_core::calibrate::ModelName;
use foresight_core::features::{feature_window, regime_features};
use foresight_core::forecast::{brier, calibration_table, mincer_zarnowitz, qlike};
use foresight_core::regime::stressed_within;
use foresight_registry::{GoldenRow, HorizonMetrics, Task};
use serde_json::json;

use super::{Built, Export, Progress, Recipe, target_name, variance_outputs};
use crate::error::Result;
use crate::evaluate::{DailyHistory, Forecaster, WalkForward, forecast_variances, realized_mean};
use crate::fit::{Epoch, NeuralForecast, NeuralParams, RegimeParams, transition_frequencies};
use crate::onnx::{export_neural, export_regime};

/// The regime model: mixture and logistic regressions fitted at `t_end` and frozen; scored by
/// Brier score against the training-window frequency of the event.
pub(super) fn build_regime(recipe: &Recipe, history: &DailyHistory, t_end: usize, metadata: &[(String, String)]) -> Result<Built> {
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

/// The neural forecaster: trained once on the training window (early-stopped on its last
/// fifth) and frozen; scored by QLIKE against EWMA, with frozen log-HAR's QLIKE and the regime
/// head's Brier score beside it.
pub(super) fn build_neural(
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
    let origins: Vec<(usize, Vec<f64>)> = (t_end..features.len()).filter_map(|t| feature_window(&features, t, fit.window()).map(|r| (t, r))).collect();
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
            if let (Some(rv), Some(e), Some(l)) = (realized_mean(&history.rv, *t, h), ewma[k][*t], log_har[k][*t]) {
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
