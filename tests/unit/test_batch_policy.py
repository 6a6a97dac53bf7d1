"""Batch-cut policies (iot_batching): the fixed deadline and the adaptive policy, driven by
an injected clock through the public Batcher API. No sleeps, no private members."""

from __future__ import annotations

import bisect
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iot_batching import (
    AdaptivePolicy,
    ArrivalRate,
    Batcher,
    BatchState,
    FixedPolicy,
    Wait,
    make_policy,
)

MAX, MAX_WAIT, TARGET = 64, 0.005, 0.002


def adaptive() -> Batcher[int]:
    return Batcher[int](AdaptivePolicy(MAX, MAX_WAIT, TARGET))


def arrivals(rate: float, seconds: float, poisson: bool) -> list[float]:
    """When each of ``rate`` items per second arrives: evenly, or as a Poisson stream (many
    independent devices; seeded, so a test sees the same stream every run)."""
    if not poisson:
        return [k / rate for k in range(1, int(rate * seconds) + 1)]
    rng, t, out = random.Random(20), 0.0, []
    while (t := t + rng.expovariate(rate)) < seconds:
        out.append(t)
    return out


def feed(
    b: Batcher[int], rate: float, seconds: float, clump: float = 0.001, *, poisson: bool = False
) -> list[list[int]]:
    """``rate`` items per second (see :func:`arrivals`), taken as the MQTT reader hands them
    over: everything that has arrived, every ``clump`` seconds, and also when the open batch
    is due before that (the reader reads at the worker's timer); returns the batches cut."""
    times = arrivals(rate, seconds + clump, poisson)
    out: list[list[int]] = []
    taken, last, t = 0, 0.0, 0.0
    while t < seconds:
        wait = b.wait(last)
        t = last + clump if wait is None else min(last + clump, max(wait.until, last))
        if t <= last:  # due now: cut what is open
            if (batch := b.poll(last)) is not None:
                out.append(batch)
            t = last + clump if (wait := b.wait(last)) is None else min(last + clump, wait.until)
        arrived = bisect.bisect_right(times, t + 1e-12)
        out.extend(b.add_many(range(taken, arrived), t))
        taken, last = arrived, t
    return out


# --- sleeping through the first item (Batcher.ahead, first_arrived) ----------------------


def test_ahead_idle_or_trickle_the_first_item_wakes_the_caller() -> None:
    fixed = Batcher[int](FixedPolicy(MAX, MAX_WAIT))
    assert fixed.ahead(0.0) is None, "no rate yet: nothing else is expected"
    assert adaptive().ahead(0.0) is None
    b = adaptive()
    feed(b, 100.0, 1.0)  # a trickle: one reading per 10 ms
    assert b.ahead(1.0) is None


def test_ahead_under_steady_load_says_what_the_batch_would_wait_for() -> None:
    fixed = Batcher[int](FixedPolicy(MAX, MAX_WAIT))
    feed(fixed, 5000.0, 0.2)
    t = 0.2
    assert fixed.ahead(t) == Wait(t + MAX_WAIT, MAX - 1)
    b = adaptive()
    feed(b, 5000.0, 0.2)
    wait = b.ahead(t)
    assert wait is not None and wait.items == MAX - 1
    assert t < wait.until <= t + 2 * TARGET


def test_first_arrived_opens_the_batch_when_its_first_item_came() -> None:
    b = Batcher[int](FixedPolicy(MAX, MAX_WAIT))
    assert b.add_many([1, 2], now=0.004, first_arrived=0.001) == []
    wait = b.wait(0.004)
    assert wait is not None and wait.until == pytest.approx(0.001 + MAX_WAIT)
    assert b.add_many([3], now=0.0065) == [[1, 2, 3]], "due 5 ms after the first arrived"
    b.add_many([4], now=0.010, first_arrived=0.020)  # never later than now
    wait = b.wait(0.010)
    assert wait is not None and wait.until == pytest.approx(0.010 + MAX_WAIT)


# --- idle ------------------------------------------------------------------------------


def test_idle_a_lone_reading_leaves_at_once() -> None:
    b = adaptive()
    assert b.wait(0.0) is None  # nothing open: nothing to wait for
    assert b.add(1, now=100.0) == [1]


def test_idle_the_fixed_policy_holds_a_lone_reading_for_max_wait() -> None:
    b = Batcher[int](FixedPolicy(MAX, MAX_WAIT))
    assert b.add(1, now=100.0) is None
    assert b.wait(100.0) == Wait(100.005, MAX - 1)
    assert b.poll(100.0049) is None
    assert b.poll(100.005) == [1]


def test_idle_after_a_busy_period_the_rate_decays_and_batches_close_at_once() -> None:
    b = adaptive()
    feed(b, rate=20_000, seconds=0.2)
    b.flush()
    assert b.add(7, now=1.2) == [7]  # a second later nothing more is expected


# --- trickle ---------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [10, 100, 400])
def test_trickle_every_reading_is_its_own_batch_without_waiting(rate: float) -> None:
    b = adaptive()
    gap = 1 / rate
    for k in range(200):
        assert b.add(k, now=k * gap) == [k]


# --- steady ----------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [2_000, 5_000, 10_000])
def test_steady_moderate_rates_close_at_the_target_wait(rate: float) -> None:
    batches = feed(adaptive(), rate=rate, seconds=1.0)[50:]  # after the rate settled
    expected = rate * TARGET
    sizes = [len(x) for x in batches]
    assert min(sizes) >= expected * 0.5
    assert max(sizes) <= expected * 1.5 + rate * 0.001  # + one clump


@pytest.mark.parametrize("rate", [20_000, 40_000])
def test_steady_high_rates_fill_batches_like_the_fixed_policy(rate: float) -> None:
    batches = feed(adaptive(), rate=rate, seconds=1.0)[50:]
    full = [len(x) == MAX for x in batches]
    assert sum(full) >= 0.75 * len(full)  # the others: a fill due exactly at twice the target
    assert sum(map(len, batches)) / len(batches) >= 0.85 * MAX


def test_steady_fixed_policy_batches_span_max_wait() -> None:
    batches = feed(Batcher[int](FixedPolicy(MAX, MAX_WAIT)), rate=5_000, seconds=1.0)[10:]
    # the clump that opens it (5) and the 25 that arrive in max_wait, read at the deadline
    assert {len(x) for x in batches} == {30}


def test_a_batch_found_overdue_takes_everything_that_arrived_meanwhile() -> None:
    # the run loop wakes at the deadline with 25 readings: all of them join the batch
    b = Batcher[int](FixedPolicy(MAX, MAX_WAIT))
    assert b.add_many([0, 1, 2], now=0.0) == []
    assert b.add_many(range(3, 28), now=0.0051) == [list(range(28))]
    assert len(b) == 0


# --- burst -----------------------------------------------------------------------------


def test_burst_queued_readings_grow_the_batch_to_max_size() -> None:
    b = adaptive()
    # a backlog after a pause: the first take brings max_size - 4 and 500 more are queued
    assert b.add_many(range(4), now=10.0, queued=0) == [[0, 1, 2, 3]]  # nothing expected
    assert b.add_many(range(10), now=10.0, queued=500) == []
    assert b.wait(10.0, queued=500) == Wait(10.005, MAX - 10)
    closed = b.add_many(range(10, 200), now=10.0001, queued=310)
    assert [len(x) for x in closed] == [MAX, MAX, MAX]
    assert len(b) == 8
    wait = b.wait(10.0001, queued=310)
    assert wait is not None
    assert wait.until == pytest.approx(10.0051)
    assert wait.items == MAX - 8
    assert b.add_many(range(200, 256), now=10.0002, queued=254) == [list(range(192, 256))]


def test_burst_from_idle_first_clump_leaves_at_once_then_batches_follow_the_rate() -> None:
    b = adaptive()
    batches = feed(b, rate=10_000, seconds=0.3)
    assert batches[0] == list(range(10))  # one clump: no rate seen yet, nothing waited for
    # the clump that opens a batch (1 ms: 10) and 10k/s x the 2 ms target, read at the target
    assert all(len(x) == 30 for x in batches[-50:])


def test_max_wait_bounds_every_policy_whatever_the_rate_says() -> None:
    state = BatchState(size=10, opened_at=0.0, queued=0, rate=1e9)
    assert AdaptivePolicy(MAX, MAX_WAIT, TARGET).decide(state, now=MAX_WAIT) is None
    assert FixedPolicy(MAX, MAX_WAIT).decide(state, now=MAX_WAIT) is None


# --- a CPU budget (batch_cost) ---------------------------------------------------------

SHARE = 0.35  # per-batch work: 35 % of the fixed policy's CPU per item (the test machine)


def budget_policy(budget: float = 0.10) -> AdaptivePolicy:
    return AdaptivePolicy(MAX, MAX_WAIT, TARGET, SHARE, budget)


def budgeted(budget: float = 0.10) -> Batcher[int]:
    return Batcher[int](budget_policy(budget))


def mean(batches: list[list[int]]) -> float:
    return sum(map(len, batches)) / len(batches)


def cpu_per_item(batches: list[list[int]], cost: float) -> float:
    """Modelled CPU per item: each item 1, each batch ``cost`` more."""
    return (sum(map(len, batches)) + cost * len(batches)) / sum(map(len, batches))


def batch_cost(fixed: list[list[int]]) -> float:
    """A batch's cost in items' worth that makes it ``SHARE`` of the fixed policy's CPU."""
    return mean(fixed) * SHARE / (1 - SHARE)


def test_the_floor_keeps_a_batch_within_the_budget_of_the_fixed_policys() -> None:
    policy = budget_policy()
    for rate in (500, 2_000, 5_000, 10_000, 20_000, 50_000):
        fixed_size = policy.fixed_batch(rate)
        cost = fixed_size * SHARE / (1 - SHARE)
        floor = policy.floor(rate)
        assert floor < fixed_size
        assert 1 + cost / floor == pytest.approx(1.10 * (1 + cost / fixed_size))
        # the same fraction of the fixed policy's batch at every rate (0.78 here)
        k = SHARE / (1 - SHARE)
        assert floor / fixed_size == pytest.approx(k / (0.10 + 1.10 * k))
    assert AdaptivePolicy(MAX, MAX_WAIT, TARGET).floor(5_000) == 0, "no cost: no floor"


@pytest.mark.parametrize("clump", [0.001, 0.002], ids=["clumps-1ms", "clumps-2ms"])
@pytest.mark.parametrize("rate", [2_000, 5_000, 10_000, 20_000, 30_000])
def test_budgeted_cpu_per_item_stays_within_the_budget_at_every_rate(
    rate: float, clump: float
) -> None:
    fixed = feed(Batcher[int](FixedPolicy(MAX, MAX_WAIT)), rate, 1.0, clump, poisson=True)[20:]
    unbudgeted = feed(adaptive(), rate, 1.0, clump, poisson=True)[20:]
    batches = feed(budgeted(), rate, 1.0, clump, poisson=True)[20:]
    cost = batch_cost(fixed)
    assert cpu_per_item(batches, cost) <= 1.10 * cpu_per_item(fixed, cost) + 1e-9
    if rate <= 5_000:
        assert cpu_per_item(unbudgeted, cost) > 1.10 * cpu_per_item(fixed, cost), "needed"
    # and it still answers sooner than the fixed policy: smaller batches
    assert mean(batches) <= mean(fixed)


@pytest.mark.parametrize("rate", [2_000, 5_000, 10_000, 12_000, 20_000])
def test_the_fixed_policys_batch_is_estimated_with_its_cap(rate: float) -> None:
    """The budget is measured against the fixed policy's mean batch: near ``max_size``
    (10-12k/s) many of its batches stop at the cap, well below ``rate * max_wait +
    clump``. Reads every 1 ms, the worker's default ``WORKER_READ_INTERVAL_MS`` (with
    longer reads the mean clump, which counts the reads at the deadline too, is smaller
    than the clump that opens a batch, and the estimate is a few items low)."""
    b = Batcher[int](FixedPolicy(MAX, MAX_WAIT))
    fixed = feed(b, rate, 2.0, 0.001, poisson=True)[20:]
    estimate = budget_policy().fixed_batch(rate, b.rate.clump)
    assert estimate == pytest.approx(mean(fixed), rel=0.025)  # min(m, 64): 4 % off at 10k/s
    uncapped = min(MAX, rate * MAX_WAIT + b.rate.clump)
    if rate in (10_000, 12_000):
        assert uncapped - mean(fixed) > 1.5, "the cap matters here"


def test_budgeted_batches_all_wait_about_as_long() -> None:
    """The expected time of the floor closes them, not the read that brings the count: at
    a steady rate every batch spans the same time (the p99 is that wait, not the longest
    of a varying one)."""
    b = budgeted()
    feed(b, 5_000, 0.5)
    b.flush()
    floor = budget_policy().floor(5_000, b.rate.clump)
    opened = 0.5
    assert b.add_many(range(5), now=opened, first_arrived=opened) == []
    wait = b.wait(opened)
    assert wait is not None and wait.items == MAX - 5, "not a count"
    assert wait.until == pytest.approx(opened + (floor + 1 - b.rate.clump) / 5_000, rel=0.05)
    assert b.add_many(range(5, 15), now=(opened + wait.until) / 2) == []
    assert len(b.add_many([], now=wait.until)) == 1, "closed at the time, below the floor"


def test_budgeted_a_batch_is_timed_from_when_its_first_item_arrived_if_known() -> None:
    """Items that waited in a socket (the worker's network thread was scoring the batch
    before) open a batch older than the read that brought them: with their arrival
    estimated, the batch closes the floor's worth of arrivals after it, so its oldest item
    waits as long as any other batch's; the fixed policy's deadline is unchanged."""
    policy = budget_policy()
    floor = policy.floor(10_000, 10.0)
    late = BatchState(size=18, opened_at=0.0018, queued=0, rate=10_000, clump=10.0, arrived=0.0)
    wait = policy.decide(late, now=0.0018)
    assert wait is not None and wait.until == pytest.approx(floor / 10_000)
    unknown = BatchState(size=18, opened_at=0.0018, queued=0, rate=10_000, clump=10.0)
    later = policy.decide(unknown, now=0.0018)
    assert later is not None and later.until == pytest.approx(0.0018 + (floor + 1 - 10) / 10_000)
    assert wait.until < later.until - 0.0007, "a read's worth of age is not lost"
    assert FixedPolicy(MAX, MAX_WAIT).decide(late, now=0.0018) == Wait(0.0018 + MAX_WAIT, MAX - 18)
    # the batcher hands the estimate of the items that open a batch to its policy
    b = budgeted()
    feed(b, 10_000, 0.3)
    b.flush()
    assert b.add_many(range(18), now=0.302, first_arrived=0.302, first_arrived_est=0.3002) == []
    timed, rate = b.wait(0.302), b.rate.per_second(0.302)
    assert timed is not None
    floor = budget_policy().floor(rate, b.rate.clump)
    assert timed.until == pytest.approx(0.3002 + floor / rate, abs=1e-6)
    # a batch opened by later items of the same call: not known, about a clump
    b.flush()
    b.add_many(range(MAX + 3), now=0.303, first_arrived_est=0.3012)
    rest, rate = b.wait(0.303), b.rate.per_second(0.303)
    assert len(b) == 3 and rest is not None
    floor = budget_policy().floor(rate, b.rate.clump)
    assert rest.until == pytest.approx(0.303 + (floor + 1 - b.rate.clump) / rate, abs=1e-6)


def test_the_rate_counts_how_many_items_come_together() -> None:
    r = ArrivalRate(window=0.05)
    for k in range(200):
        r.note(6, now=k * 0.002)
    assert r.clump == pytest.approx(6.0, rel=0.01)
    policy = budget_policy()
    assert policy.floor(3_000, clump=6.0) > policy.floor(3_000), "the fixed batch is larger"


def test_budgeted_a_lone_reading_still_leaves_at_once() -> None:
    b = budgeted()
    assert b.add(1, now=0.0) == [1]
    for k in range(1, 50):
        assert b.add(k, now=k * 0.01) == [k]  # a trickle at 100/s


def test_budgeted_a_batch_below_the_floor_waits_for_its_time_or_its_floor() -> None:
    policy = budget_policy()
    floor = policy.floor(5_000)  # 20.2
    state = BatchState(size=10, opened_at=0.0, queued=0, rate=5_000)
    wait = policy.decide(state, now=TARGET)
    assert wait is not None and wait.items == MAX - 10, "unbudgeted: closes at TARGET"
    assert wait.until == pytest.approx(floor / 5_000)  # (floor + 1 - clump) / rate
    assert policy.decide(BatchState(21, 0.0, 0, 5_000), now=0.0025) is None, "floor reached"
    assert policy.decide(BatchState(12, 0.0, 0, 5_000), now=floor / 5_000) is None, "its time"
    clumped = BatchState(size=10, opened_at=0.0, queued=0, rate=5_000, clump=5.0)
    wait = policy.decide(clumped, now=TARGET)
    assert wait is not None
    assert wait.until == pytest.approx((policy.floor(5_000, 5.0) + 1 - 5) / 5_000)
    assert AdaptivePolicy(MAX, MAX_WAIT, TARGET).decide(state, now=TARGET) is None


# --- the rate --------------------------------------------------------------------------


def test_the_rate_follows_clumped_arrivals_and_decays_when_idle() -> None:
    r = ArrivalRate(window=0.05)
    for k in range(1, 501):
        r.note(10, now=k * 0.001)  # 10 per millisecond
    assert r.per_second(0.5) == pytest.approx(10_000, rel=0.05)
    assert r.per_second(0.5 + 0.5) < 1  # ten windows later
    r.note(3, now=0.5)  # arrivals noted late (clock not monotonic) count at the latest time
    assert r.per_second(0.5) > 10_000


# --- construction and invariants -------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: FixedPolicy(0, 1.0),
        lambda: FixedPolicy(1, -0.1),
        lambda: AdaptivePolicy(8, 0.001, target_wait=0.002),
        lambda: ArrivalRate(window=0),
    ],
)
def test_rejects_bad_parameters(build: object) -> None:
    with pytest.raises(ValueError, match="must be"):
        build()  # type: ignore[operator]


def test_make_policy_names_the_setting_values() -> None:
    assert make_policy("fixed", 8, 0.005) == FixedPolicy(8, 0.005)
    assert make_policy("adaptive", 8, 0.001, 0.002) == AdaptivePolicy(8, 0.001, 0.001)
    with pytest.raises(ValueError, match="unknown batch policy"):
        make_policy("eager", 8, 0.005)  # type: ignore[arg-type]


@given(
    st.sampled_from(["fixed", "adaptive"]),
    st.integers(1, 20),
    st.floats(0, 0.01),
    st.lists(
        st.tuples(st.floats(0, 0.01), st.integers(0, 30), st.integers(0, 100)),
        min_size=1,
        max_size=100,
    ),
)
def test_every_item_comes_out_once_in_order_within_limits(
    name: str, size: int, wait: float, steps: list[tuple[float, int, int]]
) -> None:
    b = Batcher[int](make_policy(name, size, wait, wait / 2))  # type: ignore[arg-type]
    out: list[list[int]] = []
    now, n = 0.0, 0
    for gap, count, queued in steps:
        now += gap
        if (due := b.wait(now, queued)) is not None:
            assert due.items <= size - len(b)
            if due.until <= now:
                out.append(b.poll(now, queued) or [])
        out.extend(b.add_many(range(n, n + count), now, queued))
        n += count
        if len(b):  # an open batch is never older than max_wait after a look at it
            assert b.wait(now) is not None
    if rest := b.flush():
        out.append(rest)
    assert [x for batch in out for x in batch] == list(range(n))
    assert all(1 <= len(batch) <= size for batch in out)
