"""Secrets from elsewhere than the config file (issue 9, item 5): `{from: env|file|<provider>}`,
resolved at load, masked everywhere, and never quoted in an error."""

from __future__ import annotations

import importlib.metadata
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from conduitd.config import DestinationConfig, KafkaSourceConfig, PostgresDestinationConfig
from conduitd.configfile import load_config
from conduitd.core.redact import forget_all, redact
from conduitd.credentials import SecretText
from conduitd.errors import ConfigError

CONFIG = """\
sources:
  - name: stream
    type: kafka
    brokers: k:9092
    topics: [t]
    group_id: g
    client: {{security.protocol: SASL_SSL, sasl.password: {kafka}}}
destinations:
  - name: wh
    type: postgres
    dsn: postgresql://app@db:5432/wh
    password: {password}
resources:
  - {{name: orders, source: stream, destination: wh}}
"""


def write(tmp_path: Path, password: str, kafka: str = "plain-kafka-pw") -> Path:
    path = tmp_path / "conduitd.yaml"
    path.write_text(CONFIG.format(password=password, kafka=kafka))
    return path


def error_of(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ or {})
    return str(caught.value)


@pytest.fixture(autouse=True)
def no_known_secrets() -> Iterator[None]:
    forget_all()
    yield
    forget_all()


def test_password_and_client_secret_from_env(tmp_path: Path) -> None:
    path = write(tmp_path, "{from: env, name: PG_PW}", kafka="{from: env, name: KAFKA_PW}")
    config = load_config(path, {"PG_PW": "pg-s3cret", "KAFKA_PW": "kafka-s3cret"})
    destination, source = config.destination("wh"), config.source("stream")
    assert isinstance(destination, PostgresDestinationConfig) and isinstance(source, KafkaSourceConfig)
    assert destination.connect_params.password == "pg-s3cret"
    assert destination.connect_params.user == "app"
    assert source.client["sasl.password"] == "kafka-s3cret"
    assert "pg-s3cret" not in repr(destination) and "pg-s3cret" not in str(destination.model_dump())
    assert redact("x pg-s3cret y kafka-s3cret") == "x *** y ***"


def test_password_from_a_file_drops_the_trailing_newline(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("file-s3cret\n")
    config = load_config(write(tmp_path, f"{{from: file, path: {secret}}}"), {})
    assert config.destination("wh").connect_params.password == "file-s3cret"  # type: ignore[attr-defined]
    assert redact("file-s3cret") == "***"


def test_errors_name_file_line_and_key_never_the_value(tmp_path: Path) -> None:
    path = write(tmp_path, "{from: env, name: PG_PW}")
    assert error_of(path) == f"{path}:12: destinations[0].password: environment variable PG_PW is not set"
    path = write(tmp_path, "{from: env, nmae: PG_PW}")
    assert "takes only 'from' and 'name' (unknown: nmae)" in error_of(path)
    path = write(tmp_path, f"{{from: file, path: {tmp_path / 'missing'}}}")
    assert "destinations[0].password: cannot read the secret file" in error_of(path)
    path = write(tmp_path, "{from: vault, path: x}")
    assert "no credentials provider 'vault' is installed (known: env, file" in error_of(path)
    path = tmp_path / "both.yaml"
    path.write_text(CONFIG.format(password="other-s3cret", kafka="x").replace("app@db", "app:dsn-s3cret@db"))
    message = error_of(path)
    assert "the DSN has a password and 'password' is set: keep one" in message
    assert "s3cret" not in message


class PluginConfig(DestinationConfig):
    auth: SecretText
    """A secret whose key does not look like one."""


def test_a_secret_that_is_not_text_is_refused_and_masked() -> None:
    with pytest.raises(ValidationError) as caught:
        PluginConfig.model_validate({"name": "p", "type": "p", "auth": 918273645})
    assert "918273645" in str(caught.value) and "918273645" not in redact(str(caught.value))


def vault(options: dict[str, Any]) -> str:
    if options.get("path") == "fail":
        raise RuntimeError("vault sealed")
    return f"vault-s3cret-for-{options['path']}"


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("fake_conduitd_vault")
    module.fetch = vault  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_conduitd_vault", module)
    point = importlib.metadata.EntryPoint("vault", "fake_conduitd_vault:fetch", "conduitd.credentials")
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [point] if group == "conduitd.credentials" else [])


def test_a_provider_from_a_package(tmp_path: Path, provider: None) -> None:
    config = load_config(write(tmp_path, "{from: vault, path: pg}"), {})
    assert config.destination("wh").connect_params.password == "vault-s3cret-for-pg"  # type: ignore[attr-defined]
    assert redact("vault-s3cret-for-pg") == "***"
    path = write(tmp_path, "{from: vault, path: fail}")
    assert error_of(path) == (f"{path}:12: destinations[0].password: credentials provider 'vault' failed: "
                              "RuntimeError: vault sealed")
