//! Variance forecasters of a recipe: GARCH-family and HAR (walk-forward scored) and HAR-X with
//! its exogenous input and in-graph log-HAR fallback.

use foresight_core::calibrate::ModelName;
use foresight_core::features::{HarComponents, har_components};
use foresight_core::forecast::{mincer_zarnowitz, qlike};
use foresight_registry::card::DataRef;
use foresight_registry::verify::sha256_hex;
use foresight_registry::{GoldenRow, HorizonMetrics, Task};
use serde_json::json;

use super::{Built, Export, Recipe, target_name, variance_outputs};
use crate::data::{ExogenousSpec, Frequency, load_exogenous};
use crate::error::{DataError, Result};
use crate::evaluate::{DailyHistory, Forecaster, WalkForward, contiguous_percent_returns, evaluate, forecast_variances, realized_mean};
use crate::fit::{FittedHar, FittedHarX, GarchParams, HarParams, HarXParams};
use crate::onnx::{export_garch, export_har, export_har_x};

/// A GARCH-family or HAR forecaster: fitted at `t_end`, scored walk-forward against EWMA.
pub(super) fn build_volatility(
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

pub(super) fn describe(model: ModelName, rv_source: &str) -> String {
    match model {
        ModelName::Har | ModelName::LogHar => format!(
            "{} HAR-RV (Corsi 2009) on daily/weekly/monthly realized variance ({rv_source}); OLS through linfa",
            if model == ModelName::LogHar { "Log" } else { "Level" }
        ),
        _ => format!("{} fitted by maximum likelihood on percent log returns (constant mean); closed-form h-day variance", model.as_str()),
    }
}

pub(super) fn export_har_model(model: ModelName, history: &DailyHistory, t_end: usize, horizons: &[usize], metadata: &[(String, String)]) -> Result<Export> {
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

pub(super) fn export_garch_model(model: ModelName, history: &DailyHistory, t_end: usize, horizons: &[usize], metadata: &[(String, String)]) -> Result<Export> {
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

/// HAR-X: log-HAR plus the recipe's exogenous input, with the plain log-HAR of the same window
/// as its explicit fallback where the input is missing; fitted at `t_end`, frozen, scored
/// against EWMA with log-HAR beside it.
pub(super) fn build_har_x(recipe: &Recipe, frequency: &Frequency, history: &DailyHistory, t_end: usize, metadata: &[(String, String)]) -> Result<Built> {
    let spec = recipe.exogenous.as_deref().expect("checked by Recipe::check");
    let source = ExogenousSpec::parse(spec, frequency.periods_per_year()).map_err(|message| DataError::Recipe { file: "recipe".into(), message })?;
    let x = load_exogenous(&source, &history.dates)?;
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
                Some((with_x, fallback[k].predict(&c)?, ewma[k][t]?, realized_mean(&history.rv, t, h)?))
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
        "exogenous": source.to_json(),
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
        description: format!("Log-HAR + {} ({}), log-HAR where the input is missing; OLS through linfa", source.file.display(), source.transform.name()),
        export: Export { onnx, params, holdout },
        metrics,
        refit_every: None,
        target: target_name(history.rv_source),
        details,
        extra_data: vec![DataRef { path: source.file.display().to_string(), sha256: sha256_hex(&bytes) }],
        exogenous: x,
    })
}
