"""docs/deploy.md stays in step with the deployment files: every WORKER_/GATEWAY_/SIM_
variable they set is documented there, and its relative links point at real files."""

from __future__ import annotations

import re

from tests.deploy.support import ROOT

DOC = ROOT / "docs" / "deploy.md"
SOURCES = ["compose", "k8s", "demo", "iotstream/commands/demo.py"]


def _variables_set_by_deploy_files() -> set[str]:
    found: set[str] = set()
    for src in SOURCES:
        path = ROOT / src
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for f in files:
            if f.name == "secrets.env":
                continue
            found |= set(re.findall(r"\b(?:WORKER|GATEWAY|SIM)_[A-Z_]+\b", f.read_text()))
    return found


def test_every_service_variable_is_documented() -> None:
    variables = _variables_set_by_deploy_files()
    assert len(variables) > 15
    text = DOC.read_text()
    assert sorted(v for v in variables if f"`{v}`" not in text) == []


def test_relative_links_resolve() -> None:
    for target in re.findall(r"\]\((?!https?:|#)([^)#]+)", DOC.read_text()):
        assert (DOC.parent / target).exists(), target
