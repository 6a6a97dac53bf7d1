"""Changing an alias in a store: read it, apply a pure transition, write it back on the
condition that nobody changed it meanwhile (retried a few times when somebody did)."""

from __future__ import annotations

import getpass
import socket
import time
from collections.abc import Callable

from iot_models.store.alias import Alias
from iot_models.store.base import ModelStore
from iot_models.store.errors import AliasConflictError, AliasNotFoundError

__all__ = ["change_alias", "who"]


def who() -> str:
    """``user@host``, recorded as ``updated_by``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def change_alias(
    store: ModelStore,
    name: str,
    alias: str,
    transition: Callable[[Alias | None], Alias],
    *,
    attempts: int = 3,
) -> Alias:
    """Apply ``transition`` to the alias's current document (``None`` when it does not
    exist) and write the result conditionally; returns what was written.

    Raises:
        AliasConflictError: it kept changing underneath for ``attempts`` tries.
        ValueError: the transition refused (e.g. nothing to roll back to).
        VersionNotFoundError: the new document names a version that is not published.
    """
    for attempt in range(attempts):
        try:
            state = store.read_alias(name, alias)
            current, token = state.alias, state.token
        except AliasNotFoundError:
            current, token = None, None
        new = transition(current)
        try:
            store.write_alias(new, token)
        except AliasConflictError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
            continue
        return new
    raise AssertionError("unreachable")  # pragma: no cover
