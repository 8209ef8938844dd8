//! Fitting forecasters to history. Each model follows linfa's vocabulary: hyper-parameters are
//! checked into valid parameters, fitting returns a separate fitted type, and only the fitted
//! type predicts.

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
