"""The Open Inference Protocol (KServe V2) on the gateway's inference core.

- :mod:`gateway.oip.service`: the data plane (metadata, readiness, inference), no transport.
- :mod:`gateway.oip.batching`: dynamic batching of concurrent requests (``iot_batching``).
- :mod:`gateway.oip.tensors`, :mod:`gateway.oip.rest`: tensor and REST body codecs (pure).
- :mod:`gateway.oip.grpc_server`: ``inference.GRPCInferenceService`` and gRPC health.
- :mod:`gateway.oip.runtime`: what the app's lifespan starts and stops.
- ``open_inference.proto`` and its generated stubs (``scripts/gen-oip-stubs``).

The REST routes are :mod:`gateway.routes.v2`. Docs: docs/gateway.md.
"""
