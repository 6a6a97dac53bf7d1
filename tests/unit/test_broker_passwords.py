"""Mosquitto password file hashing and editing."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from iotstream.broker_tools import PasswordFile, PasswordFileError, hash_password, verify_password

# Written by mosquitto_passwd 2.0.11 (`mosquitto_passwd -b -c pw.txt alice secret1`).
MOSQUITTO_PASSWD_LINE = (
    "alice:$7$101$vJMSODEBqG6c8rNJ$TWE7umRnBs32oVYChIYgiKbo6BaKxNI5tOGWhYv5K1b8EKmnY0xUSlGXbtcAmKzN"
    "abNfSQPxh/bCtRbQWBn+GQ=="
)


def test_verifies_a_hash_written_by_mosquitto_passwd() -> None:
    hashed = MOSQUITTO_PASSWD_LINE.partition(":")[2]
    assert verify_password("secret1", hashed)
    assert not verify_password("secret2", hashed)


def test_hash_has_mosquitto_layout_and_fresh_salt() -> None:
    first, second = hash_password("s3cret"), hash_password("s3cret")
    _, scheme, iterations, salt, key = first.split("$")
    assert (scheme, iterations) == ("7", "101")
    assert len(base64.b64decode(salt)) == 12 and len(base64.b64decode(key)) == 64
    assert first != second
    assert verify_password("s3cret", first) and verify_password("s3cret", second)
    assert not verify_password("S3cret", first)


@pytest.mark.parametrize("garbage", ["", "$7$", "$7$x$y$z", "$9$a$b", "plain"])
def test_malformed_hashes_never_verify(garbage: str) -> None:
    assert not verify_password("anything", garbage)


def test_file_edits_keep_comments_and_write_0600(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text(f"# fleet A\n{MOSQUITTO_PASSWD_LINE}\n")
    passwords = PasswordFile(path)
    passwords.set("pump-1", "one")
    passwords.set("pump-2", "two")
    passwords.remove("pump-1")
    passwords.set("alice", "rotated")
    passwords.save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert text.startswith("# fleet A\nalice:$7$")
    again = PasswordFile(path)
    assert again.users == ["alice", "pump-2"]
    assert again.check("alice", "rotated") and not again.check("alice", "secret1")
    assert again.check("pump-2", "two") and "pump-1" not in again


def test_bad_lines_and_names_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text("no-colon-here\n")
    with pytest.raises(PasswordFileError):
        PasswordFile(path)
    passwords = PasswordFile(tmp_path / "new")
    for bad in ("", "a:b", "a b"):
        with pytest.raises(PasswordFileError):
            passwords.set(bad, "x")
    with pytest.raises(PasswordFileError):
        passwords.remove("ghost")
