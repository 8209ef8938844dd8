"""Daily history from files, in the shape :meth:`Client.publish_days` sends: one row per day with
``date``, ``close``, ``realized_variance`` and ``implied_vol_percent`` (the last two may be
missing). Needs pandas (``pip install ./clients/python[notebooks]`` or ``[test]``)."""

from __future__ import annotations

import os


def daily_history(closes: str | os.PathLike, bars: str | os.PathLike | None = None, implied_vol: str | os.PathLike | None = None, days: int | None = None):
    """The days of ``closes`` (a CSV with ``date`` and ``close`` columns, OHLCV or not), the last
    ``days`` of them when given, with each day's realized variance — the sum of squared log
    returns of the intraday ``bars`` (``date`` a timestamp whose first 10 characters are the
    day, ``close``), the return into a day's first bar included — and the annualised implied
    volatility in percent of the ``implied_vol`` file (``date,close``, e.g. DVOL or VIX), each
    left empty where its file has no value for the day."""
    try:
        import numpy as np
        import pandas as pd
    except ImportError as error:  # pragma: no cover - the extras install pandas
        raise ImportError("daily_history needs pandas: pip install './clients/python[notebooks]'") from error
    history = pd.read_csv(closes, usecols=["date", "close"]).set_index("date")
    if bars is not None:
        intraday = pd.read_csv(bars, usecols=["date", "close"])
        squared = (np.log(intraday["close"]).diff() ** 2).groupby(intraday["date"].str[:10])
        history = history.join(squared.sum(min_count=1).rename("realized_variance"))
    if implied_vol is not None:
        iv = pd.read_csv(implied_vol, usecols=["date", "close"]).set_index("date")["close"]
        history = history.join(iv.rename("implied_vol_percent"))
    history = history.reset_index()
    return history if days is None else history.tail(days)
