"""End-to-end benchmark: simulator -> Mosquitto -> worker -> Redis -> gateway -> WebSocket
clients, every component a process on this machine.

For each offered rate (default 2,000, 5,000, 10,000 and 15,000 readings/s) a fresh broker,
Redis, worker and gateway start; ``--clients`` WebSocket clients (one process each,
bench/e2e_clients.py) subscribe to everything before two simulator processes (load mode,
QoS 1) offer the rate for ``--seconds``. Reported per rate:

  * latency per hop and in total, p50/p95/p99/max, from the prediction's hops
    (``device_ts`` -> ``received_ts`` -> ``inferred_ts`` -> ``published_ts``), the frame's
    ``sent_ts`` (gateway) and the client's receive time;
  * loss at the clients by ``(device, seq)``: every client must hold every published
    reading exactly once (``lost``, ``duplicates``, ``holes``);
  * CPU seconds per 1,000 readings of each component, from /proc/<pid>/stat (the simulators'
    from their rusage).

The verdict is the highest rate with p99 device -> client <= ``--target-p99-ms`` and nothing
lost: from the rate list, refined by ``--search N`` bisection steps between the highest
passing and the lowest failing rate (``found_by`` in the report says which).

    flock /tmp/iotstream-heavy.lock iotstream bench e2e                 # ~2 min
    flock /tmp/iotstream-heavy.lock iotstream bench e2e --quick         # ~20 s
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench.cli import listed, positive, scenario_parser
from bench.client_processes import LineProcesses
from bench.e2e_clients import CLIENT_MODULE, HOPS
from bench.machine import machine_info
from bench.pipeline_bench import (
    BROKER_CONFIG,
    _cpu_seconds,
    _published,
    _spawn,
    _wait_cpu,
    _wait_ready,
    _wait_settled,
)
from gateway.auth import TokenVerifier
from gateway.settings import GatewaySettings
from iot_contract import RedisKeys
from iotstream.gateway_process import GatewayProcess
from iotstream.localservices import MosquittoProcess, RedisProcess, free_port

__all__ = ["E2EResult", "hist_percentiles", "main", "run_rate"]

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-" + "e" * 40
SIM_PROCESSES = 2
DEVICES = 1000
TARGET_P99_MS = 30.0


@dataclass
class E2EResult:
    """One offered rate's figures."""

    offered_per_s: float
    seconds: float
    published: int
    stored: int
    clients: int
    lost: int
    """Published readings some client never received (summed over clients)."""
    duplicates: int
    holes: int
    closed_clients: int
    delivered_per_s: float
    """Readings per second that reached a client (published / time from first to last)."""
    latency_ms: dict[str, dict[str, float]]
    """Per hop and ``total``: p50, p95, p99, max."""
    cpu_s_per_1k: dict[str, float]
    """CPU seconds per 1,000 readings of each component."""
    passed: bool
    search: bool = False
    hist_0_1ms: dict[str, dict[str, int]] = field(default_factory=dict)
    """Latency histograms (0.1 ms buckets, all clients merged), for CDF plots."""


def hist_percentiles(hist: dict[str, int]) -> dict[str, float]:
    """p50/p95/p99/max in ms of a histogram keyed by 0.1 ms bucket (as strings)."""
    buckets = sorted((int(k), n) for k, n in hist.items())
    total = sum(n for _, n in buckets)
    out: dict[str, float] = {}
    if not total:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "max": float("nan")}
    for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        acc = 0
        for value, n in buckets:
            acc += n
            if acc >= q * total:
                out[name] = value / 10
                break
    out["max"] = buckets[-1][0] / 10
    return out


class ClientPool(LineProcesses):
    """WebSocket clients, one process each (bench/e2e_clients.py)."""

    def __init__(self, url: str, token: str, n: int) -> None:
        super().__init__(CLIENT_MODULE, [[url] for _ in range(n)], token)

    def counts(self) -> list[int]:
        """Items each client has received so far."""
        return [json.loads(line)["items"] for line in self.ask("count")]

    def wait_for(self, expected: int, timeout: float) -> None:
        """Wait until every client has ``expected`` items or nothing moves for 2 s."""
        deadline = time.monotonic() + timeout
        last, since = [-1], time.monotonic()
        while time.monotonic() < deadline:
            counts = self.counts()
            if min(counts) >= expected:
                return
            if counts != last:
                last, since = counts, time.monotonic()
            elif time.monotonic() - since > 2.0:
                return
            time.sleep(0.2)

    def stop(self) -> list[dict[str, Any]]:
        """Each client's final report."""
        return [json.loads(line) for line in self.ask("stop")]


def _simulators(url: str, rate: float, seconds: float, work: Path) -> list[subprocess.Popen[bytes]]:
    per_device = rate / SIM_PROCESSES / (DEVICES // SIM_PROCESSES)
    return [
        _spawn(
            [
                "sim",
                "--mode",
                "load",
                "--devices",
                str(DEVICES // SIM_PROCESSES),
                "--device-prefix",
                f"e{k}",
                "--connections",
                "2",
                "--rate",
                str(per_device),
                "--duration",
                str(seconds),
                "--report-every",
                "60",
                "--mqtt-url",
                url,
                "--protocol",
                "3.1.1",
                "--load-client",
                "raw",
            ],
            {},
            work / f"sim{k}.log",
        )
        for k in range(SIM_PROCESSES)
    ]


def _worker_env(mq: MosquittoProcess, rd: RedisProcess, keys: RedisKeys) -> dict[str, str]:
    return {
        "WORKER_WORKER_ID": "e2e-w0",
        "WORKER_MQTT_URL": mq.url,
        "WORKER_REDIS_URL": rd.url,
        "WORKER_REDIS_PREFIX": keys.prefix,
        "WORKER_MQTT_PROTOCOL": "5",
        "WORKER_MAX_BATCH": "64",
        "WORKER_MAX_WAIT_MS": "5",
        "WORKER_MODELS_DIR": str(ROOT / "models"),
        "WORKER_MODELS": "fault-clf",
        "WORKER_DEFAULT_MODEL": "fault-clf",
        "WORKER_LOG_LEVEL": "INFO",
        "WORKER_METRICS_PORT": str(free_port()),
    }


def run_rate(
    rate: float, *, seconds: float, clients: int, work: Path, target_p99_ms: float
) -> E2EResult:
    """Run everything at one offered rate on fresh services and measure it."""
    work.mkdir(parents=True, exist_ok=True)
    keys = RedisKeys("e2e")
    config = BROKER_CONFIG.replace("{inflight}", "256")
    token = TokenVerifier(GatewaySettings(jwt_secret=SECRET)).mint(subject="e2e-bench")
    gw_options = {
        "redis_prefix": keys.prefix,
        "jwt_secret": SECRET,
        "models_dir": str(work / "no-models"),  # the gateway only fans out here
        "log_level": "WARNING",
    }
    with (
        MosquittoProcess(work / "mq", config=config) as mq,
        RedisProcess(work / "rd") as rd,
        GatewayProcess(work / "gw", {"redis_url": rd.url, **gw_options}) as gw,
    ):
        worker = _spawn(["worker"], _worker_env(mq, rd, keys), work / "worker.log")
        pool = ClientPool(gw.ws_url, token, clients)
        try:
            _wait_ready(work / "worker.log", worker)
            pool.ready()
            pids = {
                "mosquitto": mq.pid or 0,
                "worker": worker.pid,
                "redis": rd.pid or 0,
                "gateway": gw.pid or 0,
            }
            cpu0 = {name: _cpu_seconds(pid) for name, pid in pids.items()}
            clients_cpu0 = sum(_cpu_seconds(pid) for pid in pool.pids)
            sims = _simulators(mq.url, rate, seconds, work)
            sim_cpu = sum(_wait_cpu(sim, seconds + 60) for sim in sims)
            published = sum(_published(work / f"sim{k}.log") for k in range(SIM_PROCESSES))
            client = redis.Redis.from_url(rd.url)
            stored = _wait_settled(client, keys.predictions, published)
            span = _stored_span(client, keys)
            client.close()
            pool.wait_for(published, timeout=60)
            cpu = {name: _cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
            cpu["clients"] = sum(_cpu_seconds(pid) for pid in pool.pids) - clients_cpu0
            cpu["simulators"] = sim_cpu
            reports = pool.stop()
        finally:
            pool.close()
            worker.terminate()
            worker.wait(30)
    return _result(rate, seconds, published, stored, span, reports, cpu, target_p99_ms)


def _stored_span(client: redis.Redis, keys: RedisKeys) -> float:
    first: Any = client.xrange(keys.predictions, count=1)
    last: Any = client.xrevrange(keys.predictions, count=1)
    if not first or not last:
        return 0.001
    ms = [int(entry[0][0].split(b"-")[0]) for entry in (first, last)]
    return max((ms[1] - ms[0]) / 1000, 0.001)


def _result(
    rate: float,
    seconds: float,
    published: int,
    stored: int,
    span: float,
    reports: list[dict[str, Any]],
    cpu: dict[str, float],
    target_p99_ms: float,
) -> E2EResult:
    merged: dict[str, dict[str, int]] = {name: {} for name in (*HOPS, "total")}
    for r in reports:
        for hop, hist in r["hist_0_1ms"].items():
            into = merged[hop]
            for k, n in hist.items():
                into[k] = into.get(k, 0) + n
    latency = {hop: hist_percentiles(hist) for hop, hist in merged.items()}
    lost = sum(max(published - r["unique"], 0) for r in reports)
    result = E2EResult(
        offered_per_s=rate,
        seconds=seconds,
        published=published,
        stored=stored,
        clients=len(reports),
        lost=lost,
        duplicates=sum(r["duplicates"] for r in reports),
        holes=sum(r["holes"] for r in reports),
        closed_clients=sum(bool(r["closed"]) for r in reports),
        delivered_per_s=round(published / span, 1),
        latency_ms=latency,
        cpu_s_per_1k={k: round(v / max(published, 1) * 1000, 4) for k, v in cpu.items()},
        passed=False,
        hist_0_1ms=merged,
    )
    result.passed = (
        published > 0
        and lost == 0
        and result.duplicates == 0
        and latency["total"]["p99"] <= target_p99_ms
    )
    return result


def _print(r: E2EResult) -> None:
    lat = r.latency_ms
    hops = "  ".join(f"{h}={lat[h]['p99']:.1f}" for h in HOPS)
    cpu = " ".join(f"{k}={v:.3f}" for k, v in r.cpu_s_per_1k.items())
    print(
        f"{r.offered_per_s:>8,.0f}/s{' (search)' if r.search else ''}: published "
        f"{r.published:,} delivered {r.delivered_per_s:,.0f}/s lost {r.lost} dup "
        f"{r.duplicates} | total p50 {lat['total']['p50']:.1f} p95 {lat['total']['p95']:.1f} "
        f"p99 {lat['total']['p99']:.1f} max {lat['total']['max']:.1f} ms "
        f"{'PASS' if r.passed else 'fail'}\n    p99 per hop (ms): {hops}\n"
        f"    CPU s per 1,000 readings: {cpu}",
        flush=True,
    )


def best_rate(results: list[E2EResult]) -> float | None:
    """The highest offered rate that passed."""
    passing = [r.offered_per_s for r in results if r.passed]
    return max(passing) if passing else None


def main(argv: list[str] | None = None) -> int:
    """Run the rates (and the search), print the figures, write the report."""
    parser = scenario_parser("e2e", __doc__)
    parser.add_argument(
        "--rates",
        type=listed(positive(float)),
        default=None,
        help="offered readings/s (default 2000,5000,10000,15000)",
    )
    parser.add_argument("--seconds", type=positive(float), default=10.0, help="load per rate")
    parser.add_argument("--clients", type=int, default=2, help="WebSocket client processes")
    parser.add_argument("--search", type=int, default=2, help="bisection steps after the list")
    parser.add_argument("--target-p99-ms", type=float, default=TARGET_P99_MS)
    parser.add_argument(
        "--quick", action="store_true", help="2 s per rate (500 and 2,000/s), no search"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "e2e.json")
    args = parser.parse_args(argv)
    default_rates = [500.0, 2000.0] if args.quick else [2000.0, 5000.0, 10000.0, 15000.0]
    rates: list[float] = args.rates or default_rates
    seconds, search = (2.0, 0) if args.quick else (args.seconds, args.search)
    load = os.getloadavg()
    results: list[E2EResult] = []
    with tempfile.TemporaryDirectory(prefix="iotstream-e2e-") as tmp:

        def measure(rate: float, searching: bool) -> E2EResult:
            work = Path(tmp) / f"r{len(results)}-{rate:.0f}"
            r = run_rate(
                rate,
                seconds=seconds,
                clients=args.clients,
                work=work,
                target_p99_ms=args.target_p99_ms,
            )
            r.search = searching
            results.append(r)
            _print(r)
            return r

        for rate in sorted(rates):
            measure(rate, False)
        for _ in range(search):
            low = best_rate(results)
            failing = [r.offered_per_s for r in results if not r.passed]
            high = min((f for f in failing if low is None or f > low), default=None)
            if low is None or high is None or high - low < 500:
                break
            measure(round((low + high) / 2 / 100) * 100, True)
    best = best_rate(results)
    found_by = "rate list" if not any(r.search and r.passed for r in results) else "bisection"
    if best is not None and best == max(r.offered_per_s for r in results):
        found_by += " (the highest rate tried passed: the limit may be higher)"
    print(
        f"\nhighest rate with p99 device -> client <= {args.target_p99_ms:g} ms and 0 loss: "
        f"{'none' if best is None else f'{best:,.0f}/s'} (from the {found_by})"
    )
    report = {
        "benchmark": "e2e",
        "machine": machine_info() | {"loadavg_before": [round(x, 2) for x in load]},
        "params": {
            "rates": rates,
            "seconds": seconds,
            "clients": args.clients,
            "search_steps": search,
            "target_p99_ms": args.target_p99_ms,
            "simulator_processes": SIM_PROCESSES,
            "devices": DEVICES,
            "qos": 1,
            "worker": {"mqtt": "5", "max_batch": 64, "max_wait_ms": 5, "model": "fault-clf"},
            "quick": args.quick,
        },
        "best_rate_per_s": best,
        "found_by": found_by,
        "results": [asdict(r) for r in sorted(results, key=lambda r: r.offered_per_s)],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"report: {args.out}")
    bad = [r for r in results if r.published == 0 or r.lost or r.duplicates]
    return 1 if args.quick and bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
