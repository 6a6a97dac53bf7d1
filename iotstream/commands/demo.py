"""``iotstream demo``: the whole system on this machine, one command (``scripts/demo``).

``iotstream demo`` checks that the ports are free, prepares a work directory (broker config
from ``broker/dev.conf``, Redis AOF directory), sets the services' environment and replaces
itself with honcho running ``demo/Procfile`` in that directory: Mosquitto and Redis on
loopback, two workers with stable ids, the gateway in dev mode, the device simulator and a
banner that prints the dashboard URL and the throwaway token once the gateway is ready.
Ctrl-C stops everything. The Procfile, the broker template and the models are package data,
so an installed ``iotstream`` (``pip install iotstream``) runs the same demo as a checkout.

``demo wait`` and ``demo banner`` are the Procfile's helpers.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import getpass
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, NoReturn

from iotstream.resources import MissingResourceError, bundled_path, procfile

__all__ = ["PROCFILE", "DemoConfig", "check_ports_free", "register", "service_environment"]

PROCFILE: Final = bundled_path("demo", "Procfile").resolve()
"""The demo's process list (package data; ``demo/Procfile`` in a checkout)."""
_PR_SET_PDEATHSIG: Final = 1
_INSTALL: Final = "pip install iotstream (honcho is one of its dependencies)"
_SERVERS_HINT: Final = (
    "install them (Debian/Ubuntu: sudo apt-get install -y mosquitto mosquitto-clients "
    "redis-server; macOS: brew install mosquitto redis) and make sure they are on PATH"
)

_EPILOG = """\
environment (defaults in brackets):
  DEMO_HTTP_PORT [8000]  DEMO_MQTT_PORT [1883]  DEMO_MQTT_WS_PORT [9001]
  DEMO_REDIS_PORT [6379]  DEMO_METRICS_PORT [9101] (worker 2 and the ingest use the next two ports)
  DEMO_DIR [./.demo]     broker persistence, Redis AOF, rendered config; the processes'
                         working directory (relative to where you start the demo)
  WORKER_*, GATEWAY_*, SIM_* settings pass through (e.g. SIM_DEVICES=200 SIM_RATE=2)

Everything listens on 127.0.0.1 only. Guide: docs/deploy.md.
"""


class DemoConfig:
    """Ports and directory of one demo run, from ``DEMO_*`` variables or options."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.http_port: int = args.http_port
        self.mqtt_port: int = args.mqtt_port
        self.ws_port: int = args.mqtt_ws_port
        self.redis_port: int = args.redis_port
        self.metrics_port: int = args.metrics_port
        self.workdir: Path = Path(args.dir).resolve()

    def ports(self) -> dict[str, int]:
        """Every port the demo binds, by what binds it."""
        return {
            "gateway (DEMO_HTTP_PORT)": self.http_port,
            "mqtt (DEMO_MQTT_PORT)": self.mqtt_port,
            "mqtt websockets (DEMO_MQTT_WS_PORT)": self.ws_port,
            "redis (DEMO_REDIS_PORT)": self.redis_port,
            "worker 1 metrics (DEMO_METRICS_PORT)": self.metrics_port,
            "worker 2 metrics (DEMO_METRICS_PORT+1)": self.metrics_port + 1,
            "ingest metrics (DEMO_METRICS_PORT+2)": self.metrics_port + 2,
        }


def check_ports_free(ports: dict[str, int], host: str = "127.0.0.1") -> list[str]:
    """Descriptions of the ports in ``ports`` that something already listens on (or repeats)."""
    taken: list[str] = []
    seen: set[int] = set()
    for what, port in ports.items():
        if not 1 <= port <= 65535:  # DEMO_METRICS_PORT+2 past the last port
            taken.append(f"{what}: {port} is not a TCP port")
            continue
        if port in seen:
            taken.append(f"{what}: port {port} is given twice")
            continue
        seen.add(port)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As the servers do: TIME_WAIT leftovers of a previous run don't count, a
            # listening socket does (Linux refuses the bind then, SO_REUSEADDR or not).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                taken.append(f"{what}: {host}:{port} is in use ({exc.strerror})")
    return taken


def service_environment(cfg: DemoConfig, base: dict[str, str]) -> dict[str, str]:
    """The environment of the Procfile's processes: ``base`` plus demo defaults.

    ``WORKER_*``/``GATEWAY_*``/``SIM_*`` values already in ``base`` win over the defaults.
    """
    from iot_models.bundled import bundled_models_dir
    from iotstream.localservices import find_binary

    mqtt = f"mqtt://127.0.0.1:{cfg.mqtt_port}"
    redis = f"redis://127.0.0.1:{cfg.redis_port}/0"
    models = str(bundled_models_dir())
    defaults = {
        "WORKER_MQTT_URL": mqtt,
        "WORKER_REDIS_URL": redis,
        "WORKER_MODELS_DIR": models,
        "WORKER_SOURCE": "stream",
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(cfg.http_port),
        "GATEWAY_REDIS_URL": redis,
        "GATEWAY_MODELS_DIR": models,
        "GATEWAY_DEV_MODE": "true",
        "SIM_MQTT_URL": mqtt,
        "SIM_DEVICES": "50",
        "SIM_REPORT_EVERY": "30",
    }
    fixed = {
        "DEMO_DIR": str(cfg.workdir),
        "DEMO_HTTP_PORT": str(cfg.http_port),
        "DEMO_MQTT_PORT": str(cfg.mqtt_port),
        "DEMO_REDIS_PORT": str(cfg.redis_port),
        "DEMO_METRICS_PORT": str(cfg.metrics_port),
        "DEMO_PYTHON": sys.executable,
        "DEMO_MOSQUITTO": find_binary("mosquitto") or "mosquitto",
        "DEMO_REDIS_SERVER": find_binary("redis-server") or "redis-server",
        "PYTHONUNBUFFERED": "1",
    }
    return {**defaults, **base, **fixed}


def _prepare(cfg: DemoConfig) -> None:
    from iotstream.broker_tools.templates import Profile, render_file

    (cfg.workdir / "mosquitto").mkdir(parents=True, exist_ok=True)
    (cfg.workdir / "redis").mkdir(parents=True, exist_ok=True)
    (cfg.workdir / ".gitignore").write_text("*\n")
    conf = render_file(
        Profile.DEV,
        {
            "mqtt_port": cfg.mqtt_port,
            "ws_port": cfg.ws_port,
            "data_dir": str(cfg.workdir / "mosquitto"),
            "run_as_user": getpass.getuser(),
        },
    )
    (cfg.workdir / "mosquitto.conf").write_text(conf)


def _run(args: argparse.Namespace) -> int:
    import importlib.util

    from iotstream.broker_tools.templates import TemplateError
    from iotstream.localservices import find_binary

    cfg = DemoConfig(args)
    missing = [b for b in ("mosquitto", "redis-server") if find_binary(b) is None]
    if missing:
        print(f"iotstream demo: {', '.join(missing)} not found; {_SERVERS_HINT}", file=sys.stderr)
        return 1
    if importlib.util.find_spec("honcho") is None:
        print(f"iotstream demo: honcho (process manager) is missing; {_INSTALL}", file=sys.stderr)
        return 1
    try:
        process_list = procfile()
    except MissingResourceError as exc:
        print(f"iotstream demo: {exc}", file=sys.stderr)
        return 1
    taken = check_ports_free(cfg.ports())
    if taken:
        print("iotstream demo: refusing to start, ports are taken:", file=sys.stderr)
        for line in taken:
            print(f"  {line}", file=sys.stderr)
        print("Stop what uses them or pick others, e.g. DEMO_HTTP_PORT=8080.", file=sys.stderr)
        return 1
    try:
        _prepare(cfg)
    except TemplateError as exc:
        print(f"iotstream demo: {exc}", file=sys.stderr)
        return 1
    env = service_environment(cfg, dict(os.environ))
    print(
        f"iotstream demo: starting in {cfg.workdir} (broker, Redis, 2 workers, gateway, "
        f"simulator); the dashboard will be at http://localhost:{cfg.http_port}/ - "
        "Ctrl-C stops everything.",
        flush=True,
    )
    return _exec_honcho(process_list, cfg.workdir, env)


def _exec_honcho(process_list: Path, workdir: Path, env: dict[str, str]) -> NoReturn:
    """Replace this process with honcho: Ctrl-C / SIGTERM to the demo then reach honcho.

    The processes run in ``workdir`` (the demo's directory), never in the installation.
    """
    honcho = [sys.executable, "-m", "honcho", "start", "-f", str(process_list), "-d", str(workdir)]
    os.execvpe(honcho[0], honcho, env)  # noqa: S606 - fixed argv


def _wait(args: argparse.Namespace) -> int:
    """Wait until every target answers: ``tcp:HOST:PORT`` accepts, ``http(s)://`` gives 2xx."""
    deadline = time.monotonic() + args.timeout
    for target in args.targets:
        while not _answers(target):
            if time.monotonic() > deadline:
                print(f"demo wait: {target} did not answer in {args.timeout:.0f}s", file=sys.stderr)
                return 1
            time.sleep(0.2)
    return 0


def _answers(target: str) -> bool:
    if target.startswith("tcp:"):
        host, _, port = target[4:].rpartition(":")
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), 0.5):
            return True
        return False
    try:
        with urllib.request.urlopen(target, timeout=2) as resp:  # noqa: S310 - our own URL
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError):
        return False


def _banner(args: argparse.Namespace) -> int:
    """Wait for the gateway, print where to look and the dev token, then idle until stopped."""
    import json

    port = int(os.environ.get("DEMO_HTTP_PORT", "8000"))
    base = f"http://127.0.0.1:{port}"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    deadline = time.monotonic() + args.timeout
    while not _answers(f"{base}/readyz"):
        if time.monotonic() > deadline:
            print(f"the gateway at {base} is not ready after {args.timeout:.0f}s", flush=True)
            return 1
        time.sleep(0.3)
    with urllib.request.urlopen(f"{base}/v1/dev-token", timeout=5) as resp:  # noqa: S310
        token = json.loads(resp.read())["token"]
    mqtt = os.environ.get("DEMO_MQTT_PORT", "1883")
    print(
        "\n".join(
            [
                "=" * 72,
                "iotstream demo is running",
                f"  dashboard:  http://localhost:{port}/      API docs: http://localhost:{port}/docs",
                f"  dev token:  {token}",
                f"  MQTT:       mqtt://127.0.0.1:{mqtt} (anonymous, loopback only), e.g.",
                f"              mosquitto_sub -p {mqtt} -t 'devices/+/telemetry' -C 3",
                "  Ctrl-C stops everything.",
                "=" * 72,
            ]
        ),
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            signal.pause()
    return 0


def _last(args: argparse.Namespace) -> int:
    """Run a server that must stop after its clients (the broker, Redis).

    honcho signals every process group at once; the workers' graceful stop (unsubscribe,
    finish the batch, store, acknowledge) needs the broker and Redis for a moment longer. The
    server runs in its own session, so honcho's signal reaches only this wrapper, which waits
    ``--grace`` seconds and then stops the server. If the wrapper itself is killed, the kernel
    kills the server too (``PR_SET_PDEATHSIG``), so nothing is left behind.
    """
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("demo last: no command given", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # loaded here, not in the forked child
    proc = subprocess.Popen(  # noqa: S603 - argv from the Procfile
        command,
        start_new_session=True,
        preexec_fn=functools.partial(_die_with_parent, prctl, os.getpid()),
    )
    while proc.poll() is None and not stop.wait(0.2):
        pass
    if proc.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(args.grace)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(args.grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def _die_with_parent(prctl: Callable[..., int], parent: int) -> None:
    """In the child before exec: SIGKILL when the parent (the wrapper) dies. A parent that
    died between the fork and this call sends no signal, so the child checks it is still
    the parent's and exits at once if not."""
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _port_type(var: str) -> Callable[[str], int]:
    """An argument type: a TCP port, from the option or (as its default) ``$var``."""

    def parse(text: str) -> int:
        port = int(text) if text.strip().isdigit() else 0
        if not 1 <= port <= 65535:
            why = f"{text!r} is not a TCP port 1-65535 (option or ${var})"
            raise argparse.ArgumentTypeError(why)
        return port

    return parse


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``demo`` (and its Procfile helpers ``demo wait`` / ``demo banner``)."""
    parser = subparsers.add_parser(
        "demo",
        help="run the whole system locally (broker, Redis, workers, gateway, simulator)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for opt, var, default in (
        ("--http-port", "DEMO_HTTP_PORT", 8000),
        ("--mqtt-port", "DEMO_MQTT_PORT", 1883),
        ("--mqtt-ws-port", "DEMO_MQTT_WS_PORT", 9001),
        ("--redis-port", "DEMO_REDIS_PORT", 6379),
        ("--metrics-port", "DEMO_METRICS_PORT", 9101),
    ):
        # a string default goes through the type too: a bad $VAR is refused like the option
        env_or_default = os.environ.get(var, str(default))
        parser.add_argument(opt, type=_port_type(var), default=env_or_default, help=f"${var}")
    parser.add_argument("--dir", default=os.environ.get("DEMO_DIR", ".demo"), help="$DEMO_DIR")
    parser.set_defaults(handler=_run)
    sub = parser.add_subparsers(title="helpers (used by demo/Procfile)", metavar="HELPER")
    wait = sub.add_parser("wait", help="wait until tcp:HOST:PORT / http URLs answer")
    wait.add_argument("targets", nargs="+", metavar="TARGET")
    wait.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    wait.set_defaults(handler=_wait)
    banner = sub.add_parser("banner", help="print the dashboard URL and dev token when ready")
    banner.add_argument("--timeout", type=float, default=120.0, help="seconds (default 120)")
    banner.set_defaults(handler=_banner)
    last = sub.add_parser("last", help="run a server that stops --grace s after its clients")
    last.add_argument("--grace", type=float, default=2.0, help="seconds (default 2)")
    last.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND")
    last.set_defaults(handler=_last)
