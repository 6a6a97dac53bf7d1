"""A minimal MQTT 3.1.1 publisher for the simulator's benchmark load (``--load-client raw``).

paho spends ~80 µs of CPU per QoS 1 reading on publishing and PUBACK handling, which on a
small machine leaves little for the system under test. This client only publishes: it
builds PUBLISH packets directly, writes them in batches, and parses PUBACKs in bulk. It
speaks plain TCP (no TLS, no WebSockets) and keeps unacknowledged QoS 1 packets to resend
them (with the DUP flag) after a reconnect. Devices in ``devices`` mode and every other
transport use paho.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from typing import Final

from iot_mqtt.codec import MalformedPacket, decode_varint, encode_publish, encode_varint, set_dup

__all__ = ["RawPublisher", "RawPublisherError"]

_CONNECT: Final = 0x10
_CONNACK: Final = 0x20
_PUBACK: Final = 0x40
_PINGREQ: Final = b"\xc0\x00"
_DISCONNECT: Final = b"\xe0\x00"


class RawPublisherError(ConnectionError):
    """The broker refused the connection or could not be reached."""


def _string(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(data)) + data


class RawPublisher:
    """One pipelined MQTT 3.1.1 connection that publishes (QoS 0 or 1).

    Args:
        host: broker host.
        port: broker port (plain TCP).
        client_id: MQTT client id.
        username: optional user name.
        password: optional password.
        max_inflight: QoS 1 packets sent and not yet acknowledged, at most.
        keepalive: seconds; call :meth:`keep_alive` to honour it.
    """

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        *,
        username: str | None = None,
        password: str | None = None,
        max_inflight: int = 1000,
        keepalive: int = 60,
    ) -> None:
        self.address = (host, port)
        self.client_id = client_id
        self.username = username
        self.password = password
        self.max_inflight = max_inflight
        self.keepalive = keepalive
        self.acked = 0
        self.inflight: dict[int, bytes] = {}
        self.sock: socket.socket | None = None
        self._out = bytearray()
        self._in = bytearray()
        self._next_mid = 1
        self._next_ping = 0.0

    @property
    def connected(self) -> bool:
        """Whether the socket is open."""
        return self.sock is not None

    @property
    def queued_bytes(self) -> int:
        """Bytes queued and not yet written."""
        return len(self._out)

    def connect(self, timeout: float = 10.0) -> None:
        """Connect (clean session) and queue unacknowledged packets again, flagged DUP.

        Raises:
            RawPublisherError: the broker is unreachable or refused the connection.
        """
        try:
            sock = socket.create_connection(self.address, timeout=timeout)
        except OSError as exc:
            raise RawPublisherError(f"cannot reach {self.address}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        flags, payload = 0x02, _string(self.client_id)
        if self.username is not None:
            flags |= 0x80
            payload += _string(self.username)
            if self.password is not None:
                flags |= 0x40
                payload += _string(self.password)
        body = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", self.keepalive) + payload
        try:
            sock.sendall(bytes([_CONNECT]) + encode_varint(len(body)) + body)
            connack = b""
            while len(connack) < 4:
                chunk = sock.recv(4 - len(connack))
                if not chunk:
                    raise RawPublisherError("the broker closed the connection before CONNACK")
                connack += chunk
        except OSError as exc:
            sock.close()
            raise RawPublisherError(f"connect to {self.address} failed: {exc}") from exc
        if connack[0] != _CONNACK or connack[3] != 0:
            sock.close()
            raise RawPublisherError(f"the broker refused the connection (CONNACK {connack!r})")
        sock.setblocking(False)
        self.sock = sock
        self._in.clear()
        self._out = bytearray(b"".join(set_dup(p) for p in self.inflight.values()))

    def close(self) -> None:
        """Send what is queued and DISCONNECT (best effort), then close the socket."""
        if self.sock is None:
            return
        with contextlib.suppress(OSError):
            self.sock.setblocking(True)
            self.sock.settimeout(2.0)
            self.sock.sendall(bytes(self._out) + _DISCONNECT)
        self._out.clear()
        self.sock.close()
        self.sock = None

    def publish(self, topic: bytes, payload: bytes, qos: int) -> bool:
        """Queue one PUBLISH; ``False`` (nothing queued) when the QoS 1 window is full."""
        if qos == 0:
            self._out += encode_publish(topic, payload)
            return True
        if len(self.inflight) >= self.max_inflight:
            return False
        mid = self._mid()
        packet = encode_publish(topic, payload, 1, mid)
        self.inflight[mid] = packet
        self._out += packet
        return True

    def ping(self) -> None:
        """Queue a PINGREQ."""
        self._out += _PINGREQ

    def keep_alive(self, now: float) -> None:
        """Queue a PINGREQ when a quarter of the keepalive period has passed since the last
        one (``now`` from :func:`time.monotonic`; call at least that often). The broker
        drops a connection it hears nothing from for 1.5 periods; a quarter leaves room
        for a busy load loop that calls late."""
        if now >= self._next_ping:
            self.ping()
            self._next_ping = now + self.keepalive / 4

    def wants_write(self) -> bool:
        """Whether queued bytes wait to be written."""
        return bool(self._out) and self.sock is not None

    def flush(self) -> None:
        """Write as much queued data as the socket takes now."""
        if self.sock is None or not self._out:
            return
        try:
            sent = self.sock.send(self._out)
        except BlockingIOError:
            return
        except OSError:
            self._lost()
            return
        del self._out[:sent]

    def read(self) -> int:
        """Read what arrived and count PUBACKs; returns how many were acknowledged."""
        if self.sock is None:
            return 0
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return 0
        except OSError:
            self._lost()
            return 0
        if not data:
            self._lost()
            return 0
        try:
            return self.received(data)
        except MalformedPacket:  # the stream cannot be followed any more: reconnect
            self._lost()
            return 0

    def received(self, data: bytes) -> int:
        """Take bytes read from the broker and count the PUBACKs completed by them (a
        packet may span reads); returns how many packets were acknowledged.

        Raises:
            MalformedPacket: a remaining length longer than the protocol allows.
        """
        buf = self._in
        buf += data
        pos, acked, end = 0, 0, len(buf)
        while pos + 1 < end:
            length, body = decode_varint(buf, pos + 1, end)
            if length < 0 or body + length > end:
                break
            is_puback = buf[pos] & 0xF0 == _PUBACK and length == 2
            if is_puback and self.inflight.pop((buf[body] << 8) | buf[body + 1], None) is not None:
                acked += 1
            pos = body + length
        del buf[:pos]
        self.acked += acked
        return acked

    def _mid(self) -> int:
        mid = self._next_mid
        while mid in self.inflight:
            mid = mid % 65535 + 1
        self._next_mid = mid % 65535 + 1
        return mid

    def _lost(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
