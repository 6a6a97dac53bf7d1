"""The config templates in broker/ and their renderer."""

from __future__ import annotations

import pytest

from inference_worker.settings import WorkerSettings
from iot_contract import telemetry_topic
from iotstream.broker_tools import (
    BROKER_DIR,
    VARIABLES,
    Profile,
    TemplateError,
    placeholders,
    render,
    render_file,
)
from iotstream.broker_tools.templates import DEFAULT_MAX_PAYLOAD, PACKET_OVERHEAD, max_packet_size

EDGE_REQUIRED = {"central_host": "central.example.com", "bridge_password": "s3cret"}


def _directives(text: str) -> list[list[str]]:
    return [ln.split() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def test_every_placeholder_is_a_known_variable_and_every_variable_is_used() -> None:
    used: set[str] = set()
    for profile in Profile:
        names = placeholders((BROKER_DIR / profile.filename).read_text())
        assert set(names) <= {*VARIABLES, "max_packet_size"}, profile  # derived
        used |= set(names)
    assert used == {*VARIABLES, "max_packet_size"}


@pytest.mark.parametrize("profile", list(Profile))
def test_each_profile_renders_with_defaults(profile: Profile) -> None:
    text = render_file(profile, EDGE_REQUIRED if profile is Profile.EDGE else None)
    assert "{{" not in text and "}}" not in text
    assert ["persistence", "true"] in _directives(text)


def test_production_has_no_anonymous_and_explicit_listener_addresses() -> None:
    lines = _directives(render_file(Profile.PRODUCTION))
    assert ["allow_anonymous", "false"] in lines
    listeners = [ln for ln in lines if ln[0] == "listener"]
    assert len(listeners) == 3 and all(len(ln) == 3 for ln in listeners)
    assert ["protocol", "websockets"] in lines
    assert ["require_certificate", "true"] in lines
    assert {"password_file", "plugin", "plugin_opt_config_file"} <= {ln[0] for ln in lines}
    assert "acl_file" not in {ln[0] for ln in lines}  # it grants every SUBSCRIBE on 2.0.11


def test_dev_listens_on_loopback_only() -> None:
    lines = _directives(render_file(Profile.DEV))
    listeners = [ln for ln in lines if ln[0] == "listener"]
    assert listeners and all(ln[2] == "127.0.0.1" for ln in listeners)


def test_edge_bridges_telemetry_up_and_inference_down() -> None:
    lines = _directives(render_file(Profile.EDGE, EDGE_REQUIRED))
    topics = {" ".join(ln[1:]) for ln in lines if ln[0] == "topic"}
    assert topics == {
        "devices/+/telemetry out 1",
        "devices/+/status out 1",
        "devices/+/inference in 1",
    }
    assert ["address", "central.example.com:8883"] in lines
    assert ["cleansession", "false"] in lines


def test_missing_unknown_and_unsafe_values_are_refused() -> None:
    with pytest.raises(TemplateError, match="central_host"):
        render_file(Profile.EDGE, {"bridge_password": "x"})
    with pytest.raises(TemplateError, match="unknown"):
        render_file(Profile.DEV, {"mqtt_prot": 1})
    for unsafe in ("1883\nallow_anonymous true", "x # y", "{{mqtt_port}}", ""):
        with pytest.raises(TemplateError, match="unsafe"):
            render("listener {{mqtt_port}}", {"mqtt_port": unsafe})


@pytest.mark.parametrize("profile", list(Profile))
def test_broker_packet_limit_follows_the_workers_payload_limit(profile: Profile) -> None:
    """One setting: the broker passes every payload the workers accept, defaults agree."""
    extra = EDGE_REQUIRED if profile is Profile.EDGE else {}
    assert WorkerSettings.model_fields["max_payload"].default == DEFAULT_MAX_PAYLOAD
    assert VARIABLES["max_payload"].default == str(DEFAULT_MAX_PAYLOAD)
    lines = _directives(render_file(profile, extra))
    assert ["max_packet_size", str(DEFAULT_MAX_PAYLOAD + PACKET_OVERHEAD)] in lines
    lines = _directives(render_file(profile, {**extra, "max_payload": 1000}))
    assert ["max_packet_size", "2024"] in lines
    with pytest.raises(TemplateError, match="max_payload"):
        render_file(profile, {**extra, "max_payload": "64k"})


def test_packet_overhead_covers_the_largest_telemetry_topic() -> None:
    # fixed header 5 + topic length 2 + topic + packet id 2 + v5 properties length 4
    topic = telemetry_topic("x" * 64)
    assert 5 + 2 + len(topic) + 2 + 4 < PACKET_OVERHEAD // 2  # half is left for properties
    assert max_packet_size(10) == 10 + PACKET_OVERHEAD
