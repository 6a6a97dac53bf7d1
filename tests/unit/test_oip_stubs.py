"""The checked-in gRPC stubs are exactly what scripts/gen-oip-stubs writes from the .proto,
and they live beside tritonclient's own stubs in one process (a private descriptor pool)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("open_inference_pb2.py", "open_inference_pb2.pyi")


def test_checked_in_stubs_match_the_proto(tmp_path: Path) -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "gen-oip-stubs"), str(tmp_path)],
        check=True,
        capture_output=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    for name in GENERATED:
        fresh = (tmp_path / "gateway" / "oip" / name).read_bytes()
        assert fresh == (ROOT / "gateway" / "oip" / name).read_bytes(), (
            f"gateway/oip/{name} is stale: run scripts/gen-oip-stubs"
        )


def test_the_stubs_load_beside_tritonclients() -> None:
    code = (
        "import tritonclient.grpc.service_pb2 as t\n"
        "from gateway.oip import open_inference_pb2 as g\n"
        "r = g.ModelInferRequest(model_name='m')\n"
        "assert t.ModelInferRequest.FromString(r.SerializeToString()).model_name == 'm'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


def test_the_service_is_registered_from_the_proto() -> None:
    from gateway.oip import open_inference_pb2 as pb
    from gateway.oip.grpc_server import OipServicer, method_handlers

    class Partial:
        async def ServerLive(self) -> None:  # noqa: N802 - the protocol's method name
            """Only one of the service's methods."""

    servicer = OipServicer.__new__(OipServicer)  # the handlers only look its methods up
    handlers = method_handlers(servicer)
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert sorted(handlers) == sorted(m.name for m in service.methods)
    infer: Any = handlers["ModelInfer"]
    request = pb.ModelInferRequest(model_name="m", id="r1")
    assert infer.request_deserializer(request.SerializeToString()) == request
    assert infer.unary_unary == servicer.ModelInfer
    partial: Any = Partial()
    with pytest.raises(AttributeError, match="ServerReady"):
        method_handlers(partial)
