"""A third-party destination, as a package would ship it (issue 9, item 5): a tiny plugin package
is made in a temp dir, pip-installed, and then `conduitd connectors` lists it, a config error in
its section names file, line and key, and a pipeline (files -> plugin) writes through it.

The package is installed with `pip install --target` into a directory of its own that only this
test's processes have on their path: the shared environment never sees it, so other tests running
at the same time are not affected, and removing the directory uninstalls it. It is built by a
ten-line in-tree PEP 517 backend (stdlib only), as this machine's setuptools cannot build a wheel
without the `wheel` package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from conduitd import registry
from conduitd.cli import main

PYPROJECT = """\
[build-system]
requires = []
build-backend = "backend"
backend-path = ["."]

[project]
name = "conduitd-jsonl-demo"
version = "0.3.1"

[project.entry-points."conduitd.destinations"]
jsonl = "conduitd_jsonl_demo:CONNECTOR"

[project.entry-points."conduitd.retry"]
journal = "conduitd_jsonl_demo:journal_policy"
broken = "conduitd_jsonl_demo:broken_policy"
"""

BACKEND = '''\
"""Builds a wheel of conduitd_jsonl_demo.py from pyproject.toml's [project] table (stdlib only)."""
import base64, hashlib, tomllib, zipfile

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    project = tomllib.load(open("pyproject.toml", "rb"))["project"]
    name, version = project["name"].replace("-", "_"), project["version"]
    info = f"{name}-{version}.dist-info"
    points = "".join(f"[{group}]\\n" + "".join(f"{k} = {v}\\n" for k, v in items.items()) + "\\n"
                     for group, items in project.get("entry-points", {}).items())
    files = {"conduitd_jsonl_demo.py": open("conduitd_jsonl_demo.py", "rb").read(),
             f"{info}/METADATA": f"Metadata-Version: 2.1\\nName: {project['name']}\\nVersion: {version}\\n".encode(),
             f"{info}/WHEEL": b"Wheel-Version: 1.0\\nGenerator: demo\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
             f"{info}/entry_points.txt": points.encode()}
    record = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
              f"{len(data)}" for path, data in files.items()] + [f"{info}/RECORD,,"]
    wheel = f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(f"{wheel_directory}/{wheel}", "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
        archive.writestr(f"{info}/RECORD", "\\n".join(record) + "\\n")
    return wheel
'''

# The plugin itself: a destination writing each table as a JSON-lines file, written against
# `conduitd.destinations.base` (Destination, Transaction, Capabilities) and `conduitd.core.dialect`.
PLUGIN = '''\
"""A conduitd destination: each table a JSON-lines file in `directory`, state in state.json.
Rows and positions are applied together when the transaction ends, but not atomically (rows
are appended, then the state is replaced): at least once, hence atomic_checkpoint=False."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from conduitd.config import DestinationConfig, PipelineConfig
from conduitd.core.records import Position, Reject, SchemaChange
from conduitd.core.schema import Column
from conduitd.destinations.base import Capabilities, CheckpointRow, DlqEntry, DlqFilter
from conduitd.registry import Connector
from conduitd.runtime.retry import RetryPolicy


class JsonlConfig(DestinationConfig):
    """`type: jsonl`"""

    directory: str
    """Where <table>.jsonl files and state.json are written."""
    indent: bool = False


TYPES = {"integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_(), "string": pa.string(),
         "json": pa.string()}


def column(name: str, kind: str) -> Column:
    return Column(name, TYPES[kind], kind, json=kind == "json")


class JsonlDialect:
    max_identifier_bytes = None
    max_columns = 1000

    def name_problem(self, name: str) -> str | None:
        return None

    def name_key(self, name: str) -> str:
        return name

    def column_for(self, name: str, arrow: pa.DataType) -> Column:
        if pa.types.is_integer(arrow):
            return column(name, "integer")
        if pa.types.is_floating(arrow):
            return column(name, "number")
        if pa.types.is_boolean(arrow):
            return column(name, "boolean")
        return column(name, "json" if pa.types.is_nested(arrow) else "string")

    def create_table_ddl(self, table: str, columns: Sequence[Column], key: Sequence[str]) -> str:
        return json.dumps({"table": table, "columns": {c.name: c.sql for c in columns}})

    def add_column_ddl(self, table: str, column: Column) -> str:
        return json.dumps({"table": table, "columns": {column.name: column.sql}})

    def widen_column_ddl(self, table: str, column: Column) -> str | None:
        return self.add_column_ddl(table, column)

    def widening_holds(self, old: Column, new: Column) -> bool:
        return True

    def encode(self, rows: pa.Table, columns: Sequence[Column]) -> object:
        return rows.to_pylist()


class JsonlTransaction:
    """Everything is buffered; the destination applies it when the transaction ends normally."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = copy.deepcopy(state)
        self.lines: dict[str, list[object]] = {}

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        found = self.state["tables"].get(table)
        return None if found is None else {n: column(n, k) for n, k in found.items()}

    async def run_ddl(self, statement: str) -> None:
        change = json.loads(statement)
        self.state["tables"].setdefault(change["table"], {}).update(change["columns"])

    def savepoint(self) -> contextlib.AbstractAsyncContextManager[None]:
        raise NotImplementedError("no savepoints (capabilities.savepoints is False)")

    async def write_rows(self, table: str, rows: pa.Table, columns: Sequence[Column], key: Sequence[str],
                         payload: object | None = None) -> None:
        self.lines.setdefault(table, []).extend(payload if isinstance(payload, list) else rows.to_pylist())

    async def screen_rows(self, table: str, rows: pa.Table, columns: Sequence[Column],
                          key: Sequence[str]) -> list[tuple[int, str]]:
        return []

    async def delete_rows(self, table: str, keys: pa.Table) -> int:
        return 0

    async def write_rejects(self, dlq_table: str, pipeline: str, rejects: Sequence[Reject]) -> None:
        self.lines.setdefault(dlq_table, []).extend(
            {"pipeline": pipeline, "rule": r.rule, "reason": r.reason, "payload": r.payload} for r in rejects)

    async def delete_rejects(self, dlq_table: str, ids: Sequence[int]) -> int:
        return 0

    async def record_changes(self, pipeline: str, changes: Sequence[SchemaChange]) -> None:
        return None

    async def compare_and_set(self, pipeline: str, partition: str, expected: Position, new: Position) -> bool:
        stored = self.state["checkpoints"].setdefault(pipeline, {})
        if stored.get(partition) != expected:
            return False
        stored[partition] = new
        return True


class JsonlDestination:
    capabilities = Capabilities(transactional_ddl=True, savepoints=False, upsert=False, prepare_ahead=True,
                                atomic_checkpoint=False, deletes=False)

    def __init__(self, config: JsonlConfig) -> None:
        self.config = config
        self.dialect = JsonlDialect()
        self.directory = Path(config.directory)
        self.state: dict[str, Any] = {"tables": {}, "checkpoints": {}}

    async def open(self, *, read_only: bool = False) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / "state.json"
        if path.exists():
            self.state = json.loads(path.read_text())

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def write_problems(self, pipeline: PipelineConfig) -> list[str]:
        return [] if os.access(self.directory.parent, os.W_OK) else [f"{self.directory} is not writable"]

    async def setup(self, pipeline: PipelineConfig) -> None:
        return None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[JsonlTransaction]:
        tx = JsonlTransaction(self.state)
        yield tx  # an exception here leaves nothing applied
        for table, lines in tx.lines.items():
            with (self.directory / f"{table}.jsonl").open("a") as handle:
                handle.writelines(json.dumps(line, default=str, indent=self.config.indent or None) + "\\n"
                                  for line in lines)
        temporary = self.directory / "state.json.tmp"
        temporary.write_text(json.dumps(tx.state))
        os.replace(temporary, self.directory / "state.json")
        self.state = tx.state

    async def load_checkpoints(self, pipeline: str) -> dict[str, Position]:
        return dict(self.state["checkpoints"].get(pipeline, {}))

    async def list_checkpoints(self, pipeline: str | None = None) -> list[CheckpointRow]:
        return [CheckpointRow(p, part, pos) for p, parts in self.state["checkpoints"].items()
                if pipeline in (None, p) for part, pos in parts.items()]

    async def reset_checkpoints(self, pipeline: str, partition: str | None = None) -> int:
        return 0

    async def table_columns(self, table: str) -> dict[str, Column] | None:
        return await JsonlTransaction(self.state).table_columns(table)

    async def read_dlq(self, pipeline: PipelineConfig, where: DlqFilter) -> list[DlqEntry]:
        return []


CONNECTOR = Connector(type="jsonl", kind="destination", config_model=JsonlConfig, factory=JsonlDestination,
                      capabilities=JsonlDestination.capabilities, description="tables as JSON-lines files")


def journal_policy(configured: RetryPolicy, options: dict[str, Any]) -> RetryPolicy:
    """The configured policy, with every judgement written to `options["journal"]` and its first
    wait from `options["first_wait"]`."""
    journal, judge = Path(options["journal"]), configured.is_retriable

    def is_retriable(exc: BaseException) -> bool:
        verdict = judge(exc)
        with journal.open("a") as handle:
            handle.write(f"{type(exc).__name__} {verdict} {configured.give_up_after}\\n")
        return verdict

    return dataclasses.replace(configured, is_retriable=is_retriable, first_wait=float(options["first_wait"]))


def broken_policy(configured: RetryPolicy, options: dict[str, Any]) -> RetryPolicy:
    raise ValueError("needs a 'budget' option")
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The plugin package built and pip-installed into a directory of its own."""
    root = tmp_path_factory.mktemp("plugin")
    package, target = root / "conduitd-jsonl-demo", root / "site"
    package.mkdir()
    (package / "pyproject.toml").write_text(PYPROJECT)
    (package / "backend.py").write_text(BACKEND)
    (package / "conduitd_jsonl_demo.py").write_text(PLUGIN)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--disable-pip-version-check", "--target", str(target), str(package)],
                   check=True, capture_output=True, timeout=120)
    yield target  # tmp_path_factory removes it: that is the uninstall


@pytest.fixture
def installed(site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This process and the conduitd processes it starts see the plugin."""
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    registry.reset()
    yield site
    registry.reset()
    sys.modules.pop("conduitd_jsonl_demo", None)


def config_text(tmp_path: Path, extra: str = "") -> str:
    data = tmp_path / "in"
    data.mkdir(exist_ok=True)
    (data / "a.jsonl").write_text('{"id": 1, "name": "ada"}\n{"id": 2, "name": "bob", "tags": ["x"]}\n')
    return textwrap.dedent(f"""\
        sources:
          - {{name: files, type: file, path: "{data}/*.jsonl"}}
        destinations:
          - name: out
            type: jsonl
            directory: "{tmp_path / 'out'}"
        {extra}
        resources:
          - {{name: people, source: files, destination: out}}
        """)


def test_connectors_lists_the_plugin(installed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["connectors", "--json"]) == 0
    rows = [r for r in json.loads(capsys.readouterr().out) if r["type"] == "jsonl"]
    assert rows == [{"type": "jsonl", "kind": "destination", "package": "conduitd-jsonl-demo", "version": "0.3.1",
                     "builtin": False, "status": "ok", "problem": None,
                     "capabilities": ["transactional_ddl", "prepare_ahead"],
                     "description": "tables as JSON-lines files"}]
    assert main(["connectors"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("jsonl"))
    assert line.split() == ["jsonl", "destination", "conduitd-jsonl-demo", "0.3.1", "ok", "transactional_ddl,",
                            "prepare_ahead"]


def test_an_unknown_key_of_the_plugin_is_a_config_error_with_file_and_line(
        installed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "conduitd.yaml"
    path.write_text(config_text(tmp_path, extra="    indnet: true"))
    assert main(["--once", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:7: destinations[0].indnet: unknown key; did you mean 'indent'?" in err
    assert "Traceback" not in err


def test_a_pipeline_writes_through_the_plugin(installed: Path, tmp_path: Path) -> None:
    path = tmp_path / "conduitd.yaml"
    path.write_text(config_text(tmp_path))
    result = subprocess.run([sys.executable, "-m", "conduitd", "--once", "-c", str(path)], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "out" / "people.jsonl").read_text().splitlines()]
    assert [(r["id"], r["name"]) for r in rows] == [(1, "ada"), (2, "bob")]
    state = json.loads((tmp_path / "out" / "state.json").read_text())
    assert state["tables"]["people"] == {"id": "integer", "name": "string", "tags": "json"}
    assert state["checkpoints"]["people"], "the position is committed with the rows"
    again = subprocess.run([sys.executable, "-m", "conduitd", "--once", "-c", str(path)], capture_output=True,
                           text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    assert len((tmp_path / "out" / "people.jsonl").read_text().splitlines()) == 2  # resumed after it


def retrying_config(tmp_path: Path, retry: str) -> Path:
    """files -> a PostgreSQL that nothing listens for (port 1): connecting is retried until
    `once_retry_timeout`, each failure judged by the configured retry policy."""
    data = tmp_path / "in"
    data.mkdir(exist_ok=True)
    (data / "a.jsonl").write_text('{"id": 1}\n')
    path = tmp_path / "conduitd.yaml"
    path.write_text(textwrap.dedent(f"""\
        service:
          once_retry_timeout: 1s
          retry: {retry}
        sources:
          - {{name: files, type: file, path: "{data}/*.jsonl"}}
        destinations:
          - {{name: pg, type: postgres, dsn: "postgresql://nobody@127.0.0.1:1/none"}}
        resources:
          - {{name: people, source: files, destination: pg}}
        """))
    return path


def test_a_retry_policy_from_a_package_judges_every_failure(installed: Path, tmp_path: Path) -> None:
    journal = tmp_path / "journal.txt"
    path = retrying_config(tmp_path, f'{{policy: journal, options: {{journal: "{journal}", first_wait: 0.05}}}}')
    result = subprocess.run([sys.executable, "-m", "conduitd", "--once", "-c", str(path)], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 5, result.stderr
    lines = journal.read_text().splitlines()
    assert len(lines) >= 2, lines  # retried: the waits are the plugin's 0.05 s, not the default
    assert set(lines) == {"DependencyUnreachable True 1.0"}, lines


def test_a_retry_policy_narrowed_in_the_config_gives_up_at_once(installed: Path, tmp_path: Path) -> None:
    journal = tmp_path / "journal.txt"
    path = retrying_config(tmp_path, f'{{retry_on: [transient], policy: journal, '
                                     f'options: {{journal: "{journal}", first_wait: 0.05}}}}')
    result = subprocess.run([sys.executable, "-m", "conduitd", "--once", "-c", str(path)], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 5, result.stderr
    assert journal.read_text().splitlines() == ["DependencyUnreachable False 1.0"]  # judged once, not retried


@pytest.mark.parametrize(("policy", "exit_code", "message"), [
    ("broken", 2, "service.retry.policy: retry policy 'broken' failed: ValueError: needs a 'budget' option"),
    ("absent", 2, "service.retry.policy: no retry policy 'absent' is installed (known: broken, journal;"),
])
def test_a_retry_policy_that_fails_or_is_missing_is_a_config_error(
        installed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], policy: str, exit_code: int,
        message: str) -> None:
    path = retrying_config(tmp_path, f"{{policy: {policy}}}")
    assert main(["--once", "-c", str(path)]) == exit_code
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err


def test_validate_reports_a_failing_retry_policy_as_run_would(
        installed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = retrying_config(tmp_path, "{policy: broken}")
    assert main(["validate", "--json", "-c", str(path)]) == 2
    checks = json.loads(capsys.readouterr().out)
    assert [c for c in checks if c["check"] == "retry policy"] == [
        {"pipeline": "people", "check": "retry policy", "status": "invalid",
         "detail": "service.retry.policy: retry policy 'broken' failed: ValueError: needs a 'budget' option"}]
