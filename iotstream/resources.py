"""Files the command line needs at run time, found as package data.

The broker templates (``broker/*.conf``) and the demo's ``Procfile`` live in the
repository's top-level ``broker/`` and ``demo/`` folders. In a checkout,
``iotstream/bundled/broker`` and ``iotstream/bundled/demo`` are symbolic links to them; the
wheel and the sdist carry the files themselves there (``[tool.setuptools.package-data]``).
Code finds them with :mod:`importlib.resources` either way, never relative to the source
tree, so an installed ``iotstream`` works from any directory. The default models are
:func:`iot_models.bundled.bundled_models_dir`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Final

__all__ = ["MissingResourceError", "broker_dir", "bundled_path", "procfile", "require"]

_BUNDLED: Final = "bundled"


class MissingResourceError(FileNotFoundError):
    """A file iotstream ships is not where the installation should have put it."""


def bundled_path(*parts: str) -> Path:
    """``iotstream/bundled/<parts...>`` in this installation (it may not exist)."""
    # A filesystem installation gives a Path; honcho and Mosquitto's renderer read by path.
    return Path(str(files("iotstream").joinpath(_BUNDLED, *parts)))


def broker_dir() -> Path:
    """The folder with the Mosquitto templates ``dev.conf``, ``production.conf``, ``edge.conf``."""
    return bundled_path("broker").resolve()


def procfile() -> Path:
    """The demo's ``Procfile`` (honcho's process list)."""
    return require(bundled_path("demo", "Procfile").resolve(), "the demo's process list")


def require(path: Path, what: str) -> Path:
    """``path`` if it is a file; otherwise :class:`MissingResourceError` saying what to do.

    Raises:
        MissingResourceError: one line, with the path and the fix.
    """
    if path.is_file():
        return path
    raise MissingResourceError(
        f"{what} ({path}) is missing from this iotstream installation; reinstall it "
        "(pip install --force-reinstall iotstream) or, in a checkout, restore it with git"
    )
