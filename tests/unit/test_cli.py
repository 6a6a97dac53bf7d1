"""The iotstream CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iotstream.cli import main


def test_help_lists_commands_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "contract" in out
    assert "examples:" in out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: iotstream" in capsys.readouterr().err


def test_schema_prints_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contract", "schema", "reading"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["additionalProperties"] is False
    assert {"device_id", "seq", "ts", "features"} <= set(schema["required"])
    assert "Monotonic per device" in schema["properties"]["seq"]["description"]


def test_check_accepts_valid_and_explains_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.json"
    good.write_text('{"device_id": "d1", "seq": 1, "ts": 5, "features": [1, 2]}')
    assert main(["contract", "check", str(good), "--topic", "devices/d1/telemetry"]) == 0
    assert '"device_id": "d1"' in capsys.readouterr().out

    assert main(["contract", "check", str(good), "--topic", "devices/d2/telemetry"]) == 1
    assert "rejected (device_mismatch)" in capsys.readouterr().err

    bad = tmp_path / "bad.json"
    bad.write_text('{"device_id": "d1", "seq": 1, "ts": 5, "features": [1, "x"]}')
    assert main(["contract", "check", str(bad)]) == 1
    assert "features.1" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "why"), [("missing.json", "No such file"), (".", "directory")])
def test_check_names_a_file_it_cannot_read(
    name: str, why: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["contract", "check", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("iotstream contract check: cannot read ") and why in err


def test_models_bench_names_a_model_that_is_not_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "bench", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench failed: no model 'nope' under ") and "fault-clf" in err
    assert not list(tmp_path.iterdir())


def test_models_verify_of_a_folder_without_models_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing checked is not "ok"."""
    assert main(["models", "verify", "--root", str(tmp_path)]) == 1
    assert f"FAIL no models under {tmp_path}" in capsys.readouterr().err
