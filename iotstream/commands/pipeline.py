"""``iotstream models pipeline`` and ``iotstream models retrain-on-drift``: the retraining
loop (docs/models.md, "Retraining loop").

``pipeline`` runs every step of :mod:`training.pipeline` in this process; ``pipeline step
NAME --run-dir D`` runs one (what the Airflow DAG's tasks call). Exit codes: 0 done, 1 a
step failed (one line on stderr), 2 a usage error, 3 the gate refused the candidate
(nothing published).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iotstream.commands.parsers import subcommand

if TYPE_CHECKING:
    from iot_contract import DriftEvent

__all__ = ["CAPTURE_ENV", "register_pipeline_commands"]

CAPTURE_ENV = "IOTSTREAM_CAPTURE_STORE"
STORE_ENV = "IOTSTREAM_MODEL_STORE"
STEP_NAMES = ("assemble_dataset", "train", "evaluate", "quantize", "gate", "publish", "canary")
EXIT_GATE = 3
CONFIG_FIELDS = (
    *("model", "store", "capture", "alias", "canary_percent", "since", "until"),
    *("min_rows", "synthetic_seed", "gate_limits", "parity", "run_id"),
)
"""The options that are ``training.run_folder.RunConfig`` fields."""


def _when(text: str) -> float:
    """Epoch seconds from a number or an ISO 8601 time (naive = UTC)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: give epoch seconds or ISO 8601") from exc
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _limits(text: str) -> dict[str, float]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--gate-limits: not JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            '--gate-limits: a JSON object, e.g. {"min_agreement": 0.99}'
        )
    return {str(k): float(v) for k, v in value.items()}


def _add_config(p: argparse.ArgumentParser, *, defaults: bool, one_run: bool = True) -> None:
    """The run's options (``RunConfig``); for ``step`` they default to ``run.json``. Without
    ``one_run`` (the drift watcher: the event names the model) only those that are also
    the DAG's params."""
    env = os.environ.get
    if one_run:
        p.add_argument("--model", help="the model to retrain, e.g. fault-clf")
    p.add_argument(
        "--store",
        default=env(STORE_ENV) if defaults else None,
        help=f"model store URL to publish to (default: ${STORE_ENV})",
    )
    p.add_argument(
        "--capture",
        default=env(CAPTURE_ENV) if defaults else None,
        help=f"capture store URL the dataset comes from (default: ${CAPTURE_ENV})",
    )
    p.add_argument("--alias", help="alias whose canary moves (default: production)")
    p.add_argument(
        "--canary-percent", type=float, help="share of devices on the new version (default: 10)"
    )
    if one_run:
        p.add_argument("--since", type=_when, help="dataset window start (epoch s or ISO 8601)")
        p.add_argument("--until", type=_when, help="dataset window end, exclusive (default: now)")
    p.add_argument(
        "--min-rows", type=int, help="dataset size reached with synthetic rows (default: 5000)"
    )
    if one_run:
        p.add_argument("--synthetic-seed", type=int, help="seed of the synthetic top-up rows")
    p.add_argument(
        "--gate-limits",
        type=_limits,
        help="JSON replacing gate limits, e.g. '{\"min_agreement\": 0.99}' (recorded in the "
        "manifest)",
    )
    p.add_argument(
        "--parity",
        choices=("auto", "required", "off"),
        help="arm64 parity under qemu: auto (run if possible, else record why not; default), "
        "required, off",
    )
    if one_run:
        p.add_argument("--run-id", help="the run's id, in the provenance (default: random)")


def register_pipeline_commands(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``pipeline`` (with ``pipeline step``) and ``retrain-on-drift`` to ``models``."""
    pipeline = subcommand(sub, "pipeline", _run_all)
    _add_config(pipeline, defaults=True)
    pipeline.add_argument(
        "--run-dir", type=Path, help="run folder (default: ~/.cache/iotstream/runs/<run id>)"
    )
    steps = pipeline.add_subparsers(title="one step", metavar="step", required=False)
    step = subcommand(steps, "step", _run_step)
    step.add_argument("name", choices=STEP_NAMES, help="the step")
    step.add_argument("--run-dir", type=Path, required=True, help="the run folder")
    _add_config(step, defaults=False)

    watch = subcommand(sub, "retrain-on-drift", _watch)
    watch.add_argument("--redis", default="redis://localhost:6379/0", help="Redis URL")
    watch.add_argument("--prefix", default="iotstream", help="the deployment's key prefix")
    watch.add_argument("--cooldown", type=float, default=3600.0, help="seconds between runs")
    watch.add_argument("--watch-model", action="append", default=[], help="only these models")
    watch.add_argument("--local", action="store_true", help="run the pipeline here, no Airflow")
    watch.add_argument(
        "--airflow", default="airflow", help="the airflow command (its own venv's bin/airflow)"
    )
    watch.add_argument("--runs-dir", type=Path, help="--local: where run folders go")
    watch.add_argument("--max-runs", type=int, help="exit after starting this many runs")
    _add_config(watch, defaults=True, one_run=False)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {n: getattr(args, n, None) for n in CONFIG_FIELDS if getattr(args, n, None) is not None}


def _err(text: str) -> None:
    print(f"error: {text}", file=sys.stderr)


def _guarded(run: Any) -> int:
    from pydantic import ValidationError

    from iot_models.manifest import ModelError
    from training.release_steps import GateFailedError
    from training.run_folder import PipelineError

    try:
        run()
    except GateFailedError as exc:
        _err(str(exc))
        return EXIT_GATE
    except ValidationError as exc:
        _err(f"invalid run configuration: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}")
        return 2
    except (PipelineError, ModelError, RuntimeError) as exc:
        _err(str(exc))
        return 1
    return 0


def _log(line: str) -> None:
    print(f"[pipeline {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def _run_all(args: argparse.Namespace) -> int:
    """retrain: dataset -> train -> quantize -> gate -> publish -> canary

    Run the retraining steps in order without an orchestrator: assemble a dataset version
    from the capture store, train, evaluate, quantize per architecture, gate (accuracy vs
    fp32, arm64 parity under qemu), publish the next version, move the alias's canary to
    it. Promotion stays manual (`iotstream models promote`). Exit 3: the gate refused the
    candidate, nothing was published.
    """
    from training.pipeline import RunConfig, run_pipeline

    values = _overrides(args)
    missing = [f"--{k}" for k in ("model", "store", "capture") if k not in values]
    if missing:
        _err(f"give {', '.join(missing)} (store/capture also from ${STORE_ENV}/${CAPTURE_ENV})")
        return 2

    def run() -> None:
        cfg = RunConfig.model_validate(values)
        run_dir = args.run_dir or Path.home() / ".cache" / "iotstream" / "runs" / cfg.run_id
        _log(f"run folder {run_dir}")
        records = run_pipeline(run_dir, cfg, log=_log)
        print(json.dumps(records, indent=2))

    return _guarded(run)


def _run_step(args: argparse.Namespace) -> int:
    """run one step in a run folder (what each Airflow task calls)

    Run one step in --run-dir. The first step of a run needs --model, --store and --capture
    (recorded in run.json); later steps read run.json (options given must agree with it). A
    step already done in the folder is not run again.
    """
    from training.pipeline import run_step

    return _guarded(
        lambda: print(json.dumps(run_step(args.name, args.run_dir, _overrides(args), log=_log)))
    )


def _watch(args: argparse.Namespace) -> int:
    """start a retraining when a model starts drifting

    Read the drift events stream (Redis) and, at most once per --cooldown per model,
    trigger the Airflow DAG iotstream_retrain (`airflow dags trigger`), or with --local run
    the pipeline in this process (a failed local run is logged and the watch goes on; the
    exit code is 1 if any failed).
    """
    import threading

    import redis

    from iot_contract import RedisKeys
    from training.drift_trigger import DriftDebouncer, airflow_trigger, watch_drift
    from training.pipeline import RunConfig, run_pipeline

    conf = _overrides(args)
    failed: list[str] = []
    if args.local:
        if "store" not in conf or "capture" not in conf:
            _err(f"--local needs --store and --capture (or ${STORE_ENV}/${CAPTURE_ENV})")
            return 2
        runs = args.runs_dir or Path.home() / ".cache" / "iotstream" / "runs"

        def trigger(event: DriftEvent) -> None:
            cfg = RunConfig.model_validate({**conf, "model": event.model})
            code = _guarded(lambda: run_pipeline(runs / cfg.run_id, cfg, log=_log))
            _log(f"run {cfg.run_id} for {event.model} ended with exit code {code}")
            if code != 0:
                failed.append(cfg.run_id)

        start: Callable[[DriftEvent], None] = trigger
    else:
        start = airflow_trigger(args.airflow, conf)
    debouncer = DriftDebouncer(args.cooldown, frozenset(args.watch_model))
    client = redis.Redis.from_url(args.redis)
    _log(f"watching {RedisKeys(args.prefix).drift_events} on {args.redis}")
    try:
        watch_drift(
            client,
            RedisKeys(args.prefix),
            debouncer,
            start,
            stop=threading.Event(),
            clock=time.monotonic,
            max_triggers=args.max_runs,
        )
    except (redis.RedisError, RuntimeError) as exc:
        _err(str(exc))
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        client.close()
    return 1 if failed else 0
