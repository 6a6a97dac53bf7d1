"""Log formats."""

from __future__ import annotations

import json
import logging

import pytest

from iotstream.logs import configure_logging, redact_credentials


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


def test_url_passwords_are_hidden() -> None:
    assert redact_credentials("redis://:s3cr3t@redis:6379/0") == "redis://:***@redis:6379/0"
    assert (
        redact_credentials("to mqtts://worker-0:p:w@broker:8883 and 'rediss://u:x@r'")
        == "to mqtts://worker-0:***@broker:8883 and 'rediss://u:***@r'"
    )
    for kept in ("redis://redis:6379/0", "s3://bucket/prefix", "mqtt://user@host", "a:b@c"):
        assert redact_credentials(kept) == kept


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_lines_and_tracebacks_hide_url_passwords(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The deployments put Redis's password in WORKER_REDIS_URL, and the worker logs it."""
    configure_logging("INFO", "worker-0", "json" if fmt == "json" else "text")
    try:
        log = logging.getLogger("inference_worker.app")
        log.info("redis %s ready", "redis://:s3cr3t@redis:6379/0")
        try:
            raise ValueError("cannot reach mqtt://w:hunter2@broker")
        except ValueError:
            log.exception("failed")
    finally:
        configure_logging("WARNING")
    err = capsys.readouterr().err
    assert "s3cr3t" not in err and "hunter2" not in err
    assert "redis://:***@redis:6379/0" in err and "mqtt://w:***@broker" in err
