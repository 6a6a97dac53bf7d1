"""Render the Mosquitto configuration templates in ``broker/``.

The files in ``broker/`` are ordinary, commented ``mosquitto.conf`` files with ``{{name}}``
placeholders for what differs between machines (ports, bind addresses, file paths, the user
to run as). :func:`render` fills them in from :data:`VARIABLES`' defaults and the caller's
values, and refuses unknown names, missing values and values that could inject config lines.

One value is derived, never set: ``max_packet_size`` is ``max_payload`` plus
:data:`PACKET_OVERHEAD`, so the broker passes every payload the workers accept
(``WORKER_MAX_PAYLOAD``, same default) and the payload limit is one setting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from iotstream.broker_tools.dynsec import DYNSEC_PLUGIN
from iotstream.resources import MissingResourceError, broker_dir, require

__all__ = [
    "BROKER_DIR",
    "DEFAULT_MAX_PAYLOAD",
    "PACKET_OVERHEAD",
    "VARIABLES",
    "Profile",
    "TemplateError",
    "TemplateVar",
    "max_packet_size",
    "placeholders",
    "render",
    "render_file",
]

BROKER_DIR: Final = broker_dir()
"""The templates shipped with iotstream (package data; ``broker/`` in a checkout)."""
_PLACEHOLDER: Final = re.compile(r"\{\{([a-z_]+)\}\}")
_SAFE_VALUE: Final = re.compile(r"\A[^\s#{}]+(?: [^\s#{}]+)*\Z")


class TemplateError(ValueError):
    """A template could not be rendered (unknown or missing variable, unsafe value)."""


class Profile(StrEnum):
    """Which broker: the template file under ``broker/`` for each."""

    DEV = "dev"
    PRODUCTION = "production"
    EDGE = "edge"

    @property
    def filename(self) -> str:
        """``<profile>.conf``."""
        return f"{self.value}.conf"


@dataclass(frozen=True)
class TemplateVar:
    """One placeholder: its default (None = must be given) and what it means."""

    name: str
    default: str | None
    help: str


_ETC: Final = "/etc/mosquitto/iotstream"

DEFAULT_MAX_PAYLOAD: Final = 65536
"""Largest reading payload, bytes: the default of the workers' ``WORKER_MAX_PAYLOAD``."""
PACKET_OVERHEAD: Final = 1024
"""Room for the rest of a PUBLISH around the payload: fixed header (<= 5 bytes), topic
(``devices/<id of <= 64>/telemetry`` with its length: <= 84), packet id (2) and MQTT v5
properties (content type, expiry, a few user properties)."""


def max_packet_size(max_payload: int) -> int:
    """The broker's ``max_packet_size`` for payloads of up to ``max_payload`` bytes."""
    return max_payload + PACKET_OVERHEAD


VARIABLES: Final[Mapping[str, TemplateVar]] = {
    v.name: v
    for v in (
        TemplateVar("run_as_user", "mosquitto", "user mosquitto drops to after binding ports"),
        TemplateVar("data_dir", "/var/lib/mosquitto", "persistence directory (writable)"),
        TemplateVar("autosave_interval", "1", "seconds (or changes) between persistence saves"),
        TemplateVar("autosave_on_changes", "false", "count autosave_interval in changes"),
        TemplateVar(
            "max_payload",
            str(DEFAULT_MAX_PAYLOAD),
            "largest payload, bytes (= WORKER_MAX_PAYLOAD; sets max_packet_size)",
        ),
        TemplateVar("password_file", f"{_ETC}/passwd", "password file ($7$ hashes)"),
        TemplateVar("dynsec_plugin", DYNSEC_PLUGIN, "dynamic security plugin (checks SUBSCRIBE)"),
        TemplateVar(
            "dynsec_file",
            f"{_ETC}/dynamic-security.json",
            "who may do what (plugin file; writable by run_as_user)",
        ),
        TemplateVar("mqtt_port", "1883", "plain MQTT port"),
        TemplateVar("mqtt_bind", "127.0.0.1", "plain MQTT address: private/site network only"),
        TemplateVar("tls_port", "8883", "MQTT over TLS port (devices)"),
        TemplateVar("tls_bind", "0.0.0.0", "MQTT over TLS address"),  # noqa: S104 - the public one
        TemplateVar("ws_port", "9001", "MQTT over WebSockets port"),
        TemplateVar("ws_bind", "127.0.0.1", "WebSockets address (explicit: 2.0.11 binds all)"),
        TemplateVar("cafile", f"{_ETC}/certs/ca.crt", "CA that signs client certificates"),
        TemplateVar("certfile", f"{_ETC}/certs/server.crt", "server certificate (chain)"),
        TemplateVar("keyfile", f"{_ETC}/certs/server.key", "server private key"),
        TemplateVar("require_certificate", "true", "TLS clients must present a certificate"),
        TemplateVar("use_identity_as_username", "false", "certificate CN is the username"),
        TemplateVar("central_host", None, "edge: central broker host name"),
        TemplateVar("central_port", "8883", "edge: central broker TLS port"),
        TemplateVar("bridge_name", "bridge-site1", "edge: bridge client id and central username"),
        TemplateVar("bridge_password", None, "edge: the bridge user's password at the centre"),
        TemplateVar(
            "bridge_protocol_version", "mqttv50", "edge: mqttv50 (keeps properties) or mqttv311"
        ),
        TemplateVar("bridge_restart_timeout", "2 30", "edge: reconnect backoff base and cap, s"),
        TemplateVar("bridge_cafile", f"{_ETC}/certs/ca.crt", "edge: CA of the central broker"),
        TemplateVar(
            "bridge_certfile", f"{_ETC}/certs/bridge-site1.crt", "edge: bridge client cert"
        ),
        TemplateVar("bridge_keyfile", f"{_ETC}/certs/bridge-site1.key", "edge: bridge client key"),
    )
}


def placeholders(template: str) -> list[str]:
    """The placeholder names used in ``template``, in order of first use."""
    return list(dict.fromkeys(_PLACEHOLDER.findall(template)))


def render(template: str, values: Mapping[str, str | int] | None = None) -> str:
    """Fill ``{{name}}`` placeholders from ``values`` and the defaults in :data:`VARIABLES`.

    Raises:
        TemplateError: a name in ``values`` is unknown, a used placeholder has no value, or a
            value holds a newline, ``#`` or braces (which would change the config's meaning).
    """
    given = {k: str(v) for k, v in (values or {}).items()}
    unknown = sorted(set(given) - set(VARIABLES))
    if unknown:
        raise TemplateError(f"unknown variable(s): {', '.join(unknown)}")
    payload = given.get("max_payload", str(DEFAULT_MAX_PAYLOAD))
    if not payload.isdigit() or int(payload) < 64:
        raise TemplateError(f"max_payload must be a whole number of bytes >= 64, not {payload!r}")
    resolved: dict[str, str] = {"max_packet_size": str(max_packet_size(int(payload)))}
    for name in placeholders(template):
        if name in resolved:
            continue
        value = given.get(name, VARIABLES[name].default if name in VARIABLES else None)
        if value is None:
            raise TemplateError(f"variable {name!r} has no default; give it with --set {name}=…")
        if not _SAFE_VALUE.match(value):
            raise TemplateError(f"variable {name!r}: unsafe value {value!r}")
        resolved[name] = value
    return _PLACEHOLDER.sub(lambda m: resolved[m.group(1)], template)


def render_file(
    profile: Profile,
    values: Mapping[str, str | int] | None = None,
    template_dir: Path = BROKER_DIR,
) -> str:
    """Render ``<template_dir>/<profile>.conf``; see :func:`render`.

    Raises:
        TemplateError: also when the template file is missing (one line saying what to do).
    """
    path = template_dir / profile.filename
    if template_dir != BROKER_DIR and not path.is_file():
        raise TemplateError(f"no template {path}: the --template-dir needs {profile.filename}")
    try:
        require(path, f"the broker template {profile.filename}")
    except MissingResourceError as exc:
        raise TemplateError(str(exc)) from None
    return render(path.read_text(), values)
