"""Device and service accounts: a password (the password file) and rights (the plugin).

A device's username is its device id, and its rights are a role of its own that confines it
to its own topics (:func:`~iotstream.broker_tools.dynsec.device_role`). Service accounts have
fixed names with the roles in :data:`~iotstream.broker_tools.dynsec.SERVICE_ROLES`; no
device may take one of those names. Rights go to a :class:`Permissions`: the plugin's file
(:class:`~iotstream.broker_tools.dynsec.DynsecFile`) or a running broker
(:class:`~iotstream.broker_tools.dynsec_control.DynsecControl`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from iot_contract import ContractError, validate_device_id
from iotstream.broker_tools.dynsec import Permissions
from iotstream.broker_tools.passwords import PasswordFile, PasswordFileError, generate_secret

__all__ = [
    "SERVICE_ACCOUNTS",
    "add_devices",
    "add_service",
    "is_service_account",
    "numbered_ids",
    "revoke",
    "rotate",
]

SERVICE_ACCOUNTS: Final = ("worker", "ingest", "admin")
_BRIDGE_RE: Final = re.compile(r"\Abridge-[A-Za-z0-9_.-]{1,57}\Z")


def is_service_account(name: str) -> bool:
    """True for ``worker``, ``ingest``, ``admin`` and ``bridge-<site>``: names with service
    roles."""
    return name in SERVICE_ACCOUNTS or bool(_BRIDGE_RE.match(name))


def numbered_ids(prefix: str, count: int, start: int = 1) -> list[str]:
    """``prefix0001``, ``prefix0002`` …: padded to at least 4 digits and to the largest
    number's width, so the ids sort in order."""
    width = max(4, len(str(start + count - 1)))
    return [f"{prefix}{i:0{width}d}" for i in range(start, start + count)]


def add_devices(
    passwords: PasswordFile, device_ids: Iterable[str], permissions: Permissions
) -> dict[str, str]:
    """Create each new device with a random secret and its own role; returns
    ``{device_id: secret}``.

    Nothing is changed unless every id is valid, new and not a service account name.

    Raises:
        PasswordFileError: an id is invalid, reserved, repeated or already present.
    """
    ids = list(device_ids)
    problems = []
    for device_id in ids:
        try:
            validate_device_id(device_id)
        except ContractError as exc:
            problems.append(exc.detail)
            continue
        if is_service_account(device_id):
            problems.append(f"{device_id!r} is a service account name")
        elif device_id in passwords:
            problems.append(f"{device_id!r} exists (rotate it instead)")
    if len(set(ids)) != len(ids):
        problems.append("an id is given twice")
    if problems:
        raise PasswordFileError("; ".join(problems))
    secrets = {device_id: generate_secret() for device_id in ids}
    for device_id, secret in secrets.items():
        passwords.set(device_id, secret)
        permissions.grant(device_id)
    return secrets


def add_service(passwords: PasswordFile, name: str, permissions: Permissions) -> str:
    """Create (or reset) service account ``name`` with its role; returns its new secret."""
    if not is_service_account(name):
        raise PasswordFileError(
            f"{name!r} is not a service account (worker, ingest, admin or bridge-<site>)"
        )
    secret = generate_secret()
    passwords.set(name, secret)
    permissions.grant(name)
    return secret


def rotate(passwords: PasswordFile, name: str) -> str:
    """Give existing user ``name`` a new random secret and return it."""
    if name not in passwords:
        raise PasswordFileError(f"no user {name!r} in {passwords.path}")
    secret = generate_secret()
    passwords.set(name, secret)
    return secret


def revoke(passwords: PasswordFile, name: str, permissions: Permissions) -> None:
    """Remove user ``name`` and its rights; after the broker reloads, it cannot connect."""
    passwords.remove(name)
    permissions.withdraw(name)
