"""Kubernetes manifests, validated against the Kubernetes JSON schemas (kubernetes-validate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tollway.config.loader import load_config

from .helpers import DEPLOY, load_yaml, load_yaml_documents

K8S = DEPLOY / "kubernetes"
KUBERNETES_VERSION = "1.30.0"


def manifests() -> dict[str, dict[str, Any]]:
    """Every resource listed by the kustomization, keyed by kind."""
    kustomization = load_yaml(K8S / "kustomization.yaml")
    resources: dict[str, dict[str, Any]] = {}
    for name in kustomization["resources"]:
        for doc in load_yaml_documents(K8S / name):
            resources[doc["kind"]] = doc
    return resources


@pytest.mark.parametrize("path", sorted(K8S.glob("*.yaml")), ids=lambda p: p.name)
def test_manifest_is_valid_against_the_schemas(path: Path) -> None:
    for doc in load_yaml_documents(path):
        if doc["kind"] == "Kustomization":
            continue
        # strict: unknown fields (typos) are errors too
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_every_manifest_is_part_of_the_kustomization() -> None:
    listed = set(load_yaml(K8S / "kustomization.yaml")["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(manifests()) == {
        "Secret",
        "ConfigMap",
        "Job",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
    }


def test_validation_catches_a_broken_probe() -> None:
    deployment = manifests()["Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGet"]["pathh"] = "/-/ready"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_probes_use_ready_and_health_on_the_served_port() -> None:
    spec = manifests()["Deployment"]["spec"]
    container = spec["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/health"
    port = container["ports"][0]
    assert port["containerPort"] == int(env["TOLLWAY_PORT"])
    assert container["readinessProbe"]["httpGet"]["port"] == port["name"]
    assert env["TOLLWAY_MIGRATE"] == "false"
    assert spec["replicas"] >= 2
    # Longer than the gateway's own graceful shutdown (30 s) plus the preStop pause.
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] > 30 + 5


def test_secret_feeds_the_store_redis_and_secret_key() -> None:
    resources = manifests()
    secret = resources["Secret"]
    assert set(secret["stringData"]) == {
        "TOLLWAY_SECRET_KEY",
        "TOLLWAY_DATABASE_URL",
        "TOLLWAY_REDIS_URL",
    }
    for kind in ("Deployment", "Job"):
        container = resources[kind]["spec"]["template"]["spec"]["containers"][0]
        assert container["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]


def test_service_and_hpa_target_the_deployment() -> None:
    resources = manifests()
    labels = resources["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert resources["Service"]["spec"]["selector"].items() <= labels.items()
    target = resources["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "tollway")


def test_configmap_holds_a_valid_tollway_yaml_that_the_job_applies() -> None:
    resources = manifests()
    text = resources["ConfigMap"]["data"]["tollway.yaml"]
    config = load_config(text, source="configmap", env={})
    assert config.apis["names"].path == "/names"
    pod = resources["Job"]["spec"]["template"]["spec"]
    mount = pod["containers"][0]["volumeMounts"][0]
    assert pod["volumes"][0]["configMap"]["name"] == resources["ConfigMap"]["metadata"]["name"]
    assert f"tollway apply -f {mount['mountPath']}/tollway.yaml" in pod["containers"][0]["args"][-1]
