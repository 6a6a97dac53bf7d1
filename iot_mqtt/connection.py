"""Building paho-mqtt 2.x clients from a URL, shared by the worker and the simulator."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

__all__ = ["MqttEndpoint", "Protocol", "check_broker_url", "make_client"]

Protocol = Literal["3.1.1", "5"]

_SCHEMES = {
    "mqtt": (1883, False, "tcp"),
    "mqtts": (8883, True, "tcp"),
    "ws": (8080, False, "websockets"),
    "wss": (8081, True, "websockets"),
}


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """Where a broker listens.

    Attributes:
        host: broker host.
        port: broker port.
        tls: whether to use TLS.
        transport: ``tcp`` or ``websockets``.
        path: WebSocket path (``/mqtt`` by default).
    """

    host: str
    port: int
    tls: bool = False
    transport: Literal["tcp", "websockets"] = "tcp"
    path: str = "/mqtt"

    @classmethod
    def from_url(cls, url: str) -> MqttEndpoint:
        """Parse ``mqtt://``, ``mqtts://``, ``ws://`` or ``wss://`` URLs.

        Raises:
            ValueError: unknown scheme or no host.
        """
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES:
            raise ValueError(f"broker URL {url!r}: scheme must be one of {', '.join(_SCHEMES)}")
        if not parts.hostname:
            raise ValueError(f"broker URL {url!r} has no host")
        default_port, tls, transport = _SCHEMES[parts.scheme]
        return cls(
            host=parts.hostname,
            port=parts.port or default_port,
            tls=tls,
            transport="websockets" if transport == "websockets" else "tcp",
            path=parts.path or "/mqtt",
        )


def check_broker_url(url: str) -> str:
    """``url`` unchanged if :meth:`MqttEndpoint.from_url` takes it: a settings validator,
    so that a bad broker URL is refused with the settings, not at the first connect.

    Raises:
        ValueError: unknown scheme or no host.
    """
    MqttEndpoint.from_url(url)
    return url


def make_client(
    endpoint: MqttEndpoint,
    client_id: str,
    *,
    protocol: Protocol = "5",
    username: str | None = None,
    password: str | None = None,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    manual_ack: bool = False,
    clean_session: bool = True,
    client_class: type[mqtt.Client] = mqtt.Client,
) -> mqtt.Client:
    """A paho client (callback API v2) configured for ``endpoint``; not yet connected.

    ``clean_session`` only applies to MQTT 3.1.1; for MQTT 5 pass ``clean_start`` and a
    session expiry to ``connect``.
    """
    version = MQTTProtocolVersion.MQTTv5 if protocol == "5" else MQTTProtocolVersion.MQTTv311
    client = client_class(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=version,
        transport=endpoint.transport,
        manual_ack=manual_ack,
        clean_session=None if protocol == "5" else clean_session,
    )
    if endpoint.transport == "websockets":
        client.ws_set_options(path=endpoint.path)
    if endpoint.tls:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        if cert_file:
            context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
        client.tls_set_context(context)
    if username is not None:
        client.username_pw_set(username, password)
    return client
