"""The source example of docs/connectors.md, registered as a package would register it, runs a
pipeline into SQLite, resumes after its committed position, and is checked by `validate`."""

from __future__ import annotations

import importlib.metadata
import re
import sqlite3
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from conduitd import registry
from conduitd.cli import main
from conduitd.configfile import load_config

GUIDE = Path(__file__).parents[2] / "docs" / "connectors.md"


def example(name: str) -> str:
    found = re.search(rf"<!-- example: {name} -->\n```python\n(.*?)\n```", GUIDE.read_text(), re.DOTALL)
    assert found is not None, f"no '{name}' example in {GUIDE}"
    return found.group(1)


@pytest.fixture
def sequence(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    module = types.ModuleType("conduitd_sequence_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(example("source"), str(GUIDE), "exec"), module.__dict__)
    point = importlib.metadata.EntryPoint("sequence", f"{module.__name__}:CONNECTOR", "conduitd.sources")
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [point] if group == "conduitd.sources" else [])
    registry.reset()
    yield
    registry.reset()


def test_the_guides_source_runs_resumes_and_validates(sequence: None, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    database = tmp_path / "out.db"
    config = tmp_path / "conduitd.yaml"
    config.write_text(f"""\
sources:
  - {{name: numbers, type: sequence, count: 25}}
destinations:
  - {{name: out, type: sqlite, path: "{database}"}}
resources:
  - {{name: numbers, source: numbers, destination: out, batch: {{max_rows: 10}}}}
""")
    assert registry.names_plugins(load_config(config))  # so pyarrow's look for pandas is not skipped
    assert main(["--once", "-c", str(config)]) == 0, capsys.readouterr().err
    assert main(["--once", "-c", str(config)]) == 0, capsys.readouterr().err  # nothing new: nothing written
    with sqlite3.connect(database) as db:
        assert [n for (n,) in db.execute("SELECT n FROM numbers ORDER BY n")] == list(range(25))
    capsys.readouterr()
    assert main(["validate", "-c", str(config)]) == 0
    assert "25 numbers" in capsys.readouterr().out
    config.write_text(config.read_text().replace("count: 25", "cuont: 25"))
    assert main(["validate", "-c", str(config)]) == 2
    assert f"{config}:2: sources[0].cuont: unknown key; did you mean 'count'?" in capsys.readouterr().err
