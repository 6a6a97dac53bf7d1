"""The model store interface, its errors and the layout both backends share.

Layout under the store root (a folder, or ``s3://bucket/prefix``), the same as the
repository's ``models/`` folder plus the aliases::

    <name>/<version>/manifest.json       written last: a version exists once it is there
    <name>/<version>/<variant>.onnx
    _aliases/<name>/<alias>.json         an :class:`~iot_models.store.alias.Alias` document

``_aliases`` cannot clash with a model name (names start with a letter or digit).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from iot_models.manifest import (
    MANIFEST_FILE,
    HashMismatchError,
    Manifest,
    ManifestError,
    ModelError,
    sha256_bytes,
)
from iot_models.store.alias import Alias
from iot_models.store.errors import (
    AliasConflictError,
    AliasNotFoundError,
    PublishError,
    StoreError,
    VersionExistsError,
    VersionNotFoundError,
)

__all__ = [
    "ALIASES_DIR",
    "AliasState",
    "ModelStore",
    "alias_conflict",
    "alias_key",
    "alias_missing",
    "check_store_url",
    "copy_variants",
    "first_error",
    "local_path",
    "parse_alias",
    "version_exists",
    "version_files",
    "version_key",
    "version_missing",
]

ALIASES_DIR = "_aliases"


@dataclass(frozen=True, slots=True)
class AliasState:
    """An alias document and the store's change token for it (S3 ETag, file digest)."""

    alias: Alias
    token: str


class ModelStore(Protocol):
    """Published model versions (immutable) and aliases pointing at them (mutable, atomic).

    Every implementation guarantees: a version becomes visible only when complete (its
    manifest is written last), is never overwritten (:meth:`publish` raises
    :class:`VersionExistsError`), and an alias is replaced as a whole, conditionally on the
    token the writer read (:meth:`write_alias`), so readers see the old or the new document,
    never a mix, and concurrent writers cannot lose each other's change.
    """

    url: str
    """Where the store is (for messages and logs; no credentials)."""

    def models(self) -> list[str]:
        """Names with at least one published version, sorted."""
        ...

    def versions(self, name: str) -> list[str]:
        """Published versions of ``name``, oldest first (:func:`version_key` order)."""
        ...

    def manifest(self, name: str, version: str) -> Manifest:
        """The manifest of a published version.

        Raises:
            VersionNotFoundError: not published.
        """
        ...

    def download(
        self, name: str, version: str, dest: Path, variants: Collection[str] | None = None
    ) -> Manifest:
        """Copy a version into the new folder ``dest``: its manifest and the files of
        ``variants`` (all when ``None``), each checked against the manifest's sha256.

        Raises:
            VersionNotFoundError: not published, or a variant not in it.
            HashMismatchError: a file differs from its manifest entry.
        """
        ...

    def publish(self, source: Path) -> Manifest:
        """Publish the version folder ``source`` (manifest + every variant file, checked).

        Raises:
            PublishError: ``source`` is not a valid, complete version folder.
            VersionExistsError: that name and version are already published.
        """
        ...

    def read_alias(self, name: str, alias: str) -> AliasState:
        """The alias document and its token.

        Raises:
            AliasNotFoundError: no such alias.
        """
        ...

    def poll_alias(self, name: str, alias: str, token: str | None) -> AliasState | None:
        """Like :meth:`read_alias`, but ``None`` when the token is still ``token`` (cheap:
        one conditional request)."""
        ...

    def write_alias(self, alias: Alias, expect: str | None) -> str:
        """Replace the alias document atomically; returns the new token.

        Args:
            alias: the whole new document.
            expect: the token read before (the write fails if the alias changed since), or
                ``None`` to create an alias that must not exist yet.

        Raises:
            AliasConflictError: the alias is not at ``expect`` any more.
            VersionNotFoundError: the document names a version that is not published.
        """
        ...

    def aliases(self, name: str) -> list[str]:
        """Alias names of ``name``, sorted."""
        ...

    def ensure(self) -> None:
        """Create the store (bucket, root folder) if it does not exist."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def local_path(url: str, what: str) -> Path | None:
    """Where a store URL points on this machine: the folder of ``file:///path`` or of a plain
    path; ``None`` for ``s3://`` (the caller opens its S3 implementation).

    Raises:
        StoreError: another scheme, or a file URL naming a host (``what``: "model store",
            "object store", for the message).
    """
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        return None
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise StoreError(f"{url!r}: file URLs name a local path (file:///path)")
        return Path(unquote(parts.path))
    if scheme == "":
        return Path(url)
    raise StoreError(
        f"unknown {what} {url!r}: use s3://bucket/prefix, file:///path or a folder path"
    )


def check_store_url(url: str | None, what: str = "model store") -> str | None:
    """``url`` unchanged if :func:`local_path` takes it (``None`` too: no store): a settings
    validator, so that a mistyped scheme is refused with the settings, not when the store
    is first opened.

    Raises:
        ValueError: the message of :func:`local_path`'s :class:`StoreError`.
    """
    if url is None:
        return None
    try:
        local_path(url, what)
    except StoreError as exc:
        raise ValueError(str(exc)) from None
    return url


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key: dot/dash/underscore-separated parts, numbers numerically."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[._-]", version))


def alias_key(name: str, alias: str) -> str:
    """Relative path of an alias document."""
    return f"{ALIASES_DIR}/{name}/{alias}.json"


def version_files(source: Path) -> tuple[Manifest, dict[str, bytes]]:
    """Read and check a version folder for publishing: its manifest, and every variant
    file's bytes (``{file name: bytes}``) matching the manifest's sha256 and size.

    Raises:
        PublishError: anything missing, invalid or different from the manifest.
    """
    from iot_models.manifest import read_manifest

    if not (source / MANIFEST_FILE).is_file():
        raise PublishError(
            f"{source} holds no {MANIFEST_FILE}: publish a version folder such as "
            "models/fault-clf/1 (built by `iotstream models build`)"
        )
    try:
        manifest = read_manifest(source / MANIFEST_FILE)
    except ModelError as exc:
        raise PublishError(str(exc)) from exc
    files: dict[str, bytes] = {}
    for variant, entry in manifest.variants.items():
        path = source / entry.file
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise PublishError(f"{path} ({variant}) is listed in the manifest but missing") from exc
        if sha256_bytes(data) != entry.sha256 or len(data) != entry.size_bytes:
            raise PublishError(
                f"{path} ({variant}) differs from its manifest entry (sha256/size): refusing "
                "to publish a version whose files do not match; rebuild it"
            )
        files[entry.file] = data
    return manifest, files


def first_error(exc: ValidationError) -> str:
    """The first validation error as ``field: message`` (one line for logs and the CLI)."""
    error = exc.errors()[0]
    where = ".".join(map(str, error["loc"]))
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def version_missing(store: ModelStore, name: str, version: str) -> VersionNotFoundError:
    """The error for a version that is not published, listing those that are."""
    have = store.versions(name)
    return VersionNotFoundError(
        f"{name} has no published version {version!r} in {store.url} "
        f"(published: {', '.join(have) or 'none'})"
    )


def version_exists(store: ModelStore, manifest: Manifest) -> VersionExistsError:
    """The error for publishing a version again."""
    return VersionExistsError(
        f"{manifest.name} version {manifest.version} is already published in {store.url}; "
        "published versions are never overwritten: give the new build another version"
    )


def alias_missing(store: ModelStore, name: str, alias: str) -> AliasNotFoundError:
    """The error for an alias that does not exist, with the command that creates it."""
    return AliasNotFoundError(
        f"{name} has no alias {alias!r} in {store.url}; set it with "
        f"`iotstream models alias {name} {alias} VERSION`"
    )


def alias_conflict(alias: Alias) -> AliasConflictError:
    """The error for an alias that moved between reading and writing it."""
    return AliasConflictError(
        f"{alias.model}@{alias.alias} changed while this change was prepared "
        "(someone else moved it); read it again and retry"
    )


def parse_alias(raw: bytes, token: str, where: str) -> AliasState:
    """The alias document ``raw`` read from ``where`` (for the message), with its token.

    Raises:
        ManifestError: not a valid alias document.
    """
    try:
        return AliasState(Alias.model_validate_json(raw), token)
    except ValidationError as exc:
        raise ManifestError(f"{where} is not a valid alias document: {first_error(exc)}") from exc


def copy_variants(
    manifest: Manifest,
    dest: Path,
    variants: Collection[str] | None,
    read: Callable[[str], bytes | None],
    where: str,
) -> None:
    """Write the files of ``variants`` (all when ``None``) of a published version into the
    new folder ``dest``, each checked against the manifest's sha256 (the manifest itself is
    the caller's to copy).

    Args:
        manifest: the version's manifest.
        dest: the folder to create.
        variants: the variants to copy.
        read: a file of the version by name: its bytes, or ``None`` when it is missing.
        where: the version's location, prefixed to a file name in messages.

    Raises:
        VersionNotFoundError: a variant not in the version, or its file missing.
        HashMismatchError: a file differs from its manifest entry.
    """
    wanted = list(manifest.variants) if variants is None else list(variants)
    dest.mkdir(parents=True)
    for variant in wanted:
        entry = manifest.variants.get(variant)
        if entry is None:
            raise VersionNotFoundError(
                f"{manifest.name}/{manifest.version} has no variant {variant!r}; "
                f"have {sorted(manifest.variants)}"
            )
        data = read(entry.file)
        if data is None:
            raise VersionNotFoundError(f"{where}{entry.file} is in the manifest but missing")
        if sha256_bytes(data) != entry.sha256:
            raise HashMismatchError(
                f"{where}{entry.file} differs from its manifest's sha256: the stored copy is "
                "corrupt; publish the build again under a new version"
            )
        (dest / entry.file).write_bytes(data)
