"""The dashboard's canary comparison in headless Chromium against a real gateway and Redis
(issue #13): predictions of two versions of one model (written the way workers write them)
show up side by side, per version, with their device counts, anomaly shares and mean
scores; a model with one version gets no comparison, and it goes away once every device
is on one version again (the canary promoted)."""

from __future__ import annotations

from typing import Any

import pytest

from iot_contract import ModelRef, Prediction
from tests.component.gateway.support import SECRET, Feeder, prediction
from tests.integration.gateway.test_dashboard_browser import (
    open_dashboard,
    require_chromium,
    wait,
)

pytestmark = pytest.mark.integration


def scored(device: str, seq: int, model: str, version: str, score: float) -> Prediction:
    """A prediction of ``model`` ``version``; anomalous above 0.5."""
    p = prediction(device, seq, anomaly=score > 0.5, model=model)
    return p.model_copy(
        update={"model": ModelRef(name=model, version=version, variant="fp32"), "score": score}
    )


def test_two_versions_of_a_model_side_by_side(start_gateway: Any, feeder: Feeder) -> None:
    require_chromium()
    stable = [scored(f"pump-{i:02d}", 1, "fault-clf", "1", 0.9 if i < 2 else 0.1) for i in range(8)]
    canary = [
        scored(f"pump-{i:02d}", 1, "fault-clf", "2", 0.8 if i < 10 else 0.2) for i in (8, 9, 10)
    ]
    other = [scored(f"fan-{i}", 1, "vib-ae", "1", 0.3) for i in range(2)]
    feeder.write(stable + canary + other)
    gw = start_gateway(dev_mode=True, jwt_secret=SECRET)
    with open_dashboard(gw.url, viewport={"width": 1400, "height": 1000}) as (page, errors):
        wait(page, "window.__iotstream.devices.size === 13")
        wait(page, "!document.getElementById('versions').hidden")
        versions: list[dict[str, Any]] = page.evaluate("window.__iotstream.versions")
        rows: list[list[str]] = page.evaluate(
            """() => [...document.querySelectorAll('#versions tbody tr')].map((tr) =>
                [...tr.children].map((c) => c.textContent))"""
        )
        tables = page.evaluate(
            "[...document.querySelectorAll('#versions table')].map((t) => t.dataset.model)"
        )
        caption = page.locator("#versions caption").inner_text()

        # every device of fault-clf on version 1 again: the comparison goes away
        feeder.write([scored(p.device_id, 2, "fault-clf", "1", 0.1) for p in canary])
        wait(page, "document.getElementById('versions').hidden")
        assert page.evaluate("window.__iotstream.versions") == []
    assert tables == ["fault-clf"], "vib-ae has one version: no comparison"
    assert "fault-clf" in caption and "2 versions on 11 devices" in caption
    (model,) = versions
    assert model["model"] == "fault-clf"
    by_version = {v["version"]: v for v in model["versions"]}
    assert by_version["1"]["devices"] == 8 and by_version["1"]["anomalous"] == 2
    assert by_version["2"]["devices"] == 3 and by_version["2"]["anomalous"] == 2
    assert abs(by_version["1"]["meanScore"] - (2 * 0.9 + 6 * 0.1) / 8) < 1e-9
    assert abs(by_version["2"]["meanScore"] - (2 * 0.8 + 0.2) / 3) < 1e-9
    assert rows == [
        ["v1", "8 (73%)", "2 (25%)", "0.3"],
        ["v2", "3 (27%)", "2 (67%)", "0.6"],
    ]
    assert errors == []
