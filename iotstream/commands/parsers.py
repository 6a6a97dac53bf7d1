"""What the command modules share to build their parsers."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TypeAlias

__all__ = ["Handler", "Subparsers", "command_group"]

Subparsers: TypeAlias = "argparse._SubParsersAction[Any]"
Handler: TypeAlias = Callable[[argparse.Namespace], int]
"""What a command runs (``set_defaults(handler=...)``); returns the exit code."""


def command_group(
    subparsers: Subparsers, name: str, help_: str, description: str, **options: Any
) -> Subparsers:
    """Add command ``name`` that takes a (required) subcommand; return where to add them.

    ``options`` go to ``add_parser`` (``epilog``, ``formatter_class``...).
    """
    parser = subparsers.add_parser(name, help=help_, description=description, **options)
    sub: Subparsers = parser.add_subparsers(
        title="subcommands", metavar="SUBCOMMAND", required=True
    )
    return sub
