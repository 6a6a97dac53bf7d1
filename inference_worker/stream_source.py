"""Readings from the Redis staging stream, through a consumer group (``WORKER_SOURCE=stream``).

``iotstream ingest`` (:mod:`inference_worker.ingest`) appends every reading the broker
delivers to :attr:`RedisKeys.ingest <iot_contract.RedisKeys.ingest>` before acknowledging
it. Workers read that stream with ``XREADGROUP`` in the group ``share_group`` under their
``worker_id``, and ``XACK`` an entry once its prediction (or dead letter) is stored.

Delivery guarantee: at-least-once. An entry read and not acknowledged stays in the group's
pending list: a worker that comes back with the same id reads its own pending entries
first, and every worker claims (``XAUTOCLAIM``) entries that another consumer left pending
longer than ``claim_idle_s`` — a killed, frozen (SIGSTOP) or hung worker's readings are
scored by the others within ``claim_idle_s + claim_every_s`` plus a batch. A reading scored
twice that way is stored once (the sink deduplicates).

One thread per source reads the stream into the same bounded hand-over buffer as the MQTT
source (policy: block the reader). While the buffer is full nothing more is read, so the
backlog stays in Redis. Acknowledged entries are trimmed (``XTRIM MINID``) below the
oldest entry still pending or not yet delivered, so the stream holds only unfinished work.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any, Self

import redis

from inference_worker.buffer import BoundedBuffer
from inference_worker.bus import BufferedIntake, Incoming
from inference_worker.settings import WorkerSettings
from iot_contract import RedisKeys
from iot_contract.staging import parse_staged

__all__ = ["StreamSource"]

log = logging.getLogger(__name__)

_BAD_ENTRY_TOPIC = "$staging/unreadable"
"""Topic given to a staging entry that does not parse (the worker dead-letters it)."""


class StreamSource(BufferedIntake):
    """Consumer ``settings.worker_id`` of group ``settings.share_group`` on the staging
    stream. Use as a context manager: entering creates the group if needed and starts the
    reader thread; exiting stops it (pending entries stay for this id or the others)."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.keys = RedisKeys(settings.redis_prefix)
        self.stream = self.keys.ingest
        self.group = settings.share_group
        self.consumer = settings.worker_id
        self.buffer: BoundedBuffer[Incoming] = BoundedBuffer(settings.queue_size)
        self.blocked_seconds = 0.0
        self.claimed = 0
        """Entries taken over from other consumers."""
        self.client: redis.Redis = redis.Redis.from_url(
            settings.redis_url, socket_timeout=5, socket_connect_timeout=5
        )
        self._connected = threading.Event()
        self._reading = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream-reader", daemon=True)
        self._count = max(1, 4 * settings.max_batch)

    # --- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> Self:
        self._reading.set()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._reading.clear()
        self.buffer.close()
        self._thread.join(10)
        self.client.close()

    # --- ReadingSource ---------------------------------------------------------------------
    def ready(self) -> bool:
        """The group exists and the last read worked."""
        return self._connected.is_set()

    def ack(self, items: Iterable[Incoming]) -> int:
        """``XACK`` the entries. A failed ack is logged and leaves them pending: they are
        claimed and scored again, and the sink stores them once."""
        ids = [item.entry_id for item in items if item.entry_id is not None]
        if not ids:
            return 0
        try:
            return int(self.client.xack(self.stream, self.group, *ids))
        except redis.RedisError as exc:
            log.warning("XACK of %d entries failed (%s); they will be claimed again", len(ids), exc)
            return 0

    def unsubscribe(self, timeout: float = 5.0) -> bool:
        """Stop reading new entries (those already read are finished by the worker)."""
        self._reading.clear()
        return True

    def reply(self, topic: str, payload: bytes) -> None:
        """Not available: the staged intake has no connection to the broker."""
        raise NotImplementedError("publish_inference needs WORKER_SOURCE=mqtt")

    # --- the reader thread -----------------------------------------------------------------
    def _run(self) -> None:
        delay = 0.1
        own_cursor: str | None = "0"  # at start, first what this id left unacknowledged
        next_claim = 0.0
        while not self._stop.is_set():
            try:
                if not self._connected.is_set():
                    self._ensure_group()
                    self._connected.set()
                    log.info("reading %s as %s/%s", self.stream, self.group, self.consumer)
                if not self._reading.is_set():
                    self._stop.wait(0.05)
                    continue
                now = time.monotonic()
                if now >= next_claim:
                    self._claim()
                    self._trim()
                    next_claim = now + self.settings.claim_every_s
                if own_cursor is not None:
                    own_cursor = self._read(own_cursor)
                else:
                    self._read(">", block_ms=100)
                delay = 0.1
            except redis.RedisError as exc:
                self._connected.clear()
                log.warning("staging stream read failed (%s); retrying in %.1fs", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def _ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            log.info("created consumer group %s on %s", self.group, self.stream)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _read(self, start: str, block_ms: int | None = None) -> str | None:
        """Read entries after ``start`` into the buffer: ``>`` new ones; an id, this
        consumer's own pending entries after it. Returns the id to go on from for pending
        entries (``None``: there are no more)."""
        reply: Any = self.client.xreadgroup(
            self.group, self.consumer, {self.stream: start}, count=self._count, block=block_ms
        )
        entries = reply[0][1] if reply else []
        if not entries:
            return None
        self._deliver(entries)
        last = entries[-1][0]
        return last.decode() if isinstance(last, bytes) else str(last)

    def _claim(self) -> None:
        """Take over entries other consumers left pending longer than ``claim_idle_s``."""
        idle_ms = int(self.settings.claim_idle_s * 1000)
        cursor = "0-0"
        for _ in range(64):  # at most 64 x count entries per pass; the rest next pass
            reply: Any = self.client.xautoclaim(
                self.stream, self.group, self.consumer, idle_ms, cursor, count=self._count
            )
            cursor, entries = reply[0], reply[1]
            entries = [e for e in entries if e[1]]  # trimmed-away entries come back empty
            if entries:
                self.claimed += len(entries)
                log.warning(
                    "claimed %d readings another worker left unacknowledged for over %.1fs",
                    len(entries),
                    self.settings.claim_idle_s,
                )
                self._deliver(entries)
            if cursor in (b"0-0", "0-0"):
                return

    def _trim(self) -> None:
        """Drop entries every consumer is done with: below the oldest pending entry, and
        not past the last one delivered."""
        groups: Any = self.client.xinfo_groups(self.stream)
        floor: bytes | None = None
        for info in groups:
            last = info["last-delivered-id"]
            summary: Any = self.client.xpending(self.stream, info["name"])
            oldest = summary["min"] if summary["pending"] else None
            low = min(_id_key(last), _id_key(oldest)) if oldest else _id_key(last)
            candidate = f"{low[0]}-{low[1]}".encode()
            if floor is None or _id_key(candidate) < _id_key(floor):
                floor = candidate
        if floor is not None and floor != b"0-0":
            self.client.xtrim(self.stream, minid=floor, approximate=True)

    def _deliver(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        now, queued_at = time.time(), time.monotonic()
        items = []
        for entry_id, fields in entries:
            try:
                topic, payload, content_type, received = parse_staged(fields)
            except (KeyError, ValueError, UnicodeDecodeError):
                topic, payload, content_type, received = _BAD_ENTRY_TOPIC, b"", None, now
            items.append(
                Incoming(topic, payload, content_type, 0, 1, received, 0, entry_id, queued_at)
            )
        self.blocked_seconds += self.buffer.put_many(items)


def _id_key(stream_id: bytes | str) -> tuple[int, int]:
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)
