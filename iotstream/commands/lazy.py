"""Subcommands whose options are built only when that subcommand runs.

A service command's options come from its settings class, and importing the class imports
the service's package: ``gateway.settings`` runs ``gateway/__init__``, which imports FastAPI.
The worker image has no FastAPI, uvicorn or cryptography (docs/deploy.md, "Image size per
role"), so ``iotstream worker`` must not import the gateway's settings just to list
``gateway`` in ``iotstream --help``. :class:`DeferredParser` keeps a subcommand's name and
help (all the top-level help shows) and adds its options on first use: when argparse hands
it the arguments, or when its own help is printed.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from typing import Any, cast

from iotstream.commands.parsers import documented

__all__ = ["DeferredParser", "add_deferred_service_command"]

Populate = Callable[[argparse.ArgumentParser], None]


class DeferredParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` that runs its :meth:`defer` hook (adding options,
    defaults, subparsers) once, right before it parses or prints help; without a hook it is
    a plain parser. ``iotstream``'s top-level parser makes every subparser one."""

    _populate: Populate | None = None

    def defer(self, populate: Populate) -> None:
        """Run ``populate(self)`` on first use instead of now."""
        self._populate = populate

    def _ensure_populated(self) -> None:
        populate, self._populate = self._populate, None
        if populate is not None:
            populate(self)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """Populate, then parse as usual."""
        self._ensure_populated()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        """Populate, then format as usual."""
        self._ensure_populated()
        return super().format_help()

    def format_usage(self) -> str:
        """Populate, then format as usual."""
        self._ensure_populated()
        return super().format_usage()


class _ExistingParser:
    """Stands in for a subparsers action whose ``add_parser`` returns a parser made earlier,
    so :func:`iotstream.settings_cli.add_service_command` fills that parser in."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self._parser = parser

    def add_parser(self, name: str, **_options: Any) -> argparse.ArgumentParser:
        return self._parser


def add_deferred_service_command(
    subparsers: argparse._SubParsersAction[Any],
    name: str,
    settings_class: str,
    run: Callable[[Any], int],
    epilog: str | None = None,
) -> None:
    """Add subcommand ``name`` like :func:`iotstream.settings_cli.add_service_command`, but
    import ``settings_class`` (``"module:Class"``) and add its options only when ``name`` is
    the command being run or its help is asked for. ``run``'s docstring is the command's
    help (first paragraph) and description (the rest); ``epilog`` is printed as written."""
    help_, description = documented(name, run)
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help=help_,
        description=description,
        epilog=epilog,
    )

    def populate(target: argparse.ArgumentParser) -> None:
        from iotstream.settings_cli import add_service_command

        module, _, attribute = settings_class.partition(":")
        cls = getattr(importlib.import_module(module), attribute)
        existing = cast("argparse._SubParsersAction[Any]", _ExistingParser(target))
        add_service_command(existing, name, cls, run)

    if isinstance(parser, DeferredParser):
        parser.defer(populate)
    else:  # a parser tree built without DeferredParser (e.g. by a test): populate now
        populate(parser)
