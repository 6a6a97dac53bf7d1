"""``iotstream models init|publish|versions|alias|canary|promote|rollback``: the model store.

The store is named by ``--store URL`` or ``IOTSTREAM_MODEL_STORE`` (``s3://bucket/prefix``,
``file:///path`` or a folder). S3 credentials and endpoint come from the usual AWS
variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL_S3``).
Every failure is one line on stderr and exit code 1 (2 for a usage error).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from iotstream.commands.parsers import Handler, subcommand

if TYPE_CHECKING:
    from iot_models.store import Alias, ModelStore

__all__ = ["STORE_ENV", "register_store_commands"]

STORE_ENV = "IOTSTREAM_MODEL_STORE"

Run: TypeAlias = "Callable[[ModelStore, argparse.Namespace], int]"
"""A subcommand's work on the opened model store; returns the exit code."""


def register_store_commands(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the store subcommands to ``iotstream models``."""

    def add(name: str, run: Run) -> argparse.ArgumentParser:
        """Subcommand ``name`` with --store, running ``run`` on the opened store."""
        p = subcommand(sub, name, _handler(run))
        p.add_argument(
            "--store",
            default=os.environ.get(STORE_ENV),
            help=f"model store URL (default: ${STORE_ENV}): s3://bucket/prefix, file:///path, "
            "or a folder",
        )
        return p

    add("init", _init)

    publish = add("publish", _publish)
    publish.add_argument("folder", type=Path, help="a version folder, e.g. models/fault-clf/1")

    versions = add("versions", _versions)
    versions.add_argument("names", nargs="*", help="models (default: all)")
    versions.add_argument("--json", action="store_true", help="print JSON")

    alias = add("alias", _alias)
    alias.add_argument("name")
    alias.add_argument("alias")
    alias.add_argument("version", nargs="?", help="the version to serve (omit to show)")

    canary = add("canary", _canary)
    canary.add_argument("name")
    canary.add_argument("alias")
    canary.add_argument("version")
    canary.add_argument("--percent", type=float, default=0.0, help="share of devices, 0-100")
    canary.add_argument(
        "--device", action="append", default=[], help="device-id glob always on the canary"
    )

    promote = add("promote", _promote)
    promote.add_argument("name")
    promote.add_argument("alias")

    rollback = add("rollback", _rollback)
    rollback.add_argument("name")
    rollback.add_argument("alias")


def _handler(run: Run) -> Handler:
    """Open the store, run, close; store and model errors become one line and exit 1.
    The handler keeps ``run``'s docstring (the subcommand's help)."""

    @functools.wraps(run)
    def handle(args: argparse.Namespace) -> int:
        from iot_models.manifest import ModelError
        from iot_models.store import open_store

        if not args.store:
            print(f"error: name the model store with --store URL or {STORE_ENV}", file=sys.stderr)
            return 2
        try:
            store = open_store(args.store)
            try:
                return run(store, args)
            finally:
                store.close()
        except (ModelError, ValueError) as exc:
            print(f"error: {_one_line(exc)}", file=sys.stderr)
            return 1

    return handle


def _one_line(exc: Exception) -> str:
    from pydantic import ValidationError

    from iot_models.store.base import first_error

    return first_error(exc) if isinstance(exc, ValidationError) else str(exc)


def _init(store: ModelStore, args: argparse.Namespace) -> int:
    """create the store (bucket or folder)

    Create the store if missing.
    """
    store.ensure()
    print(f"store ready: {store.url}", file=sys.stderr)
    return 0


def _publish(store: ModelStore, args: argparse.Namespace) -> int:
    """upload a built version folder to the store

    Publish models/<name>/<version>/ (manifest + every variant, sha256-checked). A published
    version is never overwritten: publishing it again fails.
    """
    manifest = store.publish(args.folder)
    print(
        f"published {manifest.name} {manifest.version} ({len(manifest.variants)} variants) "
        f"to {store.url}",
        file=sys.stderr,
    )
    return 0


def _versions(store: ModelStore, args: argparse.Namespace) -> int:
    """list published versions and aliases

    Versions and aliases per model.
    """
    from iot_models.store import AliasNotFoundError

    report: dict[str, Any] = {}
    for name in args.names or store.models():
        aliases = {}
        for alias in store.aliases(name):
            try:
                aliases[alias] = store.read_alias(name, alias).alias.model_dump(mode="json")
            except AliasNotFoundError:
                continue  # removed meanwhile
        report[name] = {"versions": store.versions(name), "aliases": aliases}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for name, info in report.items():
        print(f"{name}: versions {', '.join(info['versions']) or '(none)'}")
        for alias in info["aliases"].values():
            print(f"  {_describe(alias)}")
    return 0


def _describe(doc: dict[str, Any]) -> str:
    from iot_models.store import Alias

    alias = Alias.model_validate(doc)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(alias.updated_at))
    extra = f", previous {alias.previous}" if alias.previous else ""
    return f"{alias.describe()}{extra} (by {alias.updated_by or '?'} at {when})"


def _change(
    store: ModelStore, args: argparse.Namespace, transition: Callable[[Alias | None], Alias]
) -> int:
    from iot_models.store.ops import change_alias

    written = change_alias(store, args.name, args.alias, transition)
    print(_describe(written.model_dump()), file=sys.stderr)
    return 0


def _existing(current: Alias | None, args: argparse.Namespace) -> Alias:
    if current is None:
        raise ValueError(
            f"{args.name} has no alias {args.alias!r}: set it first with "
            f"`iotstream models alias {args.name} {args.alias} VERSION`"
        )
    return current


def _alias(store: ModelStore, args: argparse.Namespace) -> int:
    """point an alias at a version, or show it

    `alias NAME ALIAS VERSION` points ALIAS at VERSION for every device (dropping a canary);
    `alias NAME ALIAS` shows it. Workers and gateways following ALIAS swap within a poll
    interval.
    """
    from iot_models.store.alias import set_version
    from iot_models.store.ops import who

    if args.version is None:
        state = store.read_alias(args.name, args.alias)
        print(json.dumps(state.alias.model_dump(mode="json"), indent=2))
        return 0
    return _change(
        store,
        args,
        lambda cur: set_version(cur, args.name, args.alias, args.version, at=time.time(), by=who()),
    )


def _canary(store: ModelStore, args: argparse.Namespace) -> int:
    """serve a version to a share of the devices

    Serve VERSION to the devices whose stable hash bucket falls under --percent, and to
    those matching a --device glob; the others keep the alias's version.
    """
    from iot_models.store import Canary
    from iot_models.store.alias import start_canary
    from iot_models.store.ops import who

    if args.percent == 0 and not args.device:
        raise ValueError("a canary needs --percent above 0 or at least one --device glob")
    canary = Canary(version=args.version, percent=args.percent, devices=tuple(args.device))
    return _change(
        store,
        args,
        lambda cur: start_canary(_existing(cur, args), canary, at=time.time(), by=who()),
    )


def _promote(store: ModelStore, args: argparse.Namespace) -> int:
    """make the canary the alias's version

    Promote the canary.
    """
    from iot_models.store.alias import promote
    from iot_models.store.ops import who

    return _change(store, args, lambda cur: promote(_existing(cur, args), at=time.time(), by=who()))


def _rollback(store: ModelStore, args: argparse.Namespace) -> int:
    """drop the canary, or go back to the previous version

    With a canary: drop it. Without: point the alias at its previous version.
    """
    from iot_models.store.alias import rollback
    from iot_models.store.ops import who

    return _change(
        store, args, lambda cur: rollback(_existing(cur, args), at=time.time(), by=who())
    )
