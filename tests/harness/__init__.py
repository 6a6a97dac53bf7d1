"""Shared test fixtures and helpers: real services, clients, unique names."""
