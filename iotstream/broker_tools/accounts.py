"""Device and service accounts in a Mosquitto password file.

A device's username is its device id (so the ACL's ``%u`` patterns confine it to its own
topics). Service accounts have fixed names that the ACL in ``broker/acl`` grants more to;
no device may take one of those names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from iot_contract import ContractError, validate_device_id
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

SERVICE_ACCOUNTS: Final = ("worker", "admin")
_BRIDGE_RE: Final = re.compile(r"\Abridge-[A-Za-z0-9_.-]{1,57}\Z")


def is_service_account(name: str) -> bool:
    """True for ``worker``, ``admin`` and ``bridge-<site>``: names the ACL treats specially."""
    return name in SERVICE_ACCOUNTS or bool(_BRIDGE_RE.match(name))


def numbered_ids(prefix: str, count: int, start: int = 1) -> list[str]:
    """``prefix0001``, ``prefix0002`` …: padded to at least 4 digits and to the largest
    number's width, so the ids sort in order."""
    width = max(4, len(str(start + count - 1)))
    return [f"{prefix}{i:0{width}d}" for i in range(start, start + count)]


def add_devices(passwords: PasswordFile, device_ids: Iterable[str]) -> dict[str, str]:
    """Create a random secret for each new device; returns ``{device_id: secret}``.

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
    return secrets


def add_service(passwords: PasswordFile, name: str) -> str:
    """Create (or re-create) service account ``name``; returns its new secret."""
    if not is_service_account(name):
        raise PasswordFileError(
            f"{name!r} is not a service account (worker, admin or bridge-<site>)"
        )
    secret = generate_secret()
    passwords.set(name, secret)
    return secret


def rotate(passwords: PasswordFile, name: str) -> str:
    """Give existing user ``name`` a new random secret and return it."""
    if name not in passwords:
        raise PasswordFileError(f"no user {name!r} in {passwords.path}")
    secret = generate_secret()
    passwords.set(name, secret)
    return secret


def revoke(passwords: PasswordFile, name: str) -> None:
    """Remove user ``name``; after the broker reloads, it can no longer connect."""
    passwords.remove(name)
