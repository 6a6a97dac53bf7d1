"""The Airflow DAG ``iotstream_retrain`` run by Airflow itself (``airflow dags test`` on a
SQLite metadata database in a temporary AIRFLOW_HOME, Airflow from its own venv made by
``scripts/airflow-env``), on a few hundred readings captured by the capture writer:

- end to end to a new canary version in a folder store, with arm64 parity under qemu
  required (the sysroot is built first, as ``test_arm64_parity`` does): a new version,
  its provenance naming the dataset id, the canary on it, production unchanged;
- a gate the candidate cannot meet: the run fails, the reason is in the gate task's log,
  nothing is published and the alias is untouched;
- ``retrain-on-drift``'s Airflow trigger (``airflow dags trigger``) queues a run with the
  event's model in its conf.

Never skipped: an Airflow environment that cannot be made fails the test with the reason.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iot_contract import DriftEvent
from iot_models.capture.datasets import list_datasets
from iot_models.store import open_store
from iot_models.store.objects import FileObjectStore
from tests.harness.processes import setup_script
from tests.harness.retrain import MODEL, capture_readings, store_with_production
from training.drift_trigger import airflow_trigger

ROOT = Path(__file__).resolve().parents[2]
DAG = "iotstream_retrain"


@pytest.fixture(scope="module")
def airflow_bin() -> Path:
    """``airflow`` of the project's Airflow venv (``scripts/airflow-env``, idempotent)."""
    proc = setup_script("airflow-env")
    venv = Path(proc.stderr.strip().splitlines()[-1].split("ready: ", 1)[1])
    return venv / "bin" / "airflow"


@pytest.fixture(scope="module")
def arm64_sysroot() -> None:
    """The cached arm64 sysroot, so the gate's parity check runs (required below)."""
    setup_script("arm64-sysroot")


@pytest.fixture(scope="module")
def airflow_env(airflow_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of an Airflow whose home and SQLite database are a temporary
    folder, loading only this project's dags/, with the metadata database migrated."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        IOTSTREAM_CLI=str(Path(sys.executable).parent / "iotstream"),
        IOTSTREAM_RUNS_DIR=str(home / "runs"),
    )
    proc = airflow(airflow_bin, env, "db", "migrate")
    assert proc.returncode == 0, f"airflow db migrate failed: {proc.stderr[-2000:]}"
    return env


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("capture")
    capture_readings(folder, 400)
    return folder


def airflow(airflow_bin: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``airflow <args>`` of the Airflow venv with ``env`` (output captured, 10 min)."""
    return subprocess.run(
        [str(airflow_bin), *args], capture_output=True, text=True, timeout=600, env=env, check=False
    )


def run_conf(store_dir: Path, capture: Path, **params: object) -> dict[str, object]:
    """The DAG run's ``--conf``: the model, both stores, 3,000 rows, and ``params``."""
    return {
        "model": MODEL,
        "store": str(store_dir),
        "capture": str(capture),
        "min_rows": 3000,
        **params,
    }


def dags_test(airflow_bin: Path, env: dict[str, str], conf: dict[str, object]) -> tuple[int, str]:
    proc = airflow(airflow_bin, env, "dags", "test", DAG, "--conf", json.dumps(conf))
    return proc.returncode, proc.stdout + proc.stderr


def gate_log(output: str) -> str:
    """The lines the gate task logged (``dags test`` prints every task's log)."""
    start = output.index("[DAG TEST] starting task_id=gate")
    end = output.find("[DAG TEST] end task task_id=gate", start)
    return output[start : end if end != -1 else None]


def test_dag_run_publishes_a_canary_with_provenance(
    airflow_bin: Path,
    airflow_env: dict[str, str],
    arm64_sysroot: None,
    capture: Path,
    tmp_path: Path,
) -> None:
    store_dir = tmp_path / "store"
    store_with_production(store_dir)
    conf = run_conf(store_dir, capture, canary_percent=20, parity="required")
    started = time.monotonic()
    code, output = dags_test(airflow_bin, airflow_env, conf)
    assert code == 0, output[-5000:]
    assert "under qemu matches x86-64 within one quantization step" in gate_log(output)

    store = open_store(store_dir)
    assert store.versions(MODEL) == ["1", "2"]
    alias = store.read_alias(MODEL, "production").alias
    assert alias.version == "1"
    assert alias.canary is not None
    assert (alias.canary.version, alias.canary.percent) == ("2", 20.0)
    ref = store.manifest(MODEL, "2").build.dataset
    assert ref is not None
    assert ref.id in {d.id for d in list_datasets(FileObjectStore(capture))}
    assert ref.captured_rows == 200
    assert ref.run_id.startswith("manual__")  # the Airflow run
    print(f"DAG run to a canary: {time.monotonic() - started:.1f} s")


def test_dag_run_with_a_failing_gate_publishes_nothing(
    airflow_bin: Path, airflow_env: dict[str, str], capture: Path, tmp_path: Path
) -> None:
    store_dir = tmp_path / "store"
    store_with_production(store_dir)
    conf = run_conf(
        store_dir,
        capture,
        parity="off",
        # int8 never reproduces fp32's scores exactly: this limit cannot be met
        gate_limits={"max_score_rel_mae": 0.0},
    )
    code, output = dags_test(airflow_bin, airflow_env, conf)
    assert code != 0
    log = gate_log(output)
    assert "gate failed for fault-clf" in log
    assert "relative score MAE" in log
    assert "nothing published" in log
    assert "[DAG TEST] starting task_id=publish" not in output
    store = open_store(store_dir)
    assert store.versions(MODEL) == ["1"]
    assert store.read_alias(MODEL, "production").alias.canary is None


def test_drift_trigger_queues_a_dag_run(airflow_bin: Path, airflow_env: dict[str, str]) -> None:
    reserialize = airflow(airflow_bin, airflow_env, "dags", "reserialize")
    assert reserialize.returncode == 0, reserialize.stderr[-2000:]
    conf = {"store": "s3://models/fleet", "capture": "s3://captures/fleet"}
    trigger = airflow_trigger(airflow_bin, conf, env=airflow_env)
    trigger(
        DriftEvent(
            model="vib-ae",
            version="1",
            ts=time.time(),
            drifting=True,
            psi_max=0.4,
            threshold=0.25,
            feature="flow_m3_h",
            worker_id="w-0",
        )
    )
    db = Path(airflow_env["AIRFLOW_HOME"]) / "airflow.db"
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT conf, state FROM dag_run WHERE dag_id = ? AND state = 'queued'", (DAG,)
        ).fetchall()
    assert len(rows) == 1
    stored = rows[0][0]
    assert json.loads(stored if isinstance(stored, str) else stored.decode()) == {
        **conf,
        "model": "vib-ae",
    }
