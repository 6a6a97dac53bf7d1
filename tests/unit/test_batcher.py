"""The Batcher with the fixed policy: ``max_size`` items or ``max_wait`` after the first."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iot_batching import Batcher, BatchState, FixedPolicy, Wait


def fixed(size: int, wait: float) -> Batcher[int]:
    return Batcher[int](FixedPolicy(max_size=size, max_wait=wait))


def test_closes_at_max_size() -> None:
    b = fixed(3, 1.0)
    assert b.add(1, 0.0) is None
    assert b.add(2, 0.1) is None
    assert b.add(3, 0.2) == [1, 2, 3]
    assert len(b) == 0
    assert b.wait(0.2) is None


def test_closes_at_max_wait_after_first_item() -> None:
    b = fixed(100, 0.005)
    b.add(0, 10.0)
    wait = b.wait(10.0)
    assert wait is not None
    assert wait.until == pytest.approx(10.005)
    assert b.poll(10.004) is None
    b.add(1, 10.004)
    assert b.poll(10.005) == [0, 1]
    assert b.poll(11.0) is None


def test_an_overdue_add_closes_the_batch_at_once() -> None:
    b = fixed(100, 0.005)
    b.add(1, 0.0)
    assert b.add(2, 0.006) == [1, 2]


def test_a_due_batch_says_so() -> None:
    b = fixed(100, 0.005)
    b.add(1, 0.0)
    assert b.wait(0.01) == Wait(0.01, 0)


def test_deadline_restarts_with_next_batch() -> None:
    b = fixed(2, 0.01)
    b.add(1, 0.0)
    b.add(2, 0.001)
    b.add(3, 5.0)
    wait = b.wait(5.0)
    assert wait is not None
    assert wait.until == pytest.approx(5.01)


def test_opened_at_is_the_open_batch_s_first_arrival() -> None:
    b = fixed(3, 1.0)
    opened: list[float | None] = [b.opened_at]
    b.add_many([1, 2], now=5.0, first_arrived=4.5)  # counted from the first item's arrival
    opened.append(b.opened_at)
    b.add(3, 5.1)  # full: cut
    opened.append(b.opened_at)
    b.add(4, 6.0)
    opened.append(b.opened_at)
    assert opened == [None, 4.5, None, 6.0]


def test_flush_returns_partial_batch() -> None:
    b = fixed(10, 10)
    assert b.flush() is None
    b.add(1, 0)
    assert b.flush() == [1]


def test_zero_wait_makes_every_item_its_own_batch() -> None:
    assert fixed(10, 0).add(1, 0.0) == [1]


@pytest.mark.parametrize(("size", "wait"), [(0, 1.0), (1, -0.1)])
def test_rejects_bad_parameters(size: int, wait: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        fixed(size, wait)


@given(
    st.integers(1, 20),
    st.floats(0, 1),
    st.lists(st.floats(0, 0.5), min_size=1, max_size=200),
)
def test_every_item_comes_out_once_in_order_and_batches_respect_limits(
    size: int, wait: float, gaps: list[float]
) -> None:
    b = fixed(size, wait)
    out: list[list[int]] = []
    now = 0.0
    for i, gap in enumerate(gaps):
        now += gap
        if due := b.poll(now):
            out.append(due)
        if closed := b.add(i, now):
            out.append(closed)
    if rest := b.flush():
        out.append(rest)
    assert [x for batch in out for x in batch] == list(range(len(gaps)))
    assert all(1 <= len(batch) <= size for batch in out)


class CountingPolicy:
    """The fixed policy, counting the decisions asked of it."""

    def __init__(self) -> None:
        self.inner = FixedPolicy(max_size=10, max_wait=0.005)
        self.max_size, self.max_wait = self.inner.max_size, self.inner.max_wait
        self.asked = 0

    def decide(self, state: BatchState, now: float) -> Wait | None:
        self.asked += 1
        return self.inner.decide(state, now)


def test_a_decision_is_asked_once_per_change() -> None:
    """The run loop polls at a hand-over and then asks how long to wait, at the same time:
    one decision serves both (an adaptive one costs ~2 us, a thousand hand-overs a second)."""
    policy = CountingPolicy()
    b = Batcher[int](policy)
    assert b.add_many([1, 2], now=1.0) == []
    assert b.wait(1.0) == b.wait(1.0)
    assert policy.asked == 1
    assert b.wait(1.002) is not None, "later: asked again"
    assert b.add_many([3], now=1.002) == []  # one more item at the same time: asked again
    assert policy.asked == 3
    assert b.poll(1.005) == [1, 2, 3]
    # a new batch of the same size at the same time is not judged by the old one's answer
    b.add_many([4, 5], now=2.0, first_arrived=1.998)
    old = b.wait(2.0)
    assert old is not None and old.until == pytest.approx(2.003)
    assert len(b.add_many(range(6, 16), now=2.0)) == 1  # 4..13 fill it; 14, 15 open the next
    new = b.wait(2.0)
    assert len(b) == 2 and new is not None
    assert new.until == pytest.approx(2.005), "opened at 2.0, not 1.998"
