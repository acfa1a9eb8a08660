"""Configs written for the seed tool (Conduit Core) load unchanged (issue 12, items 1 and 7): the
eight connector pairs its users had, every seed key (loads, or the exact clear error), `.env` and
`$VAR`, and `migrate-config` output that loads as native config equal to the translation."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from conduitd.commands.migrate import migrated
from conduitd.config import CSV_NULL_VALUES, Config, FileSourceConfig, PostgresDestinationConfig
from conduitd.configfile import load_config
from conduitd.errors import ConfigError
from conduitd.sources.tables.postgres_settings import PostgresSourceConfig

PG = """\
    host: localhost
    port: 5432
    database: postgres
    user: postgres
    password: secret-pw
"""
CSV_SOURCE = """\
version: "1.0"
project:
  name: "pipeline"
  environment: "production"
sources:
  - name: csv_source
    type: csv
    path: "./data/input.csv"
    delimiter: ","
    has_header: true
"""
CSV_TO_PG = CSV_SOURCE + """\
destinations:
  - name: pg_dest
    type: postgresql
""" + PG + """\
    db_schema: public
    table: users_backup
resources:
  - name: load_to_postgres
    source: csv_source
    destination: pg_dest
    query: "n/a"
    mode: append
"""
CSV_TO_JSON = CSV_SOURCE + """\
destinations:
  - {name: json_out, type: json, path: ./output/users.json, indent: 2}
resources:
  - {name: users_csv_to_json, source: csv_source, destination: json_out, query: "n/a"}
"""
JSON_TO_CSV = """\
sources:
  - {name: json_users, type: json, path: ./output/users.json}
destinations:
  - {name: csv_out, type: csv, path: ./output/users.csv}
resources:
  - {name: users_json_to_csv, source: json_users, destination: csv_out, query: "n/a"}
"""
PG_TO_CSV = """\
sources:
  - name: postgres_source
    type: postgres
""" + PG + """\
destinations:
  - {name: csv_output, type: csv, path: ./output/postgres_export.csv}
resources:
  - {name: export_users, source: postgres_source, destination: csv_output, query: "SELECT * FROM users ORDER BY id"}
"""
PG_TO_PG_FULL_REFRESH = """\
sources:
  - name: postgres_source
    type: postgres
""" + PG + """\
destinations:
  - name: postgres_dest
    type: postgres
""" + PG + """\
    table: users_backup
    schema: public
resources:
  - name: full_refresh_test
    source: postgres_source
    destination: postgres_dest
    query: "SELECT * FROM users"
    mode: full_refresh
"""
CSV_TO_SNOWFLAKE = CSV_SOURCE + """\
destinations:
  - {name: snowflake_dw, type: snowflake, account: "${SNOWFLAKE_ACCOUNT}", table: target_table}
resources:
  - name: csv_to_snowflake
    source: csv_source
    destination: snowflake_dw
    query: ""
    mode: "append"
"""
JSON_TO_S3 = """\
sources:
  - {name: json_source, type: json, path: ./data/input.json, encoding: utf-8}
destinations:
  - {name: s3_dest, type: s3, bucket: my-output-bucket, path: output/data.json}
resources:
  - {name: json_to_s3, source: json_source, destination: s3_dest, query: "", mode: append}
"""
CSV_TO_BIGQUERY = CSV_SOURCE + """\
destinations:
  - {name: bq, type: bigquery, project: "p", dataset: analytics, table: target_table}
resources:
  - {name: csv_to_bigquery, source: csv_source, destination: bq, query: "", mode: append}
"""


def write(tmp_path: Path, text: str, name: str = "seed.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ or {})
    return str(info.value)


@pytest.fixture(autouse=True)
def _no_dotenv_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # `.env` is read from the working directory: the test's own


def test_csv_to_postgresql_loads_as_the_seed_meant_it(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CSV_TO_PG), {})
    source, destination, pipeline = config.sources[0], config.destinations[0], config.resources[0]
    assert isinstance(source, FileSourceConfig)
    assert (source.format, source.path, source.csv_delimiter, source.null_values) == \
        ("csv", "./data/input.csv", ",", CSV_NULL_VALUES)
    assert isinstance(destination, PostgresDestinationConfig)
    params = destination.connect_params
    assert (params.hosts, params.ports, params.database, params.user, params.password) == \
        (("localhost",), (5432,), "postgres", "postgres", "secret-pw")
    assert destination.db_schema == "public"
    assert (pipeline.table, pipeline.mode, pipeline.query) == ("users_backup", "append", None)


def test_full_refresh_and_its_seed_spellings_load_as_full_refresh(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, PG_TO_PG_FULL_REFRESH), {}).resources[0].mode == "full_refresh"
    for spelling in ("truncate", "replace"):
        text = PG_TO_PG_FULL_REFRESH.replace("    mode: full_refresh", f"    write_mode: {spelling}")
        assert load_config(write(tmp_path, text), {}).resources[0].mode == "full_refresh"


def test_postgres_to_postgres_query_and_connection_fields(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, PG_TO_PG_FULL_REFRESH.replace("    mode: full_refresh\n", "")), {})
    source = config.sources[0]
    assert isinstance(source, PostgresSourceConfig)
    assert (source.connect_params.database, source.connect_params.password) == ("postgres", "secret-pw")
    assert config.resources[0].query == "SELECT * FROM users"
    assert config.resources[0].table == "users_backup"


@pytest.mark.parametrize("text, message", [
    (CSV_TO_BIGQUERY, "destinations[0].type: BigQuery cannot be tested here, so conduitd does not offer it: load "
                      "into `postgres`"),
])
def test_destinations_conduitd_lacks_say_so_and_what_to_use(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    assert message in error_of(path)
    assert "secret-pw" not in error_of(path)


@pytest.mark.parametrize("text, type_, check", [
    (CSV_TO_JSON, "file", lambda d: d.format == "json" and d.indent == 2),
    (JSON_TO_CSV, "file", lambda d: d.format == "csv"),
    (PG_TO_CSV, "file", lambda d: d.format == "csv"),
    (JSON_TO_S3, "file", lambda d: d.path == "s3://my-output-bucket/output/data.json"),
    (CSV_TO_SNOWFLAKE, "snowflake", lambda d: True),
])
def test_file_s3_and_snowflake_destinations_load(tmp_path: Path, text: str, type_: str,
                                                 check: Callable[[Any], bool]) -> None:
    config = load_config(write(tmp_path, text), {"SNOWFLAKE_ACCOUNT": "acct", "SNOWFLAKE_USER": "loader",
                                                 "SNOWFLAKE_DATABASE": "dw", "SNOWFLAKE_PASSWORD": "pw"})
    destination = config.destinations[0]
    assert destination.type == type_ and check(destination)


@pytest.mark.parametrize("text", [JSON_TO_CSV, JSON_TO_S3])
def test_a_json_source_is_the_file_source_that_detects_arrays_objects_and_lines(tmp_path: Path, text: str) -> None:
    text = text.split("destinations:")[0] + "destinations:\n  - {name: db, type: sqlite, path: out.db}\n" \
        "resources:\n  - {name: r, source: " + ("json_users" if "json_users" in text else "json_source") + \
        ", destination: db, query: \"n/a\"}\n"
    source = load_config(write(tmp_path, text), {}).sources[0]
    assert isinstance(source, FileSourceConfig) and source.format == "jsonl"


S3_SOURCES = """\
sources:
  - {name: csv_s3, type: csv, bucket: my-input-bucket, path: incoming/users.csv, aws_access_key_id: AKIDEXAMPLE,
     aws_secret_access_key: s3cr3t-source-key, region_name: eu-west-1}
  - {name: prefix_s3, type: s3, bucket: my-input-bucket, path: /incoming/, format: ndjson}
destinations:
  - {name: db, type: sqlite, path: out.db}
resources:
  - {name: users, source: csv_s3, destination: db, query: "n/a"}
  - {name: events, source: prefix_s3, destination: db, query: "n/a"}
"""


def test_a_file_source_with_a_bucket_reads_s3(tmp_path: Path) -> None:
    csv_source, prefix_source = load_config(write(tmp_path, S3_SOURCES), {}).sources
    assert isinstance(csv_source, FileSourceConfig) and isinstance(prefix_source, FileSourceConfig)
    assert (csv_source.path, csv_source.format, csv_source.region) == \
        ("s3://my-input-bucket/incoming/users.csv", "csv", "eu-west-1")
    assert csv_source.access_key_id is not None and csv_source.secret_access_key is not None
    assert csv_source.secret_access_key.get_secret_value() == "s3cr3t-source-key"
    assert (prefix_source.path, prefix_source.format) == ("s3://my-input-bucket/incoming/", "jsonl")
    printed = migrated(write(tmp_path, S3_SOURCES), {})
    assert "path: s3://my-input-bucket/incoming/users.csv" in printed


def test_a_file_source_with_an_empty_bucket_names_it(tmp_path: Path) -> None:
    text = S3_SOURCES.replace("bucket: my-input-bucket, path: incoming/users.csv", 'bucket: "", path: x.csv')
    assert "sources[0].bucket" in error_of(write(tmp_path, text))


def test_csv_source_into_a_database_conduitd_has(tmp_path: Path) -> None:
    text = CSV_TO_BIGQUERY.replace("type: bigquery, project: \"p\", dataset: analytics,", "type: sqlite, path: o.db,")
    config = load_config(write(tmp_path, text), {})
    assert config.resources[0].table == "target_table"


def test_every_destination_key_is_applied_or_noted_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = CSV_TO_PG.replace("    table: users_backup\n", """\
    table: users_backup
    write_mode: merge
    primary_keys: [id]
    schema_evolution: {enabled: true, mode: AUTO, auto_add_columns: true, on_column_removed: ignore,
                       on_type_change: fail, track_history: true, update_yaml: false}
    auto_create_table: true
    validate_schema: true
    strict_validation: false
    required_columns: [id, email]
    type_mappings: {id: BIGINT}
    custom_null_values: ["-", "missing"]
    strict_type_coercion: true
    isolation_level: SERIALIZABLE
    format: csv
    indent: 2
""").replace("    mode: append\n", "")
    with caplog.at_level(logging.INFO, logger="conduitd.configfile"):
        config = load_config(write(tmp_path, text), {})
    pipeline = config.resources[0]
    assert (pipeline.mode, pipeline.unique_key, pipeline.table) == ("upsert", ("id",), "users_backup")
    evolution = pipeline.schema_evolution
    assert (evolution.mode, evolution.on_column_removed, evolution.on_type_change) == ("auto", "warn", "fail")
    assert [(c.column, c.check, c.action) for c in pipeline.quality_checks] == \
        [("id", "not_null", "fail"), ("email", "not_null", "fail")]
    source = config.sources[0]
    assert isinstance(source, FileSourceConfig) and source.null_values == (*CSV_NULL_VALUES, "-", "missing")
    notes = [r.getMessage() for r in caplog.records]
    for key in ("auto_create_table", "validate_schema", "strict_validation", "type_mappings",
                "strict_type_coercion", "isolation_level", "format", "indent", "track_history", "update_yaml",
                "auto_add_columns"):
        dropped = [n for n in notes if f"`{key}` dropped:" in n]
        assert len(dropped) == 1, (key, notes)
    assert any(n.startswith(f"{tmp_path / 'seed.yml'}:32: destinations[0].isolation_level: `isolation_level` "
                            "dropped: conduitd writes each batch") for n in notes), notes


def test_a_resources_own_keys_win_over_its_destinations(tmp_path: Path) -> None:
    text = CSV_TO_PG.replace("    table: users_backup\n", "    table: users_backup\n    write_mode: merge\n"
                             "    primary_keys: [id]\n").replace("    mode: append\n", "    mode: append\n"
                                                                  "    table: mine\n")
    pipeline = load_config(write(tmp_path, text), {}).resources[0]
    assert (pipeline.mode, pipeline.table) == ("append", "mine")


def test_schema_evolution_enabled_false_applies_no_ddl(tmp_path: Path) -> None:
    text = CSV_TO_PG.replace("    table: users_backup\n", "    table: t\n    schema_evolution: {enabled: false}\n")
    assert load_config(write(tmp_path, text), {}).resources[0].schema_evolution.mode == "warn"
    text = text.replace("{enabled: false}", "{enabled: true}")
    assert load_config(write(tmp_path, text), {}).resources[0].schema_evolution.mode == "manual"


def test_resource_keys(tmp_path: Path) -> None:
    text = PG_TO_PG_FULL_REFRESH.replace("    mode: full_refresh\n", """\
    mode: merge
    incremental_column: updated_at
    export_schema_path: schemas/users.json
    quality_checks:
      - {column: email, check: REGEX, pattern: "^[^@]+@[^@]+$", action: Warn}
      - {column: id, check: unique, action: DLQ}
""").replace("    table: users_backup\n", "    table: users_backup\n    primary_keys: [id]\n")
    pipeline = load_config(write(tmp_path, text), {}).resources[0]
    assert pipeline.incremental is not None and pipeline.incremental.column == "updated_at"
    assert [(c.check, c.action) for c in pipeline.quality_checks] == [("regex", "warn"), ("unique", "dlq")]
    text = text.replace("    incremental_column: updated_at\n",
                        "    incremental: {column: updated_at, strategy: timestamp, detect_gaps: true}\n")
    pipeline = load_config(write(tmp_path, text), {}).resources[0]
    assert pipeline.incremental is not None and pipeline.incremental.strategy == "timestamp"


def test_a_file_source_drops_query_na_and_incremental_and_refuses_a_real_query(tmp_path: Path) -> None:
    text = CSV_TO_PG.replace("    mode: append\n", "    mode: append\n    incremental_column: id\n")
    assert load_config(write(tmp_path, text), {}).resources[0].incremental is None
    path = write(tmp_path, CSV_TO_PG.replace('query: "n/a"', 'query: "SELECT 1"'))
    assert error_of(path) == (f"{path}:25: resources[0].query: a file source reads whole files: `query` is for "
                              "database sources (write `query: \"n/a\"` or leave it out)")


def test_environment_fallbacks_of_the_seed_tool_and_no_secret_shown(tmp_path: Path) -> None:
    text = CSV_TO_PG.replace(PG, "")
    environ = {"POSTGRES_HOST": "db.example", "POSTGRES_PORT": "6432", "POSTGRES_DB": "wh",
               "POSTGRES_USER": "loader", "POSTGRES_PASSWORD": "env-secret"}
    destination = load_config(write(tmp_path, text), environ).destinations[0]
    assert isinstance(destination, PostgresDestinationConfig)
    params = destination.connect_params
    assert (params.hosts, params.ports, params.database, params.user, params.password) == \
        (("db.example",), (6432,), "wh", "loader", "env-secret")
    assert "env-secret" not in repr(destination)
    output = migrated(write(tmp_path, text), environ)
    assert "env-secret" not in output and "${POSTGRES_HOST}" in output and "POSTGRES_PASSWORD" in output


def test_missing_connection_keys_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, CSV_TO_PG.replace(PG, ""))
    assert f"{path}:12: destinations[0]: `dsn` or `host` is required" in error_of(path)
    path = write(tmp_path, CSV_TO_PG.replace("    database: postgres\n", ""))
    assert f"{path}:12: destinations[0]: `database` is required with `host` (or give a `dsn`)" in error_of(path)
    path = write(tmp_path, CSV_TO_PG.replace("    db_schema: public\n", "    db_schema: public\n    schema: x\n"))
    assert error_of(path) == f"{path}:19: destinations[0].db_schema: `db_schema` and `schema` are one setting: keep one"


def test_connection_string_is_the_dsn(tmp_path: Path) -> None:
    text = CSV_TO_PG.replace(PG, "    connection_string: postgresql://u:cs-secret@h:5433/d\n")
    destination = load_config(write(tmp_path, text), {}).destinations[0]
    assert isinstance(destination, PostgresDestinationConfig)
    assert (destination.connect_params.ports, destination.connect_params.password) == ((5433,), "cs-secret")
    path = write(tmp_path, text.replace("postgresql://", "nonsense://"))
    message = error_of(path)
    assert f"{path}:14: destinations[0].connection_string:" in message and "cs-secret" not in message


def test_jargon_is_translated_and_unknown_keys_stay_errors(tmp_path: Path) -> None:
    path = write(tmp_path, CSV_TO_PG.replace("    type: csv\n", "    type: ndjson\n"))
    assert error_of(path) == (f"{path}:7: sources[0].type: `ndjson` is a file format: use `type: file` with "
                              "`format: jsonl`, or `type: json`")
    path = write(tmp_path, CSV_TO_PG.replace("    type: csv\n", "    type: tsv\n"))
    assert error_of(path) == f"{path}:7: sources[0].type: `tsv` is a file format: use `type: file` or `type: csv`"
    path = write(tmp_path, CSV_TO_PG.replace("    has_header: true\n", "    has_headers: true\n"))
    assert f"{path}:10: sources[0].has_headers: unknown key" in error_of(path)
    path = write(tmp_path, CSV_TO_PG.replace("    has_header: true\n", "    has_header: false\n"))
    assert "a file without a header line is not supported (add one)" in error_of(path)


def test_a_seed_key_where_it_means_nothing_gets_no_unrelated_suggestion(tmp_path: Path) -> None:
    text = CSV_TO_PG.replace("    delimiter: \",\"\n", "    warehouse: w\n")
    message = error_of(write(tmp_path, text))
    assert "sources[0].warehouse: unknown key; known keys:" in message and "did you mean" not in message


def test_dotenv_fills_in_and_the_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("# credentials\nPG_PW=from-dotenv\nexport TABLE_NAME='from dotenv'\n"
                                   "POSTGRES_HOST=dotenv-host\n")
    text = CSV_TO_PG.replace("password: secret-pw", "password: $PG_PW").replace("table: users_backup",
                                                                                 "table: ${TABLE_NAME}")
    text = text.replace("    host: localhost\n", "")
    config = load_config(write(tmp_path, text), {"TABLE_NAME": "from_env"})
    destination = config.destinations[0]
    assert isinstance(destination, PostgresDestinationConfig)
    assert destination.connect_params.password == "from-dotenv"
    assert destination.connect_params.hosts == ("dotenv-host",)
    assert config.resources[0].table == "from_env"


def test_bare_dollar_var_expands_and_an_unset_one_stays_as_written(tmp_path: Path) -> None:
    text = CSV_TO_PG.replace("path: \"./data/input.csv\"", "path: \"$DATA_DIR/input.csv\"")
    assert load_config(write(tmp_path, text), {"DATA_DIR": "/srv"}).sources[0].path == "/srv/input.csv"  # type: ignore[attr-defined]
    assert load_config(write(tmp_path, text), {}).sources[0].path == "$DATA_DIR/input.csv"  # type: ignore[attr-defined]


def _same(a: Config, b: Config) -> bool:
    return a.model_dump() == b.model_dump() and [type(s) for s in a.sources] == [type(s) for s in b.sources]


@pytest.mark.parametrize("text", [
    CSV_TO_PG,
    PG_TO_PG_FULL_REFRESH.replace("    mode: full_refresh\n", "    write_mode: merge\n").replace(
        "    table: users_backup\n", "    table: users_backup\n    primary_keys: [id]\n    required_columns: [id]\n"
        "    schema_evolution: {enabled: false, track_history: true}\n"),
    CSV_TO_BIGQUERY.replace("type: bigquery, project: \"p\", dataset: analytics,", "type: sqlite, path: o.db,"),
])
def test_migrate_config_output_loads_as_native_config_equal_to_the_translation(tmp_path: Path, text: str) -> None:
    seed = write(tmp_path, text)
    output = migrated(seed, {})
    native = write(tmp_path, output, "native.yml")
    assert _same(load_config(native, {}), load_config(seed, {}))
    assert "# `" in output  # changed keys are commented
    assert migrated(native, {}).count("# `") == 0  # native in, nothing to change
    data = yaml.safe_load(output)
    assert "version" not in data and "project" not in data


def test_a_native_config_passes_through_untouched(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = """\
sources: [{name: files, type: file, path: "data/*.jsonl"}]
destinations: [{name: wh, type: postgres, dsn: "postgresql://u@h/d", schema: public}]
resources: [{name: orders, source: files, destination: wh, mode: upsert, unique_key: [id]}]
"""
    with caplog.at_level(logging.INFO, logger="conduitd.configfile"):
        load_config(write(tmp_path, text), {"POSTGRES_PASSWORD": "x"})
    assert caplog.records == []


def test_migrate_config_command_prints_and_exits_0(tmp_path: Path) -> None:
    import io

    from conduitd.commands.migrate import migrate_config

    out = io.StringIO()
    assert migrate_config(write(tmp_path, CSV_TO_PG), out) == 0
    assert 'type: "file"  # `type: csv` is `type: file` with `format: csv`' in out.getvalue()
    assert "secret-pw" in out.getvalue()  # a password written in the file stays where the user put it
    with pytest.raises(ConfigError, match="BigQuery cannot be tested here"):
        migrate_config(write(tmp_path, CSV_TO_BIGQUERY), out)


def test_custom_null_values_of_two_destinations_of_one_csv_source_must_agree(tmp_path: Path) -> None:
    text = CSV_TO_PG.replace("    table: users_backup\n", "    table: users_backup\n    custom_null_values: ['-']\n")
    text += "  - {name: second, source: csv_source, destination: other}\n"
    text = text.replace("resources:\n", "  - {name: other, type: sqlite, path: o.db, custom_null_values: ['?']}\n"
                                        "resources:\n")
    assert "source 'csv_source' feeds destinations with different `custom_null_values`: set `null_values` on the " \
           "source instead" in error_of(write(tmp_path, text))


def test_json_source_format_spellings_all_read_with_detection(tmp_path: Path) -> None:
    for spelling in ("ndjson", "json", "array"):
        text = JSON_TO_CSV.replace("path: ./output/users.json}", f"path: ./output/users.json, format: {spelling}}}")
        text = text.replace("{name: csv_out, type: csv, path: ./output/users.csv}", "{name: csv_out, type: sqlite, "
                                                                                    "path: o.db}")
        source = load_config(write(tmp_path, text), {}).sources[0]
        assert isinstance(source, FileSourceConfig) and source.format == "jsonl"
