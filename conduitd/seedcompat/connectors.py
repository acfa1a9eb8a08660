"""Sources and destinations as the seed tool (Conduit Core) wrote them, in conduitd's shape.

- `type: csv | json | parquet` is `type: file` with that `format` (`json` reads a JSON array, a
  single object or JSON lines, told apart from the text: conduitd's `jsonl` format does that);
  `type: postgresql` is `type: postgres`. A plugin that registers one of these types keeps it.
- `connection_string` is `dsn`, `db_schema` is `schema`; a database section without a DSN takes
  what it lacks from the environment variables the seed tool read (`PG_FALLBACKS`,
  `SNOWFLAKE_FALLBACKS`) as `${VAR}` references and `{from: env}` secrets: never the values.
- A destination's pipeline settings (`table`, `write_mode`, ...) are taken out of it and handed to
  `pipelines`, which puts them on the resources that use it.
- Types conduitd does not have are refused saying what to use instead: S3, Snowflake and file
  destinations until their connectors are installed, BigQuery always.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conduitd import registry
from conduitd.errors import ConfigError
from conduitd.registry import Kind
from conduitd.seedcompat import KeyPath, SeedError, Translation

FILE_TYPES = {"csv": "csv", "json": "jsonl", "parquet": "parquet"}
"""Seed source types that are conduitd file-source formats."""
_JSON_WORDS = {"json", "jsonl", "ndjson", "array", "lines", "auto"}
_FORMAT_WORDS = {"jsonl", "ndjson", "tsv", "txt", "jsonlines"}
PG_FALLBACKS: dict[str, tuple[str, ...]] = {
    "host": ("POSTGRES_HOST",), "port": ("POSTGRES_PORT",), "database": ("POSTGRES_DATABASE", "POSTGRES_DB"),
    "user": ("POSTGRES_USER",), "password": ("POSTGRES_PASSWORD",)}
SNOWFLAKE_FALLBACKS: dict[str, tuple[str, ...]] = {
    "account": ("SNOWFLAKE_ACCOUNT",), "user": ("SNOWFLAKE_USER",), "password": ("SNOWFLAKE_PASSWORD",),
    "warehouse": ("SNOWFLAKE_WAREHOUSE",), "database": ("SNOWFLAKE_DATABASE",), "schema": ("SNOWFLAKE_SCHEMA",)}
PIPELINE_KEYS = ("table", "mode", "write_mode", "primary_keys", "schema_evolution", "auto_create_table",
                 "validate_schema", "strict_validation", "required_columns", "type_mappings", "custom_null_values",
                 "strict_type_coercion", "isolation_level", "update_strategy", "checkpoint_interval",
                 "enable_type_coercion", "format", "indent")
"""Seed destination keys that are a pipeline's settings in conduitd (where the model lacks them)."""
_FILE_SOURCE_NOTES = {
    "has_header": "conduitd reads the column names from a CSV file's first line",
    "resume": "conduitd always resumes: each file's byte offset is checkpointed with the rows",
    "checkpoint_column": "conduitd resumes files by byte offset, not by a column",
    "infer_schema": "conduitd types every batch from its values (and from the existing table)",
    "schema_sample_size": "conduitd types every batch from all its values, not a sample",
}
_BIGQUERY = ("BigQuery cannot be tested here, so conduitd does not offer it: load into `postgres` "
             "or `snowflake` instead")
Defaults = dict[str, dict[str, tuple[Any, KeyPath]]]
"""Destination name -> {pipeline key: (value, path in the file)}."""


def translate_sections(work: Translation, environ: Mapping[str, str]) -> Defaults:
    """Translate every source and destination section in place; return the destinations'
    pipeline settings for `pipelines`."""
    defaults: Defaults = {}
    for kind in ("source", "destination"):
        sections = work.data.get(f"{kind}s")
        if not isinstance(sections, list):
            continue
        for index, section in enumerate(sections):
            if isinstance(section, dict) and isinstance(section.get("type"), str):
                taken = _section(work, kind, (f"{kind}s", index), section, environ)
                if kind == "destination" and isinstance(section.get("name"), str):
                    defaults[section["name"]] = taken
    return defaults


def _section(work: Translation, kind: Kind, at: KeyPath, section: dict[str, Any],
             environ: Mapping[str, str]) -> dict[str, tuple[Any, KeyPath]]:
    type_ = _native_type(work, kind, at, section)
    fields = _model_keys(kind, type_)
    if type_ == "file" and kind == "source":
        _file_source(work, at, section)
    elif type_ == "postgres":
        _connection(work, at, section, PG_FALLBACKS, environ, fields)
    elif type_ == "snowflake":
        _connection(work, at, section, SNOWFLAKE_FALLBACKS, environ, fields)
    elif type_ == "mysql":
        _rename(work, at, section, "connection_string", "dsn")
    if kind != "destination":
        return {}
    taken = {}
    for key in PIPELINE_KEYS:
        if key in section and key not in fields:
            taken[key] = (section.pop(key), (*at, key))
    return taken


def _native_type(work: Translation, kind: Kind, at: KeyPath, section: dict[str, Any]) -> str:
    """The section's conduitd type, its `type` (and `format`) rewritten when it was a seed alias."""
    type_: str = section["type"]
    known = registry.entries(kind)
    if type_ in known:
        return type_
    where = (*at, "type")
    if type_ == "bigquery":
        raise SeedError(where, _BIGQUERY)
    if type_ == "postgresql":
        section["type"] = "postgres"
        work.note(where, "`type: postgresql` is `type: postgres`")
        return "postgres"
    if type_ in FILE_TYPES:
        if kind == "destination" and "file" not in known:
            raise SeedError(where, f"`{type_}` files as a destination are not available yet in conduitd: write to "
                                   f"{_database_types()} meanwhile")
        section["type"] = "file"
        native = _file_format(type_, section.get("format"), kind, (*at, "format"))
        section["format"] = native
        work.note(where, f"`type: {type_}` is `type: file` with `format: {native}`")
        return "file"
    if type_ == "s3" and (kind == "source" or "file" in known):
        return _s3_file(work, kind, at, section)
    if type_ in ("s3", "snowflake"):
        raise SeedError(where, f"the `{type_}` {kind} is not available yet in conduitd (its connector is not "
                               f"installed): use {_database_types()} meanwhile")
    if type_.lower() in _FORMAT_WORDS:
        raise SeedError(where, f"`{type_}` is a file format: use `type: file` with `format: jsonl`, or `type: json`"
                        if "json" in type_.lower() or "nd" in type_.lower() else
                        f"`{type_}` is a file format: use `type: file` or `type: csv`")
    return type_


def _s3_file(work: Translation, kind: Kind, at: KeyPath, section: dict[str, Any]) -> str:
    """The seed's `type: s3` with `bucket` and `path` (or `key`): a file source or destination at
    s3://bucket/path (its format from `format`, else from the path's suffix)."""
    _s3_path(work, kind, at, section)
    work.note((*at, "type"), f"`type: s3` with `bucket` and `path` is `type: file` with `path: {section['path']}`")
    return "file"


def _s3_path(work: Translation, kind: Kind, at: KeyPath, section: dict[str, Any]) -> None:
    """`bucket` and `path` (or `key`) made one `path: s3://bucket/path`, the seed's AWS key names
    made conduitd's; `type` becomes `file`."""
    bucket = section.pop("bucket", None)
    if not isinstance(bucket, str) or not bucket.strip():
        raise SeedError((*at, "bucket"), f"an `s3` {kind} needs `bucket` (the bucket's name)")
    where = (*at, "path") if "path" in section else (*at, "key")
    key = str(section.pop("path", None) or section.pop("key", None) or "").lstrip("/")
    if kind == "destination":
        key = key.rstrip("/")  # a source's prefix keeps its `/`: it says "the objects under it"
    section["type"] = "file"
    section["path"] = f"s3://{bucket.strip()}/{key}" if key else f"s3://{bucket.strip()}"
    work.origins[(*at, "path")] = where
    for old, new in (("aws_access_key_id", "access_key_id"), ("aws_secret_access_key", "secret_access_key"),
                     ("aws_session_token", "session_token"), ("region_name", "region")):
        _rename(work, at, section, old, new)


def _file_format(type_: str, given: object, kind: Kind, at: KeyPath) -> str:
    if type_ != "json" or given is None:
        return FILE_TYPES[type_] if kind == "source" or type_ != "json" else "json"
    if not isinstance(given, str) or given.lower() not in _JSON_WORDS:
        raise SeedError(at, f"a JSON file's `format` is `json` (an array), or `ndjson` (JSON lines); got {given!r}")
    if kind == "source":
        return "jsonl"  # conduitd's JSON reader tells arrays, single objects and JSON lines apart itself
    return "jsonl" if given.lower() in ("ndjson", "jsonl", "lines", "jsonlines") else "json"


def _file_source(work: Translation, at: KeyPath, section: dict[str, Any]) -> None:
    fmt = section.get("format")
    if isinstance(fmt, str) and fmt.lower() in _JSON_WORDS and fmt != "jsonl":
        section["format"] = "jsonl"
        work.note((*at, "format"), f"`format: {fmt}` is `jsonl` (arrays, single objects and JSON lines are all read)")
    if "bucket" in section:
        _s3_path(work, "source", at, section)
        work.note((*at, "path"), f"`bucket` and `path` are `path: {section['path']}`")
    _rename(work, at, section, "delimiter", "csv_delimiter")
    header = section.get("has_header")
    if header is False:
        raise SeedError((*at, "has_header"), "conduitd reads the column names from a CSV file's first line: a "
                                             "file without a header line is not supported (add one)")
    for key, why in _FILE_SOURCE_NOTES.items():
        if key in section:
            section.pop(key)
            work.note(at, f"`{key}` dropped: {why}", origin=(*at, key), removed=True)


def _connection(work: Translation, at: KeyPath, section: dict[str, Any], fallbacks: dict[str, tuple[str, ...]],
                environ: Mapping[str, str], fields: set[str]) -> None:
    """`connection_string` and `db_schema` renamed; without a DSN, the keys the model takes that
    the section lacks, from the seed tool's environment variables when they are set."""
    if "dsn" in fields:
        _rename(work, at, section, "connection_string", "dsn")
    if "db_schema" in section and "schema" in section:
        raise SeedError((*at, "db_schema"), "`db_schema` and `schema` are one setting: keep one")
    if "schema" in fields:
        _rename(work, at, section, "db_schema", "schema")
    if "dsn" in section or "connection_string" in section:
        return
    for key, names in fallbacks.items():
        name = next((n for n in names if n in environ), None)
        if key in section or name is None or key not in fields:
            continue
        section[key] = {"from": "env", "name": name} if key == "password" else f"${{{name}}}"
        work.note((*at, key), f"from the environment variable {name}, as Conduit Core read it", origin=at)


def _rename(work: Translation, at: KeyPath, section: dict[str, Any], old: str, new: str) -> None:
    """`old` renamed `new`, keeping the key's place; an error when both are given."""
    if old not in section:
        return
    if new in section:
        raise SeedError((*at, old), f"`{old}` is conduitd's `{new}`, which is set too: keep one")
    items = [(new if k == old else k, v) for k, v in section.items()]
    section.clear()
    section.update(items)
    work.origins[(*at, new)] = (*at, old)
    work.note((*at, new), f"`{old}` is `{new}`")


def _model_keys(kind: Kind, type_: str) -> set[str]:
    """The keys the connector's model takes (names and aliases); none when it cannot load."""
    try:
        model = registry.load(kind, type_).config_model
    except ConfigError:
        return set()
    return {k for name, f in model.model_fields.items() for k in (name, f.alias) if k}


def _database_types() -> str:
    shown = [f"`{t}`" for t in registry.types("destination") if t not in ("file", "s3", "snowflake")]
    return ", ".join(shown[:-1]) + f" or {shown[-1]}" if len(shown) > 1 else "".join(shown)
