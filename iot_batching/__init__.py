"""iot_batching: when to close a micro-batch. Pure (no I/O, no clock of its own), so one
policy serves every batching path: the streaming workers' run loop and request batching
in a service (an asyncio handler passes its own clock and queue length).

:class:`Batcher` collects items and asks a :class:`CutPolicy` when to close: the fixed
deadline (:class:`FixedPolicy`) or the one that follows the arrival rate
(:class:`AdaptivePolicy`, fed by :class:`ArrivalRate`).
"""

from iot_batching.batcher import Batcher
from iot_batching.policy import (
    AdaptivePolicy,
    BatchState,
    CutPolicy,
    FixedPolicy,
    Wait,
    make_policy,
)
from iot_batching.rate import ArrivalRate

__all__ = [
    "AdaptivePolicy",
    "ArrivalRate",
    "BatchState",
    "Batcher",
    "CutPolicy",
    "FixedPolicy",
    "Wait",
    "make_policy",
]
