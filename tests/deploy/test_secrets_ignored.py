"""Files that hold real secrets once filled in are git-ignored, and none is tracked."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.deploy.support import ROOT

SECRET_FILES = [
    "compose/.env",
    "k8s/overlays/cloud/secrets.env",
    "k8s/overlays/edge/secrets.env",
]
_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("path", SECRET_FILES)
def test_filled_in_secret_files_are_ignored(path: str) -> None:
    assert _git("check-ignore", "-q", path).returncode == 0, f"{path} is not git-ignored"


def test_no_secret_file_is_tracked() -> None:
    tracked = _git("ls-files").stdout.splitlines()
    assert sorted(set(tracked) & set(SECRET_FILES)) == []
    keys = [
        name
        for name in tracked
        if (ROOT / name).is_file()
        and name.endswith((".key", ".pem", ".crt", ".env", ".json", ".conf", ".yaml", ".sh"))
        and _PRIVATE_KEY.search((ROOT / name).read_text(errors="replace"))
    ]
    assert keys == []
