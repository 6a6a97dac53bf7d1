"""Gateway fan-out benchmark: one gateway process, WebSocket clients in other processes,
predictions written into a real Redis stream.

Prints a table and writes a JSON report (default ``bench/results/gateway.json``).

Scenarios (each on a fresh gateway; Redis is shared):
  throughput   10 / 100 / 500 / 1,000 clients subscribed to everything; the stream gets a
               fixed offered rate; item deliveries/s counted by the clients over a window.
               Run twice per client count in the same invocation: ``batched`` (frames carry
               every item of a tick, window 50 ms) and ``per-item`` (one frame per item:
               max_frame_items=1, no window) - the baseline the batching is measured against.
  latency      100 clients at 1,000 predictions/s and at 100 predictions/s with the default
               adaptive tick; p50/p99/max from the writer's ``published_ts`` (stamped just
               before XADD, as a worker does) to the client's receive time.

    flock /tmp/iotstream-heavy.lock python -m bench.gateway_bench           # ~3 min
    flock /tmp/iotstream-heavy.lock python -m bench.gateway_bench --quick   # ~1 min
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis

from bench.cli import positive, scenario_parser
from bench.client_processes import LineProcesses
from bench.figures import Measured
from bench.gateway_clients import CLIENT_MODULE
from gateway.auth import TokenVerifier
from gateway.settings import GatewaySettings
from iot_contract import RECORD_FIELD, Hops, JsonCodec, ModelRef, Prediction, RedisKeys
from iotstream.gateway_process import GatewayProcess
from iotstream.localservices import RedisProcess

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
SECRET = "bench-secret-" + "b" * 40
CLIENT_PROCESSES = 4
_RUN = itertools.count()


@dataclass
class Result(Measured):
    """One scenario's figures."""

    scenario: str
    mode: str
    clients: int
    offered_per_s: float
    seconds: float
    delivered: int
    deliveries_per_s: float
    frames_per_s: float
    gateway_cpu_pct: float
    max_ms: float | None = None


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _prediction(i: int) -> Prediction:
    now = time.time()
    return Prediction(
        device_id=f"pump-{i % 200:03d}",
        seq=i,
        model=ModelRef(name="fault-clf", version="1", variant="fp32"),
        score=0.01 * (i % 100),
        anomaly=i % 50 == 0,
        label="normal",
        hops=Hops(device_ts=now, received_ts=now, inferred_ts=now, published_ts=now),
        worker_id="bench",
    )


class Producer(threading.Thread):
    """Writes predictions at ``rate`` per second until stopped.

    Records have the workers' layout (``{m: Prediction JSON}``, ``MAXLEN ~``). ``exact``
    encodes each prediction at write time with ``published_ts`` = now (latency runs);
    otherwise pre-encoded records are reused (less CPU next to the gateway: throughput runs).
    """

    def __init__(self, url: str, keys: RedisKeys, rate: float, *, exact: bool) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url)
        self.keys = keys
        self.rate = rate
        self.exact = exact
        self.stop = threading.Event()
        self.sent = 0
        self._codec = JsonCodec()
        self._encoded = [self._codec.encode(_prediction(i)) for i in range(1000)]

    def run(self) -> None:
        t0 = time.perf_counter()
        while not self.stop.is_set():
            due = int((time.perf_counter() - t0) * self.rate) - self.sent
            if due <= 0:
                time.sleep(min(0.001, 1 / self.rate))
                continue
            n = min(due, 1000)
            with self.client.pipeline(transaction=False) as pipe:
                for k in range(n):
                    raw = (
                        self._codec.encode(_prediction(self.sent + k))
                        if self.exact
                        else self._encoded[(self.sent + k) % 1000]
                    )
                    pipe.xadd(
                        self.keys.predictions, {RECORD_FIELD: raw}, maxlen=200_000, approximate=True
                    )
                pipe.execute()
            self.sent += n


class Clients(LineProcesses):
    """``n`` WebSocket clients spread over a few processes (see bench/gateway_clients.py)."""

    def __init__(self, url: str, token: str, n: int, mode: str) -> None:
        per = [n // CLIENT_PROCESSES + (i < n % CLIENT_PROCESSES) for i in range(CLIENT_PROCESSES)]
        super().__init__(CLIENT_MODULE, [[url, str(k), mode] for k in per if k], token)

    def start(self) -> None:
        """Start counting."""
        self.ask("start")

    def stop(self) -> list[dict[str, Any]]:
        """Each process's counts."""
        return [json.loads(line) for line in self.ask("stop")]


def _percentiles(hist: dict[str, int]) -> tuple[float, float, float]:
    buckets = sorted((float(k), v) for k, v in hist.items())
    total = sum(v for _, v in buckets)
    out = []
    for q in (0.5, 0.99):
        acc = 0
        for value, count in buckets:
            acc += count
            if acc >= q * total:
                out.append(value)
                break
    return out[0], out[1], buckets[-1][0]


def run_scenario(
    work: Path,
    rd: RedisProcess,
    *,
    scenario: str,
    mode: str,
    clients: int,
    rate: float,
    seconds: float,
    gateway_options: dict[str, Any],
) -> Result:
    keys = RedisKeys(f"bench{next(_RUN)}-{scenario}-{clients}")
    options = {
        "redis_url": rd.url,
        "redis_prefix": keys.prefix,
        "jwt_secret": SECRET,
        "models_dir": str(work / "no-models"),
        "log_level": "WARNING",
        "client_queue_items": 10_000_000,  # measure throughput, not the slow-consumer policy
        "max_clients": 5000,
        **gateway_options,
    }
    settings = GatewaySettings(jwt_secret=SECRET)
    token = TokenVerifier(settings).mint(subject="bench")
    latency = scenario == "latency"
    with GatewayProcess(work / f"gw-{keys.prefix}", options) as gw:
        pool = Clients(gw.url.replace("http", "ws") + "/ws", token, clients, scenario)
        producer = Producer(rd.url, keys, rate, exact=latency)
        try:
            pool.ready()
            producer.start()
            time.sleep(1.5)  # warm up: connections settle, backlogs reach steady state
            assert gw.pid is not None
            cpu0, t0 = _cpu_seconds(gw.pid), time.perf_counter()
            pool.start()
            time.sleep(seconds)
            reports = pool.stop()
            elapsed = time.perf_counter() - t0
            cpu = _cpu_seconds(gw.pid) - cpu0
        finally:
            producer.stop.set()
            producer.join(5)
            pool.close()
    delivered = sum(r["items"] for r in reports)
    frames = sum(r["frames"] for r in reports)
    result = Result(
        scenario=scenario,
        mode=mode,
        clients=clients,
        offered_per_s=rate * clients,
        seconds=round(elapsed, 2),
        delivered=delivered,
        deliveries_per_s=round(delivered / elapsed),
        frames_per_s=round(frames / elapsed),
        gateway_cpu_pct=round(100 * cpu / elapsed, 1),
        extra={"stream_rate_per_s": rate, "closed_clients": sum(r["closed"] for r in reports)},
    )
    if latency:
        hist: dict[str, int] = {}
        for r in reports:
            for k, v in r["latency_hist"].items():
                hist[k] = hist.get(k, 0) + v
        if hist:
            result.p50_ms, result.p99_ms, result.max_ms = _percentiles(hist)
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios, print the table, write the report."""
    parser = scenario_parser("gateway", __doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter runs")
    parser.add_argument(
        "--seconds", type=positive(float), default=None, help="measuring window per run"
    )
    parser.add_argument("--only", choices=["throughput", "latency"], default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gateway.json")
    args = parser.parse_args(argv)
    seconds = args.seconds or (3.0 if args.quick else 5.0)
    counts = [100, 500] if args.quick else [10, 100, 500, 1000]
    load = os.getloadavg()
    print(
        f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs"
    )
    results: list[Result] = []
    print(
        f"{'scenario':<11}{'mode':<10}{'clients':>8}{'offered/s':>12}{'delivered/s':>13}"
        f"{'frames/s':>10}{'gw cpu%':>9}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
    )

    def show(r: Result) -> None:
        results.append(r)
        lat = "".join(
            f"{v:>8.1f}" if v is not None else f"{'':>8}" for v in (r.p50_ms, r.p99_ms, r.max_ms)
        )
        print(
            f"{r.scenario:<11}{r.mode:<10}{r.clients:>8}{r.offered_per_s:>12,.0f}"
            f"{r.deliveries_per_s:>13,}{r.frames_per_s:>10,}{r.gateway_cpu_pct:>9}{lat}",
            flush=True,
        )

    with tempfile.TemporaryDirectory(prefix="gwbench-") as tmp:
        work = Path(tmp)
        with RedisProcess(work / "redis") as rd:
            for n in counts if args.only != "latency" else []:
                rate = min(20_000.0, 1_200_000 / n)
                for mode, gw_opts in (
                    ("batched", {"batch_window_ms": 50, "max_frame_items": 5000}),
                    ("per-item", {"batch_window_ms": 0, "max_frame_items": 1}),
                ):
                    show(
                        run_scenario(
                            work,
                            rd,
                            scenario="throughput",
                            mode=mode,
                            clients=n,
                            rate=rate,
                            seconds=seconds,
                            gateway_options=gw_opts,
                        )
                    )
            for rate in (1000.0, 100.0) if args.only != "throughput" else ():
                show(
                    run_scenario(
                        work,
                        rd,
                        scenario="latency",
                        mode=f"{rate:.0f}/s",
                        clients=100,
                        rate=rate,
                        seconds=seconds * 2,
                        gateway_options={},
                    )
                )
    by = {(r.scenario, r.mode, r.clients): r for r in results}
    ratios = {
        str(n): round(
            by["throughput", "batched", n].deliveries_per_s
            / max(1, by["throughput", "per-item", n].deliveries_per_s),
            1,
        )
        for n in counts
        if ("throughput", "batched", n) in by
    }
    print("batched / per-item deliveries:", ratios)
    report = {
        "benchmark": "gateway",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_before": load,
            "loadavg_after": os.getloadavg(),
        },
        "measure_seconds": seconds,
        "results": [asdict(r) for r in results],
        "batched_over_per_item": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
