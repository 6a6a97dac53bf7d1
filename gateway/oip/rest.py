"""The protocol's REST body formats, pure: the JSON tensor format and the binary-data
extension (``Inference-Header-Content-Length``: a JSON header, then the tensors' raw bytes
in order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Final

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.oip.errors import InvalidInputError
from gateway.oip.tensors import DATATYPES, InputTensor, OutputTensor

__all__ = [
    "HEADER_LENGTH",
    "InferRequest",
    "ParsedRequest",
    "encode_response",
    "inline_schema",
    "parse_request",
]

HEADER_LENGTH: Final = "inference-header-content-length"
"""Header of the binary-data extension: length of the JSON part of the body."""
_Param = bool | int | float | str


class _Base(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class RequestInput(_Base):
    """One input tensor."""

    name: Annotated[str, Field(max_length=256)]
    shape: Annotated[list[Annotated[int, Field(ge=0, le=2**31)]], Field(max_length=8)]
    datatype: Annotated[str, Field(max_length=16)]
    parameters: dict[str, _Param] | None = None
    data: list[Any] | None = None


class RequestOutput(_Base):
    """One requested output tensor."""

    name: Annotated[str, Field(max_length=256)]
    parameters: dict[str, _Param] | None = None


class InferRequest(_Base):
    """The JSON body (or the JSON header of a binary-data body) of ``.../infer``."""

    id: Annotated[str, Field(max_length=256)] | None = None
    parameters: dict[str, _Param] | None = None
    inputs: Annotated[list[RequestInput], Field(min_length=1, max_length=16)]
    outputs: Annotated[list[RequestOutput], Field(max_length=16)] | None = None


class ParsedRequest:
    """A decoded request: inputs ready for the service, and how to answer."""

    def __init__(self, request: InferRequest, inputs: list[InputTensor]) -> None:
        self.request = request
        self.inputs = inputs
        self.parameters: dict[str, _Param] = dict(request.parameters or {})
        self.requested = [o.name for o in request.outputs] if request.outputs else None
        default_binary = self.parameters.get("binary_data_output") is True
        explicit = {
            o.name: (o.parameters or {}).get("binary_data") is True for o in (request.outputs or [])
        }
        self.binary = explicit
        self.default_binary = default_binary

    def wants_binary(self, name: str) -> bool:
        """Whether output ``name`` goes back as raw bytes."""
        return self.binary.get(name, self.default_binary)


def parse_request(body: bytes, header_length: str | None) -> ParsedRequest:
    """Decode an ``.../infer`` body.

    Raises:
        InvalidInputError: malformed JSON, a body that breaks the schema, or binary data that
            does not add up.
    """
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise InvalidInputError(f"{HEADER_LENGTH} does not fit the body")
        split = int(header_length)
        head, binary = body[:split], body[split:]
    else:
        head, binary = body, b""
    try:
        document = orjson.loads(head)
    except orjson.JSONDecodeError:
        raise InvalidInputError("the body is not valid JSON") from None
    try:
        request = InferRequest.model_validate(document)
    except ValidationError as exc:
        raise InvalidInputError(_describe(exc)) from None
    inputs, offset = [], 0
    for tensor in request.inputs:
        size = (tensor.parameters or {}).get("binary_data_size")
        if tensor.datatype not in DATATYPES:
            raise InvalidInputError(f"input {tensor.name[:64]!r}: unknown datatype")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidInputError(f"input {tensor.name[:64]!r}: bad binary_data_size")
            if offset + size > len(binary):
                raise InvalidInputError(f"input {tensor.name[:64]!r}: binary data too short")
            raw = binary[offset : offset + size]
            offset += size
            inputs.append(InputTensor(tensor.name, tensor.datatype, tuple(tensor.shape), raw=raw))
        else:
            if tensor.data is None:
                raise InvalidInputError(f"input {tensor.name[:64]!r}: no data")
            inputs.append(
                InputTensor(tensor.name, tensor.datatype, tuple(tensor.shape), data=tensor.data)
            )
    if offset != len(binary):
        raise InvalidInputError("binary data longer than the inputs' binary_data_size")
    return ParsedRequest(request, inputs)


def encode_response(
    parsed: ParsedRequest, model_name: str, model_version: str, outputs: Sequence[OutputTensor]
) -> tuple[bytes, int | None]:
    """The response body and, when some output is binary, the JSON header's length."""
    described: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for out in outputs:
        entry: dict[str, Any] = {"name": out.name, "datatype": out.datatype, "shape": out.shape}
        if parsed.wants_binary(out.name):
            raw = out.raw()
            blobs.append(raw)
            entry["parameters"] = {"binary_data_size": len(raw)}
        else:
            entry["data"] = out.json_data()
        described.append(entry)
    document: dict[str, Any] = {
        "model_name": model_name,
        "model_version": model_version,
        "outputs": described,
    }
    if parsed.request.id is not None:
        document["id"] = parsed.request.id
    head = orjson.dumps(document)
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)


def _describe(exc: ValidationError) -> str:
    parts = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:3]]
    return "invalid request: " + "; ".join(parts)


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its ``$defs`` inlined (OpenAPI ``openapi_extra``)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved
