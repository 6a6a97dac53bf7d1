"""Builders shared by the gateway tests: settings, tokens, and predictions written to Redis
in the workers' layout (stream entry ``{m: Prediction JSON}`` added with ``MAXLEN ~``, the
latest-value hash, the epoch set with ``SET NX``). The tests that need the worker itself run
it (test_gateway_pipeline, test_dashboard_browser)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from typing import Any

import jwt
import redis

from gateway import GatewaySettings
from iot_contract import RECORD_FIELD, Hops, JsonCodec, ModelRef, Prediction, RedisKeys

SECRET = "test-secret-" + "x" * 40
AUDIENCE = "iotstream-gateway"
ORIGIN = "http://dashboard.example"


def make_settings(redis_url: str, keys: RedisKeys, **overrides: Any) -> GatewaySettings:
    """Settings for a test gateway on ``redis_url`` under ``keys.prefix``."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "redis_prefix": keys.prefix,
        "jwt_secret": SECRET,
        "allowed_origins": [ORIGIN],
        "models_dir": "/nonexistent-models",
        "heartbeat_s": 30.0,
        "read_block_ms": 200,
    }
    values.update(overrides)
    return GatewaySettings(**values)


def token(**claims: Any) -> str:
    """An HS256 token for the test secret; claims override the valid defaults."""
    payload: dict[str, Any] = {"sub": "tester", "aud": AUDIENCE, "exp": int(time.time()) + 600}
    payload.update(claims)
    key = payload.pop("_key", SECRET)
    alg = payload.pop("_alg", "HS256")
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm=alg)


def prediction(device: str, seq: int, *, anomaly: bool = False, model: str = "m1") -> Prediction:
    """A plausible prediction for ``device``/``seq``."""
    now = time.time()
    return Prediction(
        device_id=device,
        seq=seq,
        model=ModelRef(name=model, version="1", variant="fp32"),
        score=0.9 if anomaly else 0.1,
        anomaly=anomaly,
        hops=Hops(device_ts=now, received_ts=now, inferred_ts=now),
        worker_id="test-worker",
    )


class Feeder:
    """Writes predictions the way a worker does: one pipeline per batch, ``published_ts``
    stamped at write time."""

    def __init__(self, redis_url: str, keys: RedisKeys, maxlen: int = 1_000_000) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.keys = keys
        self.maxlen = maxlen
        self.client.set(keys.epoch, secrets.token_hex(8), nx=True)
        self.epoch = (self.client.get(keys.epoch) or b"").decode()  # type: ignore[union-attr]
        self._codec = JsonCodec()

    def write(self, predictions: Iterable[Prediction]) -> None:
        """Store a batch."""
        now = time.time()
        with self.client.pipeline(transaction=False) as pipe:
            for p in predictions:
                stamped = p.model_copy(
                    update={"hops": p.hops.model_copy(update={"published_ts": now})}
                )
                raw = self._codec.encode(stamped)
                pipe.xadd(
                    self.keys.predictions, {RECORD_FIELD: raw}, maxlen=self.maxlen, approximate=True
                )
                pipe.hset(self.keys.latest, p.device_id, raw)
            pipe.execute()

    def ids(self) -> list[str]:
        """Every id in the stream, oldest first."""
        entries: Any = self.client.xrange(self.keys.predictions)
        return [sid.decode() for sid, _ in entries]

    def close(self) -> None:
        """Drop the connection."""
        self.client.close()
