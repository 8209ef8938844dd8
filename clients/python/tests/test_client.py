"""The Python client against the real `foresight-serve` binary: publish a pandas DataFrame of
BTC history, calibrate from dicts, batch, forecast, list models, and refusals raised as
ForesightError with the gRPC code and the field path; bearer tokens and TLS."""

import math
import os
import pathlib
import socket
import subprocess
import tempfile
import time

import grpc
import numpy as np
import pandas as pd
import pytest

from foresight_client import Client, ForesightError, daily_history

ROOT = pathlib.Path(__file__).resolve().parents[3]
BINARY = pathlib.Path(os.environ.get("FORESIGHT_SERVE", ROOT / "target" / "debug" / "foresight-serve"))
TLS = ROOT / "tests" / "fixtures" / "tls"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(state: pathlib.Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """The binary on the committed registry and `state`, once it answers."""
    assert BINARY.exists(), f"{BINARY} is missing: run `cargo build --workspace --bins`"
    address = f"127.0.0.1:{free_port()}"
    log = open(state / "serve.log", "ab")
    process = subprocess.Popen(
        [str(BINARY), "--registry", str(ROOT / "models"), "--state-dir", str(state), "--listen", address, "--reload-interval", "0", *extra],
        stderr=log,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", int(address.rsplit(":", 1)[1]))) == 0:
                return process, address
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"foresight-serve did not start on {address}: {(state / 'serve.log').read_text()}")


@pytest.fixture(scope="module")
def server():
    with tempfile.TemporaryDirectory() as state:
        process, address = start(pathlib.Path(state))
        yield address
        process.kill()
        process.wait()


def btc_history(days: int = 400) -> pd.DataFrame:
    """BTC's last `days` days as a margin engine keeps them: close, realized variance from the
    2-hour bars, DVOL in percent."""
    data = ROOT / "data"
    return daily_history(data / "btc_usdt_1d.csv", bars=data / "btc_usdt_2h.csv", implied_vol=data / "btc_dvol_1d.csv", days=days)


def test_publish_a_dataframe_then_calibrate_batch_and_forecast(server):
    client = Client(server)
    history = btc_history()
    first = client.publish_days("BTC", history)
    assert first == {"stored": 400, "duplicate": 0, "rejected": []}
    # The same history again: nothing to send; the state holds every day.
    assert client.publish_days("BTC", history) == {"stored": 0, "duplicate": 0, "rejected": []}
    state = client.asset_state("BTC")
    assert (state["days"], state["last_date"], int(state["last_sequence"])) == (400, history["date"].iloc[-1], 400)
    assert client.asset_state("ETH") is None

    spot = float(history["close"].iloc[-1])
    positions = [
        {"underlying": "BTC", "quantity": 2.5},
        {"underlying": "BTC", "quantity": -1, "option": {"type": "call", "strike": spot * 1.1, "expiry_years": 30 / 365}},
    ]
    margin = client.calibrate("acct-42", positions, collateral={"USDT": 10_000.0}, previous_initial_margin=9_100.0)
    assert margin["account_id"] == "acct-42" and margin["arm"]
    assert math.isfinite(margin["initial_margin"]) and margin["initial_margin"] > margin["maintenance_margin"] > 0
    component = margin["components"][0]
    assert component["asset"] == "BTC" and component["model"].startswith("btc-")
    assert [h["horizon_days"] for h in component["forecast_sigma"]] == [1, 5, 22]
    assert margin["collateral"][0]["asset"] == "USDT" and margin["collateral_value"] == 10_000.0

    results = client.calibrate_batch(
        [
            {"account_id": "a", "positions": positions},
            {"account_id": "b", "positions": [{"underlying": "BTC", "quantity": 1, "greeks": {"delta": 0.5, "gamma": 1e-5, "vega": 30.0}}]},
            {"account_id": "c", "positions": [{"underlying": "ETH", "quantity": 1}]},
        ]
    )
    assert [r["account_id"] for r in results] == ["a", "b", "c"]
    assert results[0]["initial_margin"] > 0 and results[0]["arm"] == margin["arm"]
    assert results[1]["components"][0]["approximate"] is True
    assert results[2]["error"]["code"] == "INVALID_ARGUMENT" and results[2]["error"]["field"] == "positions[0].underlying"

    # The scenario grid behind the margin, as a risk array: price shock × vol shock → loss.
    explained = client.calibrate("acct-42", positions, explain=True)
    grid = explained["components"][0]["scenarios"]
    assert len(grid) == 27 and len(explained["components"][0]["reactive_scenarios"]) == 27
    worst = max(grid, key=lambda s: s["loss"])
    assert math.isclose(worst["loss"], explained["components"][0]["core_im"], rel_tol=1e-12)
    assert (worst["price_shock"], worst["vol_shock"]) == (explained["components"][0]["binding_price_shock"], explained["components"][0]["binding_vol_shock"])
    assert margin["components"][0]["scenarios"] == [], "only when asked"

    forecast = client.forecast("BTC")
    assert forecast["model"] == component["model"] and len(forecast["sigma"]) == 3
    assert all(0 < s["value"] < 1 for s in forecast["sigma"])

    models = client.list_models()
    assert any(m["slot"] == "BTC/volatility" for m in models["models"]) and int(models["generation"]) >= 1


def test_refusals_carry_the_code_and_the_field(server):
    client = Client(server)
    with pytest.raises(ForesightError) as refused:
        client.calibrate("acct-1", [{"underlying": "BTC", "quantity": float("nan")}])
    assert (refused.value.code, refused.value.field) == ("INVALID_ARGUMENT", "positions[0].quantity")
    with pytest.raises(ForesightError) as refused:
        client.calibrate("acct-1", [{"underlying": "BTC", "quantity": 1}], markets=[{"asset": "BTC", "spot": -5}])
    assert refused.value.field == "markets[0].spot"
    # A history given inline is checked day by day.
    bad = btc_history(40).assign(close=lambda d: d["close"].where(d.index != d.index[3], -1.0))
    with pytest.raises(ForesightError) as refused:
        client.calibrate("acct-1", [{"underlying": "BTC", "quantity": 1}], markets=[{"asset": "BTC", "spot": 1.0, "history": bad}])
    assert refused.value.field == "markets[0].history[3].close"


def test_bearer_tokens_and_tls():
    with tempfile.TemporaryDirectory() as state:
        tokens = pathlib.Path(state) / "tokens"
        tokens.write_text("# the engine's token\ns3cret\n")
        process, address = start(
            pathlib.Path(state), "--auth-tokens", str(tokens), "--tls-cert", str(TLS / "server.crt"), "--tls-key", str(TLS / "server.key")
        )
        try:
            guarded = Client(address, token="s3cret", root_certificates=TLS / "ca.crt", tls_server_name="localhost")
            assert guarded.list_models()["models"]
            with pytest.raises(ForesightError) as refused:
                Client(address, token="wrong", root_certificates=TLS / "ca.crt", tls_server_name="localhost").list_models()
            assert refused.value.code == "UNAUTHENTICATED"
            # Plaintext to a TLS server does not get through.
            with pytest.raises(ForesightError):
                Client(address, token="s3cret", timeout=3).list_models()
        finally:
            process.kill()
            process.wait()


def test_daily_history_reads_closes_realized_variance_and_implied_vol_from_files():
    data = ROOT / "data"
    history = daily_history(data / "btc_usdt_1d.csv", bars=data / "btc_usdt_2h.csv", implied_vol=data / "btc_dvol_1d.csv", days=30)
    assert list(history.columns) == ["date", "close", "realized_variance", "implied_vol_percent"] and len(history) == 30
    day = history.iloc[-5]
    # By hand: the squared log returns into each 2-hour bar of that day, the first one's from the
    # day before's last bar.
    rows = [line.split(",") for line in (data / "btc_usdt_2h.csv").read_text().splitlines()[1:]]
    closes = [(r[0][:10], float(r[4])) for r in rows]
    expected = sum(math.log(c / p) ** 2 for (_, p), (d, c) in zip(closes, closes[1:]) if d == day["date"])
    assert math.isclose(day["realized_variance"], expected, rel_tol=1e-12)
    dvol = dict(line.split(",") for line in (data / "btc_dvol_1d.csv").read_text().splitlines()[1:])
    assert day["implied_vol_percent"] == float(dvol[day["date"]])
    assert daily_history(data / "btc_usdt_1d.csv").columns.tolist() == ["date", "close"]
