"""Command-line options generated from a pydantic-settings class.

Each settings field becomes ``--field-name`` with the field's docstring as its help, so a
setting is documented once and reachable both as an environment variable and an option.
Options given on the command line win over the environment.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings

from iotstream.logs import redact_credentials

__all__ = [
    "SettingsError",
    "add_service_command",
    "add_settings_arguments",
    "settings_from_args",
]

S = TypeVar("S", bound=BaseSettings)


class SettingsError(ValueError):
    """Settings from the environment or the command line are invalid."""


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """Strip ``X | None`` and ``Annotated``; return the inner type and whether None is allowed."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        inner, _ = _unwrap(args[0]) if len(args) == 1 else (str, True)
        return inner, True
    return annotation, False


def _option_and_env(name: str, env_prefix: str) -> tuple[str, str]:
    """A settings field's command-line option and environment variable."""
    return "--" + name.replace("_", "-"), f"{env_prefix}{name.upper()}"


def add_settings_arguments(parser: argparse.ArgumentParser, cls: type[BaseSettings]) -> None:
    """Add one option per field of ``cls`` (default: unset, meaning environment or default)."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    group = parser.add_argument_group(
        "settings", f"each option can also be set as the environment variable {prefix}<NAME>"
    )
    for name, info in cls.model_fields.items():
        flag, env_var = _option_and_env(name, prefix)
        inner, _ = _unwrap(info.annotation)
        default = info.get_default(call_default_factory=False)
        shown = "" if default is None or callable(default) else f" [default: {default}]"
        help_text = (info.description or "").replace("``", "").replace("%", "%%") + shown
        env = f" (env {env_var})"
        kwargs: dict[str, Any] = {"dest": name, "default": None, "help": help_text + env}
        if inner is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(inner) is typing.Literal:
            choices = get_args(inner)
            kwargs["type"] = type(choices[0])
            kwargs["choices"] = choices
        elif inner in (int, float, Path):
            kwargs["type"] = inner
        elif inner is SecretStr:
            kwargs["metavar"] = "SECRET"
            kwargs["help"] += "; prefer the environment variable, options show in `ps`"
        group.add_argument(flag, **kwargs)


def settings_from_args(cls: type[S], args: argparse.Namespace) -> S:
    """Build ``cls`` from the environment, overridden by the options that were given.

    Raises:
        SettingsError: a value is invalid (the message names the option and why).
    """
    given = {
        name: getattr(args, name)
        for name in cls.model_fields
        if getattr(args, name, None) is not None
    }
    try:
        return cls(**given)
    except ValidationError as exc:
        raise SettingsError(_settings_detail(exc, cls.model_config.get("env_prefix", ""))) from None


def _settings_detail(exc: ValidationError, env_prefix: str, limit: int = 5) -> str:
    """``field (--option, ENV_VAR): why; ...``, or just why for a rule across fields;
    values are not echoed (they may be secrets)."""
    errors = exc.errors(include_url=False, include_input=False)
    parts = []
    for err in errors[:limit]:
        why = err["msg"].removeprefix("Value error, ")
        if err["loc"]:
            name = str(err["loc"][0])
            where = "{} ({}, {})".format(name, *_option_and_env(name, env_prefix))
            rest = ".".join(str(p) for p in err["loc"][1:])
            why = f"{where}{'.' + rest if rest else ''}: {why}"
        parts.append(why)
    if len(errors) > limit:
        parts.append(f"(+{len(errors) - limit} more)")
    return "; ".join(parts)


def add_service_command(
    subparsers: argparse._SubParsersAction[Any],
    name: str,
    cls: type[S],
    run: Callable[[S], int],
    **parser_options: Any,
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` that builds ``cls`` from its options (every field, also read
    from the environment) and calls ``run(settings)``; invalid settings exit with 2 and one
    line naming the field. ``parser_options`` go to ``add_parser`` (help, description,
    epilog)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, formatter_class=argparse.RawDescriptionHelpFormatter, **parser_options
    )
    add_settings_arguments(parser, cls)

    def handler(args: argparse.Namespace) -> int:
        try:
            settings = settings_from_args(cls, args)
        except SettingsError as exc:
            print(
                f"iotstream {name}: invalid settings: {redact_credentials(str(exc))}",
                file=sys.stderr,
            )
            return 2
        return run(settings)

    parser.set_defaults(handler=handler)
    return parser
