"""Which model variant runs on this CPU: a pure function plus the probes that feed it.

Rules (documented in docs/models.md):

* ``platform.machine()`` ``x86_64``/``amd64`` with ``avx512_vnni``, ``avx_vnni`` or
  ``amx_int8`` in the CPU flags is ``x86_64-vnni``; without them ``x86_64`` (whose int8
  variant uses ``reduce_range``: 7-bit weights avoid the int16 saturation of the
  pre-VNNI ``vpmaddubsw`` path).
* ``aarch64``/``arm64`` is ``arm64``.
* Anything else is unknown and runs ``fp32``.
* The manifest maps each platform to its measured default variant; an override names a
  variant directly and must exist.
"""

from __future__ import annotations

import platform as _platform
from collections.abc import Collection, Mapping
from pathlib import Path

from iot_models.manifest import DefaultVariant, Platform, VariantNotFoundError

__all__ = [
    "VNNI_FLAGS",
    "classify_platform",
    "cpu_flags",
    "current_platform",
    "select_variant",
]

VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
_X86 = frozenset({"x86_64", "amd64", "x64"})
_ARM = frozenset({"aarch64", "arm64", "armv8", "armv8l"})


def classify_platform(machine: str, flags: Collection[str] = ()) -> Platform | None:
    """Map ``platform.machine()`` and CPU flags to a platform key; ``None`` if unknown."""
    arch = machine.strip().lower()
    if arch in _X86:
        return "x86_64-vnni" if VNNI_FLAGS.intersection(flags) else "x86_64"
    if arch in _ARM:
        return "arm64"
    return None


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The first ``flags`` (x86) or ``Features`` (arm) line of ``cpuinfo``; empty if unreadable."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def current_platform() -> Platform | None:
    """This machine's platform key."""
    return classify_platform(_platform.machine(), cpu_flags())


def select_variant(
    available: Collection[str],
    defaults: Mapping[Platform, DefaultVariant],
    platform: Platform | None,
    override: str | None = None,
) -> str:
    """Choose the variant to load.

    Args:
        available: variant names in the manifest.
        defaults: the manifest's measured default per platform.
        platform: from :func:`classify_platform`; ``None`` (unknown CPU) means ``fp32``.
        override: a variant name that wins over the default (e.g. from a setting).

    Raises:
        VariantNotFoundError: the override or the default is not available.
    """
    if override is not None:
        choice = override
        why = f"override {override!r}"
    elif platform is not None and platform in defaults:
        choice = defaults[platform].variant
        why = f"default for {platform}"
    else:
        choice = "fp32"
        why = f"fallback for unknown platform {platform!r}"
    if choice not in available:
        raise VariantNotFoundError(
            f"variant {choice!r} ({why}) is not built; available: {sorted(available)}. "
            "Pick one of those as the override, or rebuild with `iotstream models build`"
        )
    return choice
