"""Schemathesis against the Open Inference Protocol's REST routes (``/v2...``) of a real
gateway process with models: no generated request may cause a 5xx. Bounded: a few dozen
examples per operation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from iotstream.gateway_process import GatewayProcess
from tests.component.gateway.support import token

pytestmark = pytest.mark.integration

MODELS = Path(__file__).resolve().parents[3] / "models"
HEADERS = {"Authorization": f"Bearer {token()}"}


def test_no_server_errors_on_v2(start_gateway: Any) -> None:
    gw: GatewayProcess = start_gateway(models_dir=str(MODELS))
    schema = schemathesis.openapi.from_url(gw.url + "/openapi.json")
    operations: list[Any] = [
        result.ok()  # type: ignore[union-attr]
        for result in schema.get_all_operations()
        if result.ok().path.startswith("/v2")  # type: ignore[union-attr]
    ]
    assert {op.path for op in operations} >= {
        "/v2/health/live",
        "/v2/health/ready",
        "/v2",
        "/v2/models/{name}",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    }
    seen: list[tuple[str, int]] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=40,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            if case.path_parameters and case.path_parameters.get("name") == "x":
                case.path_parameters["name"] = "fault-clf"  # reach the real model too
            response = case.call_and_validate(headers=HEADERS, checks=[not_a_server_error])
            seen.append((case.path, response.status_code))

        check()
    statuses = {status for _, status in seen}
    assert len(seen) >= 5 * len(operations) and {200, 400, 404} <= statuses, statuses
