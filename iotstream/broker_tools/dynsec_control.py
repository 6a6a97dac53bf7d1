"""Change a running broker's rights through ``$CONTROL/dynamic-security/v1`` (as ``admin``).

What ``mosquitto_ctrl dynsec`` does, for many accounts at once: the plugin applies each
command at once, saves its file itself, and disconnects a client whose rights it removes.
Commands go in batches small enough for the broker's ``max_packet_size``.
"""

from __future__ import annotations

import json
import queue
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from iotstream.broker_tools.dynsec import device_role, role_name

__all__ = ["ControlError", "DynsecControl", "control_session"]

_TOPIC: Final = "$CONTROL/dynamic-security/v1"
_BATCH_BYTES: Final = 8000  # well under the 16 KiB broker packet limit


class ControlError(RuntimeError):
    """The broker could not be reached, or refused a command."""


class DynsecControl:
    """:class:`~iotstream.broker_tools.dynsec.Permissions` applied to a running broker.

    :meth:`grant` and :meth:`withdraw` queue commands; :meth:`apply` sends them and raises
    :class:`ControlError` for any the plugin refused (``already exists`` answers to
    ``createRole`` are expected and ignored: re-granting is idempotent).
    """

    def __init__(self, client: mqtt.Client, responses: queue.Queue[bytes], timeout: float):
        self._client = client
        self._responses = responses
        self._timeout = timeout
        self._pending: list[dict[str, Any]] = []

    def grant(self, username: str) -> None:
        """Create client ``username`` (no password) with its role; devices get their own."""
        rolename = role_name(username)
        if rolename.startswith("device:"):
            self._pending.append({"command": "createRole", **device_role(username)})
        self._pending.append(
            {"command": "createClient", "username": username, "roles": [{"rolename": rolename}]}
        )

    def withdraw(self, username: str) -> None:
        """Delete client ``username`` (the plugin disconnects it) and its device role."""
        self._pending.append({"command": "deleteClient", "username": username})
        if role_name(username).startswith("device:"):
            self._pending.append({"command": "deleteRole", "rolename": role_name(username)})

    def apply(self) -> None:
        """Send what :meth:`grant`/:meth:`withdraw` queued; raise on any refusal."""
        batch: list[dict[str, Any]] = []
        for command in self._pending:
            batch.append(command)
            if len(json.dumps(batch)) > _BATCH_BYTES:
                self._send(batch[:-1])
                batch = [command]
        if batch:
            self._send(batch)
        self._pending = []

    def _send(self, commands: list[dict[str, Any]]) -> None:
        tag = uuid.uuid4().hex
        for i, command in enumerate(commands):
            command["correlationData"] = f"{tag}-{i}"
        self._client.publish(_TOPIC, json.dumps({"commands": commands}), qos=1)
        answered: dict[str, dict[str, Any]] = {}
        while len(answered) < len(commands):
            try:
                payload = self._responses.get(timeout=self._timeout)
            except queue.Empty:
                raise ControlError("no answer from the dynamic security plugin") from None
            for response in json.loads(payload).get("responses", []):
                if str(response.get("correlationData", "")).startswith(tag):
                    answered[response["correlationData"]] = response
        errors = [
            f"{r['command']}: {r['error']}"
            for r in answered.values()
            if r.get("error") and not _harmless(r)
        ]
        if errors:
            raise ControlError("; ".join(errors))


def _harmless(response: dict[str, Any]) -> bool:
    # Granting again is a no-op (and must not disconnect the client); withdrawing what is not
    # there is not an error either.
    return (response["command"], response["error"]) in {
        ("createClient", "Client already exists"),
        ("deleteClient", "Client not found"),
        ("deleteRole", "Role not found"),
        ("createRole", "Role already exists"),
    }


@contextmanager
def control_session(
    host: str, port: int, username: str, password: str, timeout: float = 10.0
) -> Iterator[DynsecControl]:
    """Connect as ``username`` (normally ``admin``) and yield a :class:`DynsecControl`.

    Commands still queued when the block ends without an error are applied then.

    Raises:
        ControlError: the connection or a command failed.
    """
    responses: queue.Queue[bytes] = queue.Queue()
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"iotstream-ctrl-{uuid.uuid4().hex[:8]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.username_pw_set(username, password)
    client.on_connect = lambda _c, _u, _f, rc, _p: events.put(("connect", rc))
    client.on_subscribe = lambda _c, _u, _m, rcs, _p: events.put(("suback", rcs))
    client.on_message = lambda _c, _u, msg: responses.put(bytes(msg.payload))
    try:
        client.connect(host, port)
    except OSError as exc:
        raise ControlError(f"cannot reach {host}:{port}: {exc}") from exc
    client.loop_start()
    try:
        _expect(events, "connect", timeout)
        client.subscribe(f"{_TOPIC}/response", 1)
        _expect(events, "suback", timeout)
        control = DynsecControl(client, responses, timeout)
        yield control
        control.apply()
    finally:
        client.disconnect()
        client.loop_stop()


def _expect(events: queue.Queue[tuple[str, Any]], kind: str, timeout: float) -> None:
    try:
        got, value = events.get(timeout=timeout)
    except queue.Empty:
        raise ControlError(f"no {kind} from the broker in {timeout}s") from None
    codes = value if isinstance(value, list) else [value]
    if got != kind or any(code.is_failure for code in codes):
        raise ControlError(f"{kind} refused: {', '.join(str(c) for c in codes)}")
