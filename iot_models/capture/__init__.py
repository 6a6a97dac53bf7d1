"""Captured readings for retraining: scored readings kept as Parquet in an object store.

:mod:`iot_models.capture.layout` is the one definition of the schema and the partition
layout, shared by the worker that writes the files and the training code that reads them.
"""
