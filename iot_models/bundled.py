"""The model versions shipped with iotstream, found as package data.

The repository's ``models/`` folder is the default model repository. In a checkout,
``iot_models/bundled_models`` is a symbolic link to it; the wheel and the sdist carry the
files themselves under that name (``[tool.setuptools.package-data]`` in pyproject.toml).
Either way :func:`bundled_models_dir` finds them through :mod:`importlib.resources`, so
``WORKER_MODELS_DIR``/``GATEWAY_MODELS_DIR`` and ``iotstream models --root`` default to
them wherever the package is installed, whatever the working directory.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Final

__all__ = ["BUNDLED_MODELS", "bundled_models_dir"]

BUNDLED_MODELS: Final = "bundled_models"
"""Name of the folder (a link in a checkout) inside the ``iot_models`` package."""


def bundled_models_dir() -> Path:
    """The default model repository: ``<name>/<version>/{manifest.json,*.onnx}``.

    The path may not exist (a broken installation); the loaders then report "no models
    under <path>" with the path, so no error is raised here.
    """
    folder = files(__package__ or "iot_models") / BUNDLED_MODELS
    # A filesystem installation gives a Path; the models are opened by path (ONNX Runtime).
    return Path(str(folder)).resolve()
