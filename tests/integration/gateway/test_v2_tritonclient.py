"""The Open Inference Protocol against a real gateway process (REST on its HTTP port, gRPC
on its own), spoken by NVIDIA's own client library (``tritonclient``), unmodified: health,
metadata, FP32 inference equal to the streaming path's predictions, the protocol's errors,
bearer tokens in gRPC metadata and the standard gRPC health service."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from inference_worker.app import running_worker
from inference_worker.settings import WorkerSettings
from iot_contract import Reading, RedisKeys
from iot_models.sensors import Machine
from iotstream.gateway_process import GatewayProcess
from iotstream.localservices import free_port
from tests.component.gateway.support import token
from tests.harness.services import Service
from tests.integration.gateway.conftest import stream_through_pipeline

pytestmark = pytest.mark.integration

MODELS = Path(__file__).resolve().parents[3] / "models"


def auth() -> dict[str, str]:
    """A fresh header dict per call (tritonclient's HTTP client adds to the one it gets)."""
    return {"authorization": f"Bearer {token()}"}


@pytest.fixture
def oip_gateway(start_gateway: Any) -> GatewayProcess:
    gw: GatewayProcess = start_gateway(
        models_dir=str(MODELS), grpc_port=free_port(), oip_max_wait_ms=1.0
    )
    return gw


@pytest.fixture
def clients(
    oip_gateway: GatewayProcess,
) -> Iterator[tuple[triton_http.InferenceServerClient, triton_grpc.InferenceServerClient]]:
    grpc_port = _grpc_port(oip_gateway)
    http_client = triton_http.InferenceServerClient(f"127.0.0.1:{oip_gateway.port}")
    grpc_client = triton_grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    yield http_client, grpc_client
    http_client.close()
    grpc_client.close()


def _grpc_port(gw: GatewayProcess) -> int:
    port = gw.options["grpc_port"]
    assert isinstance(port, int)
    return port


def fp32_readings(n: int, devices: int = 4) -> list[Reading]:
    """Readings from the simulated pumps, features rounded to float32 (what V2 clients send)."""
    machines = [
        Machine(seed=d, mean_time_between_faults_s=20.0, fault_duration_s=(5.0, 10.0))
        for d in range(devices)
    ]
    out = []
    for i in range(n):
        features, _ = machines[i % devices].step(1.0)
        out.append(
            Reading(
                device_id=f"pump-{i % devices}",
                seq=i // devices,
                ts=time.time(),
                features=[float(np.float32(x)) for x in features],
            )
        )
    return out


def test_health_and_metadata_over_both_transports(clients: Any) -> None:
    for client in clients:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("fault-clf", headers=auth())
        meta = client.get_model_metadata("fault-clf", headers=auth(), **_as_json(client))
        (features,) = meta["inputs"]  # gRPC's JSON form writes int64 as strings
        assert (features["name"], features["datatype"]) == ("features", "FP32")
        assert [int(d) for d in features["shape"]] == [-1, 16]
        assert [o["name"] for o in meta["outputs"]] == [
            "score",
            "anomaly",
            "label",
            "probabilities",
        ]
        server = client.get_server_metadata(headers=auth(), **_as_json(client))
        assert server["name"] == "iotstream"


def _as_json(client: Any) -> dict[str, bool]:
    return {"as_json": True} if isinstance(client, triton_grpc.InferenceServerClient) else {}


def _infer(client: Any, module: Any, reading: Reading) -> Any:
    x = np.asarray([reading.features], dtype=np.float32)
    tensor = module.InferInput("features", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return client.infer(
        "fault-clf", [tensor], headers=auth(), parameters={"device_id": reading.device_id}
    )


def test_outputs_equal_the_streaming_paths_predictions(
    clients: Any,
    oip_gateway: GatewayProcess,
    mosquitto: Service,
    redis_service: Service,
    redis_keys: RedisKeys,
    unique: str,
) -> None:
    worker_settings = WorkerSettings(
        worker_id=f"w-{unique}",
        mqtt_url=mosquitto.url,
        redis_url=redis_service.url,
        redis_prefix=redis_keys.prefix,
        share_group=f"g{unique}",
        models_dir=MODELS,
        default_model="fault-clf",
        max_wait_ms=5,
    )
    readings = fp32_readings(80)
    with running_worker(worker_settings):
        streamed = stream_through_pipeline(oip_gateway.ws_url, mosquitto, readings, f"p{unique}")
    assert len(streamed) == len(readings)
    http_client, grpc_client = clients
    labels = None
    for reading in readings:
        want = streamed[(reading.device_id, reading.seq)]
        for client, module in ((http_client, triton_http), (grpc_client, triton_grpc)):
            result = _infer(client, module, reading)
            assert result.as_numpy("score")[0] == np.float32(want["score"])
            assert bool(result.as_numpy("anomaly")[0]) == want["anomaly"]
            assert result.as_numpy("label")[0].decode() == want["label"]
            labels = labels or list(want["probabilities"])
            expected = np.asarray([want["probabilities"][k] for k in labels], dtype=np.float32)
            assert (result.as_numpy("probabilities")[0] == expected).all()
    assert any(p["anomaly"] for p in streamed.values())  # the fleet did have faults


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_protocol_errors(clients: Any, transport: str) -> None:
    client, module = (clients[0], triton_http) if transport == "http" else (clients[1], triton_grpc)
    codes = {
        "http": {"not_found": "404", "invalid": "400", "auth": "401"},
        "grpc": {
            "not_found": "StatusCode.NOT_FOUND",
            "invalid": "StatusCode.INVALID_ARGUMENT",
            "auth": "StatusCode.UNAUTHENTICATED",
        },
    }[transport]
    good = np.ones((1, 16), dtype=np.float32)
    tensor = module.InferInput("features", [1, 16], "FP32")
    tensor.set_data_from_numpy(good)
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("no-such-model", [tensor], headers=auth())
    assert unknown.value.status() == codes["not_found"]
    assert "unknown model" in unknown.value.message()

    wrong = module.InferInput("features", [1, 3], "FP32")
    wrong.set_data_from_numpy(np.ones((1, 3), dtype=np.float32))
    with pytest.raises(InferenceServerException) as shape:
        client.infer("fault-clf", [wrong], headers=auth())
    assert shape.value.status() == codes["invalid"]
    assert "shape [1, 3]" in shape.value.message()

    ints = module.InferInput("features", [1, 16], "INT32")
    ints.set_data_from_numpy(np.ones((1, 16), dtype=np.int32))
    with pytest.raises(InferenceServerException) as dtype:
        client.infer("fault-clf", [ints], headers=auth())
    assert dtype.value.status() == codes["invalid"] and "datatype" in dtype.value.message()

    with pytest.raises(InferenceServerException) as anonymous:
        client.infer("fault-clf", [tensor])
    assert anonymous.value.status() == codes["auth"]


def test_grpc_health_service(oip_gateway: GatewayProcess) -> None:
    port = _grpc_port(oip_gateway)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
