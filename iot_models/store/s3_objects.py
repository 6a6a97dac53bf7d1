"""Plain objects in an S3 bucket (:class:`~iot_models.store.objects.ObjectStore`), on the
same client, endpoint and credential rules, and error translation as the S3 model store."""

from __future__ import annotations

from iot_models.store.errors import StoreNotFoundError
from iot_models.store.objects import ObjectNotFoundError
from iot_models.store.s3 import S3ModelStore, _MissingError

__all__ = ["S3ObjectStore"]


class S3ObjectStore:
    """Objects under ``s3://bucket/prefix/``.

    Args:
        url: ``s3://bucket[/prefix][?endpoint=http://host:port]``.
        timeout: connect and read timeout per request, in seconds.
    """

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self._s3 = S3ModelStore(url, timeout=timeout)
        self.url = self._s3.url

    def put(self, key: str, data: bytes) -> None:
        """One PUT (S3 makes it visible whole)."""
        self._s3._put(key, data)

    def get(self, key: str) -> bytes:
        """The object's bytes."""
        try:
            got = self._s3._get(key)
        except _MissingError as exc:
            raise ObjectNotFoundError(f"no object {key!r} in {self.url}") from exc
        assert got is not None  # no If-None-Match: never a 304
        return got[0]

    def list(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix``, sorted; empty when the bucket does not exist."""
        try:
            return sorted(self._s3._keys(prefix))
        except StoreNotFoundError:
            return []

    def sizes(self, prefix: str = "") -> dict[str, int]:
        """Every key under ``prefix`` with its size (from the listing, no extra request)."""
        s3 = self._s3
        found: dict[str, int] = {}
        try:
            with s3._errors(f"listing {prefix or '/'}"):
                pages = s3._client.get_paginator("list_objects_v2").paginate(
                    Bucket=s3.bucket, Prefix=s3.prefix + prefix
                )
                for page in pages:
                    for obj in page.get("Contents", []):
                        found[obj["Key"][len(s3.prefix) :]] = int(obj["Size"])
        except StoreNotFoundError:
            return {}
        return dict(sorted(found.items()))

    def delete(self, key: str) -> None:
        """DELETE (S3 answers success for a key that is already gone)."""
        with self._s3._errors(f"deleting {key}"):
            self._s3._client.delete_object(Bucket=self._s3.bucket, Key=self._s3.prefix + key)

    def close(self) -> None:
        """Release the client's connections."""
        self._s3.close()
