"""The drift debouncer: which drift events start a retraining (pure, the clock is a
parameter)."""

from __future__ import annotations

from iot_contract import DriftEvent
from training.drift_trigger import DriftDebouncer


def event(model: str = "fault-clf", *, drifting: bool = True) -> DriftEvent:
    return DriftEvent(
        model=model,
        version="1",
        ts=1_800_000_000.0,
        drifting=drifting,
        psi_max=0.4,
        threshold=0.25,
        feature="bearing_temp_c",
        worker_id="w-0",
    )


def test_one_retraining_per_model_per_cooldown() -> None:
    d = DriftDebouncer(cooldown_s=600.0)
    assert d.offer(event(), now=0.0)
    # the other workers' events for the same drift, and repeats inside the cooldown
    assert not d.offer(event(), now=1.0)
    assert not d.offer(event(), now=599.9)
    assert d.offer(event("vib-ae"), now=10.0)  # per model
    assert d.offer(event(), now=600.0)


def test_stopped_drifting_and_unwatched_models_never_start_one() -> None:
    d = DriftDebouncer(cooldown_s=0.0, models=frozenset({"fault-clf"}))
    assert not d.offer(event(drifting=False), now=0.0)
    assert not d.offer(event("vib-ae"), now=0.0)
    assert d.offer(event(), now=0.0)
