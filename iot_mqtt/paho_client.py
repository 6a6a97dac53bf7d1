"""paho's client with shortcuts for the worker's hot path (measured, see docs/streaming.md).

* With :attr:`WorkerClient.on_publishes` set, each socket read is one ``recv`` of up to
  :attr:`WorkerClient.read_size` bytes, split by :func:`~iot_mqtt.wire.split_packets`;
  the QoS 0/1 PUBLISH packets in it go to that callback as one list, other packets to paho's
  own handlers. paho reads a packet with three ``recv`` calls and builds an ``MQTTMessage``
  per PUBLISH (together ~25 µs per reading).
* :meth:`WorkerClient.ack_many` acknowledges a whole batch with one write: paho's ``ack``
  queues one 4-byte PUBACK per message and wakes its network thread for each (a syscall
  per reading). Called on the network thread itself, it writes at once.
* :attr:`WorkerClient.on_timer` lets the network thread run a caller's timer: its
  ``select`` waits no longer than :attr:`WorkerClient.timer_at`, so work that must happen
  by a deadline (a micro-batch due while no more data comes) needs no thread of its own.
* ``_handle_on_message`` skips paho's topic matcher when no per-topic callback is
  registered (the worker registers none); it cost ~7 % of the worker's CPU.

These lean on paho internals of the 2.2 line (listed, each with its reason, in
docs/mqtt.md), so importing this module with another paho-mqtt raises ImportError
(:func:`check_paho_version`). The unit tests in tests/unit/mqtt drive the reader through a
local socket, and the integration tests run it over TCP, TLS and WebSockets and check that
acknowledged readings are not redelivered after a restart: they break if these internals
change.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from typing import Final

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from iot_mqtt.codec import MalformedPacket, Publish
from iot_mqtt.wire import Control, packet_size, split_packets

__all__ = ["SUPPORTED_PAHO", "WorkerClient", "check_paho_version"]

SUPPORTED_PAHO: Final = "2.2"
"""The paho-mqtt minor version whose internals :class:`WorkerClient` uses."""


def check_paho_version(version: str) -> None:
    """Raise ImportError unless ``version`` (paho-mqtt's) is in the :data:`SUPPORTED_PAHO`
    line: another minor version may have renamed or changed the internals used here."""
    if version.split(".")[:2] != SUPPORTED_PAHO.split("."):
        raise ImportError(
            f"iot_mqtt.paho_client needs paho-mqtt {SUPPORTED_PAHO}.x, found {version}: its"
            " fast reader uses paho internals of that version (see docs/mqtt.md)"
        )


check_paho_version(paho.mqtt.__version__)

_PUBACK: Final = 0x40
_WOKEN: Final = 0.0002
"""A ``select`` longer than this slept until data came (shorter: the data was there)."""
_PUBACK_PACKET: Final = struct.Struct("!BBH")


class WorkerClient(mqtt.Client):
    """A paho client that reads many packets per ``recv`` and acknowledges QoS 1 messages
    in batches; connecting, keepalive and subscribing stay paho's."""

    _filtered_callbacks = False
    _rest: tuple[bytes, ...] = ()
    """Pieces of a packet still arriving (joined once it is complete: a large packet in
    many reads is copied once, not once per read)."""
    _rest_len = 0
    _rest_need = 0
    """Bytes the pieces must add up to before splitting is worth trying again."""

    on_publishes: Callable[[list[Publish]], None] | None = None
    """Receives the QoS 0/1 PUBLISH packets of each socket read, in order, on the network
    thread; when None (the default) paho delivers every message to ``on_message``."""

    read_size = 256 * 1024
    """Bytes asked of one ``recv`` on the fast path."""

    read_interval = 0.0
    """Seconds between two reads at least, on the fast path: a read sooner than that waits
    for the rest of the interval, so that more messages arrive in one ``recv``."""
    _last_read = 0.0
    _looked_at = 0.0
    """When this thread last began to wait for data (its ``select``)."""
    _quiet_at = 0.0
    """When a turn of the loop last ended without a read (nothing was waiting then)."""
    read_since = 0.0
    """When what the latest read brought began to wait in the socket (``time.monotonic()``,
    fast path): the read before it when the data was there as soon as this thread looked
    (a busy connection, or this thread busy elsewhere: scoring a batch), else when its
    ``select`` woke for the data. Its messages arrived after that."""
    _flowing = False
    """Whether the last read brought more than one packet (traffic is steady)."""

    on_timer: Callable[[], float | None] | None = None
    """Called on the network thread once :attr:`timer_at` has passed (checked after each
    turn of paho's loop, whose ``select`` waits no longer than that); returns the seconds
    until it wants to be called again, or None for not until :attr:`timer_at` is set
    again."""

    timer_at: float | None = None
    """``time.monotonic()`` at which to call :attr:`on_timer` (None: no timer). Set it
    with :meth:`set_timer`, from the network thread."""

    last_network_error: OSError | None = None
    """The last error connecting or reading (paho retries and only logs it at debug): a
    refused connection, a failed TLS handshake, a certificate the broker rejected."""

    @property
    def pending_bytes(self) -> int:
        """Bytes received of a packet still arriving (0 between packets)."""
        return self._rest_len

    def message_callback_add(self, sub: str, callback: mqtt.CallbackOnMessage) -> None:
        """As paho's; also turns the per-topic matcher back on."""
        self._filtered_callbacks = True
        super().message_callback_add(sub, callback)

    def ack_many(self, mids: Iterable[int]) -> int:
        """Send a PUBACK for each packet id in one write; returns how many.

        A PUBACK with remaining length 2 means success in MQTT 3.1.1 and 5 alike.
        """
        packet = b"".join(_PUBACK_PACKET.pack(_PUBACK, 2, mid) for mid in mids)
        count = len(packet) // _PUBACK_PACKET.size
        if packet and threading.current_thread() is self._thread and not self._out_packet:
            # on the network thread with nothing queued before: write now (paho would wake
            # this same thread through its socket pair and write on its next loop turn)
            with contextlib.suppress(OSError):  # would block, or the connection is gone:
                packet = packet[self._sock_send(packet) :]  # paho's loop sees to it
        if packet:
            self._packet_queue(_PUBACK, packet, 0, 0)
        return count

    def set_timer(self, delay: float | None) -> None:
        """Call :attr:`on_timer` ``delay`` seconds from now (None: cancel); network thread
        only (another thread's timer would wait out the ``select`` already begun)."""
        self.timer_at = None if delay is None else time.monotonic() + delay

    def _loop(self, timeout: float = 1.0) -> MQTTErrorCode:
        """paho's loop turn, waiting no longer than the timer; then the timer if due."""
        at = self.timer_at
        now = time.monotonic()
        if self._flowing and self.read_interval:
            # readings are flowing: wait out the read interval before the select, which then
            # finds data at once (one wake-up per read instead of two: one in the select
            # when the first bytes come, one after the interval's sleep)
            rest = self._last_read + self.read_interval - now
            if at is not None:
                rest = min(rest, at - now)
            if rest > 0:
                time.sleep(rest)
                now = time.monotonic()
        if at is not None:
            timeout = max(0.0, min(timeout, at - now))
        self._looked_at = time.monotonic()
        rc = super()._loop(timeout)
        if self._last_read < self._looked_at:  # no read: the socket had nothing just now
            self._quiet_at = time.monotonic()
        at, on_timer = self.timer_at, self.on_timer
        if at is not None and on_timer is not None and time.monotonic() >= at:
            self.set_timer(on_timer())
        return rc

    def reconnect(self) -> MQTTErrorCode:
        """As paho's; also forgets a packet cut short by the old connection and remembers
        why a failed attempt failed (:attr:`last_network_error`)."""
        self._rest, self._rest_len, self._rest_need = (), 0, 0
        try:
            return super().reconnect()
        except OSError as exc:  # refused, unreachable, TLS handshake, ...
            self.last_network_error = exc
            raise

    def _packet_read(self) -> MQTTErrorCode:
        on_publishes = self.on_publishes
        if on_publishes is None:
            return super()._packet_read()
        woke, before = time.monotonic(), self._last_read
        if not self._flowing and before < self._looked_at and woke - self._looked_at > _WOKEN:
            self.read_since = woke  # a trickle: the select slept until the data came
        else:  # while readings flow the data waits for this thread, never the other way
            self.read_since = max(before, self._quiet_at) or woke
        if self.read_interval:
            # wait out the read interval, but not past the timer: what is due then (a batch
            # at its deadline) takes what has arrived by then, not a read interval later
            read_at = before + self.read_interval
            if (at := self.timer_at) is not None:
                read_at = min(read_at, at)
            if (wait := read_at - woke) > 0:
                time.sleep(wait)
        self._last_read = time.monotonic()
        try:
            chunk = self._sock_recv(self.read_size)
        except BlockingIOError:
            return MQTTErrorCode.MQTT_ERR_AGAIN
        except OSError as err:  # TimeoutError included
            self._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
            self.last_network_error = err
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if not chunk:
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        lost = False
        if type(self._sock) is not socket.socket:
            chunk, lost = self._drain(chunk)
        with self._msgtime_mutex:
            self._last_bytes_received = time.monotonic()
        if self._rest:
            if self._rest_len + len(chunk) < self._rest_need:  # still incomplete
                self._rest += (chunk,)
                self._rest_len += len(chunk)
                return MQTTErrorCode.MQTT_ERR_CONN_LOST if lost else MQTTErrorCode.MQTT_ERR_SUCCESS
            data = b"".join((*self._rest, chunk))
        else:
            data = chunk
        try:
            packets, used = split_packets(data, self.protocol == mqtt.MQTTv5)
        except MalformedPacket as exc:
            self._easy_log(mqtt.MQTT_LOG_ERR, "received a malformed packet: %s", exc)
            return MQTTErrorCode.MQTT_ERR_PROTOCOL
        if used < len(data):
            rest = data[used:]
            self._rest, self._rest_len = (rest,), len(rest)
            self._rest_need = packet_size(rest) or 0
        else:
            self._rest, self._rest_len, self._rest_need = (), 0, 0
        publishes: list[Publish] = []
        for packet in packets:
            if isinstance(packet, Publish):
                publishes.append(packet)
                continue
            if publishes:  # keep the order of messages and control packets
                on_publishes(publishes)
                publishes = []
            rc = self._handle_control(packet)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc
        if publishes:
            on_publishes(publishes)
        self._flowing = len(packets) > 1
        return MQTTErrorCode.MQTT_ERR_CONN_LOST if lost else MQTTErrorCode.MQTT_ERR_SUCCESS

    def _drain(self, first: bytes) -> tuple[bytes, bool]:
        """Read on until the socket would block or ``read_size`` bytes are in.

        A TLS socket returns one record per ``recv`` and paho's WebSocket wrapper one frame,
        and Mosquitto sends each packet in a record (frame) of its own: without this, every
        read would bring one message. A plain TCP ``recv`` already returns all there is.
        Returns the bytes and whether the connection ended meanwhile (what came before
        the end is still delivered).
        """
        chunks = [first]
        total = len(first)
        while total < self.read_size:
            try:
                more = self._sock_recv(self.read_size - total)
            except BlockingIOError:
                break
            except OSError as err:
                self._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
                self.last_network_error = err
                return b"".join(chunks), True
            if not more:
                return b"".join(chunks), True
            chunks.append(more)
            total += len(more)
        return (first if len(chunks) == 1 else b"".join(chunks)), False

    def _handle_control(self, packet: Control) -> MQTTErrorCode:
        """Let paho handle one whole packet, as if its own reader had just read it."""
        self._in_packet = {
            "command": packet.header,
            "have_remaining": 1,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": len(packet.body),
            "packet": bytearray(packet.body),
            "to_process": 0,
            "pos": 0,
        }
        try:
            rc = self._packet_handle()
        except MalformedPacket as exc:
            self._easy_log(mqtt.MQTT_LOG_ERR, "received a malformed packet: %s", exc)
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        finally:
            self._in_packet = {
                "command": 0,
                "have_remaining": 0,
                "remaining_count": [],
                "remaining_mult": 1,
                "remaining_length": 0,
                "packet": bytearray(b""),
                "to_process": 0,
                "pos": 0,
            }
        return rc

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
