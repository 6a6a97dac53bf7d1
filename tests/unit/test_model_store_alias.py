"""Alias documents and their transitions (pure), and the store factory's choice by URL."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from iot_models.store import Alias, Canary, StoreError, open_store
from iot_models.store.alias import promote, rollback, set_version, start_canary
from iot_models.store.base import alias_key, version_key
from iot_models.store.file import FileModelStore


def doc(version: str = "1", **kw: object) -> Alias:
    return Alias.model_validate({"model": "m", "alias": "production", "version": version, **kw})


def test_set_version_creates_then_remembers_the_previous_version() -> None:
    first = set_version(None, "m", "production", "1", at=1.0, by="a")
    assert (first.version, first.previous, first.updated_by) == ("1", None, "a")
    second = set_version(first, "m", "production", "2", at=2.0, by="b")
    assert (second.version, second.previous, second.updated_at) == ("2", "1", 2.0)
    again = set_version(second, "m", "production", "2", at=3.0, by="b")
    assert again.previous == "1", "re-setting the same version keeps the rollback target"


def test_set_version_drops_a_canary() -> None:
    with_canary = doc(canary={"version": "2", "percent": 10})
    assert set_version(with_canary, "m", "production", "3", at=1, by="x").canary is None


def test_canary_then_promote_then_rollback() -> None:
    canary = start_canary(doc("1"), Canary(version="2", percent=5), at=1.0, by="x")
    assert canary.versions() == ("1", "2")
    promoted = promote(canary, at=2.0, by="x")
    assert (promoted.version, promoted.previous, promoted.canary) == ("2", "1", None)
    back = rollback(promoted, at=3.0, by="x")
    assert (back.version, back.previous) == ("1", "2")


def test_rollback_with_a_canary_only_drops_the_canary() -> None:
    canary = start_canary(doc("1", previous="0"), Canary(version="2", percent=5), at=1, by="x")
    dropped = rollback(canary, at=2.0, by="x")
    assert (dropped.version, dropped.previous, dropped.canary) == ("1", "0", None)


def test_transitions_refuse_what_makes_no_sense() -> None:
    with pytest.raises(ValueError, match="no canary to promote"):
        promote(doc("1"), at=1, by="x")
    with pytest.raises(ValueError, match="no previous version"):
        rollback(doc("1"), at=1, by="x")
    with pytest.raises(ValidationError, match="own version"):
        start_canary(doc("1"), Canary(version="1", percent=5), at=1, by="x")
    with pytest.raises(ValidationError):
        Canary(version="2", percent=100.5)
    with pytest.raises(ValidationError):
        doc("1", alias="Prod uction")


def test_describe_is_one_line() -> None:
    text = doc("1", canary={"version": "2", "percent": 2.5, "devices": ["lab-*"]}).describe()
    assert text == "m@production -> 1, canary 2 for 2.5% + 'lab-*'"


def test_routing_ignores_bookkeeping() -> None:
    assert doc("1", updated_at=1.0).routing() == doc("1", updated_at=9.0, updated_by="y").routing()
    assert doc("1").routing() != doc("1", canary={"version": "2", "percent": 1}).routing()


def test_layout_and_version_order() -> None:
    assert alias_key("fault-clf", "production") == "_aliases/fault-clf/production.json"
    assert sorted(["10", "9", "2.1", "2.10", "2.2"], key=version_key) == [
        "2.1",
        "2.2",
        "2.10",
        "9",
        "10",
    ]


@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("file:///srv/models", Path("/srv/models")),
        ("file://localhost/srv/m%20x", Path("/srv/m x")),
        ("relative/models", Path("relative/models")),
        ("/abs/models", Path("/abs/models")),
    ],
)
def test_the_factory_opens_file_stores_by_scheme(url: str, root: Path) -> None:
    store = open_store(url)
    assert isinstance(store, FileModelStore)
    assert store.root == root


def test_the_factory_opens_s3_and_refuses_the_rest() -> None:
    store = open_store("s3://bucket/some/prefix?endpoint=http://127.0.0.1:9")
    assert store.url == "s3://bucket/some/prefix/ (endpoint http://127.0.0.1:9)"
    store.close()
    with pytest.raises(StoreError, match="names no bucket"):
        open_store("s3:///prefix")
    with pytest.raises(StoreError, match="unknown model store"):
        open_store("gs://bucket/models")
    with pytest.raises(StoreError, match="local path"):
        open_store("file://otherhost/models")
