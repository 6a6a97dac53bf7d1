"""A worker that follows a model store: the versions its alias names, swapped between batches.

:func:`following_models` loads what ``WORKER_MODEL_ALIAS`` names in ``WORKER_MODEL_STORE``
(or, when the store does not answer, what the cache remembers), and returns a
:class:`~iot_models.follow.Following` whose ``core`` the worker scores with. Entered
as a context manager it polls the alias on a thread of its own; a moved alias is loaded,
verified (sha256) and warmed up there, and the finished core replaces the old one in the
:class:`~iot_models.swap.SwappableCore` in one assignment: the batch in progress finishes
on the old core, the next runs on the new one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from inference_worker.settings import WorkerSettings
from iot_metrics import MetricSet, load_catalogue
from iot_models.core import BatchResult, InferenceCore
from iot_models.follow import Canaries, FollowConfig, Following, ModelFollower
from iot_models.model import Model

__all__ = ["SCORE_BUCKETS", "ModelMetrics", "VersionScores", "core_for", "following_models"]

log = logging.getLogger(__name__)

SCORE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0, 1.5, 2.0, 3.0)
"""Upper bounds of ``worker_score_by_version``: scores are probabilities (0-1) for the
classifier and reconstruction errors (mostly under 3) for the autoencoder."""


class VersionScores(Collector):
    """``worker_score_by_version{model,version}``: a histogram of every prediction's score,
    observed a batch at a time (one ``numpy.searchsorted`` per version and batch instead of
    one ``Histogram.observe`` per reading, which costs about 0.8 us each)."""

    def __init__(self, buckets: Sequence[float] = SCORE_BUCKETS) -> None:
        self._bounds = np.array([*buckets, np.inf])
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], tuple[np.ndarray, list[float]]] = {}

    def observe_many(self, model: str, version: str, scores: Sequence[float] | np.ndarray) -> None:
        """Add ``scores`` (one version's, from one batch) to its histogram."""
        if len(scores) == 0:
            return
        values = np.asarray(scores, dtype=np.float64)
        # bucket i holds amount <= bounds[i] (Prometheus' ``le``); counts cumulated at collect
        counts = np.bincount(
            np.searchsorted(self._bounds, values, side="left"), minlength=len(self._bounds)
        )
        total = float(values.sum())
        with self._lock:
            series = self._series.get((model, version))
            if series is None:
                series = self._series[(model, version)] = (
                    np.zeros(len(self._bounds), dtype=np.int64),
                    [0.0],
                )
            series[0][:] += counts[: len(self._bounds)]
            series[1][0] += total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        """The histogram family, one series per (model, version) seen."""
        family = HistogramMetricFamily(
            "worker_score_by_version",
            "Scores of the predictions made, per model and version",
            labels=["model", "version"],
        )
        with self._lock:
            snapshot = [(k, c.copy(), s[0]) for k, (c, s) in self._series.items()]
        labels = ["+Inf" if np.isinf(b) else repr(float(b)) for b in self._bounds]
        for (model, version), counts, total in sorted(snapshot):
            cumulative = np.cumsum(counts)
            family.add_metric(
                [model, version],
                [(le, float(n)) for le, n in zip(labels, cumulative, strict=True)],
                total,
            )
        yield family


class ModelMetrics(MetricSet):
    """Per-version metrics of a worker that follows a store (on the worker's registry):
    ``inference_worker/model_metrics.toml`` and the score histogram :class:`VersionScores`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry, load_catalogue("inference_worker", "model_metrics.toml"))
        self.scores = VersionScores()
        registry.register(self.scores)
        self._scored = self.counter("scored")
        self._anomalies = self.counter("anomalies")
        self._seconds = self.histogram("inference_seconds")

    def count(self, result: BatchResult) -> None:
        """Add a batch to the per-version series: predictions, anomalies, scores (one pass
        over the records) and the model call's time."""
        for (model, version), n in result.by_version.items():
            self._scored.labels(model, version).inc(n)
        for (model, version), seconds in result.seconds_by_version.items():
            self._seconds.labels(model, version).observe(seconds)
        if len(result.by_version) == 1:  # the usual batch: one version, no grouping
            ((model, version),) = result.by_version
            scores = [r["score"] for r in result.records]
            anomalies = sum(1 for r in result.records if r["anomaly"])
            self._add(model, version, scores, anomalies)
            return
        # a canary's batch (two versions of a model) or several models: one pass, grouped
        groups: dict[tuple[str, str], tuple[list[float], list[int]]] = {}
        for r in result.records:
            ref = r["model"]
            key = (ref["name"], ref["version"])
            group = groups.get(key)
            if group is None:
                group = groups[key] = ([], [0])
            group[0].append(r["score"])
            if r["anomaly"]:
                group[1][0] += 1
        for (model, version), (scores, flagged) in groups.items():
            self._add(model, version, scores, flagged[0])

    def _add(
        self, model: str, version: str, scores: Sequence[float] | np.ndarray, anomalies: int
    ) -> None:
        self.scores.observe_many(model, version, scores)
        # inc(0) too: the series exists (at 0) from a version's first batch
        self._anomalies.labels(model, version).inc(anomalies)

    def serving(self, core: InferenceCore) -> None:
        """Show ``core``'s versions (and only those) in ``worker_model_info``."""
        info = self.gauge("info")
        info.clear()
        for model in core.models.values():
            i = model.info
            info.labels(i.name, i.version, i.variant, "stable").set(1)
        for canary, _rule in core.canaries.values():
            i = canary.info
            info.labels(i.name, i.version, i.variant, "canary").set(1)


def core_for(
    settings: WorkerSettings,
    models: Mapping[str, Model],
    *,
    worker_id: str | None = None,
    canaries: Canaries | None = None,
) -> InferenceCore:
    """An inference core on loaded ``models``, configured by ``settings`` (default model,
    routes, feature recording) and scoring as ``worker_id`` (default ``settings.worker_id``)."""
    return InferenceCore(
        models,
        default_model=settings.default_model,
        worker_id=worker_id or settings.worker_id,
        routes=settings.routes,
        record_features=settings.record_features,
        canaries=canaries,
    )


def following_models(
    settings: WorkerSettings, registry: CollectorRegistry, worker_id: str | None = None
) -> Following:
    """Load the versions ``settings.model_alias`` names in ``settings.model_store`` (warmed
    up), ready to follow it. Blocking (downloads and loads models).

    Raises:
        ModelError: the alias, a version or a file is missing or invalid, and the cache
            holds no copy to start from.
    """
    assert settings.model_store is not None

    def make_core(models: dict[str, Model], canaries: Canaries) -> InferenceCore:
        return core_for(settings, models, worker_id=worker_id, canaries=canaries)

    config = FollowConfig(
        store=settings.model_store,
        alias=settings.model_alias,
        names=settings.models,
        cache_dir=settings.model_cache_dir,
        poll_s=settings.model_poll_s,
        variant=settings.variant,
        threads=settings.intra_op_threads,
    )
    metrics = ModelMetrics(registry)
    follower = ModelFollower(
        config, make_core, on_error=lambda _exc: metrics.counter("errors").inc()
    )

    def swapped(_old: InferenceCore, new: InferenceCore) -> None:
        metrics.counter("swaps").inc()
        metrics.serving(new)

    following = Following(follower, on_scored=metrics.count, on_swap=swapped)
    metrics.serving(following.core.current)
    metrics.gauge("from_cache").set_function(lambda: 1.0 if follower.from_cache else 0.0)
    log.info(
        "following %s@%s in %s (poll every %.1f s): serving %s",
        ",".join(follower.aliases),
        settings.model_alias,
        follower.store.url,
        settings.model_poll_s,
        following.core.current.describe(),
    )
    return following
