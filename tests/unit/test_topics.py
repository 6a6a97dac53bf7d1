"""Topic builders and parsers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iot_contract import ContractError, RejectReason, TopicKind, topics

device_ids = st.from_regex(r"\A[A-Za-z0-9_.-]{1,64}\Z")


@given(device_ids, st.sampled_from(list(TopicKind)))
def test_every_device_topic_parses_back_to_its_parts(device_id: str, kind: TopicKind) -> None:
    build = {
        TopicKind.TELEMETRY: topics.telemetry_topic,
        TopicKind.STATUS: topics.status_topic,
        TopicKind.INFERENCE: topics.inference_topic,
    }[kind]
    topic = build(device_id)
    assert topic.count("/") == 2
    assert topics.parse_device_topic(topic) == (device_id, kind)


@pytest.mark.parametrize("bad", ["", "a/b", "+", "#", "x" * 65, "dev ice", "dév", "a\x00b", "$SYS"])
def test_invalid_device_ids_are_refused(bad: str) -> None:
    with pytest.raises(ContractError) as info:
        topics.telemetry_topic(bad)
    assert info.value.reason is RejectReason.BAD_TOPIC
    assert "one topic level" in info.value.detail


def test_validate_device_id_returns_valid_id() -> None:
    assert topics.validate_device_id("pump-7.a_b") == "pump-7.a_b"


@pytest.mark.parametrize(
    "topic",
    [
        "devices/d1",
        "devices/d1/telemetry/extra",
        "sensors/d1/telemetry",
        "devices/d1/firmware",
        "devices/+/telemetry",
        "$share/workers/devices/d1/telemetry",
        "devices//telemetry",
    ],
)
def test_non_contract_topics_are_refused(topic: str) -> None:
    with pytest.raises(ContractError) as info:
        topics.parse_device_topic(topic)
    assert info.value.reason is RejectReason.BAD_TOPIC


def test_shared_subscription_wraps_the_telemetry_filter() -> None:
    assert topics.telemetry_filter() == "devices/+/telemetry"
    assert topics.shared_subscription("workers") == "$share/workers/devices/+/telemetry"
    assert topics.shared_subscription("g1", "devices/+/status") == "$share/g1/devices/+/status"


@pytest.mark.parametrize("group", ["", "a/b", "+", "#", "x" * 65])
def test_shared_subscription_refuses_bad_group(group: str) -> None:
    with pytest.raises(ContractError, match="share group"):
        topics.shared_subscription(group)
