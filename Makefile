# The README's two commands: `make demo` (the main job) and `make test` (the whole suite).
# Both run the idempotent bootstrap first, so a fresh Debian machine needs nothing else.

FORESIGHT := target/debug/foresight
REPORTS   := reports

.PHONY: bootstrap build demo test

bootstrap:
	./scripts/bootstrap.sh

# One debug build serves the demo and the tests (dependencies are optimised in
# [profile.dev.package."*"]), so the 2-core machine compiles polars once.
build: bootstrap
	cargo build --bin foresight

demo: build
	$(FORESIGHT) doctor
	$(FORESIGHT) inspect --data data/btc_usdt_2h.csv --rv-out $(REPORTS)/btc_daily_rv.csv
	$(FORESIGHT) backtest --config training/reactive_btc.toml
	$(FORESIGHT) backtest --config training/reactive_spx.toml
	$(FORESIGHT) fit --model gjr --dist t --data data/btc_usdt_1d.csv
	$(FORESIGHT) evaluate --data data/btc_usdt_2h.csv --out $(REPORTS)/btc_forecasts
	$(FORESIGHT) backtest --data data/btc_usdt_1d.csv --rv-data data/btc_usdt_2h.csv \
	    --calibrator static:0.10,ewma,hs:250,model:log-har,model:gjr-t --out $(REPORTS)/btc_models

test: bootstrap
	cargo test --workspace
	python3 tests/reference/backtest_reference.py --check
