#!/usr/bin/env python3
"""Prints one backtest summary.json as a compact side-by-side comparison of arms.

Reads only what `foresight backtest` wrote; computes nothing but ranks.
"""
import json
import sys


def main(path):
    summary = json.load(open(path))
    s = summary["settings"]
    print(f"{summary['data']['file']}: {s['scored_from']} .. {s['scored_to']}, "
          f"confidence {s['confidence']}, horizon {s['horizon_days']}d")
    rows = []
    for arm, sides in summary["arms"].items():
        worst = max(sides.values(), key=lambda x: x["exception_rate"])
        passes = all(not x["kupiec_reject"] for x in sides.values())
        rows.append((arm, passes, worst["exception_rate"], sides["long"]["avg_margin"],
                     sides["long"]["peak_to_trough"], (sides["long"]["max_rise_5d"] or {}).get("rel")))
    print(f"{'arm':38} {'kupiec ok':>9} {'worst rate':>10} {'avg margin':>10} {'peak/trough':>11} {'rise 5d':>8}")
    for arm, ok, rate, avg, ptt, rise in sorted(rows, key=lambda r: r[3]):
        ptt_s = f"{ptt:.1f}" if ptt is not None else "-"
        rise_s = f"{100 * rise:+.0f}%" if rise is not None else "-"
        print(f"{arm:38} {'yes' if ok else 'no':>9} {100 * rate:>9.2f}% {100 * avg:>9.2f}% {ptt_s:>11} {rise_s:>8}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "reports/btc_reactive/summary.json")
