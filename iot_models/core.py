"""The inference data plane: readings in, predictions out. No transport, no clock of its own.

The MQTT worker and the gateway's REST ``/v1/predict`` both call :meth:`InferenceCore.infer`,
so the same readings give the same predictions on either path.
"""

from __future__ import annotations

import fnmatch
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import numpy as np

from iot_contract import (
    ContractError,
    Prediction,
    PredictionRecord,
    Reading,
    RejectReason,
    prediction_record,
)
from iot_models.canary import CanaryRule
from iot_models.model import Model, Output

__all__ = ["CANARY_LANE", "BatchResult", "InferenceCore", "PredictionRecord", "Scorer"]

CANARY_LANE = "@canary"
"""Suffix of a canary's internal route key (``@`` is not allowed in model names, so a
reading cannot name it)."""

# The streaming path stays with dicts (iot_contract.prediction_record): building a pydantic
# model per prediction costs about 10 us, serialising a dict about 1 us.
# BatchResult.predictions validates them into models (the REST path), so both paths share
# one definition.


@dataclass
class BatchResult:
    """What became of a batch.

    Attributes:
        records: one prediction record per accepted reading, in input order.
        indices: for each record, the index of its reading in the input.
        rejected: ``(index, error)`` for each reading refused, in input order.
        by_version: records per ``(model name, version)`` (per-version metrics).
        seconds_by_version: seconds spent in the model call per ``(model name, version)``
            (one timing per group, for per-version latency metrics).
    """

    records: list[PredictionRecord] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    rejected: list[tuple[int, ContractError]] = field(default_factory=list)
    by_version: dict[tuple[str, str], int] = field(default_factory=dict)
    seconds_by_version: dict[tuple[str, str], float] = field(default_factory=dict)

    @cached_property
    def predictions(self) -> list[Prediction]:
        """The records validated as :class:`iot_contract.Prediction` models."""
        return [Prediction.model_validate(record) for record in self.records]


class Scorer(Protocol):
    """What the worker's run loop and the REST path call: an :class:`InferenceCore`, or a
    holder that swaps cores between calls (:class:`iot_models.swap.SwappableCore`)."""

    def infer(
        self, readings: Sequence[Reading], received_ts: float | Sequence[float]
    ) -> BatchResult:
        """Score a batch (see :meth:`InferenceCore.infer`)."""
        ...


class InferenceCore:
    """Routes readings to models, checks them against each model's input, runs the models
    one call per model per batch, and builds the predictions.

    A reading goes to the model it names; else to the model of the first ``routes`` glob
    its device id matches; else to ``default_model``. When that model has a canary and the
    canary's rule takes the device (:class:`iot_models.canary.CanaryRule`), the canary
    version scores it instead.

    Args:
        models: loaded models by route name.
        default_model: route for readings that name no model and match no rule.
        worker_id: recorded in every prediction.
        routes: ordered ``{device-id glob: model name}`` rules.
        canaries: ``{model name: (canary model, rule)}``: another version of that model
            for the devices the rule takes; same input width as the model.
        clock: epoch-seconds clock for ``inferred_ts`` (a parameter so tests control it).
        record_features: put each reading's feature list into its prediction record (the
            streaming workers do, for the dashboard's channel chart; REST callers sent them).
    """

    def __init__(
        self,
        models: Mapping[str, Model],
        *,
        default_model: str,
        worker_id: str,
        routes: Mapping[str, str] | None = None,
        canaries: Mapping[str, tuple[Model, CanaryRule]] | None = None,
        clock: Callable[[], float] = time.time,
        record_features: bool = False,
    ) -> None:
        if default_model not in models:
            raise ValueError(
                f"default model {default_model!r} is not loaded; loaded: {sorted(models)}"
            )
        unknown = sorted({m for m in (routes or {}).values() if m not in models})
        if unknown:
            raise ValueError(f"routes name models that are not loaded: {unknown}")
        self._rules = [
            (re.compile(fnmatch.translate(glob)), name) for glob, name in (routes or {}).items()
        ]
        self._route_cache: dict[str, str] = {}
        self.models = dict(models)
        self._widths = {name: m.info.n_features for name, m in self.models.items()}
        self.default_model = default_model
        self.worker_id = worker_id
        self._clock = clock
        self.record_features = record_features
        self.canaries = dict(canaries or {})
        self._lanes: dict[str, Model] = dict(self.models)
        for name, (canary, _rule) in self.canaries.items():
            stable = self.models.get(name)
            if stable is None:
                raise ValueError(f"a canary for {name!r}, which is not loaded")
            if canary.info.n_features != stable.info.n_features:
                raise ValueError(
                    f"{name}: canary {canary.info.version} takes {canary.info.n_features} "
                    f"features, version {stable.info.version} {stable.info.n_features}"
                )
            self._lanes[name + CANARY_LANE] = canary
        self._canary_cache: dict[tuple[str, str], str] = {}
        self._refs = {
            lane: {"name": m.info.name, "version": m.info.version, "variant": m.info.variant}
            for lane, m in self._lanes.items()
        }

    def describe(self) -> str:
        """What is served, for logs: ``fault-clf 2 (fp32), canary 3 for 10%; ...``."""
        parts = []
        for name, model in sorted(self.models.items()):
            text = f"{name} {model.info.version} ({model.info.variant})"
            if name in self.canaries:
                canary, rule = self.canaries[name]
                who = [f"{rule.percent:g}%", *rule.devices]
                text += f", canary {canary.info.version} for {' + '.join(who)}"
            parts.append(text)
        return "; ".join(parts)

    def infer(
        self, readings: Sequence[Reading], received_ts: float | Sequence[float]
    ) -> BatchResult:
        """Score ``readings`` (already decoded and schema-valid).

        Args:
            readings: the batch.
            received_ts: when each reading arrived (one value for all, or one per reading).

        Returns:
            Predictions for the readings the models accepted, rejects with reasons for the
            rest; a bad reading never affects the others.
        """
        received = (
            [received_ts] * len(readings) if isinstance(received_ts, float | int) else received_ts
        )
        groups: dict[str, list[int]] = {}
        result = BatchResult()
        widths, route = self._widths, self._route
        lane_of = self._canary_lane if self.canaries else None
        for i, reading in enumerate(readings):  # per reading: kept lean (the hot path)
            name = reading.model or route(reading.device_id)
            width = widths.get(name)
            if width is None:
                result.rejected.append(
                    (
                        i,
                        ContractError(
                            RejectReason.UNKNOWN_MODEL,
                            f"no model named {name!r}; served: {', '.join(sorted(self.models))}",
                        ),
                    )
                )
            elif len(reading.features) != width:
                result.rejected.append(
                    (
                        i,
                        ContractError(
                            RejectReason.FEATURE_COUNT,
                            f"model {name!r} takes {width} features, "
                            f"the reading has {len(reading.features)}",
                        ),
                    )
                )
            else:
                lane = name if lane_of is None else lane_of(name, reading.device_id)
                if (group := groups.get(lane)) is None:
                    groups[lane] = group = []
                group.append(i)

        produced: list[tuple[int, PredictionRecord]] = []
        for name, idx in groups.items():
            self._run_group(name, [readings[i] for i in idx], idx, received, produced, result)
        produced.sort(key=lambda pair: pair[0])
        result.indices = [i for i, _ in produced]
        result.records = [p for _, p in produced]
        result.rejected.sort(key=lambda pair: pair[0])
        return result

    def _canary_lane(self, name: str, device_id: str) -> str:
        key = (name, device_id)
        lane = self._canary_cache.get(key)
        if lane is None:
            entry = self.canaries.get(name)
            lane = name + CANARY_LANE if entry is not None and entry[1].applies(device_id) else name
            if len(self._canary_cache) < 100_000:  # bounded like the route cache
                self._canary_cache[key] = lane
        return lane

    def _route(self, device_id: str) -> str:
        name = self._route_cache.get(device_id)
        if name is None:
            name = next((m for rx, m in self._rules if rx.match(device_id)), self.default_model)
            if len(self._route_cache) < 100_000:  # bounded: fleets beyond that re-match
                self._route_cache[device_id] = name
        return name

    def _run_group(
        self,
        name: str,
        group: list[Reading],
        idx: list[int],
        received: Sequence[float],
        produced: list[tuple[int, PredictionRecord]],
        result: BatchResult,
    ) -> None:
        with np.errstate(over="ignore"):
            batch = np.array([r.features for r in group], dtype=np.float32)
        if not np.isfinite(batch).all():  # one check: rows are looked at only if it fails
            finite = np.isfinite(batch).all(axis=1)
            for j in np.flatnonzero(~finite):
                result.rejected.append(
                    (
                        idx[j],
                        ContractError(
                            RejectReason.OUT_OF_RANGE,
                            "a feature is outside the float32 range the model takes",
                        ),
                    )
                )
            keep = np.flatnonzero(finite)
            batch, group, idx = batch[keep], [group[k] for k in keep], [idx[k] for k in keep]
        if not group:
            return
        started = time.perf_counter()
        outputs = self._lanes[name].predict(batch)
        took = time.perf_counter() - started
        inferred_ts = self._clock()
        ref = self._refs[name]
        before = len(produced)
        for reading, i, out in zip(group, idx, outputs, strict=True):
            if not _finite_output(out):
                result.rejected.append(
                    (
                        i,
                        ContractError(
                            RejectReason.MODEL_OUTPUT,
                            f"model {ref['name']!r} produced a non-finite output",
                        ),
                    )
                )
                continue
            record = prediction_record(
                reading,
                ref,
                out,
                received_ts=received[i],
                inferred_ts=inferred_ts,
                worker_id=self.worker_id,
                features=self.record_features,
            )
            produced.append((i, record))
        key = (ref["name"], ref["version"])
        result.by_version[key] = result.by_version.get(key, 0) + len(produced) - before
        result.seconds_by_version[key] = result.seconds_by_version.get(key, 0.0) + took


def _finite_output(out: Output) -> bool:
    if not math.isfinite(out.score):
        return False
    if out.probabilities is not None and not all(map(math.isfinite, out.probabilities.values())):
        return False
    return out.values is None or all(map(math.isfinite, out.values))
