"""The FastAPI WebSocket/REST gateway and the live dashboard (being built)."""
