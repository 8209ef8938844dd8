//! Reactive margin calibrators and the arm grammar that names them everywhere.
//!
//! An *arm* is a calibrator (how a margin rate is set from past prices) plus optional
//! anti-procyclicality (APC) tools. The same text names an arm in the CLI, configs, reports and,
//! later, the service's A/B split:
//!
//! ```text
//! arm     = base *( "+" option )
//! base    = "static:" RATE          fixed rate, e.g. static:0.10
//!         | "ewma" [ ":" LAMBDA ]   RiskMetrics EWMA parametric VaR, λ = 0.94 by default
//!         | "hs:" WINDOW            historical simulation over WINDOW h-day losses
//!         | "model:" FORECASTER     forward-looking: a forecaster's variance forecast turned
//!                                   into a rate by filtered historical simulation (garch,
//!                                   garch-t, gjr, gjr-t, har, log-har)
//! option  = "floor:" RATE           never below a fixed rate
//!         | "floor:stress" N "y"    EMIR 28(1)(c): never below the rate the same method gives
//!                                   on an equally weighted N-year lookback (stress included)
//!         | "buffer:" FRACTION      EMIR 28(1)(a): a buffer of FRACTION × margin, released
//!                                   while margins rise, rebuilt as they fall
//!         | "release:" DAYS         a fall is spread out: the posted rate sinks at most to
//!                                   half in DAYS days (a half-life), rises in full
//!         | "cap:" FRACTION         the rate rises at most FRACTION (relative) per day
//!         | "lookahead:" DAYS       model arms: scale by the forecast over the next DAYS days
//!         | "path:" DAYS            model arms: scale by the worse end of the forecast path
//!                                   (margin horizon or DAYS), see [`ForwardPolicy`]
//!         | "iv:" WEIGHT            model arms: blend the forecasts with the variance implied
//!                                   by implied volatility (VIX, DVOL), see [`blend_implied`]
//!         | "regime:" DAYS          model arms: raise the forecasts toward the stressed
//!                                   regime's variance by P(stressed within DAYS), see
//!                                   [`raise_by_stress`]
//! ```
//!
//! Options apply in a fixed order whatever order they are written in: base → buffer → release →
//! cap → floor. The floor is a hard minimum, so it wins over the cap. An arm prints in canonical form
//! (`ewma:0.94+floor:stress10y+cap:0.25`), options in that order.
//!
//! Every rate is a fraction of notional, for a confidence `c` (default 99%) and a margin period
//! of risk of `h` days (default 1), for a long and a short unit position:
//! - parametric (EWMA): `z_c · σ · √h` with σ from daily log returns (the same for both sides);
//! - historical simulation: the empirical `c`-quantile (linear interpolation between order
//!   statistics, "type 7") of the side's past h-day losses, floored at zero.

mod apc;
mod arm;
mod forecast;
mod reactive;

pub use apc::{Apc, Floor};
pub use arm::{Arm, ForwardInputs};
pub use forecast::{FHS_MIN_RESIDUALS, ForwardPolicy, Stress, blend_implied, fhs_rates, forward_fill, implied_daily_variance, raise_by_stress};
pub use reactive::{BaseCalibrator, CalibrationParams, ModelName, SideRates, empirical_quantile};
