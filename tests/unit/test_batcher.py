"""The micro-batch cut policy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inference_worker.batcher import Batcher


def test_closes_at_max_size() -> None:
    b = Batcher[int](max_size=3, max_wait=1.0)
    assert b.add(1, 0.0) is None
    assert b.add(2, 0.1) is None
    assert b.add(3, 0.2) == [1, 2, 3]
    assert len(b) == 0
    assert b.deadline is None


def test_closes_at_max_wait_after_first_item() -> None:
    b = Batcher[str](max_size=100, max_wait=0.005)
    b.add("a", 10.0)
    assert b.deadline == pytest.approx(10.005)
    assert b.flush_due(10.004) is None
    b.add("b", 10.004)
    assert b.flush_due(10.005) == ["a", "b"]
    assert b.flush_due(11.0) is None


def test_an_overdue_add_closes_the_batch_at_once() -> None:
    b = Batcher[int](max_size=100, max_wait=0.005)
    b.add(1, 0.0)
    assert b.add(2, 0.006) == [1, 2]


def test_deadline_restarts_with_next_batch() -> None:
    b = Batcher[int](max_size=2, max_wait=0.01)
    b.add(1, 0.0)
    b.add(2, 0.001)
    b.add(3, 5.0)
    assert b.deadline == pytest.approx(5.01)


def test_flush_returns_partial_batch() -> None:
    b = Batcher[int](max_size=10, max_wait=10)
    assert b.flush() is None
    b.add(1, 0)
    assert b.flush() == [1]


def test_zero_wait_makes_every_item_its_own_batch() -> None:
    b = Batcher[int](max_size=10, max_wait=0)
    assert b.add(1, 0.0) == [1]


@pytest.mark.parametrize(("size", "wait"), [(0, 1.0), (1, -0.1)])
def test_rejects_bad_parameters(size: int, wait: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        Batcher[int](max_size=size, max_wait=wait)


@given(
    st.integers(1, 20),
    st.floats(0, 1),
    st.lists(st.floats(0, 0.5), min_size=1, max_size=200),
)
def test_every_item_comes_out_once_in_order_and_batches_respect_limits(
    size: int, wait: float, gaps: list[float]
) -> None:
    b = Batcher[int](max_size=size, max_wait=wait)
    out: list[list[int]] = []
    now = 0.0
    for i, gap in enumerate(gaps):
        now += gap
        due = b.flush_due(now)
        if due:
            out.append(due)
        closed = b.add(i, now)
        if closed:
            out.append(closed)
    rest = b.flush()
    if rest:
        out.append(rest)
    assert [x for batch in out for x in batch] == list(range(len(gaps)))
    assert all(1 <= len(batch) <= size for batch in out)
