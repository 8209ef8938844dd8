//! # foresight-core
//!
//! The pure risk math that Foresight's training and serving sides share, so that the features a
//! model was trained on are computed by the very code that serves it:
//!
//! - [`features`]: log returns, realized-volatility estimators (close-to-close, Parkinson,
//!   Garman-Klass, Rogers-Satchell, Yang-Zhang), EWMA variance, HAR components, and the
//!   versioned [`features::FeatureSpec`] a model card carries.
//! - [`calibrate`]: the reactive margin calibrators (static, EWMA/RiskMetrics, historical
//!   simulation) named by the arm grammar ([`calibrate::Arm`]), with EMIR Art. 28
//!   anti-procyclicality options (floor, buffer, cap).
//! - [`correlation`]: the cross-asset correlation for portfolio offsets (Schäfer-Strimmer shrinkage).
//! - [`backtest`]: the walk-forward margin backtest, the yardstick every arm is judged by.
//! - [`forecast`]: scoring variance forecasts (QLIKE, MSE, Mincer-Zarnowitz, Diebold-Mariano).
//! - [`frontier`]: the cost–procyclicality frontier of margin designs and the rule that picks one.
//! - [`impulse`]: impulse responses of margin models to a volatility step (simulated paths).
//! - [`margin`]: portfolio initial margin by scenarios (Black-76, netting, correlation offsets,
//!   liquidity add-on) and the guard rails between forward-looking and posted margin.
//! - [`regime`]: volatility regimes from a fitted mixture's parameters, and the stressed-regime
//!   event regime forecasts are scored on.
//! - [`stats`]: coverage tests (Kupiec, Christoffersen), the Basel traffic light and
//!   procyclicality measures.
//! - [`volatility`]: GARCH/GJR-GARCH likelihoods (normal, Student-t) and analytic variance
//!   forecasts, composed as in Python's `arch`.
//!
//! No I/O, no async, no global state: every function takes plain slices and returns values.
#![deny(missing_docs)]

pub mod backtest;
pub mod calibrate;
pub mod correlation;
pub mod error;
pub mod features;
pub mod forecast;
pub mod frontier;
pub mod impulse;
pub mod margin;
pub mod regime;
pub mod stats;
pub mod volatility;

pub use error::{CoreError, Result};
