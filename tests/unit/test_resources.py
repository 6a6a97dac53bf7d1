"""Run-time data is found through importlib.resources, in a checkout as in a wheel (#19):
the package-data links point at the top-level folders, the settings and the CLI default to
the shipped models, and a missing shipped file is one line that says what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import GatewaySettings
from inference_worker.settings import WorkerSettings
from iot_models.bundled import bundled_models_dir
from iotstream.broker_tools.templates import BROKER_DIR, Profile, TemplateError, render_file
from iotstream.cli import main
from iotstream.commands.demo import PROCFILE
from iotstream.commands.models import DEFAULT_ROOT
from iotstream.resources import MissingResourceError, require

ROOT = Path(__file__).resolve().parents[2]


def test_the_packaged_data_is_the_checkouts_top_level_folders() -> None:
    assert bundled_models_dir() == (ROOT / "models").resolve()
    assert (ROOT / "broker").resolve() == BROKER_DIR
    assert (ROOT / "demo" / "Procfile").resolve() == PROCFILE
    assert bundled_models_dir() == DEFAULT_ROOT
    for name in ("fault-clf", "fault-clf-large", "vib-ae"):
        assert (bundled_models_dir() / name / "1" / "manifest.json").is_file()


def test_services_default_to_the_shipped_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKER_MODELS_DIR", raising=False)
    monkeypatch.delenv("GATEWAY_MODELS_DIR", raising=False)
    assert WorkerSettings().models_dir == bundled_models_dir()
    assert GatewaySettings(dev_mode=True).models_dir == bundled_models_dir()
    monkeypatch.setenv("WORKER_MODELS_DIR", "/srv/models")
    assert WorkerSettings().models_dir == Path("/srv/models")


def test_a_missing_shipped_file_is_one_line_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(MissingResourceError) as info:
        require(tmp_path / "Procfile", "the demo's process list")
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "Procfile") in message
    assert "reinstall" in message


def test_a_template_dir_without_the_template_is_a_template_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"--template-dir needs dev\.conf"):
        render_file(Profile.DEV, template_dir=tmp_path)


def test_the_cli_reports_a_missing_template_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["broker", "config", "dev", "--template-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert "dev.conf" in err


def test_the_demo_names_missing_servers_with_the_install_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("iotstream.localservices.find_binary", lambda name: None)
    code = main(["demo", "--dir", str(tmp_path / "demo")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert "mosquitto, redis-server not found" in err
    assert "sudo apt-get install -y mosquitto mosquitto-clients redis-server" in err
    assert "brew install mosquitto redis" in err
    assert not (tmp_path / "demo").exists()
