"""Alias documents and the pure transitions between them (set, canary, promote, rollback).

An alias (``production``, ``staging``, ...) names the version a fleet serves, and
optionally a canary version for a share of the devices. The whole routing of a model is
one small JSON document, replaced atomically, so a worker never sees half a change.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Alias", "Canary", "promote", "rollback", "set_version", "start_canary"]

_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_VERSION = r"^[A-Za-z0-9_.-]{1,32}$"


class Canary(BaseModel):
    """A version served to some devices instead of the alias's main version.

    A device is on the canary when its id matches one of ``devices`` (globs), or when its
    stable hash bucket falls under ``percent`` (:func:`iot_models.canary.in_canary`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(pattern=_VERSION)
    percent: float = Field(default=0.0, ge=0.0, le=100.0)
    """Share of devices, in steps of 0.01 %."""
    devices: tuple[str, ...] = ()
    """Device-id globs always on the canary (``pump-0007``, ``lab-*``)."""


class Alias(BaseModel):
    """``_aliases/<model>/<alias>.json`` in the store."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = Field(default=1, ge=1, le=1)
    model: str = Field(pattern=_NAME)
    alias: str = Field(pattern=_NAME)
    version: str = Field(pattern=_VERSION)
    """What every device not on the canary gets."""
    canary: Canary | None = None
    previous: str | None = Field(default=None, pattern=_VERSION)
    """The version before the last change of ``version``: what :func:`rollback` returns to."""
    updated_at: float = 0.0
    updated_by: str = ""

    @model_validator(mode="after")
    def _canary_differs(self) -> Alias:
        if self.canary is not None and self.canary.version == self.version:
            raise ValueError(f"the canary version {self.version!r} is the alias's own version")
        return self

    def versions(self) -> tuple[str, ...]:
        """The versions this alias serves (main first)."""
        return (self.version,) if self.canary is None else (self.version, self.canary.version)

    def routing(self) -> tuple[str, Canary | None]:
        """What decides where readings go (the rest is bookkeeping)."""
        return self.version, self.canary

    def describe(self) -> str:
        """One line for logs and the CLI."""
        text = f"{self.model}@{self.alias} -> {self.version}"
        if self.canary is not None:
            c = self.canary
            who = [f"{c.percent:g}%"] + [repr(d) for d in c.devices]
            text += f", canary {c.version} for {' + '.join(who)}"
        return text


def _with(current: Alias, **changes: object) -> Alias:
    """``current`` with ``changes``, validated (``model_copy`` would skip the checks)."""
    return Alias.model_validate({**current.model_dump(), **changes})


def set_version(
    current: Alias | None, model: str, alias: str, version: str, *, at: float, by: str
) -> Alias:
    """Point the alias at ``version`` (creating it if needed); drops any canary."""
    previous = current.version if current is not None and current.version != version else None
    if current is not None and previous is None:
        previous = current.previous
    return Alias(
        model=model,
        alias=alias,
        version=version,
        previous=previous,
        updated_at=at,
        updated_by=by,
    )


def start_canary(current: Alias, canary: Canary, *, at: float, by: str) -> Alias:
    """Serve ``canary`` beside the alias's version (replacing an earlier canary)."""
    return _with(current, canary=canary, updated_at=at, updated_by=by)


def promote(current: Alias, *, at: float, by: str) -> Alias:
    """Make the canary the alias's version for every device.

    Raises:
        ValueError: there is no canary to promote.
    """
    if current.canary is None:
        raise ValueError(f"{current.model}@{current.alias} has no canary to promote")
    return Alias(
        model=current.model,
        alias=current.alias,
        version=current.canary.version,
        previous=current.version,
        updated_at=at,
        updated_by=by,
    )


def rollback(current: Alias, *, at: float, by: str) -> Alias:
    """Drop the canary if there is one; otherwise go back to ``previous``.

    Raises:
        ValueError: nothing to roll back to.
    """
    if current.canary is not None:
        return _with(current, canary=None, updated_at=at, updated_by=by)
    if current.previous is None:
        raise ValueError(
            f"{current.model}@{current.alias} has no canary and no previous version to go back to"
        )
    return Alias(
        model=current.model,
        alias=current.alias,
        version=current.previous,
        previous=current.version,
        updated_at=at,
        updated_by=by,
    )
