"""Who may publish, subscribe and receive what: Mosquitto's dynamic security plugin file.

Mosquitto 2.0.11's ``acl_file`` checks reads only when a message is delivered, never at
SUBSCRIBE: a device could join the workers' shared subscription, take its round-robin turn
and have each of its turns dropped at delivery (half of another device's readings lost,
all acknowledged to their sender). The dynamic security plugin checks ``subscribeLiteral`` /
``subscribePattern`` ACLs at SUBSCRIBE time and answers a refusal with SUBACK ``0x87``
(``0x80`` for MQTT 3.1.1), so nothing is ever added to the subscription tree.

The broker uses the plugin for **authorisation only**: its clients carry no password, so the
plugin defers authentication to ``password_file`` (the ``$7$`` file of :mod:`.passwords`,
reloaded on SIGHUP). A user found in neither is refused at CONNECT; a user in the password
file but not here is let in and may do nothing. The plugin has no ``%u`` substitution, so
each device has a role of its own (``device:<id>``).

The plugin reads its file once, at start (a SIGHUP does not reload it), and rewrites it on
every change made through ``$CONTROL/dynamic-security/v1``. Edit the file with
:class:`DynsecFile` only for a broker that is stopped or not yet started; a running one
takes changes live through :mod:`.dynsec_control`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Protocol

from iotstream.broker_tools.passwords import write_private

__all__ = [
    "DEFAULT_ACL_ACCESS",
    "DYNSEC_PLUGIN",
    "SERVICE_ROLES",
    "DynsecFile",
    "Permissions",
    "device_role",
    "empty_config",
    "role_name",
]

DYNSEC_PLUGIN: Final = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
"""Where Debian 12's ``mosquitto`` package installs the plugin (the official image:
``/usr/lib/mosquitto_dynamic_security.so``)."""

DEFAULT_ACL_ACCESS: Final[Mapping[str, bool]] = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": True,
}
"""What is allowed when no ACL of a client's roles matches: nothing but unsubscribing."""

_Acl = dict[str, Any]


def _acls(kind: str, *topics: str) -> list[_Acl]:
    return [{"acltype": kind, "topic": topic, "allow": True, "priority": 0} for topic in topics]


_TELEMETRY, _STATUS, _INFERENCE = "devices/+/telemetry", "devices/+/status", "devices/+/inference"

SERVICE_ROLES: Final[Mapping[str, list[_Acl]]] = {
    # Workers take the shared subscription (any group) and answer every device.
    "worker": [
        *_acls("subscribePattern", f"$share/+/{_TELEMETRY}", f"$share/+/{_STATUS}"),
        *_acls("subscribePattern", _TELEMETRY, _STATUS),
        *_acls("publishClientReceive", _TELEMETRY, _STATUS),
        *_acls("publishClientSend", _INFERENCE),
    ],
    # Operators and health checks: everything, $SYS, and managing this plugin.
    "admin": [
        *_acls("subscribePattern", "#", "$SYS/#", "$CONTROL/dynamic-security/#"),
        *_acls("publishClientReceive", "#", "$SYS/#", "$CONTROL/dynamic-security/#"),
        *_acls("publishClientSend", "#", "$CONTROL/dynamic-security/#"),
    ],
    # An edge site's bridge: telemetry and status up, inference results down.
    "bridge": [
        *_acls("publishClientSend", _TELEMETRY, _STATUS),
        *_acls("subscribePattern", _INFERENCE),
        *_acls("publishClientReceive", _INFERENCE),
    ],
    # The staged intake (``iotstream ingest``): every device's telemetry through a plain,
    # non-shared subscription, and nothing else (it answers no device).
    "ingest": [
        *_acls("subscribePattern", _TELEMETRY),
        *_acls("publishClientReceive", _TELEMETRY),
    ],
}


class Permissions(Protocol):
    """Where accounts get their rights: the plugin's file, or a running broker's plugin."""

    def grant(self, username: str) -> None:
        """Give ``username`` the rights its name implies (see :func:`role_name`)."""

    def withdraw(self, username: str) -> None:
        """Take every right from ``username`` (no error if it had none)."""


def role_name(username: str) -> str:
    """``worker``, ``ingest``, ``admin``, ``bridge`` (for ``bridge-<site>``) or
    ``device:<id>``."""
    if username in ("worker", "ingest", "admin"):
        return username
    if username.startswith("bridge-"):
        return "bridge"
    return f"device:{username}"


def device_role(device_id: str) -> dict[str, Any]:
    """The role of one device: write its telemetry and status, read its inference topic.

    Subscribing is literal: ``devices/<id>/inference`` and nothing else (no wildcards, no
    ``$share/...``), so a device can never hold a place in someone else's subscription.
    """
    own = f"devices/{device_id}"
    return {
        "rolename": role_name(device_id),
        "acls": [
            *_acls("publishClientSend", f"{own}/telemetry", f"{own}/status"),
            *_acls("subscribeLiteral", f"{own}/inference"),
            *_acls("publishClientReceive", f"{own}/inference"),
        ],
    }


def empty_config() -> dict[str, Any]:
    """A plugin file with the service roles, no clients and deny-by-default access."""
    return {
        "defaultACLAccess": dict(DEFAULT_ACL_ACCESS),
        "clients": [],
        "groups": [],
        "roles": [{"rolename": name, "acls": acls} for name, acls in SERVICE_ROLES.items()],
    }


class DynsecFile:
    """The plugin's JSON file held in memory: :meth:`grant`, :meth:`withdraw`, then :meth:`save`.

    Only for a broker that is stopped or not yet started: the plugin reads the file at start
    and overwrites it on every live change. Keeps whatever else the file holds (groups,
    roles and clients added with ``mosquitto_ctrl``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.config: dict[str, Any] = (
            json.loads(path.read_text()) if path.exists() else empty_config()
        )
        roles = self.config.setdefault("roles", [])
        known = {role["rolename"] for role in roles}
        roles.extend(
            {"rolename": name, "acls": acls}
            for name, acls in SERVICE_ROLES.items()
            if name not in known
        )

    @property
    def users(self) -> list[str]:
        """Usernames of the plugin's clients, in file order."""
        return [client["username"] for client in self._clients()]

    def __contains__(self, username: object) -> bool:
        return username in self.users

    def roles_of(self, username: str) -> list[str]:
        """Role names of client ``username`` (empty if there is none)."""
        for client in self._clients():
            if client["username"] == username:
                return [role["rolename"] for role in client.get("roles", [])]
        return []

    def role(self, rolename: str) -> dict[str, Any] | None:
        """The role called ``rolename``, if any."""
        return next((r for r in self.config["roles"] if r["rolename"] == rolename), None)

    def grant(self, username: str) -> None:
        """Add client ``username`` (no password: the password file authenticates it)."""
        self.withdraw(username)
        rolename = role_name(username)
        if rolename.startswith("device:"):
            self.config["roles"].append(device_role(username))
        self._clients().append({"username": username, "roles": [{"rolename": rolename}]})

    def withdraw(self, username: str) -> None:
        """Remove client ``username`` and its own device role."""
        self.config["clients"] = [c for c in self._clients() if c["username"] != username]
        own = f"device:{username}"
        self.config["roles"] = [r for r in self.config["roles"] if r["rolename"] != own]

    def _clients(self) -> list[dict[str, Any]]:
        clients: list[dict[str, Any]] = self.config.setdefault("clients", [])
        return clients

    def render(self) -> str:
        """The file's text."""
        return json.dumps(self.config, indent=2) + "\n"

    def save(self) -> None:
        """Write atomically with mode 0600 (the broker's user must own it: it rewrites it)."""
        write_private(self.path, self.render())
