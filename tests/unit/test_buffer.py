"""The bounded hand-over buffer between the MQTT thread and the worker."""

from __future__ import annotations

import threading
import time

import pytest

from inference_worker.buffer import BoundedBuffer


def test_fifo_and_bulk_take() -> None:
    buf = BoundedBuffer[int](10)
    for i in range(5):
        buf.put(i)
    assert buf.take(3, timeout=0) == [0, 1, 2]
    assert buf.take(10, timeout=0) == [3, 4]
    assert buf.take(10, timeout=0) == []


def test_take_waits_for_the_first_item() -> None:
    buf = BoundedBuffer[str](2)
    threading.Timer(0.05, buf.put, args=("x",)).start()
    started = time.monotonic()
    assert buf.take(5, timeout=2) == ["x"]
    assert time.monotonic() - started < 1.5


def test_take_times_out_empty() -> None:
    assert BoundedBuffer[int](1).take(1, timeout=0.01) == []


def test_full_buffer_blocks_the_producer_until_taken() -> None:
    buf = BoundedBuffer[int](2)
    buf.put(1)
    buf.put(2)
    waited: list[float] = []
    producer = threading.Thread(target=lambda: waited.append(buf.put(3)))
    producer.start()
    time.sleep(0.1)
    assert producer.is_alive(), "the producer waits while the buffer is full"
    assert len(buf) == 2
    assert buf.take(1, timeout=0) == [1]
    producer.join(2)
    assert not producer.is_alive()
    assert waited[0] >= 0.05
    assert buf.take(5, timeout=0) == [2, 3]


def test_rejects_zero_size() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        BoundedBuffer[int](0)


def test_close_releases_a_waiting_producer_and_drops_later_items() -> None:
    buf = BoundedBuffer[int](1)
    buf.put(1)
    producer = threading.Thread(target=buf.put, args=(2,))
    producer.start()
    time.sleep(0.05)
    buf.close()
    producer.join(2)
    assert not producer.is_alive()
    buf.put(3)
    assert buf.take(5, timeout=0) == [1]


def test_put_many_keeps_order_and_waits_until_all_fit() -> None:
    buf = BoundedBuffer[int](4)
    buf.put_many([1, 2, 3])
    waited: list[float] = []
    producer = threading.Thread(target=lambda: waited.append(buf.put_many([4, 5])))
    producer.start()
    time.sleep(0.1)
    assert producer.is_alive(), "3 + 2 > 4: waits, although the buffer is not full"
    assert buf.take(1, timeout=0) == [1]
    producer.join(2)
    assert not producer.is_alive()
    assert waited[0] >= 0.05
    assert buf.take(10, timeout=0) == [2, 3, 4, 5]


def test_put_many_longer_than_the_buffer_goes_in_once_it_is_empty() -> None:
    buf = BoundedBuffer[int](2)
    buf.put(0)
    producer = threading.Thread(target=buf.put_many, args=([1, 2, 3],))
    producer.start()
    time.sleep(0.05)
    assert len(buf) == 1
    assert buf.take(1, timeout=0) == [0]
    producer.join(2)
    assert buf.take(10, timeout=0) == [1, 2, 3]


def test_put_many_after_close_drops_the_items() -> None:
    buf = BoundedBuffer[int](2)
    buf.close()
    assert buf.put_many([1, 2]) == 0.0
    assert len(buf) == 0


def test_take_with_wait_for_sleeps_until_the_batch_is_there() -> None:
    buf = BoundedBuffer[int](100)
    got: list[list[int]] = []
    consumer = threading.Thread(target=lambda: got.append(buf.take(10, 5.0, wait_for=3)))
    consumer.start()
    buf.put(1)
    buf.put_many([2])
    time.sleep(0.1)
    assert consumer.is_alive(), "two of the three wanted items: still waiting"
    buf.put_many([3, 4])
    consumer.join(2)
    assert got == [[1, 2, 3, 4]]


def test_take_with_wait_for_returns_what_there_is_at_the_timeout() -> None:
    buf = BoundedBuffer[int](100)
    buf.put_many([1, 2])
    started = time.monotonic()
    assert buf.take(10, 0.1, wait_for=5) == [1, 2]
    assert time.monotonic() - started >= 0.09


def test_a_blocked_producer_releases_a_consumer_waiting_for_more() -> None:
    """wait_for beyond what can fit must not leave both sides waiting for each other."""
    buf = BoundedBuffer[int](4)
    buf.put_many([1, 2, 3])
    producer = threading.Thread(target=buf.put_many, args=([4, 5],))
    producer.start()
    time.sleep(0.05)
    started = time.monotonic()
    assert buf.take(10, 5.0, wait_for=4) == [1, 2, 3]
    assert time.monotonic() - started < 1
    producer.join(2)
    assert buf.take(10, 0) == [4, 5]


def test_first_within_a_lone_first_item_wakes_the_consumer_only_once_it_has_waited() -> None:
    buf = BoundedBuffer[int](100)
    got: list[tuple[list[int], float]] = []

    def consume() -> None:
        items = buf.take(10, 5.0, wait_for=10, first_within=0.3)
        got.append((items, time.monotonic()))

    consumer = threading.Thread(target=consume)
    consumer.start()
    time.sleep(0.02)
    put_at = time.monotonic()
    buf.put(1)
    time.sleep(0.1)
    assert consumer.is_alive(), "a first item alone does not wake the consumer"
    consumer.join(3)
    assert got and got[0][0] == [1]
    assert got[0][1] - put_at >= 0.29, "woken when the first item had waited first_within"


def test_first_within_a_full_batch_still_wakes_the_consumer_at_once() -> None:
    buf = BoundedBuffer[int](100)
    got: list[list[int]] = []
    consumer = threading.Thread(
        target=lambda: got.append(buf.take(10, 5.0, wait_for=3, first_within=5.0))
    )
    consumer.start()
    time.sleep(0.02)
    buf.put_many([1, 2, 3])
    consumer.join(2)
    assert got == [[1, 2, 3]]


def test_first_within_counts_from_the_oldest_item_already_there() -> None:
    buf = BoundedBuffer[int](100)
    buf.put(1)
    time.sleep(0.2)
    started = time.monotonic()
    assert buf.take(10, 5.0, wait_for=10, first_within=0.1) == [1]
    assert time.monotonic() - started < 0.05, "the item there had waited long enough"


def test_first_within_on_an_empty_buffer_returns_nothing_at_the_timeout() -> None:
    buf = BoundedBuffer[int](100)
    started = time.monotonic()
    assert buf.take(10, 0.1, wait_for=5, first_within=0.03) == []
    assert time.monotonic() - started >= 0.09
