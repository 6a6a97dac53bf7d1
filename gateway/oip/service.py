"""The Open Inference Protocol's data plane: server and model metadata, readiness, and
inference through the dynamic batcher into the gateway's inference core. Knows no
transport: the REST routes (:mod:`gateway.routes.v2`) and the gRPC servicer
(:mod:`gateway.oip.grpc_server`) only decode, call it, and encode.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Final

from pydantic import ValidationError

from gateway.oip.batching import RequestBatcher
from gateway.oip.errors import InvalidInputError, ModelNotFoundError, NotReadyError, OipError
from gateway.oip.metrics import OipMetrics
from gateway.oip.tensors import (
    InputTensor,
    ModelSpec,
    OutputTensor,
    decode_features,
    model_spec,
    output_tensors,
)
from gateway.predictor import Predictor
from iot_contract import Reading
from iot_models.core import InferenceCore
from iot_models.model import Model
from iot_models.swap import SwappableCore

__all__ = ["DEVICE_PARAMETER", "InferOutcome", "OipService"]

DEVICE_PARAMETER: Final = "device_id"
"""Request parameter naming the device a request's readings come from: it picks the
canary the way the streaming path does (default ``oip``)."""
DEFAULT_DEVICE: Final = "oip"
SERVER_NAME: Final = "iotstream"
EXTENSIONS: Final = ("binary_tensor_data",)


@dataclass(frozen=True, slots=True)
class InferOutcome:
    """A successful inference: the model that answered and its output tensors."""

    spec: ModelSpec
    outputs: list[OutputTensor]


class OipService:
    """One per gateway process.

    Args:
        predictor: the loaded models (``None``: not ready; every model unknown).
        batcher: the dynamic batcher in front of ``predictor``.
        metrics: where requests and outcomes are counted.
        max_rows: most readings (rows) one request may carry.
    """

    def __init__(
        self,
        predictor: Predictor | None,
        batcher: RequestBatcher,
        metrics: OipMetrics,
        *,
        max_rows: int,
    ) -> None:
        self._predictor = predictor
        self._batcher = batcher
        self._metrics = metrics
        self._max_rows = max_rows
        try:
            self.version = metadata.version("iotstream")
        except metadata.PackageNotFoundError:
            self.version = "0"

    @property
    def ready(self) -> bool:
        """Models are loaded."""
        return self._predictor is not None

    def server_metadata(self) -> dict[str, Any]:
        """``name``, ``version``, ``extensions``."""
        return {"name": SERVER_NAME, "version": self.version, "extensions": list(EXTENSIONS)}

    def models(self) -> Mapping[str, Model]:
        """The models served now (a core that follows a store may have swapped since)."""
        core = self._predictor.core if self._predictor is not None else None
        if isinstance(core, SwappableCore):
            core = core.current
        return core.models if isinstance(core, InferenceCore) else {}

    def spec(self, name: str, version: str | None = None) -> ModelSpec:
        """The metadata of model ``name`` (at ``version``, if given: it must be the one
        served).

        Raises:
            ModelNotFoundError: no such model or version.
        """
        models = self.models()
        model = models.get(name)
        if model is None:
            served = ", ".join(sorted(models)) or "none"
            raise ModelNotFoundError(f"unknown model {name[:64]!r}; served: {served}")
        if version and version != model.info.version:
            raise ModelNotFoundError(
                f"model {name!r} has no version {version[:32]!r}; served: {model.info.version}"
            )
        return model_spec(model.info)

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """Whether ``name`` (at ``version``) is served."""
        try:
            self.spec(name, version)
        except ModelNotFoundError:
            return False
        return True

    async def infer(
        self,
        name: str,
        version: str | None,
        inputs: Sequence[InputTensor],
        *,
        requested: Sequence[str] | None,
        parameters: Mapping[str, Any],
        protocol: str,
    ) -> InferOutcome:
        """Score the request's rows as readings of model ``name``.

        Raises:
            OipError: the request cannot be answered (its subclass says why).
        """
        label = name if name in self.models() else "unknown"
        with self._observe(label, protocol):
            if self._predictor is None:
                raise NotReadyError("no models are loaded")
            spec = self.spec(name, version)
            rows = decode_features(spec, inputs)
            if len(rows) > self._max_rows:
                raise InvalidInputError(
                    f"at most {self._max_rows} rows per request, got {len(rows)}"
                )
            readings = _readings(name, rows.tolist(), parameters)
            result = await self._batcher.infer(readings)
            if result.rejected:
                row, error = result.rejected[0]
                raise InvalidInputError(f"row {row}: {error.reason.value}: {error.detail}")
            outputs = output_tensors(spec, result.records, requested)
            self._metrics.counter("readings").labels(label, protocol).inc(len(readings))
            return InferOutcome(spec, outputs)

    @contextmanager
    def _observe(self, model: str, protocol: str) -> Iterator[None]:
        started = time.perf_counter()
        outcome = "ok"
        try:
            yield
        except OipError as exc:
            outcome = _OUTCOMES.get(type(exc).__name__, "invalid")
            if outcome == "overloaded":
                self._metrics.counter("rejections").labels("queue_full").inc()
            raise
        finally:
            self._metrics.counter("requests").labels(model, protocol, outcome).inc()
            self._metrics.histogram("latency").labels(model, protocol).observe(
                time.perf_counter() - started
            )


_OUTCOMES: Final = {
    "InvalidInputError": "invalid",
    "ModelNotFoundError": "not_found",
    "OverloadedError": "overloaded",
    "NotReadyError": "unavailable",
    "UnauthenticatedError": "unauthenticated",
}


def _readings(name: str, rows: list[list[float]], parameters: Mapping[str, Any]) -> list[Reading]:
    device = parameters.get(DEVICE_PARAMETER, DEFAULT_DEVICE)
    if not isinstance(device, str):
        raise InvalidInputError(f"parameter {DEVICE_PARAMETER!r} must be a string")
    now = time.time()
    try:
        return [
            Reading(device_id=device, seq=i, ts=now, model=name, features=row)
            for i, row in enumerate(rows)
        ]
    except ValidationError as exc:
        where = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors()[:3])
        raise InvalidInputError(
            f"not a valid reading ({where}): check {DEVICE_PARAMETER!r}"
        ) from None
