"""``iotstream models publish|versions|alias|canary|promote|rollback`` against a file store
and a real S3 server: the lifecycle an operator drives, and one-line errors with exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.swap_bench import copy_as_version
from iot_models.store import open_store
from iotstream.cli import main
from iotstream.localservices import free_port
from tests.harness.s3 import s3_store_url

pytestmark = pytest.mark.integration


@pytest.fixture(params=["file", "s3"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "file":
        return str(tmp_path / "store")
    url = s3_store_url(request.getfixturevalue("s3_endpoint"))
    assert main(["models", "init", "--store", url]) == 0
    return url


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["models", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_an_operator_publishes_points_canaries_promotes_and_rolls_back(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    builds = tmp_path / "builds"
    for version in ("1", "2"):
        folder = copy_as_version(builds, version)
        code, _, err = run(capsys, "publish", str(folder), "--store", store_url)
        assert code == 0, err
        assert f"published fault-clf {version} (4 variants)" in err
    s = ("--store", store_url)
    assert run(capsys, "alias", "fault-clf", "production", "1", *s)[0] == 0
    canary = ("canary", "fault-clf", "production", "2", "--percent", "10", "--device", "lab-*")
    code, _, err = run(capsys, *canary, *s)
    assert code == 0, err
    assert "fault-clf@production -> 1, canary 2 for 10% + 'lab-*'" in err
    code, out, _ = run(capsys, "versions", "--json", *s)
    report = json.loads(out)
    assert report["fault-clf"]["versions"] == ["1", "2"]
    assert report["fault-clf"]["aliases"]["production"]["canary"]["percent"] == 10.0
    assert run(capsys, "promote", "fault-clf", "production", *s)[0] == 0
    state = open_store(store_url).read_alias("fault-clf", "production").alias
    assert (state.version, state.previous, state.canary) == ("2", "1", None)
    code, _, err = run(capsys, "rollback", "fault-clf", "production", *s)
    assert code == 0
    assert "fault-clf@production -> 1, previous 2" in err
    code, out, _ = run(capsys, "alias", "fault-clf", "production", *s)
    assert json.loads(out)["version"] == "1"


def test_errors_are_one_line_and_exit_1(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = ("--store", store_url)
    folder = copy_as_version(tmp_path / "b", "1")
    assert run(capsys, "publish", str(folder), *s)[0] == 0
    cases = [
        (("publish", str(folder)), "never overwritten"),
        (("alias", "fault-clf", "production", "7"), "no published version '7'"),
        (("promote", "fault-clf", "production"), "has no alias 'production'"),
        (("canary", "fault-clf", "production", "1"), "--percent above 0"),
        (("publish", str(tmp_path / "b")), "holds no manifest.json"),
    ]
    assert run(capsys, "alias", "fault-clf", "staging", "1", *s)[0] == 0
    cases.append((("rollback", "fault-clf", "staging"), "no previous version"))
    cases.append((("canary", "fault-clf", "staging", "1", "--percent", "5"), "own version"))
    for args, message in cases:
        code, _, err = run(capsys, *args, *s)
        assert code == 1, args
        assert err.startswith("error: ") and message in err, err
        assert err.count("\n") == 1, err


def test_store_missing_or_unreachable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IOTSTREAM_MODEL_STORE", raising=False)
    code, _, err = run(capsys, "versions")
    assert code == 2
    assert "--store URL or IOTSTREAM_MODEL_STORE" in err
    down = f"s3://b/models?endpoint=http://127.0.0.1:{free_port()}"
    code, _, err = run(capsys, "versions", "--store", down)
    assert code == 1
    assert "cannot reach the model store" in err
