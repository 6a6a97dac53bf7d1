"""What the command modules share to build their parsers."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from typing import Any, TypeAlias

__all__ = ["Handler", "Subparsers", "command_group", "documented", "subcommand"]

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


def subcommand(sub: Subparsers, name: str, handler: Handler) -> argparse.ArgumentParser:
    """Add subcommand ``name``, run by ``handler`` and documented by its docstring: the
    first paragraph is the one-line help listed under the command, the paragraphs after it
    the description of ``name --help`` (the first paragraph again when there are none).

    Raises:
        ValueError: ``handler`` has no docstring.
    """
    help_, description = documented(name, handler)
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_, description=description)
    parser.set_defaults(handler=handler)
    return parser


def documented(name: str, handler: Callable[..., int]) -> tuple[str, str]:
    """The help and description of command ``name`` from ``handler``'s docstring: its first
    paragraph, and the paragraphs after it (the first again when there are none).

    Raises:
        ValueError: ``handler`` has no docstring.
    """
    if not handler.__doc__:
        raise ValueError(f"the handler of {name!r} has no docstring to take its help from")
    help_, _, description = inspect.cleandoc(handler.__doc__).partition("\n\n")
    return help_, description or help_
