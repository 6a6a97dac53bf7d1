"""REST inference on the workers' own core: same models, same :class:`InferenceCore`, so a
reading gives the same prediction through ``POST /v1/predict`` as through MQTT.

Inference runs in a worker thread (ONNX Runtime releases the GIL), never on the event loop.
With ``GATEWAY_MODEL_STORE`` set the gateway follows the store's alias like the workers do
(:class:`iot_models.follow.Following`): same versions, same canary devices, swapped
between two requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from iot_contract import Reading
from iot_models.core import BatchResult, InferenceCore, Scorer

if TYPE_CHECKING:
    from iot_models.follow import FollowConfig, Following

__all__ = ["Predictor", "load_predictor", "read_manifests"]

log = logging.getLogger(__name__)


class Predictor:
    """The loaded models behind ``/v1/predict`` and ``/v1/models``.

    Args:
        core: what scores (a plain core, or a swappable one that follows a store).
        manifests: the served versions' manifests, or a function giving them now.
        following: the store follower to stop on :meth:`close`, if any.
    """

    def __init__(
        self,
        core: Scorer,
        manifests: list[dict[str, Any]] | Callable[[], list[dict[str, Any]]],
        following: Following | None = None,
    ) -> None:
        self.core = core
        self._manifests = manifests
        self._following = following
        self._limiter = anyio.CapacityLimiter(1)

    @property
    def manifests(self) -> list[dict[str, Any]]:
        """Manifests of the versions served now."""
        return self._manifests() if callable(self._manifests) else self._manifests

    async def predict(self, readings: Sequence[Reading]) -> BatchResult:
        """Score ``readings`` off the event loop (one batch at a time)."""
        received = time.time()
        return await anyio.to_thread.run_sync(
            self.core.infer, readings, received, limiter=self._limiter
        )

    def close(self) -> None:
        """Stop following the store (if it does)."""
        if self._following is not None:
            self._following.close()
            self._following = None


def read_manifests(root: Path) -> list[dict[str, Any]]:
    """The newest manifest of every model under ``root``, as JSON-ready dicts."""
    from iot_models.manifest import find_manifests, read_manifest

    return [
        read_manifest(path).model_dump(mode="json")
        for _, path in sorted(find_manifests(root).items())
    ]


def load_predictor(
    root: Path, default_model: str, worker_id: str, follow: FollowConfig | None = None
) -> Predictor | None:
    """Load every model under ``root``, or what ``follow``'s alias names in its store;
    ``None`` (logged) when there is none to load.

    Blocking: call it from a thread. A following predictor polls until :meth:`Predictor.close`.
    """
    from iot_models.manifest import ModelError

    try:
        if follow is not None:
            return _following_predictor(follow, default_model, worker_id)
        from iot_models.onnx_model import load_models

        models = load_models(root)
        manifests = read_manifests(root)
        core = InferenceCore(models, default_model=default_model, worker_id=worker_id)
    except (ModelError, ValueError) as exc:
        log.warning("REST predictions disabled: %s", exc)
        return None
    log.info("REST predictions on models %s (default %s)", sorted(models), default_model)
    return Predictor(core, manifests)


def _following_predictor(follow: FollowConfig, default_model: str, worker_id: str) -> Predictor:
    from iot_models.follow import Canaries, Following, ModelFollower
    from iot_models.model import Model

    def make_core(models: dict[str, Model], canaries: Canaries) -> InferenceCore:
        return InferenceCore(
            models, default_model=default_model, worker_id=worker_id, canaries=canaries
        )

    following = Following(ModelFollower(follow, make_core)).start()
    log.info(
        "REST predictions following %s@%s: %s",
        following.follower.store.url,
        follow.alias,
        following.core.current.describe(),
    )
    return Predictor(following.core, following.manifests, following)
