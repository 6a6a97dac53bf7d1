"""The FastAPI WebSocket/REST gateway and the live dashboard.

One Redis stream reader per process fans predictions out to every connected dashboard,
filtered per client, batched per tick, resumable by stream id (``docs/websocket.md``).
"""

from gateway.app import create_app
from gateway.settings import GatewaySettings

__all__ = ["GatewaySettings", "create_app"]
