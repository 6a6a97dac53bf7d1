"""Log formats."""

from __future__ import annotations

import json
import logging

import pytest

from iotstream.logs import configure_logging


def test_json_lines_carry_service_level_and_message(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "worker-7", "json")
    try:
        logging.getLogger("inference_worker.x").warning("stored %d", 64)
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("t").exception("failed")
    finally:
        configure_logging("WARNING")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["service"] == "worker-7"
    assert lines[0]["level"] == "WARNING"
    assert lines[0]["logger"] == "inference_worker.x"
    assert lines[0]["msg"] == "stored 64"
    assert "ValueError: boom" in lines[1]["exc"]


def test_text_lines_name_the_service(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "sim")
    try:
        logging.getLogger("device_sim").info("hello")
    finally:
        configure_logging("WARNING")
    assert " INFO    sim device_sim: hello" in capsys.readouterr().err
