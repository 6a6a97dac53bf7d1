"""Gateway settings, from ``GATEWAY_*`` environment variables.

Build them once in the entry point and pass them to :func:`gateway.create_app`; library
modules never read the environment themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from iot_models.bundled import bundled_models_dir

__all__ = ["DEMO_JWT_SECRET", "GatewaySettings", "SettingsError"]

DEMO_JWT_SECRET: Final = "iotstream-demo-secret-not-for-production-use"  # noqa: S105 - refused outside dev
"""The throwaway secret of the local demo; refused outside dev mode."""
_MIN_SECRET_BYTES: Final = {"HS256": 32, "HS384": 48, "HS512": 64}
"""RFC 7518 3.2: an HMAC key at least as long as the hash."""
_SYMMETRIC: Final = frozenset(_MIN_SECRET_BYTES)
_ASYMMETRIC: Final = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"})


class SettingsError(ValueError):
    """The settings are inconsistent or unsafe."""


def _check_public_key(pem: str) -> None:
    """Refuse a value that is not a PEM public key (a path given instead of the text, a
    private key), so that a misconfigured gateway fails at start rather than answering
    every client 4401."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        hint = (
            ""
            if pem.lstrip().startswith("-----BEGIN")
            else " (it takes the key's text, not a path)"
        )
        raise ValueError(f"GATEWAY_JWT_PUBLIC_KEY is not a PEM public key{hint}") from None


class GatewaySettings(BaseSettings):
    """Everything the gateway can be told (``GATEWAY_<FIELD>`` environment variables)."""

    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_", use_attribute_docstrings=True, extra="forbid"
    )

    # --- where it listens and reads
    host: str = "127.0.0.1"
    """Interface uvicorn binds to (``0.0.0.0`` in containers)."""
    port: int = Field(default=8000, ge=0, le=65535)
    """TCP port of the HTTP/WebSocket server."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis holding the predictions stream and the latest-value hash."""
    redis_prefix: str = "iotstream"
    """Key prefix shared with the workers (``{prefix}:predictions`` ...)."""
    redis_max_connections: int = Field(default=32, ge=2, le=1000)
    """Connections to Redis per process (one is the reader's blocking XREAD)."""

    # --- security
    dev_mode: bool = False
    """Local demo: a random signing secret and a throwaway token printed at start and served at
    ``/v1/dev-token``. Never enable it on a network others can reach."""
    jwt_secret: SecretStr | None = None
    """HMAC secret for HS256/384/512 tokens (at least 32/48/64 bytes outside dev mode)."""
    jwt_public_key: str | None = None
    """PEM public key for RS*/ES*/PS*/EdDSA tokens (instead of ``jwt_secret``): the key's
    text (``GATEWAY_JWT_PUBLIC_KEY="$(cat key.pem)"``), not a path; checked at start."""
    jwt_algorithms: Annotated[list[str], NoDecode] = ["HS256"]
    """Allowlist of token algorithms; ``none`` is never accepted."""
    jwt_audience: str = "iotstream-gateway"
    """Required ``aud`` claim."""
    jwt_issuer: str | None = None
    """Required ``iss`` claim, if set."""
    jwt_leeway_s: float = Field(default=10.0, ge=0, le=300)
    """Clock skew tolerated on ``exp``/``nbf``."""
    auth_timeout_s: float = Field(default=5.0, gt=0, le=60)
    """Time a client has to send its ``auth`` message when the token is not in the header."""
    allowed_origins: Annotated[list[str], NoDecode] = [
        "http://localhost:8000",
        "http://127.0.0.1:8000",
    ]
    """Browser origins allowed to open ``/ws`` (``*`` allows any). The gateway's own origin is
    always allowed, so its dashboard works wherever it is served from."""
    allow_missing_origin: bool = True
    """Accept WebSocket handshakes without an ``Origin`` header (non-browser clients)."""

    # --- fan-out
    read_count: int = Field(default=1000, ge=1, le=100_000)
    """Most stream entries one XREAD returns."""
    read_block_ms: int = Field(default=1000, ge=1, le=60_000)
    """XREAD BLOCK timeout; also how often the epoch is re-checked when idle."""
    batch_window_ms: float = Field(default=5.0, ge=0, le=1000)
    """Adaptive tick: the first item after a quiet spell goes out at once; while items keep
    coming, fan-out rounds are at least this far apart so they coalesce into bigger frames."""
    max_frame_items: int = Field(default=500, ge=1, le=100_000)
    """Most predictions in one frame; 1 gives one frame per prediction."""
    client_queue_items: int = Field(default=10_000, ge=1)
    """Per-client bound on queued predictions. Overflow closes the client with 4408
    (SLOW_CONSUMER) unless it subscribed with ``coalesce``: then only the newest per device is
    kept."""
    send_timeout_s: float = Field(default=10.0, gt=0)
    """A frame write that takes longer than this closes the client as slow."""
    close_timeout_s: float = Field(default=10.0, gt=0)
    """Time from the decision to close a connection until it is gone: the close frame and the
    client's answer must fit in it, else the connection is aborted (RST, queued bytes
    dropped). Until then it counts against ``max_clients``."""
    heartbeat_s: float = Field(default=15.0, gt=0)
    """A heartbeat frame goes out after this long without any other frame."""
    max_replay_items: int = Field(default=100_000, ge=1)
    """Largest gap a resume replays; a bigger gap is answered with ``recovered: false``."""
    ws_compression: bool = False
    """Offer permessage-deflate. Off by default: it compresses every frame once per client
    (the shared-bytes fan-out can't share it) and roughly halves fan-out throughput."""
    max_clients: int = Field(default=10_000, ge=1)
    """WebSocket connections beyond this are refused before accept (HTTP 403). Connections
    still authenticating or closing count."""

    # --- REST
    models_dir: Path = Field(default_factory=bundled_models_dir)
    """Model repository for ``POST /v1/predict`` (same loader as the workers); unset: the
    models shipped with iotstream (package data, ``models/`` in a checkout)."""
    default_model: str = "fault-clf"
    """Route for readings without ``model`` (keep it equal to the workers' default)."""
    model_store: str | None = None
    """Follow a model store for ``POST /v1/predict``, as the workers do with
    ``WORKER_MODEL_STORE``: serve what ``model_alias`` names (canaries included, so a
    device gets the same version on both paths) and swap when it moves."""
    model_alias: str = Field(default="production", pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    """The alias followed in ``model_store``."""
    model_poll_s: float = Field(default=2.0, gt=0)
    """Seconds between polls of the alias."""
    model_cache_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "iotstream" / "gateway-models"
    )
    """Local copies of the versions served (start while the store is down)."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    """Logging level of the gateway, uvicorn's access log included (any case in the
    environment)."""
    rest_rate_per_s: float = Field(default=50.0, gt=0)
    """Token-bucket refill rate per client IP on ``/v1/*``."""
    rest_burst: int = Field(default=100, ge=1)
    """Token-bucket size per client IP."""
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    """Largest request body accepted (413 beyond)."""
    max_batch_readings: int = Field(default=1000, ge=1)
    """Most readings one ``POST /v1/predict`` (or one Open Inference Protocol request) may carry."""

    # --- Open Inference Protocol (KServe V2): /v2 on the HTTP port, gRPC on its own port
    grpc_port: int | None = Field(default=None, ge=0, le=65535)
    """Port of the gRPC server (``inference.GRPCInferenceService`` and the standard
    ``grpc.health.v1.Health``); unset: no gRPC server. The containers use 8001 (Triton's)."""
    grpc_host: str | None = None
    """Interface of the gRPC server; unset: ``host``."""
    grpc_tls_cert: FilePath | None = None
    """PEM certificate chain: gRPC over TLS (with ``grpc_tls_key``); unset: plaintext."""
    grpc_tls_key: FilePath | None = None
    """PEM private key of ``grpc_tls_cert``."""
    oip_max_batch: int = Field(default=32, ge=1, le=4096)
    """Dynamic batching of inference requests (REST ``/v2`` and gRPC alike): most requests
    scored in one core call; 1 turns batching off."""
    oip_max_wait_ms: float = Field(default=2.0, ge=0, le=1000)
    """Dynamic batching: how long a batch stays open for more requests after its first."""
    oip_batch_policy: Literal["fixed", "adaptive"] = "fixed"
    """Dynamic batching: when a batch closes, with the workers' policies (docs/streaming.md,
    "Batch-cut policies"). ``fixed``: at ``oip_max_batch`` requests or ``oip_max_wait_ms``.
    ``adaptive``: also early when no other request is expected within
    ``oip_target_wait_ms``."""
    oip_target_wait_ms: float = Field(default=1.0, ge=0, le=1000)
    """``adaptive``: the longest a request waits for a batch that is not going to fill."""
    oip_max_queue: int = Field(default=1024, ge=1, le=1_000_000)
    """Requests accepted and not yet answered, at most; the next gets HTTP 429 / gRPC
    RESOURCE_EXHAUSTED (policy: reject the newcomer)."""

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        from redis.connection import parse_url  # redis-py's own reading of the URL

        parse_url(value)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        return value

    @field_validator("model_store")
    @classmethod
    def _store_url(cls, value: str | None) -> str | None:
        from iot_models.store.base import check_store_url

        return check_store_url(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("jwt_algorithms", "allowed_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("jwt_algorithms")
    @classmethod
    def _known_algorithms(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one algorithm is required")
        for alg in value:
            if alg not in _SYMMETRIC | _ASYMMETRIC:
                raise ValueError(f"algorithm {alg!r} is not allowed")
        return value

    @model_validator(mode="after")
    def _keys_match_policy(self) -> Self:
        wants_secret = any(a in _SYMMETRIC for a in self.jwt_algorithms)
        wants_public = any(a in _ASYMMETRIC for a in self.jwt_algorithms)
        if wants_secret and wants_public:
            raise ValueError("mix of HMAC and public-key algorithms: pick one family")
        if wants_public and not self.jwt_public_key:
            raise ValueError("a public-key algorithm needs GATEWAY_JWT_PUBLIC_KEY")
        if wants_public:
            _check_public_key(self.jwt_public_key or "")
        if self.dev_mode:
            if wants_public:
                raise ValueError(
                    "dev mode signs its own throwaway token (HS256): leave "
                    "GATEWAY_JWT_ALGORITHMS and GATEWAY_JWT_PUBLIC_KEY unset"
                )
            return self
        if wants_secret:
            secret = self.jwt_secret.get_secret_value() if self.jwt_secret else ""
            if not secret:
                raise ValueError("GATEWAY_JWT_SECRET is required outside dev mode")
            if secret == DEMO_JWT_SECRET:
                raise ValueError("the demo JWT secret is refused outside dev mode")
            need = max(_MIN_SECRET_BYTES.get(a, 0) for a in self.jwt_algorithms)
            if len(secret.encode()) < need:
                raise ValueError(f"GATEWAY_JWT_SECRET must be at least {need} bytes")
        return self

    @model_validator(mode="after")
    def _grpc_tls_pair(self) -> Self:
        if (self.grpc_tls_cert is None) != (self.grpc_tls_key is None):
            raise ValueError("GATEWAY_GRPC_TLS_CERT and GATEWAY_GRPC_TLS_KEY go together")
        return self

    @property
    def symmetric(self) -> bool:
        """True when tokens are HMAC-signed."""
        return self.jwt_algorithms[0] in _SYMMETRIC
