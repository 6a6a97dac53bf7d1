"""The staging stream's entries: a reading as the ingest received it from the broker.

``iotstream ingest`` appends one entry per MQTT message to :attr:`RedisKeys.ingest
<iot_contract.RedisKeys.ingest>` and acknowledges the message to the broker only once the
entry is stored; workers read entries through a consumer group. The payload is kept exactly
as received (bytes, undecoded): decoding and validation stay the worker's, so a malformed
reading is dead-lettered by the worker with the same reasons as on the direct path.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "STAGED_CONTENT_TYPE",
    "STAGED_PAYLOAD",
    "STAGED_RECEIVED",
    "STAGED_TOPIC",
    "StagedReading",
    "parse_staged",
    "staged_fields",
]

STAGED_TOPIC: Final = b"t"
"""The MQTT topic the reading arrived on."""
STAGED_PAYLOAD: Final = b"p"
"""The MQTT payload, byte for byte."""
STAGED_CONTENT_TYPE: Final = b"c"
"""The MQTT 5 content type, empty when the message had none."""
STAGED_RECEIVED: Final = b"r"
"""When the ingest received it (epoch seconds, ``repr`` of a float)."""

StagedReading = tuple[str, bytes, str | None, float]
"""``(topic, payload, content_type, received_ts)``."""


def staged_fields(
    topic: str, payload: bytes, content_type: str | None, received_ts: float
) -> dict[bytes, bytes]:
    """The fields of one staging entry (for ``XADD``)."""
    return {
        STAGED_TOPIC: topic.encode(),
        STAGED_PAYLOAD: payload,
        STAGED_CONTENT_TYPE: (content_type or "").encode(),
        STAGED_RECEIVED: repr(received_ts).encode(),
    }


def parse_staged(fields: dict[bytes, bytes]) -> StagedReading:
    """The reading of one staging entry, as read back with ``XREADGROUP``.

    Raises:
        KeyError, ValueError, UnicodeDecodeError: not an entry written by
            :func:`staged_fields` (the worker dead-letters it as malformed).
    """
    content_type = fields[STAGED_CONTENT_TYPE].decode()
    return (
        fields[STAGED_TOPIC].decode(),
        fields[STAGED_PAYLOAD],
        content_type or None,
        float(fields[STAGED_RECEIVED]),
    )
