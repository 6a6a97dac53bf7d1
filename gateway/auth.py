"""JWT bearer tokens: verification (algorithm allowlist, ``exp`` and ``aud`` required) and the
dev-mode throwaway token.

A token may carry ``devices``: a list of device ids or glob patterns; the holder then sees
only those devices, whatever it subscribes to.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Final

import jwt

from gateway.filters import DeviceMatcher
from gateway.settings import GatewaySettings

__all__ = ["BEARER_SUBPROTOCOL", "AuthError", "Principal", "TokenVerifier"]

BEARER_SUBPROTOCOL: Final = "bearer"
"""Subprotocol marker: ``Sec-WebSocket-Protocol: bearer, <token>``; the server echoes it."""
_MAX_TOKEN: Final = 8192


class AuthError(Exception):
    """The token is missing, malformed, expired, badly signed or for someone else.

    The message never contains the token.
    """


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token speaks for.

    Attributes:
        subject: the ``sub`` claim (``"anonymous"`` if absent).
        expires_at: the ``exp`` claim (epoch seconds).
        devices: what the token may see; ``None`` means every device.
    """

    subject: str
    expires_at: float
    devices: DeviceMatcher | None = None

    def may_see(self, device_id: str) -> bool:
        """Whether this principal may receive predictions of ``device_id``."""
        return self.devices is None or self.devices.match(device_id)


class TokenVerifier:
    """Checks bearer tokens against the gateway's key and policy.

    Args:
        settings: the JWT settings; in dev mode without a secret a random one is made.
    """

    def __init__(self, settings: GatewaySettings) -> None:
        self._algorithms = list(settings.jwt_algorithms)
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        # What jwt.decode checks besides the signature: the same policy for every token.
        self._checks: dict[str, Any] = {
            "algorithms": self._algorithms,
            "audience": self._audience,
            "issuer": self._issuer,
            "leeway": settings.jwt_leeway_s,
            "options": {"require": ["exp", "aud"] + (["iss"] if self._issuer else [])},
        }
        self._signing_key: str | None = None
        if settings.symmetric:
            secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""
            if not secret:  # dev mode only: the settings validator refuses this otherwise
                secret = secrets.token_urlsafe(48)
            self._key: Any = secret
            self._signing_key = secret
        else:
            self._key = settings.jwt_public_key

    def verify(self, token: str) -> Principal:
        """Verify ``token`` and return its principal.

        Raises:
            AuthError: for any reason the token is not acceptable.
        """
        if not token or len(token) > _MAX_TOKEN:
            raise AuthError("missing or oversized token")
        try:
            claims = jwt.decode(token, self._key, **self._checks)
        except jwt.PyJWTError as exc:
            raise AuthError(f"token refused: {exc.__class__.__name__}") from None
        return _principal(claims)

    def mint(self, *, subject: str = "dev", ttl_s: float = 12 * 3600, **claims: Any) -> str:
        """Sign a token with the HMAC secret (dev mode and tests only).

        Raises:
            AuthError: the gateway verifies with a public key, so it cannot sign.
        """
        if self._signing_key is None:
            raise AuthError("cannot mint tokens with a public-key configuration")
        payload = {"sub": subject, "aud": self._audience, "exp": int(time.time() + ttl_s)}
        if self._issuer:
            payload["iss"] = self._issuer
        payload.update(claims)
        return jwt.encode(payload, self._signing_key, algorithm=self._algorithms[0])


def _principal(claims: dict[str, Any]) -> Principal:
    devices = claims.get("devices")
    matcher: DeviceMatcher | None = None
    if devices is not None:
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            raise AuthError("token claim 'devices' must be a list of strings")
        matcher = DeviceMatcher(devices)
    sub = claims.get("sub")
    return Principal(
        subject=sub if isinstance(sub, str) else "anonymous",
        expires_at=float(claims["exp"]),
        devices=matcher,
    )
