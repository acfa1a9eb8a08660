"""Resources (pipelines) as the seed tool (Conduit Core) wrote them, in conduitd's shape.

A seed destination carries the write settings (`table`, `write_mode`, `primary_keys`,
`schema_evolution`, ...); conduitd keeps them on the resource. They are copied onto every
resource that uses the destination, unless the resource sets the key itself (its own keys win).
Then each key becomes its native equivalent, or is dropped with a note saying how conduitd does
it instead (`_HOW`).
"""

from __future__ import annotations

import typing
from typing import Any

from conduitd.config import CSV_NULL_VALUES, PipelineConfig
from conduitd.seedcompat import KeyPath, SeedError, Translation, _copy
from conduitd.seedcompat.connectors import Defaults

_TOP = {
    "version": "conduitd reads every config without a format version",
    "project": "conduitd needs no project section (the config file is the project)",
    "parallel_extraction": "conduitd runs every resource at once, each in its own task",
}
_HOW = {
    "auto_create_table": "conduitd always creates a missing table from the first batch's columns",
    "validate_schema": "conduitd compares every batch with the live table before writing it (and `conduitd "
                       "validate` checks ahead)",
    "strict_validation": "schema differences follow `schema_evolution.mode` (`strict` stops the pipeline)",
    "type_mappings": "conduitd types new columns from the data and keeps an existing table's types: create the "
                     "table with the types you want first",
    "strict_type_coercion": "a value that does not fit its column goes to the DLQ with the reason; the rest of the "
                            "batch is written",
    "enable_type_coercion": "values are converted to the table's column types; one that does not fit goes to the DLQ",
    "isolation_level": "conduitd writes each batch and its checkpoint in one transaction at the database's "
                       "default isolation level",
    "update_strategy": "an upsert updates every column of the row with the same key",
    "checkpoint_interval": "conduitd checkpoints every batch (see `batch.max_rows`)",
    "format": "`format` applies to file destinations only",
    "indent": "`indent` applies to JSON file destinations only",
    "export_schema_path": "export it with `conduitd schema RESOURCE -o PATH` (JSON or YAML by the suffix)",
}
_EVOLUTION_HOW = {
    "auto_add_columns": "`mode: auto` adds new columns (nullable); `manual` and `warn` never apply DDL",
    "track_history": "conduitd records every applied change in its schema history table",
    "update_yaml": "conduitd never rewrites the config; `manual` mode writes the DDL to `migrations_dir`",
}
_MODES = {"append": "append", "merge": "upsert", "upsert": "upsert", "full_refresh": "full_refresh",
          "truncate": "full_refresh", "replace": "full_refresh"}
_NO_QUERY = ("", "n/a", "na", "none")
_DATABASE_SOURCES = ("postgres", "mysql")


def translate_top(work: Translation) -> None:
    for key, why in _TOP.items():
        if key in work.data:
            work.data.pop(key)
            work.note((), f"`{key}` dropped: {why}", origin=(key,), removed=True)


def translate_pipelines(work: Translation, defaults: Defaults) -> None:
    resources = work.data.get("resources")
    sources = work.data.get("sources")
    by_name = {s["name"]: (i, s) for i, s in enumerate(sources if isinstance(sources, list) else [])
               if isinstance(s, dict) and isinstance(s.get("name"), str)}
    nulls: dict[str, tuple[tuple[str, ...], KeyPath]] = {}
    for index, resource in enumerate(resources if isinstance(resources, list) else []):
        if not isinstance(resource, dict):
            continue
        at: KeyPath = ("resources", index)
        _inherit(work, at, resource, defaults.get(str(resource.get("destination")), {}))
        source = by_name.get(str(resource.get("source")))
        source_type = source[1].get("type") if source else None
        _mode(work, at, resource)
        _rename(work, at, resource, "primary_keys", "unique_key")
        _incremental(work, at, resource, source_type)
        _query(work, at, resource, source_type)
        _evolution(work, at, resource)
        _quality(work, at, resource)
        if "custom_null_values" in resource:
            _null_values(work, at, resource, source, nulls)
        for key, why in _HOW.items():
            if key in resource:
                origin = work.origin((*at, key))
                resource.pop(key)
                work.note(at, f"`{key}` dropped: {why}", origin=origin, removed=True)


def _inherit(work: Translation, at: KeyPath, resource: dict[str, Any], taken: dict[str, tuple[Any, KeyPath]]) -> None:
    """The destination's pipeline settings, under the resource's own."""
    groups = ({"mode", "write_mode"}, {"primary_keys", "unique_key"})
    for key, (value, origin) in taken.items():
        group = next((g for g in groups if key in g), {key})
        if group & resource.keys():
            continue  # the resource's own setting wins
        resource[key] = _copy(value)
        work.origins[(*at, key)] = origin
        work.note((*at, key), f"`{key}` of the destination, set on each resource that uses it", origin=origin)


def _mode(work: Translation, at: KeyPath, resource: dict[str, Any]) -> None:
    given = {k: resource[k] for k in ("mode", "write_mode") if k in resource}
    if not given:
        return
    mapped = {k: _mode_of((*at, k), v) for k, v in given.items()}
    if len(set(mapped.values())) > 1:
        raise SeedError((*at, "write_mode"), f"`mode: {given['mode']}` and `write_mode: {given['write_mode']}` "
                                             "disagree: keep one")
    value = next(iter(mapped.values()))
    if "write_mode" in resource:
        if "mode" in resource:
            resource.pop("write_mode")
            work.note(at, "`write_mode` dropped: `mode` says the same", origin=work.origin((*at, "write_mode")),
                      removed=True)
        else:
            _rename(work, at, resource, "write_mode", "mode")
    if resource["mode"] != value:
        work.note((*at, "mode"), f"`{resource['mode']}` is `{value}`", origin=work.origin((*at, "mode")))
        resource["mode"] = value


def _mode_of(path: KeyPath, value: Any) -> str:
    mapped = _MODES.get(value.lower()) if isinstance(value, str) else None
    if mapped is None:
        raise SeedError(path, f"`{path[-1]}` is `append`, `merge` (upsert), `truncate` or `replace` (full refresh); "
                              f"got {value!r}")
    modes = typing.get_args(PipelineConfig.model_fields["mode"].annotation)
    if mapped not in modes:
        raise SeedError(path, f"`{path[-1]}: {value}` (replace the table's contents each run) is not supported yet: "
                              f"conduitd writes {' or '.join(f'`{m}`' for m in modes)}")
    return mapped


def _incremental(work: Translation, at: KeyPath, resource: dict[str, Any], source_type: object) -> None:
    if source_type == "file":
        for key in ("incremental", "incremental_column"):
            if key in resource:
                resource.pop(key)
                work.note(at, f"`{key}` dropped: a file source reads each record once, resuming at the byte offset "
                              "it stopped at", origin=work.origin((*at, key)), removed=True)
        return
    if "incremental_column" in resource:
        if "incremental" in resource:
            raise SeedError((*at, "incremental_column"), "set `incremental` or its short form "
                                                         "`incremental_column`, not both")
        column = resource["incremental_column"]
        _rename(work, at, resource, "incremental_column", "incremental")
        resource["incremental"] = {"column": column}
    incremental = resource.get("incremental")
    if isinstance(incremental, dict) and "detect_gaps" in incremental:
        incremental.pop("detect_gaps")
        work.note((*at, "incremental"), "`detect_gaps` dropped: the `sequential` strategy waits for every "
                                        "transaction that could still fill a gap",
                  origin=(*at, "incremental", "detect_gaps"), removed=True)


def _query(work: Translation, at: KeyPath, resource: dict[str, Any], source_type: object) -> None:
    if "query" not in resource:
        return
    query = resource["query"]
    empty = query is None or (isinstance(query, str) and query.strip().lower() in _NO_QUERY)
    if source_type == "file" or (empty and source_type in _DATABASE_SOURCES):
        if not empty:
            raise SeedError((*at, "query"), "a file source reads whole files: `query` is for database sources "
                                            "(write `query: \"n/a\"` or leave it out)")
        resource.pop("query")
        what = "a file source reads whole files" if source_type == "file" else \
            "name the table to read in `source_table`, or write a SELECT in `query`"
        work.note(at, f"`query: {query!r}` dropped: {what}", origin=(*at, "query"), removed=True)


def _evolution(work: Translation, at: KeyPath, resource: dict[str, Any]) -> None:
    evolution = resource.get("schema_evolution")
    if not isinstance(evolution, dict):
        return
    here = (*at, "schema_evolution")
    if "mode" in evolution and isinstance(evolution["mode"], str):
        evolution["mode"] = evolution["mode"].lower()
    if "enabled" in evolution:
        enabled = evolution.pop("enabled")
        if enabled is False:
            evolution["mode"] = "warn"
            work.note((*here, "mode"), "`enabled: false`: `mode: warn` (differences are logged, no DDL is applied)",
                      origin=(*here, "enabled"))
        elif enabled is True and "mode" not in evolution:
            evolution["mode"] = "manual"
            work.note((*here, "mode"), "`enabled: true` without `mode`: the seed's default, `mode: manual`",
                      origin=(*here, "enabled"))
        elif enabled is True:
            work.note(here, "`enabled: true` dropped: `mode` says what happens", origin=(*here, "enabled"),
                      removed=True)
        else:
            raise SeedError((*here, "enabled"), f"`enabled` is true or false; got {enabled!r}")
    if evolution.get("auto_add_columns") is False and evolution.get("mode", "auto") == "auto":
        raise SeedError((*here, "auto_add_columns"), "`auto_add_columns: false` with `mode: auto`: conduitd's auto "
                                                     "mode adds columns; use `mode: manual` or `mode: warn`")
    for key, why in _EVOLUTION_HOW.items():
        if key in evolution:
            evolution.pop(key)
            work.note(here, f"`{key}` dropped: {why}", origin=(*here, key), removed=True)
    for key in ("on_column_removed", "on_type_change"):
        if isinstance(evolution.get(key), str) and evolution[key].lower() == "ignore":
            evolution[key] = "warn"
            work.note((*here, key), "`ignore` is `warn` (conduitd logs it once)")


def _quality(work: Translation, at: KeyPath, resource: dict[str, Any]) -> None:
    required = resource.pop("required_columns", None)
    checks = resource.get("quality_checks")
    if required is not None:
        origin = work.origin((*at, "required_columns"))
        if not (isinstance(required, list) and all(isinstance(c, str) and c for c in required)):
            raise SeedError(origin, "`required_columns` is a list of column names")
        if checks is None:
            checks = resource["quality_checks"] = []
        if isinstance(checks, list):
            checks.extend(c for c in ({"column": c, "check": "not_null", "action": "fail"} for c in required)
                          if c not in checks)
            work.note((*at, "quality_checks"), "`required_columns` are `not_null` checks with `action: fail`",
                      origin=origin)
    for index, check in enumerate(checks if isinstance(checks, list) else []):
        for key in ("action", "check"):
            value = check.get(key) if isinstance(check, dict) else None
            if isinstance(value, str) and value != value.lower():
                check[key] = value.lower()
                work.note((*at, "quality_checks", index, key), f"`{value}` is `{value.lower()}`")


def _null_values(work: Translation, at: KeyPath, resource: dict[str, Any], source: tuple[int, dict[str, Any]] | None,
                 seen: dict[str, tuple[tuple[str, ...], KeyPath]]) -> None:
    origin = work.origin((*at, "custom_null_values"))
    extra = resource.pop("custom_null_values")
    if not (isinstance(extra, list) and all(isinstance(v, str) for v in extra)):
        raise SeedError(origin, "`custom_null_values` is a list of texts")
    if source is None or source[1].get("type") != "file":
        work.note(at, "`custom_null_values` dropped: a database source delivers nulls as nulls", origin=origin,
                  removed=True)
        return
    index, section = source
    name = str(section.get("name"))
    values = tuple(dict.fromkeys([*section.get("null_values", CSV_NULL_VALUES), *extra]))
    if name in seen:
        if seen[name][0] != values:
            raise SeedError(origin, f"source {name!r} feeds destinations with different `custom_null_values`: "
                                    f"set `null_values` on the source instead")
        return
    seen[name] = (values, origin)
    section["null_values"] = list(values)
    work.origins[("sources", index, "null_values")] = origin
    work.note(("sources", index, "null_values"), "`custom_null_values` of the destination: the CSV source's "
                                                 "`null_values` (with conduitd's defaults)", origin=origin)


def _rename(work: Translation, at: KeyPath, mapping: dict[str, Any], old: str, new: str) -> None:
    if old not in mapping:
        return
    if new in mapping:
        raise SeedError(work.origin((*at, old)), f"`{old}` is conduitd's `{new}`, which is set too: keep one")
    origin = work.origin((*at, old))
    items = [(new if k == old else k, v) for k, v in mapping.items()]
    mapping.clear()
    mapping.update(items)
    work.origins[(*at, new)] = origin
    work.note((*at, new), f"`{old}` is `{new}`", origin=origin)
