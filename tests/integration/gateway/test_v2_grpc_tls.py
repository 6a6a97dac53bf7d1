"""The Open Inference Protocol's gRPC port over TLS (GATEWAY_GRPC_TLS_CERT/KEY), spoken by
tritonclient with the CA it trusts; a plaintext client gets no answer."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from iotstream.broker_tools.certs import create_ca, issue_server
from iotstream.localservices import free_port
from tests.component.gateway.support import token

pytestmark = pytest.mark.integration

MODELS = Path(__file__).resolve().parents[3] / "models"


def test_grpc_over_tls(start_gateway: Any, tmp_path: Path) -> None:
    ca = create_ca("oip-test-ca", dt.timedelta(days=1))
    cert, key = issue_server(ca, ["127.0.0.1", "localhost"], dt.timedelta(days=1)).write(
        tmp_path / "tls", "gateway"
    )
    ca_path = tmp_path / "tls" / "ca.crt"
    ca_path.write_bytes(ca.cert_pem)
    port = free_port()
    start_gateway(
        models_dir=str(MODELS), grpc_port=port, grpc_tls_cert=str(cert), grpc_tls_key=str(key)
    )
    client = triton_grpc.InferenceServerClient(
        f"127.0.0.1:{port}", ssl=True, root_certificates=str(ca_path)
    )
    try:
        assert client.is_server_live() and client.is_server_ready()
        tensor = triton_grpc.InferInput("features", [1, 16], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 16), dtype=np.float32))
        result = client.infer("fault-clf", [tensor], headers={"authorization": f"Bearer {token()}"})
        assert result.as_numpy("score").shape == (1,)
    finally:
        client.close()
    plain = triton_grpc.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        with pytest.raises(InferenceServerException) as refused:
            plain.is_server_live(client_timeout=5)
        assert refused.value.status() in {
            "StatusCode.UNAVAILABLE",
            "StatusCode.DEADLINE_EXCEEDED",
        }
    finally:
        plain.close()
