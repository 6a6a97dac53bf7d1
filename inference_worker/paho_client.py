"""paho's client with two shortcuts for the worker's hot path (measured, see docs/streaming.md).

* :meth:`WorkerClient.ack_many` acknowledges a whole batch with one write: paho's ``ack``
  queues one 4-byte PUBACK per message and wakes its network thread for each (a syscall
  per reading).
* ``_handle_on_message`` skips paho's topic matcher when no per-topic callback is
  registered (the worker registers none); it cost ~7 % of the worker's CPU.

Both lean on paho internals (``_packet_queue``, ``_handle_on_message``, and
``_reset_sockets`` for :meth:`WorkerClient.close_sockets`) of the 2.x line
pinned in requirements/dev.txt; the integration tests check that acknowledged readings are
not redelivered after a restart, which breaks if these internals change.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Final

import paho.mqtt.client as mqtt

__all__ = ["WorkerClient"]

_PUBACK: Final = 0x40
_PUBACK_PACKET: Final = struct.Struct("!BBH")


class WorkerClient(mqtt.Client):
    """A paho client that acknowledges QoS 1 messages in batches."""

    _filtered_callbacks = False

    def message_callback_add(self, sub: str, callback: mqtt.CallbackOnMessage) -> None:
        """As paho's; also turns the per-topic matcher back on."""
        self._filtered_callbacks = True
        super().message_callback_add(sub, callback)

    def ack_many(self, mids: Iterable[int]) -> int:
        """Send a PUBACK for each packet id in one write; returns how many.

        A PUBACK with remaining length 2 means success in MQTT 3.1.1 and 5 alike.
        """
        packet = b"".join(_PUBACK_PACKET.pack(_PUBACK, 2, mid) for mid in mids)
        if packet:
            self._packet_queue(_PUBACK, packet, 0, 0)
        return len(packet) // _PUBACK_PACKET.size

    def close_sockets(self) -> None:
        """Close the network and wake-up sockets now (paho only does it when the client is
        garbage-collected, which for a client in a reference cycle may be never)."""
        self._reset_sockets()

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        on_message = self.on_message
        if self._filtered_callbacks or on_message is None:
            super()._handle_on_message(message)
            return
        with self._in_callback_mutex:
            on_message(self, self._userdata, message)
