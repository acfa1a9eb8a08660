"""Config errors name file, key path and line, and exit with code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from conduitd.cli import main
from conduitd.configfile import load_config
from conduitd.errors import ConfigError

GOOD = """\
service:
  health_port: 0
sources:
  - name: files
    type: file
    path: data/*.jsonl
destinations:
  - name: wh
    type: postgres
    dsn: "postgresql://app:s3cret@db:5432/wh"
    schema: raw
resources:
  - name: orders
    source: files
    destination: wh
    mode: upsert
    unique_key: [id]
    batch: {max_rows: 1000, max_bytes: 8MiB, max_wait: 250ms}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conduitd.yaml"
    path.write_text(text)
    return path


def error_of(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ or {})
    return str(caught.value)


def test_a_good_config_parses_into_frozen_models(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), {})
    pipeline = config.resources[0]
    assert pipeline.mode == "upsert" and pipeline.unique_key == ("id",)
    assert pipeline.batch.max_bytes == 8 * 1024 * 1024
    assert pipeline.batch.max_wait == pytest.approx(0.25)
    assert pipeline.dlq_table == "orders_dlq"
    with pytest.raises(ValueError, match="frozen"):
        pipeline.mode = "append"  # type: ignore[misc]


def test_unknown_key_names_file_line_path_and_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("    mode: upsert", "    mdoe: upsert"))
    message = error_of(path)
    assert f"{path}:16: resources[0].mdoe: unknown key; did you mean 'mode'?" in message


def test_unknown_key_in_a_discriminated_section(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("    path: data/*.jsonl", "    paht: data/*.jsonl"))
    message = error_of(path)
    assert f"{path}:6: sources[0].paht: unknown key; did you mean 'path'?" in message


def test_bad_type_names_the_value(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("max_rows: 1000", "max_rows: lots"))
    message = error_of(path)
    assert f"{path}:18: resources[0].batch.max_rows:" in message
    assert "'lots'" in message


def test_bad_duration_and_size(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("max_bytes: 8MiB", "max_bytes: 8 parsecs"))
    assert "resources[0].batch.max_bytes" in error_of(path)
    path = write(tmp_path, GOOD.replace("max_wait: 250ms", "max_wait: soon"))
    assert "resources[0].batch.max_wait" in error_of(path)


def test_missing_env_var_is_an_error_with_its_name(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('"postgresql://app:s3cret@db:5432/wh"', '"${WAREHOUSE_DSN}"'))
    message = error_of(path)
    assert f"{path}:10: destinations[0].dsn: environment variable WAREHOUSE_DSN is not set" in message


def test_env_vars_and_defaults_expand(tmp_path: Path) -> None:
    text = GOOD.replace("data/*.jsonl", "${DATA_DIR:-/srv/in}/*.jsonl").replace("schema: raw", "schema: ${SCHEMA}")
    config = load_config(write(tmp_path, text), {"SCHEMA": "landing"})
    assert config.sources[0].path == "/srv/in/*.jsonl"
    assert config.destinations[0].db_schema == "landing"  # type: ignore[union-attr]
    config = load_config(write(tmp_path, text), {"SCHEMA": "x", "DATA_DIR": "/d"})
    assert config.sources[0].path == "/d/*.jsonl"


def test_dollar_dollar_is_a_literal_dollar(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD.replace("data/*.jsonl", "data/$${x}.jsonl")), {})
    assert config.sources[0].path == "data/${x}.jsonl"


def test_seed_aliases_write_mode_merge_and_primary_keys(tmp_path: Path) -> None:
    text = GOOD.replace("    mode: upsert\n    unique_key: [id]\n", "    write_mode: merge\n    primary_keys: [a, b]\n")
    pipeline = load_config(write(tmp_path, text), {}).resources[0]
    assert pipeline.mode == "upsert" and pipeline.unique_key == ("a", "b")


def test_upsert_without_unique_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("    unique_key: [id]\n", ""))
    assert "mode 'upsert' needs 'unique_key'" in error_of(path)


def test_reference_to_an_unknown_source_suggests_one(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("    source: files", "    source: file"))
    assert f"{path}:14: resources[0].source: no source named 'file'; did you mean 'files'?" in error_of(path)


def test_unknown_destination_type(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("type: postgres", "type: oracle"))
    assert "destinations[0]" in error_of(path)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("  - name: orders\n", "  - name: [orders\n"))
    assert f"{path}:" in error_of(path) and "invalid YAML" in error_of(path)


def test_secrets_never_appear_in_errors(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('dsn: "postgresql://app:s3cret@db:5432/wh"', "dsn: [s3cret]"))
    assert "s3cret" not in error_of(path)


def test_cli_exits_2_on_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD.replace("    mode: upsert", "    mdoe: upsert"))
    assert main(["--once", "-c", str(path)]) == 2
    assert "did you mean 'mode'" in capsys.readouterr().err
    assert main(["run", "-c", str(tmp_path / "missing.yaml")]) == 2
    assert main(["run", "--no-such-flag"]) == 2
    assert main(["run", "-c", str(write(tmp_path, GOOD)), "-r", "nope"]) == 2
