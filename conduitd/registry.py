"""The connector registry: sources, destinations and DLQ sinks, looked up by their `type`.

Every connector is declared by one `Connector` value: its type, kind, pydantic config model,
factory and capabilities. The built-ins are listed below as module paths, imported only when a
config names them, and their drivers (asyncpg, confluent_kafka) only when one is built; a missing
driver is a ConfigError naming the pip extra that installs it. Third-party packages add their
own through entry points:

    [project.entry-points."conduitd.destinations"]
    jsonl = "conduitd_jsonl:CONNECTOR"        # the name is the `type`; the object a Connector

The config file is validated through `config_model`, which gives each section the model of its
connector, so plugin sections get unknown-key errors, "did you mean" and line numbers too.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import importlib.metadata
import importlib.util
import logging
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Discriminator, Tag, create_model, field_validator, model_validator

from conduitd import __version__, pandas_probe
from conduitd.config import Config, DestinationConfig, DlqConfig, PipelineConfig, SourceConfig
from conduitd.errors import ConfigError

log = logging.getLogger(__name__)
Kind = Literal["source", "destination", "dlq"]
KINDS: tuple[Kind, ...] = ("source", "destination", "dlq")
GROUPS: dict[Kind, str] = {"source": "conduitd.sources", "destination": "conduitd.destinations"}
"""Entry-point groups third-party packages register in (DLQ sinks are built-in only)."""
_BASES: dict[Kind, type[BaseModel]] = {"source": SourceConfig, "destination": DestinationConfig, "dlq": DlqConfig}
_BUILTINS: dict[Kind, dict[str, str]] = {
    "source": {"file": "conduitd.sources.builtins:FILE", "kafka": "conduitd.sources.builtins:KAFKA",
               "postgres": "conduitd.sources.builtins:POSTGRES",
               "mysql": "conduitd.sources.tables.mysql_connector:MYSQL",
               "kinesis": "conduitd.sources.kinesis.connector:KINESIS", "rest": "conduitd.sources.rest.connector:REST"},
    "destination": {"sqlite": "conduitd.destinations.builtins:SQLITE",
                    "postgres": "conduitd.destinations.builtins:POSTGRES",
                    "mysql": "conduitd.destinations.mysql.connector:MYSQL",
                    "file": "conduitd.destinations.files.connector:FILE",
                    "snowflake": "conduitd.destinations.snowflake.connector:SNOWFLAKE",
                    "clickhouse": "conduitd.destinations.clickhouse.connector:CLICKHOUSE",
                    "duckdb": "conduitd.destinations.duckdb.connector:DUCKDB"},
    "dlq": {"table": "conduitd.dlq_sinks:TABLE", "file": "conduitd.dlq_sinks:FILE",
            "kafka": "conduitd.dlq_sinks:KAFKA"},
}
ModelClass = type[BaseModel]
_UNKNOWN = "\x00unknown"
"""The union tag of a section whose `type` is no installed connector's (never a real type: NUL)."""


@dataclass(frozen=True)
class Connector:
    """What a connector package declares; an entry point names one (or any object with these
    attributes).

    Factories: a source's is `factory(config, options: SourceOptions) -> Source`, a destination's
    `factory(config) -> Destination`, a DLQ sink's `factory(config) -> DlqSink | None`; each gets
    its section already validated by `config_model`. They run when a pipeline is built, not
    when the config is loaded."""

    type: str
    kind: Kind
    config_model: ModelClass
    """Subclass of `conduitd.config.SourceConfig` or `DestinationConfig` (`DlqConfig` for DLQ sinks)."""
    factory: Callable[..., Any]
    capabilities: object = None
    """A destination's `Capabilities`, or names (`("deletes",)`), or a function returning either
    (so listing a connector does not import its driver)."""
    check: Callable[[Any], Awaitable[str]] | None = None
    """Sources: one line on what the source sees now, for `conduitd validate`; raise
    DependencyUnreachable when it sees nothing."""
    inspect: Callable[[Any, Any, dict[str, Any]], Awaitable[list[tuple[str, str, str]]]] | None = None
    """Sources: `inspect(config, pipeline, committed positions)`, findings about one pipeline for
    `conduitd validate` as (check, status, detail): e.g. an unindexed cursor, how far behind it is."""
    requires: tuple[str, ...] = ()
    """Modules the factory imports (drivers); when one is missing, building says what to install."""
    extra: str | None = None
    """The pip extra of the connector's package that installs `requires`."""
    description: str = ""


@dataclass(frozen=True)
class SourceOptions:
    """What the runtime tells a source it builds, besides the source's own section."""

    once: bool
    """Stop where the data stood at start (`--once`)."""
    max_rows: int
    """Most rows in one chunk (the pipeline's `batch.max_rows`)."""
    key_columns: tuple[str, ...] = ()
    """`unique_key` of an upsert pipeline (a record with a key and no value deletes that row)."""
    tombstones: bool = False
    unreachable_after: float = 30.0
    """Under --once, how long an unreachable server is retried."""
    pipeline: PipelineConfig | None = None
    """The pipeline the source feeds (its `source_table`, `query`, `incremental`...)."""


@dataclass(frozen=True)
class Entry:
    """A connector the registry knows of, before it is loaded."""

    type: str
    kind: Kind
    target: str
    """module:attribute of its `Connector`."""
    package: str
    version: str
    builtin: bool
    entry_point: importlib.metadata.EntryPoint | None = None


def entries(kind: Kind) -> dict[str, Entry]:
    """The connectors of `kind`: built-ins first, then installed plugins by type."""
    return _discovered()[kind]


def types(kind: Kind) -> list[str]:
    return list(entries(kind))


def load(kind: Kind, type_: str) -> Connector:
    """The connector of `kind` named `type_`; ConfigError when there is none or it cannot load."""
    entry = entries(kind).get(type_)
    if entry is None:
        raise ConfigError(unknown_type(kind, type_))
    return _load(entry)


def build(kind: Kind, config: Any, *args: Any) -> Any:
    """The connector for `config` (a validated section), from its factory: `args` follow the
    config (a source's SourceOptions). A missing driver is a ConfigError naming the pip extra."""
    connector = load(kind, str(config.type))
    missing_driver(connector, raise_=True)
    built = connector.factory(config, *args)
    pandas_probe.rearm()  # the connector's modules may have imported pandas
    return built


def names_plugins(config: Config) -> bool:
    """Whether any source or destination of `config` is a plugin's (not built into conduitd)."""
    named: list[tuple[Kind, str]] = [("source", str(s.type)) for s in config.sources]
    named += [("destination", str(d.type)) for d in config.destinations]
    for kind, type_ in named:
        entry = entries(kind).get(type_)
        if entry is None or not entry.builtin:
            return True
    return False


def missing_driver(connector: Connector, *, raise_: bool = False) -> str | None:
    """What to install for the connector's drivers, or None when they are all there."""
    missing = [m for m in connector.requires if not _importable(m)]
    if not missing:
        return None
    entry = entries(connector.kind).get(connector.type)
    package = entry.package if entry is not None else "conduitd"
    install = f"pip install '{package}[{connector.extra}]'" if connector.extra else f"install {', '.join(missing)}"
    text = f"the {connector.type!r} {connector.kind} needs the Python module {', '.join(missing)}: {install}"
    if raise_:
        raise ConfigError(text)
    return text


def unknown_type(kind: Kind, type_: object, *, quote: bool = True) -> str:
    """The message for a section whose `type` no installed connector has; `quote`: name the
    value (config errors add it themselves)."""
    known = types(kind)
    installed = f"installed {kind} types: {', '.join(known)} (see `conduitd connectors`)"
    if type_ is None:
        return f"'type' is missing; {installed}"
    shown = f" {str(type_)[:80]!r}" if quote else ""
    other = next((k for k in KINDS if k != kind and type_ in entries(k)), None) if isinstance(type_, str) else None
    if other is not None:
        return f"a {other} type{shown}, not a {kind} type; {installed}"
    hint = difflib.get_close_matches(type_, known, n=1) if isinstance(type_, str) else []
    suggestion = f"did you mean {hint[0]!r}? " if hint else ""
    return f"unknown {kind} type{shown}; {suggestion}{installed}"


def config_model(data: object) -> type[Config]:
    """The model that validates a config file's `data`: `Config` with each source and destination
    validated by the model of its connector. Only the plugins the data names are loaded."""
    used = {kind: frozenset(_types_in(data, f"{kind}s")) for kind in ("source", "destination")}
    return _config_model(used["source"], used["destination"])


def reset() -> None:
    """Forget what was discovered and loaded (tests that install or remove a plugin)."""
    _discovered.cache_clear()
    _load.cache_clear()
    _config_model.cache_clear()
    importlib.invalidate_caches()


def capability_names(value: object) -> list[str]:
    """A capabilities value as names: the true flags of a dataclass (other fields as
    name=value), the true keys of a mapping, or the strings of an iterable."""
    if callable(value) and not dataclasses.is_dataclass(value):
        value = value()
    if value is None:
        return []
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = []
        for field in dataclasses.fields(value):
            flag = getattr(value, field.name)
            if flag is True:
                names.append(field.name)
            elif flag not in (False, None):
                names.append(f"{field.name}={flag}")
        return names
    if isinstance(value, Mapping):
        return [str(k) for k, v in value.items() if v]
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable):
        return [str(v) for v in value]
    return [str(value)]


@functools.cache
def _discovered() -> dict[Kind, dict[str, Entry]]:
    found: dict[Kind, dict[str, Entry]] = {
        kind: {t: Entry(t, kind, target, "conduitd", __version__, builtin=True) for t, target in builtins.items()}
        for kind, builtins in _BUILTINS.items()
    }
    for kind, group in GROUPS.items():
        for point in sorted(importlib.metadata.entry_points(group=group), key=lambda p: p.name):
            package, version = (point.dist.name, point.dist.version) if point.dist is not None else ("?", "?")
            known = found[kind].get(point.name)
            if known is not None:
                log.warning("%s %r of %s %s is ignored: %s already provides that type", kind, point.name,
                            package, version, known.package)
                continue
            found[kind][point.name] = Entry(point.name, kind, point.value, package, version, False, point)
    return found


@functools.cache
def _load(entry: Entry) -> Connector:
    where = "conduitd" if entry.builtin else f"package {entry.package} {entry.version}"
    try:
        if entry.entry_point is not None:
            loaded = entry.entry_point.load()
        else:
            module, _, attribute = entry.target.partition(":")
            loaded = getattr(importlib.import_module(module), attribute)
    except Exception as exc:  # a broken plugin is reported; it does not crash conduitd
        log.debug("cannot load %s %r", entry.kind, entry.type, exc_info=exc)
        raise ConfigError(f"the {entry.kind} {entry.type!r} ({where}, {entry.target}) cannot be loaded: "
                          f"{type(exc).__name__}: {exc}") from None
    problem = _declaration_problem(entry, loaded)
    if problem is not None:
        raise ConfigError(f"the {entry.kind} {entry.type!r} ({where}, {entry.target}) is not a valid connector: "
                          f"{problem}")
    if isinstance(loaded, Connector):
        return loaded
    return Connector(**{f.name: getattr(loaded, f.name) for f in dataclasses.fields(Connector)
                        if hasattr(loaded, f.name)})


def _declaration_problem(entry: Entry, loaded: object) -> str | None:
    for attribute in ("type", "kind", "config_model", "factory"):
        if not hasattr(loaded, attribute):
            return f"it has no {attribute!r} (see docs/connectors.md)"
    declared: Any = loaded
    if declared.type != entry.type:
        return f"it declares type {declared.type!r} but is registered as {entry.type!r}"
    if declared.kind != entry.kind:
        return f"it declares kind {declared.kind!r} but is registered as a {entry.kind}"
    base = _BASES[entry.kind]
    if not (isinstance(declared.config_model, type) and issubclass(declared.config_model, base)):
        return f"its config_model must be a subclass of conduitd.config.{base.__name__}"
    if not callable(declared.factory):
        return "its factory is not callable"
    return None


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _types_in(data: object, key: str) -> set[str]:
    sections = data.get(key) if isinstance(data, dict) else None
    if not isinstance(sections, list):
        return set()
    return {s["type"] for s in sections if isinstance(s, dict) and isinstance(s.get("type"), str)}


@functools.cache
def _config_model(source_types: frozenset[str], destination_types: frozenset[str]) -> type[Config]:
    fields: dict[str, Any] = {
        "sources": (tuple[_section("source", source_types), ...], ...),  # type: ignore[misc]
        "destinations": (tuple[_section("destination", destination_types), ...], ...),  # type: ignore[misc]
    }
    return create_model("Config", __base__=Config, __module__=Config.__module__, __doc__=Config.__doc__, **fields)


def _section(kind: Kind, used: frozenset[str]) -> Any:
    """A discriminated union over the models of the connectors named in `used` (every `type` the
    data holds: only those are imported); any other `type` validates as a model that says which
    types are installed."""
    known = entries(kind)
    members: list[Any] = []
    for type_, entry in known.items():
        if type_ in used:
            members.append(Annotated[_model_of(entry), Tag(type_)])
    members.append(Annotated[_unknown_model(kind), Tag(_UNKNOWN)])

    def tag_of(value: Any) -> str | None:
        if isinstance(value, dict):
            type_ = value.get("type")
            return type_ if isinstance(type_, str) and type_ in known else _UNKNOWN
        return getattr(value, "type", None) if isinstance(value, BaseModel) else None

    union = cast(Any, typing.Union)[tuple(members)]
    return Annotated[union, Discriminator(
        tag_of, custom_error_type="invalid_type",
        custom_error_message=f"expected a mapping with 'name' and 'type' (one of: {', '.join(known)})")]


def _model_of(entry: Entry) -> type[BaseModel]:
    """The connector's config model, or one that fails validation with why it cannot load."""
    try:
        return _load(entry).config_model
    except ConfigError as exc:
        return _failing_model(str(exc))


def _unknown_model(kind: Kind) -> type[BaseModel]:
    class UnknownType(BaseModel):
        model_config = ConfigDict(extra="allow")
        type: object = None

        @model_validator(mode="before")
        @classmethod
        def _has_type(cls, data: Any) -> Any:
            if isinstance(data, dict) and data.get("type") is None:
                raise ValueError(unknown_type(kind, None))  # at the section: it has no `type` key
            return data

        @field_validator("type")
        @classmethod
        def _known(cls, value: object) -> object:
            raise ValueError(unknown_type(kind, value, quote=False))  # at `type`, whose value is shown

    return UnknownType


def _failing_model(message: str) -> type[BaseModel]:
    class Unloadable(BaseModel):
        model_config = ConfigDict(extra="allow")
        type: object = None

        @field_validator("type")
        @classmethod
        def _fails(cls, value: object) -> object:
            raise ValueError(message)

    return Unloadable
