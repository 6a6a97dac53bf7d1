"""compose/docker-compose.yml: valid against the Compose specification (the schema shipped
by check-jsonschema, offline) and consistent with the code: every service's command is an
``iotstream`` subcommand, its environment holds only variables its settings class reads and
builds valid settings, dependencies wait for health, secrets are required, ports stay local."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.deploy.support import ROOT, build_settings, env_problems, run_tool

COMPOSE = ROOT / "compose" / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "compose" / ".env.example"
_VAR = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:\?|:-)(?P<arg>[^}]*))?\}")


def _env_example() -> dict[str, str]:
    pairs = [
        ln.split("=", 1)
        for ln in ENV_EXAMPLE.read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    return {k: v for k, v in pairs}


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$``."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group("name"), m.group("op"), m.group("arg")
        if env.get(name):
            return env[name]
        if op == ":-":
            return arg
        raise AssertionError(f"${{{name}}} is required ({arg}) and .env.example lacks it")

    return _VAR.sub(sub, value).replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = _interpolate(yaml.safe_load(COMPOSE.read_text()), _env_example())
    assert isinstance(loaded, dict)
    return loaded


def _app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The long-running services of the iotstream images (models-init: an entrypoint script)."""
    return {
        n: s for n, s in compose["services"].items() if "iotstream" in s["image"] and s["command"]
    }


def test_compose_file_matches_the_compose_spec() -> None:
    result = run_tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_misspelt_key(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("    depends_on:\n", "    depend_on:\n", 1))
    result = run_tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(broken))
    assert result.returncode == 1
    assert "depend_on" in result.stdout


def test_services_are_the_whole_pipeline(compose: dict[str, Any]) -> None:
    services = _app_services(compose)
    commands = sorted(s["command"][0] for s in services.values())
    assert commands == ["gateway", "ingest", "sim", "worker", "worker"]
    # The worker roles run the worker image (compose/Dockerfile, target worker), the others
    # the full one.
    for name, svc in services.items():
        worker_role = svc["command"][0] in ("worker", "ingest")
        assert ("iotstream-worker:" in svc["image"]) == worker_role, name
        assert (svc["build"].get("target") == "worker") == worker_role, name
    assert compose["services"]["mosquitto"]["image"].startswith("eclipse-mosquitto:")
    assert compose["services"]["redis"]["image"].startswith("redis:")


@pytest.mark.parametrize("service", ["ingest", "worker-1", "worker-2", "gateway", "sim"])
def test_environment_is_what_the_settings_class_reads(
    compose: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = compose["services"][service]
    command = svc["command"][0]
    env = {k: str(v) for k, v in svc["environment"].items()}
    assert env_problems(command, env) == []
    settings = build_settings(command, env, monkeypatch)  # raises if anything required lacks
    hosts = set(compose["services"])
    fields = ["redis_url"]
    if getattr(settings, "source", "mqtt") == "mqtt":  # a stream worker never dials the broker
        fields.append("mqtt_url")
    for field in fields:
        url = getattr(settings, field, None)
        if url is not None:
            host = url.split("@")[-1].split("://")[-1].split(":")[0].split("/")[0]
            assert host in hosts, f"{service}.{field} points at {host!r}, not a service"


def test_gateway_is_valid_outside_dev_mode_too(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The .env secret passes the production policy, so GATEWAY_DEV_MODE=false just works."""
    env = {k: str(v) for k, v in compose["services"]["gateway"]["environment"].items()}
    settings = build_settings("gateway", {**env, "GATEWAY_DEV_MODE": "false"}, monkeypatch)
    assert not settings.dev_mode


def test_workers_have_distinct_stable_ids(compose: dict[str, Any]) -> None:
    ids = [
        s["environment"]["WORKER_WORKER_ID"]
        for s in _app_services(compose).values()
        if s["command"][0] == "worker"
    ]
    assert len(ids) == len(set(ids)) == 2


def test_workers_read_the_staged_intake(compose: dict[str, Any]) -> None:
    """One ingest (fixed client id, its own broker account, health on its metrics port)
    fills the staging stream; the workers read it and start after the ingest is healthy."""
    services = compose["services"]
    ingest = services["ingest"]
    assert [s["command"][0] for s in _app_services(compose).values()].count("ingest") == 1
    env = ingest["environment"]
    assert env["WORKER_WORKER_ID"] == "ingest" and env["WORKER_MQTT_USERNAME"] == "ingest"
    assert env["HEALTHCHECK_URL"] == f"http://127.0.0.1:{env['WORKER_METRICS_PORT']}/readyz"
    assert ingest["healthcheck"]["test"] == services["worker-1"]["healthcheck"]["test"]
    assert "MQTT_INGEST_PASSWORD" in services["mqtt-auth"]["environment"]
    for name in ("worker-1", "worker-2"):
        worker = services[name]
        assert worker["environment"]["WORKER_SOURCE"] == "stream", name
        assert not any(k.startswith("WORKER_MQTT_") for k in worker["environment"]), name
        assert worker["depends_on"]["ingest"] == {"condition": "service_healthy"}, name


def test_every_secret_is_required_and_documented() -> None:
    text = COMPOSE.read_text()
    required = {m.group("name") for m in _VAR.finditer(text) if m.group("op") == ":?"}
    assert {
        "MQTT_WORKER_PASSWORD",
        "MQTT_INGEST_PASSWORD",
        "REDIS_PASSWORD",
        "GATEWAY_JWT_SECRET",
        "MODEL_STORE_ACCESS_KEY",
        "MODEL_STORE_SECRET_KEY",
    } <= required
    assert required <= set(_env_example())
    # Secrets never appear in the compose file itself.
    for key, value in _env_example().items():
        if "PASSWORD" in key or "SECRET" in key:
            assert value not in text, key


ONE_SHOT = {"mqtt-auth", "models-init"}
"""Services that run once and exit: the broker's accounts and the model store's seed."""


def test_health_ordering(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, svc in services.items():
        for dep, cond in svc.get("depends_on", {}).items():
            want = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert cond["condition"] == want, f"{name} -> {dep}"
            if want == "service_healthy":
                assert not services[dep]["healthcheck"].get("disable"), dep
    long_running = [n for n, s in services.items() if s.get("restart") != "no" and n != "sim"]
    for name in long_running:
        assert services[name]["healthcheck"]["test"], name


def test_images_pinned_and_ports_local(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        image = svc["image"]
        tag = image.rsplit(":", 1)[-1] if ":" in image.split("/")[-1] else ""
        # A release number, or MinIO's dated release names (RELEASE.2025-04-22T22-12-26Z).
        release = re.search(r"\d+\.\d+", tag) or re.fullmatch(r"RELEASE\.\d{4}-[\dTZ-]+", tag)
        assert tag and tag != "latest" and release, f"{name}: {image}"
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
    assert "127.0.0.1:8000:8000" in compose["services"]["gateway"]["ports"]


def test_redis_keeps_an_append_only_file(compose: dict[str, Any]) -> None:
    cmd = compose["services"]["redis"]["command"]
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert cmd[cmd.index("--appendfsync") + 1] == "everysec"


def test_broker_mounts_exist_and_its_rights_come_from_make_passwd(compose: dict[str, Any]) -> None:
    volumes = compose["services"]["mosquitto"]["volumes"]
    assert "mqtt-auth:/mosquitto/auth:ro" in volumes  # passwd + dynamic-security.json
    for volume in volumes:
        src = volume.split(":")[0]
        if src.startswith("."):
            assert (COMPOSE.parent / src).exists(), volume
    # mqtt-auth runs the one make-passwd.sh, the Kubernetes base's (kustomize reads only k8s/).
    auth = compose["services"]["mqtt-auth"]
    script, mount = auth["volumes"][0].split(":")[:2]
    assert (COMPOSE.parent / script).resolve() == ROOT / "k8s/base/mosquitto/make-passwd.sh"
    assert auth["entrypoint"] == ["/bin/sh", mount]


STORE_USERS = ("worker-1", "worker-2", "gateway")
"""The services that follow the model store."""


def test_model_store_is_wired(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """MinIO with a health check and a data volume; models-init (one shot, after MinIO is
    healthy) seeds the store the workers and the gateway follow, and they start after it,
    with MinIO's own account as their S3 credentials, its endpoint, and a model cache on a
    volume (the root file system is read-only)."""
    services = compose["services"]
    minio = services["minio"]
    assert minio["image"].startswith("quay.io/minio/minio:RELEASE.")  # MinIO's own registry
    assert minio["healthcheck"]["test"] == ["CMD", "mc", "ready", "local"]
    assert any(v.endswith(":/data") for v in minio["volumes"])
    address = minio["command"][minio["command"].index("--address") + 1]
    init = services["models-init"]
    assert init["restart"] == "no" and "profiles" not in init and "profiles" not in minio
    assert init["depends_on"] == {"minio": {"condition": "service_healthy"}}
    script, mount = init["volumes"][0].split(":")[:2]
    assert (COMPOSE.parent / script).is_file() and init["entrypoint"] == ["/bin/sh", mount]
    store = init["environment"]["IOTSTREAM_MODEL_STORE"]
    assert store.startswith("s3://")
    for name in ["models-init", *STORE_USERS]:
        env = compose["services"][name]["environment"]
        assert env["AWS_ACCESS_KEY_ID"] == minio["environment"]["MINIO_ROOT_USER"], name
        assert env["AWS_SECRET_ACCESS_KEY"] == minio["environment"]["MINIO_ROOT_PASSWORD"], name
        assert env["AWS_ENDPOINT_URL_S3"] == f"http://minio{address}", name
    for name in STORE_USERS:
        svc = services[name]
        command = svc["command"][0]
        env = {k: str(v) for k, v in svc["environment"].items()}
        settings = build_settings(command, env, monkeypatch)
        assert settings.model_store == store, name
        assert svc["depends_on"]["models-init"] == {
            "condition": "service_completed_successfully"
        }, name
        mounts = [v.split(":")[1] for v in svc["volumes"]]
        assert any(settings.model_cache_dir.is_relative_to(m) for m in mounts), name
    # The ingest only stages readings: it loads no model and gets no store credentials.
    assert not any(k.startswith("AWS_") for k in services["ingest"]["environment"])


def test_model_store_init_script_is_valid_shell() -> None:
    result = subprocess.run(
        ["sh", "-n", str(COMPOSE.parent / "model-store-init.sh")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
