""".github/workflows: valid against the GitHub workflow schema (check-jsonschema's vendored
copy, offline); CI runs the README's test command with a dependency cache on push and pull
request; the release workflow builds, checks and publishes the sdist and wheel with trusted
publishing (no stored token); every credential comes from ``secrets.*``. The image workflow
has its own checks: test_image_pipeline.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.deploy.support import ROOT, run_tool

WORKFLOWS = ROOT / ".github" / "workflows"


def _load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(data, dict)
    # YAML 1.1 reads the key `on` as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def test_workflows_match_the_github_schema() -> None:
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    assert len(files) == 3
    result = run_tool("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "ci.yml"
    broken.write_text((WORKFLOWS / "ci.yml").read_text().replace("runs-on:", "run-on:"))
    result = run_tool(
        "check-jsonschema", "--builtin-schema", "vendor.github-workflows", str(broken)
    )
    assert result.returncode == 1


def test_ci_runs_the_readme_test_command_with_a_cache() -> None:
    ci = _load("ci.yml")
    assert set(ci["on"]) == {"push", "pull_request"}
    runs = [s.get("run", "").strip() for s in _steps(ci)]
    assert "scripts/test" in runs
    assert "scripts/test" in (ROOT / "README.md").read_text()
    assert (ROOT / "scripts" / "test").exists()
    cache = next(s for s in _steps(ci) if s.get("uses", "").startswith("actions/cache@"))
    assert "requirements/dev.txt" in cache["with"]["key"]


def test_release_builds_checks_and_publishes_with_trusted_publishing() -> None:
    release = _load("release.yml")
    assert list(release["on"]) == ["push"]
    assert release["on"]["push"] == {"tags": ["v*.*.*"]}
    assert release["permissions"] == {"contents": "read"}
    build, publish = release["jobs"]["build"], release["jobs"]["publish"]
    runs = "\n".join(s.get("run", "") for s in build["steps"])
    assert "python -m build" in runs
    assert "twine check --strict dist/*" in runs
    assert '"v$version" != "$GITHUB_REF_NAME"' in runs  # one version: pyproject.toml
    assert "-c requirements/dev.txt build twine" in runs
    dev_lock = (ROOT / "requirements" / "dev.txt").read_text()
    assert re.search(r"^build==", dev_lock, re.M)
    assert re.search(r"^twine==", dev_lock, re.M)
    assert publish["needs"] == "build"
    assert publish["permissions"] == {"id-token": "write"}
    assert publish["environment"]["name"] == "pypi"
    (upload,) = [s for s in publish["steps"] if "gh-action-pypi-publish" in s.get("uses", "")]
    assert re.fullmatch(r"pypa/gh-action-pypi-publish@[0-9a-f]{40}", upload["uses"])
    assert not set(upload.get("with", {})) & {"password", "user"}  # OIDC, no token


@pytest.mark.parametrize("name", ["ci.yml", "image.yml", "release.yml"])
def test_actions_pinned_and_credentials_only_from_secrets(name: str) -> None:
    workflow = _load(name)
    for step in _steps(workflow):
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@(v\d+|[0-9a-f]{40})", step["uses"]), step["uses"]
        for key, value in step.get("with", {}).items():
            if re.search(r"password|token|secret|key$", key) and key != "key":
                assert re.fullmatch(r"\$\{\{\s*secrets\.\w+\s*\}\}", str(value)), (name, key)
    text = (WORKFLOWS / name).read_text()
    assert not re.search(r"(ghp_|github_pat_)[A-Za-z0-9]", text)
