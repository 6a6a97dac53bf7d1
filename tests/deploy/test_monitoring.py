"""monitoring/ and k8s/monitoring/: the Prometheus rules pass ``promtool check`` and their unit
tests (``promtool test rules``), and a broken rule fails those tests; the Grafana dashboard is
well-formed and names only metrics the code exports or the rules record; compose's
Prometheus scrapes every service where it listens; the Prometheus Operator objects validate
against the operator's CRD schemas (vendored, strict) and select real pods on named ports
that a NetworkPolicy opens to the monitoring namespace."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]
from prometheus_client import CollectorRegistry

from gateway.metrics import GatewayMetrics
from inference_worker.drift import DriftMetrics
from inference_worker.metrics import WorkerMetrics
from iotstream.localservices import find_binary
from tests.deploy.support import ROOT, run_tool

MONITORING = ROOT / "monitoring"
RULES = MONITORING / "prometheus" / "rules" / "iotstream.rules.yml"
RULE_TESTS = MONITORING / "prometheus" / "tests" / "iotstream.test.yml"
PROMETHEUS_CONFIG = MONITORING / "prometheus" / "prometheus.yml"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "iotstream.json"
K8S_MONITORING = ROOT / "k8s" / "monitoring"
SCHEMAS = Path(__file__).parent / "schemas"
COMPOSE = ROOT / "compose" / "docker-compose.yml"
JOBS = {"worker", "worker-edge", "ingest", "gateway", "mosquitto"}
"""Job names the rules and the dashboard select on (compose scrape jobs, k8s jobLabel)."""


def promtool() -> str:
    found = find_binary("promtool")
    assert found, (
        "promtool is missing: apt-get install prometheus (scripts/test's bootstrap does this)"
    )
    return found


def _promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
    )


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _yaml(RULES)["groups"] for rule in group["rules"]]


def exported_metric_names() -> set[str]:
    """Every series name the worker (and ingest) and the gateway expose, plus the recording
    rules' names and Prometheus's own (up, probe_success from the blackbox probe, ALERTS)."""
    names = {"up", "probe_success", "ALERTS"}
    drift = CollectorRegistry()
    DriftMetrics(drift)  # registered by the worker's drift observer
    for registry in (WorkerMetrics().registry, GatewayMetrics().registry, drift):
        for family in registry.collect():
            names.add(family.name)
            names.add(f"{family.name}_total")
            names.update(f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count"))
    names.update(rule["record"] for rule in _rules() if "record" in rule)
    return names


_PROMQL_WORDS = {
    "sum", "avg", "min", "max", "count", "by", "without", "rate", "irate", "increase",
    "histogram_quantile", "absent", "or", "and", "unless", "on", "ignoring", "bool", "topk",
    "deriv", "delta", "time", "vector", "scalar", "e", "le", "inf",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Series names in a PromQL expression (labels, functions and keywords removed)."""
    text = re.sub(r'"[^"]*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return {w for w in words if w.lower() not in _PROMQL_WORDS}


# --- Prometheus rules --------------------------------------------------------------------


def test_rules_and_config_pass_promtool_check() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    result = _promtool("check", "config", "--syntax-only", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    result = _promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("alert", "broken"),
    [
        ("IotstreamTargetDown", ("== 0", "== 2")),
        ("IotstreamNoPredictions", ("[2m])) == 0", "[2m])) < 0")),
        ("IotstreamWorkerBacklog", ("> 1000", "> 100000")),
        ("IotstreamFeatureDrift", ("== 1", "== 2")),
    ],
)
def test_rule_unit_tests_fail_when_a_rule_is_broken(
    tmp_path: Path, alert: str, broken: tuple[str, str]
) -> None:
    """The alert tests are not vacuous: a wrong comparison makes them fail."""
    rules = _yaml(RULES)
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                assert broken[0] in rule["expr"], rule["expr"]
                rule["expr"] = rule["expr"].replace(broken[0], broken[1])
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / RULES.name).write_text(yaml.safe_dump(rules))
    (tmp_path / "tests").mkdir()
    shutil.copy(RULE_TESTS, tmp_path / "tests" / RULE_TESTS.name)
    result = _promtool("test", "rules", str(tmp_path / "tests" / RULE_TESTS.name))
    assert result.returncode != 0
    assert alert in result.stdout + result.stderr


def test_every_alert_has_a_severity_a_runbook_and_a_unit_test() -> None:
    tested = RULE_TESTS.read_text()
    runbook = (ROOT / "docs" / "operations.md").read_text()
    for rule in _rules():
        if "alert" not in rule:
            continue
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        anchor = rule["annotations"]["runbook_url"].rsplit("#", 1)[1]
        assert f'<a id="{anchor}"></a>' in runbook, (rule["alert"], anchor)
        assert f"alertname: {rule['alert']}\n" in tested, rule["alert"]


def test_rules_name_only_exported_metrics_and_known_jobs() -> None:
    known = exported_metric_names()
    for rule in _rules():
        assert metric_names(rule["expr"]) <= known, (rule, metric_names(rule["expr"]) - known)
        for job in re.findall(r'job=~?"([^"]+)"', rule["expr"]):
            assert set(job.split("|")) <= JOBS, rule["expr"]


def test_metric_name_extraction() -> None:
    expr = 'sum by (job, le) (rate(worker_x_bucket{job="w", reason=~"a|b"}[5m])) / up or ALERTS'
    assert metric_names(expr) == {"worker_x_bucket", "up", "ALERTS"}


# --- Grafana -----------------------------------------------------------------------------


def test_dashboard_is_well_formed_and_names_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels) >= 8
    datasource = _yaml(MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    uid = datasource["datasources"][0]["uid"]
    known = exported_metric_names()
    used: set[str] = set()
    for panel in panels:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names and names <= known, (panel["title"], names - known)
            used |= names
    # The signals of the issue: each appears on the dashboard.
    for name in (
        "iotstream:worker_backlog",
        "iotstream:worker_rejected:rate5m",
        "iotstream:worker_redis_retries:rate5m",
        "iotstream:worker_inference_seconds:p99_5m",
        "iotstream:gateway_slow_closes:rate5m",
        "iotstream:gateway_connections",
        "iotstream:worker_predictions_stored:rate1m",
        "probe_success",
        "up",
    ):
        assert name in used, name
    provider = _yaml(MONITORING / "grafana" / "provisioning" / "dashboards" / "iotstream.yml")
    path = provider["providers"][0]["options"]["path"]
    grafana = _yaml(COMPOSE)["services"]["grafana"]
    assert f"../monitoring/grafana/dashboards:{path}:ro" in grafana["volumes"]


# --- compose -----------------------------------------------------------------------------


def test_compose_monitoring_profile_scrapes_every_service_where_it_listens() -> None:
    services = _yaml(COMPOSE)["services"]
    for name in ("prometheus", "grafana", "blackbox"):
        assert services[name]["profiles"] == ["monitoring"], name
        for volume in services[name].get("volumes", []):
            src = volume.split(":")[0]
            if src.startswith("."):
                assert (COMPOSE.parent / src).exists(), volume
    config = _yaml(PROMETHEUS_CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) - {"prometheus"} <= JOBS
    expected: dict[str, set[str]] = {"worker": set(), "ingest": set(), "gateway": set()}
    for name, svc in services.items():
        command = (svc.get("command") or [""])[0]
        if command in ("worker", "ingest"):
            expected[command].add(f"{name}:{svc['environment']['WORKER_METRICS_PORT']}")
        elif command == "gateway":
            expected["gateway"].add(f"{name}:{svc['environment']['GATEWAY_PORT']}")
    for job, targets in expected.items():
        assert set(jobs[job]["static_configs"][0]["targets"]) == targets, job
    probe = jobs["mosquitto"]
    assert probe["static_configs"][0]["targets"] == ["mosquitto:1883"]
    assert probe["params"]["module"] == ["mqtt_connect"]
    blackbox = _yaml(MONITORING / "blackbox" / "blackbox.yml")
    assert "mqtt_connect" in blackbox["modules"]
    assert probe["relabel_configs"][-1]["replacement"].split(":")[0] == "blackbox"


# --- Kubernetes (Prometheus Operator) ------------------------------------------------------


def strict(schema: Any) -> Any:
    """The CRD schema as the API server prunes it, made strict: an object with declared
    properties rejects any other key (what kubernetes-validate --strict does for built-ins)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _schema(kind: str) -> dict[str, Any]:
    schema = json.loads((SCHEMAS / f"{kind.lower()}-monitoring-v1.json").read_text())
    schema.pop("$comment")
    checked: dict[str, Any] = strict(schema)
    return checked


def _validate(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(_schema(doc["kind"]))
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.fixture(scope="module")
def monitors() -> list[dict[str, Any]]:
    result = run_tool("kubectl", "kustomize", str(K8S_MONITORING))
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.fixture(scope="module")
def overlays(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(ROOT / "k8s", tree, ignore=shutil.ignore_patterns("secrets.env"))
    out = {}
    for overlay in ("cloud", "edge"):
        folder = tree / "overlays" / overlay
        shutil.copy(folder / "secrets.env.example", folder / "secrets.env")
        result = run_tool("kubectl", "kustomize", str(folder))
        assert result.returncode == 0, result.stderr
        out[overlay] = [d for d in yaml.safe_load_all(result.stdout) if d]
    return out


def test_operator_objects_validate_against_the_crd_schemas(monitors: list[dict[str, Any]]) -> None:
    kinds = sorted(d["kind"] for d in monitors if d["apiVersion"] == "monitoring.coreos.com/v1")
    assert kinds == ["PodMonitor", "PodMonitor", "Probe", "PrometheusRule"]
    for doc in monitors:
        assert doc["metadata"]["namespace"] == "iotstream", doc["metadata"]
        if doc["apiVersion"] == "monitoring.coreos.com/v1":
            assert _validate(doc) == [], doc["metadata"]["name"]


def test_schema_check_catches_a_misspelt_field(monitors: list[dict[str, Any]]) -> None:
    monitor = copy.deepcopy(next(d for d in monitors if d["kind"] == "PodMonitor"))
    monitor["spec"]["podMetricsEndpoints"][0]["intervall"] = "15s"
    assert any("intervall" in problem for problem in _validate(monitor))
    rule = copy.deepcopy(next(d for d in monitors if d["kind"] == "PrometheusRule"))
    rule["spec"]["groups"][0]["rules"][0]["expresion"] = "up"
    assert _validate(rule)


def test_k8s_copies_equal_the_monitoring_files(monitors: list[dict[str, Any]]) -> None:
    rule = next(d for d in monitors if d["kind"] == "PrometheusRule")
    assert rule["spec"]["groups"] == _yaml(RULES)["groups"]
    assert (K8S_MONITORING / "iotstream-dashboard.json").read_text() == DASHBOARD.read_text()
    dashboards = [d for d in monitors if d["kind"] == "ConfigMap"]
    assert dashboards[0]["metadata"]["labels"]["grafana_dashboard"] == "1"


def _pods(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        d["spec"]["template"]
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet")
    ]


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In", expr
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def _scrape_allowed(docs: list[dict[str, Any]], labels: dict[str, str], port: int) -> bool:
    """Some NetworkPolicy selecting these pod labels admits the monitoring namespace on
    ``port``."""
    for np in (d for d in docs if d["kind"] == "NetworkPolicy"):
        if not _matches(np["spec"]["podSelector"], labels):
            continue
        for rule in np["spec"].get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            peers = rule.get("from")
            from_monitoring = peers is None or any(
                peer.get("namespaceSelector", {}).get("matchLabels", {})
                == {"kubernetes.io/metadata.name": "monitoring"}
                and "podSelector" not in peer
                for peer in peers
            )
            if from_monitoring and (not ports or port in ports):
                return True
    return False


@pytest.mark.parametrize("overlay", ["cloud", "edge"])
def test_monitors_select_real_pods_on_named_ports_the_policies_open(
    monitors: list[dict[str, Any]], overlays: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    docs = overlays[overlay]
    scraped: set[str] = set()
    for monitor in (d for d in monitors if d["kind"] == "PodMonitor"):
        endpoint = monitor["spec"]["podMetricsEndpoints"][0]
        for pod in _pods(docs):
            labels = pod["metadata"]["labels"]
            if not _matches(monitor["spec"]["selector"], labels):
                continue
            ports = {p["name"]: p["containerPort"] for c in pod["spec"]["containers"]
                     for p in c.get("ports", [])}  # fmt: skip
            assert endpoint["port"] in ports, (monitor["metadata"]["name"], labels)
            assert _scrape_allowed(docs, labels, ports[endpoint["port"]]), labels
            assert monitor["spec"]["jobLabel"] in labels
            scraped.add(labels[monitor["spec"]["jobLabel"]])
    expected = {"worker", "ingest", "gateway"} | ({"worker-edge"} if overlay == "edge" else set())
    assert scraped == expected
    probe = next(d for d in monitors if d["kind"] == "Probe")
    target = probe["spec"]["targets"]["staticConfig"]["static"][0]
    service = next(
        d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "mosquitto"
    )
    assert target == f"mosquitto.iotstream.svc:{service['spec']['ports'][0]['port']}"
    assert probe["spec"]["jobName"] in JOBS


def test_a_policy_without_the_monitoring_rule_is_caught(
    overlays: dict[str, list[dict[str, Any]]],
) -> None:
    docs = [d for d in overlays["cloud"] if d["metadata"]["name"] != "allow-monitoring-scrape"]
    assert not _scrape_allowed(docs, {"app.kubernetes.io/name": "worker"}, 9100)
    assert _scrape_allowed(overlays["cloud"], {"app.kubernetes.io/name": "worker"}, 9100)
