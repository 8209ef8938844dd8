//! Volatility regimes as a fitted Gaussian mixture describes them: classify a day's
//! (ln daily RV, log return) into the regime of highest weighted density, and the event the
//! regime forecasts are scored on. Training fits the mixture (linfa-clustering); this is what
//! evaluation and the service need to label days from the parameters a model card stores.

use serde::{Deserialize, Serialize};

/// A two-dimensional Gaussian mixture over (ln daily RV, log return), components ranked calm →
/// stressed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mixture {
    /// Component weights.
    pub weights: Vec<f64>,
    /// Component means.
    pub means: Vec<[f64; 2]>,
    /// Component covariance matrices.
    pub covariances: Vec<[[f64; 2]; 2]>,
    /// `rank[r]` is the component of regime `r` (0 = calmest).
    pub rank: Vec<usize>,
}

impl Mixture {
    /// Number of regimes.
    pub fn states(&self) -> usize {
        self.weights.len()
    }

    /// The regime (0 = calmest) whose component has the highest weighted density at `x`;
    /// `None` when a covariance is not positive definite.
    pub fn classify(&self, x: [f64; 2]) -> Option<usize> {
        let mut best: Option<(f64, usize)> = None;
        for (c, ((w, m), s)) in self.weights.iter().zip(&self.means).zip(&self.covariances).enumerate() {
            let det = s[0][0] * s[1][1] - s[0][1] * s[1][0];
            if !(det > 0.0 && s[0][0] > 0.0 && *w > 0.0) {
                return None;
            }
            let (dx, dy) = (x[0] - m[0], x[1] - m[1]);
            // (x−μ)ᵀ Σ⁻¹ (x−μ) with the 2×2 inverse.
            let quad = (s[1][1] * dx * dx - (s[0][1] + s[1][0]) * dx * dy + s[0][0] * dy * dy) / det;
            let log_density = w.ln() - 0.5 * det.ln() - 0.5 * quad;
            if best.is_none_or(|(b, _)| log_density > b) {
                best = Some((log_density, c));
            }
        }
        best.and_then(|(_, c)| self.rank.iter().position(|&k| k == c))
    }
}

/// Whether the stressed regime (`states − 1`) occurs on any day of `t+1..=t+h`; `None` when
/// the window runs past the labels or holds an unlabelled day.
pub fn stressed_within(labels: &[Option<usize>], t: usize, h: usize, states: usize) -> Option<bool> {
    if t + h >= labels.len() {
        return None;
    }
    labels[t + 1..=t + h].iter().try_fold(false, |any, l| l.map(|l| any || l == states - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_weighted_density_and_ranks() {
        // Component 0 is the stressed one (higher mean ln RV), listed first.
        let m = Mixture {
            weights: vec![0.3, 0.7],
            means: vec![[-5.0, 0.0], [-8.0, 0.0]],
            covariances: vec![[[1.0, 0.0], [0.0, 1e-4]], [[1.0, 0.0], [0.0, 1e-4]]],
            rank: vec![1, 0],
        };
        assert_eq!(m.classify([-4.0, 0.0]), Some(1), "near the stressed mean");
        assert_eq!(m.classify([-9.0, 0.0]), Some(0));
        // Midway, the heavier component wins: ln 0.7 > ln 0.3.
        assert_eq!(m.classify([-6.5, 0.0]), Some(0));
        let bad = Mixture { covariances: vec![[[0.0, 0.0], [0.0, 0.0]]; 2], ..m };
        assert_eq!(bad.classify([0.0, 0.0]), None);
    }

    #[test]
    fn the_event_looks_only_at_the_next_h_days() {
        let labels = [Some(0), Some(0), Some(2), None, Some(1), Some(0)];
        assert_eq!(stressed_within(&labels, 0, 1, 3), Some(false));
        assert_eq!(stressed_within(&labels, 0, 2, 3), Some(true));
        assert_eq!(stressed_within(&labels, 1, 2, 3), None, "an unlabelled day in the window");
        assert_eq!(stressed_within(&labels, 5, 1, 3), None, "past the end");
    }
}
