"""The Open Inference Protocol's errors, each with its HTTP status and gRPC status code, so
both transports translate one exception the same way (the protocol's own mapping: unknown
model 404 / NOT_FOUND, bad input 400 / INVALID_ARGUMENT, ...)."""

from __future__ import annotations

from typing import ClassVar

import grpc

__all__ = [
    "InvalidInputError",
    "ModelNotFoundError",
    "NotReadyError",
    "OipError",
    "OverloadedError",
    "UnauthenticatedError",
]


class OipError(Exception):
    """An answer other than success; the message is safe to send to the client (it names
    fields and limits, never echoes tensor data or tokens).

    A subclass names its answer in its class line (default: 400 / INVALID_ARGUMENT), e.g.
    ``class NotReadyError(OipError, http_status=503, grpc_code=grpc.StatusCode.UNAVAILABLE)``.
    """

    http_status: ClassVar[int] = 400
    grpc_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INVALID_ARGUMENT

    def __init_subclass__(
        cls, *, http_status: int | None = None, grpc_code: grpc.StatusCode | None = None
    ) -> None:
        super().__init_subclass__()
        if http_status is not None:
            cls.http_status = http_status
        if grpc_code is not None:
            cls.grpc_code = grpc_code

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(OipError):
    """Wrong tensor name, shape, datatype or contents, or a malformed request."""


class ModelNotFoundError(OipError, http_status=404, grpc_code=grpc.StatusCode.NOT_FOUND):
    """No served model (or version) by that name."""


class OverloadedError(OipError, http_status=429, grpc_code=grpc.StatusCode.RESOURCE_EXHAUSTED):
    """The dynamic batcher's queue is full (policy: reject the newcomer)."""


class NotReadyError(OipError, http_status=503, grpc_code=grpc.StatusCode.UNAVAILABLE):
    """No models are loaded, or the server is stopping."""


class UnauthenticatedError(OipError, http_status=401, grpc_code=grpc.StatusCode.UNAUTHENTICATED):
    """Missing or refused bearer token."""
