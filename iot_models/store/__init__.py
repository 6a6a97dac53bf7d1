"""The model store: published versions (immutable) and aliases (moved atomically).

One :class:`ModelStore` protocol, two implementations, chosen by URL scheme in
:func:`open_store` and nowhere else:

- :class:`~iot_models.store.file.FileModelStore`: ``file:///path`` or a plain path (a local
  or shared folder; the edge, tests, a single machine);
- :class:`~iot_models.store.s3.S3ModelStore`: ``s3://bucket/prefix`` (AWS S3, MinIO).

:mod:`iot_models.store.errors` holds the errors (one base, :class:`StoreError`);
:mod:`iot_models.store.alias` the alias document and its pure transitions;
:mod:`iot_models.store.ops` the read-modify-write of an alias against a store.
"""

from __future__ import annotations

from pathlib import Path

from iot_models.store import errors
from iot_models.store.alias import Alias, Canary
from iot_models.store.base import AliasState, ModelStore, local_path
from iot_models.store.errors import *  # noqa: F403 (every error of the store)

__all__ = ["Alias", "AliasState", "Canary", "ModelStore", "open_store"]
__all__ += errors.__all__


def open_store(url: str | Path, *, timeout: float = 5.0) -> ModelStore:
    """The store ``url`` names: ``s3://bucket/prefix``, ``file:///path`` or a path.

    Args:
        url: where the store is.
        timeout: per-request timeout of network stores, in seconds.

    Raises:
        StoreError: an unknown scheme or a malformed URL.
    """
    text = str(url)
    path = local_path(text, "model store")
    if path is None:
        from iot_models.store.s3 import S3ModelStore

        return S3ModelStore(text, timeout=timeout)
    from iot_models.store.file import FileModelStore

    return FileModelStore(path)
