//! The evidence a promotion rests on (see `foresight_registry::promotion`): the challenger and
//! the slot's champion, both run through ONNX Runtime on the same input rows, scored on the
//! days both are out of sample (after each one's training window), and both backtested as
//! margin arms on those days (volatility models). With no champion the challenger faces the
//! naive baseline: EWMA, or for a regime model its event's training-window frequency. A ratio
//! to a baseline measured over another window never enters.

use std::path::{Path, PathBuf};

use chrono::{Days, NaiveDate};
use foresight_core::backtest::{BacktestConfig, SideSummary, run_backtest_rates};
use foresight_core::calibrate::{Arm, CalibrationParams, SideRates};
use foresight_core::forecast::{diebold_mariano, qlike};
use foresight_registry::card::DataRef;
use foresight_registry::exogenous::ExogenousSpec;
use foresight_registry::promotion::{
    ArmCoverage, DateWindow, DieboldMarianoEvidence, HorizonScores, Incumbent, MarginEvidence, PromotionEvidence, SideCoverage,
};
use foresight_registry::inputs::{ModelInput, run_over_days};
use foresight_registry::runtime::LoadedModel;
use foresight_registry::verify::sha256_hex;
use foresight_registry::{ModelCard, ModelRef, Registry, Task};

use crate::data::{Values, load_daily_closes};
use crate::error::{DataError, Result};
use crate::evaluate::{
    DailyHistory, Forecaster, RegimeEvent, WalkForward, arm_inputs, forecast_variances, realized_mean, registered_forecasts, registered_margin_rates,
};

/// The baseline a volatility challenger faces in a slot without a champion.
pub const BASELINE: &str = "ewma";

/// Days of EWMA warm-up before the baseline's first forecast.
const BASELINE_WARM_UP: usize = 30;

/// Burn-in and refit cadence of what `+iv` / `+regime` policies fit walk-forward (the
/// backtest's defaults).
const POLICY_BURN_IN: usize = 250;
const POLICY_REFIT_EVERY: usize = 22;

/// The history both models are scored on and the daily prices their margins are backtested on.
#[derive(Debug, Clone)]
pub struct PromotionData {
    /// Daily realized variance and returns.
    pub history: DailyHistory,
    /// Daily closes.
    pub prices: Values,
    /// The files read (the evidence records their sha256).
    pub files: Vec<PathBuf>,
}

impl PromotionData {
    /// From `data` (intraday bars, daily bars or closes: the target's source, which also gives
    /// the daily closes), or daily `data` with realized variance from `rv_data`'s bars.
    pub fn load(data: &Path, rv_data: Option<&Path>) -> Result<Self> {
        let prices = load_daily_closes(data)?;
        let last = prices.timestamps.last().map(|t| t.date()).ok_or_else(|| DataError::Empty { file: data.to_path_buf() })?;
        let history = DailyHistory::load(data, rv_data)?.through(last);
        let files = std::iter::once(data).chain(rv_data).map(Path::to_path_buf).collect();
        Ok(Self { history, prices, files })
    }

    /// The data a card was trained on, as it is on disk now: its first file is the target's
    /// source (paths are relative to the checkout, where `foresight` runs).
    pub fn for_card(card: &ModelCard) -> Result<Self> {
        let first = card.training.data.first().ok_or_else(|| DataError::Fit {
            model: card.reference().to_string(),
            message: "its card names no training data; give the data to score it on".into(),
        })?;
        Self::load(Path::new(&first.path), None)
    }
}

/// How both models become margin arms.
#[derive(Debug, Clone, PartialEq)]
pub struct MarginSettings {
    /// Confidence of the margin (0.99).
    pub confidence: f64,
    /// Margin horizon in days.
    pub horizon: usize,
    /// The serving policy appended to `model:<name>@vN`, e.g. `""` (what `model:champion`
    /// serves) or `+lookahead:22`.
    pub policy: String,
}

impl Default for MarginSettings {
    fn default() -> Self {
        Self { confidence: 0.99, horizon: 1, policy: String::new() }
    }
}

/// A model loaded for scoring.
struct Contender {
    card: ModelCard,
    model: LoadedModel,
}

/// The evidence for promoting `challenger` into its slot of `registry`: against the slot's
/// champion, or against EWMA when there is none.
pub fn promotion_evidence(registry: &Registry, challenger: &ModelRef, data: &PromotionData, margin: &MarginSettings) -> Result<PromotionEvidence> {
    let card = registry.card(challenger)?;
    let champion = registry.champion(&card.slot()).cloned();
    if champion.as_ref() == Some(&card.reference()) {
        return Err(DataError::Fit { model: card.reference().to_string(), message: format!("it is already the champion of {}", card.slot()) });
    }
    same_days_evidence(registry, challenger, champion.as_ref(), data, margin)
}

/// `challenger` against `incumbent` (a model of the same slot, or the baseline when `None`:
/// EWMA for volatility, the event's training frequency for regimes) on the days both are out of
/// sample: what a promotion would rest on, for any two models.
pub fn same_days_evidence(
    registry: &Registry,
    challenger: &ModelRef,
    incumbent: Option<&ModelRef>,
    data: &PromotionData,
    margin: &MarginSettings,
) -> Result<PromotionEvidence> {
    let load = |r: &ModelRef| -> Result<Contender> {
        let (card, model, _) = registry.load(r)?;
        Ok(Contender { card, model })
    };
    let challenger = load(challenger)?;
    let incumbent = incumbent.map(load).transpose()?;
    if let Some(other) = &incumbent
        && other.card.slot() != challenger.card.slot()
    {
        return Err(DataError::Fit {
            model: challenger.card.reference().to_string(),
            message: format!("it competes in {}, {} in {}", challenger.card.slot(), other.card.reference(), other.card.slot()),
        });
    }
    evidence(challenger, incumbent, data, margin)
}

fn evidence(mut challenger: Contender, mut champion: Option<Contender>, data: &PromotionData, settings: &MarginSettings) -> Result<PromotionEvidence> {
    let history = &data.history;
    let (first, last) = match (history.dates.first(), history.dates.last()) {
        (Some(f), Some(l)) => (*f, *l),
        _ => return Err(DataError::Fit { model: challenger.card.reference().to_string(), message: "no day of data to score on".into() }),
    };
    let day_after = |d: NaiveDate| d.checked_add_days(Days::new(1)).unwrap_or(d);
    let out_of_sample = |card: &ModelCard| DateWindow { start: day_after(card.training.end).max(first), end: last };
    let card = &challenger.card;
    let primary_horizon = card.evaluation.primary_horizon;
    let mut evidence = PromotionEvidence {
        challenger: card.reference(),
        incumbent: match &champion {
            Some(c) => Incumbent::Model(c.card.reference()),
            None => Incumbent::Baseline(baseline_of(card.task).into()),
        },
        data: data_refs(data, card, champion.as_ref().map(|c| &c.card))?,
        challenger_window: out_of_sample(card),
        incumbent_window: match &champion {
            Some(c) => out_of_sample(&c.card),
            None => DateWindow { start: history.dates.get(BASELINE_WARM_UP).copied().unwrap_or(day_after(last)), end: last },
        },
        not_comparable: None,
        score_name: match card.task {
            Task::Volatility => "qlike",
            Task::Regime => "brier",
        }
        .into(),
        primary_horizon,
        horizons: Vec::new(),
        diebold_mariano: None,
        margin: None,
    };
    if let Some(c) = &champion
        && c.card.evaluation.target != card.evaluation.target
    {
        evidence.not_comparable =
            Some(format!("{} forecasts {}, {} forecasts {}", card.reference(), card.evaluation.target, c.card.reference(), c.card.evaluation.target));
        return Ok(evidence);
    }
    let Some(common) = evidence.common_window() else { return Ok(evidence) };

    // Forecasts of both on every day, from the same input rows, and the realized targets.
    let output = |h: usize| match card.task {
        Task::Volatility => format!("variance_h{h}"),
        Task::Regime => format!("p_high_regime_h{h}"),
    };
    let horizons: Vec<usize> =
        card.horizons.iter().copied().filter(|h| champion.as_ref().is_none_or(|c| c.card.onnx.outputs.contains(&output(*h)))).collect();
    if !horizons.contains(&primary_horizon) {
        evidence.not_comparable = Some(format!("the champion does not forecast the primary horizon h={primary_horizon}"));
        return Ok(evidence);
    }
    let (mine, theirs, target): (Forecasts, Forecasts, Target) = match card.task {
        Task::Volatility => (
            registered_forecasts(&challenger.card, &mut challenger.model, history, &horizons)?,
            match champion.as_mut() {
                Some(c) => registered_forecasts(&c.card, &mut c.model, history, &horizons)?,
                None => forecast_variances(
                    Forecaster::Ewma,
                    history,
                    &WalkForward { train_days: BASELINE_WARM_UP, refit_every: 1, horizons: horizons.clone() },
                )?,
            },
            Box::new(|t, h| realized_mean(&history.rv, t, h)),
        ),
        Task::Regime => {
            // Both are scored on one event: the one the champion forecasts (what the service
            // acts on), or with no champion the challenger's own against its climatology.
            let event = RegimeEvent::of_card(champion.as_ref().map_or(card, |c| &c.card), history)?;
            let mine = probabilities(&challenger.card, &mut challenger.model, history, &horizons)?;
            let theirs = match champion.as_mut() {
                Some(c) => probabilities(&c.card, &mut c.model, history, &horizons)?,
                None => horizons.iter().map(|h| vec![Some(event.training_frequency(*h)); history.dates.len()]).collect(),
            };
            (mine, theirs, Box::new(move |t, h| event.within(t, h).map(|y| if y { 1.0 } else { 0.0 })))
        }
    };
    let in_window: Vec<bool> = history.dates.iter().map(|d| common.start <= *d && *d <= common.end).collect();
    for (i, &h) in horizons.iter().enumerate() {
        let (mut a, mut b, mut realized) = (Vec::new(), Vec::new(), Vec::new());
        for t in (0..history.dates.len()).filter(|&t| in_window[t]) {
            if let (Some(x), Some(y), Some(r)) = (mine[i][t], theirs[i][t], target(t, h)) {
                a.push(x);
                b.push(y);
                realized.push(r);
            }
        }
        if a.is_empty() {
            continue;
        }
        let loss = |forecast: &[f64]| -> Result<Vec<f64>> {
            Ok(match card.task {
                Task::Volatility => qlike(forecast, &realized)?,
                // The Brier score is the mean of these.
                Task::Regime => forecast.iter().zip(&realized).map(|(p, y)| (p - y).powi(2)).collect(),
            })
        };
        let (la, lb) = (loss(&a)?, loss(&b)?);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        evidence.horizons.push(HorizonScores { horizon: h, n: a.len(), challenger: mean(&la), incumbent: mean(&lb) });
        if h == primary_horizon && a.len() >= 10 {
            let dm = diebold_mariano(&la, &lb, h)?;
            evidence.diebold_mariano =
                Some(DieboldMarianoEvidence { horizon: h, n: a.len(), statistic: dm.statistic, p_value_one_sided: dm.p_value_a_better() });
        }
    }
    if card.task == Task::Volatility {
        evidence.margin = margin_evidence(&mut challenger, champion.as_mut(), data, settings, common)?;
    }
    Ok(evidence)
}

/// `[horizon index][day]` forecasts.
type Forecasts = Vec<Vec<Option<f64>>>;

/// The realized value a forecast made on day `t` for horizon `h` is scored against.
type Target<'a> = Box<dyn Fn(usize, usize) -> Option<f64> + 'a>;

/// A regime model's `p_high_regime_h*` on every day.
fn probabilities(card: &ModelCard, model: &mut LoadedModel, history: &DailyHistory, horizons: &[usize]) -> Result<Forecasts> {
    let input = ModelInput::from_card(card)?;
    let run = run_over_days(model, &input, &history.rv, &history.returns, &[], 0)?;
    Ok(horizons.iter().map(|h| (0..history.dates.len()).map(|t| run.value(&format!("p_high_regime_h{h}"), t)).collect()).collect())
}

/// The naive forecaster a model must beat in a slot without a champion.
fn baseline_of(task: Task) -> &'static str {
    match task {
        Task::Volatility => BASELINE,
        Task::Regime => "climatology",
    }
}

/// Both models backtested as margin arms from the first common day on.
fn margin_evidence(
    challenger: &mut Contender,
    champion: Option<&mut Contender>,
    data: &PromotionData,
    settings: &MarginSettings,
    common: DateWindow,
) -> Result<Option<MarginEvidence>> {
    let prices = &data.prices;
    let Some(burn_in) = prices.timestamps.iter().position(|t| t.date() >= common.start) else { return Ok(None) };
    let params = CalibrationParams::new(settings.confidence, settings.horizon, prices.frequency.periods_per_year())?;
    let arm_of = |card: &ModelCard| -> Result<Arm> { Ok(format!("model:{}{}", card.reference(), settings.policy).parse()?) };
    let mut arms: Vec<(Arm, &mut Contender)> = vec![(arm_of(&challenger.card)?, challenger)];
    let baseline: Option<Arm> = match champion {
        Some(c) => {
            arms.push((arm_of(&c.card)?, c));
            None
        }
        None => Some(BASELINE.parse()?),
    };
    let all: Vec<Arm> = arms.iter().map(|(a, _)| a.clone()).chain(baseline.clone()).collect();
    // Inputs of `+iv` / `+regime` policies, fitted walk-forward up to each day.
    let inputs = arm_inputs(&all, &data.history, None, prices, burn_in.min(POLICY_BURN_IN), POLICY_REFIT_EVERY)?;
    let mut with_rates: Vec<(Arm, Vec<Option<SideRates>>)> = Vec::new();
    for (arm, contender) in arms {
        let base = registered_margin_rates(&contender.card, &mut contender.model, &data.history, prices, &params, &arm, &inputs)?;
        let rates = arm.with_apc(&base, &prices.values, &params)?;
        with_rates.push((arm, rates));
    }
    if let Some(arm) = baseline {
        let rates = arm.margin_rates(&prices.values, &params)?;
        with_rates.push((arm, rates));
    }
    let backtest = match run_backtest_rates(&prices.values, with_rates, BacktestConfig { params, burn_in }) {
        Ok(b) => b,
        // Too few days with a known loss: no margin evidence (the forecast rule still applies).
        Err(foresight_core::CoreError::InsufficientHistory { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let coverage = |i: usize| {
        let arm = &backtest.arms[i];
        ArmCoverage { arm: arm.arm.to_string(), long: side(&arm.long), short: side(&arm.short) }
    };
    let date = |i: usize| prices.timestamps[i].date();
    Ok(Some(MarginEvidence {
        confidence: settings.confidence,
        horizon: settings.horizon,
        window: DateWindow { start: date(backtest.start), end: date(backtest.end) },
        challenger: coverage(0),
        incumbent: coverage(1),
    }))
}

fn side(s: &SideSummary) -> SideCoverage {
    SideCoverage {
        observations: s.observations,
        exceptions: s.exceptions,
        kupiec_p: s.kupiec.p_value,
        christoffersen_cc_p: s.christoffersen_cc.p_value,
        average_margin: s.avg_margin,
        largest_30d_rise: s.max_rise_30d.and_then(|r| r.rel),
    }
}

/// The files behind the evidence with their sha256 now: the data given and each model's
/// exogenous input.
fn data_refs(data: &PromotionData, challenger: &ModelCard, champion: Option<&ModelCard>) -> Result<Vec<DataRef>> {
    let mut files = data.files.clone();
    for card in std::iter::once(challenger).chain(champion) {
        if let Some(spec) = ExogenousSpec::from_card(card)?
            && !files.contains(&spec.file)
        {
            files.push(spec.file);
        }
    }
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).map_err(|source| DataError::Io { file: path.clone(), source })?;
            Ok(DataRef { path: path.display().to_string(), sha256: sha256_hex(&bytes) })
        })
        .collect()
}
