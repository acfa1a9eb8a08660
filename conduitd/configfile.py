"""Read a YAML config file into `Config`; every error names the file, the key path and the line.

Steps: parse YAML keeping each key's line (`configyaml`: duplicate keys, binary files, deep
nesting and alias cycles refused), rewrite what the seed tool (Conduit Core) spelled its own way
into conduitd's shape (`seedcompat`, logging a note per key; errors still name the key and line
as written), expand `${VAR}`, `${VAR:-default}` and `$VAR` in string values (`$$` is a literal
`$`; any other `${` is an error; an unset `${VAR}` is an error, an unset `$VAR` stays as
written; `.env` in the working directory fills in variables the environment lacks), validate
with pydantic, then check what spans sections: references, and table names that would collide
with a DLQ or bookkeeping table."""

from __future__ import annotations

import difflib
import logging
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Tag, ValidationError

from conduitd.config import Config, ConnectorConfig, PipelineConfig, PostgresDestinationConfig, client_secrets
from conduitd.configlines import remember_clients
from conduitd.configyaml import KeyPath, read_yaml
from conduitd.core.redact import redact
from conduitd.errors import ConfigError
from conduitd.registry import config_model
from conduitd.seedcompat import SEED_KEYS, Note, SeedError, Translation, translate
from conduitd.seedcompat.dotenv import with_dotenv

log = logging.getLogger(__name__)

# `$$`; a whole `${NAME}` or `${NAME:-default}` (the default may hold `$$` and a `$` not before
# `{`); or any other `${`, which is malformed (`${A`, `${}`, `${A:-${B}}`).
_VAR = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>(?:\$\$|[^${}]|\$(?![{$]))*))?\}"
                  r"|(?P<bad>\$\{)|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)")
RESERVED_PREFIX = "conduitd_"
"""Bookkeeping tables (checkpoints, schema history, leases) are named with this prefix."""
_PG_NAME_BYTES = 63


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Load and validate `path`; raise ConfigError (exit code 2) on any problem. `environ`
    (default: the process environment) gets the variables of `.env` it lacks; with the default,
    they are put into the process environment too (as the seed tool did: drivers read AWS_*)."""
    environ = _environment(environ)
    translation, located = read_translated(Path(path), environ)
    for note in _unique_notes(translation):
        log.info("%s", located.at(note.origin, note.text, mapped=True))
    data = _expand(translation.data, (), environ, located)
    model = config_model(data)  # each section validated by its connector's model
    try:
        config = model.model_validate(data, context={"environ": environ})  # `{from: env}` secrets
    except ValidationError as exc:
        raise ConfigError(redact(_describe(exc, data, located, model))) from None
    _check_references(config, located)
    _check_tables(config, located)
    remember_clients(config, located.at)  # librdkafka judges them later: its errors get their lines
    return config


def read_translated(file: Path, environ: Mapping[str, str]) -> tuple[Translation, _Locator]:
    """The file's data in conduitd's shape (not expanded) and the locator of its keys: what
    `load_config` validates and `conduitd migrate-config` prints."""
    data, lines = read_yaml(file)
    if not isinstance(data, dict):
        raise ConfigError(f"{file}:1: the config must be a mapping with sources, destinations and resources")
    located = _Locator(file, lines)
    try:
        translation = translate(data, environ)
    except SeedError as exc:
        raise ConfigError(located.at(exc.path, exc.message, mapped=True)) from None
    located.origin = translation.origin
    return translation, located


def _environment(environ: Mapping[str, str] | None) -> dict[str, str]:
    if environ is not None:
        return with_dotenv(environ)
    merged = with_dotenv(os.environ)
    for name, value in merged.items():
        os.environ.setdefault(name, value)
    return merged


def _unique_notes(translation: Translation) -> list[Note]:
    """One note per key of the file (a destination's key copied onto three resources: once)."""
    seen: set[tuple[KeyPath, str]] = set()
    unique = []
    for note in translation.notes:
        key = (note.origin, note.text)
        if key not in seen:
            seen.add(key)
            unique.append(note)
    return unique


class _Locator:
    """Formats `file:line: key.path: message` for a key path."""

    def __init__(self, file: Path, lines: dict[KeyPath, int]) -> None:
        self.file = file
        self.lines = lines
        self.origin: typing.Callable[[KeyPath], KeyPath] = lambda path: path
        """A path in the translated data -> where the key is in the file (`seedcompat`)."""

    def at(self, path: KeyPath, message: str, *, mapped: bool = False) -> str:
        """`mapped`: `path` is a path in the file already."""
        path = path if mapped else self.origin(path)
        probe = path
        while probe and probe not in self.lines:
            probe = probe[:-1]
        line = self.lines.get(probe, 1)
        shown = _dotted(path) or "(top level)"
        return f"{self.file}:{line}: {shown}: {message}"


def _dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _expand(value: Any, path: KeyPath, environ: Mapping[str, str], located: _Locator) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, (*path, str(k)), environ, located) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, (*path, i), environ, located) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        if match["bad"] is not None:
            raise ConfigError(located.at(path, f"malformed variable at character {match.start() + 1}: write "
                                               "${NAME} or ${NAME:-default}, and $$ for a literal $"))
        name, default = match["name"] or match["bare"], match["default"]
        if name in environ:
            return environ[name]
        if default is not None:
            return default.replace("$$", "$")
        if match["bare"] is not None:
            return match.group(0)  # as the seed tool did: `pa$word` stays itself when $word is not set
        raise ConfigError(
            located.at(path, f"environment variable {name} is not set (use ${{{name}:-default}} for a default)")
        )

    return _VAR.sub(substitute, value)


def _describe(exc: ValidationError, data: Any, located: _Locator, model: type[BaseModel] = Config) -> str:
    messages = []
    for error in exc.errors():
        path = _data_path(error["loc"], data)
        if error["type"] == "extra_forbidden":
            key = str(path[-1]) if path else "?"
            allowed = _allowed_keys(error["loc"][:-1], model)
            hint = [] if key in SEED_KEYS else difflib.get_close_matches(key, allowed, n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else (
                f"; known keys: {', '.join(sorted(allowed))}" if allowed else "")
            messages.append(located.at(path, f"unknown key{suggestion}"))
            continue
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = f"required key is missing: `{error['loc'][-1]}`" if error["loc"] else "required key is missing"
        elif "input" in error and not isinstance(error["input"], dict | list) and not _is_secret(path):
            shown = repr(error["input"])
            message += f" (got {shown[:80]}{'...' if len(shown) > 80 else ''})"
        messages.append(located.at(path, message))
    return "\n".join(messages)


def _is_secret(path: KeyPath) -> bool:
    key = str(path[-1]).lower() if path else ""
    return key == "dsn" or "client" in path or any(word in key for word in ("password", "token", "secret", "key")) \
        or bool(client_secrets({key: ""}))


def _data_path(loc: tuple[int | str, ...], data: Any) -> KeyPath:
    """Drop the parts of a pydantic location that are not keys of the data (union tags)."""
    path: list[str | int] = []
    current = data
    for part in loc:
        if _has_key(current, part):
            current = current[part]
            path.append(part)
        elif isinstance(current, dict | list):
            continue  # a discriminator tag or model name, not part of the file
        else:
            path.append(part)
            current = None
    return tuple(path)


def _has_key(container: Any, part: int | str) -> bool:
    if isinstance(container, dict):
        return part in container
    return isinstance(container, list) and isinstance(part, int) and 0 <= part < len(container)


def _allowed_keys(loc: tuple[int | str, ...], root: type[BaseModel] = Config) -> list[str]:
    """The keys the model at `loc` accepts (field names and aliases), for "did you mean"."""
    candidates: list[tuple[type[BaseModel], object]] = [(root, None)]
    for part in loc:
        if isinstance(part, int):
            continue
        tagged: list[tuple[type[BaseModel], object]] = [(m, t) for m, t in candidates if t == part]
        if tagged:
            candidates = tagged
            continue
        nxt: list[tuple[type[BaseModel], object]] = []
        for model, _ in candidates:
            for name, field in model.model_fields.items():
                if part in (name, field.alias):
                    nxt.extend(_models_in(field.annotation))
        candidates = nxt
    keys: set[str] = set()
    for model, _ in candidates:
        for name, field in model.model_fields.items():
            keys.add(field.alias or name)
    return sorted(keys)


def _type_tag(model: type[BaseModel]) -> object:
    field = model.model_fields.get("type")
    args = typing.get_args(field.annotation) if field is not None else ()
    return args[0] if len(args) == 1 else None


def _models_in(annotation: Any, tag: object = None) -> list[tuple[type[BaseModel], object]]:
    """The models in an annotation, each with its union tag (a connector's `type`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(annotation, tag if tag is not None else _type_tag(annotation))]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        tags = [m.tag for m in getattr(annotation, "__metadata__", ()) if isinstance(m, Tag)]
        return _models_in(typing.get_args(annotation)[0], tags[0] if tags else tag)
    if origin in (tuple, list, typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []


def _check_references(config: Config, located: _Locator) -> None:
    problems = []
    sections: tuple[tuple[str, Sequence[ConnectorConfig | PipelineConfig]], ...] = (
        ("sources", config.sources), ("destinations", config.destinations), ("resources", config.resources))
    for kind, items in sections:
        if not items:
            problems.append(located.at((kind,), f"at least one entry is needed under '{kind}'"))
        seen: set[str] = set()
        for index, item in enumerate(items):
            if item.name in seen:
                problems.append(located.at((kind, index, "name"), f"duplicate name {item.name!r}"))
            seen.add(item.name)
    source_names = [s.name for s in config.sources]
    destination_names = [d.name for d in config.destinations]
    for index, pipeline in enumerate(config.resources):
        for key, value, names in (("source", pipeline.source, source_names),
                                  ("destination", pipeline.destination, destination_names)):
            if value not in names:
                hint = difflib.get_close_matches(value, names, n=1)
                extra = f"; did you mean '{hint[0]}'?" if hint else f"; defined: {', '.join(names)}"
                problems.append(located.at(("resources", index, key), f"no {key} named {value!r}{extra}"))
    pipeline_names = [p.name for p in config.resources]
    for index, name in enumerate(config.alerts.pipelines if config.alerts else ()):
        if name not in pipeline_names:
            hint = difflib.get_close_matches(name, pipeline_names, n=1)
            extra = f"; did you mean '{hint[0]}'?" if hint else f"; defined: {', '.join(pipeline_names)}"
            problems.append(located.at(("alerts", "pipelines", index), f"no pipeline named {name!r}{extra}"))
    if problems:
        raise ConfigError("\n".join(problems))


def _check_tables(config: Config, located: _Locator) -> None:
    """Table names that would collide: a table and its own or another pipeline's DLQ table in the
    same destination, a `conduitd_` bookkeeping name; and names PostgreSQL would truncate."""
    problems = []
    dlq_tables: dict[tuple[str, str], str] = {}
    for pipeline in config.resources:
        if pipeline.dlq.type == "table":
            dlq_tables.setdefault((pipeline.destination, pipeline.dlq_table.casefold()), pipeline.name)
    for index, pipeline in enumerate(config.resources):
        at: KeyPath = ("resources", index)
        names = [((*at, "table"), pipeline.table_name, "table")]
        if pipeline.dlq.type == "table":
            names.append(((*at, "dlq", "table"), pipeline.dlq_table, "DLQ table"))
        for path, name, what in names:
            if name.casefold().startswith(RESERVED_PREFIX):
                problems.append(located.at(path, f"{what} {name!r}: names starting with {RESERVED_PREFIX!r} are "
                                                 "reserved for conduitd's own tables (checkpoints, schema history)"))
        owner = dlq_tables.get((pipeline.destination, pipeline.table_name.casefold()))
        if owner is not None:
            whose = "its own" if owner == pipeline.name else f"pipeline {owner!r}'s"
            problems.append(located.at((*at, "table"), f"table {pipeline.table_name!r} is {whose} DLQ table: "
                                                       "name one of them differently"))
        destination = next((d for d in config.destinations if d.name == pipeline.destination), None)
        if isinstance(destination, PostgresDestinationConfig):
            columns = [((*at, "unique_key", i), c, "column") for i, c in enumerate(pipeline.unique_key)]
            if pipeline.deletes.soft_delete_column:
                columns.append(((*at, "deletes", "soft_delete_column"), pipeline.deletes.soft_delete_column, "column"))
            for path, name, what in [*names, *columns]:
                if len(name.encode()) > _PG_NAME_BYTES:
                    problems.append(located.at(path, f"{what} name is longer than PostgreSQL's {_PG_NAME_BYTES}-byte "
                                                     "limit: it would be cut short"))
    for index, destination in enumerate(config.destinations):
        if isinstance(destination, PostgresDestinationConfig) and len(destination.db_schema.encode()) > _PG_NAME_BYTES:
            problems.append(located.at(("destinations", index, "schema"), f"schema name is longer than PostgreSQL's "
                                                                          f"{_PG_NAME_BYTES}-byte limit"))
    if problems:
        raise ConfigError("\n".join(problems))
