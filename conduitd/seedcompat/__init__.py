"""Configs written for the seed tool (Conduit Core), read by conduitd: ONE translation step.

`translate` rewrites a seed-shaped mapping (as `configyaml.read_yaml` parsed it, before `${VAR}`
expansion and validation) into conduitd's native shape, and records a `Note` for every key it
changed, moved, dropped or filled in. `configfile.load_config` validates its result and logs the
notes; `conduitd migrate-config` prints its result as YAML with the notes as comments, so the two
cannot disagree. A native config passes through unchanged, without notes.

What is translated (each module says how):
- `connectors`: `type` aliases (`csv`/`json`/`parquet` are `type: file` with that format,
  `postgresql` is `postgres`), connection fields and the seed's environment fallbacks
  (POSTGRES_*, SNOWFLAKE_*), source keys of the seed's file readers, types conduitd does not have
  (yet) refused with what to use instead;
- `pipelines`: a destination's table and write settings moved onto the resources that use it (a
  resource's own keys win), `write_mode`/`mode`/`primary_keys`, the seed's `schema_evolution`,
  `required_columns`, `query: "n/a"`, quality-check actions in any case, and keys conduitd does
  its own way (accepted with a note saying how).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KeyPath = tuple[str | int, ...]
SEED_KEYS = frozenset({
    "path", "bucket", "connection_string", "host", "port", "database", "user", "password", "db_schema", "resume",
    "checkpoint_column", "infer_schema", "schema_sample_size", "delimiter", "has_header", "table", "write_mode",
    "auto_create_table", "primary_keys", "update_strategy", "isolation_level", "checkpoint_interval",
    "enable_type_coercion", "strict_type_coercion", "custom_null_values", "type_mappings", "account", "warehouse",
    "project", "dataset", "credentials_path", "format", "indent", "validate_schema", "strict_validation",
    "required_columns", "schema_evolution", "query", "incremental_column", "export_schema_path",
    "enhanced_quality_checks", "version", "parallel_extraction"})
"""Keys of the seed tool's config: where conduitd does not take one, it is no typo of another key."""


class SeedError(ValueError):
    """A seed key that cannot be translated; `path` is where it is in the file."""

    def __init__(self, path: KeyPath, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


@dataclass(frozen=True)
class Note:
    """One translated key: what conduitd does with it."""

    at: KeyPath
    """The key in the translated data; for a key dropped, the mapping it was in."""
    origin: KeyPath
    """Where the key is in the file (for the line number)."""
    text: str
    removed: bool = False


@dataclass
class Translation:
    """The native-shaped data, where each moved key came from, and the notes."""

    data: Any
    origins: dict[KeyPath, KeyPath] = field(default_factory=dict)
    """Path in `data` -> path in the file, for keys moved from one section to another."""
    notes: list[Note] = field(default_factory=list)

    def note(self, at: KeyPath, text: str, *, origin: KeyPath | None = None, removed: bool = False) -> None:
        self.notes.append(Note(at, self.origin(origin if origin is not None else at), text, removed))

    def origin(self, path: KeyPath) -> KeyPath:
        """`path` in the data as a path in the file (a moved key's longest known prefix mapped)."""
        for size in range(len(path), 0, -1):
            moved = self.origins.get(path[:size])
            if moved is not None:
                return (*moved, *path[size:])
        return path


def translate(data: Any, environ: Mapping[str, str]) -> Translation:
    """The native equivalent of `data` (not modified); SeedError for what cannot be translated.
    `environ` decides the environment fallbacks (a variable that is set is referred to)."""
    from conduitd.seedcompat.connectors import translate_sections
    from conduitd.seedcompat.pipelines import translate_pipelines, translate_top

    work = Translation(_copy(data))
    if not isinstance(work.data, dict):
        return work
    try:
        translate_top(work)
        defaults = translate_sections(work, environ)
        translate_pipelines(work, defaults)
    except SeedError as exc:
        raise SeedError(work.origin(exc.path), exc.message) from None
    return work


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
