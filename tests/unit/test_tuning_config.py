"""`batch: {max_rows: auto, ...}` in a config file: accepted with its bounds, refused with a clear
error (file, key path, line) when a value makes no sense."""

from __future__ import annotations

from pathlib import Path

import pytest

from conduitd.config import BatchConfig
from conduitd.configfile import load_config
from conduitd.errors import ConfigError

CONFIG = """\
sources:
  - {name: files, type: file, path: data/*.jsonl}
destinations:
  - {name: db, type: sqlite, path: out.db}
resources:
  - name: orders
    source: files
    destination: db
    batch: BATCH
"""


def load(tmp_path: Path, batch: str, environ: dict[str, str] | None = None) -> BatchConfig:
    path = tmp_path / "conduitd.yaml"
    path.write_text(CONFIG.replace("BATCH", batch))
    return load_config(path, environ or {}).resources[0].batch


def error_of(tmp_path: Path, batch: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, batch)
    return str(caught.value)


def test_auto_with_its_settings(tmp_path: Path) -> None:
    batch = load(tmp_path, "{max_rows: auto, target_latency: 500ms, initial_rows: 500, max_rows_limit: 200000}")
    assert batch.adaptive
    assert batch.target_latency == pytest.approx(0.5)
    assert batch.first_rows == 500
    assert batch.max_rows == 200_000  # no batch ever holds more


def test_auto_defaults(tmp_path: Path) -> None:
    batch = load(tmp_path, "{max_rows: auto}")
    assert batch.adaptive and batch.target_latency == 2.0
    assert batch.first_rows == 10_000 and batch.max_rows == 1_000_000
    # A limit below the default start: the start follows the limit.
    assert load(tmp_path, "{max_rows: auto, max_rows_limit: 2000}").first_rows == 2000


def test_auto_from_an_environment_variable(tmp_path: Path) -> None:
    assert load(tmp_path, '{max_rows: "${ROWS}"}', {"ROWS": "auto"}).adaptive
    fixed = load(tmp_path, '{max_rows: "${ROWS}"}', {"ROWS": "5000"})
    assert not fixed.adaptive and fixed.max_rows == 5000


def test_a_fixed_size_is_as_before(tmp_path: Path) -> None:
    batch = load(tmp_path, "{max_rows: 5000}")
    assert not batch.adaptive and batch.max_rows == batch.first_rows == 5000
    # The latency target is measured against (suggestions) even for a fixed size.
    assert load(tmp_path, "{max_rows: 5000, target_latency: 1s}").target_latency == 1.0


@pytest.mark.parametrize(("batch", "expected"), [
    ("{max_rows: fast}", "resources[0].batch.max_rows: expected a positive integer or auto, got 'fast'"),
    ("{max_rows: AUTO}", "expected a positive integer or auto, got 'AUTO'"),
    ("{max_rows: 0}", "resources[0].batch.max_rows"),
    ("{max_rows: 5000, initial_rows: 500}", "initial_rows: only with max_rows: auto"),
    ("{max_rows: 5000, max_rows_limit: 9}", "max_rows_limit: only with max_rows: auto"),
    ("{max_rows: auto, initial_rows: 0}", "resources[0].batch.initial_rows"),
    ("{max_rows: auto, initial_rows: 5000, max_rows_limit: 1000}", "initial_rows (5000) is above max_rows_limit"),
    ("{max_rows: auto, min_rows: 600, initial_rows: 500}", "min_rows (600) is above initial_rows (500)"),
    ("{max_rows: auto, target_latency: 0s}", "resources[0].batch.target_latency"),
    ("{max_rows: auto, target_latency: soon}", "resources[0].batch.target_latency"),
    ("{max_rows: auto, target_latncy: 2s}", "did you mean 'target_latency'?"),
])
def test_bad_values_are_config_errors(tmp_path: Path, batch: str, expected: str) -> None:
    message = error_of(tmp_path, batch)
    assert expected in message
    assert f"{tmp_path / 'conduitd.yaml'}:9" in message  # the line of the batch section
