"""``iotstream data``: the capture store: captured partitions, dataset versions, retention
(docs/models.md, "Capture" and "Dataset versions")."""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeAlias

from iotstream.commands.parsers import Handler, Subparsers, command_group, subcommand

if TYPE_CHECKING:
    from iot_models.store.objects import ObjectStore

__all__ = ["CAPTURE_URL_ENV", "register"]

CAPTURE_URL_ENV = "IOTSTREAM_CAPTURE_URL"

Action: TypeAlias = "Callable[[argparse.Namespace, ObjectStore], int]"
"""A subcommand's work on the opened capture store; returns the exit code."""


def register(subparsers: Subparsers) -> None:
    """Add ``data ls|dataset create|show|ls|retention``."""
    sub = command_group(
        subparsers,
        "data",
        "captured readings and dataset versions (the capture store)",
        "The capture store: readings/<model>/date=.../hour=.../*.parquet written by workers "
        "with WORKER_CAPTURE_URL set, and datasets/<id>.json. Needs pyarrow "
        "(pip install 'iotstream[capture]').",
    )

    def add(parent: Subparsers, name: str, action: Action) -> argparse.ArgumentParser:
        """Subcommand ``name`` with --store, running ``action`` on the opened store."""
        p = subcommand(parent, name, _on_store(action))
        p.add_argument(
            "--store",
            default=os.environ.get(CAPTURE_URL_ENV),
            help=f"capture store: folder, file:///path or s3://bucket/prefix "
            f"(default: ${CAPTURE_URL_ENV})",
        )
        return p

    ls = add(sub, "ls", _ls)
    ls.add_argument("--model", help="only this model")
    ls.add_argument("--hours", action="store_true", help="one line per partition (hour)")

    dsub = command_group(sub, "dataset", "dataset versions", "Dataset versions.")
    create = add(dsub, "create", _create)
    create.add_argument("--model", required=True, help="the model whose captures to select")
    create.add_argument("--since", type=_time, help="window start, ISO 8601 (UTC if no zone)")
    create.add_argument("--until", type=_time, help="window end, exclusive (default: now)")
    create.add_argument(
        "--min-rows", type=int, default=0, help="fill up to this size with synthetic rows"
    )
    create.add_argument("--seed", type=int, default=101, help="synthetic part's seed")
    show = add(dsub, "show", _show)
    show.add_argument("id", help="dataset id (or a unique prefix of it)")
    add(dsub, "ls", _datasets)

    retention = add(sub, "retention", _retention)
    retention.add_argument("--hours", type=float, required=True, help="keep this many hours")
    retention.add_argument("--dry-run", action="store_true", help="only list what would go")


def _time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%MZ")


def _fail(message: str) -> int:
    print(f"iotstream data: {message}", file=sys.stderr)
    return 1


def _on_store(action: Action) -> Handler:
    """``action`` as a handler (keeping its docstring, the subcommand's help): open the
    store, run ``action(args, objects)``, translate errors into one line and exit 1."""

    @functools.wraps(action)
    def handler(args: argparse.Namespace) -> int:
        from iot_models.capture.writer import CaptureError, require_pyarrow
        from iot_models.manifest import ModelError
        from iot_models.store.objects import open_objects

        if not args.store:
            return _fail(f"no capture store: pass --store URL or set {CAPTURE_URL_ENV}")
        try:
            require_pyarrow()
            objects = open_objects(args.store)
        except (CaptureError, ModelError) as exc:
            return _fail(str(exc))
        try:
            code: int = action(args, objects)
            return code
        except ModelError as exc:  # StoreError, DatasetError: the message says what to do
            return _fail(str(exc))
        finally:
            objects.close()

    return handler


def _ls(args: argparse.Namespace, objects: ObjectStore) -> int:
    """captured partitions per model: files, rows, bytes, oldest, newest"""
    from iot_models.capture.reader import partition_infos

    infos = partition_infos(objects, args.model)
    if not infos:
        print(f"no captured readings in {objects.url}", file=sys.stderr)
        return 0
    if args.hours:
        print(f"{'model':<20} {'hour (UTC)':<17} {'files':>6} {'rows':>10} {'bytes':>12}")
        for i in infos:
            p = i.partition
            print(f"{p.model:<20} {_iso(p.start):<17} {i.files:>6} {i.rows:>10} {i.bytes:>12}")
        return 0
    models: dict[str, list[Any]] = {}
    for i in infos:
        models.setdefault(i.partition.model, []).append(i)
    head = f"{'model':<20} {'hours':>5} {'files':>6} {'rows':>10} {'bytes':>12}"
    print(f"{head} {'oldest (UTC)':<17} {'newest (UTC)':<17}")
    for name, parts in models.items():
        print(
            f"{name:<20} {len(parts):>5} {sum(i.files for i in parts):>6} "
            f"{sum(i.rows for i in parts):>10} {sum(i.bytes for i in parts):>12} "
            f"{_iso(parts[0].partition.start):<17} {_iso(parts[-1].partition.start):<17}"
        )
    return 0


def _create(args: argparse.Namespace, objects: ObjectStore) -> int:
    """record a dataset version of a model's captures; prints its id"""
    from iot_models.capture.datasets import create_dataset

    ds = create_dataset(
        objects,
        args.model,
        since=args.since,
        until=args.until,
        min_rows=args.min_rows,
        synthetic_seed=args.seed,
    )
    synthetic = ds.synthetic.rows if ds.synthetic else 0
    print(
        f"dataset {ds.id}: {len(ds.files)} capture files, {ds.captured_rows} labelled "
        f"captured rows + {synthetic} synthetic = {ds.rows} rows",
        file=sys.stderr,
    )
    print(ds.id)
    return 0


def _resolve(objects: ObjectStore, text: str) -> str:
    from iot_models.capture.datasets import DatasetError
    from iot_models.capture.layout import DATASETS_PREFIX

    if len(text) == 64:
        return text
    ids = [
        key[len(DATASETS_PREFIX) :].removesuffix(".json")
        for key in objects.list(DATASETS_PREFIX + text)
    ]
    if len(ids) != 1:
        found = "no" if not ids else "more than one"
        raise DatasetError(f"{found} dataset id starts with {text!r} in {objects.url}")
    return ids[0]


def _show(args: argparse.Namespace, objects: ObjectStore) -> int:
    """a dataset version's record (JSON)"""
    from iot_models.capture.datasets import load_dataset

    print(load_dataset(objects, _resolve(objects, args.id)).model_dump_json(indent=2))
    return 0


def _datasets(args: argparse.Namespace, objects: ObjectStore) -> int:
    """every dataset version, oldest first"""
    from iot_models.capture.datasets import list_datasets

    found = list_datasets(objects)
    if not found:
        print(f"no dataset versions in {objects.url}", file=sys.stderr)
        return 0
    print(f"{'id':<16} {'model':<20} {'files':>6} {'captured':>9} {'synthetic':>9} created")
    for d in found:
        synthetic = d.synthetic.rows if d.synthetic else 0
        print(
            f"{d.id[:16]:<16} {d.model:<20} {len(d.files):>6} {d.captured_rows:>9} "
            f"{synthetic:>9} {d.created_at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
        )
    return 0


def _retention(args: argparse.Namespace, objects: ObjectStore) -> int:
    """delete captured partitions older than --hours"""
    from iot_models.capture.retention import apply_retention

    gone = apply_retention(objects, time.time(), args.hours, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    for part, keys in gone.items():
        print(f"{verb} {part.model} {_iso(part.start)} ({len(keys)} files)")
    files = sum(len(keys) for keys in gone.values())
    print(f"{verb} {len(gone)} partitions, {files} files", file=sys.stderr)
    return 0
