"""Feature drift: what workers report about their live inputs against the serving version's
training reference, and where it is kept in Redis.

Workers write the newest :class:`DriftStatus` per model into the hash
:attr:`iot_contract.RedisKeys.drift` (field = model name, value = the status as JSON; the
last worker to report wins, as each sees a random share of the fleet through the shared
subscription), and append a :class:`DriftEvent` to the stream
:attr:`iot_contract.RedisKeys.drift_events` each time a model starts or stops drifting.
The gateway serves both (``GET /v1/drift``); a retraining trigger reads the events.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from iot_contract.messages import SCHEMA_VERSION, FiniteFloat, ModelName, Timestamp, _Message

__all__ = ["DriftEvent", "DriftStatus", "FeatureDrift"]

_Name = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=64)]
_Version = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=64)]
_NonNegative = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0)]


class FeatureDrift(_Message):
    """One feature's shift from the training reference."""

    name: _Name
    """The feature's name (the manifest's ``input.feature_names``)."""
    psi: _NonNegative
    """Population stability index of the live window against the reference (0: the same
    distribution; above 0.1 a shift, above 0.25 a large one)."""
    live_mean: FiniteFloat
    """Mean of the feature over the live window."""
    reference_mean: FiniteFloat
    """Mean of the feature in the training data."""


class DriftStatus(_Message):
    """The newest drift measurement of one model's serving version."""

    schema_version: Literal[1] = SCHEMA_VERSION
    model: ModelName
    version: _Version
    """The serving version whose training reference the live window is compared with."""
    ts: Timestamp
    """When it was measured (worker clock, seconds since the epoch)."""
    window: Annotated[int, Field(strict=True, ge=0)]
    """Readings in the live window compared."""
    psi_max: _NonNegative
    """The largest per-feature PSI: the drift gauge."""
    threshold: _NonNegative
    """PSI above which the model counts as drifting."""
    drifting: bool
    features: list[FeatureDrift]
    worker_id: _Name


class DriftEvent(_Message):
    """A model started (``drifting=True``) or stopped drifting."""

    schema_version: Literal[1] = SCHEMA_VERSION
    model: ModelName
    version: _Version
    ts: Timestamp
    drifting: bool
    psi_max: _NonNegative
    threshold: _NonNegative
    feature: _Name
    """The feature with the largest PSI."""
    worker_id: _Name
