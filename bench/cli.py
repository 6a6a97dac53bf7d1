"""The command line every benchmark shares: ``iotstream bench <scenario>`` hands the rest
of its arguments to the scenario's ``main``, which builds its parser here, with the
argument types below, so that a mistyped value is refused before any server starts."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar, get_args

__all__ = ["add_sources_argument", "listed", "one_of", "positive", "scenario_parser"]

N = TypeVar("N", int, float)
T = TypeVar("T")


def scenario_parser(scenario: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of ``iotstream bench <scenario>``: its module docstring ``doc`` as the
    description, kept as written (paragraphs and lists)."""
    return argparse.ArgumentParser(
        prog=f"iotstream bench {scenario}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def positive(kind: Callable[[str], N]) -> Callable[[str], N]:
    """An argument type: a number of ``kind`` (int or float) greater than 0."""

    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be greater than 0: {text!r}")
        return value

    return parse


def one_of(*choices: str) -> Callable[[str], str]:
    """An argument type: one of ``choices``."""

    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return parse


def add_sources_argument(parser: argparse.ArgumentParser, default: str, help: str) -> None:
    """``--sources``: the worker sources to run, comma-separated; the choices are
    ``WorkerSettings.source``'s."""
    from inference_worker.settings import WorkerSettings

    choices = get_args(WorkerSettings.model_fields["source"].annotation)
    parser.add_argument("--sources", type=listed(one_of(*choices)), default=default, help=help)


def listed(item: Callable[[str], T]) -> Callable[[str], list[T]]:
    """An argument type: comma-separated values, each read by ``item`` (a string default
    is read the same way)."""

    def parse(text: str) -> list[T]:
        values = [item(part.strip()) for part in text.split(",") if part.strip()]
        if not values:
            raise argparse.ArgumentTypeError("give at least one value")
        return values

    return parse
