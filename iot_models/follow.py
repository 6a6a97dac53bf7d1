"""Serving what a store's aliases name, and following them as they move.

:class:`ModelFollower` resolves an alias per model (``production`` by default) to its
version and canary, brings those versions into a local cache folder, loads and warms
them, and builds an :class:`~iot_models.core.InferenceCore` with the caller's factory. Its
:meth:`~ModelFollower.run` loop then polls the aliases (one conditional read per model and
poll) and, when one moved, loads the new versions off the serving thread and hands over
the finished core (:class:`~iot_models.swap.SwappableCore` swaps it in between batches).

Why polling and not Redis pub/sub: a poll every ``poll_s`` seconds works the same for the
file and the S3 store, on edge nodes with no Redis of their own, and after any outage
(a missed pub/sub message would leave a worker on the old version for good; a poll
catches up on the next turn). The price is up to ``poll_s`` of delay and one small
request per model per poll per process (docs/models.md, "Model lifecycle").

The cache (``cache_dir``) is itself a :class:`~iot_models.store.file.FileModelStore`: the
versions loaded last plus the alias documents they came from. A process that starts while
the store does not answer serves what the cache remembers and keeps polling.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, Unpack

from iot_models.canary import CanaryRule
from iot_models.core import InferenceCore
from iot_models.manifest import MANIFEST_FILE, ModelError, read_manifest
from iot_models.model import Model
from iot_models.store import (
    Alias,
    AliasNotFoundError,
    ModelStore,
    StoreError,
    VersionNotFoundError,
    open_store,
)
from iot_models.store.base import alias_key
from iot_models.store.file import FileModelStore
from iot_models.swap import SwapHooks, SwappableCore
from iot_models.variants import current_platform, select_variant

__all__ = [
    "Canaries",
    "CoreFactory",
    "FollowConfig",
    "Following",
    "ModelCache",
    "ModelFollower",
]

log = logging.getLogger(__name__)

Canaries = dict[str, tuple[Model, CanaryRule]]
CoreFactory = Callable[[dict[str, Model], Canaries], InferenceCore]
"""Builds the core from the loaded models (``{route name: model}``) and canaries."""


@dataclass(frozen=True)
class FollowConfig:
    """What to follow and how.

    Attributes:
        store: store URL (``s3://bucket/prefix``, ``file:///path``, a path).
        alias: the alias every model is served at.
        names: models to serve; ``None``: every model in the store that has ``alias``.
        cache_dir: local copies of the versions served and of the alias documents.
        poll_s: seconds between alias polls.
        variant: variant override (else the manifest's default for this CPU).
        threads: ONNX Runtime intra-op threads per session.
        timeout: per-request timeout of network stores.
    """

    store: str
    alias: str = "production"
    names: Sequence[str] | None = None
    cache_dir: Path = Path(".model-cache")
    poll_s: float = 2.0
    variant: str | None = None
    threads: int = 1
    timeout: float = 5.0


class ModelCache:
    """Versions and alias documents kept on local disk (a :class:`FileModelStore` layout)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = FileModelStore(root)

    def version(self, source: ModelStore, name: str, version: str, variant: str | None) -> Path:
        """The cached folder of ``name``/``version`` holding its manifest and the file of the
        variant this CPU loads (or ``variant``); fetched from ``source`` when missing."""
        final = self.root / name / version
        if (final / MANIFEST_FILE).is_file():
            manifest = read_manifest(final / MANIFEST_FILE)
        else:
            manifest = source.manifest(name, version)
        chosen = select_variant(manifest.variants, manifest.defaults, current_platform(), variant)
        if (final / MANIFEST_FILE).is_file() and (final / manifest.variants[chosen].file).is_file():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = final.parent / f".fetch-{uuid.uuid4().hex}"
        try:
            source.download(name, version, staging, [chosen])
            if final.is_dir():  # cached before with another variant: add this one's file
                file_name = manifest.variants[chosen].file
                os.replace(staging / file_name, final / file_name)
            else:
                staging.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return final

    def remember(self, alias: Alias) -> None:
        """Keep ``alias`` as the last document served (written atomically)."""
        path = self.root / alias_key(alias.model, alias.alias)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        tmp.write_bytes(alias.model_dump_json(indent=2).encode() + b"\n")
        os.replace(tmp, path)

    def remembered(self, name: str, alias: str) -> Alias | None:
        """The last document served for ``name``@``alias``, if any."""
        try:
            return self.store.read_alias(name, alias).alias
        except (StoreError, ModelError):
            return None

    def remembered_names(self, alias: str) -> list[str]:
        """Models with a remembered ``alias``."""
        folder = self.root / "_aliases"
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if (p / f"{alias}.json").is_file())

    def prune(self, keep: Mapping[str, Sequence[str]]) -> None:
        """Delete cached versions of the models in ``keep`` other than the versions listed
        (the ones served now and the ``previous`` a rollback returns to)."""
        for name, versions in keep.items():
            folder = self.root / name
            if not folder.is_dir():
                continue
            for child in folder.iterdir():
                if child.is_dir() and not child.name.startswith(".") and child.name not in versions:
                    shutil.rmtree(child, ignore_errors=True)


class ModelFollower:
    """Loads what the aliases name and follows them (see the module docstring).

    Args:
        config: store, alias, cache, poll interval, loading options.
        make_core: builds the inference core from loaded models.
        on_core: receives each new core once it is loaded and warm (from :meth:`run`'s
            thread), e.g. :meth:`iot_models.swap.SwappableCore.swap`.
        on_error: told about each failed poll or load (metrics); the follower logs and
            retries with backoff by itself.
    """

    def __init__(
        self,
        config: FollowConfig,
        make_core: CoreFactory,
        *,
        on_core: Callable[[InferenceCore], object] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.config = config
        self.store = open_store(config.store, timeout=config.timeout)
        self.cache = ModelCache(config.cache_dir)
        self._make_core = make_core
        self.on_core = on_core
        """Receives each new core (settable after construction)."""
        self._on_error = on_error
        self._loaded: dict[tuple[str, str], Model] = {}
        self.aliases: dict[str, Alias] = {}
        """The documents the current core was built from."""
        self._tokens: dict[str, str | None] = {}
        self.from_cache = False
        """Whether the current core came from the cache (the store did not answer)."""

    def close(self) -> None:
        """Release the store's connections."""
        self.store.close()

    # --- start ----------------------------------------------------------------------

    def start(self) -> InferenceCore:
        """Load the versions the aliases name now; from the cache when the store does not
        answer (or refuses), and fail only when the cache has no copy either.

        Raises:
            AliasNotFoundError: a model has no such alias in the store.
            StoreError: the store did not answer and the cache remembers nothing to serve.
            ModelError: a version could not be loaded.
        """
        alias = self.config.alias
        try:
            names = self._names()
            states = {name: self.store.read_alias(name, alias) for name in names}
        except AliasNotFoundError:
            raise
        except StoreError as exc:
            return self._start_from_cache(exc)
        docs = {name: state.alias for name, state in states.items()}
        core = self._build(docs, self.store)
        self._tokens = {name: state.token for name, state in states.items()}
        self._commit(docs, from_cache=False)
        return core

    def _names(self) -> list[str]:
        if self.config.names:
            return list(self.config.names)
        names = [n for n in self.store.models() if self.config.alias in self.store.aliases(n)]
        if not names:
            raise AliasNotFoundError(
                f"no model in {self.store.url} has an alias {self.config.alias!r}; set one with "
                f"`iotstream models alias NAME {self.config.alias} VERSION`"
            )
        return names

    def _start_from_cache(self, cause: StoreError) -> InferenceCore:
        alias = self.config.alias
        names = list(self.config.names or self.cache.remembered_names(alias))
        docs = {name: self.cache.remembered(name, alias) for name in names}
        missing = sorted(name for name, doc in docs.items() if doc is None)
        if not names or missing:
            raise StoreError(
                f"{cause}; and the cache {self.cache.root} remembers no {alias!r} version of "
                f"{', '.join(missing) or 'any model'}: start once with the store reachable"
            ) from cause
        found = {name: doc for name, doc in docs.items() if doc is not None}
        log.warning(
            "model store unusable (%s): serving the cached %s; following resumes when it answers",
            cause,
            "; ".join(doc.describe() for doc in found.values()),
        )
        core = self._build(found, self.cache.store)
        self._tokens = dict.fromkeys(found)
        self._commit(found, from_cache=True)
        return core

    # --- loading --------------------------------------------------------------------

    def _build(self, docs: Mapping[str, Alias], source: ModelStore) -> InferenceCore:
        """Load (or reuse) every version ``docs`` names and build a core; raises on any
        failure, leaving what serves now untouched."""
        loaded: dict[tuple[str, str], Model] = {}
        models: dict[str, Model] = {}
        canaries: Canaries = {}
        for name, doc in docs.items():
            models[name] = self._model(source, name, doc.version, loaded)
            if doc.canary is not None:
                canary = self._model(source, name, doc.canary.version, loaded)
                rule = CanaryRule(name, doc.canary.percent, doc.canary.devices)
                canaries[name] = (canary, rule)
        core = self._make_core(models, canaries)
        self._loaded = loaded  # versions no longer named are released with the old core
        return core

    def _model(
        self, source: ModelStore, name: str, version: str, loaded: dict[tuple[str, str], Model]
    ) -> Model:
        key = (name, version)
        model = loaded.get(key) or self._loaded.get(key)
        if model is None:
            from iot_models.onnx_model import OnnxModel

            folder = self.cache.version(source, name, version, self.config.variant)
            manifest = read_manifest(folder / MANIFEST_FILE)
            if manifest.name != name or manifest.version != version:
                raise VersionNotFoundError(
                    f"{source.url}: {name}/{version} holds the manifest of "
                    f"{manifest.name}/{manifest.version}"
                )
            variant = select_variant(
                manifest.variants, manifest.defaults, current_platform(), self.config.variant
            )
            model = OnnxModel(manifest, folder, variant, intra_op_threads=self.config.threads)
            log.info("loaded %s/%s variant %s from %s", name, version, variant, source.url)
        loaded[key] = model
        return model

    def _commit(self, docs: Mapping[str, Alias], *, from_cache: bool) -> None:
        self.aliases = dict(docs)
        self.from_cache = from_cache
        for doc in docs.values():
            self.cache.remember(doc)
        self.cache.prune(
            {n: [*d.versions(), *([d.previous] if d.previous else [])] for n, d in docs.items()}
        )

    # --- following ------------------------------------------------------------------

    def poll(self) -> InferenceCore | None:
        """Check every alias once; a new, loaded core when one moved, else ``None``.

        Raises:
            StoreError, ModelError: the poll or the load failed (nothing changed).
        """
        changed: dict[str, Alias] = {}
        tokens: dict[str, str | None] = {}
        for name, doc in self.aliases.items():
            state = self.store.poll_alias(name, self.config.alias, self._tokens.get(name))
            if state is None:
                continue
            tokens[name] = state.token
            if state.alias.routing() != doc.routing():
                changed[name] = state.alias
        if not changed:
            self._tokens.update(tokens)
            if self.from_cache and tokens:
                self.from_cache = False
                log.info("model store answers again; the cached versions are still current")
            return None
        docs = {**self.aliases, **changed}
        log.info("alias moved: %s; loading", "; ".join(d.describe() for d in changed.values()))
        core = self._build(docs, self.store)
        self._tokens.update(tokens)
        self._commit(docs, from_cache=False)
        return core

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set; hand each new core to ``on_core``. Errors are logged
        (once per distinct message in a row) and retried with backoff, doubling up to ten
        poll intervals (at most 30 s)."""
        delay = self.config.poll_s
        last_error = ""
        while not stop.wait(delay):
            try:
                core = self.poll()
            except (StoreError, ModelError, ValueError, OSError) as exc:
                if self._on_error is not None:
                    self._on_error(exc)
                if str(exc) != last_error:
                    log.warning("model follow: %s (still serving %s)", exc, self._serving())
                    last_error = str(exc)
                delay = min(delay * 2, self._max_delay)
                continue
            if last_error:
                log.info("model follow: the store answers again")
            last_error, delay = "", self.config.poll_s
            if core is not None and self.on_core is not None:
                self.on_core(core)

    @property
    def _max_delay(self) -> float:
        return max(self.config.poll_s, min(30.0, 10 * self.config.poll_s))

    def _serving(self) -> str:
        return "; ".join(doc.describe() for doc in self.aliases.values())


class Following:
    """A started follower, the :class:`SwappableCore` it swaps, and its polling thread
    (started and stopped as a context manager).

    Args:
        follower: not started yet; :meth:`ModelFollower.start` runs here (blocking).
        hooks: the swappable core's callbacks (:class:`~iot_models.swap.SwapHooks`):
            ``on_scored`` per batch (metrics), ``on_swap`` after each swap (metrics,
            manifests).
    """

    def __init__(self, follower: ModelFollower, **hooks: Unpack[SwapHooks]) -> None:
        self.follower = follower
        try:
            first = follower.start()
        except BaseException:
            follower.close()
            raise
        self.core = SwappableCore(first, **hooks)
        follower.on_core = self.core.swap
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=follower.run, args=(self._stop,), name="model-follower", daemon=True
        )

    def manifests(self) -> list[dict[str, Any]]:
        """The manifests of the versions served now (JSON-ready), from the cache."""
        core = self.core.current
        served = [m.info for m in core.models.values()]
        served += [c.info for c, _rule in core.canaries.values()]
        root = self.follower.cache.root
        return [
            read_manifest(root / i.name / i.version / MANIFEST_FILE).model_dump(mode="json")
            for i in served
        ]

    def start(self) -> Self:
        """Start polling."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop polling (waits for a load in progress) and release the store."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)
        self.follower.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
