"""training.tools.run_tool: the one way the pipeline runs airflow and qemu."""

from __future__ import annotations

import sys

import pytest

from training.tools import STDERR_TAIL, run_tool


def test_returns_the_captured_output_of_a_program_that_succeeds() -> None:
    proc = run_tool([sys.executable, "-c", "print('ok')"], "printing", timeout=30)
    assert proc.stdout == "ok\n"


def test_a_failure_names_the_step_the_exit_code_and_the_end_of_stderr() -> None:
    script = f"import sys; sys.stderr.write('x' * {STDERR_TAIL} + 'the cause'); sys.exit(3)"
    with pytest.raises(RuntimeError) as caught:
        run_tool([sys.executable, "-c", script], "`tool run`", timeout=30)
    message = str(caught.value)
    assert message.startswith("`tool run` failed (3): ")
    assert message.endswith("the cause")
    assert len(message) == len("`tool run` failed (3): ") + STDERR_TAIL
