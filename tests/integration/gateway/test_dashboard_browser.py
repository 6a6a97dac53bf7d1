"""The dashboard in headless Chromium (Debian's ``chromium``, driven by Playwright's Python
API) against a real gateway fed by the real pipeline: simulator -> Mosquitto -> worker (real
models) -> Redis -> gateway -> browser. The gateway restarts mid-run; the page must resume
the selected device's full stream without missing or duplicate sequence numbers (the fleet
grid is a latest-state view, see test_dashboard_fleet.py for the fleet at scale)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import redis
from playwright.sync_api import Page, ViewportSize, sync_playwright

from device_sim.app import run as run_sim
from device_sim.settings import SimSettings
from inference_worker.app import running_worker
from iot_contract import RECORD_FIELD, DriftEvent, DriftStatus, FeatureDrift, RedisKeys
from tests.component.gateway.support import SECRET
from tests.harness.pipeline import bundled_worker_settings
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
    worker = bundled_worker_settings(
        mosquitto.url,
        redis_service.url,
        redis_keys,
        unique,
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


def require_chromium() -> None:
    """Fail (never skip) when Chromium is missing; tests call it before starting services."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium", pytrace=False)


@contextlib.contextmanager
def open_dashboard(
    url: str, viewport: ViewportSize | None = None
) -> Iterator[tuple[Page, list[str]]]:
    """Headless Chromium on the dashboard the gateway at ``url`` serves: the page, and the
    list the page's uncaught errors go to."""
    require_chromium()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport=viewport)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url + "/")
            yield page, errors
        finally:
            browser.close()


def wait(page: Page, expression: str, timeout_s: float = 30) -> Any:
    return page.wait_for_function(expression, timeout=timeout_s * 1000).json_value()


def test_dashboard_live_anomalies_and_resume_after_gateway_restart(
    start_gateway: Any, pipeline: None, artifacts: Path
) -> None:
    require_chromium()
    gw = start_gateway(dev_mode=True, jwt_secret=SECRET, models_dir=str(MODELS), batch_window_ms=20)
    with open_dashboard(gw.url, viewport={"width": 1400, "height": 1000}) as (page, errors):
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
    assert seen["missing"] == {}, seen
    assert seen["duplicates"] == 0 and seen["received"] > 40, seen
    assert seen["subscribed"][-1] is True, seen  # the resume recovered the gap exactly
    assert seen["closes"] and "end to end" in seen["latency"]
    assert errors == []


def test_badge_says_stale_while_nothing_arrives_and_live_again(start_gateway: Any) -> None:
    """An open connection over which nothing arrives (here: the gateway process is stopped
    with SIGSTOP, so the TCP connection stays up) turns the badge from "live" to "stale: nothing
    for N s"; a quiet but healthy gateway does not (the page pings, the gateway answers)."""
    require_chromium()
    gw = start_gateway(dev_mode=True, jwt_secret=SECRET, heartbeat_s=60)
    badge = "document.getElementById('status')"
    with open_dashboard(gw.url, viewport=None) as (page, errors):
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
    assert errors == []


def drift_records(
    client: redis.Redis, keys: RedisKeys, names: list[str], reference: list[float]
) -> DriftStatus:
    """Write what a worker reports when ``fault-clf``'s bearing temperature drifts (a sensor
    offset), a stable ``vib-ae``, and the events of the drift starting; return the drifting
    status."""
    now = time.time()
    psi = [0.01 + 0.004 * k for k in range(len(names))]
    hot = names.index("bearing_temp_c")
    psi[hot], psi[names.index("motor_temp_c")] = 0.62, 0.19
    features = [
        FeatureDrift(name=n, psi=p, live_mean=ref + (6.5 if k == hot else 0.0), reference_mean=ref)
        for k, (n, p, ref) in enumerate(zip(names, psi, reference, strict=True))
    ]
    drifting = DriftStatus(
        model="fault-clf",
        version="1",
        ts=now,
        window=2048,
        psi_max=max(psi),
        threshold=0.25,
        drifting=True,
        features=features,
        worker_id="worker-a",
    )
    stable = drifting.model_copy(
        update={
            "model": "vib-ae",
            "psi_max": 0.04,
            "drifting": False,
            "features": [
                f.model_copy(update={"psi": 0.04 - 0.002 * k}) for k, f in enumerate(features[:6])
            ],
        }
    )
    for status in (drifting, stable):
        client.hset(keys.drift, status.model, status.model_dump_json())
    for ago, is_drifting, psi_max in ((900, True, 0.31), (600, False, 0.12), (40, True, 0.62)):
        event = DriftEvent(
            model="fault-clf",
            version="1",
            ts=now - ago,
            drifting=is_drifting,
            psi_max=psi_max,
            threshold=0.25,
            feature="bearing_temp_c",
            worker_id="worker-a",
        )
        client.xadd(keys.drift_events, {RECORD_FIELD: event.model_dump_json().encode()})
    return drifting


def reference_scale(reference: dict[str, Any], k: int) -> tuple[float, float]:
    """Median and robust sigma ((q80 - q20) / 1.683) of feature ``k`` of a manifest's
    training reference, its binned quantiles interpolated with numpy."""
    cum = np.cumsum(reference["shares"][k][:-1])
    lo, mid, hi = np.interp([0.2, 0.5, 0.8], cum, reference["edges"][k])
    return float(mid), float(hi - lo) / 1.683


def test_drift_panel_and_sensor_channels(
    start_gateway: Any,
    pipeline: None,
    rclient: redis.Redis,
    redis_keys: RedisKeys,
    artifacts: Path,
) -> None:
    """The drift panel shows a drifting model from the records in Redis (bars by PSI, the
    threshold, live vs reference means, the events), and the selected device's chart shows
    its sensor channels, named from the model's manifest, beside the score (the worker
    records the features by default); the toggle takes them off; polling pauses while the
    tab is hidden. The screenshot
    (``dashboard-drift.png`` in ``$IOTSTREAM_TEST_ARTIFACTS``) is docs/img's picture."""
    require_chromium()
    manifest: dict[str, Any] = orjson.loads((MODELS / "fault-clf/1/manifest.json").read_bytes())
    names: list[str] = manifest["input"]["feature_names"]
    gw = start_gateway(dev_mode=True, jwt_secret=SECRET, models_dir=str(MODELS))
    deadline = time.monotonic() + 30
    entries: Any = rclient.xrange(redis_keys.predictions, count=50)
    while not entries:
        assert time.monotonic() < deadline, "no predictions from the pipeline"
        time.sleep(0.2)
        entries = rclient.xrange(redis_keys.predictions, count=50)
    rows = [orjson.loads(fields[RECORD_FIELD])["features"] for _, fields in entries]
    reference = [sum(col) / len(col) for col in zip(*rows, strict=True)]
    status = drift_records(rclient, redis_keys, names, reference)
    with open_dashboard(gw.url, viewport={"width": 1400, "height": 1200}) as (page, errors):
        wait(page, "document.querySelector('.drift-model.drifting') !== null")
        card: dict[str, Any] = page.evaluate(
            """() => {
                const c = document.querySelector('.drift-model.drifting');
                const all = (sel, root = document) =>
                    [...root.querySelectorAll(sel)].map(e => e.innerText);
                return {
                aria: c.getAttribute('aria-label'),
                head: c.querySelector('.drift-head').innerText,
                names: all('.drift-features .name', c),
                over: all('.drift-features li.over .name', c),
                means: c.querySelector('.drift-features .means').textContent,
                stable: document.querySelectorAll('.drift-model.stable').length,
                summary: document.getElementById('drift-summary').textContent,
                events: all('#drift-events li'),
                legend: document.querySelector('.drift .legend').textContent }; }"""
        )
        by_psi = sorted(status.features, key=lambda f: -f.psi)
        assert card["names"] == [f.name for f in by_psi[:6]], card
        assert card["over"] == ["bearing_temp_c"], card  # only it is past the threshold
        assert "fault-clf version 1: drifting" in card["aria"] and "0.25" in card["aria"]
        assert "PSI max 0.62 / threshold 0.25" in card["head"], card
        live = f"{reference[names.index('bearing_temp_c')] + 6.5:.3g}"
        assert card["means"].startswith(f"live {live}"), card
        assert card["stable"] == 1 and card["summary"] == "1 of 2 models drifting", card
        assert len(card["events"]) == 3 and "started drifting" in card["events"][0], card
        assert "population stability index" in card["legend"]

        assert page.evaluate("window.__iotstream.selected"), "the page selects a device"
        # Chart a device in fault: the picture shows channels leaving the training range.
        wait(page, "document.querySelector('.device.anomaly') !== null")
        chosen = page.get_attribute(".device.anomaly", "data-device")
        # select it by its id (type it, press Enter): a click can land on another tile when
        # the grid re-sorts under it on a loaded machine
        page.fill("#search", chosen or "")
        page.press("#search", "Enter")
        wait(page, f"window.__iotstream.selected === '{chosen}'")
        page.fill("#search", "")
        wait(
            page,
            f"window.__iotstream.selected === '{chosen}'"
            " && window.__iotstream.channels.names.length > 0"
            " && (window.__iotstream.chartData() || [[]]).every(a => a.length >= 10)"
            # drawn from this device's series, not the previously selected one's
            " && window.__iotstream.chartData()[0][0] === window.__iotstream.series.t[0]",
        )
        chart: dict[str, Any] = page.evaluate(
            """() => { const s = window.__iotstream; return {
                names: s.channels.names, points: s.series.f.map(c => c.length),
                t: s.series.t.length, mode: s.channels.mode, raw: s.series.f,
                plotted: s.chartData().slice(3),
                legend: [...document.querySelectorAll('#chart .u-legend .u-series')]
                    .map(e => e.innerText),
                aria: document.getElementById('chart').getAttribute('aria-label') }; }"""
        )
        assert chart["names"] == names, chart  # from GET /v1/models
        assert chart["points"] == [chart["t"]] * len(names), chart
        # The manifest has the training reference: channels in robust sigmas from its
        # median (numpy's quantiles of the binned reference, computed independently).
        assert chart["mode"] == "sigma", chart
        for k, (raw, plotted) in enumerate(zip(chart["raw"], chart["plotted"], strict=True)):
            mid, spread = reference_scale(manifest["reference"], k)
            # the last drawing may be a frame behind the series (nothing is trimmed yet)
            assert 10 <= len(plotted) <= len(raw)
            expected = [(v - mid) / spread for v in raw[: len(plotted)]]
            assert plotted == pytest.approx(expected, rel=1e-6, abs=1e-9), names[k]
        assert any("bearing_temp_c" in x for x in chart["legend"]), chart
        assert "16 sensor channels" in chart["aria"]
        page.wait_for_timeout(3000)  # a few more seconds of channels in the picture
        page.screenshot(path=str(artifacts / "dashboard-drift.png"))

        page.uncheck("#show-channels")
        wait(page, "window.__iotstream.channels.names.length === 0")
        wait(page, "document.querySelectorAll('#chart .u-legend .u-series').length === 3")

        # Polling has a period, pauses while the tab is hidden and resumes when shown.
        polls = "window.__iotstream.drift.polls"
        page.evaluate("window.__iotstream.driftEvery = 0.3")
        shown = page.evaluate(f"{set_hidden(False)}; {polls}")
        wait(page, f"{polls} >= {shown} + 3", 10)
        page.evaluate(set_hidden(True))
        page.wait_for_timeout(600)  # a request already under way may still land
        paused = page.evaluate(polls)
        page.wait_for_timeout(1500)  # five periods
        assert page.evaluate(polls) == paused
        page.evaluate(set_hidden(False))
        wait(page, f"{polls} > {paused}", 5)
    assert errors == []


def set_hidden(hidden: bool) -> str:
    """JavaScript that makes the page look hidden (or shown) and tells it so."""
    value = "true" if hidden else "false"
    return (
        f"Object.defineProperty(document, 'hidden', {{configurable: true, get: () => {value}}});"
        " document.dispatchEvent(new Event('visibilitychange'))"
    )
