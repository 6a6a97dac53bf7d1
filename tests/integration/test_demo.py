"""The README's first command, for real: ``scripts/demo`` on free ports.

It must print a token, serve predictions from both workers over the WebSocket, and stop
everything on Ctrl-C (SIGINT) or SIGTERM: no process left, every port free again, and no
process needing honcho's SIGKILL (each stopped gracefully within its time).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.harness.ports import demo_ports, wait_ports_free

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOKEN_LINE = re.compile(r"dev token:\s+(\S+)")


def _listening_ports() -> set[int]:
    """Local ports of every listening TCP socket on this machine (/proc/net/tcp, tcp6)."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            for line in list(f)[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A":  # TCP_LISTEN
                    ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def _processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (ppid, start time, cmdline) of every process now."""
    out: dict[int, tuple[int, str, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[int(entry.name)] = (int(fields[1]), fields[19], cmd)
    return out


def _descendants(root: int) -> dict[int, tuple[str, str]]:
    procs = _processes()
    found: dict[int, tuple[str, str]] = {}
    frontier = {root}
    while frontier:
        children = {pid for pid, (ppid, _, _) in procs.items() if ppid in frontier}
        children -= set(found)
        for pid in children:
            found[pid] = (procs[pid][1], procs[pid][2])
        frontier = children
    return found


def _still_running(recorded: dict[int, tuple[str, str]]) -> dict[int, str]:
    """The recorded processes that still exist (same pid and start time, not a zombie)."""
    procs = _processes()
    return {
        pid: cmd
        for pid, (start, cmd) in recorded.items()
        if pid in procs and procs[pid][1] == start and procs[pid][2]
    }


def _wait_for_token(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = TOKEN_LINE.search(log.read_text(errors="replace"))
        if match:
            return match.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"no token printed in {timeout}s:\n{log.read_text()[-4000:]}")


async def _predictions(http_port: int, token: str, want_workers: int) -> dict[str, Any]:
    """Collect predictions until ``want_workers`` distinct workers were seen."""
    seen: dict[str, int] = {}
    devices: set[str] = set()
    url = f"ws://127.0.0.1:{http_port}/ws"
    async with connect(url, subprotocols=["bearer", token]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "subscribe", "since": "$"}))
        while len(seen) < want_workers or sum(seen.values()) < 20:
            frame = json.loads(await ws.recv())
            if frame["type"] == "predictions":
                for item in frame["items"]:
                    seen[item["worker_id"]] = seen.get(item["worker_id"], 0) + 1
                    devices.add(item["device_id"])
    return {"workers": seen, "devices": devices}


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "term"])
def test_demo_serves_predictions_and_stops_cleanly(tmp_path: Path, stop_signal: int) -> None:
    ports = demo_ports()
    demo_dir = tmp_path / "demo"
    env = {
        **os.environ,
        **{k: str(v) for k, v in ports.items()},
        "DEMO_DIR": str(demo_dir),
        "SIM_DEVICES": "10",
        "SIM_RATE": "5",
    }
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(ROOT / "scripts" / "demo")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            start_new_session=True,
        )
    recorded: dict[int, tuple[str, str]] = {}
    try:
        token = _wait_for_token(proc, log, timeout=60)
        assert f"http://localhost:{ports['DEMO_HTTP_PORT']}/" in log.read_text()
        recorded = _descendants(proc.pid)
        cmdlines = " | ".join(cmd for _, cmd in recorded.values())
        for needed in ("mosquitto", "redis-server", "iotstream worker", "iotstream gateway"):
            assert needed in cmdlines, cmdlines
        got = asyncio.run(asyncio.wait_for(_predictions(ports["DEMO_HTTP_PORT"], token, 2), 30))
        assert set(got["workers"]) == {"demo-worker-1", "demo-worker-2"}
        assert all(d.startswith("sim-") for d in got["devices"])

        proc.send_signal(stop_signal)
        proc.wait(timeout=20)
        time.sleep(0.3)  # reaping of the last grandchildren
        left = _still_running(recorded)
        leftovers = [cmd for _, _, cmd in _processes().values() if str(demo_dir) in cmd]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in _still_running(recorded):  # leave nothing behind, even on failure
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    text = log.read_text(errors="replace")
    assert left == {}, text[-3000:]
    assert leftovers == []
    assert "SIGKILL" not in text, text[-3000:]
    assert "stopped cleanly" in text
    # nothing listens on the demo's ports any more (bind() would also fail while another
    # test's client connection happens to use one of them as its ephemeral local port)
    busy = [name for name, port in ports.items() if port in _listening_ports()]
    assert busy == []


async def _collect(http_port: int, token: str, done: Any) -> list[dict[str, Any]]:
    """Live predictions (``since: $``) until ``done(items so far)`` says enough."""
    items: list[dict[str, Any]] = []
    url = f"ws://127.0.0.1:{http_port}/ws"
    async with connect(url, subprotocols=["bearer", token]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "subscribe", "since": "$"}))
        while not done(items):
            frame = json.loads(await ws.recv())
            if frame["type"] == "predictions":
                items.extend(frame["items"])
    return items


@contextlib.contextmanager
def _running_demo(env: dict[str, str], cwd: Path, log: Path) -> Iterator[str]:
    """``scripts/demo`` running until the block ends (then Ctrl-C); yields the token."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(ROOT / "scripts" / "demo")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )
    recorded: dict[int, tuple[str, str]] = {}
    try:
        token = _wait_for_token(proc, log, timeout=60)
        recorded = _descendants(proc.pid)
        yield token
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in _still_running(recorded):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _restarted(first: list[dict[str, Any]]) -> Callable[[list[dict[str, Any]]], bool]:
    """Whether predictions show a seq the first run already used, under a new boot id (the
    old dedup on (device_id, seq) dropped these until seq passed the first run's)."""
    last_seq = {p["device_id"]: p["seq"] for p in first}
    old_boot = {p["device_id"]: p.get("boot") for p in first}

    def seen(got: list[dict[str, Any]]) -> bool:
        return any(
            p["device_id"] in last_seq
            and p["seq"] <= last_seq[p["device_id"]]
            and p.get("boot") not in (None, old_boot[p["device_id"]])
            for p in got
        )

    return seen


def test_demo_restarted_on_the_same_directory_stores_readings_again_at_once(
    tmp_path: Path,
) -> None:
    """Ctrl-C, then the demo again on the same directory (Redis keeps its AOF, so every dedup
    record of the first run is still there): the simulator's devices start their ``seq``
    at 0 again, and their readings must be stored within seconds, not taken for repeats."""
    ports = demo_ports()
    env = {
        **os.environ,
        **{k: str(v) for k, v in ports.items()},
        "DEMO_DIR": str(tmp_path / "demo"),
        "SIM_DEVICES": "10",
        "SIM_RATE": "5",
    }
    http = ports["DEMO_HTTP_PORT"]
    with _running_demo(env, tmp_path, tmp_path / "demo1.log") as token:
        first = asyncio.run(asyncio.wait_for(_collect(http, token, lambda g: len(g) >= 30), 30))
    assert all(p.get("boot") is not None for p in first)
    wait_ports_free(ports)
    log = tmp_path / "demo2.log"
    with _running_demo(env, tmp_path, log) as token:
        try:
            second = asyncio.run(asyncio.wait_for(_collect(http, token, _restarted(first)), 20))
        except TimeoutError:
            tail = log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"restarted devices not stored within 20 s:\n{tail}") from None
    ids = [(p["device_id"], p.get("boot"), p["seq"]) for p in second]
    assert len(set(ids)) == len(ids)
    wait_ports_free(ports)


def _child_of(pid: int, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = [p for p, (ppid, _, _) in _processes().items() if ppid == pid]
        if kids:
            return kids[0]
        time.sleep(0.05)
    raise AssertionError("the wrapped server never started")


def _alive(pid: int) -> bool:
    procs = _processes()
    return pid in procs and bool(procs[pid][2])  # a zombie has no command line


def test_demo_last_stops_its_server_after_the_grace_period() -> None:
    """honcho's SIGTERM reaches only the wrapper; the server outlives it by --grace."""
    wrapper = subprocess.Popen(
        [sys.executable, "-m", "iotstream", "demo", "last", "--grace", "1.5", "--", "sleep", "60"]
    )
    try:
        server = _child_of(wrapper.pid)
        wrapper.send_signal(signal.SIGTERM)
        time.sleep(0.7)
        assert _alive(server)  # still serving the clients' graceful stop
        wrapper.wait(timeout=10)
        time.sleep(0.1)
        assert not _alive(server)
    finally:
        wrapper.kill()
        wrapper.wait()


def test_demo_last_server_dies_with_a_killed_wrapper() -> None:
    wrapper = subprocess.Popen(
        [sys.executable, "-m", "iotstream", "demo", "last", "--", "sleep", "60"]
    )
    server = _child_of(wrapper.pid)
    wrapper.kill()  # honcho's SIGKILL after its 5 s
    wrapper.wait()
    deadline = time.monotonic() + 5
    while _alive(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(server)
