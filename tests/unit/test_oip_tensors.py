"""Open Inference Protocol tensors and REST bodies (gateway.oip.tensors, gateway.oip.rest):
pure decoding and encoding, errors that name the problem."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from gateway.oip.errors import InvalidInputError
from gateway.oip.rest import encode_response, parse_request
from gateway.oip.tensors import InputTensor, decode_features, model_spec, output_tensors
from iot_models.model import ModelInfo

INFO = ModelInfo(
    name="clf",
    version="3",
    variant="fp32",
    kind="classifier",
    feature_names=("a", "b"),
    labels=("normal", "fault"),
)
SPEC = model_spec(INFO)


def test_model_spec_follows_the_model() -> None:
    assert [(t.name, t.datatype, t.shape) for t in SPEC.inputs] == [("features", "FP32", (-1, 2))]
    assert [t.name for t in SPEC.outputs] == ["score", "anomaly", "label", "probabilities"]
    ae = model_spec(ModelInfo("ae", "1", "fp32", "autoencoder", ("a",)))
    assert [t.name for t in ae.outputs] == ["score", "anomaly"]


def test_json_and_raw_inputs_decode_to_the_same_rows() -> None:
    rows = np.array([[1.5, -2.0], [0.25, 3.0]], dtype=np.float32)
    nested = decode_features(SPEC, [InputTensor("features", "FP32", (2, 2), data=rows.tolist())])
    flat = decode_features(SPEC, [InputTensor("features", "FP32", (2, 2), data=[1.5, -2, 0.25, 3])])
    raw = decode_features(SPEC, [InputTensor("features", "FP32", (2, 2), raw=rows.tobytes())])
    assert (nested == rows).all() and (flat == rows).all() and (raw == rows).all()


@pytest.mark.parametrize(
    ("tensors", "says"),
    [
        ([], "exactly one input"),
        ([InputTensor("x", "FP32", (1, 2), data=[1, 2])], "unexpected input 'x'"),
        ([InputTensor("features", "FP64", (1, 2), data=[1, 2])], "datatype 'FP64'"),
        ([InputTensor("features", "FP32", (2,), data=[1, 2])], "shape [2]"),
        ([InputTensor("features", "FP32", (0, 2), data=[])], "shape [0, 2]"),
        ([InputTensor("features", "FP32", (1, 2), data=[1])], "1 values"),
        ([InputTensor("features", "FP32", (1, 2), data=[1, True])], "must be numbers"),
        ([InputTensor("features", "FP32", (1, 2), data=[1, 1e39])], "FP32 range"),
        ([InputTensor("features", "FP32", (1, 2), raw=b"\0" * 7)], "7 bytes"),
        (
            [
                InputTensor(
                    "features",
                    "FP32",
                    (1, 2),
                    raw=np.array([1, np.nan], dtype=np.float32).tobytes(),
                )
            ],
            "NaN",
        ),
    ],
)
def test_bad_inputs_say_what_is_wrong(tensors: list[InputTensor], says: str) -> None:
    with pytest.raises(InvalidInputError) as exc:
        decode_features(SPEC, tensors)
    assert says in exc.value.message


def test_outputs_in_json_and_raw_form() -> None:
    records = [
        {
            "score": 0.25,
            "anomaly": False,
            "label": "normal",
            "probabilities": {"fault": 0.25, "normal": 0.75},
        },
        {
            "score": 0.5,
            "anomaly": True,
            "label": "fault",
            "probabilities": {"fault": 0.5, "normal": 0.5},
        },
    ]
    outs = {t.name: t for t in output_tensors(SPEC, records, None)}
    assert outs["probabilities"].shape == (2, 2)
    assert outs["probabilities"].json_data() == [0.75, 0.25, 0.5, 0.5]  # label order
    assert outs["anomaly"].raw() == b"\x00\x01"
    assert outs["label"].raw() == struct.pack("<I", 6) + b"normal" + struct.pack("<I", 5) + b"fault"
    assert np.frombuffer(outs["score"].raw(), dtype="<f4").tolist() == [0.25, 0.5]
    with pytest.raises(InvalidInputError, match="no output 'nope'"):
        output_tensors(SPEC, records, ["nope"])


def test_binary_request_and_response_round_trip() -> None:
    raw = np.array([[1, 2]], dtype=np.float32).tobytes()
    header = {
        "id": "q",
        "inputs": [
            {
                "name": "features",
                "datatype": "FP32",
                "shape": [1, 2],
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    head = json.dumps(header).encode()
    parsed = parse_request(head + raw, str(len(head)))
    assert parsed.inputs[0].raw == raw and parsed.requested is None
    record = {
        "score": 0.5,
        "anomaly": True,
        "label": "fault",
        "probabilities": {"fault": 1.0, "normal": 0.0},
    }
    body, split = encode_response(parsed, "clf", "3", output_tensors(SPEC, [record], None))
    assert split is not None
    doc = json.loads(body[:split])
    assert doc["id"] == "q" and all("data" not in o for o in doc["outputs"])
    assert sum(o["parameters"]["binary_data_size"] for o in doc["outputs"]) == len(body) - split


@pytest.mark.parametrize(
    ("body", "split", "says"),
    [
        (b"{", None, "not valid JSON"),
        (b'{"inputs": []}', None, "invalid request"),
        (b"{}", "99", "does not fit"),
        (
            b'{"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 2]}]}',
            None,
            "no data",
        ),
        (
            b'{"inputs": [{"name": "f", "datatype": "FP32", "shape": [1],'
            b' "parameters": {"binary_data_size": 8}}]}',
            None,
            "too short",
        ),
        (
            b'{"inputs": [{"name": "f", "datatype": "FLOAT", "shape": [1], "data": [1]}]}',
            None,
            "unknown datatype",
        ),
    ],
)
def test_malformed_bodies(body: bytes, split: str | None, says: str) -> None:
    with pytest.raises(InvalidInputError) as exc:
        parse_request(body, split)
    assert says in exc.value.message
