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

from prometheus_client import CollectorRegistry, Counter, Gauge

from inference_worker.settings import WorkerSettings
from iot_models.core import BatchResult, InferenceCore
from iot_models.follow import Canaries, FollowConfig, Following, ModelFollower
from iot_models.model import Model

__all__ = ["ModelMetrics", "following_models"]

log = logging.getLogger(__name__)


class ModelMetrics:
    """Per-version metrics of a worker that follows a store (on the worker's registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.info = Gauge(
            "worker_model_info",
            "1 for each model version served (role: stable or canary)",
            ["model", "version", "variant", "role"],
            registry=registry,
        )
        self.scored = Counter(
            "worker_predictions_by_version",
            "Predictions made, per model and version",
            ["model", "version"],
            registry=registry,
        )
        self.swaps = Counter(
            "worker_model_swaps", "Inference cores swapped in between batches", registry=registry
        )
        self.errors = Counter(
            "worker_model_follow_errors",
            "Alias polls or loads that failed (the worker kept serving what it had)",
            registry=registry,
        )
        self.from_cache = Gauge(
            "worker_model_from_cache",
            "1 while serving the local cache's versions because the store has not answered "
            "since start",
            registry=registry,
        )

    def count(self, result: BatchResult) -> None:
        """Add a batch's predictions to the per-version counters."""
        for (model, version), n in result.by_version.items():
            self.scored.labels(model, version).inc(n)

    def serving(self, core: InferenceCore) -> None:
        """Show ``core``'s versions (and only those) in ``worker_model_info``."""
        self.info.clear()
        for model in core.models.values():
            i = model.info
            self.info.labels(i.name, i.version, i.variant, "stable").set(1)
        for canary, _rule in core.canaries.values():
            i = canary.info
            self.info.labels(i.name, i.version, i.variant, "canary").set(1)


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
        return InferenceCore(
            models,
            default_model=settings.default_model,
            worker_id=worker_id or settings.worker_id,
            routes=settings.routes,
            record_features=settings.record_features,
            canaries=canaries,
        )

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
    follower = ModelFollower(config, make_core, on_error=lambda _exc: metrics.errors.inc())

    def swapped(_old: InferenceCore, new: InferenceCore) -> None:
        metrics.swaps.inc()
        metrics.serving(new)

    following = Following(follower, on_scored=metrics.count, on_swap=swapped)
    metrics.serving(following.core.current)
    metrics.from_cache.set_function(lambda: 1.0 if follower.from_cache else 0.0)
    log.info(
        "following %s@%s in %s (poll every %.1f s): serving %s",
        ",".join(follower.aliases),
        settings.model_alias,
        follower.store.url,
        settings.model_poll_s,
        following.core.current.describe(),
    )
    return following
