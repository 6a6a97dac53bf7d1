"""Subcommands of the ``iotstream`` CLI; each module exposes ``register(subparsers)``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TypeAlias

from iotstream.commands import bench, broker, contract, data, demo, gateway, models, sim, worker

Subparsers: TypeAlias = "argparse._SubParsersAction[Any]"
Register: TypeAlias = Callable[[Subparsers], None]

COMMANDS: list[Register] = [
    contract.register,
    models.register,
    data.register,
    sim.register,
    worker.register,
    broker.register,
    gateway.register,
    demo.register,
    bench.register,
]

__all__ = ["COMMANDS", "Register", "Subparsers"]
