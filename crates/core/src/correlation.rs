//! Cross-asset correlation for portfolio offsets, shrunk toward no correlation.
//!
//! The Schäfer-Strimmer (2005) estimator ("A shrinkage approach to large-scale covariance
//! matrix estimation", target D: the identity, as R's `corpcor::cor.shrink`): with each
//! asset's returns standardised (`x`, sample sd with `n − 1`), `w_kij = x_ki·x_kj`, the sample
//! correlation `r_ij = n/(n−1)·mean_k(w_kij)` and its estimated variance
//! `Var(r_ij) = n/(n−1)³ · Σ_k (w_kij − mean(w_ij))²`, the off-diagonal correlations shrink by
//! `λ = min(1, Σ_{i≠j} Var(r_ij) / Σ_{i≠j} r_ij²)`. Short, noisy overlaps shrink a lot; long,
//! clean ones barely. The diagonal stays 1, so the result is a correlation matrix.

use serde::Serialize;

use crate::error::{CoreError, Result};

/// A shrunk correlation matrix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShrunkCorrelation {
    /// Sample correlation of the standardised returns.
    pub sample: Vec<Vec<f64>>,
    /// `(1 − δ)·sample + δ·I`.
    pub shrunk: Vec<Vec<f64>>,
    /// Shrinkage intensity δ in [0, 1].
    pub intensity: f64,
    /// Observations (aligned return dates).
    pub observations: usize,
}

/// Shrunk correlation of `returns[asset][t]` (every asset the same length, aligned by
/// date, at least 30 observations, each with non-zero variance).
pub fn shrunk_correlation(returns: &[Vec<f64>]) -> Result<ShrunkCorrelation> {
    let p = returns.len();
    let t = returns.first().map_or(0, Vec::len);
    if p < 2 || t < 30 {
        return Err(CoreError::InsufficientHistory { what: "a correlation matrix (≥ 2 assets, ≥ 30 aligned returns)".into(), needed: 30, available: t });
    }
    let n = t as f64;
    let mut x: Vec<Vec<f64>> = Vec::with_capacity(p);
    for (asset, r) in returns.iter().enumerate() {
        if r.len() != t {
            return Err(CoreError::InsufficientHistory { what: format!("asset {asset}: returns aligned with asset 0"), needed: t, available: r.len() });
        }
        if let Some(index) = r.iter().position(|v| !v.is_finite()) {
            return Err(CoreError::InvalidInput { field: "return", index, value: r[index], reason: "returns must be finite" });
        }
        let mean = r.iter().sum::<f64>() / n;
        let var = r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        if var <= 0.0 {
            return Err(CoreError::InvalidInput { field: "return", index: 0, value: var, reason: "an asset's returns have no variance" });
        }
        x.push(r.iter().map(|v| (v - mean) / var.sqrt()).collect());
    }
    let mut sample = vec![vec![1.0; p]; p];
    let (mut var_sum, mut sq_sum) = (0.0, 0.0);
    for i in 0..p {
        for j in 0..p {
            if i == j {
                continue;
            }
            let w: Vec<f64> = (0..t).map(|k| x[i][k] * x[j][k]).collect();
            let w_mean = w.iter().sum::<f64>() / n;
            let r = n / (n - 1.0) * w_mean;
            sample[i][j] = r;
            var_sum += n / (n - 1.0).powi(3) * w.iter().map(|v| (v - w_mean).powi(2)).sum::<f64>();
            sq_sum += r * r;
        }
    }
    let intensity = if sq_sum > 0.0 { (var_sum / sq_sum).clamp(0.0, 1.0) } else { 1.0 };
    let shrunk = (0..p)
        .map(|i| (0..p).map(|j| if i == j { 1.0 } else { (1.0 - intensity) * sample[i][j] }).collect())
        .collect();
    Ok(ShrunkCorrelation { sample, shrunk, intensity, observations: t })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random normal stream (LCG + Box-Muller).
    fn normals(seed: u64, n: usize) -> Vec<f64> {
        let mut s = seed;
        let mut u = move || {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n).map(|_| (-2.0 * u().ln()).sqrt() * (2.0 * std::f64::consts::PI * u()).cos()).collect()
    }

    #[test]
    fn shrinks_more_on_short_samples_and_stays_a_correlation_matrix() {
        let z1 = normals(1, 5000);
        let z2 = normals(2, 5000);
        // True correlation 0.6.
        let a: Vec<f64> = z1.clone();
        let b: Vec<f64> = z1.iter().zip(&z2).map(|(x, y)| 0.6 * x + 0.8 * y).collect();
        let long = shrunk_correlation(&[a.clone(), b.clone()]).unwrap();
        let short = shrunk_correlation(&[a[..60].to_vec(), b[..60].to_vec()]).unwrap();
        assert!((long.sample[0][1] - 0.6).abs() < 0.03, "{}", long.sample[0][1]);
        assert!(long.intensity < 0.01 && short.intensity > long.intensity, "{} {}", long.intensity, short.intensity);
        for c in [&long, &short] {
            assert_eq!(c.shrunk[0][0], 1.0);
            assert_eq!(c.shrunk[0][1], c.shrunk[1][0]);
            assert!(c.shrunk[0][1].abs() <= c.sample[0][1].abs());
        }
    }

    #[test]
    fn intensity_by_hand_on_a_tiny_sample() {
        // x = (1, −1, 1, −1, ...) and y = x: correlation 1 and every product w_k is the same,
        // so its estimated variance is 0 and nothing is shrunk.
        let x: Vec<f64> = (0..40).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let c = shrunk_correlation(&[x.clone(), x]).unwrap();
        assert!((c.sample[0][1] - 1.0).abs() < 1e-12);
        assert!(c.intensity < 1e-12, "{}", c.intensity);
        assert!(shrunk_correlation(&[vec![1.0; 40], vec![2.0; 40]]).is_err(), "no variance");
        assert!(shrunk_correlation(&[vec![0.1; 10], vec![0.2; 10]]).is_err(), "too short");
    }
}
