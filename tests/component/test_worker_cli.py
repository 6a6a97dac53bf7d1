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
