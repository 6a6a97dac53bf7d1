"""REST protection: a token bucket per client IP and a request body size cap, as one pure
ASGI middleware (WebSockets are not affected; they have their own limits)."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.metrics import GatewayMetrics

__all__ = ["RestLimitsMiddleware", "TokenBuckets"]

_MAX_TRACKED: Final = 10_000


class TokenBuckets:
    """Token buckets by key with a bounded number of keys (least recently seen evicted).

    Args:
        rate: tokens added per second.
        burst: bucket size.
        clock: monotonic seconds (a parameter so tests control time).
    """

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """Take one token for ``key``: 0.0 if granted, else seconds until one is available."""
        now = self._clock()
        tokens, then = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > _MAX_TRACKED:
            self._buckets.popitem(last=False)
        return wait


class RestLimitsMiddleware:
    """429 when a client IP exceeds its rate on ``/v1/``; 413 when a body on ``/v1/`` or
    ``/v2/`` exceeds the cap."""

    def __init__(
        self, app: ASGIApp, *, buckets: TokenBuckets, max_body: int, metrics: GatewayMetrics
    ) -> None:
        self.app = app
        self.buckets = buckets
        self.max_body = max_body
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(("/v1/", "/v2/")):
            await self.app(scope, receive, send)
            return
        # /v2 (Open Inference Protocol) gets the size cap only: its load is bounded by the
        # dynamic batcher's queue (429 when full), and V2 load tests come from few IPs.
        client = scope.get("client")
        wait = self.buckets.take(client[0] if client else "?") if scope["path"][2] == "1" else 0.0
        if wait > 0:
            self.metrics.counter("rest_rejections").labels("rate").inc()
            response = JSONResponse(
                {"detail": "rate limit exceeded"},
                status_code=429,
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
            await response(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                await self._too_large(scope, receive, send)
                return
        # Read the (bounded) body here, so an oversized chunked upload is refused before the
        # app sees any of it; REST bodies are small, so buffering them costs little.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body:
                await self._too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.metrics.counter("rest_rejections").labels("size").inc()
        response = JSONResponse(
            {"detail": f"request body larger than {self.max_body} bytes"}, status_code=413
        )
        await response(scope, receive, send)
