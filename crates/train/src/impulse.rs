//! `foresight impulse`: each arm's margin around a simulated volatility step
//! ([`foresight_core::impulse`]), with its forecasters fitted once on a real series.
//!
//! The paths are built from the real series' standardised residuals (bootstrapped, seeded);
//! calm volatility is the series' median EWMA volatility. Model arms' families are estimated
//! once on the real series' daily closes (realized variance = squared return, as on the
//! simulated paths) and then only filter each path: the response is the model's own reaction
//! function, not a re-estimation on a path that has no history of volatility changes.

use std::collections::HashMap;
use std::path::Path;

use chrono::{Days, NaiveDate};
use foresight_core::calibrate::{Arm, BaseCalibrator, CalibrationParams, ModelName, SideRates};
use foresight_core::features::{Ewma, Side};
use foresight_core::impulse::{Response, StepScenario, standardized_residuals, summarize};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::{GapReport, Values, load_daily_closes};
use crate::error::{DataError, Result};
use crate::evaluate::{ArmInputs, ByHorizon, DailyHistory, FrozenForecaster, policy_rates};

/// Settings of an impulse experiment.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ImpulseSettings {
    /// The volatility multipliers at day 0, e.g. 2, 3, 5.
    pub steps: Vec<f64>,
    /// Paths per step.
    pub paths: usize,
    /// Seed of the path generator (ChaCha8).
    pub seed: u64,
    /// Calm days before the step.
    pub calm_days: usize,
    /// Days at the stepped volatility.
    pub high_days: usize,
    /// Calm days after.
    pub after_days: usize,
    /// Days before the step shown in the curves.
    pub show_before: usize,
    /// Margin confidence.
    pub confidence: f64,
    /// Margin period of risk in days.
    pub horizon: usize,
}

/// One arm's response to one step.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ArmResponse {
    /// The arm, canonical.
    pub arm: String,
    /// The step.
    pub step: f64,
    /// What its margin did.
    pub response: Response,
}

/// An impulse run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ImpulseRun {
    /// The real series the residuals and fits come from.
    pub data: String,
    /// Its residuals' count.
    pub residuals: usize,
    /// Calm daily volatility of the paths.
    pub sigma: f64,
    /// The settings.
    pub settings: ImpulseSettings,
    /// Per arm and step, arms in the order given.
    pub responses: Vec<ArmResponse>,
}

/// Runs every arm over `settings.paths` simulated paths per step, built from `data`'s
/// residuals; `residuals` replaces them when given (tests use ±1 to get exact curves).
pub fn run_impulse(data: &Path, arms: &[Arm], settings: &ImpulseSettings, residuals: Option<Vec<f64>>) -> Result<ImpulseRun> {
    let real = load_daily_closes(data)?;
    let params = CalibrationParams::new(settings.confidence, settings.horizon, real.frequency.periods_per_year())?;
    let history = DailyHistory::from_closes(&real);
    let returns: Vec<f64> = history.returns.iter().flatten().copied().collect();
    let residuals = match residuals {
        Some(r) => r,
        None => standardized_residuals(&returns, Ewma::RISKMETRICS_LAMBDA)?,
    };
    // Calm volatility: the real series' median EWMA volatility.
    let mut vols: Vec<f64> = Ewma::new(Ewma::RISKMETRICS_LAMBDA)?.variance_series(&returns).into_iter().flatten().map(f64::sqrt).collect();
    vols.sort_by(f64::total_cmp);
    let sigma = vols.get(vols.len() / 2).copied().ok_or_else(|| DataError::Fit { model: "impulse".into(), message: "no volatility estimate".into() })?;

    let horizons_of = |family: ModelName| -> Vec<usize> {
        let mut h: Vec<usize> = arms.iter().filter(|a| a.base == BaseCalibrator::Model { forecaster: family }).flat_map(|a| a.policy.horizons(settings.horizon)).collect();
        h.sort_unstable();
        h.dedup();
        h
    };
    let families: Vec<ModelName> = {
        let mut f: Vec<ModelName> = arms.iter().filter_map(|a| if let BaseCalibrator::Model { forecaster } = a.base { Some(forecaster) } else { None }).collect();
        f.sort();
        f.dedup();
        f
    };
    if let Some(a) = arms.iter().find(|a| matches!(a.base, BaseCalibrator::Registered { .. })) {
        return Err(DataError::Fit { model: a.to_string(), message: "impulse responses take forecaster families (model:<family>), not registered models".into() });
    }
    let fitted: Vec<(ModelName, Vec<usize>, FrozenForecaster)> = families
        .iter()
        .map(|&f| Ok((f, horizons_of(f), FrozenForecaster::fit(f, &history, &horizons_of(f))?)))
        .collect::<Result<_>>()?;

    let mut responses = Vec::new();
    for (k, &step) in settings.steps.iter().enumerate() {
        let scenario = StepScenario { calm_days: settings.calm_days, high_days: settings.high_days, after_days: settings.after_days, sigma, step };
        scenario.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(settings.seed.wrapping_add(k as u64));
        let mut margins: Vec<Vec<Vec<f64>>> = vec![Vec::with_capacity(settings.paths); arms.len()];
        let mut exceptions: Vec<Vec<usize>> = vec![Vec::with_capacity(settings.paths); arms.len()];
        for _ in 0..settings.paths {
            let prices = path_values(&scenario.simulate(&residuals, &mut rng), &real);
            let path = DailyHistory::from_closes(&prices);
            let mut forecasts: HashMap<ModelName, ByHorizon> = HashMap::new();
            for (family, horizons, model) in &fitted {
                forecasts.insert(*family, model.forecasts(&path, horizons)?);
            }
            for (j, arm) in arms.iter().enumerate() {
                let rates = match arm.base {
                    BaseCalibrator::Model { forecaster } => {
                        // Simulated paths have no implied volatility and no regime view: `+iv` and
                        // `+regime` arms respond with their forecasts alone.
                        let base = policy_rates(arm, &forecasts[&forecaster], &ArmInputs::default(), &path, &prices, &params)?;
                        arm.with_apc(&base, &prices.values, &params)?
                    }
                    _ => arm.margin_rates(&prices.values, &params)?,
                };
                let before = settings.calm_days - 1;
                if rates[before].is_none() {
                    return Err(DataError::Fit {
                        model: arm.to_string(),
                        message: format!("has no margin after {} calm days; give it more (--calm-days)", settings.calm_days),
                    });
                }
                // A day without a rate keeps the previous one (never a later one).
                let mut last = SideRates::both(0.0);
                let posted: Vec<SideRates> = rates
                    .iter()
                    .map(|r| {
                        last = r.unwrap_or(last);
                        last
                    })
                    .collect();
                let m: Vec<f64> = posted.iter().map(|r| (r.long + r.short) / 2.0).collect();
                // Margins posted at the close of day −1 .. 8 cover the first ten stepped returns.
                let count = (before..before + 10)
                    .filter(|&t| t + settings.horizon < prices.values.len())
                    .map(|t| Side::BOTH.iter().filter(|&&s| s.loss(prices.values[t], prices.values[t + settings.horizon]) > posted[t].get(s)).count())
                    .sum();
                margins[j].push(m);
                exceptions[j].push(count);
            }
        }
        for (j, arm) in arms.iter().enumerate() {
            let response = summarize(&scenario, &margins[j], &exceptions[j], settings.show_before)?;
            responses.push(ArmResponse { arm: arm.to_string(), step, response });
        }
    }
    Ok(ImpulseRun { data: data.display().to_string(), residuals: residuals.len(), sigma, settings: settings.clone(), responses })
}

/// A simulated path as daily values on consecutive days, with the real series' calendar kind.
fn path_values(prices: &[f64], real: &Values) -> Values {
    let day0 = NaiveDate::from_ymd_opt(2000, 1, 3).unwrap_or_default();
    Values {
        source: "simulated".into(),
        name: "close".into(),
        timestamps: (0..prices.len()).map(|i| day0.checked_add_days(Days::new(i as u64)).unwrap_or(day0).and_time(chrono::NaiveTime::MIN)).collect(),
        values: prices.to_vec(),
        frequency: real.frequency,
        gaps: GapReport::default(),
    }
}
