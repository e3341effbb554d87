"""deploy/k8s/base: every manifest valid against the Kubernetes schemas (offline, with the
kubernetes-validate package), and the pieces wired to each other and to the service's
endpoints. No cluster runs here; docs/scaling.md says how to apply it to a real one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "k8s" / "base"
K8S_VERSION = "1.30.0"  # a maintained release; the manifests use only GA APIs


def _load() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(BASE.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            (doc,) = list(yaml.safe_load_all(path.read_text()))
            out[doc["kind"]] = doc
    return out


def test_kustomization_lists_every_manifest() -> None:
    kust = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    files = sorted(p.name for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kust["resources"]) == files
    assert kust["images"][0]["name"] == "gan-serve"


@pytest.mark.parametrize(
    "kind", ["Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"]
)
def test_manifest_is_valid_against_the_kubernetes_schema(kind: str) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    doc = _load()[kind]
    kv.validate(doc, K8S_VERSION, strict=True)  # raises on any schema violation


def test_the_validator_catches_a_broken_manifest() -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    broken = _load()["Deployment"]
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, K8S_VERSION, strict=True)


def test_deployment_is_safe_and_probes_the_service() -> None:
    dep = _load()["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    (api,) = pod["containers"]
    assert (
        pod["securityContext"]["runAsNonRoot"] is True
        and pod["securityContext"]["runAsUser"] == 10001
    )
    assert api["securityContext"]["readOnlyRootFilesystem"] is True
    assert api["securityContext"]["allowPrivilegeEscalation"] is False
    assert api["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert api["livenessProbe"]["httpGet"]["path"] == "/health"
    assert {"requests", "limits"} <= set(api["resources"])
    env = {e["name"]: e for e in api["env"]}
    assert env["GAN_CHECKPOINT"]["value"] == "/models/current"  # the model comes with the image
    assert env["GAN_API_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert int(pod["terminationGracePeriodSeconds"]) > int(env["GAN_GRACEFUL_SHUTDOWN_S"]["value"])
    mounts = {m["mountPath"] for m in api["volumeMounts"]}
    assert mounts == {"/tmp"}  # the only writable path on a read-only root


def test_service_pdb_autoscalers_select_the_deployment() -> None:
    docs = _load()
    dep = docs["Deployment"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"] == labels
    assert docs["Service"]["spec"]["selector"] == labels
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels
    assert (
        docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    )
    # KEDA's ScaledObject is a custom resource (no Kubernetes schema): check what it must say.
    keda = docs["ScaledObject"]
    assert keda["apiVersion"] == "keda.sh/v1alpha1"
    assert keda["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    (trigger,) = keda["spec"]["triggers"]
    assert trigger["type"] == "prometheus" and "gan_queue_depth" in trigger["metadata"]["query"]
    assert float(trigger["metadata"]["threshold"]) > 0
    # The queue-depth metric exists in the service under that name.
    assert "gan_queue_depth" in (ROOT / "service" / "metrics.py").read_text()
