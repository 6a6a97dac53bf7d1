"""The metric catalogues (iot_metrics) and what a ``/metrics`` exposition shows of them."""

from __future__ import annotations

from iot_metrics import MetricSpec, load_catalogue

# (package, resource) of every catalogue file in the project
CATALOGUES: tuple[tuple[str, str], ...] = (
    ("gateway", "metrics.toml"),
    ("gateway.oip", "metrics.toml"),
    ("inference_worker", "metrics.toml"),
    ("inference_worker", "model_metrics.toml"),
    ("iot_models.capture", "metrics.toml"),
    ("inference_worker", "drift_metrics.toml"),
)


def specs(*catalogues: tuple[str, str]) -> list[MetricSpec]:
    """The entries of the given catalogues (all of them when none is given)."""
    return [s for c in catalogues or CATALOGUES for s in load_catalogue(*c).values()]


def unexposed(text: str, *catalogues: tuple[str, str]) -> list[str]:
    """Entries of ``catalogues`` without a ``# TYPE`` line of their name and type in the
    Prometheus text ``text`` (empty when every one is exposed)."""
    types = {
        parts[2]: parts[3]
        for parts in (line.split() for line in text.splitlines())
        if parts[:2] == ["#", "TYPE"] and len(parts) == 4
    }
    return [f"{s.exposed} ({s.kind})" for s in specs(*catalogues) if types.get(s.exposed) != s.kind]
