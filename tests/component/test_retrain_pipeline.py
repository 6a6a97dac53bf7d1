"""``iotstream models pipeline`` without Airflow, on a small captured dataset: end to end to
a canary in a folder store with the dataset's id in the new version's provenance; steps
that already ran are no-ops (a retried publish publishes nothing new); a gate that the
candidate cannot meet exits 3 with the reason and publishes nothing; clear errors for a
run folder without configuration or with another run's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iot_models.capture.datasets import list_datasets
from iot_models.store import open_store
from iot_models.store.objects import FileObjectStore
from iotstream.cli import main
from tests.harness.retrain import MODEL, capture_readings, store_with_production

CAPTURED = 400


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    folder = tmp_path_factory.mktemp("capture")
    return folder, capture_readings(folder, CAPTURED)


def run(*args: str) -> int:
    return main(["models", "pipeline", *args])


def options(store: Path, capture: Path, *extra: str) -> list[str]:
    return [
        *("--model", MODEL, "--store", str(store), "--capture", str(capture)),
        *("--min-rows", "3000", "--canary-percent", "25", "--parity", "off", *extra),
    ]


def test_pipeline_end_to_end_to_a_canary_with_provenance(
    capture: tuple[Path, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, labelled = capture
    store_dir, run_dir = tmp_path / "store", tmp_path / "run"
    store_with_production(store_dir)
    assert run(*options(store_dir, folder), "--run-dir", str(run_dir)) == 0
    records = json.loads(capsys.readouterr().out)
    assert records["publish"]["version"] == "2"

    store = open_store(store_dir)
    assert store.versions(MODEL) == ["1", "2"]
    alias = store.read_alias(MODEL, "production").alias
    assert alias.version == "1"  # production unchanged: promotion is a person's decision
    assert alias.canary is not None
    assert (alias.canary.version, alias.canary.percent) == ("2", 25.0)
    ref = store.manifest(MODEL, "2").build.dataset
    assert ref is not None
    datasets = list_datasets(FileObjectStore(folder))
    assert [d.id for d in datasets] == [ref.id]
    assert ref.captured_rows == labelled == datasets[0].captured_rows
    assert ref.rows == 3000
    assert store.manifest(MODEL, "2").reference is not None
    gate = json.loads((run_dir / "gate.json").read_text())
    assert gate["verdict"] == "passed"
    assert gate["parity"]["status"] == "skipped"

    # A retried publish after the store already took the version finds it by the run id.
    (run_dir / "done" / "publish.json").unlink()
    (run_dir / "published.json").unlink()
    assert run("step", "publish", "--run-dir", str(run_dir)) == 0
    assert store.versions(MODEL) == ["1", "2"]
    # A step already done is not run again.
    assert run("step", "canary", "--run-dir", str(run_dir)) == 0
    assert "already done" in capsys.readouterr().err


def test_failed_gate_publishes_nothing_and_says_why(
    capture: tuple[Path, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = capture
    store_dir, run_dir = tmp_path / "store", tmp_path / "run"
    store_with_production(store_dir)
    # int8 never reproduces fp32's scores exactly: a zero score error cannot be met.
    limits = json.dumps({"max_score_rel_mae": 0.0})
    code = run(*options(store_dir, folder, "--gate-limits", limits), "--run-dir", str(run_dir))
    assert code == 3
    err = capsys.readouterr().err
    assert "gate failed for fault-clf" in err
    assert "relative score MAE" in err
    assert "nothing published" in err
    store = open_store(store_dir)
    assert store.versions(MODEL) == ["1"]
    assert store.read_alias(MODEL, "production").alias.canary is None
    assert json.loads((run_dir / "gate.json").read_text())["verdict"] == "failed"
    assert not (run_dir / "candidate").exists()
    # publish refuses without a candidate
    assert run("step", "publish", "--run-dir", str(run_dir)) == 1
    assert "the gate has not passed" in capsys.readouterr().err


def test_step_errors_are_clear(
    capture: tuple[Path, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    assert run("step", "gate", "--run-dir", str(run_dir)) == 1
    assert "holds no run.json: give --model --store --capture" in capsys.readouterr().err

    store_dir = tmp_path / "store"
    args = options(store_dir, capture[0])
    assert run("step", "assemble_dataset", "--run-dir", str(run_dir), *args) == 0
    assert run("step", "train", "--run-dir", str(run_dir), "--model", "vib-ae") == 1
    assert "configured with other model: use a new --run-dir" in capsys.readouterr().err
    assert run("step", "gate", "--run-dir", str(run_dir)) == 1
    assert "evaluate.json is missing; run the earlier steps first" in capsys.readouterr().err

    nope = ["--model", "nope", "--store", str(store_dir), "--capture", str(capture[0])]
    assert run(*nope, "--run-dir", str(tmp_path / "other")) == 1
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_required_parity_without_a_sysroot_fails_the_gate(
    capture: tuple[Path, int],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IOTSTREAM_ARM64_CACHE", str(tmp_path / "no-sysroot"))
    store_dir, run_dir = tmp_path / "store", tmp_path / "run"
    store_with_production(store_dir)
    args = [*options(store_dir, capture[0]), "--parity", "required", "--run-dir", str(run_dir)]
    assert run(*args) == 3
    err = capsys.readouterr().err
    assert "arm64 parity required but skipped: no" in err
    assert open_store(store_dir).versions(MODEL) == ["1"]


def test_canary_needs_the_alias(
    capture: tuple[Path, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_dir = tmp_path / "store"
    open_store(store_dir).ensure()  # no production alias yet
    assert run(*options(store_dir, capture[0]), "--run-dir", str(tmp_path / "run")) == 1
    err = capsys.readouterr().err
    assert "has no alias 'production' to put a canary on" in err
    assert open_store(store_dir).versions(MODEL) == ["1"]  # published, canary refused
