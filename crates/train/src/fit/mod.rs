//! Fitting forecasters to history. Each model follows linfa's vocabulary: hyper-parameters are
//! checked into valid parameters, fitting returns a separate fitted type, and only the fitted
//! type predicts.
//!
//! Constructors and setters store what they are given; each params type's `check` rejects a
//! value outside its domain with [`DataError::Fit`] naming the parameter and the value
//! (`fitting log-har(h=0): horizon must be ≥ 1 day, got 0`), and `fit` checks first. Nothing is
//! clamped into range: a silently corrected horizon or epoch count would train a model other
//! than the one asked for.

mod garch;
mod har;
mod har_x;
mod linalg;
mod neural;
mod regime;

pub use garch::{FittedGarch, GarchParams};
pub use har::{FittedHar, HarParams};
pub use har_x::{FittedHarX, HarXParams};
pub use regime::{FittedRegime, RegimeParams, RegimeSummary, transition_frequencies};
pub use neural::{Dense, Epoch, FittedNeural, NeuralForecast, NeuralParams};

use std::fmt::Display;

use crate::error::{DataError, Result};

/// The error of a hyper-parameter outside its domain: `<name> must be <domain>, got <value>`.
fn invalid(model: impl Into<String>, name: &str, domain: &str, value: impl Display) -> DataError {
    DataError::Fit { model: model.into(), message: format!("{name} must be {domain}, got {value}") }
}

/// A list of forecast horizons: at least one, each ≥ 1 day, none twice (each horizon names its
/// own outputs, `variance_h5`, `p_high_regime_h5`, so a repeat would collide).
fn check_horizons(model: &str, horizons: &[usize]) -> Result<()> {
    let domain = if horizons.is_empty() {
        "at least one horizon"
    } else if horizons.contains(&0) {
        "≥ 1 day each"
    } else if horizons.iter().enumerate().any(|(i, h)| horizons[..i].contains(h)) {
        "distinct"
    } else {
        return Ok(());
    };
    Err(invalid(model, "horizons", domain, format!("{horizons:?}")))
}

