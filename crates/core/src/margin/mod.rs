//! From forecasts and positions to margin: Black-76 revaluation, the scenario grid that turns an
//! arm's margin rate into a portfolio's initial margin (netting within an underlying, capped
//! correlation offsets across underlyings, a liquidity add-on), and the guard rails between the
//! forward-looking number and what is posted, the checks that send an account back to the reactive
//! arm, collateral haircuts and the stable A/B split. Pure functions, for the service and the CLI
//! alike.

pub mod account;
pub mod black76;
pub mod guard;
pub mod inputs;
pub mod scenario;
pub mod split;

pub use account::{AccountMargin, UnderlyingInputs, calibrate_account};
pub use black76::OptionKind;
pub use guard::{Guard, GuardRails, Guarded};
pub use inputs::{Fallback, InputLimits, check_inputs, collateral_haircut};
pub use scenario::{Instrument, PortfolioMargin, Position, Scenario, ScenarioConfig, UnderlyingMargin, UnderlyingMarket, portfolio_margin, scenario_losses, scenarios};
