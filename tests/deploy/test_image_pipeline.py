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
    assert "for svc in mosquitto redis minio ingest worker-1 worker-2 gateway" in smoke["run"]
    assert "XLEN iotstream:predictions" in smoke["run"]
    assert smoke["env"]["IOTSTREAM_IMAGE"] == build["with"]["tags"]
    # The workers serve the versions models-init published to MinIO, fetched from the store.
    assert "models versions --store s3://models/fleet" in smoke["run"]
    assert "worker_model_from_cache 0.0" in smoke["run"]
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
    assert sign["env"]["WORKER_DIGEST"] == "${{ steps.push-worker.outputs.digest }}"
    assert 'for ref in "$IMAGE@$DIGEST" "$WORKER_IMAGE@$WORKER_DIGEST"' in sign["run"]
    assert 'cosign sign --yes "$ref"' in sign["run"] and 'cosign verify "$ref"' in sign["run"]
    _uses(steps, "sigstore/cosign-installer")
    opened = _uses(steps, "peter-evans/create-pull-request")
    assert "steps.push.outputs.digest" in opened["with"]["commit-message"]
    assert "steps.push-worker.outputs.digest" in opened["with"]["commit-message"]


def _step(steps: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(s for s in steps if s.get("name", "") == name)


WORKER_BUILD_ARGS = {
    "PYTHON_IMAGE=${{ env.PYTHON_IMAGE }}",
    "WORKER_BASE_IMAGE=${{ env.WORKER_BASE_IMAGE }}",
}


def test_pull_requests_build_size_check_smoke_test_and_scan_the_worker_image() -> None:
    """The worker target (#17: <= 250 MB) is built for both architectures on every pull
    request, fails the job over the budget, starts as its two roles without the gateway's
    packages, runs the compose pipeline's ingest and workers, and is scanned."""
    image = _load("image.yml")
    steps = _steps(image, "build-test")
    builds = [s for s in steps if s.get("uses", "").startswith("docker/build-push-action@")]
    assert len(builds) == 2
    worker = builds[1]["with"]
    assert worker["target"] == "worker" and worker["file"] == "compose/Dockerfile"
    assert worker["platforms"] == "linux/${{ matrix.arch }}"
    assert worker["push"] is False and worker["load"] is True
    assert set(worker["build-args"].splitlines()) == WORKER_BUILD_ARGS
    tag = worker["tags"]
    size = _step(steps, "Record the uncompressed size")["run"]
    assert f"docker image inspect {tag}" in size and '-gt "$SIZE_BUDGET_MB"' in size
    assert "exit 1" in size.split('-gt "$SIZE_BUDGET_MB"', 1)[1]  # over the budget fails
    assert image["env"]["SIZE_BUDGET_MB"] == "250"
    roles = _step(steps, "Each role's command starts")["run"]
    assert f'docker run --rm {tag} "$role" --help' in roles and "for role in worker ingest" in roles
    assert "'fastapi', 'uvicorn', 'cryptography'" in roles
    smoke = _step(steps, "Smoke test with docker compose (ingest, workers, gateway, simulator)")
    assert smoke["env"]["IOTSTREAM_WORKER_IMAGE"] == tag
    assert "IOTSTREAM_WORKER_IMAGE" in (ROOT / "compose" / "docker-compose.yml").read_text()
    scans = [s for s in steps if s.get("uses", "").startswith("aquasecurity/trivy-action@")]
    assert {s["with"]["image-ref"] for s in scans} == {builds[0]["with"]["tags"], tag}
    for scan in scans:
        assert scan["with"]["exit-code"] == "1" and scan["with"]["ignore-unfixed"] is True


def test_tags_push_sign_and_pin_the_worker_image() -> None:
    steps = _steps(_load("image.yml"), "release")
    push = next(s for s in steps if s.get("id") == "push-worker")
    assert push["with"]["target"] == "worker" and push["with"]["push"] is True
    assert set(push["with"]["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert push["with"]["provenance"] == "mode=max" and push["with"]["sbom"] is True
    assert set(push["with"]["build-args"].splitlines()) == WORKER_BUILD_ARGS
    assert push["with"]["tags"] == "${{ steps.worker-meta.outputs.tags }}"
    meta = next(s for s in steps if s.get("id") == "worker-meta")
    assert meta["with"]["images"] == "${{ env.WORKER_IMAGE }}"


def test_the_pin_step_rewrites_both_overlays(tmp_path: Path) -> None:
    """The release's pin script, run on copies of the overlays, sets the tag and each image's
    own digest on every entry of the full and the worker image (and the result parses)."""
    step = _step(_steps(_load("image.yml"), "release"), "Pin the digests in the k8s overlays")
    script = step["run"].split("<<'EOF'\n", 1)[1].split("\nEOF", 1)[0]
    digests = {
        "ghcr.io/iotstream/iotstream": "sha256:" + "ab" * 32,
        "ghcr.io/iotstream/iotstream-worker": "sha256:" + "cd" * 32,
    }
    assert '"$DIGEST"' in step["run"] and '"$WORKER_DIGEST"' in step["run"]
    for overlay in ("cloud", "edge"):
        copy = tmp_path / f"{overlay}.yaml"
        copy.write_text((ROOT / "k8s" / "overlays" / overlay / "kustomization.yaml").read_text())
        pairs = [word for pair in digests.items() for word in pair]
        result = subprocess.run(
            [sys.executable, "-", str(copy), "9.8.7", *pairs],
            input=script,
            text=True,
            capture_output=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        images = yaml.safe_load(copy.read_text())["images"]
        ours = {
            i.get("newName", i["name"]): i
            for i in images
            if "iotstream/" in i.get("newName", i["name"])
        }
        assert set(ours) == set(digests), overlay
        for name, entry in ours.items():
            assert entry["newTag"] == "9.8.7" and entry["digest"] == digests[name], (overlay, name)


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
    # The worker's distroless base: pinned by digest, the same reference as the Dockerfile's
    # default, and matched by the same Renovate manager.
    worker_base = image["env"]["WORKER_BASE_IMAGE"]
    assert f"ARG WORKER_BASE_IMAGE={worker_base}\n" in dockerfile
    deps = {
        m["depName"]: m["currentDigest"]
        for m in re.finditer(manager["matchStrings"][0].replace("(?<", "(?P<"), text)
    }
    assert deps["gcr.io/distroless/python3-debian12"] == worker_base.split("@")[1]


def test_renovate_schema_check_catches_a_wrong_value(tmp_path: Path) -> None:
    broken = tmp_path / "renovate.json"
    broken.write_text(
        (ROOT / "renovate.json")
        .read_text()
        .replace('"prConcurrentLimit": 5', '"prConcurrentLimit": "five"')
    )
    result = run_tool("check-jsonschema", "--builtin-schema", "vendor.renovate", str(broken))
    assert result.returncode != 0


@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("*.y*ml")))
def test_actions_pinned_by_commit_sha_with_their_release(name: str) -> None:
    """Every workflow (release.yml too): 40-hex SHAs with the release in a comment. 13 of the
    14 pins were checked against the actions' repositories (tag -> commit) on 2026-11-30
    (docs/deploy.md)."""
    workflow = _load(name)
    text = (WORKFLOWS / name).read_text()
    uses = [s["uses"] for job in workflow["jobs"] for s in _steps(workflow, job) if "uses" in s]
    assert uses
    for use in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", use), use
        # `uses: owner/action@<sha> # vX.Y.Z`: the release, for reviewers and for Renovate.
        assert re.search(re.escape(use) + r" # v\d+\.\d+\.\d+\n", text), use
