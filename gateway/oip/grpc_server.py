"""The Open Inference Protocol over gRPC: ``inference.GRPCInferenceService`` (grpc.aio, on
the gateway's event loop, so REST and gRPC requests meet in one dynamic batcher), the
standard ``grpc.health.v1.Health`` service, bearer tokens from the ``authorization``
metadata (the REST rule: live/ready and health are open, metadata and inference need a
token), TLS when a certificate and key are configured.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import anyio
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gateway.auth import AuthError, TokenVerifier
from gateway.oip import open_inference_pb2 as pb
from gateway.oip.errors import InvalidInputError, OipError, UnauthenticatedError
from gateway.oip.service import OipService
from gateway.oip.tensors import InputTensor

__all__ = ["SERVICE_NAME", "GrpcServer", "OipServicer", "method_handlers", "start_grpc_server"]

log = logging.getLogger(__name__)
SERVICE_NAME = "inference.GRPCInferenceService"


class OipServicer:
    """Decodes protobuf, calls :class:`OipService`, encodes; errors become status codes.

    Args:
        service: the protocol's data plane.
        verifier: checks bearer tokens.
        on_auth_failure: called for each refused token (metrics).
    """

    def __init__(
        self,
        service: OipService,
        verifier: TokenVerifier,
        on_auth_failure: Callable[[], None] = lambda: None,
    ) -> None:
        self._service = service
        self._verifier = verifier
        self._on_auth_failure = on_auth_failure

    async def ServerLive(  # noqa: N802 - the protocol's method names
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ServerLiveResponse:
        """The server answers."""
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(  # noqa: N802
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ServerReadyResponse:
        """Models are loaded."""
        return pb.ServerReadyResponse(ready=self._service.ready)

    async def ModelReady(  # noqa: N802
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ModelReadyResponse:
        """Whether the model (version) is served."""
        await self._authenticate(context)
        return pb.ModelReadyResponse(
            ready=self._service.model_ready(request.name, request.version or None)
        )

    async def ServerMetadata(  # noqa: N802
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ServerMetadataResponse:
        """Name, version, extensions."""
        await self._authenticate(context)
        meta = self._service.server_metadata()
        return pb.ServerMetadataResponse(
            name=meta["name"], version=meta["version"], extensions=meta["extensions"]
        )

    async def ModelMetadata(  # noqa: N802
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ModelMetadataResponse:
        """Versions, platform, tensors."""
        await self._authenticate(context)
        try:
            spec = self._service.spec(request.name, request.version or None)
        except OipError as exc:
            await _abort(context, exc)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=spec.name,
            versions=[spec.version],
            platform=spec.platform,
            inputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in spec.inputs],
            outputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in spec.outputs],
        )

    async def ModelInfer(  # noqa: N802
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ModelInferResponse:
        """Inference through the dynamic batcher; outputs as ``raw_output_contents``."""
        await self._authenticate(context)
        try:
            inputs = _inputs(request)
            outcome = await self._service.infer(
                request.model_name,
                request.model_version or None,
                inputs,
                requested=[o.name for o in request.outputs] or None,
                parameters={k: _param(v) for k, v in request.parameters.items()},
                protocol="grpc",
            )
        except OipError as exc:
            await _abort(context, exc)
        response = pb.ModelInferResponse(
            model_name=outcome.spec.name, model_version=outcome.spec.version, id=request.id
        )
        for out in outcome.outputs:
            response.outputs.add(name=out.name, datatype=out.datatype, shape=out.shape)
            response.raw_output_contents.append(out.raw())
        return response

    @property
    def ready(self) -> bool:
        """Models are loaded."""
        return self._service.ready

    async def _authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        value = next(
            (v for k, v in context.invocation_metadata() or () if k == "authorization"), None
        )
        scheme, _, token = (value if isinstance(value, str) else "").partition(" ")
        try:
            if scheme.lower() != "bearer" or not token:
                raise AuthError("a bearer token is required (metadata 'authorization')")
            self._verifier.verify(token.strip())
        except AuthError as exc:
            self._on_auth_failure()
            await _abort(context, UnauthenticatedError(str(exc)))


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: OipError) -> NoReturn:
    await context.abort(exc.grpc_code, exc.message)
    raise AssertionError("abort returned")  # pragma: no cover - abort always raises


def _inputs(request: pb.ModelInferRequest) -> list[InputTensor]:
    raw: Iterable[bytes | None] = request.raw_input_contents
    if not request.raw_input_contents:
        raw = [None] * len(request.inputs)
    elif len(request.raw_input_contents) != len(request.inputs):
        raise InvalidInputError(
            f"{len(request.raw_input_contents)} raw_input_contents for {len(request.inputs)} inputs"
        )
    return [
        InputTensor(
            t.name,
            t.datatype,
            tuple(t.shape),
            data=None if r is not None else list(t.contents.fp32_contents),
            raw=r,
        )
        for t, r in zip(request.inputs, raw, strict=True)
    ]


def _param(value: pb.InferParameter) -> bool | int | float | str:
    which = value.WhichOneof("parameter_choice")
    if which is None:
        return ""
    result: bool | int | float | str = getattr(value, which)
    return result


@dataclass(frozen=True, slots=True)
class GrpcServer:
    """A started server, its health service and the port it bound."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, refuse new calls, give running ones ``grace`` seconds."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


def method_handlers(servicer: OipServicer) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    """``inference.GRPCInferenceService``'s methods as the .proto declares them (its
    descriptor: names, request and response messages), each served by ``servicer``'s
    coroutine of the same name. What grpc_tools' ``*_pb2_grpc.py`` would write out method by
    method; a method the servicer lacks fails here, at start, not at the first call.

    Raises:
        AttributeError: ``servicer`` does not implement one of the methods.
    """
    service = pb.DESCRIPTOR.services_by_name[SERVICE_NAME.rpartition(".")[2]]
    return {
        method.name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=getattr(pb, method.input_type.name).FromString,
            response_serializer=getattr(pb, method.output_type.name).SerializeToString,
        )
        for method in service.methods
    }


async def start_grpc_server(
    servicer: OipServicer,
    *,
    host: str,
    port: int,
    max_message_bytes: int,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
) -> GrpcServer:
    """Start the gRPC server on the running event loop.

    Raises:
        OSError: the address cannot be bound.
    """
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
    )
    handlers = method_handlers(servicer)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = f"{host}:{port}"
    if tls_cert is not None and tls_key is not None:
        pair = (await anyio.Path(tls_key).read_bytes(), await anyio.Path(tls_cert).read_bytes())
        credentials = grpc.ssl_server_credentials([pair])
        bound = server.add_secure_port(address, credentials)
    else:
        bound = server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot bind the gRPC port {address}")
    await server.start()
    status = health_pb2.HealthCheckResponse
    # "" is the server's liveness; the service's status is its readiness (models loaded).
    await health_servicer.set("", status.SERVING)
    ready = status.SERVING if servicer.ready else status.NOT_SERVING
    await health_servicer.set(SERVICE_NAME, ready)
    log.info(
        "Open Inference Protocol over gRPC on %s:%d (%s)",
        host,
        bound,
        "TLS" if tls_cert is not None else "plaintext",
    )
    return GrpcServer(server, health_servicer, bound)
