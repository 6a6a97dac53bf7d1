"""Streaming pipeline benchmark: simulator -> Mosquitto -> worker(s) -> Redis, all on this machine.

Prints a table and writes a JSON report (default ``bench/results/pipeline.json``).

Scenarios, each a fresh broker + Redis:
  saturate   the simulator offers more than the worker can take (QoS 1, manual acks);
             sustained rate = predictions stored per second; zero loss checked at the end.
  latency    a fixed offered rate (default 10,000 readings/s): p50/p99 publish -> Redis.
  baseline   max_batch=1: one inference and one Redis write per message, offered a bit
             more than it sustains (its backlog must drain before loss is counted).

Each of saturate and latency also runs with the staged intake (``--sources mqtt,stream``):
``iotstream ingest`` puts every reading in the Redis staging stream, the worker reads it
through a consumer group (WORKER_SOURCE=stream). The ingest's CPU and Redis's CPU per
reading are reported for both sources, so the cost of the extra hop is visible.

Worker CPU per reading is read from /proc/<pid>/stat (user + system) of the worker process.

    iotstream bench pipeline                      # full run (~2 min)
    iotstream bench pipeline --quick              # bounded run (~1 min)
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench.cli import add_sources_argument, listed, one_of, positive, scenario_parser
from iot_contract import RECORD_FIELD, JsonCodec, Prediction, RedisKeys
from iotstream.localservices import MosquittoProcess, RedisProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The saturate scenario offers more than the worker takes, so the broker holds a growing
# backlog for the worker's session: room for a few hundred thousand messages.
BROKER_CONFIG = (
    MosquittoProcess.default_config()
    .replace("max_inflight_messages 100", "max_inflight_messages {inflight}")
    .replace("max_queued_messages 100000", "max_queued_messages 2000000")
)


@dataclass
class Result:
    """One scenario's figures."""

    scenario: str
    protocol: str
    max_batch: int
    offered_per_s: float
    published: int
    stored: int
    duplicates_or_loss: int
    seconds: float
    stored_per_s: float
    worker_cpu_us_per_reading: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    extra: dict[str, Any] = field(default_factory=dict)


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def _wait_cpu(proc: subprocess.Popen[bytes], timeout: float) -> float:
    """Wait for a child and return the CPU seconds (user + system) it used."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, _status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = 0
            return usage.ru_utime + usage.ru_stime
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"simulator {proc.pid} did not finish in {timeout:.0f}s")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@contextlib.contextmanager
def _services(work: Path, inflight: int) -> Iterator[tuple[MosquittoProcess, RedisProcess]]:
    config = BROKER_CONFIG.replace("{inflight}", str(inflight))
    with MosquittoProcess(work / "mq", config=config) as mq, RedisProcess(work / "rd") as rd:
        yield mq, rd


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "iotstream", *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def _wait_ready(
    log: Path, proc: subprocess.Popen[bytes], timeout: float = 60, marker: str = "ready: "
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited:\n{log.read_text()[-3000:]}")
        if marker in log.read_text():
            return
        time.sleep(0.1)
    raise RuntimeError(f"worker not ready in {timeout}s:\n{log.read_text()[-3000:]}")


def run_scenario(
    name: str,
    *,
    rate: float,
    seconds: float,
    protocol: str,
    max_batch: int,
    work: Path,
    inflight: int,
    load_client: str = "raw",
    sim_processes: int = 2,
    source: str = "mqtt",
    worker_env: dict[str, str] | None = None,
    inspect: Callable[[redis.Redis, RedisKeys], dict[str, Any]] | None = None,
) -> Result:
    """Run one scenario on a fresh broker and Redis (``worker_env``: more ``WORKER_*``
    settings for the worker and the ingest; ``inspect``: more figures from the stored
    predictions, read before Redis stops, added to ``extra``)."""
    work.mkdir(parents=True, exist_ok=True)
    with _services(work, inflight) as (mq, rd):
        keys = RedisKeys("bench")
        worker_env = {
            "WORKER_WORKER_ID": "bench-w0",
            "WORKER_MQTT_URL": mq.url,
            "WORKER_REDIS_URL": rd.url,
            "WORKER_REDIS_PREFIX": keys.prefix,
            "WORKER_MQTT_PROTOCOL": protocol,
            "WORKER_MAX_BATCH": str(max_batch),
            "WORKER_MAX_WAIT_MS": "5",
            "WORKER_MODELS_DIR": str(ROOT / "models"),
            "WORKER_MODELS": "fault-clf",
            "WORKER_DEFAULT_MODEL": "fault-clf",
            "WORKER_LOG_LEVEL": "INFO",
            "WORKER_METRICS_PORT": str(metrics_port := free_port()),
            "WORKER_SOURCE": source,
        } | (worker_env or {})
        ingest = None
        if source == "stream":
            ingest_env = worker_env | {
                "WORKER_WORKER_ID": "bench-ingest",
                "WORKER_METRICS_PORT": str(free_port()),
            }
            ingest = _spawn(["ingest"], ingest_env, work / "ingest.log")
        wlog = work / "worker.log"
        worker = _spawn(["worker"], worker_env, wlog)
        try:
            _wait_ready(wlog, worker)
            if ingest is not None:
                _wait_ready(work / "ingest.log", ingest)
            cpu0 = _cpu_seconds(worker.pid)
            ingest_cpu0 = _cpu_seconds(ingest.pid) if ingest else 0.0
            redis_pid = rd.pid or 0
            redis_cpu0 = _cpu_seconds(redis_pid)
            rss0 = _rss_mb(worker.pid)
            per_sim = rate / sim_processes
            devices = 1000
            sims = [
                _spawn(
                    [
                        "sim",
                        "--mode",
                        "load",
                        "--devices",
                        str(devices // sim_processes),
                        "--device-prefix",
                        f"b{k}",
                        "--connections",
                        "2",
                        "--rate",
                        str(per_sim / (devices // sim_processes)),
                        "--duration",
                        str(seconds),
                        "--report-every",
                        "60",
                        "--mqtt-url",
                        mq.url,
                        "--protocol",
                        "3.1.1",
                        "--load-client",
                        load_client,
                    ],
                    {},
                    work / f"sim{k}.log",
                )
                for k in range(sim_processes)
            ]
            t0 = time.monotonic()
            sim_cpu = sum(_wait_cpu(sim, seconds + 60) for sim in sims)
            client = redis.Redis.from_url(rd.url)
            published = sum(_published(work / f"sim{k}.log") for k in range(sim_processes))
            stored = _wait_settled(client, keys.predictions, published)
            elapsed = time.monotonic() - t0
            cpu = _cpu_seconds(worker.pid) - cpu0
            ingest_cpu = _cpu_seconds(ingest.pid) - ingest_cpu0 if ingest else 0.0
            redis_cpu = _cpu_seconds(redis_pid) - redis_cpu0
            memory = {
                "source": source,
                "ingest_cpu_us_per_reading": round(ingest_cpu / max(published, 1) * 1e6, 1),
                "redis_cpu_us_per_reading": round(redis_cpu / max(published, 1) * 1e6, 1),
                "rss_ready_mb": rss0,
                "rss_end_mb": _rss_mb(worker.pid),
                "rss_peak_mb": _rss_mb(worker.pid, "VmHWM"),
                "simulators_cpu_us_per_reading": round(sim_cpu / max(published, 1) * 1e6, 1),
                "mean_batch": _mean_batch(metrics_port),
            }
            lat = _latencies(client, keys)
            if inspect is not None:
                memory.update(inspect(client, keys))
            first_last = _stored_span(client, keys)
            client.close()
        finally:
            for proc in (worker, ingest):
                if proc is not None:
                    proc.terminate()
                    proc.wait(30)
    active = first_last or elapsed
    pct = _percentiles(lat)
    return Result(
        scenario=name,
        protocol=protocol,
        max_batch=max_batch,
        offered_per_s=rate,
        published=published,
        stored=stored,
        duplicates_or_loss=stored - published,
        seconds=round(active, 2),
        stored_per_s=round(stored / active, 1),
        worker_cpu_us_per_reading=round(cpu / max(stored, 1) * 1e6, 1),
        p50_ms=pct[0],
        p99_ms=pct[1],
        max_ms=pct[2],
        extra=memory,
    )


def _mean_batch(port: int) -> float:
    """Mean micro-batch size over the run, from the worker's own metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    values = dict(
        line.split(" ", 1) for line in text.splitlines() if line.startswith("worker_batch_size_")
    )
    count = float(values.get("worker_batch_size_count", 0))
    return round(float(values.get("worker_batch_size_sum", 0)) / count, 1) if count else 0.0


def _published(log: Path) -> int:
    # the simulator's last progress line: "... | sent N (R/s) | acked N | ..."
    lines = [line for line in log.read_text().splitlines() if "| sent " in line]
    if not lines:
        raise RuntimeError(f"simulator printed no progress:\n{log.read_text()[-2000:]}")
    return int(lines[-1].split("| acked ")[1].split()[0])


def _wait_settled(client: redis.Redis, key: str, expected: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = int(client.xlen(key))
        if n >= expected and n == last and time.monotonic() - since > 1.0:
            return n
        if n != last:
            last, since = n, time.monotonic()
        time.sleep(0.2)
    return last


def stored_predictions(client: redis.Redis, keys: RedisKeys) -> Iterator[Prediction]:
    """Every prediction in the stream, oldest first, read 10,000 at a time."""
    codec = JsonCodec()
    last = "-"
    while True:
        batch: Any = client.xrange(keys.predictions, min=last, count=10_000)
        if last != "-":
            batch = batch[1:]
        if not batch:
            return
        for _id, fields in batch:
            yield codec.decode(fields[RECORD_FIELD], Prediction)
        last = batch[-1][0].decode()


def _latencies(client: redis.Redis, keys: RedisKeys) -> list[float]:
    return [
        ((p.hops.published_ts or 0) - p.hops.device_ts) * 1000
        for p in stored_predictions(client, keys)
    ]


def write_report(path: Path, figures: dict[str, Any]) -> None:
    """Write ``figures`` with a description of this machine as the JSON report at ``path``
    and say where it is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    machine = {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    path.write_text(json.dumps({"machine": machine, **figures}, indent=2))
    print(f"\nreport: {path}")


def _stored_span(client: redis.Redis, keys: RedisKeys) -> float | None:
    first: Any = client.xrange(keys.predictions, count=1)
    last: Any = client.xrevrange(keys.predictions, count=1)
    if not first or not last:
        return None
    first_ms = int(first[0][0].split(b"-")[0])
    last_ms = int(last[0][0].split(b"-")[0])
    return max((last_ms - first_ms) / 1000, 0.001)


def _percentiles(values: list[float]) -> tuple[float, float, float]:
    if not values:
        return (float("nan"),) * 3
    s = sorted(values)

    def at(q: float) -> float:
        return round(s[min(len(s) - 1, int(q * len(s)))], 2)

    return at(0.50), at(0.99), round(s[-1], 2)


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios and write the report."""
    parser = scenario_parser("pipeline", __doc__)
    parser.add_argument("--quick", action="store_true", help="4 s per scenario")
    parser.add_argument("--seconds", type=positive(float), default=10.0, help="load per scenario")
    parser.add_argument("--saturate-rate", type=positive(float), default=30000, help="offered load")
    parser.add_argument("--latency-rate", type=positive(float), default=10000, help="fixed load")
    parser.add_argument(
        "--baseline-rate",
        type=positive(float),
        default=3000,
        help="offered load for max_batch=1 (just above what it sustains)",
    )
    parser.add_argument(
        "--protocols",
        type=listed(one_of("5", "3.1.1")),
        default="5,3.1.1",
        help="worker MQTT versions (the first also runs the baseline)",
    )
    parser.add_argument("--max-batch", type=int, default=64, help="worker max_batch")
    add_sources_argument(
        parser,
        "mqtt,stream",
        "worker sources: mqtt (direct shared subscription), stream (staged intake)",
    )
    parser.add_argument(
        "--load-client",
        choices=["raw", "paho"],
        default="raw",
        help="simulator client: raw (cheap, leaves the CPU to the pipeline) or paho",
    )
    parser.add_argument(
        "--inflight",
        type=int,
        default=256,
        help="broker max_inflight_messages (3.1.1 worker window)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "pipeline.json")
    args = parser.parse_args(argv)
    seconds = 4.0 if args.quick else args.seconds
    results: list[Result] = []
    protocols: list[str] = args.protocols
    sources: list[str] = args.sources
    # (scenario, offered rate, worker protocol, max_batch, source); the staged intake runs
    # on the first protocol only (the ingest's protocol; the worker speaks no MQTT there)
    plan = [
        (name, rate, protocol, args.max_batch, source)
        for source in sources
        for protocol in (protocols if source == "mqtt" else protocols[:1])
        for name, rate in (("saturate", args.saturate_rate), ("latency", args.latency_rate))
    ]
    plan.append(("baseline", args.baseline_rate, protocols[0], 1, sources[0]))
    with tempfile.TemporaryDirectory(prefix="iotstream-bench-") as tmp:
        for name, rate, protocol, max_batch, source in plan:
            results.append(
                run_scenario(
                    name,
                    rate=rate,
                    seconds=seconds,
                    protocol=protocol,
                    max_batch=max_batch,
                    work=Path(tmp) / f"{name}-{protocol}-{source}",
                    inflight=args.inflight,
                    load_client=args.load_client,
                    source=source,
                )
            )
    _print(results)
    write_report(
        args.out,
        {
            "seconds": seconds,
            "batched_vs_per_message": _speedup(results),
            "results": [asdict(r) for r in results],
        },
    )
    return 0


def _print(results: list[Result]) -> None:
    head = (
        f"{'scenario':<9} {'source':<6} {'mqtt':<5} {'batch':>5} {'offered/s':>9} {'stored':>8} "
        f"{'loss':>5} {'stored/s':>9} {'cpu us/r':>8} {'ing us/r':>8} {'rds us/r':>8} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'rss MB':>9} {'sim us/r':>8} {'batch~':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        x = r.extra
        print(
            f"{r.scenario:<9} {x['source']:<6} {r.protocol:<5} {r.max_batch:>5} "
            f"{r.offered_per_s:>9.0f} {r.stored:>8} {r.duplicates_or_loss:>5} "
            f"{r.stored_per_s:>9.0f} {r.worker_cpu_us_per_reading:>8.1f} "
            f"{x['ingest_cpu_us_per_reading']:>8.1f} {x['redis_cpu_us_per_reading']:>8.1f} "
            f"{r.p50_ms:>7.1f} {r.p99_ms:>7.1f} "
            f"{x['rss_ready_mb']:>4.0f}>{x['rss_peak_mb']:<4.0f} "
            f"{x['simulators_cpu_us_per_reading']:>8.1f} {x['mean_batch']:>6.1f}"
        )
    print(
        "cpu us/r: worker CPU per stored reading; ing us/r: the ingest's (staged intake); "
        "rds us/r: Redis's;\nsim us/r: both simulators' CPU per reading; batch~: mean "
        "micro-batch"
    )
    if (speedup := _speedup(results)) is not None:
        print(f"\nmicro-batched / per-message (same worker protocol): {speedup:.1f}x")


def _speedup(results: list[Result]) -> float | None:
    """Saturated rate over the max_batch=1 baseline's, on the baseline's protocol."""
    base = next((r for r in results if r.scenario == "baseline"), None)
    sat = next(
        (
            r
            for r in results
            if base
            and r.scenario == "saturate"
            and r.protocol == base.protocol
            and r.extra["source"] == base.extra["source"]
        ),
        None,
    )
    if base is None or sat is None:
        return None
    return round(sat.stored_per_s / max(base.stored_per_s, 1), 1)


if __name__ == "__main__":
    raise SystemExit(main())
