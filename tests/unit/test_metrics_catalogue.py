"""iot_metrics: catalogue files read, checked and built on a registry; the project's
catalogues load, ship as package data and match the docs."""

from __future__ import annotations

import ast
import fnmatch
import re
import tomllib
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from iot_metrics import CatalogueError, MetricSet, load_catalogue, parse_catalogue
from tests.harness.metrics import CATALOGUES, specs, unexposed

ROOT = Path(__file__).resolve().parents[2]

SAMPLE = """
[frames]
name = "demo_frames_total"
type = "counter"
help = "Frames sent"
labels = ["type"]

[clients]
name = "demo_clients"
type = "gauge"
help = "Clients"

[lag]
name = "demo_lag_seconds"
type = "histogram"
help = "Lag"
labels = ["where"]
buckets = [0.5, 1, 2.5]

[sizes]
name = "demo_sizes"
type = "histogram"
help = "Sizes (default buckets)"
"""


def test_a_catalogue_builds_typed_metrics_with_its_labels_and_buckets() -> None:
    registry = CollectorRegistry()
    metrics = MetricSet(registry, parse_catalogue(SAMPLE))
    assert [s.key for s in metrics] == ["frames", "clients", "lag", "sizes"]
    frames, clients, lag = (
        metrics.counter("frames"),
        metrics.gauge("clients"),
        metrics.histogram("lag"),
    )
    assert isinstance(frames, Counter) and isinstance(clients, Gauge)
    assert isinstance(lag, Histogram)
    frames.labels("control").inc(2)
    clients.set(3)
    lag.labels("redis").observe(0.7)
    assert registry.get_sample_value("demo_frames_total", {"type": "control"}) == 2
    assert registry.get_sample_value("demo_clients") == 3
    bucket = {"where": "redis", "le": "1.0"}
    assert registry.get_sample_value("demo_lag_seconds_bucket", bucket) == 1
    assert registry.get_sample_value("demo_lag_seconds_bucket", {**bucket, "le": "0.5"}) == 0
    assert "+Inf" in generate_latest(registry).decode()
    with pytest.raises(ValueError, match="label"):
        frames.inc()  # labelled: a child is needed
    assert metrics.histogram("sizes")._upper_bounds[:2] == [0.005, 0.01]  # the client's default


def test_a_wrong_kind_or_an_unknown_key_is_a_clear_error() -> None:
    metrics = MetricSet(CollectorRegistry(), parse_catalogue(SAMPLE))
    with pytest.raises(
        TypeError, match=r"'frames' \(demo_frames_total\) is a counter, not a gauge"
    ):
        metrics.gauge("frames")
    with pytest.raises(TypeError, match="is a gauge, not a histogram"):
        metrics.histogram("clients")
    with pytest.raises(KeyError, match=r"no metric 'frame' .*known: \['clients', 'frames'"):
        metrics.counter("frame")


def test_two_sets_on_one_registry_and_one_set_on_two_registries() -> None:
    shared = CollectorRegistry()
    MetricSet(shared, parse_catalogue(SAMPLE))
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        MetricSet(shared, parse_catalogue(SAMPLE))
    MetricSet(CollectorRegistry(), parse_catalogue(SAMPLE))  # registries are independent


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[a]\nname = "x"\ntype = "counter"\nhelp = "h"\nlabel = ["l"]',
            r"unknown field\(s\) \['label'\]",
        ),
        ('[a]\nname = "x"\ntype = "summary"\nhelp = "h"', "type 'summary' is not one of"),
        ('[a]\nname = "x"\ntype = "gauge"', r"\['help'\] must be non-empty strings"),
        (
            '[a]\nname = "x"\ntype = "gauge"\nhelp = "h"\nbuckets = [1]',
            "buckets are for histograms",
        ),
        ('[a]\nname = "x"\ntype = "histogram"\nhelp = "h"\nbuckets = [2, 1]', "increasing"),
        ('[a]\nname = "x"\ntype = "histogram"\nhelp = "h"\nbuckets = []', "increasing"),
        ('[a]\nname = "x"\ntype = "gauge"\nhelp = "h"\nlabels = "l"', "labels must be a list"),
        ("a = 1", r"\[a\] is not a table"),
        (
            '[a]\nname = "x"\ntype = "gauge"\nhelp = "h"\n'
            '[b]\nname = "x"\ntype = "gauge"\nhelp = "h"',
            r"\['x'\] declared twice",
        ),
        ("[a", "demo.toml"),
    ],
)
def test_an_invalid_catalogue_is_refused_naming_the_file(text: str, message: str) -> None:
    with pytest.raises(CatalogueError, match=message) as caught:
        parse_catalogue(text, "demo.toml")
    assert str(caught.value).startswith("demo.toml")


def test_a_missing_catalogue_is_refused() -> None:
    with pytest.raises(CatalogueError, match=r"no metrics catalogue gateway/nope\.toml"):
        load_catalogue("gateway", "nope.toml")


def test_the_project_catalogues_load_and_build_on_one_registry_per_service() -> None:
    gateway, worker = CollectorRegistry(), CollectorRegistry()
    for package, resource in CATALOGUES:
        registry = gateway if package.startswith("gateway") else worker
        MetricSet(registry, load_catalogue(package, resource))
    assert unexposed(generate_latest(gateway).decode(), *CATALOGUES[:2]) == []
    assert unexposed(generate_latest(worker).decode(), *CATALOGUES[2:]) == []


def test_the_catalogues_ship_as_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["package-data"]["*"]
    included = config["packages"]["find"]["include"]
    for package, resource in CATALOGUES:
        assert any(fnmatch.fnmatch(resource, p) for p in patterns), resource
        assert any(fnmatch.fnmatch(package, p) for p in included), package
        assert (ROOT / package.replace(".", "/") / resource).is_file()


def _documented(doc: str, pattern: str) -> set[str]:
    text = (ROOT / "docs" / doc).read_text()
    return set(re.findall(rf"`({pattern})(?:\{{[^}}`]*\}})?`", text))


def test_the_docs_name_exactly_the_gateway_metrics_of_the_catalogues() -> None:
    names = {s.exposed for s in specs(*CATALOGUES[:2])}
    assert _documented("gateway.md", r"iotstream_gateway_[a-z_]+") == names


def test_every_model_and_capture_metric_is_in_docs_models() -> None:
    documented = _documented("models.md", r"(?:iotstream_)?worker_[a-z_]+")
    missing = {s.exposed for s in specs(*CATALOGUES[3:])} - documented
    assert missing == set()
    in_catalogues = {s.exposed for s in specs()} | {"worker_score_by_version"}
    named = {n for n in documented if n.startswith(("worker_", "iotstream_worker_capture_"))}
    assert named - in_catalogues == set()


def test_every_metric_the_code_asks_for_is_in_a_catalogue_with_that_kind() -> None:
    # A key is a string, so a typo is not a type error: it would raise KeyError at run time,
    # perhaps first in an error path (a reader's retry, a failed write). Check each literal
    # key the product code asks for against the catalogues, by kind.
    declared = {(s.kind, s.key) for s in specs()}
    asked: dict[tuple[str, str], str] = {}
    packages = ("gateway", "inference_worker", "iot_models", "device_sim", "training")
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("counter", "gauge", "histogram")
                    and len(node.args) == 1
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                ):
                    key = (node.func.attr, node.args[0].value)
                    asked[key] = f"{path.relative_to(ROOT)}:{node.lineno}"
    assert len(asked) > 20, "the scan found the accessor calls"
    missing = [
        f"{kind}({key!r}) at {at}"
        for (kind, key), at in asked.items()
        if (kind, key) not in declared
    ]
    assert not missing, missing
