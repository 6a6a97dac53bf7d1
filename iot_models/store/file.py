"""A model store in a local or shared folder (``file:///srv/models`` or a plain path).

Guarantees: a version is copied into a hidden temporary folder and renamed into place in
one ``rename(2)``, which fails when the version folder already exists (never overwritten,
and never seen half-written); an alias is written to a temporary file, fsynced and
``os.replace``-d over the old one, under an exclusive ``flock`` on the model's alias folder
so a compare-and-swap cannot lose a concurrent change. ``rename`` and ``flock`` are atomic
on one local file system; on NFS use a server that honours them, or the S3 store.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import uuid
from collections.abc import Collection, Iterator
from pathlib import Path

from iot_models.manifest import (
    MANIFEST_FILE,
    Manifest,
    ModelNotFoundError,
    read_manifest,
    sha256_bytes,
)
from iot_models.store import base
from iot_models.store.alias import Alias
from iot_models.store.base import ALIASES_DIR, AliasState
from iot_models.store.errors import StoreNotFoundError

__all__ = ["FileModelStore"]


class FileModelStore:
    """Versions and aliases in a folder tree (see :mod:`iot_models.store.base` for the
    layout; ``models/`` in this repository is such a store, without aliases)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root.resolve()}"

    def _require_root(self) -> None:
        if not self.root.is_dir():
            raise StoreNotFoundError(
                f"no model store at {self.root}: publish a version to create it "
                "(`iotstream models publish DIR --store PATH`) or check the path"
            )

    def models(self) -> list[str]:
        """Names with at least one published version, sorted."""
        self._require_root()
        return sorted(
            p.name for p in self.root.iterdir() if p.name != ALIASES_DIR and self._has_versions(p)
        )

    @staticmethod
    def _has_versions(folder: Path) -> bool:
        return folder.is_dir() and any((v / MANIFEST_FILE).is_file() for v in folder.iterdir())

    def versions(self, name: str) -> list[str]:
        """Published versions of ``name``, oldest first."""
        self._require_root()
        folder = self.root / name
        if not folder.is_dir():
            return []
        found = [v.name for v in folder.iterdir() if (v / MANIFEST_FILE).is_file()]
        return sorted(found, key=base.version_key)

    def manifest(self, name: str, version: str) -> Manifest:
        """The manifest of a published version."""
        self._require_root()
        try:
            return read_manifest(self.root / name / version / MANIFEST_FILE)
        except ModelNotFoundError as exc:
            raise base.version_missing(self, name, version) from exc

    def download(
        self, name: str, version: str, dest: Path, variants: Collection[str] | None = None
    ) -> Manifest:
        """Copy a version (manifest + the files of ``variants``) into the new folder ``dest``."""
        manifest = self.manifest(name, version)
        source = self.root / name / version

        def read(file_name: str) -> bytes | None:
            with contextlib.suppress(FileNotFoundError):
                return (source / file_name).read_bytes()
            return None

        base.copy_variants(manifest, dest, variants, read, f"{source}/")
        shutil.copyfile(source / MANIFEST_FILE, dest / MANIFEST_FILE)
        return manifest

    def publish(self, source: Path) -> Manifest:
        """Copy the version folder ``source`` in, atomically; never overwrites."""
        manifest, files = base.version_files(source)
        folder = self.root / manifest.name
        final = folder / manifest.version
        if (final / MANIFEST_FILE).exists():
            raise base.version_exists(self, manifest)
        folder.mkdir(parents=True, exist_ok=True)
        staging = folder / f".publish-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            for file_name, data in files.items():
                _write_synced(staging / file_name, data)
            _write_synced(staging / MANIFEST_FILE, (source / MANIFEST_FILE).read_bytes())
            try:
                # rename(2) onto an existing non-empty folder fails: the atomic "if absent"
                staging.rename(final)
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    raise base.version_exists(self, manifest) from exc
                raise
            _fsync_dir(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return manifest

    def _alias_path(self, name: str, alias: str) -> Path:
        return self.root / base.alias_key(name, alias)

    def read_alias(self, name: str, alias: str) -> AliasState:
        """The alias document and its token (a digest of the file)."""
        self._require_root()
        path = self._alias_path(name, alias)
        try:
            raw = path.read_bytes()
        except FileNotFoundError as exc:
            raise base.alias_missing(self, name, alias) from exc
        return base.parse_alias(raw, sha256_bytes(raw)[:32], str(path))

    def poll_alias(self, name: str, alias: str, token: str | None) -> AliasState | None:
        """The alias, or ``None`` when its digest is still ``token`` (reading a file of a
        few hundred bytes is as cheap as a stat)."""
        state = self.read_alias(name, alias)
        return None if state.token == token else state

    def write_alias(self, alias: Alias, expect: str | None) -> str:
        """Replace the alias document if it is still at ``expect`` (``None``: absent)."""
        for version in alias.versions():
            if not (self.root / alias.model / version / MANIFEST_FILE).is_file():
                raise base.version_missing(self, alias.model, version)
        path = self._alias_path(alias.model, alias.alias)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = alias.model_dump_json(indent=2).encode() + b"\n"
        with _locked(path.parent / ".lock"):
            try:
                current: str | None = sha256_bytes(path.read_bytes())[:32]
            except FileNotFoundError:
                current = None
            if current != expect:
                raise base.alias_conflict(alias)
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
            _write_synced(tmp, data)
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        return sha256_bytes(data)[:32]

    def aliases(self, name: str) -> list[str]:
        """Alias names of ``name``, sorted."""
        folder = self.root / ALIASES_DIR / name
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*.json") if not p.name.startswith("."))

    def ensure(self) -> None:
        """Create the root folder."""
        self.root.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        """Nothing to release."""


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
