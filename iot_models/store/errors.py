"""The model store's errors: one base, :class:`StoreError`, whose messages say what to do."""

from __future__ import annotations

from iot_models.manifest import ModelError, ModelNotFoundError

__all__ = [
    "AliasConflictError",
    "AliasNotFoundError",
    "PublishError",
    "StoreAuthError",
    "StoreError",
    "StoreNotFoundError",
    "StoreUnavailableError",
    "VersionExistsError",
    "VersionNotFoundError",
]


class StoreError(ModelError):
    """Base of the store's errors; each message says what to do."""


class StoreUnavailableError(StoreError):
    """The store did not answer (endpoint down, timeout): a later try may work."""


class StoreAuthError(StoreError):
    """Credentials missing or refused."""


class StoreNotFoundError(StoreError):
    """The store itself (bucket, root folder) does not exist."""


class VersionExistsError(StoreError):
    """Publishing a version that is already published: versions are never overwritten."""


class VersionNotFoundError(StoreError, ModelNotFoundError):
    """No such model or version in the store."""


class AliasNotFoundError(StoreError, ModelNotFoundError):
    """The model has no such alias."""


class AliasConflictError(StoreError):
    """The alias changed between reading and writing it (someone else moved it)."""


class PublishError(StoreError):
    """The folder to publish is not a complete, valid model version."""
