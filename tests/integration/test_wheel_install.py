"""The package as users get it (issue #19): built from a copy of this tree, installed into a
fresh virtual environment in a temporary folder with the runtime lock, and run from there.

``iotstream --help``, ``models list`` (the shipped models), ``broker config dev`` and
``demo`` (dashboard served, a reading sent with ``mosquitto_pub`` scored, clean stop on
Ctrl-C) must work with nothing from the checkout on the path, and a shipped file that is
missing must give one line saying what to do. Both artefacts: the wheel (``pip wheel
--no-deps .``) and the sdist (``python -m build --sdist``, installed with pip, which builds
its wheel from it); about 30 s each here.

Offline by design: every pip call that builds or installs uses ``--no-index`` with a
wheelhouse (the runtime lock, the build backend and ``build``) and ignores the machine's pip
configuration. The wheelhouse is downloaded once per lock into
``~/.cache/iotstream/wheelhouse`` (``$IOTSTREAM_WHEELHOUSE``) with ``pip download``; after
that no run needs the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.metadata import Metadata

from iotstream.localservices import find_binary
from tests.harness.ports import demo_ports, wait_ports_free

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "runtime.txt"
WHEELHOUSES = Path(
    os.environ.get("IOTSTREAM_WHEELHOUSE", Path.home() / ".cache" / "iotstream" / "wheelhouse")
)
READING = [2.1, 2.0, 1.2, 3.1, 3.0, 3.2, 1.1, 3.4, 45.0, 60.0, 11.0, 11.1, 10.9, 4.1, 52.0, 1480.0]


def _pip_env(**extra: str) -> dict[str, str]:
    """The environment minus every PIP_* setting and pip config file, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def _run(argv: list[str | Path], timeout: float, **kwargs: object) -> str:
    """Run ``argv``; its output, or a failure with the output's tail."""
    result = subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )
    assert result.returncode == 0, f"{argv}:\n{(result.stdout + result.stderr)[-4000:]}"
    return str(result.stdout + result.stderr)


def _build_requirements() -> list[str]:
    """The build backend (pyproject.toml) and ``build`` as pinned by the dev lock."""
    backend = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    dev = (ROOT / "requirements" / "dev.txt").read_text().splitlines()
    build = next(line.split()[0] for line in dev if line.startswith("build=="))
    return [*backend, build]


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """Wheels for the runtime lock and the build tools, downloaded once per lock."""
    wanted = _build_requirements()
    key = hashlib.sha256(LOCK.read_bytes() + "\n".join(wanted).encode()).hexdigest()[:16]
    folder = WHEELHOUSES / key
    if not (folder / ".complete").is_file():
        partial = folder.with_name(f"{key}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        argv = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:"]
        # The one networked step, through pip's ordinary configuration (index, proxy, cache).
        _run([*argv, "-d", partial, "-r", LOCK, *wanted], timeout=480)
        (partial / ".complete").write_text("\n".join(wanted) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    return folder


@pytest.fixture(scope="session")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This tree as git sees it (tracked and new files, links kept), outside the checkout."""
    dest = tmp_path_factory.mktemp("source") / "iotstream"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src = ROOT / name
        if not src.is_symlink() and not src.is_file():
            continue  # deleted in the work tree
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name, follow_symlinks=False)
    return dest


@dataclass(frozen=True)
class Installed:
    """A fresh virtual environment with iotstream installed, and a folder to work in."""

    venv: Path
    work: Path

    @property
    def iotstream(self) -> Path:
        return self.venv / "bin" / "iotstream"

    def env(self, **extra: str) -> dict[str, str]:
        return _pip_env(PATH=f"{self.venv / 'bin'}{os.pathsep}{os.environ['PATH']}", **extra)

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.iotstream), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.work,
            env=self.env(),
        )


def _fresh_venv(path: Path) -> Path:
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", path], timeout=180)
    return path


def _install(venv: Path, wheelhouse: Path, artefact: Path) -> Installed:
    """The runtime lock and ``artefact`` (wheel or sdist) into ``venv``; a folder beside it."""
    pip: list[str | Path] = [venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-index"]
    _run([*pip, "--find-links", wheelhouse, "-r", LOCK, artefact], timeout=600, env=_pip_env())
    work = venv.parent / "work"
    work.mkdir()
    return Installed(venv, work)


@pytest.fixture
def from_wheel(tmp_path: Path, wheelhouse: Path, source: Path) -> Installed:
    """``pip wheel --no-deps .`` of the tree, then ``pip install`` of the lock and the wheel."""
    venv = _fresh_venv(tmp_path / "venv")
    pip: list[str | Path] = [venv / "bin" / "python", "-m", "pip", "wheel", "-q", "--no-deps"]
    dist = tmp_path / "dist"
    offline: list[str | Path] = ["--no-index", "--find-links", wheelhouse]
    _run([*pip, *offline, "-w", dist, "."], timeout=300, cwd=source, env=_pip_env())
    (wheel,) = dist.glob("iotstream-*.whl")
    _check_wheel(wheel)
    return _install(venv, wheelhouse, wheel)


@pytest.fixture
def from_sdist(tmp_path: Path, wheelhouse: Path, source: Path) -> Installed:
    """``python -m build --sdist`` (in a builder venv), then ``pip install`` of the lock and
    the sdist into a fresh one (pip builds the wheel from the sdist)."""
    builder = _fresh_venv(tmp_path / "builder") / "bin" / "python"
    env = _pip_env(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheelhouse))
    _run([builder, "-m", "pip", "install", "-q", *_build_requirements()[-1:]], 300, env=env)
    dist = tmp_path / "dist"
    _run([builder, "-m", "build", "--sdist", "-o", dist, source], timeout=300, env=env)
    (sdist,) = dist.glob("iotstream-*.tar.gz")
    return _install(_fresh_venv(tmp_path / "venv"), wheelhouse, sdist)


def _check_wheel(wheel: Path) -> None:
    """The metadata is valid (what ``twine check`` checks) and the run-time data is inside."""
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Metadata.from_email(zf.read(meta_name), validate=True)
    assert meta.version is not None
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert str(meta.version) == version
    assert meta.description_content_type == "text/markdown"
    for needed in (
        "iotstream/bundled/broker/dev.conf",
        "iotstream/bundled/demo/Procfile",
        "iot_models/bundled_models/fault-clf/1/manifest.json",
        "gateway/static/index.html",
    ):
        assert needed in names, needed
    assert not [n for n in names if n.startswith(("tests/", "models/", "broker/"))]


def _check_commands(app: Installed) -> None:
    """--help, models list, broker config: from the installation, not from the checkout."""
    code = "import iotstream, iot_models; print(iotstream.__file__, iot_models.__file__)"
    python = app.venv / "bin" / "python"
    where = _run([python, "-c", code], timeout=60, cwd=app.work, env=app.env())
    assert str(ROOT) not in where
    assert where.count(str(app.venv)) == 2, where

    helped = app.run("--help")
    assert helped.returncode == 0, helped.stderr
    assert "demo" in helped.stdout

    listed = app.run("models", "list")
    assert listed.returncode == 0, listed.stderr
    for name in ("fault-clf v1", "fault-clf-large v1", "vib-ae v1"):
        assert name in listed.stdout, listed.stdout

    conf = app.run("broker", "config", "dev", "-o", "m.conf")
    assert conf.returncode == 0, conf.stderr
    text = (app.work / "m.conf").read_text()
    assert "listener" in text
    assert "{{" not in text


def _check_missing_file_is_one_line(app: Installed) -> None:
    """A shipped file taken away: one line on stderr saying what to do, no traceback."""
    (conf,) = app.venv.glob("lib/python*/site-packages/iotstream/bundled/broker/edge.conf")
    conf.unlink()
    values = ("--set", "central_host=c", "--set", "bridge_password=p")
    result = app.run("broker", "config", "edge", *values)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "edge.conf" in lines[0]
    assert "reinstall" in lines[0]


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=5) as resp:
        return int(resp.status), bytes(resp.read())


def _wait_for(what: str, log: Path, proc: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if what in line:
                return line
        assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
        time.sleep(0.2)
    raise AssertionError(f"{what!r} not printed in {timeout}s:\n{log.read_text()[-4000:]}")


@dataclass(frozen=True)
class Demo:
    """A running ``iotstream demo``: its process, ports and log."""

    proc: subprocess.Popen[bytes]
    ports: dict[str, int]
    log: Path


@contextlib.contextmanager
def _running_demo(app: Installed) -> Iterator[Demo]:
    """``iotstream demo`` started in the work folder; Ctrl-C at the end, which must stop
    every process gracefully and free every port."""
    ports = demo_ports()
    log = app.work / "demo.log"
    env = app.env(**{k: str(v) for k, v in ports.items()}, SIM_DEVICES="5", SIM_RATE="2")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(app.iotstream), "demo"],
            cwd=app.work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield Demo(proc, ports, log)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log.read_text(errors="replace")
    assert "stopped cleanly" in text, text[-3000:]
    assert "SIGKILL" not in text, text[-3000:]
    wait_ports_free(ports)


def _check_demo(app: Installed, demo: Demo) -> None:
    """The dashboard is served and a reading sent with mosquitto_pub comes back scored."""
    token_line = _wait_for("dev token:", demo.log, demo.proc, timeout=120)
    token = token_line.split("dev token:")[1].strip()
    ports = demo.ports
    base = f"http://127.0.0.1:{ports['DEMO_HTTP_PORT']}"
    status, page = _get(f"{base}/")
    assert status == 200
    assert b"<html" in page.lower()
    status, _ = _get(f"{base}/static/dashboard.js")
    assert status == 200
    # The demo runs in the folder it was started from, not in the installation.
    assert (app.work / ".demo" / "mosquitto.conf").is_file()

    mosquitto_pub = find_binary("mosquitto_pub")
    assert mosquitto_pub, "mosquitto_pub not found: apt-get install mosquitto-clients"
    device = f"wheel-{random.randrange(10**6)}"
    reading = {"device_id": device, "boot": 7, "seq": 1, "ts": time.time(), "features": READING}
    topic = f"devices/{device}/telemetry"
    _run(
        [mosquitto_pub, "-h", "127.0.0.1", "-p", str(ports["DEMO_MQTT_PORT"]), "-q", "1",
         "-t", topic, "-m", json.dumps(reading)],
        timeout=30,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        _, body = _get(f"{base}/v1/predictions?device={device}", token)
        items = json.loads(body)["items"]
        if items:
            break
        assert time.monotonic() < deadline, f"no prediction for {device} in 30 s"
        time.sleep(0.2)
    (prediction,) = items
    assert prediction["seq"] == 1
    assert prediction["model"]["name"] == "fault-clf"


def test_wheel_installed_outside_the_checkout_runs_the_cli_and_the_demo(
    from_wheel: Installed,
) -> None:
    _check_commands(from_wheel)
    with _running_demo(from_wheel) as demo:
        _check_demo(from_wheel, demo)
    _check_missing_file_is_one_line(from_wheel)


def test_sdist_installed_with_pip_gives_the_same_result(from_sdist: Installed) -> None:
    _check_commands(from_sdist)
    with _running_demo(from_sdist) as demo:
        _check_demo(from_sdist, demo)
    _check_missing_file_is_one_line(from_sdist)
