#!/usr/bin/env python3
"""Independent reference for Foresight's margin backtest statistics.

Written from the formulas (not from the Rust code) with the Python standard library only, so the
Rust tests have values computed a second way. It recomputes, on the bundled BTC daily closes:
static, EWMA (RiskMetrics) and historical-simulation margin rates, exceptions, Kupiec POF,
Christoffersen independence and conditional coverage, Basel zones, average margin,
peak-to-trough, largest 1/5/30-day rises and mean shortfall, and writes them as JSON.

    python3 tests/reference/backtest_reference.py            # rewrite the fixture
    python3 tests/reference/backtest_reference.py --check    # compare with the fixture
"""
import csv
import json
import math
import sys
from pathlib import Path
from statistics import NormalDist

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "btc_usdt_1d.csv"
FIXTURE = ROOT / "tests" / "data" / "reference_btc_backtest.json"
CONFIDENCE = 0.99
BURN_IN = 250
EWMA_SEED = 30  # squared returns averaged to seed the EWMA (RiskMetrics zero mean)
RUNS = [  # (arm, horizon)
    ("static:0.1", 1),
    ("ewma:0.94", 1),
    ("ewma:0.97", 1),
    ("hs:250", 1),
    ("ewma:0.94", 5),
    ("hs:500", 10),
]


def read_closes():
    with open(DATA, newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["date"] for r in rows], [float(r["close"]) for r in rows]


def quantile_type7(xs, q):
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (pos - lo) * (s[hi] - s[lo])


def margins(arm, closes, h):
    """Returns a list of (long, short) rates or None, index = day the rate is posted."""
    n = len(closes)
    kind, _, value = arm.partition(":")
    if kind == "static":
        return [(float(value), float(value))] * n
    if kind == "ewma":
        lam = float(value)
        z = NormalDist().inv_cdf(CONFIDENCE)
        out = [None] * n
        rets = [math.log(closes[i] / closes[i - 1]) for i in range(1, n)]
        var = sum(r * r for r in rets[:EWMA_SEED]) / EWMA_SEED
        # rets[k] is the move into day k+1, so the seed is known at day EWMA_SEED.
        out[EWMA_SEED] = (z * math.sqrt(var * h),) * 2
        for day in range(EWMA_SEED + 1, n):
            r = rets[day - 1]
            var = lam * var + (1 - lam) * r * r
            out[day] = (z * math.sqrt(var * h),) * 2
        return out
    if kind == "hs":
        window = int(value)
        out = [None] * n
        for day in range(n):
            ends = [s for s in range(h, day + 1)][-window:]
            if len(ends) < window:
                continue
            long_l = [1 - closes[s] / closes[s - h] for s in ends]
            short_l = [closes[s] / closes[s - h] - 1 for s in ends]
            out[day] = (max(0.0, quantile_type7(long_l, CONFIDENCE)), max(0.0, quantile_type7(short_l, CONFIDENCE)))
        return out
    raise ValueError(arm)


def chi2_sf(x, df):
    if df == 1:
        return math.erfc(math.sqrt(max(x, 0.0) / 2))
    if df == 2:
        return math.exp(-max(x, 0.0) / 2)
    raise ValueError(df)


def ll(k, p):
    return 0.0 if k == 0 else k * math.log(p)


def kupiec(hits, p):
    n, x = len(hits), sum(hits)
    ph = x / n
    return -2 * ((ll(n - x, 1 - p) + ll(x, p)) - (ll(n - x, 1 - ph) + ll(x, ph)))


def christoffersen_ind(hits):
    c = {(a, b): 0 for a in (0, 1) for b in (0, 1)}
    for a, b in zip(hits, hits[1:]):
        c[(a, b)] += 1
    n00, n01, n10, n11 = c[(0, 0)], c[(0, 1)], c[(1, 0)], c[(1, 1)]
    pi = (n01 + n11) / (n00 + n01 + n10 + n11)
    p01 = n01 / (n00 + n01) if n00 + n01 else 0.0
    p11 = n11 / (n10 + n11) if n10 + n11 else 0.0
    null = ll(n00 + n10, 1 - pi) + ll(n01 + n11, pi)
    alt = ll(n00, 1 - p01) + ll(n01, p01) + ll(n10, 1 - p11) + ll(n11, p11)
    return -2 * (null - alt)


def binom_cdf(n, p, x):
    return sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(x + 1))


def zone(n, x, p):
    c = binom_cdf(n, p, x)
    return "green" if c < 0.95 else ("yellow" if c < 0.9999 else "red")


def rise(m, k):
    pairs = list(zip(m, m[k:]))
    return {"abs": max(b - a for a, b in pairs), "rel": max(b / a - 1 for a, b in pairs if a > 0)}


def backtest(arm, h, closes, dates):
    rates = margins(arm, closes, h)
    first = next(i for i, r in enumerate(rates) if r is not None)
    start = max(BURN_IN, first)
    end = len(closes) - 1 - h
    out = {}
    for side_i, side in enumerate(("long", "short")):
        m, losses = [], []
        for t in range(start, end + 1):
            m.append(rates[t][side_i])
            g = closes[t + h] / closes[t]
            losses.append(1 - g if side == "long" else g - 1)
        hits = [1 if l > r else 0 for l, r in zip(losses, m)]
        test = hits[::h]
        p = 1 - CONFIDENCE
        lr_pof, lr_ind = kupiec(test, p), christoffersen_ind(test)
        w = min(250, len(test))
        counts = [sum(test[i : i + w]) for i in range(len(test) - w + 1)]
        worst = max(counts)
        shortfalls = [l - r for l, r, x in zip(losses, m, hits) if x]
        out[side] = {
            "scored_from": dates[start],
            "observations": len(hits),
            "exceptions": sum(hits),
            "test_observations": len(test),
            "kupiec_lr": lr_pof,
            "kupiec_p": chi2_sf(lr_pof, 1),
            "christoffersen_ind_lr": lr_ind,
            "christoffersen_ind_p": chi2_sf(lr_ind, 1),
            "christoffersen_cc_lr": lr_pof + lr_ind,
            "christoffersen_cc_p": chi2_sf(lr_pof + lr_ind, 2),
            "last_250": zone(w, sum(test[-w:]), p),
            "worst_250": zone(w, worst, p),
            "worst_250_exceptions": worst,
            "avg_margin": sum(m) / len(m),
            "peak_to_trough": max(m) / min(m),
            "max_rise_1d": rise(m, 1),
            "max_rise_5d": rise(m, 5),
            "max_rise_30d": rise(m, 30),
            "mean_shortfall": sum(shortfalls) / len(shortfalls) if shortfalls else None,
        }
    return out


def main():
    dates, closes = read_closes()
    result = {
        "source": "tests/reference/backtest_reference.py",
        "data": "data/btc_usdt_1d.csv",
        "confidence": CONFIDENCE,
        "burn_in": BURN_IN,
        "runs": [{"arm": arm, "horizon": h, "sides": backtest(arm, h, closes, dates)} for arm, h in RUNS],
    }
    if "--check" in sys.argv:
        want = json.loads(FIXTURE.read_text())
        if json.dumps(want, sort_keys=True) != json.dumps(result, sort_keys=True):
            print(f"{FIXTURE} is stale: rerun {sys.argv[0]} without --check", file=sys.stderr)
            return 1
        print(f"{FIXTURE.name}: up to date")
        return 0
    FIXTURE.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {FIXTURE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
