"""The command line every benchmark shares: ``iotstream bench <scenario>`` hands the rest
of its arguments to the scenario's ``main``, which builds its parser here."""

from __future__ import annotations

import argparse

__all__ = ["scenario_parser"]


def scenario_parser(scenario: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of ``iotstream bench <scenario>``: its module docstring ``doc`` as the
    description, kept as written (paragraphs and lists)."""
    return argparse.ArgumentParser(
        prog=f"iotstream bench {scenario}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
