"""Dynamic batching for request/response inference: concurrent requests (REST or gRPC) are
gathered into micro-batches by the same pure batcher and cut policies the streaming workers
use (:mod:`iot_batching`: ``fixed`` closes at ``max_size`` requests or ``max_wait`` after the
first; ``adaptive`` also closes early when waiting is not expected to pay), scored with one
core call, and each caller gets its own rows back.

Bounded: at most ``max_queue`` requests wait (in the open batch, in closed batches, or in
the running one); the next is refused with :class:`~gateway.oip.errors.OverloadedError` (policy:
reject the newcomer; HTTP 429, gRPC RESOURCE_EXHAUSTED), counted in
``iotstream_gateway_oip_rejections_total{reason="queue_full"}``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import anyio

from gateway.oip.errors import OverloadedError
from iot_batching import Batcher, CutPolicy
from iot_contract import ContractError, PredictionRecord, Reading
from iot_models.core import BatchResult

__all__ = ["RequestBatcher", "RequestResult"]

Scorer = Callable[[Sequence[Reading]], Awaitable[BatchResult]]


@dataclass(slots=True)
class RequestResult:
    """One request's share of a batch, indices relative to the request."""

    records: list[PredictionRecord] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    rejected: list[tuple[int, ContractError]] = field(default_factory=list)
    batch_requests: int = 1
    """How many requests the batch that scored this one held."""


@dataclass(slots=True)
class _Request:
    readings: Sequence[Reading]
    future: asyncio.Future[RequestResult]


class RequestBatcher:
    """Gathers requests into batches; run :meth:`run` in a task group, call :meth:`infer`.

    Args:
        score: scores one batch of readings (the gateway's predictor: the inference core in
            a worker thread, one batch at a time).
        policy: when a batch closes (``max_size`` requests, 1 turning batching off; at the
            latest ``max_wait`` after its first request).
        max_queue: requests waiting or being scored at most; more are refused.
        on_batch: called with ``(requests, readings)`` of each batch scored (metrics).
        clock: monotonic seconds, for the cut policy.
    """

    def __init__(
        self,
        score: Scorer,
        *,
        policy: CutPolicy,
        max_queue: int,
        on_batch: Callable[[int, int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._score = score
        self._batcher = Batcher[_Request](policy)
        self._ready: deque[list[_Request]] = deque()
        self._wake = anyio.Event()
        self._max_queue = max_queue
        self._on_batch = on_batch
        self._clock = clock
        self.pending = 0
        """Requests accepted and not yet answered (what ``max_queue`` bounds)."""

    async def infer(self, readings: Sequence[Reading]) -> RequestResult:
        """Score ``readings`` as part of the next batch.

        Raises:
            OverloadedError: ``max_queue`` requests are already waiting.
        """
        if self.pending >= self._max_queue:
            raise OverloadedError(
                f"inference queue full ({self._max_queue} requests waiting); retry later"
            )
        request = _Request(readings, asyncio.get_running_loop().create_future())
        self.pending += 1
        try:
            closed = self._batcher.add(request, self._clock())
            if closed is not None:
                self._ready.append(closed)
            self._wake.set()
            return await request.future
        finally:
            self.pending -= 1

    async def run(self) -> None:
        """Cut batches when due and score them one after another, until cancelled."""
        while True:
            if self._ready:
                await self._run_batch(self._ready.popleft())
                continue
            wait = self._batcher.wait(self._clock())
            if wait is None:
                await self._wake.wait()
            else:
                with anyio.move_on_after(max(0.0, wait.until - self._clock())):
                    await self._wake.wait()
            self._wake = anyio.Event()
            due = self._batcher.poll(self._clock())
            if due is not None:
                self._ready.append(due)

    async def _run_batch(self, batch: list[_Request]) -> None:
        live = [r for r in batch if not r.future.done()]  # callers gone: skip their rows
        if not live:
            return
        readings = [reading for r in live for reading in r.readings]
        try:
            result = await self._score(readings)
        except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
            for r in live:
                if not r.future.done():
                    r.future.set_exception(exc)
            return
        if self._on_batch is not None:
            self._on_batch(len(live), len(readings))
        for r, share in zip(live, _split(result, [len(r.readings) for r in live]), strict=True):
            share.batch_requests = len(live)
            if not r.future.done():
                r.future.set_result(share)


def _split(result: BatchResult, sizes: list[int]) -> list[RequestResult]:
    """Cut a batch's result into each request's rows (both lists are in input order)."""
    starts, total = [], 0
    for size in sizes:
        starts.append(total)
        total += size
    shares = [RequestResult() for _ in sizes]
    owner = [k for k, size in enumerate(sizes) for _ in range(size)]
    for index, record in zip(result.indices, result.records, strict=True):
        k = owner[index]
        shares[k].records.append(record)
        shares[k].indices.append(index - starts[k])
    for index, error in result.rejected:
        k = owner[index]
        shares[k].rejected.append((index - starts[k], error))
    return shares
