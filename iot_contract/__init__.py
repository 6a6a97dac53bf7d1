"""iot_contract: the wire contract shared by every iotstream service.

MQTT topics, payloads (readings, predictions, dead-letter records), Redis key names and
WebSocket frames are defined here and only here. Every violation raises
:class:`ContractError`.
"""

from iot_contract.codecs import (
    DEFAULT_MAX_PAYLOAD,
    JSON_CONTENT_TYPE,
    MSGPACK_CONTENT_TYPE,
    Codec,
    JsonCodec,
    MsgpackCodec,
    codec_for,
    decode_reading,
    encode_reading,
)
from iot_contract.errors import ContractError, RejectReason
from iot_contract.frames import (
    AuthMessage,
    ClientMessage,
    CloseCode,
    ErrorFrame,
    HeartbeatFrame,
    PingMessage,
    PredictionsFrame,
    ServerFrame,
    SubscribedFrame,
    SubscribeMessage,
    UnsubscribeMessage,
    parse_client_message,
)
from iot_contract.keys import RECORD_FIELD, RedisKeys, parse_stream_id
from iot_contract.messages import (
    DEADLETTER_PAYLOAD_CAP,
    MAX_FEATURES,
    SCHEMA_VERSION,
    DeadLetter,
    Hops,
    ModelRef,
    Prediction,
    Reading,
)
from iot_contract.topics import (
    STATUS_OFFLINE,
    STATUS_ONLINE,
    TopicKind,
    inference_topic,
    parse_device_topic,
    shared_subscription,
    status_topic,
    telemetry_filter,
    telemetry_topic,
    validate_device_id,
)

__all__ = [
    "DEADLETTER_PAYLOAD_CAP",
    "DEFAULT_MAX_PAYLOAD",
    "JSON_CONTENT_TYPE",
    "MAX_FEATURES",
    "MSGPACK_CONTENT_TYPE",
    "RECORD_FIELD",
    "SCHEMA_VERSION",
    "STATUS_OFFLINE",
    "STATUS_ONLINE",
    "AuthMessage",
    "ClientMessage",
    "CloseCode",
    "Codec",
    "ContractError",
    "DeadLetter",
    "ErrorFrame",
    "HeartbeatFrame",
    "Hops",
    "JsonCodec",
    "ModelRef",
    "MsgpackCodec",
    "PingMessage",
    "Prediction",
    "PredictionsFrame",
    "Reading",
    "RedisKeys",
    "RejectReason",
    "ServerFrame",
    "SubscribeMessage",
    "SubscribedFrame",
    "TopicKind",
    "UnsubscribeMessage",
    "codec_for",
    "decode_reading",
    "encode_reading",
    "inference_topic",
    "parse_client_message",
    "parse_device_topic",
    "parse_stream_id",
    "shared_subscription",
    "status_topic",
    "telemetry_filter",
    "telemetry_topic",
    "validate_device_id",
]
