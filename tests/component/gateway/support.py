"""Builders shared by the gateway tests: settings, tokens, and predictions written to Redis
exactly the way a worker writes them (through the worker's own RedisSink)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import jwt
import redis

from gateway import GatewaySettings
from inference_worker.redis_sink import RedisSink
from iot_contract import Hops, ModelRef, Prediction, RedisKeys

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
    """Writes predictions like a worker does (dedup, XADD MAXLEN ~, latest hash)."""

    def __init__(self, redis_url: str, keys: RedisKeys, maxlen: int = 1_000_000) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.keys = keys
        self.sink = RedisSink(self.client, keys, stream_maxlen=maxlen)
        self.epoch = self.sink.ensure_epoch()

    def write(self, predictions: Iterable[Prediction]) -> None:
        """Store a batch."""
        self.sink.write(list(predictions), [], time.time())

    def ids(self) -> list[str]:
        """Every id in the stream, oldest first."""
        entries: Any = self.client.xrange(self.keys.predictions)
        return [sid.decode() for sid, _ in entries]

    def close(self) -> None:
        """Drop the connection."""
        self.client.close()
