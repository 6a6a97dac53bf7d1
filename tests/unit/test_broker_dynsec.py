"""The dynamic security roles and file: what each account may subscribe to, publish, read."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from iotstream.broker_tools.dynsec import (
    DEFAULT_ACL_ACCESS,
    SERVICE_ROLES,
    DynsecFile,
    device_role,
    role_name,
)


def _acls(acls: list[dict[str, object]], kind: str) -> set[object]:
    return {a["topic"] for a in acls if a["acltype"] == kind and a["allow"]}


def test_nothing_is_allowed_by_default_but_unsubscribing() -> None:
    assert DEFAULT_ACL_ACCESS == {
        "publishClientSend": False,
        "publishClientReceive": False,
        "subscribe": False,
        "unsubscribe": True,
    }


def test_a_device_subscribes_only_to_its_own_inference_topic_literally() -> None:
    role = device_role("pump-7")
    assert role["rolename"] == "device:pump-7"
    assert _acls(role["acls"], "subscribeLiteral") == {"devices/pump-7/inference"}
    assert _acls(role["acls"], "subscribePattern") == set()
    assert _acls(role["acls"], "publishClientReceive") == {"devices/pump-7/inference"}
    assert _acls(role["acls"], "publishClientSend") == {
        "devices/pump-7/telemetry",
        "devices/pump-7/status",
    }


def test_only_workers_may_take_the_shared_subscription() -> None:
    shared = {
        name
        for name, acls in SERVICE_ROLES.items()
        if any(str(t).startswith("$share/") for t in _acls(acls, "subscribePattern"))
    }
    assert shared == {"worker"}
    assert "$share/+/devices/+/telemetry" in _acls(SERVICE_ROLES["worker"], "subscribePattern")
    assert _acls(SERVICE_ROLES["worker"], "publishClientSend") == {"devices/+/inference"}
    assert _acls(SERVICE_ROLES["bridge"], "subscribePattern") == {"devices/+/inference"}


def test_the_ingest_only_receives_telemetry_without_a_share() -> None:
    """``iotstream ingest`` subscribes to devices/+/telemetry (not shared) and does nothing
    else: no status, no $share group, no publishing."""
    ingest = SERVICE_ROLES["ingest"]
    assert _acls(ingest, "subscribePattern") == {"devices/+/telemetry"}
    assert _acls(ingest, "publishClientReceive") == {"devices/+/telemetry"}
    assert _acls(ingest, "publishClientSend") == set()
    assert _acls(ingest, "subscribeLiteral") == set()


def test_role_names() -> None:
    assert [role_name(u) for u in ("worker", "ingest", "admin", "bridge-site1", "pump-7")] == [
        "worker",
        "ingest",
        "admin",
        "bridge",
        "device:pump-7",
    ]


def test_file_grants_withdraws_and_keeps_what_it_does_not_know(tmp_path: Path) -> None:
    path = tmp_path / "dynamic-security.json"
    rights = DynsecFile(path)
    for user in ("pump-1", "pump-2", "worker"):
        rights.grant(user)
    rights.save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = json.loads(path.read_text())
    assert all("password" not in client for client in raw["clients"])  # password_file's job
    raw["groups"].append({"groupname": "added-by-mosquitto_ctrl", "roles": []})
    path.write_text(json.dumps(raw))

    again = DynsecFile(path)
    assert again.users == ["pump-1", "pump-2", "worker"]
    assert again.roles_of("pump-1") == ["device:pump-1"]
    again.grant("pump-1")  # granting twice leaves one client and one role
    again.withdraw("pump-2")
    again.withdraw("nobody")
    again.save()
    final = DynsecFile(path)
    assert final.users == ["worker", "pump-1"]
    assert final.role("device:pump-2") is None
    assert [r["rolename"] for r in final.config["roles"]].count("device:pump-1") == 1
    assert final.config["groups"] == [{"groupname": "added-by-mosquitto_ctrl", "roles": []}]
