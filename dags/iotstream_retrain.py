"""Airflow DAG ``iotstream_retrain``: the retraining loop as tasks (docs/models.md,
"Retraining loop"; decision record in docs/architecture.md, "Orchestrator").

assemble_dataset -> train -> evaluate -> quantize -> gate -> publish -> move_canary

Each task is a ``BashOperator`` running the project venv's ``iotstream models pipeline step
NAME --run-dir D`` (the same step functions ``iotstream models pipeline`` runs without
Airflow). Airflow lives in its own venv (``scripts/airflow-env``: its pins clash with the
service's), so this file imports Airflow only; the project runs in its own process, with
its exit code as the task's state and its stderr in the task log. A failed gate exits 3
with the reasons on stderr; ``gate`` has no retries (it is deterministic), ``publish`` and
``move_canary`` then never run (upstream failed), so nothing is published.

Where things are, on the Airflow workers' environment:
    IOTSTREAM_CLI       the project's ``iotstream`` (default: ``iotstream`` on PATH)
    IOTSTREAM_RUNS_DIR  parent of the run folders, shared by the workers (default: /tmp/
                        iotstream-runs); a run's folder is ``<runs dir>/<dag run id>``
Trigger it with ``airflow dags trigger iotstream_retrain --conf '{"model": ...}'`` or from
drift events with ``iotstream models retrain-on-drift``. Promotion to production stays a
person's decision: ``iotstream models promote MODEL production``.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param

CLI = os.environ.get("IOTSTREAM_CLI", "iotstream")
RUNS_DIR = os.environ.get("IOTSTREAM_RUNS_DIR", "/tmp/iotstream-runs")  # noqa: S108

# task id, step name, retries, execution timeout
TASKS = (
    ("assemble_dataset", "assemble_dataset", 2, timedelta(minutes=15)),
    ("train", "train", 2, timedelta(minutes=30)),
    ("evaluate", "evaluate", 2, timedelta(minutes=10)),
    ("quantize", "quantize", 2, timedelta(minutes=15)),
    ("gate", "gate", 0, timedelta(minutes=20)),
    ("publish", "publish", 3, timedelta(minutes=10)),
    ("move_canary", "canary", 3, timedelta(minutes=5)),
)

# Options go through the environment: bash quotes "$VAR" safely, whatever the params hold.
CONFIG = (
    '--model "$P_MODEL" --store "$P_STORE" --capture "$P_CAPTURE" --alias "$P_ALIAS" '
    '--canary-percent "$P_CANARY_PERCENT" --min-rows "$P_MIN_ROWS" --parity "$P_PARITY" '
    '--gate-limits "$P_GATE_LIMITS" --run-id "$P_RUN_ID"'
)
ENV = {
    "P_MODEL": "{{ params.model }}",
    "P_STORE": "{{ params.store }}",
    "P_CAPTURE": "{{ params.capture }}",
    "P_ALIAS": "{{ params.alias }}",
    "P_CANARY_PERCENT": "{{ params.canary_percent }}",
    "P_MIN_ROWS": "{{ params.min_rows }}",
    "P_PARITY": "{{ params.parity }}",
    "P_GATE_LIMITS": "{{ params.gate_limits | tojson }}",
    "P_RUN_ID": "{{ run_id }}",
    "P_RUN_DIR": "{{ params.runs_dir }}/{{ run_id }}",
    "P_CLI": "{{ params.iotstream_cli }}",
}

with DAG(
    dag_id="iotstream_retrain",
    description="retrain a model on captured data, gate it, publish it, move the canary",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["iotstream", "retraining"],
    default_args={"retry_delay": timedelta(seconds=30), "retry_exponential_backoff": True},
    params={
        "model": Param("fault-clf", type="string", description="the model to retrain"),
        "store": Param("", type="string", minLength=1, description="model store URL"),
        "capture": Param("", type="string", minLength=1, description="capture store URL"),
        "alias": Param("production", type="string", description="alias whose canary moves"),
        "canary_percent": Param(10.0, type="number", exclusiveMinimum=0, maximum=100),
        "min_rows": Param(5000, type="integer", minimum=0, description="synthetic top-up"),
        "parity": Param("auto", enum=["auto", "required", "off"]),
        "gate_limits": Param({}, type="object", description="replaces gate limits"),
        "runs_dir": Param(RUNS_DIR, type="string", description="parent of the run folders"),
        "iotstream_cli": Param(CLI, type="string", description="the project's iotstream"),
    },
    doc_md=__doc__,
) as dag:
    previous = None
    for task_id, step, retries, timeout in TASKS:
        # The first task records the configuration in run.json; the others check against it.
        options = CONFIG if step == "assemble_dataset" else ""
        task = BashOperator(
            task_id=task_id,
            bash_command=f'"$P_CLI" models pipeline step {step} --run-dir "$P_RUN_DIR" {options}',
            env=ENV,
            append_env=True,
            retries=retries,
            execution_timeout=timeout,
        )
        if previous is not None:
            previous >> task
        previous = task
