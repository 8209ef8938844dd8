"""The client: a channel (TLS and a bearer token when given), request builders from dicts, and
one error type for every refusal."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import pathlib
from typing import Any, Iterable, Mapping

import grpc
from google.protobuf.json_format import MessageToDict

from ._generated.foresight.v1 import calibration_pb2 as calibration
from ._generated.foresight.v1 import calibration_pb2_grpc as calibration_grpc
from ._generated.foresight.v1 import market_data_pb2 as market_data
from ._generated.foresight.v1 import market_data_pb2_grpc as market_data_grpc
from ._generated.foresight.v1 import models_pb2 as models
from ._generated.foresight.v1 import models_pb2_grpc as models_grpc


class ForesightError(Exception):
    """A call the service refused: `code` is the gRPC status name (``INVALID_ARGUMENT``), `field`
    the path of the field at fault when the service names one, `message` its explanation."""

    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.field = field

    @classmethod
    def from_rpc(cls, error: grpc.RpcError) -> "ForesightError":
        code = error.code().name if error.code() is not None else "UNKNOWN"
        message = error.details() or ""
        return cls(code, message, _field_of(code, message))


def _field_of(code: str, message: str) -> str | None:
    """The field path an INVALID_ARGUMENT message starts with (`positions[0].quantity: ...`)."""
    if code != "INVALID_ARGUMENT" or ": " not in message:
        return None
    head = message.split(": ", 1)[0]
    return head if head and " " not in head else None


def _plain(value: Any) -> Any:
    """A dataclass as a dict; anything else as it is."""
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value


def _number(value: Any) -> float | None:
    """A float, or None for missing values (None, NaN, pandas' NA)."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _date(value: Any) -> str:
    """`YYYY-MM-DD` from a string, a date or a pandas Timestamp."""
    if isinstance(value, str):
        return value[:10]
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.strftime("%Y-%m-%d")
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d")
    raise TypeError(f"date: expected a string or a date, got {value!r}")


def _records(rows: Any) -> list[Mapping[str, Any]]:
    """Rows of a pandas DataFrame (by its `to_dict("records")`) or an iterable of mappings."""
    if hasattr(rows, "to_dict"):
        return list(rows.to_dict("records"))
    return [_plain(row) for row in rows]


def _position(p: Any) -> calibration.Position:
    p = _plain(p)
    position = calibration.Position(underlying=p["underlying"], quantity=float(p["quantity"]))
    if "option" in p and p["option"] is not None:
        o = _plain(p["option"])
        kind = {"call": calibration.CALL, "put": calibration.PUT}[str(o["type"]).lower()]
        position.option.CopyFrom(calibration.OptionTerms(type=kind, strike=float(o["strike"]), expiry_years=float(o["expiry_years"])))
    elif "greeks" in p and p["greeks"] is not None:
        g = _plain(p["greeks"])
        position.greeks.CopyFrom(calibration.Greeks(delta=float(g["delta"]), gamma=float(g["gamma"]), vega=float(g["vega"])))
    else:
        position.linear.SetInParent()
    return position


def _day(row: Mapping[str, Any]) -> calibration.DailyObservation:
    day = calibration.DailyObservation(date=_date(row["date"]), close=float(row["close"]))
    for name in ("realized_variance", "implied_vol_percent"):
        value = _number(row.get(name))
        if value is not None:
            setattr(day, name, value)
    return day


def _market(m: Any) -> calibration.AssetMarket:
    m = _plain(m)
    market = calibration.AssetMarket(asset=m["asset"], spot=float(m.get("spot") or 0.0), implied_vol_fraction=float(m.get("implied_vol_fraction") or 0.0))
    for name in ("depth_notional", "data_age_seconds"):
        value = _number(m.get(name))
        if value is not None:
            setattr(market, name, value)
    if m.get("history") is not None:
        market.history.extend(_day(row) for row in _records(m["history"]))
    return market


def _collateral(collateral: Any) -> list[calibration.CollateralBalance]:
    if collateral is None:
        return []
    if isinstance(collateral, Mapping):
        return [calibration.CollateralBalance(asset=asset, quantity=float(quantity)) for asset, quantity in collateral.items()]
    return [calibration.CollateralBalance(asset=c["asset"], quantity=float(c["quantity"])) for c in map(_plain, collateral)]


def _dict(message) -> dict:
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


class Client:
    """A connection to `foresight-serve` at `address` (``host:port``).

    `token`: a bearer token sent with every call. `root_certificates`: a PEM file (path or bytes)
    to verify the server's TLS certificate with (TLS is on when given); `tls_server_name`: the
    name the certificate carries, when it is not the address's host. `timeout`: seconds per call.
    """

    def __init__(
        self,
        address: str = "127.0.0.1:50051",
        *,
        token: str | None = None,
        root_certificates: str | pathlib.Path | bytes | None = None,
        tls_server_name: str | None = None,
        timeout: float = 30.0,
    ):
        if root_certificates is None:
            self._channel = grpc.insecure_channel(address)
        else:
            pem = root_certificates if isinstance(root_certificates, bytes) else pathlib.Path(root_certificates).read_bytes()
            options = [("grpc.ssl_target_name_override", tls_server_name)] if tls_server_name else []
            self._channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=pem), options=options)
        self._metadata = [("authorization", f"Bearer {token}")] if token else []
        self._timeout = timeout
        self._calibration = calibration_grpc.CalibrationServiceStub(self._channel)
        self._market_data = market_data_grpc.MarketDataServiceStub(self._channel)
        self._models = models_grpc.ModelServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def _call(self, method, request, **kwargs):
        try:
            return method(request, timeout=self._timeout, metadata=self._metadata, **kwargs)
        except grpc.RpcError as error:
            raise ForesightError.from_rpc(error) from None

    def calibrate(
        self,
        account_id: str,
        positions: Iterable[Any],
        *,
        markets: Iterable[Any] = (),
        collateral: Any = None,
        previous_initial_margin: float | None = None,
        explain: bool = False,
    ) -> dict:
        """One account's margin. `positions`: dicts with `underlying`, `quantity` and optionally
        `option` (`type` call/put, `strike`, `expiry_years`) or `greeks` (`delta`, `gamma`,
        `vega`); `markets`: dicts with `asset`, `spot`, `implied_vol_fraction`, `history` (a
        DataFrame or records of `date`, `close`, `realized_variance`, `implied_vol_percent`),
        or none to use the published market state; `collateral`: ``{"USDT": 10_000}``;
        `explain`: also return each underlying's scenario grids (`components[i].scenarios`, the
        forward-looking grid whose worst loss is `core_im`, and `reactive_scenarios`)."""
        request = calibration.CalibrateRequest(
            account_id=account_id,
            positions=[_position(p) for p in positions],
            markets=[_market(m) for m in markets],
            collateral=_collateral(collateral),
            explain=explain,
        )
        if previous_initial_margin is not None:
            request.previous_initial_margin = float(previous_initial_margin)
        return _dict(self._call(self._calibration.Calibrate, request))

    def calibrate_batch(self, accounts: Iterable[Mapping[str, Any]], *, markets: Iterable[Any] = ()) -> list[dict]:
        """Many accounts in one call (dicts with the arguments of :meth:`calibrate`), with
        `markets` shared by all of them. One result per account, in order: its margin, or
        ``{"account_id", "error": {"code", "message", "field"}}`` (`field`: the path the service
        names, as in :class:`ForesightError`)."""
        requests = []
        for a in map(_plain, accounts):
            request = calibration.CalibrateRequest(
                account_id=a["account_id"],
                positions=[_position(p) for p in a["positions"]],
                markets=[_market(m) for m in a.get("markets", ())],
                collateral=_collateral(a.get("collateral")),
                explain=bool(a.get("explain", False)),
            )
            if a.get("previous_initial_margin") is not None:
                request.previous_initial_margin = float(a["previous_initial_margin"])
            requests.append(request)
        response = self._call(self._calibration.CalibrateBatch, calibration.CalibrateBatchRequest(accounts=requests, markets=[_market(m) for m in markets]))
        out = []
        for result in response.results:
            if result.WhichOneof("outcome") == "margin":
                out.append(_dict(result.margin))
            else:
                error = {"code": result.error.code, "message": result.error.message, "field": _field_of(result.error.code, result.error.message)}
                out.append({"account_id": result.account_id, "error": error})
        return out

    def forecast(self, asset: str, *, market: Any = None) -> dict:
        """The champion's volatility forecast of `asset` per horizon (and the regime model's
        probabilities), from the published state or from `market` (as in :meth:`calibrate`)."""
        request = calibration.ForecastRequest(market=_market(market) if market is not None else calibration.AssetMarket(asset=asset))
        return _dict(self._call(self._calibration.Forecast, request))

    def asset_state(self, asset: str) -> dict | None:
        """What the service holds for `asset`, or None when nothing was published."""
        try:
            return _dict(self._call(self._market_data.GetAssetState, market_data.AssetStateRequest(asset=asset)))
        except ForesightError as error:
            if error.code == "NOT_FOUND":
                return None
            raise

    def publish_days(self, asset: str, days: Any) -> dict:
        """Publishes completed days of `asset` (a pandas DataFrame or records with `date`,
        `close` and optionally `realized_variance`, `implied_vol_percent`), oldest first. Only
        days after the last one the service holds are sent, with sequence numbers after its
        last one, so publishing the same history again is safe. Returns the counts of stored,
        duplicate and rejected updates and the rejections' reasons."""
        held = self.asset_state(asset) or {}
        last_date = held.get("last_date") or ""
        sequence = int(held.get("last_sequence") or 0)
        updates = []
        for row in _records(days):
            day = _day(row)
            if day.date <= last_date:
                continue
            sequence += 1
            updates.append(market_data.MarketUpdate(asset=asset, sequence=sequence, day=day))
        counts = {"stored": 0, "duplicate": 0, "rejected": []}
        if not updates:
            return counts
        acks = self._call(self._market_data.Publish, iter(updates))
        try:
            for ack in acks:
                if ack.status == market_data.STORED:
                    counts["stored"] += 1
                elif ack.status == market_data.DUPLICATE:
                    counts["duplicate"] += 1
                else:
                    counts["rejected"].append({"sequence": ack.sequence, "error": ack.error})
        except grpc.RpcError as error:
            raise ForesightError.from_rpc(error) from None
        return counts

    def list_models(self) -> dict:
        """The served models by slot, the A/B split, the reactive arm and the engine generation."""
        return _dict(self._call(self._models.ListModels, models.ListModelsRequest()))
