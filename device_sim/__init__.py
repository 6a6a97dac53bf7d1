"""The device fleet simulator: real MQTT identities, or a load mode for benchmarks."""
