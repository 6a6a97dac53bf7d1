"""The one error type of the wire contract."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ContractError", "RejectReason"]


class RejectReason(StrEnum):
    """Machine-readable reason a payload was rejected (recorded in dead-letter entries)."""

    OVERSIZE = "oversize"
    """The payload is larger than the configured limit."""
    MALFORMED = "malformed"
    """The bytes do not parse in the declared encoding."""
    INVALID = "invalid"
    """The payload parses but breaks the schema (missing field, wrong type, NaN/inf, ...)."""
    UNSUPPORTED_VERSION = "unsupported_version"
    """``schema_version`` names a version this build does not understand."""
    UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"
    """The MQTT v5 content type names an encoding this build does not speak."""
    BAD_TOPIC = "bad_topic"
    """The topic is not one of the contract's topics, or its device id is invalid."""
    DEVICE_MISMATCH = "device_mismatch"
    """The payload's ``device_id`` differs from the one in the topic."""
    UNKNOWN_MODEL = "unknown_model"
    """The reading names a model no worker serves."""
    FEATURE_COUNT = "feature_count"
    """The feature vector's length differs from the model's input width."""
    OUT_OF_RANGE = "out_of_range"
    """A value is finite but outside what the model can take (e.g. overflows float32)."""
    MODEL_OUTPUT = "model_output"
    """The model produced a non-finite output for this reading."""


class ContractError(ValueError):
    """A message, topic or key does not follow the wire contract.

    Attributes:
        reason: what kind of violation it is (stable, for metrics and dead-letter records).
        detail: a human-readable explanation naming the offending field or value.
    """

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
