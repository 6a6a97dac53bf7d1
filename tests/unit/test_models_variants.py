"""Variant selection per simulated CPU: a pure function, no model files."""

from __future__ import annotations

from pathlib import Path

import pytest

from iot_models.manifest import DefaultVariant, Platform, VariantNotFoundError
from iot_models.variants import classify_platform, cpu_flags, select_variant

AVAILABLE = ("fp32", "int8-x86_64", "int8-x86_64-novnni", "int8-arm64")
DEFAULTS: dict[Platform, DefaultVariant] = {
    "x86_64-vnni": DefaultVariant(variant="int8-x86_64", basis="test"),
    "x86_64": DefaultVariant(variant="int8-x86_64-novnni", basis="test"),
    "arm64": DefaultVariant(variant="int8-arm64", basis="test"),
}


@pytest.mark.parametrize(
    ("machine", "flags", "platform", "variant"),
    [
        ("x86_64", {"avx2", "avx512f", "avx512_vnni"}, "x86_64-vnni", "int8-x86_64"),
        ("x86_64", {"avx2", "avx_vnni"}, "x86_64-vnni", "int8-x86_64"),
        ("AMD64", {"avx2", "amx_int8"}, "x86_64-vnni", "int8-x86_64"),
        ("x86_64", {"avx2", "avx512f", "avx512bw"}, "x86_64", "int8-x86_64-novnni"),
        ("x86_64", set(), "x86_64", "int8-x86_64-novnni"),
        ("aarch64", {"asimd", "asimddp"}, "arm64", "int8-arm64"),
        ("arm64", set(), "arm64", "int8-arm64"),
        ("riscv64", set(), None, "fp32"),
        ("ppc64le", {"avx512_vnni"}, None, "fp32"),
        ("", set(), None, "fp32"),
    ],
)
def test_platform_and_default_variant(
    machine: str, flags: set[str], platform: Platform | None, variant: str
) -> None:
    got = classify_platform(machine, flags)
    assert got == platform
    assert select_variant(AVAILABLE, DEFAULTS, got) == variant


def test_override_wins_over_default() -> None:
    assert select_variant(AVAILABLE, DEFAULTS, "x86_64-vnni", override="fp32") == "fp32"
    assert select_variant(AVAILABLE, DEFAULTS, None, override="int8-arm64") == "int8-arm64"


def test_manifest_default_may_be_fp32() -> None:
    tiny: dict[Platform, DefaultVariant] = {
        "x86_64-vnni": DefaultVariant(variant="fp32", basis="int8 measured slower")
    }
    assert select_variant(AVAILABLE, tiny, "x86_64-vnni") == "fp32"
    assert select_variant(AVAILABLE, tiny, "arm64") == "fp32"  # no entry: fallback


def test_unknown_override_names_the_choices() -> None:
    with pytest.raises(VariantNotFoundError, match=r"int8-riscv.*available.*fp32"):
        select_variant(AVAILABLE, DEFAULTS, "arm64", override="int8-riscv")


def test_missing_default_variant_is_an_error() -> None:
    with pytest.raises(VariantNotFoundError, match="int8-arm64"):
        select_variant(("fp32",), DEFAULTS, "arm64")


def test_cpu_flags_x86(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse avx2 avx512_vnni\n\n"
        "processor\t: 1\nflags\t\t: fpu\n"
    )
    assert cpu_flags(info) == {"fpu", "sse", "avx2", "avx512_vnni"}


def test_cpu_flags_arm(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp\nCPU part\t: 0xd0c\n")
    assert cpu_flags(info) == {"fp", "asimd", "asimddp"}


def test_cpu_flags_unreadable(tmp_path: Path) -> None:
    assert cpu_flags(tmp_path / "absent") == frozenset()
