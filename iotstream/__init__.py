"""iotstream: the command line and the local tooling around the services."""

__all__: list[str] = []
