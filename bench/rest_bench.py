"""REST baseline vs streaming: the ``POST /predict`` users start from against this project.

In one invocation, on the same model (``fault-clf``, the variant the worker loads here):

  def          course-style FastAPI ``def predict`` (bench/rest_baseline_app.py) under
               uvicorn, one reading per request
  async        the same with ``async def predict`` (inference on the event loop)
  gateway      the project's ``POST /v1/predict`` with ``--batch`` readings per request
               (the workers' core; one gateway process)
  streaming    the streaming path at saturation: ``iotstream bench pipeline``'s saturate
               scenario (simulators -> Mosquitto -> worker -> Redis, QoS 1, MQTT 5)

The HTTP servers are driven at their maximum by ``--load-procs`` load generator processes
(bench/http_load.py: keep-alive connections, closed loop, ``--connections`` in all: enough
to keep a one-process server busy; its CPU share is in the report). Reported: readings/s,
server CPU per reading (µs, /proc/<pid>/stat; the streaming path's worker and Redis), the
ratios streaming / def, streaming / async and gateway / def.

    flock /tmp/iotstream-heavy.lock iotstream bench rest            # ~1 min
    flock /tmp/iotstream-heavy.lock iotstream bench rest --quick    # ~20 s
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.cli import positive, scenario_parser
from bench.figures import Measured
from bench.http_load import build_request
from bench.machine import machine_info
from bench.pipeline_bench import _cpu_seconds, run_scenario
from gateway.auth import TokenVerifier
from gateway.settings import GatewaySettings
from iot_models.sensors import make_dataset
from iotstream.gateway_process import GatewayProcess
from iotstream.localservices import RedisProcess, free_port

__all__ = ["RestResult", "main"]

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-" + "r" * 40
LOAD_MODULE = "bench.http_load"


@dataclass
class RestResult(Measured):
    """One contender's figures."""

    name: str
    readings_per_s: float
    requests_per_s: float
    readings_per_request: int
    server_cpu_us_per_reading: float
    server_cpu_pct: float
    ok: int
    errors: int
    seconds: float


def _readings(n: int) -> list[dict[str, Any]]:
    x, _ = make_dataset(n, 7)
    now = time.time()
    return [
        {
            "device_id": f"pump-{i % 100:03d}",
            "seq": i,
            "ts": now,
            "features": [float(v) for v in x[i]],
        }
        for i in range(n)
    ]


def _wait_http(port: int, path: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", path)
            if conn.getresponse().status < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"server on port {port} not up in 30 s:\n{log.read_text()[-2000:]}")


@contextlib.contextmanager
def _uvicorn(app: str, work: Path) -> Iterator[tuple[int, int]]:
    """The baseline app under uvicorn (one process, its defaults); yields (pid, port)."""
    port = free_port()
    log = work / f"{app.split(':')[-1]}.log"
    work.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                app,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        _wait_http(port, "/openapi.json", proc, log)
        yield proc.pid, port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def drive(
    pid: int,
    port: int,
    requests: list[bytes],
    *,
    procs: int,
    connections: int,
    seconds: float,
    work: Path,
) -> tuple[list[dict[str, Any]], float, float]:
    """Load the server at ``port`` from ``procs`` processes; returns their reports, the
    server's CPU seconds and the load generators' CPU seconds over the window."""
    file = work / f"requests-{port}.txt"
    file.write_text("\n".join(json.dumps(r.decode("latin-1")) for r in requests))
    per = [connections // procs + (k < connections % procs) for k in range(procs)]
    loads = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                LOAD_MODULE,
                "127.0.0.1",
                str(port),
                str(n),
                str(seconds),
                str(file),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for n in per
        if n
    ]
    try:
        for p in loads:
            assert p.stdout is not None
            if (line := p.stdout.readline().strip()) != "ready":
                raise RuntimeError(f"load generator failed to start: {line!r}")
        cpu0 = _cpu_seconds(pid)
        load0 = sum(_cpu_seconds(p.pid) for p in loads)
        for p in loads:
            assert p.stdin is not None
            p.stdin.write("start\n")
            p.stdin.flush()
        reports = []
        for p in loads:
            assert p.stdout is not None
            reports.append(json.loads(p.stdout.readline()))
        server_cpu = _cpu_seconds(pid) - cpu0
        load_cpu = sum(_cpu_seconds(p.pid) for p in loads) - load0
    finally:
        for p in loads:
            if p.stdin:
                p.stdin.close()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
    return reports, server_cpu, load_cpu


def _http_result(
    name: str, per_request: int, reports: list[dict[str, Any]], cpu: float, load_cpu: float
) -> RestResult:
    ok = sum(r["ok"] for r in reports)
    seconds = max(r["seconds"] for r in reports)
    readings = ok * per_request
    return RestResult(
        name=name,
        readings_per_s=round(readings / seconds, 1),
        requests_per_s=round(ok / seconds, 1),
        readings_per_request=per_request,
        server_cpu_us_per_reading=round(cpu / max(readings, 1) * 1e6, 1),
        server_cpu_pct=round(100 * cpu / seconds, 1),
        ok=ok,
        errors=sum(r["errors"] for r in reports),
        seconds=seconds,
        p50_ms=max(r["p50_ms"] for r in reports),
        p99_ms=max(r["p99_ms"] for r in reports),
        extra={"load_generator_cpu_pct": round(100 * load_cpu / seconds, 1)},
    )


def run_baseline(form: str, args: argparse.Namespace, work: Path) -> RestResult:
    """The course-style app (``def`` or ``async``) at its maximum."""
    app = "bench.rest_baseline_app:" + ("sync_app" if form == "def" else "async_app")
    with _uvicorn(app, work / form) as (pid, port):
        bodies = [orjson.dumps(r) for r in _readings(256)]
        requests = [build_request("127.0.0.1", "/predict", b, {}) for b in bodies]
        reports, cpu, load_cpu = drive(
            pid,
            port,
            requests,
            procs=args.load_procs,
            connections=args.connections,
            seconds=args.seconds,
            work=work,
        )
    return _http_result(form, 1, reports, cpu, load_cpu)


def run_gateway(args: argparse.Namespace, work: Path) -> RestResult:
    """The gateway's ``POST /v1/predict`` with ``args.batch`` readings per request."""
    token = TokenVerifier(GatewaySettings(jwt_secret=SECRET)).mint(subject="rest-bench")
    options = {
        "jwt_secret": SECRET,
        "models_dir": str(ROOT / "models"),
        "log_level": "WARNING",
        "rest_rate_per_s": 1e9,  # measure the endpoint, not its rate limiter
        "rest_burst": 1_000_000_000,
    }
    with (
        RedisProcess(work / "rd") as rd,
        GatewayProcess(work / "gw", {"redis_url": rd.url, **options}) as gw,
    ):
        rows = _readings(args.batch * 16)
        bodies = [orjson.dumps(rows[k : k + args.batch]) for k in range(0, len(rows), args.batch)]
        auth = {"Authorization": f"Bearer {token}"}
        requests = [build_request("127.0.0.1", "/v1/predict", b, auth) for b in bodies]
        assert gw.pid is not None
        reports, cpu, load_cpu = drive(
            gw.pid,
            gw.port,
            requests,
            procs=args.load_procs,
            connections=args.connections,
            seconds=args.seconds,
            work=work,
        )
    return _http_result("gateway", args.batch, reports, cpu, load_cpu)


def run_streaming(args: argparse.Namespace, work: Path) -> RestResult:
    """The pipeline bench's saturate scenario (same model, the worker's defaults)."""
    r = run_scenario(
        "saturate",
        rate=args.streaming_rate,
        seconds=args.seconds,
        protocol="5",
        max_batch=64,
        work=work / "streaming",
        inflight=256,
    )
    redis_us = float(r.extra.get("redis_cpu_us_per_reading", 0.0))
    return RestResult(
        name="streaming",
        readings_per_s=r.stored_per_s,
        requests_per_s=r.stored_per_s,
        readings_per_request=1,
        server_cpu_us_per_reading=r.worker_cpu_us_per_reading,
        server_cpu_pct=round(r.worker_cpu_us_per_reading * r.stored_per_s / 1e4, 1),
        ok=r.stored,
        errors=abs(r.duplicates_or_loss),
        seconds=r.seconds,
        p50_ms=r.p50_ms,
        p99_ms=r.p99_ms,
        extra={
            "offered_per_s": args.streaming_rate,
            "published": r.published,
            "worker_plus_redis_cpu_us_per_reading": round(
                r.worker_cpu_us_per_reading + redis_us, 1
            ),
            "mean_batch": r.extra.get("mean_batch"),
        },
    )


def _ratio(a: RestResult, b: RestResult) -> float:
    return round(a.readings_per_s / max(b.readings_per_s, 1e-9), 2)


def main(argv: list[str] | None = None) -> int:
    """Run the four contenders, print the table and the ratios, write the report."""
    parser = scenario_parser("rest", __doc__)
    parser.add_argument("--seconds", type=positive(float), default=8.0, help="load per contender")
    parser.add_argument("--connections", type=int, default=32, help="HTTP connections in all")
    parser.add_argument("--load-procs", type=int, default=2, help="load generator processes")
    parser.add_argument("--batch", type=int, default=64, help="readings per /v1/predict request")
    parser.add_argument(
        "--streaming-rate", type=float, default=30000, help="offered to the streaming path"
    )
    parser.add_argument("--quick", action="store_true", help="1.5 s each, a light stream")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "rest.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.streaming_rate = 1.5, 3000.0
    load = os.getloadavg()
    results: list[RestResult] = []
    with tempfile.TemporaryDirectory(prefix="iotstream-rest-") as tmp:
        work = Path(tmp)
        for name in ("def", "async", "gateway", "streaming"):
            if name == "gateway":
                r = run_gateway(args, work)
            elif name == "streaming":
                r = run_streaming(args, work)
            else:
                r = run_baseline(name, args, work)
            results.append(r)
            print(
                f"{r.name:<10} {r.readings_per_s:>10,.0f} readings/s  "
                f"{r.server_cpu_us_per_reading:>8.1f} µs CPU/reading  "
                f"server {r.server_cpu_pct:>5.1f} % CPU  errors {r.errors}  "
                f"p50 {r.p50_ms} p99 {r.p99_ms} ms",
                flush=True,
            )
    by = {r.name: r for r in results}
    ratios = {
        "streaming_over_def": _ratio(by["streaming"], by["def"]),
        "streaming_over_async": _ratio(by["streaming"], by["async"]),
        "gateway_batch_over_def": _ratio(by["gateway"], by["def"]),
        "gateway_batch_over_async": _ratio(by["gateway"], by["async"]),
    }
    print("ratios:", ratios)
    report = {
        "benchmark": "rest",
        "machine": machine_info() | {"loadavg_before": [round(x, 2) for x in load]},
        "params": {
            "seconds": args.seconds,
            "connections": args.connections,
            "load_procs": args.load_procs,
            "gateway_batch": args.batch,
            "streaming_offered_per_s": args.streaming_rate,
            "model": "fault-clf",
            "uvicorn": "one process, its defaults (h11 and asyncio unless httptools/uvloop "
            "are installed)",
            "quick": args.quick,
        },
        "ratios": ratios,
        "results": [asdict(r) for r in results],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"report: {args.out}")
    bad = [r for r in results if r.readings_per_s <= 0 or r.errors]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
