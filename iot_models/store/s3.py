"""A model store in an S3 bucket (AWS S3, MinIO, or any server with S3's conditional
writes): ``s3://bucket/prefix``.

Endpoint and credentials come from boto3's usual chain (``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, profiles, instance
roles); an ``?endpoint=http://host:port`` query in the URL wins over the environment.

Guarantees: every object of a version is written with ``If-None-Match: *`` and the
manifest last, so a version is visible only when complete and is never overwritten, even
by two publishers racing (a file left by an interrupted publish of the *same* build, same
sha256, is accepted so the publish can be retried); an alias is one object replaced with
``If-Match: <ETag read>`` (or ``If-None-Match: *`` when created), so a concurrent change
is refused, never lost, and readers get the old or the new object whole (S3 is strongly
read-after-write consistent). Polling is a conditional GET (``If-None-Match``): 304 with
no body while nothing changed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from pydantic import ValidationError

from iot_models.manifest import (
    MANIFEST_FILE,
    Manifest,
    ManifestError,
    sha256_bytes,
)
from iot_models.store import base
from iot_models.store.alias import Alias
from iot_models.store.base import ALIASES_DIR, AliasState
from iot_models.store.errors import (
    StoreAuthError,
    StoreError,
    StoreNotFoundError,
    StoreUnavailableError,
    VersionExistsError,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["S3ModelStore"]

_AUTH_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "403"}
)


class _MissingError(Exception):
    """NoSuchKey / 404 inside this module; translated by the caller."""


class _PreconditionError(Exception):
    """412 (If-None-Match / If-Match failed)."""


class S3ModelStore:
    """Versions and aliases as objects under ``s3://bucket/prefix/``.

    Args:
        url: ``s3://bucket[/prefix][?endpoint=http://host:port]``.
        timeout: connect and read timeout per request, in seconds (a poll never hangs).
    """

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        import boto3
        from botocore.config import Config

        parts = urlsplit(url)
        if not parts.netloc:
            raise StoreError(f"{url!r} names no bucket: write s3://BUCKET[/PREFIX]")
        self.bucket = parts.netloc
        prefix = parts.path.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        endpoint = parse_qs(parts.query).get("endpoint", [None])[0]
        self.endpoint = (
            endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        )
        self.url = f"s3://{self.bucket}/{self.prefix}" + (
            f" (endpoint {self.endpoint})" if self.endpoint else ""
        )
        session = boto3.session.Session()
        self._client: S3Client = session.client(
            "s3",
            endpoint_url=endpoint,  # None: boto3 reads AWS_ENDPOINT_URL(_S3) itself
            region_name=session.region_name or "us-east-1",
            config=Config(
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"max_attempts": 2, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        )

    # --- object helpers -------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Translate botocore's errors into the store's, saying what was attempted."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise _MissingError(what) from exc
            if code in ("PreconditionFailed", "412"):
                raise _PreconditionError(what) from exc
            if code == "NoSuchBucket":
                raise StoreNotFoundError(
                    f"bucket {self.bucket!r} does not exist at {self.url}; create it with "
                    f"`iotstream models init --store s3://{self.bucket}/{self.prefix}`"
                ) from exc
            if code in _AUTH_CODES:
                raise StoreAuthError(
                    f"{self.url} refused {what} ({code}): check AWS_ACCESS_KEY_ID / "
                    "AWS_SECRET_ACCESS_KEY and the bucket policy"
                ) from exc
            raise StoreError(f"{self.url}: {what} failed: {exc}") from exc
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise StoreAuthError(
                f"no S3 credentials for {self.url}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
            ) from exc
        except ConnectionError as exc:
            raise StoreUnavailableError(
                f"cannot reach the model store {self.url} ({what}): {exc}"
            ) from exc
        except BotoCoreError as exc:
            raise StoreUnavailableError(f"{self.url}: {what} failed: {exc}") from exc

    def _get(self, key: str, if_none_match: str | None = None) -> tuple[bytes, str] | None:
        """Body and ETag; ``None`` on 304 (unchanged). Raises _MissingError."""
        from botocore.exceptions import ClientError

        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.prefix + key}
        if if_none_match:
            kwargs["IfNoneMatch"] = if_none_match
        with self._errors(f"reading {key}"):
            try:
                response = self._client.get_object(**kwargs)
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if status == 304:
                    return None
                raise
            return response["Body"].read(), response["ETag"]

    def _put(self, key: str, data: bytes, **conditions: str) -> str:
        """Write an object; returns its ETag. Raises _PreconditionError."""
        with self._errors(f"writing {key}"):
            response = self._client.put_object(
                Bucket=self.bucket,
                Key=self.prefix + key,
                Body=data,
                Metadata={"sha256": sha256_bytes(data)},
                **conditions,  # type: ignore[arg-type]
            )
            return response["ETag"]

    def _head_sha(self, key: str) -> str | None:
        """The sha256 recorded when the object was written; None when it does not exist."""
        try:
            with self._errors(f"checking {key}"):
                head = self._client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except _MissingError:
            return None
        return head.get("Metadata", {}).get("sha256", "")

    def _keys(self, under: str) -> list[str]:
        """Every key under ``prefix + under``, relative to the prefix."""
        keys: list[str] = []
        with self._errors(f"listing {under or '/'}"):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + under
            )
            for page in pages:
                keys += [o["Key"][len(self.prefix) :] for o in page.get("Contents", [])]
        return keys

    # --- the store --------------------------------------------------------------------

    def models(self) -> list[str]:
        """Names with at least one published version, sorted."""
        names = {
            parts[0]
            for parts in (k.split("/") for k in self._keys(""))
            if len(parts) == 3 and parts[2] == MANIFEST_FILE and parts[0] != ALIASES_DIR
        }
        return sorted(names)

    def versions(self, name: str) -> list[str]:
        """Published versions of ``name``, oldest first."""
        found = [
            parts[1]
            for parts in (k.split("/") for k in self._keys(f"{name}/"))
            if len(parts) == 3 and parts[2] == MANIFEST_FILE
        ]
        return sorted(found, key=base.version_key)

    def manifest(self, name: str, version: str) -> Manifest:
        """The manifest of a published version."""
        return self._manifest(name, version)[0]

    def _manifest(self, name: str, version: str) -> tuple[Manifest, bytes]:
        try:
            got = self._get(f"{name}/{version}/{MANIFEST_FILE}")
        except _MissingError:
            raise base.version_missing(self, name, version) from None
        assert got is not None
        try:
            return Manifest.model_validate_json(got[0]), got[0]
        except ValidationError as exc:
            raise ManifestError(
                f"{self.url}{name}/{version}/{MANIFEST_FILE} is not a valid manifest: {exc}"
            ) from exc

    def download(
        self, name: str, version: str, dest: Path, variants: Collection[str] | None = None
    ) -> Manifest:
        """Copy a version (manifest + the files of ``variants``) into the new folder ``dest``."""
        manifest, raw = self._manifest(name, version)

        def read(file_name: str) -> bytes | None:
            try:
                got = self._get(f"{name}/{version}/{file_name}")
            except _MissingError:
                return None
            assert got is not None
            return got[0]

        base.copy_variants(manifest, dest, variants, read, f"{self.url}{name}/{version}/")
        (dest / MANIFEST_FILE).write_bytes(raw)
        return manifest

    def publish(self, source: Path) -> Manifest:
        """Upload the version folder ``source``: files first, the manifest last, each only if
        absent."""
        manifest, files = base.version_files(source)
        folder = f"{manifest.name}/{manifest.version}/"
        exists = base.version_exists(self, manifest)
        if self._head_sha(folder + MANIFEST_FILE) is not None:
            raise exists
        for file_name, data in files.items():
            try:
                self._put(folder + file_name, data, IfNoneMatch="*")
            except _PreconditionError:
                # left by an interrupted publish of this very build: fine; another build's: no
                if self._head_sha(folder + file_name) != sha256_bytes(data):
                    raise VersionExistsError(
                        f"{self.url}{folder}{file_name} already holds another build's file: "
                        f"{manifest.name} {manifest.version} is being (or was partly) published "
                        "by another build; give this build another version"
                    ) from None
        try:
            self._put(
                folder + MANIFEST_FILE, (source / MANIFEST_FILE).read_bytes(), IfNoneMatch="*"
            )
        except _PreconditionError:
            raise exists from None
        return manifest

    def read_alias(self, name: str, alias: str) -> AliasState:
        """The alias document and its ETag."""
        state = self.poll_alias(name, alias, None)
        assert state is not None
        return state

    def poll_alias(self, name: str, alias: str, token: str | None) -> AliasState | None:
        """The alias, or ``None`` when its ETag is still ``token`` (a 304, no body)."""
        key = base.alias_key(name, alias)
        try:
            got = self._get(key, if_none_match=token)
        except _MissingError:
            raise base.alias_missing(self, name, alias) from None
        if got is None:
            return None
        return base.parse_alias(got[0], got[1], f"{self.url}{key}")

    def write_alias(self, alias: Alias, expect: str | None) -> str:
        """Replace the alias object if its ETag is still ``expect`` (``None``: absent)."""
        for version in alias.versions():
            if self._head_sha(f"{alias.model}/{version}/{MANIFEST_FILE}") is None:
                raise base.version_missing(self, alias.model, version)
        data = alias.model_dump_json(indent=2).encode() + b"\n"
        condition = {"IfMatch": expect} if expect is not None else {"IfNoneMatch": "*"}
        try:
            return self._put(base.alias_key(alias.model, alias.alias), data, **condition)
        except (_PreconditionError, _MissingError):
            raise base.alias_conflict(alias) from None

    def aliases(self, name: str) -> list[str]:
        """Alias names of ``name``, sorted."""
        under = f"{ALIASES_DIR}/{name}/"
        return sorted(
            k[len(under) : -len(".json")]
            for k in self._keys(under)
            if k.endswith(".json") and "/" not in k[len(under) :]
        )

    def ensure(self) -> None:
        """Create the bucket if it does not exist."""
        try:
            with self._errors(f"checking bucket {self.bucket}"):
                self._client.head_bucket(Bucket=self.bucket)
        except (_MissingError, StoreNotFoundError):
            with self._errors(f"creating bucket {self.bucket}"):
                self._client.create_bucket(Bucket=self.bucket)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()
