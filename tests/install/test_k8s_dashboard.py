"""deploy/k8s/components/dashboard: renders on both overlays, passes the Kubernetes schemas, runs as the
read-only Redis user with its token from a Secret, and that user's rules grant reads only."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_k8s import K8S, MIN_K8S, _with_component, one

WRITES = {"xadd", "xdel", "xtrim", "xack", "xclaim", "xautoclaim", "xreadgroup", "xgroup", "xsetid", "del", "unlink",
          "set", "hset", "hdel", "expire", "eval", "evalsha", "fcall", "function", "flushall", "flushdb", "config",
          "acl", "@write", "@all", "@admin", "@dangerous", "@scripting"}


def rules(user: str) -> list[str]:
    text = (K8S / "base" / "redis" / "acl" / f"{user}.rules").read_text()
    return " ".join(line for line in text.splitlines() if not line.lstrip().startswith("#")).split()


@pytest.mark.parametrize("overlay", ["cpu", "gpu"], ids=["cpu-overlay", "gpu-overlay"])  # not bare "gpu" (skipped)
def test_dashboard_component(tmp_path: Path, overlay: str):
    import kubernetes_validate

    docs = _with_component(tmp_path, "dashboard", overlay)
    deploy = one(docs, "Deployment", "moodstream-dashboard")
    service = one(docs, "Service", "moodstream-dashboard")
    for d in (deploy, service, one(docs, "Secret", "moodstream-dashboard")):
        assert d["metadata"]["namespace"] == "moodstream"
        kubernetes_validate.validate(d, MIN_K8S, strict=True)
    pod = deploy["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["args"][0] == "dashboard" and "0.0.0.0" in c["args"]
    env = {e["name"]: e for e in c["env"]}
    assert env["MOODSTREAM_DASHBOARD_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "moodstream-dashboard"
    password = env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password["name"] == "moodstream-redis" and password["key"] == "moodstream-dashboard"
    assert "moodstream-dashboard" in one(docs, "Secret", "moodstream-redis")["stringData"]
    assert env["MOODSTREAM_REDIS_URL"]["value"].startswith("redis://moodstream-dashboard:$(REDIS_PASSWORD)@")
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= deploy["spec"]["template"]["metadata"]["labels"].items()
    assert c["securityContext"]["readOnlyRootFilesystem"] and pod["securityContext"]["runAsNonRoot"]


def test_the_dashboard_user_only_reads():
    tokens = rules("moodstream-dashboard")
    keys = [t for t in tokens if "~" in t]
    assert keys and all(t.startswith("%R~moodstream:") for t in keys), keys
    granted = {t[1:].split("|")[0].lower() for t in tokens if t.startswith("+")}
    assert granted and not granted & WRITES, granted & WRITES
