//! Conditional-volatility models in the style of Python's `arch`: a constant mean, a volatility
//! process and an innovation distribution composed into one likelihood, each part taking a flat
//! parameter slice (no fitted state in the components).
//!
//! Parameter order: `mu`, then the process's (`omega, alpha[, gamma], beta`), then the
//! distribution's (`nu` for Student-t). Returns are expected in percent (100 × log return), as
//! `arch` recommends for numerical scale.
//!
//! The recursion is started from arch's backcast (an exponentially weighted mean of the first 75
//! squared residuals, λ = 0.94, computed once at the starting mean) and each variance is kept
//! within arch's loose variance bounds, so that a likelihood evaluated here at `arch`'s estimates
//! equals `arch`'s own.

mod distribution;
mod model;
mod process;

pub use distribution::Innovation;
pub use model::{ArchData, ArchModel};
pub use process::Garch;
