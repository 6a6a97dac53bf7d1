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
