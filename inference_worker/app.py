"""Assembling and running a worker from its settings."""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any, Protocol

from inference_worker.bus import open_sink, open_source
from inference_worker.health import HealthServer, fresh
from inference_worker.metrics import WorkerMetrics
from inference_worker.model_follow import core_for, following_models
from inference_worker.observers import open_observers
from inference_worker.service import Worker, describe
from inference_worker.settings import WorkerSettings
from iot_models.core import InferenceCore, Scorer
from iot_models.model import Model

__all__ = ["build_core", "foreground", "run", "running_worker"]

log = logging.getLogger(__name__)


def build_core(settings: WorkerSettings, worker_id: str | None = None) -> InferenceCore:
    """Load the models named by ``settings`` (warmed up) into an inference core."""
    from iot_models.onnx_model import load_models

    models: dict[str, Model] = dict(
        load_models(
            settings.models_dir,
            names=settings.models,
            variant_override=settings.variant,
            threads=settings.intra_op_threads,
        )
    )
    for name, model in models.items():
        log.info("model %s %s variant %s ready", name, model.info.version, model.info.variant)
    return core_for(settings, models, worker_id=worker_id)


@contextlib.contextmanager
def running_worker(
    settings: WorkerSettings, core: Scorer | None = None
) -> Iterator[tuple[Worker, threading.Event]]:
    """A connected worker running on a background thread; leaving the block stops it
    gracefully (unsubscribe, finish, ack, disconnect). For tests and embedding: with
    ``memory://`` URLs it runs on the in-memory source and sink (:mod:`inference_worker.bus`).
    """
    stop = threading.Event()
    with contextlib.ExitStack() as models:
        worker = _assemble(settings, core, models)
        with contextlib.closing(worker.sink), worker.source:
            thread = threading.Thread(target=worker.run, args=(stop,), name="worker", daemon=True)
            thread.start()
            try:
                yield worker, stop
            finally:
                stop.set()
                thread.join(30)
                if thread.is_alive():
                    raise RuntimeError("the worker did not stop within 30 s")


def _assemble(settings: WorkerSettings, core: Scorer | None, stack: contextlib.ExitStack) -> Worker:
    """The worker: on ``core`` if given; else following ``settings.model_store`` (the
    follower thread lives as long as ``stack``); else on the models in ``models_dir``."""
    metrics = WorkerMetrics()
    if core is None and settings.model_store is not None:
        core = stack.enter_context(following_models(settings, metrics.registry)).core
    core = core or build_core(settings)
    observers = open_observers(settings, metrics.registry, stack)
    return Worker(
        settings, core, open_source(settings), open_sink(settings), metrics, observers=observers
    )


class Service(Protocol):
    """What :func:`foreground` needs of a worker or an ingest."""

    metrics: WorkerMetrics
    last_tick: float

    def ready(self) -> tuple[bool, str]: ...


@contextlib.contextmanager
def foreground(settings: WorkerSettings, service: Service) -> Iterator[threading.Event]:
    """The process scaffolding of a service run from the command line: yields the event
    that SIGTERM/SIGINT set, and serves ``/metrics``, ``/healthz`` and ``/readyz`` on
    ``settings.metrics_port`` when it is set. Signal handlers are restored on exit."""
    stop = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    with contextlib.ExitStack() as stack:
        for signum in (signal.SIGTERM, signal.SIGINT):
            stack.callback(signal.signal, signum, signal.signal(signum, _on_signal))
        if settings.metrics_port is not None:
            server = stack.enter_context(
                HealthServer(
                    settings.metrics_port,
                    service.metrics.registry,
                    alive=fresh(lambda: service.last_tick, max_age=60.0),
                    ready=service.ready,
                )
            )
            log.info("serving /metrics, /healthz, /readyz on :%d", server.port)
        yield stop


def run(settings: WorkerSettings) -> int:
    """Run a worker in the foreground until SIGTERM/SIGINT. Returns the exit code."""
    log.info("starting worker %s", describe(settings))
    with contextlib.ExitStack() as models:
        worker = _assemble(settings, None, models)
        return _run_assembled(settings, worker)


def _run_assembled(settings: WorkerSettings, worker: Worker) -> int:
    with foreground(settings, worker) as stop, contextlib.closing(worker.sink):
        epoch = worker.sink.ensure_epoch()
        log.info("redis %s ready (stream epoch %s)", settings.redis_url, epoch)
        with worker.source:
            log.info("ready: consuming %s", settings.mqtt_url)
            freeze_startup_objects()
            worker.run(stop)
    return 1 if worker.failed else 0


def freeze_startup_objects() -> None:
    """Move everything allocated so far (modules, models, settings) out of the garbage
    collector's reach: a full collection over them takes 13-20 ms here, all of it holding
    the GIL, which showed up as publish->Redis latency spikes. What the run loop allocates
    afterwards is collected as usual."""
    gc.collect()
    gc.freeze()
    log.debug("froze %d startup objects out of the garbage collector", gc.get_freeze_count())
