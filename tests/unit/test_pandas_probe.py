"""`conduitd.pandas_probe`: a run of built-in connectors starts without importing pandas (pyarrow
would, at its first `pa.array`); pandas stays importable, and once anything imports it pyarrow is
told again, so pandas objects handed to pyarrow convert as they always did (NaN becomes null).

Each check runs in a fresh interpreter: pyarrow notes once per process whether pandas is there."""

from __future__ import annotations

import importlib.util
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from conduitd import registry
from conduitd.configfile import load_config

pytestmark = pytest.mark.skipif(importlib.util.find_spec("pandas") is None,
                                reason="pandas is not installed: pyarrow has nothing to import")


def _python(program: str, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, *args, "-c", textwrap.dedent(program)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_after_the_skip_pyarrow_works_without_importing_pandas_and_pandas_still_imports() -> None:
    done = _python("""
        import sys
        import pyarrow as pa
        from conduitd import pandas_probe
        pandas_probe.own_process()
        assert pandas_probe.skip_unless_needed(plugins=False)
        pa.array([1, None]); pa.scalar(b"", pa.large_binary()); pa.array([1.5, 2.5], pa.float64())
        print("imported" if "pandas" in sys.modules else "absent")
        import pandas
        print(pandas.Series([1, 2]).sum())
    """)
    assert done.stdout.split() == ["absent", "3"]


def test_pandas_imported_later_is_recognised_again_after_rearm() -> None:
    done = _python("""
        import math
        import pyarrow as pa
        from conduitd import pandas_probe
        pandas_probe.own_process()
        assert pandas_probe.skip_unless_needed(plugins=False)
        import pandas as pd
        print(pa.array(pd.Series([1.0, math.nan])).null_count)  # not recognised: NaN stays NaN
        pandas_probe.rearm()
        print(pa.array(pd.Series([1.0, math.nan])).null_count)  # as without conduitd: NaN is null
    """)
    assert done.stdout.split() == ["0", "1"]


def test_no_skip_with_a_plugin_connector_or_pandas_already_imported_or_not_conduitds_process() -> None:
    done = _python("""
        import sys
        import pyarrow as pa
        from conduitd import pandas_probe
        print(pandas_probe.skip_unless_needed(plugins=False))  # `conduitd.cli.main` inside a program
        pandas_probe.own_process()
        print(pandas_probe.skip_unless_needed(plugins=True))
        pa.array([1])
        print("pandas" in sys.modules)  # pyarrow looked, as it always does
        print(pandas_probe.skip_unless_needed(plugins=False))  # pandas is imported now
    """)
    assert done.stdout.split() == ["False", "False", "True", "False"]


def test_building_a_connector_whose_modules_import_pandas_rearms_pyarrow() -> None:
    done = _python("""
        import math
        import pyarrow as pa
        from conduitd import pandas_probe, registry
        pandas_probe.own_process()

        def factory(config):
            import pandas  # what a driver may do (snowflake-connector-python does)
            return "built"

        connector = registry.Connector(type="x", kind="destination", config_model=object, factory=factory)
        registry.load = lambda kind, type_: connector
        assert pandas_probe.skip_unless_needed(plugins=False)

        class Section:
            type = "x"

        print(registry.build("destination", Section()))
        import pandas as pd
        print(pa.array(pd.Series([1.0, math.nan])).null_count)
    """)
    assert done.stdout.split() == ["built", "1"]


def test_a_once_run_of_built_in_connectors_never_imports_pandas(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"id": 1, "amount": 2.5}\n{"id": 2, "amount": null}\n')
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "sources": [{"name": "s", "type": "file", "path": str(tmp_path / "in.jsonl")}],
        "destinations": [{"name": "d", "type": "sqlite", "path": str(tmp_path / "t.db")}],
        "resources": [{"name": "p", "source": "s", "destination": "d"}]}))
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "conduitd", "--once", "-c", str(config)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "pyarrow" in imported
    assert not [m for m in imported if m.startswith("pandas.")]  # ("pandas" alone: pyarrow's refused try)
    assert not registry.names_plugins(load_config(config))
    with sqlite3.connect(tmp_path / "t.db") as db:
        assert db.execute('SELECT "id", "amount" FROM "p" ORDER BY "id"').fetchall() == [(1, 2.5), (2, None)]


def test_a_pyarrow_that_lets_the_refused_import_through_is_left_to_look_again() -> None:
    done = _python("""
        import sys
        import pyarrow as pa
        from conduitd import pandas_probe
        pandas_probe.own_process()
        real = pa.array

        def strict(*args, **kwargs):  # as a pyarrow might that does not catch the refused import
            import pandas
            return real(*args, **kwargs)

        pa.array = strict
        print(pandas_probe.skip_unless_needed(plugins=False))
        pa.array = real
        pa.array([1])
        print("pandas" in sys.modules)  # pyarrow's own look, as without conduitd
    """)
    assert done.stdout.split() == ["False", "True"]
