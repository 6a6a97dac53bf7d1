"""The Open Inference Protocol's parts for one gateway process, built in the app's lifespan:
the dynamic batcher (its task), the data plane, and the gRPC server when a port is set."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import anyio

from gateway.metrics import GatewayMetrics
from gateway.oip.batching import RequestBatcher
from gateway.oip.metrics import OipMetrics
from gateway.oip.service import OipService
from gateway.resources import GatewayResources
from iot_batching import make_policy
from iot_contract import Reading
from iot_models.core import BatchResult

__all__ = ["open_oip"]

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def open_oip(
    resources: GatewayResources, metrics: GatewayMetrics, oip_metrics: OipMetrics
) -> AsyncIterator[OipService]:
    """Run the batcher (and the gRPC server, if ``grpc_port`` is set) until exit."""
    settings = resources.settings
    predictor = resources.predictor

    async def score(readings: list[Reading]) -> BatchResult:
        assert predictor is not None  # OipService refuses requests without models
        return await predictor.predict(readings)

    policy = make_policy(
        settings.oip_batch_policy,
        settings.oip_max_batch,
        settings.oip_max_wait_ms / 1000,
        settings.oip_target_wait_ms / 1000,
    )
    batcher = RequestBatcher(
        score,  # type: ignore[arg-type]
        policy=policy,
        max_queue=settings.oip_max_queue,
        on_batch=oip_metrics.batch,
    )
    oip_metrics.gauge("queue").set_function(lambda: batcher.pending)  # read at scrape time
    service = OipService(predictor, batcher, oip_metrics, max_rows=settings.max_batch_readings)
    async with anyio.create_task_group() as tg:
        tg.start_soon(batcher.run)
        grpc_server = None
        if settings.grpc_port is not None:
            # Imported here: a gateway without gRPC never loads grpcio.
            from gateway.oip.grpc_server import OipServicer, start_grpc_server

            servicer = OipServicer(
                service,
                resources.verifier,
                on_auth_failure=metrics.counter("auth_failures").labels("grpc").inc,
            )
            grpc_server = await start_grpc_server(
                servicer,
                host=settings.grpc_host or settings.host,
                port=settings.grpc_port,
                max_message_bytes=settings.max_body_bytes,
                tls_cert=settings.grpc_tls_cert,
                tls_key=settings.grpc_tls_key,
            )
        try:
            yield service
        finally:
            if grpc_server is not None:
                await grpc_server.stop(grace=2.0)
            tg.cancel_scope.cancel()
