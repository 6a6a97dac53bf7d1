"""``iotstream models``: build, list, verify and benchmark the model repository; publish to
and manage the model store (:mod:`iotstream.commands.model_store`)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from iot_models.bundled import bundled_models_dir
from iotstream.commands.parsers import Handler, Subparsers, command_group, subcommand

__all__ = ["DEFAULT_ROOT", "register"]

DEFAULT_ROOT = bundled_models_dir()
"""The models shipped with iotstream (package data; ``models/`` in a checkout)."""


def register(subparsers: Subparsers) -> None:
    """Add ``models build|list|verify|bench`` and the store's ``init|publish|versions|alias|
    canary|promote|rollback``."""
    sub = command_group(
        subparsers,
        "models",
        "build, list, verify and benchmark the ONNX models",
        "The model repository: models/<name>/<version>/{*.onnx,manifest.json}.",
    )

    def add(name: str, handler: Handler, names: str | None = None) -> argparse.ArgumentParser:
        """Subcommand ``name`` with --root, run by ``handler``; with ``names`` (what the
        models are for), also the models to work on."""
        p = subcommand(sub, name, handler)
        p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="model repository folder")
        if names:
            p.add_argument("names", nargs="*", help=f"models to {names} (default: all)")
        return p

    add("build", _build, names="build")

    listing = add("list", _list)
    listing.add_argument("--json", action="store_true", help="print the manifests as JSON")

    verify = add("verify", _verify, names="check")
    verify.add_argument("--rebuild", action="store_true", help="also check reproducibility")

    bench = add("bench", _bench, names="measure")
    bench.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64, 256, 1024])
    bench.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    bench.add_argument("--min-time", type=float, default=0.6, help="seconds per variant and point")
    bench.add_argument(
        "--out", type=Path, default=Path("bench/results"), help="folder for the JSON/markdown"
    )

    from iotstream.commands.model_store import register_store_commands
    from iotstream.commands.pipeline import register_pipeline_commands

    register_store_commands(sub)
    register_pipeline_commands(sub)


def _build(args: argparse.Namespace) -> int:
    """train, export, quantize, gate and write the models

    Rebuild the models from source (deterministic: same inputs, same sha256). Fails (exit 1,
    nothing written) if an int8 variant breaks the accuracy gate.
    """
    from training.build import build
    from training.gate import GateError

    args.root.mkdir(parents=True, exist_ok=True)
    try:
        build(args.root, args.names or None, log=lambda line: print(line, file=sys.stderr))
    except GateError as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 1
    except KeyError as exc:
        print(f"build failed: {exc.args[0]}", file=sys.stderr)
        return 2
    return 0


def _list(args: argparse.Namespace) -> int:
    """show the models, variants and defaults

    List the repository.
    """
    from iot_models.manifest import ModelError, find_manifests, read_manifest
    from iot_models.variants import current_platform, select_variant

    platform = current_platform()
    found = find_manifests(args.root)
    if not found:
        print(f"no models under {args.root}; run `iotstream models build`", file=sys.stderr)
        return 1
    dumped = []
    for path in found.values():
        try:
            m = read_manifest(path)
        except ModelError as exc:
            print(exc, file=sys.stderr)
            return 1
        dumped.append(m.model_dump(mode="json"))
        if args.json:
            continue
        chosen = select_variant(m.variants, m.defaults, platform)
        print(f"{m.name} v{m.version} [{m.output.kind}] {m.description}")
        print(
            f"  input {m.input.name} float32 (batch, {m.input.shape[1]}); on this CPU "
            f"({platform}) loads {chosen}"
        )
        for name, v in m.variants.items():
            acc = v.accuracy
            print(
                f"  {name:<20} {v.size_bytes:>9,} B  F1 {acc.macro_f1:.4f}  AUC {acc.auc:.4f}  "
                f"agreement {acc.agreement_with_fp32:.4f}  sha256 {v.sha256[:12]}"
            )
    if args.json:
        print(json.dumps(dumped, indent=2))
    return 0


def _verify(args: argparse.Namespace) -> int:
    """check every file against its manifest's sha256

    Check sizes and sha256 of every file. With --rebuild, also rebuild into a temporary
    folder and compare the files and manifests (provenance excluded) with the repository.
    """
    from iot_models.manifest import ModelError, find_manifests, read_manifest, sha256_bytes

    found = find_manifests(args.root)
    names = args.names or sorted(found)
    problems: list[str] = []
    if not names:  # nothing checked is not "ok"
        problems.append(f"no models under {args.root}; run `iotstream models build`")
    for name in names:
        if name not in found:
            problems.append(f"{name}: no manifest under {args.root}")
            continue
        try:
            m = read_manifest(found[name])
        except ModelError as exc:
            problems.append(str(exc))
            continue
        for variant, entry in m.variants.items():
            path = found[name].parent / entry.file
            if not path.is_file():
                problems.append(f"{name}/{variant}: {path} missing")
            elif sha256_bytes(path.read_bytes()) != entry.sha256:
                problems.append(f"{name}/{variant}: sha256 differs from the manifest")
        print(f"{name} v{m.version}: {len(m.variants)} files checked", file=sys.stderr)
    if args.rebuild and not problems:
        problems += _rebuild_and_compare(args.root, names)
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    if not problems:
        print("ok", file=sys.stderr)
    return 1 if problems else 0


def _rebuild_and_compare(root: Path, names: list[str]) -> list[str]:
    from training.build import build
    from training.reproduce import compare_trees

    tmp = Path(tempfile.mkdtemp(prefix="iotstream-rebuild-"))
    try:
        build(tmp, names, log=lambda line: print(line, file=sys.stderr))
        return compare_trees(root, tmp, names)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bench(args: argparse.Namespace) -> int:
    """fp32 vs int8 speed, size and accuracy on this machine

    Rows/s and per-call latency per variant, batch size and thread count; writes JSON and a
    markdown table. Run it alone (flock /tmp/iotstream-heavy.lock ...).
    """
    from training.bench import BenchConfig, markdown, run_bench

    cfg = BenchConfig(
        batches=tuple(args.batches),
        threads=tuple(args.threads),
        min_time_s=args.min_time,
        names=tuple(args.names) or None,
    )
    try:
        report = run_bench(args.root, cfg)
    except KeyError as exc:  # a model that is not there
        print(f"bench failed: {exc.args[0]}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "models_bench.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (args.out / "models_bench.md").write_text(table + "\n")
    print(table)
    print(f"wrote {args.out / 'models_bench.json'} and models_bench.md", file=sys.stderr)
    return 0
