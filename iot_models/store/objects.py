"""Plain objects (bytes under a key) in the same places the model store lives: captured
readings and dataset records use it (:mod:`iot_models.capture`).

One :class:`ObjectStore` protocol, chosen by URL in :func:`open_objects` like
:func:`iot_models.store.open_store`: a folder (``file:///path`` or a path) or
``s3://bucket/prefix`` (same endpoint and credential rules as the S3 model store).
Keys are ``/``-separated relative paths; a written object appears whole (temporary file
and rename, or one S3 PUT), so a reader never sees half of one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol

from iot_models.store.base import local_path
from iot_models.store.errors import StoreError

__all__ = [
    "FileObjectStore",
    "ObjectNotFoundError",
    "ObjectStore",
    "open_objects",
    "write_atomic",
]


class ObjectNotFoundError(StoreError):
    """No object under that key."""


class ObjectStore(Protocol):
    """Bytes under ``/``-separated keys."""

    url: str
    """Where the objects are (for messages and logs; no credentials)."""

    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` under ``key`` (replacing an object already there), atomically."""
        ...

    def get(self, key: str) -> bytes:
        """The object's bytes.

        Raises:
            ObjectNotFoundError: nothing under ``key``.
        """
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Every key that starts with ``prefix``, sorted (empty when the root is missing)."""
        ...

    def sizes(self, prefix: str = "") -> dict[str, int]:
        """Every key that starts with ``prefix`` with its size in bytes (one listing)."""
        ...

    def delete(self, key: str) -> None:
        """Remove an object; no error when it is already gone."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StoreError(f"{key!r} is not a valid object key (relative, no empty or '..' parts)")
    return key


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a temporary file (``.tmp-*``) in the same folder
    (created if missing), then a rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FileObjectStore:
    """Objects as files under a folder (created on the first write)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root.resolve()}"

    def put(self, key: str, data: bytes) -> None:
        """Write through a temporary file in the same folder, then rename."""
        write_atomic(self.root / _check_key(key), data)

    def get(self, key: str) -> bytes:
        """The file's bytes."""
        try:
            return (self.root / _check_key(key)).read_bytes()
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise ObjectNotFoundError(f"no object {key!r} in {self.url}") from exc

    def list(self, prefix: str = "") -> list[str]:
        """Keys of the regular files under the root (temporary files excluded).

        Safe beside a concurrent :meth:`delete`: a folder removed while the
        walk is under way is skipped (``os.walk`` ignores the scan error)
        rather than failing the listing.
        """
        keys: list[str] = []
        for folder, _dirs, files in os.walk(self.root):
            base = Path(folder).relative_to(self.root)
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                key = (base / name).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def sizes(self, prefix: str = "") -> dict[str, int]:
        """Sizes of the files :meth:`list` names (a file deleted meanwhile is left out)."""
        found: dict[str, int] = {}
        for key in self.list(prefix):
            try:
                found[key] = (self.root / key).stat().st_size
            except FileNotFoundError:
                continue
        return found

    def delete(self, key: str) -> None:
        """Remove the file, then any folders left empty up to the root."""
        path = self.root / _check_key(key)
        path.unlink(missing_ok=True)
        folder = path.parent
        while folder != self.root:
            try:
                folder.rmdir()  # only an empty folder goes
            except OSError:  # not empty (a writer's new file), or gone already
                return
            folder = folder.parent

    def close(self) -> None:
        """Nothing to release."""


def open_objects(url: str | Path, *, timeout: float = 5.0) -> ObjectStore:
    """The object store ``url`` names, in the forms :func:`iot_models.store.open_store`
    takes (``s3://bucket/prefix``, ``file:///path`` or a path; :class:`StoreError` for an
    unknown scheme or a malformed URL)."""
    path = local_path(str(url), "object store")
    if path is not None:
        return FileObjectStore(path)
    from iot_models.store.s3_objects import S3ObjectStore

    return S3ObjectStore(str(url), timeout=timeout)
