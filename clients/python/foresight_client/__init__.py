"""Python client of `foresight-serve`.

    from foresight_client import Client
    client = Client("127.0.0.1:50051")
    history = daily_history("data/btc_usdt_1d.csv", bars="data/btc_usdt_2h.csv", days=400)
    client.publish_days("BTC", history)          # a pandas DataFrame or records: date, close, ...
    margin = client.calibrate("acct-42", [{"underlying": "BTC", "quantity": 2.5}])

Requests are plain dicts (or dataclasses); answers are dicts with the protos' field names. A
refused call raises :class:`ForesightError` with the gRPC code and, for invalid input, the path of
the field at fault (``positions[0].quantity``).
"""

from .client import Client, ForesightError
from .history import daily_history
from .local import LocalServer, read_audit

__all__ = ["Client", "ForesightError", "LocalServer", "daily_history", "read_audit"]
