"""Mosquitto password files: ``username:$7$<iterations>$<salt>$<hash>`` lines.

``$7$`` is Mosquitto 2's PBKDF2-HMAC-SHA512 format (what ``mosquitto_passwd`` writes):
a 12-byte random salt and a 64-byte derived key, both standard base64. The tests check
that the real broker accepts what :func:`hash_password` writes and that
:func:`verify_password` accepts what ``mosquitto_passwd`` writes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Final

__all__ = [
    "DEFAULT_ITERATIONS",
    "PasswordFile",
    "PasswordFileError",
    "generate_secret",
    "hash_password",
    "verify_password",
    "write_private",
]

DEFAULT_ITERATIONS: Final = 101  # mosquitto_passwd's default in 2.0
_SALT_LEN: Final = 12
_KEY_LEN: Final = 64


class PasswordFileError(ValueError):
    """A password file line or operation is invalid."""


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, readable by its owner only (0600): a
    reader never sees half a file, and the secret is never world-readable, even briefly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def generate_secret(nbytes: int = 24) -> str:
    """A random URL-safe secret (``nbytes`` of entropy, 32 characters by default)."""
    return secrets.token_urlsafe(nbytes)


def hash_password(password: str, *, iterations: int = DEFAULT_ITERATIONS) -> str:
    """The ``$7$`` hash of ``password`` with a fresh random salt."""
    salt = os.urandom(_SALT_LEN)
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, _KEY_LEN)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    """True when ``password`` matches a ``$7$`` (PBKDF2-SHA512) or ``$6$`` (SHA512) hash."""
    parts = hashed.split("$")
    try:
        if len(parts) == 5 and parts[1] == "7":
            iterations, salt, key = int(parts[2]), base64.b64decode(parts[3]), parts[4]
            derived = hashlib.pbkdf2_hmac(
                "sha512", password.encode(), salt, iterations, len(base64.b64decode(key))
            )
            return hmac.compare_digest(base64.b64encode(derived).decode(), key)
        if len(parts) == 4 and parts[1] == "6":
            salt, key = base64.b64decode(parts[2]), parts[3]
            digest = hashlib.sha512(password.encode() + salt).digest()
            return hmac.compare_digest(base64.b64encode(digest).decode(), key)
    except ValueError:
        return False
    return False


class PasswordFile:
    """A password file held in memory: add, rotate and revoke users, then :meth:`save`.

    Lines that are not ``user:hash`` (comments, blanks) are kept as they are. :meth:`save`
    writes atomically (temporary file + rename) with mode 0600; send the broker SIGHUP to
    reload it (a revoked user's open connection is closed then).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lines: list[str] = []
        self._users: dict[str, str] = {}
        if path.exists():
            for raw in path.read_text().splitlines():
                self._lines.append(raw)
                if raw.strip() and not raw.lstrip().startswith("#"):
                    user, sep, hashed = raw.partition(":")
                    if not sep or not user:
                        raise PasswordFileError(f"{path}: bad line {raw[:40]!r}")
                    self._users[user] = hashed

    @property
    def users(self) -> list[str]:
        """Usernames in file order."""
        return list(self._users)

    def __contains__(self, username: object) -> bool:
        return username in self._users

    def check(self, username: str, password: str) -> bool:
        """True when ``username`` exists and ``password`` is its password."""
        hashed = self._users.get(username)
        return hashed is not None and verify_password(password, hashed)

    def set(self, username: str, password: str) -> None:
        """Add ``username`` or replace its password."""
        if not username or ":" in username or any(c.isspace() for c in username):
            raise PasswordFileError(f"username {username!r} may not be empty or hold ':'/space")
        existed = username in self._users
        self._users[username] = hash_password(password)
        if not existed:
            self._lines.append(f"{username}:")

    def remove(self, username: str) -> None:
        """Delete ``username``; raise PasswordFileError if it is not there."""
        if username not in self._users:
            raise PasswordFileError(f"no user {username!r} in {self.path}")
        del self._users[username]
        self._lines = [ln for ln in self._lines if ln.partition(":")[0] != username]

    def render(self) -> str:
        """The file's text."""
        out = []
        for line in self._lines:
            user, sep, _ = line.partition(":")
            is_entry = sep and not line.lstrip().startswith("#")
            out.append(f"{user}:{self._users[user]}" if is_entry else line)
        return "\n".join(out) + "\n"

    def save(self) -> None:
        """Write atomically with mode 0600."""
        write_private(self.path, self.render())
