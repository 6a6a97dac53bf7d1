"""Options generated from settings classes; settings validation."""

from __future__ import annotations

import argparse

import pytest

from device_sim.settings import SimSettings
from inference_worker.settings import WorkerSettings
from iotstream.cli import main
from iotstream.settings_cli import SettingsError, add_settings_arguments, settings_from_args


def parse(cls, argv: list[str]):
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser, cls)
    return settings_from_args(cls, parser.parse_args(argv))


def test_options_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIM_DEVICES", "7")
    monkeypatch.setenv("SIM_RATE", "2.5")
    settings = parse(SimSettings, ["--rate", "4", "--qos", "0", "--codec", "msgpack"])
    assert settings.devices == 7
    assert settings.rate == 4.0
    assert settings.qos == 0
    assert settings.codec == "msgpack"


def test_worker_models_list_from_env_and_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_MODELS", "fault-clf, vib-ae")
    assert parse(WorkerSettings, []).models == ["fault-clf", "vib-ae"]
    assert parse(WorkerSettings, ["--models", "a"]).models == ["a"]
    assert parse(WorkerSettings, ["--publish-inference"]).publish_inference is True


def test_invalid_values_name_the_setting() -> None:
    with pytest.raises(SettingsError, match="devices"):
        parse(SimSettings, ["--devices", "0"])
    with pytest.raises(SettingsError, match="worker_id"):
        parse(WorkerSettings, ["--worker-id", "has space"])


def test_choices_are_enforced_by_the_parser() -> None:
    with pytest.raises(SystemExit):
        parse(SimSettings, ["--protocol", "4"])


@pytest.mark.parametrize("command", ["sim", "worker"])
def test_help_documents_every_setting_with_its_env_var(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    cls = SimSettings if command == "sim" else WorkerSettings
    prefix = "SIM_" if command == "sim" else "WORKER_"
    for name in cls.model_fields:
        assert f"--{name.replace('_', '-')}" in out
        assert f"{prefix}{name.upper()}" in out
    assert "examples:" in out


def test_bad_settings_exit_2_with_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--devices", "-1"]) == 2
    assert "invalid settings" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["worker", "--mqtt-url", "foo://broker"],
            "mqtt_url (--mqtt-url, WORKER_MQTT_URL): broker URL 'foo://broker': scheme must be",
        ),
        (["ingest", "--mqtt-url", "mqtt://"], "broker URL 'mqtt://' has no host"),
        (["sim", "--mqtt-url", "127.0.0.1:1883"], "mqtt_url (--mqtt-url, SIM_MQTT_URL)"),
        (
            ["worker", "--redis-url", "localhost:6379"],
            "redis_url (--redis-url, WORKER_REDIS_URL): Redis URL must specify one of",
        ),
        (["gateway", "--dev", "--redis-url", "redis://h:port"], "Port could not be cast"),
        (
            ["worker", "--model-store", "sftp://host/models"],
            "model_store (--model-store, WORKER_MODEL_STORE): unknown model store 'sftp://",
        ),
        (["worker", "--capture-url", "file://host/c"], "file URLs name a local path"),
        (["gateway", "--dev", "--model-store", "gs://b/m"], "unknown model store 'gs://b/m'"),
    ],
)
def test_a_bad_url_is_refused_with_the_settings(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before anything starts, in one line that names the option and its variable (it
    used to surface as a traceback from the first connect)."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and "Value error" not in err


def test_the_urls_every_transport_takes_are_accepted() -> None:
    for url in ("mqtt://b", "mqtts://b:8883", "ws://b/mqtt", "wss://b", "memory://t"):
        assert parse(WorkerSettings, ["--mqtt-url", url]).mqtt_url == url
    for url in ("redis://r:6379/0", "rediss://r", "unix:///run/redis.sock", "memory://t"):
        assert parse(WorkerSettings, ["--redis-url", url]).redis_url == url
    for url in ("s3://bucket/models", "file:///srv/models", "relative/folder"):
        settings = parse(WorkerSettings, ["--model-store", url, "--capture-url", url])
        assert (settings.model_store, settings.capture_url) == (url, url)
    with pytest.raises(SettingsError, match="mqtt_url"):
        parse(SimSettings, ["--mqtt-url", "memory://t"])  # the in-memory source is the worker's


def test_a_rule_across_fields_is_reported_without_a_field_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GATEWAY_JWT_SECRET", raising=False)
    monkeypatch.delenv("GATEWAY_DEV", raising=False)
    assert main(["gateway"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "iotstream gateway: invalid settings: GATEWAY_JWT_SECRET is required outside dev mode"
    )


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["worker", "--mqtt-ca-file", "/nonexistent/ca.crt"], "mqtt_ca_file (--mqtt-ca-file"),
        (["sim", "--cert-file", "/nonexistent/d.crt"], "cert_file (--cert-file, SIM_CERT_FILE)"),
        (
            ["gateway", "--dev", "--grpc-tls-cert", "/nonexistent/s.crt", "--grpc-tls-key", "."],
            "grpc_tls_cert (--grpc-tls-cert, GATEWAY_GRPC_TLS_CERT): Path does not point to a file",
        ),
    ],
)
def test_a_tls_file_that_is_not_there_is_refused_with_the_settings(
    argv: list[str], field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert field in err and "Traceback" not in err


def test_log_level_is_one_of_pythons_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_LOG_LEVEL", "debug")
    assert parse(WorkerSettings, []).log_level == "DEBUG"
    monkeypatch.setenv("WORKER_LOG_LEVEL", "loud")
    with pytest.raises(SettingsError, match="log_level"):
        parse(WorkerSettings, [])
    with pytest.raises(SystemExit):  # the option offers the names
        parse(WorkerSettings, ["--log-level", "LOUD"])


def test_worker_routes_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_ROUTES", '{"fan-*": "vib-ae"}')
    assert parse(WorkerSettings, []).routes == {"fan-*": "vib-ae"}
