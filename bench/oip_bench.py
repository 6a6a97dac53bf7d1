"""Open Inference Protocol dynamic-batching benchmark: many concurrent single-reading gRPC
clients (NVIDIA's ``tritonclient.grpc.aio``, one channel each) against one gateway process,
once with the dynamic batcher on and once with it off (``oip_max_batch=1``), in one run.

Prints a table and writes a JSON report (default ``bench/results/oip.json``): readings/s,
latency p50/p99, the mean batch from the gateway's ``/metrics``
(``iotstream_gateway_oip_batch_requests_sum / _count``), the gateway's CPU, and the ratio of
readings/s with batching on to off.

    flock /tmp/iotstream-heavy.lock python -m bench.oip_bench              # ~30 s
    flock /tmp/iotstream-heavy.lock python -m bench.oip_bench --clients 8 --seconds 1
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc.aio as triton_aio
from tritonclient.utils import InferenceServerException

from bench.cli import positive, scenario_parser
from gateway.auth import TokenVerifier
from gateway.settings import GatewaySettings
from iotstream.gateway_process import GatewayProcess
from iotstream.localservices import RedisProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
SECRET = "bench-secret-" + "b" * 40
MODEL = "fault-clf"


@dataclass
class Result:
    """One run's figures."""

    mode: str
    clients: int
    seconds: float
    readings: int
    readings_per_s: float
    p50_ms: float
    p99_ms: float
    mean_batch: float
    batches: int
    gateway_cpu_pct: float
    errors: int


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + " ") or line.startswith(name + "{")
    )


async def _client_loop(
    port: int, token: str, stop_at: float, latencies: list[float], errors: list[int]
) -> int:
    client = triton_aio.InferenceServerClient(f"127.0.0.1:{port}")
    rng = np.random.default_rng(len(latencies))
    done = 0
    try:
        while time.perf_counter() < stop_at:
            x = rng.normal(size=(1, 16)).astype(np.float32)
            tensor = triton_aio.InferInput("features", [1, 16], "FP32")
            tensor.set_data_from_numpy(x)
            started = time.perf_counter()
            try:
                await client.infer(MODEL, [tensor], headers={"authorization": f"Bearer {token}"})
            except InferenceServerException:  # counted; the run goes on (429s, say)
                errors[0] += 1
                continue
            latencies.append(time.perf_counter() - started)
            done += 1
    finally:
        await client.close()
    return done


async def _load(
    port: int, token: str, clients: int, seconds: float
) -> tuple[int, list[float], int]:
    latencies: list[float] = []
    errors = [0]
    # a short warm-up so channels are connected before the window opens
    warm = time.perf_counter() + 0.3
    await asyncio.gather(*(_client_loop(port, token, warm, [], errors) for _ in range(clients)))
    errors[0] = 0
    stop_at = time.perf_counter() + seconds
    counts = await asyncio.gather(
        *(_client_loop(port, token, stop_at, latencies, errors) for _ in range(clients))
    )
    return sum(counts), latencies, errors[0]


def run(
    workdir: Path, redis_url: str, *, mode: str, clients: int, seconds: float, max_batch: int
) -> Result:
    """One gateway, ``clients`` concurrent single-reading gRPC clients for ``seconds``."""
    grpc_port = free_port()
    options: dict[str, Any] = {
        "redis_url": redis_url,
        "jwt_secret": SECRET,
        "models_dir": str(ROOT / "models"),
        "grpc_port": grpc_port,
        "oip_max_batch": max_batch,
        "oip_max_wait_ms": 2.0,
        "oip_max_queue": 10_000,
        "log_level": "WARNING",
    }
    token = TokenVerifier(GatewaySettings(jwt_secret=SECRET)).mint(subject="bench")
    gw = GatewayProcess(workdir / f"gw-{mode}", options)
    gw.start(timeout=60)
    try:
        assert gw.pid is not None
        cpu_before = _cpu_seconds(gw.pid)
        batches_before = _metric(gw.url, "iotstream_gateway_oip_batch_requests_count")
        sum_before = _metric(gw.url, "iotstream_gateway_oip_batch_requests_sum")
        started = time.perf_counter()
        total, latencies, errors = asyncio.run(_load(grpc_port, token, clients, seconds))
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds(gw.pid) - cpu_before
        batches = _metric(gw.url, "iotstream_gateway_oip_batch_requests_count") - batches_before
        summed = _metric(gw.url, "iotstream_gateway_oip_batch_requests_sum") - sum_before
    finally:
        gw.stop()
    lat = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return Result(
        mode=mode,
        clients=clients,
        seconds=round(seconds, 2),
        readings=total,
        readings_per_s=round(total / seconds, 1),
        p50_ms=round(float(np.percentile(lat, 50)), 2),
        p99_ms=round(float(np.percentile(lat, 99)), 2),
        mean_batch=round(summed / batches, 2) if batches else 0.0,
        batches=int(batches),
        gateway_cpu_pct=round(100 * cpu / elapsed, 1),
        errors=errors,
    )


def main(argv: list[str] | None = None) -> int:
    """Run batching on and off, print the table, write the report."""
    parser = scenario_parser("oip", __doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=64, help="concurrent gRPC clients")
    parser.add_argument(
        "--seconds", type=positive(float), default=10.0, help="measuring window per run"
    )
    parser.add_argument("--max-batch", type=int, default=32, help="oip_max_batch when on")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "oip.json")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    print(
        f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs"
    )
    print(
        f"{'mode':<10}{'clients':>8}{'readings/s':>12}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'mean batch':>11}{'gw cpu%':>9}{'errors':>8}"
    )
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="oip-bench-") as tmp:
        redis = RedisProcess(Path(tmp) / "redis")
        redis.start()
        try:
            for mode, max_batch in (("batched", args.max_batch), ("off", 1)):
                r = run(
                    Path(tmp),
                    f"redis://127.0.0.1:{redis.port}/0",
                    mode=mode,
                    clients=args.clients,
                    seconds=args.seconds,
                    max_batch=max_batch,
                )
                results.append(r)
                print(
                    f"{r.mode:<10}{r.clients:>8}{r.readings_per_s:>12,.0f}{r.p50_ms:>8.2f}"
                    f"{r.p99_ms:>8.2f}{r.mean_batch:>11.2f}{r.gateway_cpu_pct:>9}{r.errors:>8}",
                    flush=True,
                )
        finally:
            redis.stop()
    on, off = results
    ratio = round(on.readings_per_s / off.readings_per_s, 2) if off.readings_per_s else None
    print(f"readings/s batched / off: {ratio}")
    report = {
        "bench": "oip",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "settings": {"max_batch": args.max_batch, "max_wait_ms": 2.0, "model": MODEL},
        "results": [asdict(r) for r in results],
        "ratio_batched_to_off": ratio,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
