"""The connector registry (issue 9, item 5): lookup by `type`, plugin config models validated
like the built-ins', lazy drivers whose absence names the pip extra, `conduitd connectors`."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from conduitd import registry
from conduitd.cli import main
from conduitd.config import DestinationConfig
from conduitd.configfile import load_config
from conduitd.core.redact import forget_all
from conduitd.destinations import make_destination
from conduitd.errors import ConfigError

CONFIG = """\
sources:
  - name: files
    type: file
    path: {data}
destinations:
  - name: out
    type: {type}
{extra}
resources:
  - name: orders
    source: files
    destination: out
"""


@pytest.fixture(autouse=True)
def _no_remembered_secrets() -> None:
    """Messages here name `postgres`: a test before this one may have remembered that word as the
    password of a DSN (the test server's), which would mask it."""
    forget_all()


def write(tmp_path: Path, type_: str, extra: str) -> Path:
    path = tmp_path / "conduitd.yaml"
    path.write_text(CONFIG.format(data=tmp_path / "*.jsonl", type=type_, extra=extra))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    return str(caught.value)


class FakeConfig(DestinationConfig):
    """A plugin's model, registered below through a fake entry point."""

    directory: str
    compress: bool = False


FAKE = registry.Connector(type="fake", kind="destination", config_model=FakeConfig, factory=lambda c: ("built", c),
                          capabilities={"upsert": True, "savepoints": False})


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Entry points as a package would install them: one good destination, one whose module is missing."""
    module = types.ModuleType("fake_conduitd_plugin")
    module.CONNECTOR = FAKE  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_conduitd_plugin", module)
    points = {"conduitd.destinations": [
        importlib.metadata.EntryPoint("fake", "fake_conduitd_plugin:CONNECTOR", "conduitd.destinations"),
        importlib.metadata.EntryPoint("broken", "no_such_module_for_conduitd:X", "conduitd.destinations")]}
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: points.get(group, []))
    registry.reset()
    yield
    registry.reset()


def test_unknown_type_suggests_and_lists_the_installed_types(tmp_path: Path) -> None:
    path = write(tmp_path, "postgress", "    dsn: postgresql://db/x")
    message = error_of(path)
    assert f"{path}:7: destinations[0].type: unknown destination type; did you mean 'postgres'?" in message
    assert "installed destination types: sqlite, postgres, mysql" in message
    path = write(tmp_path, "kafka", "    brokers: b:1")
    assert "destinations[0].type: a source type, not a destination type" in error_of(path)


def test_plugin_config_gets_unknown_keys_did_you_mean_and_lines(tmp_path: Path, plugins: None) -> None:
    path = write(tmp_path, "fake", "    directory: out\n    compres: true")
    assert error_of(path) == f"{path}:9: destinations[0].compres: unknown key; did you mean 'compress'?"
    path = write(tmp_path, "fake", "    compress: 3")
    message = error_of(path)
    assert f"{path}:6: destinations[0]: required key is missing" in message
    assert f"{path}:8: destinations[0].compress: expected true or false, got a number" in message
    config = load_config(write(tmp_path, "fake", "    directory: out"), {})
    destination = config.destination("out")
    assert isinstance(destination, FakeConfig) and destination.directory == "out"
    assert make_destination(destination) == ("built", destination)  # type: ignore[comparison-overlap]
    known = "installed destination types: sqlite, postgres, mysql, file, snowflake, clickhouse, duckdb, broken, fake"
    assert known in error_of(write(tmp_path, "nope", ""))


def test_a_plugin_that_cannot_load_fails_only_the_configs_that_use_it(tmp_path: Path, plugins: None) -> None:
    load_config(write(tmp_path, "sqlite", "    path: x.db"), {})
    message = error_of(write(tmp_path, "broken", "    path: x"))
    assert "destinations[0].type: the destination 'broken'" in message
    assert "cannot be loaded: ModuleNotFoundError: No module named 'no_such_module_for_conduitd'" in message


def test_connectors_lists_builtins_and_plugins(plugins: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["connectors", "--json"]) == 0
    rows = {(r["kind"], r["type"]): r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) >= {("source", "file"), ("source", "kafka"), ("destination", "sqlite"),
                         ("destination", "postgres"), ("dlq", "table"), ("dlq", "file"), ("dlq", "kafka")}
    assert rows[("destination", "fake")]["capabilities"] == ["upsert"]
    assert rows[("destination", "fake")]["status"] == "ok"
    assert rows[("destination", "broken")]["status"] == "broken"
    assert rows[("destination", "sqlite")]["package"] == "conduitd"
    assert rows[("destination", "sqlite")]["capabilities"] == ["transactional_ddl", "savepoints", "upsert",
                                                               "atomic_checkpoint", "deletes", "leases", "control"]
    assert main(["connectors"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["TYPE", "KIND", "PACKAGE", "VERSION", "STATUS", "CAPABILITIES"]
    assert any(line.split()[:2] == ["fake", "destination"] and line.endswith("upsert") for line in lines)
    assert any(line.startswith("destination broken: ") and "cannot be loaded" in line for line in lines)


def test_a_missing_driver_names_the_pip_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(registry, "_importable", lambda module: module != "asyncpg")
    path = write(tmp_path, "postgres", "    dsn: postgresql://app@127.0.0.1:9/x")
    config = load_config(path, {})  # loading needs no driver
    with pytest.raises(ConfigError, match=r"needs the Python module asyncpg: pip install 'conduitd\[postgres\]'"):
        make_destination(config.destination("out"))
    assert main(["--once", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'conduitd[postgres]'" in err and "Traceback" not in err
    assert main(["connectors"]) == 0
    assert re.search(r"^postgres +destination +conduitd", capsys.readouterr().out, re.M)


def test_loading_a_config_imports_no_driver(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG.format(data="x", type="postgres", extra="    dsn: postgresql://db/x").replace(
        "type: file\n    path: x", "type: kafka\n    brokers: b:1\n    topics: [t]\n    group_id: g"))
    code = ("import sys; from conduitd.configfile import load_config; c = load_config(sys.argv[1], {}); "
            "assert c.sources[0].type == 'kafka'; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('asyncpg', 'confluent_kafka')))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_loading_a_config_imports_only_the_connectors_it_names(tmp_path: Path) -> None:
    """Each start validates the file with the models of the types it names: no other built-in's
    settings (nor the files destination, whose package imports its writer) are imported."""
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG.format(data="x", type="postgres", extra="    dsn: postgresql://db/x"))
    code = ("import sys; from conduitd.configfile import load_config; c = load_config(sys.argv[1], {}); "
            "assert (c.sources[0].type, c.destinations[0].type) == ('file', 'postgres'); "
            "print(sorted(m for m in sys.modules if m.startswith(('conduitd.sources.rest', 'conduitd.sources.kinesis', "
            "'conduitd.sources.tables.mysql', 'conduitd.destinations.files', 'conduitd.destinations.snowflake', "
            "'conduitd.destinations.clickhouse', 'conduitd.destinations.mysql', 'conduitd.destinations.duckdb'))))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
