//! The promotion rule and the evidence it judges. A challenger replaces a champion only on
//! evidence that compares like with like: both models run through ONNX Runtime on the same days
//! of their common out-of-sample window, scored per horizon, with a one-sided Diebold–Mariano
//! test at the primary horizon, and both backtested as margin arms on those days.
//!
//! The evidence is computed where the data and the backtest live (`foresight-train`); the
//! registry judges it with [`PromotionRule`] and stores it in the slot's log, so a reviewer
//! reads the numbers that decided, not a summary of them.

use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::card::{DataRef, ModelRef};

/// Days from `start` to `end`, both included; empty when `start` is after `end` (a model
/// trained past the end of the data has no out-of-sample day in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DateWindow {
    /// First day.
    pub start: NaiveDate,
    /// Last day (inclusive).
    pub end: NaiveDate,
}

impl DateWindow {
    /// The days both windows hold, if any.
    pub fn intersect(&self, other: &DateWindow) -> Option<DateWindow> {
        let (start, end) = (self.start.max(other.start), self.end.min(other.end));
        (start <= end).then_some(DateWindow { start, end })
    }
}

impl fmt::Display for DateWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start > self.end {
            write!(f, "{}.. (no day of the data, which ends {})", self.start, self.end)
        } else {
            write!(f, "{}..{}", self.start, self.end)
        }
    }
}

/// What the challenger is compared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Incumbent {
    /// A model of the slot: its champion, when promoting.
    Model(ModelRef),
    /// No champion yet: the naive baseline (`ewma` for volatility).
    Baseline(String),
}

impl fmt::Display for Incumbent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Incumbent::Model(r) => write!(f, "{r}"),
            Incumbent::Baseline(name) => write!(f, "the {name} baseline"),
        }
    }
}

/// One horizon's scores of both models on the same origins (lower is better).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HorizonScores {
    /// Horizon in days.
    pub horizon: usize,
    /// Origins scored: both forecasts and the realized target known.
    pub n: usize,
    /// The challenger's mean loss.
    pub challenger: f64,
    /// The incumbent's mean loss.
    pub incumbent: f64,
}

/// The Diebold–Mariano test of the challenger's losses against the incumbent's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DieboldMarianoEvidence {
    /// Horizon tested (the primary one).
    pub horizon: usize,
    /// Paired losses.
    pub n: usize,
    /// Statistic of `loss(challenger) − loss(incumbent)`: negative when the challenger is better.
    pub statistic: f64,
    /// P-value of the one-sided alternative "the challenger's expected loss is lower".
    pub p_value_one_sided: f64,
}

/// Coverage and cost of one side (long or short) of a margin arm on the common window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideCoverage {
    /// Scored days.
    pub observations: usize,
    /// Days whose loss exceeded the margin.
    pub exceptions: usize,
    /// Kupiec proportion-of-failures p-value.
    pub kupiec_p: f64,
    /// Christoffersen conditional-coverage p-value.
    pub christoffersen_cc_p: f64,
    /// Mean margin rate (fraction of notional).
    pub average_margin: f64,
    /// Largest relative rise of the margin over 30 days (0.5 = +50%), when defined.
    pub largest_30d_rise: Option<f64>,
}

impl SideCoverage {
    /// Whether neither coverage test rejects at `level`.
    pub fn passes(&self, level: f64) -> bool {
        self.kupiec_p >= level && self.christoffersen_cc_p >= level
    }
}

/// One model backtested as a margin arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmCoverage {
    /// The arm, as the backtest names it (`model:btc-log-har@v1`, `ewma`).
    pub arm: String,
    /// Long side.
    pub long: SideCoverage,
    /// Short side.
    pub short: SideCoverage,
}

impl ArmCoverage {
    /// The sides `(name, coverage)`.
    pub fn sides(&self) -> [(&'static str, &SideCoverage); 2] {
        [("long", &self.long), ("short", &self.short)]
    }
}

/// Both models as margin arms on the common window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarginEvidence {
    /// Confidence of the margin (e.g. 0.99) and its horizon in days.
    pub confidence: f64,
    /// Margin horizon in days.
    pub horizon: usize,
    /// The days scored.
    pub window: DateWindow,
    /// The challenger's arm.
    pub challenger: ArmCoverage,
    /// The incumbent's arm.
    pub incumbent: ArmCoverage,
}

/// Everything a promotion decision rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionEvidence {
    /// The model proposed.
    pub challenger: ModelRef,
    /// What it is compared with.
    pub incumbent: Incumbent,
    /// The data both ran on (paths and sha256 at the time).
    pub data: Vec<DataRef>,
    /// The challenger's out-of-sample days in that data: after its training window.
    pub challenger_window: DateWindow,
    /// The incumbent's out-of-sample days in that data (a baseline: every day it forecasts).
    pub incumbent_window: DateWindow,
    /// Why the two cannot be scored against each other at all (another target), if so.
    pub not_comparable: Option<String>,
    /// The loss scored: `qlike` (volatility) or `brier` (regime).
    pub score_name: String,
    /// The horizon the decision rests on.
    pub primary_horizon: usize,
    /// Scores per horizon on the common days.
    pub horizons: Vec<HorizonScores>,
    /// The test at the primary horizon.
    pub diebold_mariano: Option<DieboldMarianoEvidence>,
    /// Both as margin arms (volatility models).
    pub margin: Option<MarginEvidence>,
}

impl PromotionEvidence {
    /// The days both models are out of sample.
    pub fn common_window(&self) -> Option<DateWindow> {
        self.challenger_window.intersect(&self.incumbent_window)
    }

    /// Both scores at the primary horizon.
    pub fn primary_scores(&self) -> Option<&HorizonScores> {
        self.horizons.iter().find(|h| h.horizon == self.primary_horizon)
    }

    /// Origins scored at the primary horizon.
    pub fn common_days(&self) -> usize {
        self.primary_scores().map_or(0, |h| h.n)
    }

    /// One line for the registry log and the console.
    pub fn summary(&self) -> String {
        if let Some(reason) = &self.not_comparable {
            return format!("not comparable with {}: {reason}", self.incumbent);
        }
        let Some(window) = self.common_window() else {
            return format!("no common out-of-sample window with {}", self.incumbent);
        };
        let mut text = match self.primary_scores() {
            Some(h) => format!(
                "h={} {} {:.4} vs {} {:.4} on the same {} days {window}",
                h.horizon, self.score_name, h.challenger, self.incumbent, h.incumbent, h.n
            ),
            None => format!("no day scored at h={} with {} on {window}", self.primary_horizon, self.incumbent),
        };
        if let Some(dm) = &self.diebold_mariano {
            text.push_str(&format!(", Diebold-Mariano {:.2} (one-sided p {:.3})", dm.statistic, dm.p_value_one_sided));
        }
        if let Some(m) = &self.margin {
            let exceptions = |a: &ArmCoverage| format!("{}/{}", a.long.exceptions, a.short.exceptions);
            text.push_str(&format!(
                "; margin exceptions long/short {} vs {}, average {:.2}% vs {:.2}%",
                exceptions(&m.challenger),
                exceptions(&m.incumbent),
                100.0 * m.challenger.long.average_margin,
                100.0 * m.incumbent.long.average_margin
            ));
        }
        text
    }
}

/// When a challenger may replace the incumbent without `--force`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PromotionRule {
    /// Fewest origins scored at the primary horizon on the common window.
    pub min_common_days: usize,
    /// Largest one-sided Diebold–Mariano p-value that counts as a win.
    pub significance: f64,
    /// Level at which a coverage test (Kupiec, Christoffersen cc) rejects a margin side.
    pub coverage_level: f64,
}

impl Default for PromotionRule {
    fn default() -> Self {
        Self { min_common_days: 250, significance: 0.05, coverage_level: 0.05 }
    }
}

impl PromotionRule {
    /// Why `evidence` does not support the promotion; empty when it does.
    pub fn objections(&self, evidence: &PromotionEvidence) -> Vec<String> {
        let challenger = &evidence.challenger;
        let incumbent = &evidence.incumbent;
        if let Some(reason) = &evidence.not_comparable {
            return vec![format!("{challenger} cannot be scored against {incumbent}: {reason}")];
        }
        let n = evidence.common_days();
        if evidence.common_window().is_none() || n < self.min_common_days {
            return vec![format!(
                "{challenger} is out of sample on {} and {incumbent} on {}: {} common days scored at h={}, at least {} needed",
                evidence.challenger_window,
                evidence.incumbent_window,
                n,
                evidence.primary_horizon,
                self.min_common_days
            )];
        }
        let mut objections = Vec::new();
        match &evidence.diebold_mariano {
            Some(dm) if dm.p_value_one_sided < self.significance => {}
            Some(dm) => {
                // (The test is at the primary horizon, whose scores exist: it has common days.)
                let (mine, theirs) = evidence.primary_scores().map_or((f64::NAN, f64::NAN), |h| (h.challenger, h.incumbent));
                objections.push(format!(
                    "no significant win at h={}: {} {mine:.4} vs {theirs:.4}, Diebold-Mariano {:.2}, one-sided p {:.3} ≥ {}",
                    dm.horizon, evidence.score_name, dm.statistic, dm.p_value_one_sided, self.significance
                ));
            }
            None => objections.push(format!("no Diebold-Mariano test at h={}", evidence.primary_horizon)),
        }
        if let Some(m) = &evidence.margin {
            for ((side, mine), (_, theirs)) in m.challenger.sides().into_iter().zip(m.incumbent.sides()) {
                if !mine.passes(self.coverage_level) && theirs.passes(self.coverage_level) {
                    objections.push(format!(
                        "its margin fails coverage on the {side} side ({} exceptions in {} days, Kupiec p {:.3}, Christoffersen cc p {:.3}) where {} passes ({} exceptions)",
                        mine.exceptions, mine.observations, mine.kupiec_p, mine.christoffersen_cc_p, m.incumbent.arm, theirs.exceptions
                    ));
                }
            }
        }
        objections
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn side(exceptions: usize, p: f64) -> SideCoverage {
        SideCoverage { observations: 400, exceptions, kupiec_p: p, christoffersen_cc_p: p, average_margin: 0.05, largest_30d_rise: Some(0.3) }
    }

    fn evidence(p: f64, n: usize, challenger_p: f64) -> PromotionEvidence {
        PromotionEvidence {
            challenger: "a@v2".parse().unwrap(),
            incumbent: Incumbent::Model("a@v1".parse().unwrap()),
            data: vec![],
            challenger_window: DateWindow { start: day("2024-07-01"), end: day("2025-08-26") },
            incumbent_window: DateWindow { start: day("2022-01-01"), end: day("2025-08-26") },
            not_comparable: None,
            score_name: "qlike".into(),
            primary_horizon: 5,
            horizons: vec![HorizonScores { horizon: 5, n, challenger: 0.2, incumbent: 0.25 }],
            diebold_mariano: Some(DieboldMarianoEvidence { horizon: 5, n, statistic: -2.0, p_value_one_sided: p }),
            margin: Some(MarginEvidence {
                confidence: 0.99,
                horizon: 1,
                window: DateWindow { start: day("2024-07-01"), end: day("2025-08-25") },
                challenger: ArmCoverage { arm: "model:a@v2".into(), long: side(4, challenger_p), short: side(4, 0.8) },
                incumbent: ArmCoverage { arm: "model:a@v1".into(), long: side(4, 0.8), short: side(4, 0.8) },
            }),
        }
    }

    #[test]
    fn the_rule_wants_enough_common_days_a_significant_win_and_coverage() {
        let rule = PromotionRule::default();
        assert!(rule.objections(&evidence(0.01, 400, 0.5)).is_empty());
        let short = rule.objections(&evidence(0.01, 100, 0.5));
        assert!(short[0].contains("2024-07-01..2025-08-26") && short[0].contains("2022-01-01..2025-08-26") && short[0].contains("100 common days"), "{short:?}");
        let weak = rule.objections(&evidence(0.2, 400, 0.5));
        assert!(weak[0].contains("no significant win") && weak[0].contains("0.200"), "{weak:?}");
        let uncovered = rule.objections(&evidence(0.01, 400, 0.001));
        assert!(uncovered.len() == 1 && uncovered[0].contains("long side") && uncovered[0].contains("model:a@v1 passes"), "{uncovered:?}");
        // Disjoint windows: nothing in common, both named.
        let mut disjoint = evidence(0.01, 0, 0.5);
        disjoint.incumbent_window = DateWindow { start: day("2020-01-01"), end: day("2021-12-31") };
        assert!(disjoint.common_window().is_none());
        let why = rule.objections(&disjoint);
        assert!(why[0].contains("2024-07-01..2025-08-26") && why[0].contains("2020-01-01..2021-12-31"), "{why:?}");
        // A model trained past the data's end has an empty window, shown as such.
        let empty = DateWindow { start: day("2024-07-01"), end: day("2024-03-31") };
        assert_eq!(empty.to_string(), "2024-07-01.. (no day of the data, which ends 2024-03-31)");
        assert!(empty.intersect(&evidence(0.01, 400, 0.5).incumbent_window).is_none());
    }
}
