"""iot_metrics: Prometheus metrics declared as data.

Each service keeps its metrics in a catalogue file (TOML, package data beside the code that
updates them, e.g. ``gateway/metrics.toml``): per metric its key, Prometheus name, type,
help, labels and buckets. :class:`MetricSet` builds a catalogue's metrics on a registry and
hands them out by key with their type (:meth:`MetricSet.counter`, :meth:`MetricSet.gauge`,
:meth:`MetricSet.histogram`). The catalogue files are the source of truth for the names
that dashboards, alert rules and docs use; custom collectors stay in code.

A catalogue is a TOML file of tables, one per metric, keyed by the name code uses::

    [frames]                                  # the key: metrics.counter("frames")
    name = "iotstream_gateway_frames_total"   # the Prometheus name (a counter gains _total)
    type = "counter"                          # counter, gauge or histogram
    help = "Frames sent to clients"
    labels = ["type"]                         # optional
    # buckets = [0.001, 0.01, 0.1, 1]         # histograms only (default: the client's)

Unknown fields, a missing field, an unknown type or buckets on a non-histogram are refused
when the file is read (:class:`CatalogueError`), so a typo fails the service's first start
and its tests, not a dashboard later.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, Literal, TypeVar, cast, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

__all__ = [
    "KINDS",
    "CatalogueError",
    "MetricSet",
    "MetricSpec",
    "load_catalogue",
    "parse_catalogue",
]

Kind = Literal["counter", "gauge", "histogram"]
KINDS: Final[tuple[str, ...]] = get_args(Kind)
_FIELDS: Final = frozenset({"name", "type", "help", "labels", "buckets"})
_REQUIRED: Final = ("name", "type", "help")
_M = TypeVar("_M", bound=MetricWrapperBase)


class CatalogueError(ValueError):
    """A catalogue file that cannot be read or does not describe valid metrics."""


@dataclass(frozen=True)
class MetricSpec:
    """One catalogue entry: what :class:`MetricSet` builds for ``key``."""

    key: str
    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None

    @property
    def exposed(self) -> str:
        """The name on ``/metrics`` (a counter's ends in ``_total``, added when missing)."""
        if self.kind == "counter" and not self.name.endswith("_total"):
            return f"{self.name}_total"
        return self.name

    def build(self, registry: CollectorRegistry) -> MetricWrapperBase:
        """The metric, registered on ``registry``."""
        if self.kind == "counter":
            return Counter(self.name, self.help, self.labels, registry=registry)
        if self.kind == "gauge":
            return Gauge(self.name, self.help, self.labels, registry=registry)
        if self.buckets is None:
            return Histogram(self.name, self.help, self.labels, registry=registry)
        return Histogram(self.name, self.help, self.labels, buckets=self.buckets, registry=registry)


def _spec(key: str, entry: object, source: str) -> MetricSpec:
    where = f"{source}: [{key}]"
    if not isinstance(entry, dict):
        raise CatalogueError(f"{where} is not a table")
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise CatalogueError(f"{where}: unknown field(s) {unknown} (allowed: {sorted(_FIELDS)})")
    missing = [f for f in _REQUIRED if not isinstance(entry.get(f), str) or not entry[f]]
    if missing:
        raise CatalogueError(f"{where}: {missing} must be non-empty strings")
    kind = entry["type"]
    if kind not in KINDS:
        raise CatalogueError(f"{where}: type {kind!r} is not one of {list(KINDS)}")
    labels = entry.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise CatalogueError(f"{where}: labels must be a list of strings")
    buckets = entry.get("buckets")
    if buckets is not None:
        if kind != "histogram":
            raise CatalogueError(f"{where}: buckets are for histograms, not a {kind}")
        numbers = isinstance(buckets, list) and all(
            isinstance(b, int | float) and not isinstance(b, bool) for b in buckets
        )
        if not numbers or not buckets or list(buckets) != sorted(set(buckets)):
            raise CatalogueError(f"{where}: buckets must be increasing numbers")
    return MetricSpec(
        key=key,
        name=entry["name"],
        kind=cast(Kind, kind),
        help=entry["help"],
        labels=tuple(labels),
        buckets=None if buckets is None else tuple(float(b) for b in buckets),
    )


def parse_catalogue(text: str, source: str = "<catalogue>") -> dict[str, MetricSpec]:
    """The entries of a catalogue's TOML text, by key, in file order.

    Raises:
        CatalogueError: not TOML, or an entry that is not a valid metric (``source`` names
            the file in the message).
    """
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{source}: {exc}") from exc
    specs = {key: _spec(key, entry, source) for key, entry in data.items()}
    names = [s.name for s in specs.values()]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise CatalogueError(f"{source}: Prometheus name(s) {doubled} declared twice")
    return specs


def load_catalogue(package: str, resource: str = "metrics.toml") -> dict[str, MetricSpec]:
    """The catalogue shipped as package data: ``resource`` in ``package`` (e.g.
    ``load_catalogue("gateway")`` reads ``gateway/metrics.toml``).

    Raises:
        CatalogueError: the file is missing or invalid.
    """
    source = f"{package.replace('.', '/')}/{resource}"
    try:
        text = resources.files(package).joinpath(resource).read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise CatalogueError(f"no metrics catalogue {source}") from exc
    return parse_catalogue(text, source)


class MetricSet:
    """The metrics of a catalogue, built on ``registry`` and handed out by key.

    Each accessor is a dictionary look-up; a hot loop resolves its metric (or its labelled
    child) once and keeps it.

    Args:
        registry: where the metrics are registered (exposed at ``/metrics``).
        specs: the catalogue (:func:`load_catalogue`).
    """

    def __init__(self, registry: CollectorRegistry, specs: Mapping[str, MetricSpec]) -> None:
        self.registry = registry
        self.specs = dict(specs)
        self._metrics = {key: spec.build(registry) for key, spec in self.specs.items()}

    def __iter__(self) -> Iterator[MetricSpec]:
        return iter(self.specs.values())

    def _get(self, key: str, cls: type[_M]) -> _M:
        metric = self._metrics.get(key)
        if isinstance(metric, cls):
            return metric
        if metric is None:
            raise KeyError(f"no metric {key!r} in this catalogue (known: {sorted(self._metrics)})")
        raise TypeError(
            f"metric {key!r} ({self.specs[key].name}) is a {self.specs[key].kind}, "
            f"not a {cls.__name__.lower()}"
        )

    def counter(self, key: str) -> Counter:
        """The counter ``key``. Raises KeyError (no such key) or TypeError (another type)."""
        return self._get(key, Counter)

    def gauge(self, key: str) -> Gauge:
        """The gauge ``key``. Raises KeyError (no such key) or TypeError (another type)."""
        return self._get(key, Gauge)

    def histogram(self, key: str) -> Histogram:
        """The histogram ``key``. Raises KeyError (no such key) or TypeError (another type)."""
        return self._get(key, Histogram)
