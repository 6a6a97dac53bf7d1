"""The model store's contract, run against both implementations: the file store in a
temporary folder and the S3 store on a real S3 server (moto's, as a process on loopback).

Publish is atomic and never overwrites; aliases change as a whole, conditionally on what
the writer read; errors say what to do.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.swap_bench import copy_as_version
from iot_models.manifest import MANIFEST_FILE, HashMismatchError, sha256_bytes
from iot_models.store import (
    Alias,
    AliasConflictError,
    AliasNotFoundError,
    Canary,
    ModelStore,
    PublishError,
    StoreAuthError,
    StoreError,
    StoreNotFoundError,
    StoreUnavailableError,
    VersionExistsError,
    VersionNotFoundError,
    open_store,
)
from iot_models.store.alias import set_version
from iot_models.store.ops import change_alias
from iotstream.localservices import free_port
from tests.harness.s3 import s3_store_url

pytestmark = pytest.mark.integration


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ModelStore]:
    """An empty store of each kind."""
    if request.param == "file":
        opened = open_store(f"file://{tmp_path / 'store'}")
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        opened = open_store(s3_store_url(endpoint))
    opened.ensure()
    yield opened
    opened.close()


@pytest.fixture
def builds(tmp_path: Path) -> Path:
    """Version folders 1, 2 and 3 of fault-clf to publish."""
    root = tmp_path / "builds"
    for version in ("1", "2", "3"):
        copy_as_version(root, version)
    return root


def alias(version: str, canary: Canary | None = None, name: str = "production") -> Alias:
    return Alias(model="fault-clf", alias=name, version=version, canary=canary)


def test_publish_lists_and_downloads_a_version_byte_for_byte(
    store: ModelStore, builds: Path, tmp_path: Path
) -> None:
    assert store.models() == []
    published = store.publish(builds / "fault-clf" / "2")
    store.publish(builds / "fault-clf" / "1")
    assert published.version == "2"
    assert store.models() == ["fault-clf"]
    assert store.versions("fault-clf") == ["1", "2"]
    assert store.manifest("fault-clf", "2") == published
    dest = tmp_path / "down"
    store.download("fault-clf", "2", dest, ["fp32"])
    assert sorted(p.name for p in dest.iterdir()) == ["fp32.onnx", MANIFEST_FILE]
    entry = published.variants["fp32"]
    assert sha256_bytes((dest / "fp32.onnx").read_bytes()) == entry.sha256


def test_publish_never_overwrites(store: ModelStore, builds: Path) -> None:
    store.publish(builds / "fault-clf" / "2")
    changed = builds / "fault-clf" / "2"
    manifest = json.loads((changed / MANIFEST_FILE).read_text())
    manifest["description"] = "another build"
    (changed / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(VersionExistsError, match="never overwritten"):
        store.publish(changed)
    assert store.manifest("fault-clf", "2").description != "another build"


def test_two_publishers_of_one_version_one_wins(store: ModelStore, builds: Path) -> None:
    outcomes: list[str] = []

    def publish() -> None:
        try:
            store.publish(builds / "fault-clf" / "3")
            outcomes.append("published")
        except VersionExistsError:
            outcomes.append("exists")

    threads = [threading.Thread(target=publish) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["exists", "exists", "exists", "published"]
    assert store.versions("fault-clf") == ["3"]


def test_an_incomplete_or_tampered_folder_is_not_published(store: ModelStore, builds: Path) -> None:
    folder = builds / "fault-clf" / "2"
    (folder / "int8-arm64.onnx").write_bytes(b"not the built file")
    with pytest.raises(PublishError, match="differs from its manifest"):
        store.publish(folder)
    (folder / "int8-arm64.onnx").unlink()
    with pytest.raises(PublishError, match="missing"):
        store.publish(folder)
    with pytest.raises(PublishError, match=MANIFEST_FILE):
        store.publish(builds)
    assert store.versions("fault-clf") == []


def test_alias_create_read_poll_and_conditional_replace(store: ModelStore, builds: Path) -> None:
    store.publish(builds / "fault-clf" / "1")
    store.publish(builds / "fault-clf" / "2")
    with pytest.raises(AliasNotFoundError, match="alias fault-clf production VERSION"):
        store.read_alias("fault-clf", "production")
    token = store.write_alias(alias("1"), None)
    state = store.read_alias("fault-clf", "production")
    assert state.alias == alias("1")
    assert state.token == token
    assert store.poll_alias("fault-clf", "production", token) is None, "unchanged: nothing"
    with pytest.raises(AliasConflictError):
        store.write_alias(alias("2"), None)  # create, but it exists
    new_token = store.write_alias(alias("2", Canary(version="1", percent=5)), token)
    with pytest.raises(AliasConflictError, match="read it again"):
        store.write_alias(alias("1"), token)  # a stale token loses
    polled = store.poll_alias("fault-clf", "production", token)
    assert polled is not None
    assert polled.token == new_token
    assert polled.alias.canary == Canary(version="1", percent=5)
    assert store.aliases("fault-clf") == ["production"]


def test_an_alias_names_published_versions_only(store: ModelStore, builds: Path) -> None:
    store.publish(builds / "fault-clf" / "1")
    with pytest.raises(VersionNotFoundError, match=r"published: 1\)"):
        store.write_alias(alias("9"), None)
    with pytest.raises(VersionNotFoundError):
        store.write_alias(alias("1", Canary(version="9", percent=1)), None)


def test_concurrent_alias_changes_are_serialised_not_lost(store: ModelStore, builds: Path) -> None:
    for v in ("1", "2", "3"):
        store.publish(builds / "fault-clf" / v)
    store.write_alias(alias("1"), None)
    # each writer adds its device glob to the canary: a lost update would drop one
    errors: list[Exception] = []

    def add(glob: str) -> None:
        def transition(current: Alias | None) -> Alias:
            assert current is not None
            devices = current.canary.devices if current.canary else ()
            return current.model_copy(
                update={"canary": Canary(version="2", devices=(*devices, glob))}
            )

        try:
            change_alias(store, "fault-clf", "production", transition, attempts=20)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(f"dev-{i}",)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    canary = store.read_alias("fault-clf", "production").alias.canary
    assert canary is not None
    assert sorted(canary.devices) == [f"dev-{i}" for i in range(5)]


def test_change_alias_keeps_the_previous_version(store: ModelStore, builds: Path) -> None:
    store.publish(builds / "fault-clf" / "1")
    store.publish(builds / "fault-clf" / "2")
    for version in ("1", "2"):

        def point(current: Alias | None, version: str = version) -> Alias:
            return set_version(current, "fault-clf", "production", version, at=1.0, by="t")

        change_alias(store, "fault-clf", "production", point)
    doc = store.read_alias("fault-clf", "production").alias
    assert (doc.version, doc.previous) == ("2", "1")


def test_a_corrupt_stored_file_is_refused_on_download(
    store: ModelStore, builds: Path, tmp_path: Path
) -> None:
    store.publish(builds / "fault-clf" / "1")
    if store.url.startswith("file://"):
        (tmp_path / "store" / "fault-clf" / "1" / "fp32.onnx").write_bytes(b"bit rot")
    else:
        s3 = store._client  # type: ignore[attr-defined]  # the test plays the bit rot
        s3.put_object(Bucket=store.bucket, Key=f"{store.prefix}fault-clf/1/fp32.onnx", Body=b"x")  # type: ignore[attr-defined]
    with pytest.raises(HashMismatchError, match="corrupt"):
        store.download("fault-clf", "1", tmp_path / "dl", ["fp32"])


def test_missing_store_says_how_to_create_it(tmp_path: Path, s3_endpoint: str) -> None:
    with pytest.raises(StoreNotFoundError, match="publish a version"):
        open_store(tmp_path / "nothing").versions("fault-clf")
    with pytest.raises(StoreNotFoundError, match="iotstream models init"):
        open_store(s3_store_url(s3_endpoint)).versions("fault-clf")


def test_unreachable_endpoint_is_unavailable_not_a_hang() -> None:
    store = open_store(f"s3://b/p?endpoint=http://127.0.0.1:{free_port()}", timeout=0.5)
    with pytest.raises(StoreUnavailableError, match="cannot reach"):
        store.read_alias("fault-clf", "production")


def test_missing_credentials_are_named(monkeypatch: pytest.MonkeyPatch, s3_endpoint: str) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StoreAuthError, match="AWS_ACCESS_KEY_ID"):
        open_store(s3_store_url(s3_endpoint)).versions("fault-clf")


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(StoreError, match="s3://bucket/prefix"):
        open_store("ftp://host/models")


def test_the_repository_models_folder_is_a_file_store(tmp_path: Path) -> None:
    root = tmp_path / "models"
    shutil.copytree(Path(__file__).resolve().parents[2] / "models", root)
    store = open_store(root)
    assert store.models() == ["fault-clf", "fault-clf-large", "vib-ae"]
    assert store.versions("vib-ae") == ["1"]
