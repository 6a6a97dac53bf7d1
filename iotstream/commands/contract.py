"""``iotstream contract``: inspect and check the wire contract from the shell."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]

_SCHEMAS = ("reading", "prediction", "deadletter", "client-message", "server-frame")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``contract schema`` and ``contract check``."""
    parser = subparsers.add_parser(
        "contract",
        help="show the message schemas; check a payload against them",
        description="The wire contract every device, worker and dashboard speaks.",
    )
    sub = parser.add_subparsers(title="subcommands", metavar="SUBCOMMAND", required=True)

    schema = sub.add_parser(
        "schema",
        help="print a message's JSON Schema",
        description="Print the JSON Schema of a message (to validate on the device side).",
    )
    schema.add_argument("message", choices=_SCHEMAS, help="which message")
    schema.set_defaults(handler=_schema)

    check = sub.add_parser(
        "check",
        help="validate a telemetry payload the way a worker does",
        description=(
            "Decode and validate one telemetry payload. Prints the normalised reading and "
            "exits 0, or prints the reason it would be dead-lettered and exits 1."
        ),
    )
    check.add_argument("file", type=Path, help="payload file, or - for standard input")
    check.add_argument(
        "--content-type",
        default=None,
        help="MQTT v5 content type (default: JSON; application/msgpack for MessagePack)",
    )
    check.add_argument(
        "--topic", default=None, help="topic it was published on; its device id must match"
    )
    check.set_defaults(handler=_check)


def _schema(args: argparse.Namespace) -> int:
    from pydantic import TypeAdapter

    import iot_contract as c

    targets: dict[str, Any] = {
        "reading": c.Reading,
        "prediction": c.Prediction,
        "deadletter": c.DeadLetter,
        "client-message": c.ClientMessage,
        "server-frame": c.ServerFrame,
    }
    schema = TypeAdapter(targets[args.message]).json_schema()
    print(json.dumps(schema, indent=2))
    return 0


def _check(args: argparse.Namespace) -> int:
    import iot_contract as c

    try:
        payload = sys.stdin.buffer.read() if str(args.file) == "-" else args.file.read_bytes()
    except OSError as exc:
        print(f"iotstream contract check: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        device_id = c.parse_device_topic(args.topic)[0] if args.topic else None
        reading = c.decode_reading(payload, args.content_type, topic_device_id=device_id)
    except c.ContractError as exc:
        print(f"rejected ({exc.reason.value}): {exc.detail}", file=sys.stderr)
        return 1
    print(reading.model_dump_json(indent=2, exclude_none=True))
    return 0
