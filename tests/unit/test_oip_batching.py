"""The dynamic batcher for request/response inference (gateway.oip.batching, on the
workers' iot_batching cut policies): batches form from concurrent requests, every caller
gets its own rows, the queue bound refuses the newcomer, errors reach every caller. No
sleeps: batches close on size or a zero wait."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from gateway.oip.batching import RequestBatcher, RequestResult
from gateway.oip.errors import OverloadedError
from iot_batching import AdaptivePolicy, FixedPolicy
from iot_contract import ContractError, Reading, RejectReason
from iot_models.core import BatchResult


def reading(value: float, seq: int = 0) -> Reading:
    return Reading(device_id="d", seq=seq, ts=0.0, features=[value])


class EchoScorer:
    """Scores a batch by echoing each reading's first feature; negative ones are refused."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.gate: anyio.Event | None = None

    async def __call__(self, readings: Sequence[Reading]) -> BatchResult:
        self.batches.append(len(readings))
        if self.gate is not None:
            await self.gate.wait()
        result = BatchResult()
        for i, r in enumerate(readings):
            if r.features[0] < 0:
                result.rejected.append((i, ContractError(RejectReason.OUT_OF_RANGE, "neg")))
            else:
                result.indices.append(i)
                result.records.append({"device_id": r.device_id, "score": r.features[0]})
        return result


def run_requests(
    batcher: RequestBatcher, requests: list[list[Reading]]
) -> list[RequestResult | Exception]:
    results: list[RequestResult | Exception] = [RuntimeError("unanswered")] * len(requests)

    async def one(k: int) -> None:
        try:
            results[k] = await batcher.infer(requests[k])
        except Exception as exc:
            results[k] = exc

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(batcher.run)
            async with anyio.create_task_group() as callers:
                for k in range(len(requests)):
                    callers.start_soon(one, k)
            tg.cancel_scope.cancel()

    anyio.run(main)
    return results


def test_concurrent_requests_share_batches_and_get_their_own_rows() -> None:
    scorer = EchoScorer()
    seen: list[tuple[int, int]] = []
    batcher = RequestBatcher(
        scorer,
        policy=FixedPolicy(4, 60.0),
        max_queue=100,
        on_batch=lambda n, rows: seen.append((n, rows)),
    )
    requests = [[reading(float(k))] for k in range(7)] + [[reading(7.0), reading(-1.0, 1)]]
    results = run_requests(batcher, requests)
    assert scorer.batches == [4, 5] and seen == [(4, 4), (4, 5)]
    for k, result in enumerate(results[:7]):
        assert isinstance(result, RequestResult)
        assert result.indices == [0] and result.records[0]["score"] == float(k)
        assert result.batch_requests == 4
    last = results[7]
    assert isinstance(last, RequestResult)
    assert last.indices == [0] and last.records[0]["score"] == 7.0
    assert [(i, e.reason) for i, e in last.rejected] == [(1, RejectReason.OUT_OF_RANGE)]


def test_a_lone_request_goes_out_when_its_wait_is_over() -> None:
    scorer = EchoScorer()
    batcher = RequestBatcher(scorer, policy=FixedPolicy(64, 0.0), max_queue=10)
    (result,) = run_requests(batcher, [[reading(3.0)]])
    assert isinstance(result, RequestResult) and result.records[0]["score"] == 3.0
    assert scorer.batches == [1]


def test_batching_off_scores_every_request_alone() -> None:
    scorer = EchoScorer()
    batcher = RequestBatcher(scorer, policy=FixedPolicy(1, 60.0), max_queue=10)
    run_requests(batcher, [[reading(float(k))] for k in range(5)])
    assert scorer.batches == [1, 1, 1, 1, 1]


def test_a_full_queue_refuses_the_newcomer() -> None:
    scorer = EchoScorer()
    scorer.gate = anyio.Event()
    batcher = RequestBatcher(scorer, policy=FixedPolicy(1, 60.0), max_queue=2)
    outcome: dict[str, object] = {}

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(batcher.run)

            async def call(name: str) -> None:
                outcome[name] = await batcher.infer([reading(1.0)])

            tg.start_soon(call, "a")
            tg.start_soon(call, "b")
            while batcher.pending < 2:
                await anyio.lowlevel.checkpoint()
            with pytest.raises(OverloadedError, match="queue full"):
                await batcher.infer([reading(2.0)])
            assert scorer.gate is not None
            scorer.gate.set()
            while len(outcome) < 2:
                await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()

    anyio.run(main)
    assert batcher.pending == 0 and len(outcome) == 2


def test_a_failing_scorer_fails_every_caller_of_the_batch() -> None:
    async def broken(readings: Sequence[Reading]) -> BatchResult:
        raise RuntimeError("onnxruntime exploded")

    batcher = RequestBatcher(broken, policy=FixedPolicy(3, 60.0), max_queue=10)
    results = run_requests(batcher, [[reading(1.0)], [reading(2.0)], [reading(3.0)]])
    assert all(isinstance(r, RuntimeError) and "exploded" in str(r) for r in results)


def test_the_adaptive_policy_sends_a_lone_request_without_waiting_out_max_wait() -> None:
    scorer = EchoScorer()
    batcher = RequestBatcher(scorer, policy=AdaptivePolicy(64, 60.0, 0.0), max_queue=10)
    (result,) = run_requests(batcher, [[reading(5.0)]])
    assert isinstance(result, RequestResult) and result.records[0]["score"] == 5.0
