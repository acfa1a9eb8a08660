"""The Kubernetes manifest and the image in deploy/ agree with the daemon they run: the embedded
config is valid, the probes and the scrape path are served, the grace period outlasts the drain,
the command line is one the CLI takes, and no secret is written in them."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from conduitd.config import Config, KafkaSourceConfig
from conduitd.configfile import load_config
from conduitd.ops.health import HealthServer
from conduitd.ops.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deploy" / "kubernetes" / "conduitd.yaml"


def documents() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc}


def embedded_config(tmp_path: Path) -> Config:
    path = tmp_path / "conduitd.yaml"
    path.write_text(documents()["ConfigMap"]["data"]["conduitd.yaml"])
    return load_config(path, {"PG_DSN": "postgresql://u:p@db:5432/x"})


def container() -> dict[str, Any]:
    (only,) = documents()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return dict(only)


def test_the_embedded_config_is_valid_and_scales_out_by_group(tmp_path: Path) -> None:
    config = embedded_config(tmp_path)
    (source,) = config.sources
    assert isinstance(source, KafkaSourceConfig) and source.group_id
    assert documents()["Deployment"]["spec"]["replicas"] >= 2
    assert config.service.health_host == "0.0.0.0"
    assert "${PG_DSN}" in documents()["ConfigMap"]["data"]["conduitd.yaml"], "the DSN must come from the Secret"
    env = {e["name"]: e for e in container()["env"]}
    assert "secretKeyRef" in env["PG_DSN"]["valueFrom"]


def test_probes_and_scrape_path_are_served(tmp_path: Path) -> None:
    config = embedded_config(tmp_path)
    spec = documents()["Deployment"]["spec"]["template"]
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert ports["http"] == config.service.health_port
    assert spec["metadata"]["annotations"]["prometheus.io/port"] == str(config.service.health_port)
    paths = [container()["livenessProbe"]["httpGet"]["path"], container()["readinessProbe"]["httpGet"]["path"],
             spec["metadata"]["annotations"]["prometheus.io/path"]]

    async def statuses_of(paths: list[str]) -> list[int]:
        server = HealthServer("127.0.0.1", 0, Metrics(), lambda: [])
        port = await server.start()
        try:
            async with aiohttp.ClientSession() as session:
                codes = []
                for path in paths:
                    async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                        codes.append(response.status)
                return codes
        finally:
            await server.stop()

    assert asyncio.run(statuses_of(paths)) == [200, 200, 200]


def test_grace_period_outlasts_the_drain_and_the_command_is_real(tmp_path: Path) -> None:
    config = embedded_config(tmp_path)
    pod = documents()["Deployment"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > config.service.drain_timeout
    args = container()["args"]
    mount = next(m for m in container()["volumeMounts"] if m["name"] == "config")
    assert args[0] == "run" and args[args.index("-c") + 1] == f"{mount['mountPath']}/conduitd.yaml"
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["conduitd"]' in dockerfile
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "conduitd" in scripts
    assert f'CMD ["run", "-c", "{mount["mountPath"]}/conduitd.yaml"]' in dockerfile
