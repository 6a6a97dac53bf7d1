"""Schemathesis against the gateway's OpenAPI schema (a real gateway process with models):
no generated request may cause a 5xx. Bounded: a few examples per operation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from iotstream.gateway_process import GatewayProcess
from tests.component.gateway.support import Feeder, prediction, token

pytestmark = pytest.mark.integration

MODELS = Path(__file__).resolve().parents[3] / "models"
HEADERS = {"Authorization": f"Bearer {token()}"}


@pytest.fixture
def api_gateway(start_gateway: Any, feeder: Feeder) -> GatewayProcess:
    feeder.write(prediction(f"d{n % 3}", n, anomaly=n % 4 == 0) for n in range(30))
    gw: GatewayProcess = start_gateway(
        models_dir=str(MODELS), rest_rate_per_s=10_000, rest_burst=10_000
    )
    return gw


def test_no_server_errors(api_gateway: GatewayProcess) -> None:
    schema = schemathesis.openapi.from_url(api_gateway.url + "/openapi.json")
    operations: list[Any] = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert {op.path for op in operations} >= {"/v1/predict", "/v1/predictions", "/healthz"}
    seen: list[tuple[str, int]] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            response = case.call_and_validate(headers=HEADERS, checks=[not_a_server_error])
            seen.append((case.path, response.status_code))

        check()
    statuses = {status for _, status in seen}
    assert len(seen) >= 5 * len(operations) and {200, 422} <= statuses, statuses
