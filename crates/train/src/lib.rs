//! # foresight-train
//!
//! Foresight's data side, on top of the pure math in `foresight-core`:
//!
//! - [`correlation`]: the cross-asset correlation artifact (common dates, Schäfer-Strimmer shrinkage);
//! - [`data`]: load OHLCV and single-value series from CSV or Parquet with polars, validate them
//!   (every rejection names the file, row and column), report time gaps, turn intraday bars into
//!   daily bars and daily realized variance;
//! - [`fit`]: maximum-likelihood GARCH/GJR-GARCH fits (argmin) with robust standard errors,
//!   HAR-RV in levels and logs (OLS through linfa);
//! - [`evaluate`]: walk-forward forecast evaluation (QLIKE, MSE, Mincer-Zarnowitz,
//!   Diebold-Mariano) and the margin rates of `model:` arms;
//! - [`frontier`]: a grid of reactive and forward arms scored on a development and a report
//!   window, the cost–procyclicality frontier of each and the frozen choice;
//! - [`impulse`]: each arm's margin around simulated volatility steps, forecasters fitted once
//!   on a real series;
//! - [`onnx`]: export forecasters to standalone ONNX graphs (opset 17, double precision);
//! - [`promotion`]: the evidence a promotion rests on: challenger and champion through ONNX
//!   Runtime on the same out-of-sample days, scored and backtested as margin arms;
//! - [`recipe`]: `training/<name>.toml` recipes: fit, walk-forward score, export, check ONNX
//!   parity on every hold-out row and write the model card for the registry;
//! - [`report`]: write a margin backtest as `summary.json`, per-arm `series*.csv` and a PNG chart.
#![deny(missing_docs)]

pub mod correlation;
pub mod data;
pub mod error;
pub mod evaluate;
pub mod fit;
pub mod frontier;
pub mod impulse;
pub mod onnx;
pub mod promotion;
pub mod recipe;
pub mod report;

pub use error::{DataError, Result};
