//! The cost–procyclicality frontier of margin designs, and the rule that picks one.
//!
//! After Murphy & Vause, "A cost-benefit analysis of anti-procyclical margin requirements"
//! (Bank of England Staff Working Paper 950, 2021): every margin design (an arm) is a point
//! whose *cost* is its average margin over the cycle and whose *procyclicality* is its largest
//! margin call, here the largest relative rise over 30 days. Only designs that cover the risk
//! count: an arm enters the frontier when neither Kupiec's test nor Christoffersen's conditional
//! coverage test rejects at 5% on either side. The useful designs are those no other covering
//! design beats on both axes; forward-looking and reactive arms get a frontier each, and the
//! question Foresight answers is whether the forward one lies inside the reactive one.

use serde::Serialize;

use crate::backtest::ArmBacktest;
use crate::features::Side;

/// Which kind of design an arm is: the two frontiers are drawn separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Prices only (static, EWMA, historical simulation, with APC tools).
    Reactive,
    /// A volatility forecast (model arms).
    Forward,
}

/// One arm as a point of the cost–procyclicality plane.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// The arm, in canonical form.
    pub arm: String,
    /// Reactive or forward.
    pub kind: Kind,
    /// Neither Kupiec nor Christoffersen cc rejects at 5%, on both sides.
    pub covered: bool,
    /// Mean of the two sides' average margin rates.
    pub cost: f64,
    /// Largest relative 30-day margin rise of either side (0.5 = +50%).
    pub rise_30d: f64,
    /// Largest relative 5-day margin rise of either side.
    pub rise_5d: f64,
    /// Largest peak/trough of either side (`None` where a margin touched zero).
    pub peak_to_trough: Option<f64>,
    /// The smallest p-value of the four coverage tests (Kupiec and cc, long and short).
    pub min_coverage_p: f64,
}

impl Point {
    /// The point of a backtested arm.
    pub fn new(backtest: &ArmBacktest, kind: Kind) -> Self {
        let sides = [backtest.side(Side::Long), backtest.side(Side::Short)];
        let worst_rise = |pick: fn(&crate::backtest::SideSummary) -> Option<crate::stats::Rise>| {
            sides.iter().map(|s| pick(s).and_then(|r| r.rel).unwrap_or(0.0)).fold(0.0, f64::max)
        };
        let peak_to_trough = sides
            .iter()
            .map(|s| s.peak_to_trough)
            .try_fold(0.0f64, |acc, p| p.map(|p| acc.max(p)));
        let min_coverage_p =
            sides.iter().flat_map(|s| [s.kupiec.p_value, s.christoffersen_cc.p_value]).fold(1.0, f64::min);
        Self {
            arm: backtest.arm.to_string(),
            kind,
            covered: sides.iter().all(|s| !s.kupiec.rejects() && !s.christoffersen_cc.rejects()),
            cost: (sides[0].avg_margin + sides[1].avg_margin) / 2.0,
            rise_30d: worst_rise(|s| s.max_rise_30d),
            rise_5d: worst_rise(|s| s.max_rise_5d),
            peak_to_trough,
            min_coverage_p,
        }
    }

    /// True when `self` is at least as good as `other` on cost and on 30-day rise, and strictly
    /// better on one of them.
    pub fn dominates(&self, other: &Point) -> bool {
        self.cost <= other.cost && self.rise_30d <= other.rise_30d && (self.cost < other.cost || self.rise_30d < other.rise_30d)
    }
}

/// The frontier of `kind`: indices of the covered points of that kind that no other covered
/// point of the same kind dominates, cheapest first. Arms failing coverage never enter it.
pub fn frontier(points: &[Point], kind: Kind) -> Vec<usize> {
    let candidates: Vec<usize> = (0..points.len()).filter(|&i| points[i].kind == kind && points[i].covered).collect();
    let mut out: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&i| !candidates.iter().any(|&j| points[j].dominates(&points[i])))
        .collect();
    out.sort_by(|&a, &b| points[a].cost.total_cmp(&points[b].cost).then(points[a].rise_30d.total_cmp(&points[b].rise_30d)));
    out
}

/// The two reactive arms every forward arm is shown beside.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct References {
    /// The cheapest covered reactive arm.
    pub cheapest: Option<usize>,
    /// The covered reactive arm with the smallest 30-day rise (the cheaper one on ties).
    pub steadiest: Option<usize>,
}

/// The reference reactive arms among `points`.
pub fn references(points: &[Point]) -> References {
    let reactive = || (0..points.len()).filter(|&i| points[i].kind == Kind::Reactive && points[i].covered);
    let by = |key: fn(&Point) -> (f64, f64)| {
        reactive().min_by(|&a, &b| {
            let (ka, kb) = (key(&points[a]), key(&points[b]));
            ka.0.total_cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
        })
    };
    References { cheapest: by(|p| (p.cost, p.rise_30d)), steadiest: by(|p| (p.rise_30d, p.cost)) }
}

/// The written selection rule's parameters: the goal's thresholds it scores against (a forward
/// arm moves the frontier when it is `cost_saving` cheaper than the cheapest covered reactive
/// arm that is no steadier, or `rise_reduction` steadier than the steadiest covered reactive
/// arm that is no cheaper) and the coverage headroom it asks of the arm it picks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Relative cost saving that counts (0.10 = 10% less average margin).
    pub cost_saving: f64,
    /// Relative reduction of the largest 30-day rise that counts (0.30 = 30% smaller).
    pub rise_reduction: f64,
    /// The rule picks only among arms whose smallest coverage p-value is at least this; above
    /// the tests' 5%, an arm that barely passed on the development window is not frozen.
    #[serde(default = "default_min_coverage_p")]
    pub min_coverage_p: f64,
}

fn default_min_coverage_p() -> f64 {
    crate::stats::REJECT_AT
}

impl Default for Rule {
    fn default() -> Self {
        Self { cost_saving: 0.10, rise_reduction: 0.30, min_coverage_p: default_min_coverage_p() }
    }
}

/// How one forward arm stands against the covered reactive arms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Standing {
    /// The cheapest covered reactive arm whose 30-day rise is at least the forward arm's
    /// (`None` when every covered reactive arm is steadier).
    pub cost_reference: Option<usize>,
    /// `1 − cost / cost of cost_reference` (positive: the forward arm is cheaper).
    pub cost_saving: Option<f64>,
    /// The steadiest covered reactive arm whose cost is at least the forward arm's (`None`
    /// when every covered reactive arm is cheaper).
    pub rise_reference: Option<usize>,
    /// `1 − rise / rise of rise_reference` (positive: the forward arm is steadier); `None` also
    /// when the reference never rose (a static rate cannot be beaten on rises).
    pub rise_reduction: Option<f64>,
    /// Covered, and one of the two thresholds reached.
    pub meets_goal: bool,
    /// How far the better of the two gains goes toward its threshold (1 = exactly met);
    /// `−∞` where neither gain exists.
    pub score: f64,
}

/// Where the point at `index` stands against the covered reactive arms of `points`.
pub fn standing(points: &[Point], index: usize, rule: &Rule) -> Standing {
    let me = &points[index];
    let reactive: Vec<usize> = (0..points.len()).filter(|&i| points[i].kind == Kind::Reactive && points[i].covered).collect();
    let cost_reference = reactive
        .iter()
        .copied()
        .filter(|&i| points[i].rise_30d >= me.rise_30d)
        .min_by(|&a, &b| points[a].cost.total_cmp(&points[b].cost));
    let rise_reference = reactive
        .iter()
        .copied()
        .filter(|&i| points[i].cost >= me.cost)
        .min_by(|&a, &b| points[a].rise_30d.total_cmp(&points[b].rise_30d));
    let cost_saving = cost_reference.map(|r| 1.0 - me.cost / points[r].cost);
    let rise_reduction = rise_reference.filter(|&r| points[r].rise_30d > 0.0).map(|r| 1.0 - me.rise_30d / points[r].rise_30d);
    let score = [cost_saving.map(|s| s / rule.cost_saving), rise_reduction.map(|s| s / rule.rise_reduction)]
        .into_iter()
        .flatten()
        .fold(f64::NEG_INFINITY, f64::max);
    Standing { cost_reference, cost_saving, rise_reference, rise_reduction, meets_goal: me.covered && score >= 1.0, score }
}

/// The written rule that picks one forward arm from a development window's points:
/// among covered forward arms whose smallest coverage p-value is at least
/// [`Rule::min_coverage_p`], the highest [`Standing::score`] (cheaper on ties, then the
/// canonical name); with no such arm, the one with the largest smallest coverage p-value (the
/// arm closest to passing; cheaper on ties). `None` only when there is no forward arm.
pub fn select(points: &[Point], rule: &Rule) -> Option<usize> {
    let forward = || (0..points.len()).filter(|&i| points[i].kind == Kind::Forward);
    let by_name = |a: usize, b: usize| points[a].arm.cmp(&points[b].arm);
    let covered: Vec<usize> = forward().filter(|&i| points[i].covered && points[i].min_coverage_p >= rule.min_coverage_p).collect();
    if covered.is_empty() {
        return forward().min_by(|&a, &b| {
            points[b].min_coverage_p.total_cmp(&points[a].min_coverage_p).then(points[a].cost.total_cmp(&points[b].cost)).then(by_name(a, b))
        });
    }
    covered.into_iter().min_by(|&a, &b| {
        let (sa, sb) = (standing(points, a, rule).score, standing(points, b, rule).score);
        sb.total_cmp(&sa).then(points[a].cost.total_cmp(&points[b].cost)).then(by_name(a, b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(arm: &str, kind: Kind, covered: bool, cost: f64, rise_30d: f64) -> Point {
        Point { arm: arm.into(), kind, covered, cost, rise_30d, rise_5d: 0.0, peak_to_trough: None, min_coverage_p: if covered { 0.5 } else { 0.01 } }
    }

    fn plane() -> Vec<Point> {
        use Kind::*;
        vec![
            point("ewma", Reactive, true, 0.07, 3.0),     // 0: cheap, jumpy
            point("hs:500", Reactive, true, 0.09, 0.8),   // 1: dear, steady
            point("hs:250", Reactive, true, 0.085, 1.5),  // 2: between
            point("bad", Reactive, false, 0.05, 0.1),     // 3: fails coverage: dominates all, counts for nothing
            point("worse", Reactive, true, 0.095, 1.6),   // 4: dominated by hs:250 and hs:500
            point("f-cheap", Forward, true, 0.074, 1.4),  // 5: 13% cheaper than hs:250 at a smaller rise
            point("f-steady", Forward, true, 0.088, 0.5), // 6: 37.5% steadier than hs:500 at lower cost
            point("f-level", Forward, true, 0.084, 1.5),  // 7: neither threshold
            point("f-miss", Forward, false, 0.02, 0.01),  // 8: fails coverage
        ]
    }

    #[test]
    fn dominance_is_strict_on_one_axis() {
        let p = plane();
        assert!(p[2].dominates(&p[4]) && p[1].dominates(&p[4]));
        assert!(!p[0].dominates(&p[1]) && !p[1].dominates(&p[0]), "a trade-off, not dominance");
        assert!(!p[0].dominates(&p[0]), "no point dominates itself");
        let twin = Point { arm: "twin".into(), ..p[0].clone() };
        assert!(!twin.dominates(&p[0]));
    }

    #[test]
    fn the_frontier_holds_covered_undominated_arms_of_one_kind() {
        let p = plane();
        assert_eq!(frontier(&p, Kind::Reactive), vec![0, 2, 1], "cheapest first; `bad` fails coverage, `worse` is dominated");
        assert_eq!(frontier(&p, Kind::Forward), vec![5, 6], "f-level is dominated by f-cheap; f-miss fails coverage");
        let refs = references(&p);
        assert_eq!((refs.cheapest, refs.steadiest), (Some(0), Some(1)));
    }

    #[test]
    fn standing_against_the_reactive_arms() {
        let p = plane();
        let goal = Rule::default();
        let cheap = standing(&p, 5, &goal);
        // Reactive arms at least as jumpy as 1.4: ewma (0.07), hs:250 (0.085), worse; the cheapest is ewma.
        assert_eq!(cheap.cost_reference, Some(0));
        assert!((cheap.cost_saving.unwrap() - (1.0 - 0.074 / 0.07)).abs() < 1e-12);
        // Reactive arms at least as dear as 0.074: hs:500, hs:250, worse; the steadiest is hs:500.
        assert_eq!(cheap.rise_reference, Some(1));
        assert!(!cheap.meets_goal);
        let steady = standing(&p, 6, &goal);
        assert_eq!(steady.cost_reference, Some(0), "every covered reactive arm is jumpier; ewma is the cheapest of them");
        assert!(steady.cost_saving.unwrap() < 0.0);
        assert_eq!(steady.rise_reference, Some(1));
        assert!((steady.rise_reduction.unwrap() - 0.375).abs() < 1e-12);
        assert!(steady.meets_goal && (steady.score - 1.25).abs() < 1e-12);
        let missed = standing(&p, 8, &goal);
        assert!(!missed.meets_goal, "an arm failing coverage never meets the goal, however good its numbers");
    }

    #[test]
    fn a_static_reference_cannot_be_beaten_on_rises() {
        let p = vec![point("static:0.1", Kind::Reactive, true, 0.10, 0.0), point("f", Kind::Forward, true, 0.095, 0.2)];
        let s = standing(&p, 1, &Rule::default());
        assert_eq!((s.rise_reference, s.rise_reduction), (Some(0), None));
        assert_eq!(s.cost_reference, None, "the static arm is steadier than the forward arm");
        assert_eq!(s.score, f64::NEG_INFINITY);
    }

    #[test]
    fn the_rule_picks_the_best_score_then_the_closest_to_passing() {
        let p = plane();
        assert_eq!(select(&p, &Rule::default()), Some(6));
        let failing: Vec<Point> = vec![
            point("a", Kind::Forward, false, 0.05, 0.5),
            Point { min_coverage_p: 0.04, ..point("b", Kind::Forward, false, 0.06, 0.5) },
            point("ewma", Kind::Reactive, true, 0.07, 3.0),
        ];
        assert_eq!(select(&failing, &Rule::default()), Some(1), "no forward arm covers: the closest to passing");
        // Headroom: f-steady (p 0.5) passes at 0.5 but not above it; then the closest to passing.
        let strict = Rule { min_coverage_p: 0.6, ..Rule::default() };
        assert_eq!(select(&p, &strict), Some(5), "none has the headroom: the largest smallest p (0.5, cheapest on ties)");
        assert_eq!(select(&p, &Rule { min_coverage_p: 0.5, ..Rule::default() }), Some(6));
        assert_eq!(select(&p[..4], &Rule::default()), None);
    }
}
