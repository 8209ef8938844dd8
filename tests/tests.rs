//! End-to-end tests of the `foresight` command and of the backtest against the independent
//! Python reference (`tests/reference/backtest_reference.py`). One test binary, as in ripgrep.

mod util;

mod backtest_cli;
mod dashboard;
mod doctor;
mod evidence;
mod governance;
mod margin;
mod properties;
mod reference;
mod serve;
mod serve_inference;
mod serve_ops;
mod serve_replicas;
mod serve_security;
mod serve_soak;
mod serve_shape;
mod registry_arms;
mod registry_store;
mod report_cli;
mod train_cli;
