"""``iotstream gateway``: options come from the settings class; bad settings exit 2."""

from __future__ import annotations

import pytest

from gateway.settings import GatewaySettings
from iotstream.cli import build_parser, main
from iotstream.settings_cli import settings_from_args


def test_gateway_options_build_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_JWT_SECRET", "s" * 40)
    args = build_parser().parse_args(
        [
            "gateway",
            "--port",
            "9001",
            "--allowed-origins",
            "https://a.example, https://b.example",
            "--no-allow-missing-origin",
            "--batch-window-ms",
            "2.5",
        ]
    )
    settings = settings_from_args(GatewaySettings, args)
    assert settings.port == 9001
    assert settings.allowed_origins == ["https://a.example", "https://b.example"]
    assert settings.allow_missing_origin is False
    assert settings.batch_window_ms == 2.5
    assert settings.jwt_secret is not None


def test_gateway_refuses_demo_secret_outside_dev_mode(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEWAY_JWT_SECRET", "iotstream-demo-secret-not-for-production-use")
    assert main(["gateway"]) == 2
    err = capsys.readouterr().err
    assert "demo JWT secret" in err
    assert "not-for-production" not in err  # the secret is not echoed
