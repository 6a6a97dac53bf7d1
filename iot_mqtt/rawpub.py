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

__all__ = ["RawPublisher", "RawPublisherError", "encode_varint"]

_CONNECT: Final = 0x10
_CONNACK: Final = 0x20
_PUBLISH: Final = 0x30
_PUBACK: Final = 0x40
_PINGREQ: Final = b"\xc0\x00"
_DISCONNECT: Final = b"\xe0\x00"
_DUP: Final = 0x08


class RawPublisherError(ConnectionError):
    """The broker refused the connection or could not be reached."""


def encode_varint(n: int) -> bytes:
    """MQTT's variable-length integer (remaining length)."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


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
        keepalive: seconds; call :meth:`ping` about twice per period.
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

    @property
    def connected(self) -> bool:
        """Whether the socket is open."""
        return self.sock is not None

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
        self._out = bytearray(
            b"".join(bytes([p[0] | _DUP]) + p[1:] for p in self.inflight.values())
        )

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
            body = _string(topic) + payload
            self._out += bytes([_PUBLISH]) + encode_varint(len(body)) + body
            return True
        if len(self.inflight) >= self.max_inflight:
            return False
        mid = self._mid()
        body = _string(topic) + struct.pack("!H", mid) + payload
        packet = bytes([_PUBLISH | 0x02]) + encode_varint(len(body)) + body
        self.inflight[mid] = packet
        self._out += packet
        return True

    def ping(self) -> None:
        """Queue a PINGREQ (keepalive)."""
        self._out += _PINGREQ

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
        self._in += data
        return self._parse()

    def _parse(self) -> int:
        buf, pos, acked, end = self._in, 0, 0, len(self._in)
        while pos + 2 <= end:
            length, shift, i, complete = 0, 0, pos + 1, False
            while i < end and shift <= 21:
                byte = buf[i]
                i += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    complete = True
                    break
            if not complete or i + length > end:
                break
            is_puback = buf[pos] & 0xF0 == _PUBACK and length == 2
            if is_puback and self.inflight.pop((buf[i] << 8) | buf[i + 1], None) is not None:
                acked += 1
            pos = i + length
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
