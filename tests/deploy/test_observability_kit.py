"""The operators' kit of issue 12 (item 5): Prometheus scrape configs, the Grafana dashboard,
compose's Prometheus and Grafana, Kubernetes scrape annotations, and docs/observability.md,
checked against a real gateway's ``/-/metrics``, promtool and a real Prometheus."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from tests.conftest import require_tool
from tests.servers import free_port, serve_gateway
from tollway.settings import Settings
from tollway.site.compose import create_gateway

from ..gateway.conftest import BASE_CONFIG, SECRET, apply, over_sockets
from .helpers import DEPLOY, REPO, load_yaml, load_yaml_documents

DASHBOARD = DEPLOY / "grafana" / "tollway-dashboard.json"
SCRAPE = DEPLOY / "prometheus" / "prometheus.yml"
K8S_SCRAPE = DEPLOY / "prometheus" / "kubernetes.yml"
OBSERVABILITY_DOC = REPO / "docs" / "observability.md"


@pytest.fixture(scope="module")
def exposition(
    tmp_path_factory: pytest.TempPathFactory, names_url: str, echo_url: str
) -> Iterator[tuple[str, str]]:
    """(base URL, /-/metrics text) of a gateway served on a socket, after a few calls."""
    database = tmp_path_factory.mktemp("kit") / "tollway.db"
    url = f"sqlite:///{database}"
    from tollway.db.migrate import upgrade
    from tollway.db.session import make_engine

    engine: Engine = make_engine(url)
    upgrade(engine)
    apply(engine, over_sockets(BASE_CONFIG, names_url, echo_url))
    gateway = create_gateway(Settings(database_url=url, secret_key=SECRET), engine=engine)  # type: ignore[arg-type]
    with serve_gateway(gateway, "fast") as base, httpx.Client(base_url=base) as client:
        for path in ("/open/x", "/open/y", "/echo/x", "/nowhere"):
            client.get(path)
        deadline = time.monotonic() + 10
        while "tollway_requests_total{" not in (text := client.get("/-/metrics").text):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        yield base, text
    engine.dispose()


def exposed_samples(text: str) -> set[str]:
    """Every sample name the exposition can carry (``_total``, ``_bucket``, ...)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def runnable(expr: str) -> str:
    """A dashboard query with Grafana's variables filled in as Grafana would."""
    return expr.replace("$__rate_interval", "1m").replace("$api", ".*")


def test_exposition_passes_promtool_lint(exposition: tuple[str, str]) -> None:
    promtool = require_tool("promtool", package="prometheus")
    _, text = exposition
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_metric_of_the_issue_is_exposed_without_key_labels(
    exposition: tuple[str, str],
) -> None:
    _, text = exposition
    families = {f.name: f for f in text_string_to_metric_families(text)}
    wanted = {
        "tollway_requests": {"api", "product", "status_class"},
        "tollway_request_duration_seconds": {"api", "le"},
        "tollway_upstream_duration_seconds": {"api", "le"},
        "tollway_policy_rejections": {"api", "policy"},
        "tollway_cache_requests": {"api", "result"},
        "tollway_bytes": {"api", "direction"},
        "tollway_limits_store_errors": set(),
        "tollway_limits_store_decisions": {"decision"},
        "tollway_config_version": set(),
        "tollway_config_age_seconds": set(),
        "tollway_usage_buffer_rows": set(),
        "tollway_usage_dropped_calls": set(),
        "tollway_upstream_connections": {"backend", "target", "state"},
    }
    assert set(wanted) <= set(families)
    for name, labels in wanted.items():
        for sample in families[name].samples:
            assert set(sample.labels) <= labels, (name, sample.labels)


def test_dashboard_uses_only_exposed_metrics(exposition: tuple[str, str]) -> None:
    _, text = exposition
    exposed = exposed_samples(text)
    used = {m for expr in dashboard_queries() for m in re.findall(r"tollway_[a-z_]+", expr)}
    assert used and used <= exposed, used - exposed
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "tollway-gateway"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.slow
def test_dashboard_queries_run_on_a_real_prometheus(
    exposition: tuple[str, str], tmp_path: Path
) -> None:
    """Prometheus scrapes the gateway; every query of the dashboard is valid PromQL there and
    the traffic panel has data."""
    prometheus = require_tool("prometheus")
    base, _ = exposition
    config = tmp_path / "prometheus.yml"
    scrape = load_yaml(SCRAPE)["scrape_configs"][0]
    job = {
        "job_name": scrape["job_name"],
        "metrics_path": scrape["metrics_path"],
        "scrape_interval": "1s",
        "static_configs": [{"targets": [base.removeprefix("http://")]}],
    }
    config.write_text(yaml.safe_dump({"scrape_configs": [job]}))
    port = free_port()
    process = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    api = f"http://127.0.0.1:{port}/api/v1/query"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                found = httpx.get(api, params={"query": "tollway_requests_total"}).json()
                if found["data"]["result"]:
                    break
            except (httpx.TransportError, ValueError, KeyError):
                pass  # (not listening yet, or "Service Unavailable" while it starts)
            assert time.monotonic() < deadline, "Prometheus did not scrape the gateway"
            time.sleep(0.2)
        for expr in dashboard_queries():
            answer = httpx.get(api, params={"query": runnable(expr)}).json()
            assert answer["status"] == "success", (expr, answer)
    finally:
        process.terminate()
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def test_prometheus_config_is_valid_and_scrapes_the_gateway() -> None:
    config = load_yaml(SCRAPE)
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/-/metrics"
    assert job["dns_sd_configs"][0]["names"] == ["tollway"]
    assert job["dns_sd_configs"][0]["port"] == 8000
    promtool = require_tool("promtool", package="prometheus")
    result = subprocess.run(
        [promtool, "check", "config", str(SCRAPE)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_prometheus_and_grafana_on_the_shipped_files() -> None:
    services: dict[str, Any] = load_yaml(REPO / "compose.yaml")["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    mounts = {m.split(":")[1]: REPO / m.split(":")[0] for m in prometheus["volumes"]}
    assert mounts["/etc/prometheus/prometheus.yml"].resolve() == SCRAPE
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert prometheus["depends_on"]["tollway"]["condition"] == "service_healthy"
    grafana_mounts = {m.split(":")[1]: REPO / m.split(":")[0] for m in grafana["volumes"]}
    provisioning = grafana_mounts["/etc/grafana/provisioning"]
    datasource = load_yaml(provisioning / "datasources" / "prometheus.yaml")["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090" and datasource["type"] == "prometheus"
    provider = load_yaml(provisioning / "dashboards" / "tollway.yaml")["providers"][0]
    dashboards = provider["options"]["path"]
    assert grafana_mounts[f"{dashboards}/tollway-dashboard.json"].resolve() == DASHBOARD
    for service in (prometheus, grafana):
        assert service["healthcheck"]["test"][0] == "CMD"


def test_kubernetes_pods_carry_the_annotations_the_scrape_job_reads() -> None:
    (deployment,) = load_yaml_documents(DEPLOY / "kubernetes" / "deployment.yaml")
    template = deployment["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    container = template["spec"]["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(ports["http"]),
        "prometheus.io/path": "/-/metrics",
    }
    relabel = load_yaml(K8S_SCRAPE)["scrape_configs"][0]["relabel_configs"]
    read = {label for rule in relabel for label in rule["source_labels"]}
    for name in ("scrape", "port", "path"):
        assert f"__meta_kubernetes_pod_annotation_prometheus_io_{name}" in read


def test_observability_doc_lists_every_metric_and_log_field(exposition: tuple[str, str]) -> None:
    _, text = exposition
    doc = OBSERVABILITY_DOC.read_text()
    for family in text_string_to_metric_families(text):
        if family.name.startswith("tollway_"):
            shown = family.name + ("_total" if family.type == "counter" else "")
            assert f"`{shown}" in doc, shown
    for field in (
        "time",
        "request_id",
        "trace_id",
        "client",
        "method",
        "path",
        "api",
        "operation",
        "product",
        "subscription_id",
        "status",
        "bytes_in",
        "bytes_out",
        "duration_ms",
        "upstream_ms",
        "rejection",
        "problem",
        "cache",
        "websocket",
    ):
        assert f"`{field}`" in doc, field
    assert "observability.md" in (REPO / "README.md").read_text()
