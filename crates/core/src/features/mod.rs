//! Features computed from market history: the same functions feed training and live serving.
//!
//! Units: every variance here is per bar interval (daily variance for daily bars) of log
//! returns; [`spec::FeatureSpec`] records the units and the annualisation a model card needs.

mod estimators;
mod ewma;
mod har;
mod realized;
mod regime;
mod returns;
pub mod spec;

pub use estimators::{Bar, VolEstimator, rolling_variance};
pub use ewma::{DEFAULT_EWMA_INIT, Ewma};
pub use realized::{DailyRv, daily_realized_variance};
pub use har::{HAR_DAILY, HAR_MONTHLY, HAR_WEEKLY, HarComponents, har_components};
pub use regime::{REGIME_FEATURES, feature_window, implied_log_variance, regime_features};
pub use returns::{Side, aligned_log_returns, horizon_losses, log_returns, percent_log_returns};
pub use spec::{FEATURE_SPEC_VERSION, FeatureSpec};
