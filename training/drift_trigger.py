"""Retraining on drift: read the drift events stream, debounce, start a retraining run.

Workers append an :class:`iot_contract.DriftEvent` to ``RedisKeys(prefix).drift_events``
each time a model starts or stops drifting; every worker that sees the drift raises its
own. :class:`DriftDebouncer` (pure, the clock is a parameter) turns that into at most one
retraining per model per ``cooldown_s``; :func:`watch_drift` reads the stream (XREAD,
blocking with a timeout so a stop request is seen) and calls the trigger: ``airflow dags
trigger iotstream_retrain`` (:func:`airflow_trigger`) or the pipeline in this process.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from iot_contract import RECORD_FIELD, DriftEvent, RedisKeys
from training.tools import run_tool

__all__ = ["DriftDebouncer", "airflow_trigger", "watch_drift"]

log = logging.getLogger(__name__)

DAG_ID = "iotstream_retrain"


class DriftDebouncer:
    """Decides which drift events start a retraining.

    An event starts one when it says the model *started* drifting, the model is watched
    (``models`` empty: all), and the model's last retraining started ``cooldown_s`` or
    more ago (per model). "Stopped drifting" events never do.
    """

    def __init__(self, cooldown_s: float, models: frozenset[str] = frozenset()) -> None:
        self.cooldown_s = cooldown_s
        self.models = models
        self._last: dict[str, float] = {}

    def offer(self, event: DriftEvent, now: float) -> bool:
        """Whether ``event``, seen at ``now`` (seconds), starts a retraining (recorded)."""
        if not event.drifting or (self.models and event.model not in self.models):
            return False
        last = self._last.get(event.model)
        if last is not None and now - last < self.cooldown_s:
            return False
        self._last[event.model] = now
        return True


def watch_drift(
    client: Any,
    keys: RedisKeys,
    debouncer: DriftDebouncer,
    trigger: Callable[[DriftEvent], None],
    *,
    stop: threading.Event,
    clock: Callable[[], float],
    start_id: str = "$",
    block_ms: int = 1000,
    max_triggers: int | None = None,
) -> int:
    """Read drift events until ``stop`` is set (or ``max_triggers`` retrainings started);
    returns how many were started.

    Args:
        client: a ``redis.Redis`` (sync; bytes or decoded responses).
        keys: the deployment's key names.
        debouncer: which events start a retraining.
        trigger: starts one (its exception ends the watch: a trigger that cannot start
            is a configuration error, not something to skip silently).
        stop: set it to end the watch within ``block_ms``.
        clock: seconds, for the debouncer.
        start_id: the stream id to read after (``$``: only events from now on).
        block_ms: XREAD's block timeout.
        max_triggers: stop after this many retrainings (``None``: never).
    """
    stream, last_id, started = keys.drift_events, start_id, 0
    if last_id == "$":
        # Resolve "$" once: re-sending "$" on every call would skip events that arrive
        # while a trigger runs.
        newest = client.xrevrange(stream, count=1)
        last_id = newest[0][0] if newest else "0-0"
    while not stop.is_set():
        reply = client.xread({stream: last_id}, count=100, block=block_ms)
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                last_id = entry_id
                raw = fields.get(RECORD_FIELD, fields.get(RECORD_FIELD.decode()))
                try:
                    event = DriftEvent.model_validate_json(raw or b"")
                except ValidationError as exc:
                    log.warning("drift event %s skipped: not a DriftEvent (%s)", entry_id, exc)
                    continue
                if not debouncer.offer(event, clock()):
                    continue
                log.info(
                    "retraining %s: drift on %s (psi %.3f > %.3f) from %s",
                    event.model,
                    event.feature,
                    event.psi_max,
                    event.threshold,
                    event.worker_id,
                )
                trigger(event)
                started += 1
                if max_triggers is not None and started >= max_triggers:
                    return started
    return started


def airflow_trigger(
    airflow: Path | str, conf: dict[str, Any], *, env: dict[str, str] | None = None
) -> Callable[[DriftEvent], None]:
    """A trigger that runs ``airflow dags trigger iotstream_retrain`` with ``conf`` (the
    DAG's params) plus the event's model.

    Raises (from the returned function):
        RuntimeError: the command failed (its stderr in the message).
    """

    def run(event: DriftEvent) -> None:
        params = {**conf, "model": event.model}
        run_tool(
            [str(airflow), "dags", "trigger", DAG_ID, "--conf", json.dumps(params)],
            f"`airflow dags trigger {DAG_ID}`",
            timeout=120,
            env=env,
        )

    return run
