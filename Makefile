# The README's two commands: `make demo` (the main job) and `make test` (the whole suite).
# Both run the idempotent bootstrap first, so a fresh Debian machine needs nothing else.

FORESIGHT := target/debug/foresight
SERVE     := target/debug/foresight-serve
REPORTS   := reports

.PHONY: bootstrap build demo test

bootstrap:
	./scripts/bootstrap.sh

# One debug build serves the demo and the tests (dependencies are optimised in
# [profile.dev.package."*"]), so the 2-core machine compiles polars once.
build: bootstrap
	cargo build --workspace --bins

demo: build
	$(FORESIGHT) doctor
	$(FORESIGHT) inspect --data data/btc_usdt_2h.csv --rv-out $(REPORTS)/btc_daily_rv.csv
	$(FORESIGHT) backtest --config training/reactive_btc.toml
	$(FORESIGHT) backtest --config training/reactive_spx.toml
	$(FORESIGHT) fit --model gjr --dist t --data data/btc_usdt_1d.csv
	# Retrain -> compare -> promote, in a scratch copy of the committed registry.
	rm -rf $(REPORTS)/registry && mkdir -p $(REPORTS) && cp -r models $(REPORTS)/registry
	$(FORESIGHT) train --config training/btc_intraday.toml --registry $(REPORTS)/registry
	$(FORESIGHT) models --registry $(REPORTS)/registry list
	$(FORESIGHT) models --registry $(REPORTS)/registry diff btc-neural@v1 btc-neural@v2
	$(FORESIGHT) models --registry $(REPORTS)/registry show btc-regime
	$(FORESIGHT) models --registry $(REPORTS)/registry show btc-dvol-har-x
	# Every forecaster, walk-forward and registered, scored and turned into margin.
	$(FORESIGHT) evaluate --data data/btc_usdt_2h.csv --models ewma,gjr-t,log-har,btc-neural,btc-log-har,btc-regime \
	    --train-days 1600 --exog dvol=data/btc_dvol_1d.csv:iv --exog funding=data/btc_funding_8h.csv:sum \
	    --margin-data data/btc_usdt_1d.csv --out $(REPORTS)/btc_forecasts
	$(FORESIGHT) backtest --data data/btc_usdt_1d.csv --rv-data data/btc_usdt_2h.csv \
	    --calibrator static:0.10,ewma,hs:250,model:log-har,model:log-har+lookahead:22+cap:0.15,model:har+lookahead:22+cap:0.15 \
	    --out $(REPORTS)/btc_models
	$(FORESIGHT) backtest --data data/btc_usdt_1d.csv --rv-data data/btc_usdt_2h.csv \
	    --calibrator ewma,hs:250,model:btc-dvol-har-x+lookahead:22,model:btc-neural+lookahead:22 --out $(REPORTS)/btc_registered
	$(FORESIGHT) correlation --asset BTC=data/btc_usdt_1d.csv --asset SPX=data/spx_1d.csv --dry-run
	# The evidence: each asset class's frozen forward arm against the reactive frontier on its
	# report window, and the impulse responses to volatility steps.
	$(FORESIGHT) frontier --config training/frontier_crypto.toml
	$(FORESIGHT) frontier --config training/frontier_equity.toml
	$(FORESIGHT) impulse --data data/btc_usdt_1d.csv --out $(REPORTS)/impulse_crypto \
	    --calibrator model:log-har+lookahead:66+release:30,model:log-har,ewma,hs:250,ewma:0.99+buffer:0.25
	$(FORESIGHT) impulse --data data/spx_close_1928_2024.csv --horizon 2 --calm-days 1100 --out $(REPORTS)/impulse_equity \
	    --calibrator model:log-har+iv:0.5+buffer:0.25,model:log-har+lookahead:250,model:log-har,ewma,hs:500,hs:1000+floor:stress10y
	# The risk officer's page: the forward-looking and reactive arms side by side, one HTML file.
	$(FORESIGHT) report --from $(REPORTS)/btc_models --out $(REPORTS)/ab_report.html
	$(FORESIGHT) report --from $(REPORTS)/frontier_crypto --out $(REPORTS)/frontier_crypto.html
	# Serve the registry's champions (foresight.toml: A/B split in shadow mode, audit log in
	# reports/serve-state) and ask for a portfolio's forward-looking margin; SIGTERM stops it gracefully.
	rm -rf $(REPORTS)/serve-state
	# Then the same account as of each of the data's last 30 days with a next close (a replay of
	# history through the live service), so the live page below has days to score.
	$(SERVE) --config foresight.toml --listen 127.0.0.1:50551 --metrics-listen 127.0.0.1:0 & pid=$$!; \
	$(FORESIGHT) calibrate --portfolio training/portfolio_btc.json --server http://127.0.0.1:50551; rc=$$?; \
	for day in $$(tail -n 31 data/btc_usdt_1d.csv | head -n 30 | cut -d, -f1); do \
	    $(FORESIGHT) calibrate --portfolio training/portfolio_btc.json --server http://127.0.0.1:50551 --as-of $$day >/dev/null || rc=1; \
	done; \
	kill $$pid; wait $$pid; tail -n 1 $(REPORTS)/serve-state/audit.jsonl; exit $$rc
	# The live page of that shadow run: what each arm posted or shadowed, scored on the replayed
	# days, from the audit log.
	$(FORESIGHT) report --from-audit $(REPORTS)/serve-state/audit.jsonl --prices data/btc_usdt_1d.csv --out $(REPORTS)/live_report.html

# The binaries first: the service's end-to-end tests start the real foresight-serve, which
# `cargo test` alone does not build (it is another package's binary).
test: build
	cargo test --workspace
	.venv/bin/python -m pytest -q clients/python/tests
	.venv/bin/python notebooks/run.py
	python3 tests/reference/backtest_reference.py --check
