"""The device fleet simulator (being built)."""
