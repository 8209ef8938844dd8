#!/usr/bin/env python3
"""Reference GARCH fits from the Python `arch` package, stored as Rust test fixtures.

Run once (Python is not needed for the Rust tests):

    python3 -m venv /tmp/arch && /tmp/arch/bin/pip install arch==8.0.0
    /tmp/arch/bin/python training/reference/garch_reference.py

For the bundled S&P 500 and BTC daily closes it fits, on percent log returns with a constant
mean (arch's defaults), GARCH(1,1) and GJR-GARCH(1,1,1) with normal and Student-t innovations,
and records parameters, robust (sandwich) standard errors, log-likelihood, AIC/BIC, the backcast
and the last conditional variance, and the analytic variance forecasts 1..22 steps ahead.
"""
import json
from pathlib import Path

import arch
import numpy as np
import pandas as pd
from arch import arch_model

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "garch_arch_reference.json"
SERIES = {"spx": "data/spx_1d.csv", "btc": "data/btc_usdt_1d.csv"}
MODELS = [("garch", 0, "normal"), ("garch", 0, "t"), ("gjr", 1, "normal"), ("gjr", 1, "t")]
NAMES = {"mu": "mu", "omega": "omega", "alpha[1]": "alpha", "gamma[1]": "gamma", "beta[1]": "beta", "nu": "nu"}


def main():
    fits = []
    for series, path in SERIES.items():
        close = pd.read_csv(ROOT / path)["close"].to_numpy()
        r = 100.0 * np.diff(np.log(close))
        for model, o, dist in MODELS:
            am = arch_model(r, mean="Constant", vol="GARCH", p=1, o=o, q=1, dist=dist)
            res = am.fit(disp="off")
            params = {NAMES[k]: float(v) for k, v in res.params.items()}
            fc = res.forecast(horizon=22, reindex=False).variance.to_numpy()[-1]
            fits.append({
                "series": series,
                "data": path,
                "model": model,
                "dist": dist,
                "nobs": int(res.nobs),
                "params": params,
                "std_err": {NAMES[k]: float(v) for k, v in res.std_err.items()},
                "loglik": float(res.loglikelihood),
                "aic": float(res.aic),
                "bic": float(res.bic),
                "backcast": float(am._backcast),
                "last_sigma2": float(res.conditional_volatility[-1] ** 2),
                "variance_forecast": [float(v) for v in fc],
                "convergence_flag": int(res.convergence_flag),
            })
    OUT.write_text(json.dumps({"arch_version": arch.__version__, "returns": "100 * diff(log(close))", "fits": fits}, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
