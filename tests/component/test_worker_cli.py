"""``iotstream worker`` start-up failures are one clear line, not a traceback."""

from __future__ import annotations

import pytest

from iotstream.cli import main
from iotstream.localservices import free_port


def test_unreachable_redis_is_reported_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    code = main(["worker", "--redis-url", f"redis://127.0.0.1:{port}/0", "--worker-id", "t1"])
    assert code == 1
    err = capsys.readouterr().err
    assert "iotstream worker: ConnectionError" in err
    assert str(port) in err


def test_unknown_model_is_reported_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--models", "no-such-model"]) == 1
    assert "no-such-model" in capsys.readouterr().err


def test_signal_handlers_are_restored_after_a_run() -> None:
    import signal

    before = signal.getsignal(signal.SIGINT)
    main(["worker", "--redis-url", f"redis://127.0.0.1:{free_port()}/0", "--worker-id", "t2"])
    assert signal.getsignal(signal.SIGINT) is before


def test_passwords_in_urls_stay_out_of_the_output(capsys: pytest.CaptureFixture[str]) -> None:
    """compose and k8s put Redis's password in WORKER_REDIS_URL; the worker logs its URLs
    at start ("starting worker {...}") and an unreachable Redis ends it with an error line."""
    redis_url = f"redis://:s3cr3t@127.0.0.1:{free_port()}/0"
    argv = ["worker", "--redis-url", redis_url, "--mqtt-url", "mqtt://w:hunter2@127.0.0.1:1"]
    assert main([*argv, "--worker-id", "t3"]) == 1
    err = capsys.readouterr().err
    assert "starting worker" in err and "redis://:***@127.0.0.1" in err
    assert "s3cr3t" not in err and "hunter2" not in err
