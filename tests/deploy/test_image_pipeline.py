""".github/workflows/image.yml, the image pipeline: on every pull request it builds
linux/amd64 and linux/arm64 without pushing, records the size, smoke-tests the image with
docker compose and scans it with Trivy; on a version tag it also pushes with provenance and
an SBOM, signs the digest keyless with cosign and opens the pull request that pins that digest
in the overlays. Actions are pinned by commit SHA (ci.yml too), the base image by digest, and
Renovate (renovate.json, schema-checked) proposes the updates. The workflow cannot run here;
these checks read it the way a reviewer would, and run its pin script on the overlays."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.deploy.support import ROOT, run_tool

WORKFLOWS = ROOT / ".github" / "workflows"
OURS = ("ci.yml", "image.yml")
"""The test and image pipeline (release.yml, the PyPI release, is checked in test_workflows)."""


def _load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(data, dict)
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def _steps(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = workflow["jobs"][job]["steps"]
    return steps


def _uses(steps: list[dict[str, Any]], action: str) -> dict[str, Any]:
    return next(s for s in steps if s.get("uses", "").startswith(f"{action}@"))


def test_pull_requests_build_test_and_scan_both_architectures_without_pushing() -> None:
    image = _load("image.yml")
    assert set(image["on"]) == {"pull_request", "push"}
    assert set(image["on"]["push"]) == {"tags"}
    assert image["permissions"] == {"contents": "read"}  # only the release job may write
    job = image["jobs"]["build-test"]
    assert "if" not in job  # every pull request and every tag
    assert job["strategy"]["matrix"]["arch"] == ["amd64", "arm64"]
    steps = _steps(image, "build-test")
    build = _uses(steps, "docker/build-push-action")
    assert build["with"]["file"] == "compose/Dockerfile"
    assert build["with"]["platforms"] == "linux/${{ matrix.arch }}"
    assert build["with"]["push"] is False and build["with"]["load"] is True
    assert build["with"]["build-args"] == "PYTHON_IMAGE=${{ env.PYTHON_IMAGE }}"
    names = [s.get("name", "") for s in steps]
    smoke_name = "Smoke test with docker compose (ingest, workers, gateway, simulator)"
    smoke = steps[names.index(smoke_name)]
    # Every role of the compose pipeline healthy (/readyz), and readings come out as
    # predictions; the image under test is the one just built.
    assert "for svc in mosquitto redis ingest worker-1 worker-2 gateway" in smoke["run"]
    assert "XLEN iotstream:predictions" in smoke["run"]
    assert smoke["env"]["IOTSTREAM_IMAGE"] == build["with"]["tags"]
    assert "IOTSTREAM_IMAGE" in (ROOT / "compose" / "docker-compose.yml").read_text()
    roles = steps[names.index("Each role's command starts")]["run"]
    assert "for role in worker ingest gateway sim" in roles
    trivy = _uses(steps, "aquasecurity/trivy-action")
    assert trivy["with"]["severity"] == "CRITICAL"
    assert trivy["with"]["ignore-unfixed"] is True and trivy["with"]["exit-code"] == "1"
    assert trivy["with"]["image-ref"] == build["with"]["tags"]
    order = ["Record the uncompressed size", "Each role's command starts", smoke_name]
    assert [names.index(n) for n in order] == sorted(names.index(n) for n in order)
    assert names.index(smoke_name) < steps.index(trivy)


def test_tags_push_with_provenance_and_sbom_sign_keyless_and_pin() -> None:
    image = _load("image.yml")
    job = image["jobs"]["release"]
    assert job["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert job["needs"] == "build-test"
    assert job["permissions"]["id-token"] == "write"  # cosign keyless (OIDC)
    steps = _steps(image, "release")
    build = _uses(steps, "docker/build-push-action")
    assert set(build["with"]["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert build["with"]["push"] is True
    assert build["with"]["provenance"] == "mode=max" and build["with"]["sbom"] is True
    assert build["with"]["build-args"] == "PYTHON_IMAGE=${{ env.PYTHON_IMAGE }}"
    assert build["with"]["file"] == "compose/Dockerfile"
    sign = next(s for s in steps if "cosign sign" in s.get("run", ""))
    assert sign["env"]["DIGEST"] == "${{ steps.push.outputs.digest }}"
    assert 'cosign sign --yes "$IMAGE@$DIGEST"' in sign["run"] and "cosign verify" in sign["run"]
    _uses(steps, "sigstore/cosign-installer")
    opened = _uses(steps, "peter-evans/create-pull-request")
    assert "steps.push.outputs.digest" in opened["with"]["commit-message"]


def test_the_pin_step_rewrites_both_overlays(tmp_path: Path) -> None:
    """The release's pin script, run on copies of the overlays, sets tag and digest on every
    iotstream image entry (and the result still builds)."""
    step = next(s for s in _steps(_load("image.yml"), "release") if s.get("name", "") == (
        "Pin the digest in the k8s overlays"))  # fmt: skip
    script = step["run"].split("<<'EOF'\n", 1)[1].split("\nEOF", 1)[0]
    digest = "sha256:" + "ab" * 32
    for overlay in ("cloud", "edge"):
        copy = tmp_path / f"{overlay}.yaml"
        copy.write_text((ROOT / "k8s" / "overlays" / overlay / "kustomization.yaml").read_text())
        result = subprocess.run(
            [sys.executable, "-", str(copy), "9.8.7", digest],
            input=script,
            text=True,
            capture_output=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        images = yaml.safe_load(copy.read_text())["images"]
        ours = [i for i in images if "iotstream/iotstream" in i.get("newName", i["name"])]
        assert ours and all(i["newTag"] == "9.8.7" and i["digest"] == digest for i in ours)


def test_base_image_pinned_by_digest_and_renovate_proposes_updates() -> None:
    image = _load("image.yml")
    pinned = image["env"]["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", pinned)
    dockerfile = (ROOT / "compose" / "Dockerfile").read_text()
    assert f"ARG PYTHON_IMAGE={pinned.split('@')[0]}" in dockerfile  # same tag, now by digest
    text = (WORKFLOWS / "image.yml").read_text()
    renovate = ROOT / "renovate.json"
    result = run_tool("check-jsonschema", "--builtin-schema", "vendor.renovate", str(renovate))
    assert result.returncode == 0, result.stdout + result.stderr
    config = json.loads(renovate.read_text())
    assert {"helpers:pinGitHubActionDigests", "docker:pinDigests"} <= set(config["extends"])
    (manager,) = config["customManagers"]
    # Renovate's named groups are (?<name>...); Python spells them (?P<name>...).
    found = re.search(manager["matchStrings"][0].replace("(?<", "(?P<"), text)
    assert found and found["depName"] == "python" and found["currentDigest"] in pinned


def test_renovate_schema_check_catches_a_wrong_value(tmp_path: Path) -> None:
    broken = tmp_path / "renovate.json"
    broken.write_text(
        (ROOT / "renovate.json")
        .read_text()
        .replace('"prConcurrentLimit": 5', '"prConcurrentLimit": "five"')
    )
    result = run_tool("check-jsonschema", "--builtin-schema", "vendor.renovate", str(broken))
    assert result.returncode != 0


@pytest.mark.parametrize("name", OURS)
def test_actions_pinned_by_commit_sha_with_their_release(name: str) -> None:
    workflow = _load(name)
    text = (WORKFLOWS / name).read_text()
    uses = [s["uses"] for job in workflow["jobs"] for s in _steps(workflow, job) if "uses" in s]
    assert uses
    for use in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", use), use
        # `uses: owner/action@<sha> # vX.Y.Z`: the release, for reviewers and for Renovate.
        assert re.search(re.escape(use) + r" # v\d+\.\d+\.\d+\n", text), use
