//! Walk-forward evaluation of variance forecasters against realized variance.
//!
//! At each origin day `t` (from `train_days` on) every forecaster predicts the mean daily
//! variance of log returns over `t+1..t+h` from data up to the close of `t` only; parameters are
//! re-estimated every `refit_every` days on an expanding window and held fixed in between
//! (filters such as GARCH's variance recursion still move every day). Forecasts are scored on
//! the origins where every forecaster has one and the realized target is complete.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::NaiveDate;
use foresight_core::calibrate::{Arm, CalibrationParams, ForwardInputs, ModelName, SideRates, Stress};
use foresight_core::features::{Ewma, VolEstimator, aligned_log_returns, har_components, implied_log_variance, regime_features};
use foresight_core::forecast::{DieboldMariano, MincerZarnowitz, brier, diebold_mariano, mincer_zarnowitz, qlike, squared_error};
use foresight_core::regime::{Mixture, stressed_within};
use foresight_core::volatility::ArchData;
use serde::Serialize;

use foresight_registry::ModelCard;
use foresight_registry::inputs::{ModelInput, run_over_days};
use foresight_registry::runtime::LoadedModel;

use crate::data::{ExogenousSpec, Frequency, Ohlcv, Series, Transform, Values, load_daily_closes, load_exogenous, load_ohlcv};
use crate::error::{DataError, Result};
use crate::fit::{FittedHar, FittedHarX, GarchParams, HarParams, HarXParams};

/// Daily series a forecaster sees: log return and realized variance of each UTC day.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyHistory {
    /// The days, consecutive calendar or trading days as the source has them.
    pub dates: Vec<NaiveDate>,
    /// `ln(C[t] / C[t−1])`; `None` on the first day.
    pub returns: Vec<Option<f64>>,
    /// Realized variance of the day (`None` where missing).
    pub rv: Vec<Option<f64>>,
    /// Where the RV comes from: `intraday` or `range_gk`.
    pub rv_source: &'static str,
}

/// One day of an asset's market as a margin engine sends it to the service: close, realized
/// variance, implied volatility (annualised percent).
#[derive(Debug, Clone, PartialEq)]
pub struct MarketDay {
    /// The day.
    pub date: NaiveDate,
    /// The daily close.
    pub close: f64,
    /// Realized variance of the day.
    pub realized_variance: Option<f64>,
    /// Implied volatility of the day, annualised percent (DVOL, VIX).
    pub implied_vol_percent: Option<f64>,
}

/// The days of `bars` (realized variance as [`DailyHistory::from_bars`] computes it) that have a
/// close in the daily file `closes`, with `implied_vol` (a `date,close` file) where it has the
/// day; oldest first.
pub fn market_days(closes: &Path, bars: &Path, implied_vol: Option<&Path>) -> Result<Vec<MarketDay>> {
    let history = DailyHistory::from_bars(&load_ohlcv(bars)?)?;
    let daily = load_daily_closes(closes)?;
    let iv = match implied_vol {
        Some(file) => load_exogenous(&ExogenousSpec { file: file.to_path_buf(), transform: Transform::Last, periods_per_year: 365.0 }, &history.dates)?,
        None => vec![None; history.dates.len()],
    };
    let close_of: HashMap<NaiveDate, f64> = daily.timestamps.iter().map(|t| t.date()).zip(daily.values.iter().copied()).collect();
    Ok(history
        .dates
        .iter()
        .enumerate()
        .filter_map(|(t, d)| Some(MarketDay { date: *d, close: *close_of.get(d)?, realized_variance: history.rv[t], implied_vol_percent: iv[t] }))
        .collect())
}

impl DailyHistory {
    /// From daily closes alone (a `date,close` file, e.g. a century of an equity index): the
    /// day's realized variance is its squared log return, the noisiest estimator but the only
    /// one a close gives. `rv_source` is `squared_return`.
    pub fn from_closes(closes: &Values) -> Self {
        let returns = aligned_log_returns(&closes.values);
        Self {
            dates: closes.timestamps.iter().map(|t| t.date()).collect(),
            rv: returns.iter().map(|r| r.map(|r| r * r)).collect(),
            returns,
            rv_source: "squared_return",
        }
    }

    /// The history model arms learn from: realized variance from `rv_data`'s bars when given
    /// (intraday bars, or daily OHLC for the range), else from `data`'s own bars, and from its
    /// squared daily returns when it has closes only.
    pub fn load(data: &Path, rv_data: Option<&Path>) -> Result<Self> {
        match rv_data {
            Some(bars) => Self::from_bars(&load_ohlcv(bars)?),
            None => match crate::data::load(data)? {
                Series::Ohlcv(bars) => Self::from_bars(&bars),
                Series::Values(_) => Ok(Self::from_closes(&load_daily_closes(data)?)),
            },
        }
    }

    /// The days up to `last` only (what a run that stops there may see).
    pub fn through(mut self, last: NaiveDate) -> Self {
        let keep = self.dates.partition_point(|d| *d <= last);
        self.dates.truncate(keep);
        self.returns.truncate(keep);
        self.rv.truncate(keep);
        self
    }

    /// From intraday bars: RV from the bars (see `Ohlcv::daily_realized_variance`), returns from
    /// the aggregated daily closes; from daily bars: each day's Garman-Klass range variance.
    pub fn from_bars(bars: &Ohlcv) -> Result<Self> {
        let daily = bars.to_daily();
        let dates: Vec<NaiveDate> = daily.timestamps.iter().map(|t| t.date()).collect();
        let returns = std::iter::once(None)
            .chain(daily.bars.windows(2).map(|w| Some((w[1].close / w[0].close).ln())))
            .collect();
        let (rv, rv_source) = match bars.frequency {
            Frequency::Intraday { .. } => {
                let by_day: HashMap<NaiveDate, Option<f64>> =
                    bars.daily_realized_variance()?.into_iter().map(|(d, r)| (d, r.rv)).collect();
                (dates.iter().map(|d| by_day.get(d).copied().flatten()).collect(), "intraday")
            }
            Frequency::Daily { .. } => {
                (daily.bars.iter().map(|b| VolEstimator::GarmanKlass.variance(&[*b]).ok()).collect(), "range_gk")
            }
        };
        Ok(Self { dates, returns, rv, rv_source })
    }
}

/// A variance forecaster under evaluation: the reactive EWMA baseline or one of the models a
/// `model:<name>` arm can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forecaster {
    /// RiskMetrics EWMA (λ = 0.94) of daily returns, flat over the horizon.
    Ewma,
    /// A GARCH-family model (analytic multi-step forecast) or HAR-RV (levels or logs).
    Model(ModelName),
}

impl Forecaster {
    /// Parses `ewma` or a model name (`garch`, `garch-t`, `gjr`, `gjr-t`, `har`, `log-har`).
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim() {
            "ewma" => Some(Forecaster::Ewma),
            other => ModelName::parse(other).map(Forecaster::Model),
        }
    }

    /// The name [`parse`](Self::parse) takes.
    pub fn name(&self) -> &'static str {
        match self {
            Forecaster::Ewma => "ewma",
            Forecaster::Model(m) => m.as_str(),
        }
    }
}

/// Walk-forward settings.
#[derive(Debug, Clone, PartialEq)]
pub struct WalkForward {
    /// Days before the first forecast origin (the first training window).
    pub train_days: usize,
    /// Re-estimate every this many days.
    pub refit_every: usize,
    /// Horizons in days.
    pub horizons: Vec<usize>,
}

/// Scores of one forecaster at one horizon.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    /// Forecaster name.
    pub model: String,
    /// Horizon in days.
    pub horizon: usize,
    /// Scored origins.
    pub n: usize,
    /// Mean QLIKE loss.
    pub qlike: f64,
    /// Mean squared error of the variance forecast, in (percent²)².
    pub mse: f64,
    /// Mincer-Zarnowitz regression of realized on forecast variance.
    pub mincer_zarnowitz: MincerZarnowitz,
    /// Diebold-Mariano on QLIKE against log-HAR (negative statistic: this model is better).
    pub dm_vs_log_har: Option<DieboldMariano>,
    /// Diebold-Mariano on QLIKE against GARCH(1,1)-normal.
    pub dm_vs_garch: Option<DieboldMariano>,
}

/// The forecast target of origin `t`: the mean daily realized variance over `t+1..=t+h`, when
/// every one of those days has a positive RV.
pub fn realized_mean(rv: &[Option<f64>], t: usize, h: usize) -> Option<f64> {
    if h == 0 || t + h >= rv.len() {
        return None;
    }
    let sum = rv[t + 1..=t + h].iter().try_fold(0.0, |s, v| v.filter(|v| *v > 0.0).map(|v| s + v))?;
    Some(sum / h as f64)
}

/// Runs every forecaster over `history` and scores it at every horizon.
pub fn evaluate(history: &DailyHistory, forecasters: &[Forecaster], config: &WalkForward) -> Result<Vec<Scores>> {
    Ok(evaluate_with(history, forecasters, Vec::new(), config)?.0)
}

/// Forecasts by model name: `[horizon index][day]`, as [`forecast_variances`] returns them.
pub type NamedForecasts = Vec<(String, Vec<Vec<Option<f64>>>)>;

/// [`evaluate`], plus forecasts made elsewhere (`(name, [horizon index][day])`, e.g. a
/// registered model's [`registered_forecasts`]) scored on the same origins. Returns the scores
/// and every model's forecasts.
pub fn evaluate_with(
    history: &DailyHistory,
    forecasters: &[Forecaster],
    precomputed: NamedForecasts,
    config: &WalkForward,
) -> Result<(Vec<Scores>, NamedForecasts)> {
    let n = history.dates.len();
    let max_h = config.horizons.iter().copied().max().unwrap_or(1);
    if config.horizons.is_empty() || config.horizons.contains(&0) || config.refit_every == 0 {
        return Err(DataError::Fit { model: "walk-forward".into(), message: "horizons and refit_every must be ≥ 1".into() });
    }
    if config.train_days < 250 || config.train_days + max_h + 30 > n {
        return Err(DataError::Fit {
            model: "walk-forward".into(),
            message: format!("train_days {} must be ≥ 250 and leave ≥ 30 origins before the last {max_h} days of {n}", config.train_days),
        });
    }
    // forecasts[model][horizon index][origin]
    let mut forecasts: Vec<Vec<Vec<Option<f64>>>> =
        forecasters.iter().map(|f| run(*f, history, config)).collect::<Result<_>>()?;
    let mut names: Vec<String> = forecasters.iter().map(|f| f.name().to_string()).collect();
    for (name, f) in precomputed {
        if f.len() != config.horizons.len() || f.iter().any(|row| row.len() != n) {
            return Err(DataError::Fit { model: name, message: "forecasts do not cover every horizon and day".into() });
        }
        names.push(name);
        forecasts.push(f);
    }
    let target = |t: usize, h: usize| realized_mean(&history.rv, t, h);
    let mut out = Vec::new();
    for (k, &h) in config.horizons.iter().enumerate() {
        let origins: Vec<usize> = (config.train_days..n)
            .filter(|&t| target(t, h).is_some_and(|v| v > 0.0) && forecasts.iter().all(|f| f[k][t].is_some_and(|v| v > 0.0)))
            .collect();
        let realized: Vec<f64> = origins.iter().filter_map(|&t| target(t, h)).collect();
        let losses: Vec<Vec<f64>> = forecasts
            .iter()
            .map(|f| qlike(&origins.iter().filter_map(|&t| f[k][t]).collect::<Vec<_>>(), &realized))
            .collect::<std::result::Result<_, _>>()?;
        let reference = |name: &str| names.iter().position(|f| f == name);
        for (m, name) in names.iter().enumerate() {
            let predicted: Vec<f64> = origins.iter().filter_map(|&t| forecasts[m][k][t]).collect();
            let pct2 = |v: &[f64]| v.iter().map(|x| x * 1e4).collect::<Vec<_>>();
            let mse = squared_error(&pct2(&predicted), &pct2(&realized))?;
            let dm = |r: Option<usize>| -> Result<Option<DieboldMariano>> {
                match r {
                    Some(r) if r != m => Ok(Some(diebold_mariano(&losses[m], &losses[r], h)?)),
                    _ => Ok(None),
                }
            };
            out.push(Scores {
                model: name.clone(),
                horizon: h,
                n: origins.len(),
                qlike: losses[m].iter().sum::<f64>() / origins.len() as f64,
                mse: mse.iter().sum::<f64>() / origins.len() as f64,
                mincer_zarnowitz: mincer_zarnowitz(&predicted, &realized)?,
                dm_vs_log_har: dm(reference("log-har"))?,
                dm_vs_garch: dm(reference("garch"))?,
            });
        }
    }
    Ok((out, names.into_iter().zip(forecasts).collect()))
}

/// Forecasts of one forecaster: `[horizon index][origin] -> mean daily variance over the next
/// `h` days`, made at the close of each origin from data up to it (walk-forward, as in
/// [`evaluate`]); `None` before `train_days` and where inputs are missing.
pub fn forecast_variances(forecaster: Forecaster, history: &DailyHistory, config: &WalkForward) -> Result<Vec<Vec<Option<f64>>>> {
    run(forecaster, history, config)
}

fn run(forecaster: Forecaster, history: &DailyHistory, config: &WalkForward) -> Result<Vec<Vec<Option<f64>>>> {
    let n = history.dates.len();
    let mut out = vec![vec![None; n]; config.horizons.len()];
    let refit = |t: usize| (t - config.train_days).is_multiple_of(config.refit_every);
    let garch_spec = match forecaster {
        Forecaster::Model(model) => model.garch_spec(),
        Forecaster::Ewma => None,
    };
    match (forecaster, garch_spec) {
        (Forecaster::Ewma, _) => {
            let returns: Vec<f64> = history.returns.iter().skip(1).map(|r| r.unwrap_or(0.0)).collect();
            let var = Ewma::new(Ewma::RISKMETRICS_LAMBDA)?.variance_series(&returns);
            for t in config.train_days..n {
                for row in out.iter_mut() {
                    row[t] = var[t - 1];
                }
            }
        }
        (_, Some((asymmetric, innovation))) => {
            let pct = contiguous_percent_returns(history)?;
            let params = GarchParams::new(asymmetric).innovation(innovation);
            let mut fitted = None;
            // σ² of the latest known return (pct[t − 1]) under the current parameters.
            let mut last_sigma2 = 0.0;
            for t in config.train_days..n {
                // Returns 1..=t are known at the close of t: pct[..t].
                if refit(t) {
                    let fit = match &fitted {
                        Some(previous) => params.refit(&pct[..t], previous)?,
                        None => params.fit(&pct[..t])?,
                    };
                    // Filter the fit sample once (arch's backcast and bounds) ...
                    let sigma2 = fit.model().conditional_variance(fit.params(), &ArchData::new(&pct[..t])?);
                    last_sigma2 = sigma2[t - 1];
                    fitted = Some(fit);
                } else if let Some(fit) = &fitted {
                    // ... then extend the recursion one day at a time until the next refit.
                    let (mu, vol, _) = fit.model().split(fit.params());
                    last_sigma2 = fit.model().volatility.forecast(vol, pct[t - 2] - mu, last_sigma2, 1)[0];
                }
                let Some(fit) = &fitted else { continue };
                for (k, mean) in garch_mean_variances(fit, pct[t - 1], last_sigma2, &config.horizons).into_iter().enumerate() {
                    out[k][t] = Some(mean);
                }
            }
        }
        (Forecaster::Model(ModelName::Neural), None) => {
            return Err(DataError::Fit {
                model: "neural".into(),
                message: "is trained walk-forward for model:neural arms (foresight backtest/frontier); evaluate registered neural models by name".into(),
            });
        }
        (Forecaster::Model(ModelName::HarX), None) => {
            return Err(DataError::Fit {
                model: "har-x".into(),
                message: "needs its implied-volatility input: use a model:har-x arm with --iv-data (or evaluate --exog)".into(),
            });
        }
        (Forecaster::Model(model), None) => {
            let components = har_components(&history.rv);
            for (k, &h) in config.horizons.iter().enumerate() {
                let params = if model == ModelName::LogHar { HarParams::log(h) } else { HarParams::levels(h) };
                // Checked here: `refitted` below takes a failed fit for a window still too short.
                params.check()?;
                let mut fitted: Option<FittedHar> = None;
                for t in config.train_days..n {
                    if refit(t) {
                        // A long horizon needs more days than the burn-in gives (a target of
                        // 125 days is known 125 days late): no forecast until it can be fitted.
                        fitted = refitted(fitted, params.fit_components(&history.rv, &components, t));
                    }
                    out[k][t] = fitted.and_then(|f| components[t].and_then(|c| f.predict(&c)));
                }
            }
        }
    }
    Ok(out)
}

/// A forecaster whose parameters were estimated once, on all of one history, and are then held
/// fixed while it filters other histories: a model's reaction function, as an impulse-response
/// experiment needs it.
#[derive(Debug, Clone)]
pub enum FrozenForecaster {
    /// GARCH family: the fit.
    Garch(crate::fit::FittedGarch),
    /// HAR family: one regression per horizon.
    Har(Vec<(usize, FittedHar)>),
}

impl FrozenForecaster {
    /// Estimates `forecaster` on all of `fit_on` for `horizons`.
    pub fn fit(forecaster: ModelName, fit_on: &DailyHistory, horizons: &[usize]) -> Result<Self> {
        if forecaster == ModelName::Neural {
            return Err(DataError::Fit { model: "neural".into(), message: "has no fixed-parameter filter for impulse paths yet; use har, log-har or a GARCH family".into() });
        }
        Ok(match forecaster.garch_spec() {
            Some((asymmetric, innovation)) => {
                Self::Garch(GarchParams::new(asymmetric).innovation(innovation).fit(&contiguous_percent_returns(fit_on)?)?)
            }
            None => {
                // HAR-X without its input is log-HAR (impulse paths have no implied volatility).
                let params = |h: usize| if matches!(forecaster, ModelName::LogHar | ModelName::HarX) { HarParams::log(h) } else { HarParams::levels(h) };
                Self::Har(horizons.iter().map(|&h| Ok((h, params(h).fit(&fit_on.rv, fit_on.rv.len() - 1)?))).collect::<Result<_>>()?)
            }
        })
    }

    /// Forecasts at every day of `history` (by horizon, aligned with it), for the horizons
    /// `horizons` (a HAR forecaster only has those it was fitted for). Variance filters
    /// (GARCH's recursion, HAR's averages) start from `history`'s own first days.
    pub fn forecasts(&self, history: &DailyHistory, horizons: &[usize]) -> Result<ByHorizon> {
        let n = history.dates.len();
        let mut out = ByHorizon::new();
        match self {
            Self::Garch(fit) => {
                let pct = contiguous_percent_returns(history)?;
                let sigma2 = fit.model().conditional_variance(fit.params(), &ArchData::new(&pct)?);
                // Day t knows returns 1..=t, i.e. pct[..t]; the path starts after pct[t − 1].
                let means: Vec<Option<Vec<f64>>> = (0..n).map(|t| (t >= 1).then(|| garch_mean_variances(fit, pct[t - 1], sigma2[t - 1], horizons))).collect();
                for (k, &h) in horizons.iter().enumerate() {
                    out.insert(h, means.iter().map(|m| m.as_ref().map(|m| m[k])).collect());
                }
            }
            Self::Har(fits) => {
                let components = har_components(&history.rv);
                for (h, fitted) in fits.iter().filter(|(h, _)| horizons.contains(h)) {
                    out.insert(*h, components.iter().map(|c| c.and_then(|c| fitted.predict(&c))).collect());
                }
            }
        }
        Ok(out)
    }
}

/// The rule the HAR, HAR-X, neural and regime walk-forwards follow when a re-estimation fails:
/// before a first model exists there is no forecast yet (an expanding window still too short for
/// the horizon, the input or the regimes); afterwards the last good model keeps forecasting, as
/// a live system's would. A family that never fits has no rate, which the backtest reports by
/// the arm's name. (A GARCH fit that fails is an error: it has no such warm-up.)
fn refitted<T>(current: Option<T>, attempt: Result<T>) -> Option<T> {
    attempt.ok().or(current)
}

/// A GARCH fit's forecast, made after the percent return `last_pct` whose conditional variance
/// was `sigma2`, of the mean daily variance (of log returns, not percent) over each of `horizons`.
fn garch_mean_variances(fit: &crate::fit::FittedGarch, last_pct: f64, sigma2: f64, horizons: &[usize]) -> Vec<f64> {
    let (mu, vol, _) = fit.model().split(fit.params());
    let max_h = horizons.iter().copied().max().unwrap_or(1);
    let path = fit.model().volatility.forecast(vol, last_pct - mu, sigma2, max_h);
    horizons.iter().map(|&h| path[..h].iter().sum::<f64>() / h as f64 / 1e4).collect()
}

pub(crate) fn contiguous_percent_returns(history: &DailyHistory) -> Result<Vec<f64>> {
    history.returns[1..]
        .iter()
        .enumerate()
        .map(|(i, r)| {
            r.map(|r| 100.0 * r).ok_or_else(|| DataError::Fit {
                model: "garch".into(),
                message: format!("needs a return every day; {} has none", history.dates[i + 1]),
            })
        })
        .collect()
}

/// One model's forecasts by horizon in days: `[day]` aligned with a [`DailyHistory`].
pub type ByHorizon = BTreeMap<usize, Vec<Option<f64>>>;

/// Walk-forward forecasts of `forecaster` at every one of `horizons` (see
/// [`forecast_variances`]), by horizon. HAR-X takes its regressor from `inputs`' implied
/// volatility (as log implied variance, `periods_per_year` a year) and is log-HAR where there
/// is none.
pub fn model_forecasts(
    forecaster: ModelName,
    history: &DailyHistory,
    inputs: &ArmInputs,
    periods_per_year: f64,
    (burn_in, refit_every): (usize, usize),
    horizons: &[usize],
) -> Result<ByHorizon> {
    let mut horizons = horizons.to_vec();
    horizons.sort_unstable();
    horizons.dedup();
    if forecaster == ModelName::Neural {
        return neural_forecasts(history, burn_in, refit_every, &horizons);
    }
    if inputs.implied_vol.as_ref().is_some_and(|iv| iv.len() != history.dates.len()) {
        return Err(DataError::Fit { model: forecaster.as_str().into(), message: "the implied volatility is not aligned with the history".into() });
    }
    if forecaster == ModelName::HarX {
        let x: Vec<Option<f64>> = match &inputs.implied_vol {
            Some(iv) => iv.iter().map(|v| v.and_then(|v| implied_log_variance(v, periods_per_year))).collect(),
            None => vec![None; history.dates.len()],
        };
        return har_x_forecasts(history, &x, burn_in, refit_every, &horizons);
    }
    let config = WalkForward { train_days: burn_in, refit_every, horizons: horizons.clone() };
    let forecasts = forecast_variances(Forecaster::Model(forecaster), history, &config)?;
    Ok(horizons.into_iter().zip(forecasts).collect())
}

/// The neural forecaster walk-forward: at every refit a 3-state regime mixture labels the
/// expanding window and the network (defaults of [`crate::fit::NeuralParams`], seed 42) is
/// trained on it; no forecast until both can be fitted (300 rows with complete targets); a failed
/// refit keeps the previous network ([`refitted`]).
fn neural_forecasts(history: &DailyHistory, burn_in: usize, refit_every: usize, horizons: &[usize]) -> Result<ByHorizon> {
    let n = history.dates.len();
    let features = regime_features(&history.rv, &history.returns);
    let window = 10;
    let params = crate::fit::NeuralParams::new(horizons).window(window);
    let regime_params = crate::fit::RegimeParams::new(3, &[1]);
    // Checked here: `refitted` below takes a failed fit for a window still too short.
    params.check()?;
    regime_params.check()?;
    let mut model: Option<crate::fit::FittedNeural> = None;
    let mut out: ByHorizon = horizons.iter().map(|&h| (h, vec![None; n])).collect();
    for t in burn_in..n {
        if (t - burn_in).is_multiple_of(refit_every.max(1)) {
            let attempt = regime_params.fit(&features, t).and_then(|regimes| {
                let labels = regimes.classify(&features[..=t]);
                params.fit(&features, &history.rv, &labels, 3, t, &mut |_| {})
            });
            model = refitted(model, attempt);
        }
        if let (Some(m), Some(row)) = (&model, foresight_core::features::feature_window(&features, t, window)) {
            let forecast = m.predict(&row);
            for (k, h) in horizons.iter().enumerate() {
                if let Some(series) = out.get_mut(h) {
                    series[t] = forecast.variance.get(k).copied().filter(|v| v.is_finite() && *v > 0.0);
                }
            }
        }
    }
    Ok(out)
}

/// HAR-X walk-forward (log-HAR plus the exogenous regressor `x`, aligned with `history`): at
/// every refit both HAR-X (once 250 training days have `x`) and log-HAR are re-estimated on the
/// expanding window; a day's forecast is HAR-X's where it has a model and `x`, else log-HAR's
/// (the fallback the registered HAR-X carries in its graph).
fn har_x_forecasts(history: &DailyHistory, x: &[Option<f64>], burn_in: usize, refit_every: usize, horizons: &[usize]) -> Result<ByHorizon> {
    let n = history.dates.len();
    let components = har_components(&history.rv);
    let mut out = ByHorizon::new();
    for &h in horizons {
        // Checked here: `refitted` below takes a failed fit for a window still too short.
        HarParams::log(h).check()?;
        HarXParams::new(h).check()?;
        let mut series = vec![None; n];
        let (mut har, mut har_x) = (None::<FittedHar>, None::<FittedHarX>);
        for t in burn_in..n {
            if (t - burn_in).is_multiple_of(refit_every.max(1)) {
                har = refitted(har, HarParams::log(h).fit_components(&history.rv, &components, t));
                har_x = refitted(har_x, HarXParams::new(h).fit(&history.rv, x, t, 250));
            }
            let Some(c) = components[t] else { continue };
            series[t] = har_x.and_then(|f| f.predict(&c, x[t])).or_else(|| har.and_then(|f| f.predict(&c)));
        }
        out.insert(h, series);
    }
    Ok(out)
}

/// Base margin rates of a `model:<forecaster>` arm, aligned with `prices` (daily closes) by
/// date: the forecaster runs walk-forward on `history` from day `burn_in`, re-fitted every
/// `refit_every` days, and the arm's policy (with its implied-volatility blend, `implied_vol`
/// aligned with `history`) turns its forecasts into rates by filtered historical simulation.
/// A day without a forecast keeps the previous day's rate.
#[allow(clippy::too_many_arguments)]
pub fn model_margin_rates(
    forecaster: ModelName,
    arm: &Arm,
    history: &DailyHistory,
    inputs: &ArmInputs,
    prices: &Values,
    params: &CalibrationParams,
    burn_in: usize,
    refit_every: usize,
) -> Result<Vec<Option<SideRates>>> {
    let forecasts = model_forecasts(forecaster, history, inputs, params.periods_per_year(), (burn_in, refit_every), &arm.policy.horizons(params.horizon()))?;
    policy_rates(arm, &forecasts, inputs, history, prices, params)
}

/// What model arms may use beyond their forecasts (`+iv`, `+regime`), aligned with a
/// [`DailyHistory`]; `None` where the input is not available.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArmInputs {
    /// Implied volatility, annualised percent.
    pub implied_vol: Option<Vec<Option<f64>>>,
    /// The regime model's view by horizon (the `+regime:<days>` of the arms).
    pub stress: BTreeMap<usize, Vec<Option<Stress>>>,
}

/// The inputs `arms` need beyond their forecasts, on `history`: implied volatility from
/// `iv_data` (a `date,<value>` file in annualised percent) when any arm blends it or is HAR-X, and the
/// walk-forward regime view at every `+regime` horizon. An arm that asks for implied volatility
/// without a file is told so on stderr and uses its forecasts alone.
pub fn arm_inputs(arms: &[Arm], history: &DailyHistory, iv_data: Option<&Path>, prices: &Values, burn_in: usize, refit_every: usize) -> Result<ArmInputs> {
    let wants_iv = |a: &&Arm| a.implied.is_some() || a.base == foresight_core::calibrate::BaseCalibrator::Model { forecaster: ModelName::HarX };
    let implied_vol = match (iv_data, arms.iter().find(wants_iv)) {
        (Some(file), Some(_)) => {
            let spec = ExogenousSpec { file: file.to_path_buf(), transform: Transform::Last, periods_per_year: prices.frequency.periods_per_year() };
            Some(load_exogenous(&spec, &history.dates)?)
        }
        (None, Some(arm)) => {
            eprintln!("note: {arm} uses implied volatility, but no implied-volatility file is given: it forecasts without it (HAR-X as log-HAR)");
            None
        }
        _ => None,
    };
    let mut stress = BTreeMap::new();
    for h in arms.iter().filter_map(|a| a.regime) {
        if let std::collections::btree_map::Entry::Vacant(slot) = stress.entry(h) {
            slot.insert(regime_stress(history, burn_in, refit_every, h)?);
        }
    }
    Ok(ArmInputs { implied_vol, stress })
}

/// The regime model's view of every day of `history`, walk-forward: a 3-state mixture and the
/// logistic regression for P(stressed within `horizon` days) (see [`crate::fit::RegimeParams`])
/// re-fitted every `refit_every` days from day `burn_in` on the expanding window; the stressed
/// regime's variance is the mean realized variance of the days it labels. No view until a
/// first fit succeeds (the stressed regime must have been seen); a later refit that fails keeps
/// the previous model ([`refitted`]).
pub fn regime_stress(history: &DailyHistory, burn_in: usize, refit_every: usize, horizon: usize) -> Result<Vec<Option<Stress>>> {
    let features = foresight_core::features::regime_features(&history.rv, &history.returns);
    let params = crate::fit::RegimeParams::new(3, &[horizon]);
    // Checked here: `refitted` below takes a failed fit for a window still too short.
    params.check()?;
    let mut fitted: Option<(crate::fit::FittedRegime, f64)> = None;
    let mut out = vec![None; features.len()];
    for t in burn_in..features.len() {
        if (t - burn_in).is_multiple_of(refit_every.max(1)) {
            let attempt = params.fit(&features, t).and_then(|f| {
                // The stressed regime's variance: the mean RV of the days it labels (an
                // arithmetic mean; exp of the mean log RV sits far below it on squared returns).
                let labels = f.classify(&features[..=t]);
                let stressed: Vec<f64> = (0..=t).filter(|&d| labels[d] == Some(f.states() - 1)).filter_map(|d| history.rv[d]).collect();
                match stressed.len() {
                    0 => Err(DataError::Fit { model: "regime".into(), message: "no stressed day yet".into() }),
                    k => Ok((f, stressed.iter().sum::<f64>() / k as f64)),
                }
            });
            fitted = refitted(fitted, attempt);
        }
        if let (Some((model, variance)), Some(x)) = (&fitted, &features[t]) {
            out[t] = Some(Stress { probability: model.predict(x)[0], variance: *variance });
        }
    }
    Ok(out)
}

/// Variance forecasts of a registered model, run through ONNX Runtime on every day of
/// `history`: `[horizon index][day] -> variance_h{h}` for each of `horizons`, which the model
/// must output. The inputs come from [`ModelInput`], i.e. the same feature code it was trained
/// on. Days up to the end of its training window are forecast too (in sample); callers that
/// score forecasts must start after [`ModelCard::training`]'s end.
pub fn registered_forecasts(
    card: &ModelCard,
    model: &mut LoadedModel,
    history: &DailyHistory,
    horizons: &[usize],
) -> Result<Vec<Vec<Option<f64>>>> {
    let name = card.reference().to_string();
    let source = card.details.get("rv_source").and_then(|v| v.as_str()).unwrap_or(history.rv_source);
    if source != history.rv_source {
        return Err(DataError::Fit {
            model: name,
            message: format!(
                "it was trained on daily variance from {source}, this history has {}: give it the same kind of data (intraday bars: --rv-data)",
                history.rv_source
            ),
        });
    }
    let missing: Vec<usize> = horizons.iter().copied().filter(|h| !card.onnx.outputs.contains(&format!("variance_h{h}"))).collect();
    if !missing.is_empty() {
        return Err(DataError::Fit { model: name, message: format!("it forecasts horizons {:?}, not {missing:?}", card.horizons) });
    }
    let exogenous = match ExogenousSpec::from_card(card)? {
        Some(spec) => load_exogenous(&spec, &history.dates)?,
        None => Vec::new(),
    };
    let run = run_over_days(model, &ModelInput::from_card(card)?, &history.rv, &history.returns, &exogenous, 0)?;
    Ok(horizons
        .iter()
        .map(|h| {
            let name = format!("variance_h{h}");
            (0..history.dates.len()).map(|t| run.value(&name, t).filter(|v| *v > 0.0)).collect()
        })
        .collect())
}

/// Base margin rates of a `model:<name>@vN` arm aligned with `prices`: the registered model's
/// forecasts (see [`registered_forecasts`]) turned into rates by filtered historical simulation.
/// Standardised residuals are collected over the whole history, but no rate is posted for a
/// day up to the end of the model's training window, so a backtest scores it out of sample
/// only.
pub fn registered_margin_rates(
    card: &ModelCard,
    model: &mut LoadedModel,
    history: &DailyHistory,
    prices: &Values,
    params: &CalibrationParams,
    arm: &Arm,
    inputs: &ArmInputs,
) -> Result<Vec<Option<SideRates>>> {
    let horizons = arm.policy.horizons(params.horizon());
    let forecasts: ByHorizon = horizons.iter().copied().zip(registered_forecasts(card, model, history, &horizons)?).collect();
    let mut rates = policy_rates(arm, &forecasts, inputs, history, prices, params)?;
    for (t, r) in rates.iter_mut().enumerate() {
        if prices.timestamps[t].date() <= card.training.end {
            *r = None;
        }
    }
    Ok(rates)
}

/// A model arm's base rates from its forecasts by horizon and the inputs its `+iv` and
/// `+regime` options use, all aligned with `history`, turned into rates aligned with `prices` by
/// date (see [`Arm::forward_rates`]); a day without a forecast keeps the previous rate.
pub fn policy_rates(
    arm: &Arm,
    forecasts: &ByHorizon,
    inputs: &ArmInputs,
    history: &DailyHistory,
    prices: &Values,
    params: &CalibrationParams,
) -> Result<Vec<Option<SideRates>>> {
    let by_date: HashMap<NaiveDate, usize> = history.dates.iter().enumerate().map(|(j, d)| (*d, j)).collect();
    fn align<T: Copy>(series: &[Option<T>], prices: &Values, by_date: &HashMap<NaiveDate, usize>) -> Vec<Option<T>> {
        prices.timestamps.iter().map(|t| by_date.get(&t.date()).and_then(|&j| series.get(j).copied().flatten())).collect()
    }
    let aligned: ByHorizon = forecasts.iter().map(|(h, series)| (*h, align(series, prices, &by_date))).collect();
    let implied = inputs.implied_vol.as_deref().map(|s| align(s, prices, &by_date));
    let stress = arm.regime.and_then(|h| inputs.stress.get(&h)).map(|s| align(s, prices, &by_date));
    let returns = aligned_log_returns(&prices.values);
    let inputs = ForwardInputs { implied_vol: implied.as_deref(), stress: stress.as_deref() };
    Ok(arm.forward_rates(&returns, |h| aligned.get(&h).map(Vec::as_slice), inputs, params)?)
}

/// The forecast gain of one exogenous input at one horizon.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExogenousGain {
    /// Input name.
    pub input: String,
    /// Horizon in days.
    pub horizon: usize,
    /// First scored origin (the first day with enough training days that have the input).
    pub first_origin: NaiveDate,
    /// Scored origins.
    pub n: usize,
    /// Origins where the input was missing and HAR-X fell back to log-HAR.
    pub fallback: usize,
    /// QLIKE of log-HAR on those origins.
    pub qlike_log_har: f64,
    /// QLIKE of HAR-X (log-HAR where the input is missing).
    pub qlike_har_x: f64,
    /// `qlike_har_x / qlike_log_har − 1` (negative: the input helps).
    pub change: f64,
    /// Diebold-Mariano of HAR-X against log-HAR.
    pub dm: DieboldMariano,
    /// The input's coefficient at the last refit.
    pub coefficient: f64,
}

/// Measures what an exogenous input `x` (aligned with `history.dates`, `None` where missing)
/// adds to log-HAR, walk-forward: from the first origin with `min_rows` training days that have
/// the input, both models are re-fitted every `refit_every` days on the expanding window and
/// forecast from data up to each origin; on a day without the input HAR-X falls back to
/// log-HAR (counted in `fallback`, never zero-filled).
pub fn exogenous_gain(
    history: &DailyHistory,
    input: &str,
    x: &[Option<f64>],
    horizons: &[usize],
    min_rows: usize,
    refit_every: usize,
) -> Result<Vec<ExogenousGain>> {
    let n = history.dates.len();
    let fail = |message: String| DataError::Fit { model: format!("har-x[{input}]"), message };
    if x.len() != n || refit_every == 0 {
        return Err(fail("the input must be aligned with the history and refit_every ≥ 1".into()));
    }
    let components = har_components(&history.rv);
    let mut out = Vec::new();
    for &h in horizons {
        // First origin: min_rows earlier days with the input and a complete target.
        let mut count = 0;
        let mut start = None;
        for t in 0..n {
            if t >= h && x[t - h].is_some() && components[t - h].is_some() {
                count += 1;
            }
            if count >= min_rows.max(30) && t >= 250 {
                start = Some(t);
                break;
            }
        }
        let Some(start) = start else {
            return Err(fail(format!("fewer than {} days with the input", min_rows.max(30))));
        };
        let (mut har, mut har_x) = (None::<FittedHar>, None::<FittedHarX>);
        let (mut f_har, mut f_x, mut realized) = (Vec::new(), Vec::new(), Vec::new());
        let mut fallback = 0;
        for t in start..n {
            if (t - start) % refit_every == 0 {
                har = Some(HarParams::log(h).fit(&history.rv, t)?);
                har_x = Some(HarXParams::new(h).fit(&history.rv, x, t, min_rows)?);
            }
            let (Some(c), Some(target)) = (components[t], realized_mean(&history.rv, t, h)) else { continue };
            let Some(base) = har.and_then(|f| f.predict(&c)) else { continue };
            let with_x = match har_x.and_then(|f| f.predict(&c, x[t])) {
                Some(v) => v,
                None => {
                    fallback += 1;
                    base
                }
            };
            f_har.push(base);
            f_x.push(with_x);
            realized.push(target);
        }
        if realized.len() < 30 {
            return Err(fail(format!("h={h}: only {} scored origins", realized.len())));
        }
        let l_har = qlike(&f_har, &realized)?;
        let l_x = qlike(&f_x, &realized)?;
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (q_har, q_x) = (mean(&l_har), mean(&l_x));
        out.push(ExogenousGain {
            input: input.into(),
            horizon: h,
            first_origin: history.dates[start],
            n: realized.len(),
            fallback,
            qlike_log_har: q_har,
            qlike_har_x: q_x,
            change: q_x / q_har - 1.0,
            dm: diebold_mariano(&l_x, &l_har, h)?,
            coefficient: har_x.map_or(f64::NAN, |f| f.exogenous_coefficient()),
        });
    }
    Ok(out)
}

/// Brier score of one registered model's regime probabilities at one horizon.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegimeScore {
    /// `name@vN`.
    pub model: String,
    /// Horizon in days.
    pub horizon: usize,
    /// Scored origins.
    pub n: usize,
    /// Brier score of `p_high_regime_h{h}`.
    pub brier: f64,
    /// Brier score of the training-window frequency of the event on the same origins.
    pub climatology: f64,
    /// How often the stressed regime came within h days on these origins.
    pub event_frequency: f64,
}

/// The event a registered regime model forecasts: "the stressed regime within `h` days", with
/// days labelled by the regime mixture its card stores (fitted on its training window).
#[derive(Debug, Clone)]
pub struct RegimeEvent {
    labels: Vec<Option<usize>>,
    states: usize,
    /// Index of the last day of the card's training window in the history.
    training_end: usize,
}

impl RegimeEvent {
    /// The event of `card`'s model over `history`.
    pub fn of_card(card: &ModelCard, history: &DailyHistory) -> Result<Self> {
        let mixture: Mixture = card
            .params
            .get("mixture")
            .cloned()
            .and_then(|m| serde_json::from_value(m).ok())
            .ok_or_else(|| DataError::Fit { model: card.reference().to_string(), message: "its card stores no regime mixture (params.mixture)".into() })?;
        let features = regime_features(&history.rv, &history.returns);
        let labels = features.iter().map(|f| f.and_then(|f| mixture.classify([f[0], f[3]]))).collect();
        let training_end = history.dates.iter().rposition(|d| *d <= card.training.end).unwrap_or(0);
        Ok(Self { labels, states: mixture.states(), training_end })
    }

    /// Whether the stressed regime came within `h` days of day `t` (`None` where unknown).
    pub fn within(&self, t: usize, h: usize) -> Option<bool> {
        stressed_within(&self.labels, t, h, self.states)
    }

    /// The climatology baseline: how often the event happened over the training window.
    pub fn training_frequency(&self, h: usize) -> f64 {
        let training: Vec<bool> = (0..=self.training_end.saturating_sub(h)).filter_map(|t| self.within(t, h)).collect();
        training.iter().filter(|y| **y).count() as f64 / training.len().max(1) as f64
    }
}

/// Scores a registered model's `p_high_regime_h*` outputs from day `first_origin` on, against
/// the event it was trained to forecast ([`RegimeEvent`]); the baseline is the event's
/// frequency over the training window.
pub fn registered_regime_scores(
    card: &ModelCard,
    model: &mut LoadedModel,
    history: &DailyHistory,
    first_origin: usize,
) -> Result<Vec<RegimeScore>> {
    let name = card.reference().to_string();
    let event = RegimeEvent::of_card(card, history)?;
    let run = run_over_days(model, &ModelInput::from_card(card)?, &history.rv, &history.returns, &[], first_origin)?;
    if run.outputs.values().all(|v| v.iter().all(Option::is_none)) {
        return Err(DataError::Fit { model: name, message: "no day with complete inputs to score".into() });
    }
    let mut out = Vec::new();
    for h in &card.horizons {
        let Some(p) = run.outputs.get(&format!("p_high_regime_h{h}")) else { continue };
        let base = event.training_frequency(*h);
        let (probabilities, events): (Vec<f64>, Vec<bool>) =
            p.iter().enumerate().filter_map(|(t, p)| Some((p.as_ref()?, event.within(t, *h)?))).map(|(p, y)| (*p, y)).unzip();
        if probabilities.is_empty() {
            continue;
        }
        out.push(RegimeScore {
            model: name.clone(),
            horizon: *h,
            n: probabilities.len(),
            brier: brier(&probabilities, &events)?,
            climatology: brier(&vec![base; events.len()], &events)?,
            event_frequency: events.iter().filter(|y| **y).count() as f64 / events.len() as f64,
        });
    }
    Ok(out)
}

