"""Token verification, settings policy, Origin checks and the REST token buckets."""

from __future__ import annotations

import base64
import re
import time

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from gateway.auth import AuthError, TokenVerifier
from gateway.limits import TokenBuckets
from gateway.routes.ws import origin_allowed
from gateway.settings import DEMO_JWT_SECRET, GatewaySettings
from tests.component.gateway.support import SECRET, token


def settings(**kw: object) -> GatewaySettings:
    values: dict[str, object] = {"jwt_secret": SECRET}
    values.update(kw)
    return GatewaySettings(**values)  # type: ignore[arg-type]


def unsigned(claims: dict[str, object]) -> str:
    def b64(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


def test_valid_token_gives_principal_with_device_restriction() -> None:
    verifier = TokenVerifier(settings())
    principal = verifier.verify(token(sub="ops", devices=["pump-*"]))
    assert principal.subject == "ops"
    assert principal.may_see("pump-3") and not principal.may_see("fan-1")
    assert verifier.verify(token()).may_see("anything")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "not-a-jwt",
        token(exp=int(time.time()) - 3600),
        token(aud="someone-else"),
        token(aud=None),
        token(exp=None),
        token(_key="wrong-secret-" + "y" * 40),
        token(_alg="HS512", _key=SECRET * 2),
        token(devices="pump-1"),
        "x" * 10_000,
    ],
    ids=[
        "empty",
        "garbage",
        "expired",
        "wrong-aud",
        "no-aud",
        "no-exp",
        "bad-signature",
        "alg-not-allowed",
        "bad-devices-claim",
        "oversized",
    ],
)
def test_bad_tokens_are_refused(bad: str) -> None:
    with pytest.raises(AuthError) as info:
        TokenVerifier(settings()).verify(bad)
    assert SECRET not in str(info.value) and (not bad or bad[:20] not in str(info.value))


def test_alg_none_is_refused() -> None:
    forged = unsigned({"sub": "x", "aud": "iotstream-gateway", "exp": time.time() + 60})
    with pytest.raises(AuthError):
        TokenVerifier(settings()).verify(forged)


def test_rs256_public_key_configuration() -> None:
    import jwt

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    verifier = TokenVerifier(GatewaySettings(jwt_algorithms=["RS256"], jwt_public_key=public))
    good = jwt.encode(
        {"aud": "iotstream-gateway", "exp": int(time.time()) + 60}, key, algorithm="RS256"
    )
    assert verifier.verify(good).subject == "anonymous"
    # the HS256-with-public-key confusion attack fails: HS256 is not on the allowlist
    with pytest.raises(AuthError):
        verifier.verify(token())
    with pytest.raises(AuthError):
        verifier.mint()


@pytest.mark.parametrize(
    "kw",
    [
        {"jwt_secret": None},
        {"jwt_secret": DEMO_JWT_SECRET},
        {"jwt_secret": "short"},
        {"jwt_algorithms": ["none"]},
        {"jwt_algorithms": []},
        {"jwt_algorithms": ["HS256", "RS256"], "jwt_public_key": "k"},
        {"jwt_algorithms": ["RS256"]},
    ],
)
def test_unsafe_settings_are_refused(kw: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        settings(**kw)


def test_a_public_key_setting_that_is_not_one_is_refused_at_start() -> None:
    """A path, a private key or a truncated key would make every token fail (4401)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    cases = {
        "/etc/iotstream/jwt.pem": "not a PEM public key (it takes the key's text, not a path)",
        private: "not a PEM public key",
        public[:80]: "not a PEM public key",
    }
    for value, why in cases.items():
        with pytest.raises(ValidationError, match=re.escape(why)):
            GatewaySettings(jwt_algorithms=["RS256"], jwt_public_key=value)
    with pytest.raises(ValidationError, match="dev mode signs its own throwaway token"):
        GatewaySettings(dev_mode=True, jwt_algorithms=["RS256"], jwt_public_key=public)
    assert GatewaySettings(jwt_algorithms=["RS256"], jwt_public_key=public).jwt_public_key


def test_dev_mode_accepts_demo_secret_and_mints_tokens() -> None:
    dev = GatewaySettings(dev_mode=True, jwt_secret=DEMO_JWT_SECRET)
    verifier = TokenVerifier(dev)
    assert verifier.verify(verifier.mint(subject="dev")).subject == "dev"
    random_secret = TokenVerifier(GatewaySettings(dev_mode=True))
    assert random_secret.verify(random_secret.mint()).subject == "dev"


@pytest.mark.parametrize(
    ("origin", "host", "ok"),
    [
        ("http://dash.example", "gw:8000", True),
        ("http://evil.example", "gw:8000", False),
        ("http://gw:8000", "gw:8000", True),  # the gateway's own dashboard
        ("http://gw:8000.evil.example", "gw:8000", False),
        (None, "gw:8000", True),
        ("null", "gw:8000", False),
    ],
)
def test_origin_allowlist(origin: str | None, host: str, ok: bool) -> None:
    assert origin_allowed(origin, host, ["http://dash.example"], True) is ok


def test_missing_origin_can_be_refused() -> None:
    assert not origin_allowed(None, "gw", ["http://dash.example"], False)
    assert origin_allowed("http://any.example", "gw", ["*"], False)


def test_token_buckets_refill_at_rate_and_bound_keys() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=3, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)
    assert buckets.take("b") == 0.0  # per key
    now[0] += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
