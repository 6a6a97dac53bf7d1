"""The dashboard in headless Chromium (Debian's ``chromium``, driven by Playwright's Python
API) against a real gateway fed by the real pipeline: simulator -> Mosquitto -> worker (real
models) -> Redis -> gateway -> browser. The gateway restarts mid-run; the page must resume
the selected device's full stream without missing or duplicate sequence numbers (the fleet
grid is a latest-state view, see test_dashboard_fleet.py for the fleet at scale)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright

from device_sim.app import run as run_sim
from device_sim.settings import SimSettings
from inference_worker.app import running_worker
from inference_worker.settings import WorkerSettings
from iot_contract import RedisKeys
from tests.component.gateway.support import SECRET
from tests.harness.services import Service

pytestmark = pytest.mark.integration

MODELS = Path(__file__).resolve().parents[3] / "models"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where the screenshot goes: $IOTSTREAM_TEST_ARTIFACTS, else the test's tmp dir."""
    folder = Path(os.environ.get("IOTSTREAM_TEST_ARTIFACTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def pipeline(
    mosquitto: Service, redis_service: Service, redis_keys: RedisKeys, unique: str
) -> Iterator[None]:
    """Worker (real models) and simulator running against the session's broker and Redis."""
    worker = WorkerSettings(
        worker_id=f"w-{unique}",
        mqtt_url=mosquitto.url,
        redis_url=redis_service.url,
        redis_prefix=redis_keys.prefix,
        share_group=f"g{unique}",
        models_dir=MODELS,
        max_wait_ms=5,
    )
    sim = SimSettings(
        mqtt_url=mosquitto.url,
        devices=12,
        rate=4.0,
        device_prefix=f"pump{unique[:4]}",
        mean_time_between_faults=3.0,
        seed=11,
    )
    stop = threading.Event()
    with running_worker(worker):
        thread = threading.Thread(target=run_sim, args=(sim, stop), daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(10)


def wait(page: Page, expression: str, timeout_s: float = 30) -> Any:
    return page.wait_for_function(expression, timeout=timeout_s * 1000).json_value()


def test_dashboard_live_anomalies_and_resume_after_gateway_restart(
    start_gateway: Any, pipeline: None, artifacts: Path
) -> None:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium", pytrace=False)
    gw = start_gateway(dev_mode=True, jwt_secret=SECRET, models_dir=str(MODELS), batch_window_ms=20)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(gw.url + "/")
            wait(page, "window.__iotstream.items > 20")
            wait(page, "document.querySelectorAll('.device').length >= 12")
            wait(page, "document.querySelector('.device.anomaly') !== null", 60)
            wait(page, "document.querySelectorAll('#feed li').length > 0")
            assert page.locator("#chart canvas").count() >= 1  # uPlot drew the chart
            before = page.evaluate("window.__iotstream.items")

            gw.stop()
            wait(page, "!window.__iotstream.connected")
            time.sleep(1.5)  # the pipeline keeps writing while the gateway is down
            gw.start(timeout=30)
            wait(
                page,
                "window.__iotstream.connected && window.__iotstream.detailConnected"
                " && window.__iotstream.subscribed.length >= 2",
            )
            wait(page, f"window.__iotstream.items > {before} + 20")
            page.wait_for_timeout(500)  # let the latency and fleet panels refresh
            page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)

            seen: dict[str, Any] = page.evaluate(
                """() => { const s = window.__iotstream; return {
                    missing: s.missing(), duplicates: s.duplicates(),
                    subscribed: s.subscribed, closes: s.closes, received: s.received(),
                    starts: Object.fromEntries([...s.runs].map(([d, w]) => [d, w.first])),
                    latency: document.querySelector('#latency tbody').innerText }; }"""
            )
        finally:
            browser.close()
    assert seen["missing"] == {}, seen
    assert seen["duplicates"] == 0 and seen["received"] > 40, seen
    assert seen["subscribed"][-1] is True, seen  # the resume recovered the gap exactly
    assert seen["closes"] and "end to end" in seen["latency"]
    assert errors == []


def test_badge_says_stale_while_nothing_arrives_and_live_again(start_gateway: Any) -> None:
    """An open connection over which nothing arrives (here: the gateway process is stopped
    with SIGSTOP, so the TCP connection stays up) turns the badge from "live" to "stale: nothing
    for N s"; a quiet but healthy gateway does not (the page pings, the gateway answers)."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium", pytrace=False)
    gw = start_gateway(dev_mode=True, jwt_secret=SECRET, heartbeat_s=60)
    badge = "document.getElementById('status')"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(gw.url + "/")
            wait(page, f"window.__iotstream.connected && {badge}.textContent === 'live'")
            frames = page.evaluate("window.__iotstream.staleAfter = 1.5; window.__iotstream.frames")
            # No predictions: only the answers to the page's pings keep it live.
            wait(page, f"window.__iotstream.frames >= {frames} + 4", 20)
            assert page.evaluate("window.__iotstream.staleSpells") == 0
            assert page.evaluate(f"{badge}.textContent") == "live"

            pid = gw.pid
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            try:
                wait(page, f"{badge}.className.includes('stale')", 20)
                text = page.evaluate(f"{badge}.textContent")
                assert page.evaluate("window.__iotstream.connected") is True
            finally:
                os.kill(pid, signal.SIGCONT)
            assert re.fullmatch(r"stale: nothing for \d+ s", text), text
            wait(page, f"{badge}.textContent === 'live'", 20)
        finally:
            browser.close()
    assert errors == []
